"""Tiny random CogVideoX configurations saved in the diffusers layout DOVE's checkpoints use."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel

from models.fullscale.checkpoint import save_prompt_embedding

TINY_VAE = {
    "block_out_channels": (8, 16, 16, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "temporal_compression_ratio": 4,
    "scaling_factor": 0.7,
    "invert_scale_latents": True,
}
TINY_TRANSFORMER = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 2,
    "sample_width": 64,
    "sample_height": 64,
    "sample_frames": 9,
    "patch_size": 2,
    "max_text_seq_length": 8,
    "temporal_compression_ratio": 4,
}
ROTARY_1_5 = {"patch_size_t": 2, "use_rotary_positional_embeddings": True, "patch_bias": False}
SCHEDULER = {  # CogVideoX1.5's DPM scheduler settings
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "snr_shift_scale": 1.0,
    "timestep_spacing": "trailing",
}


def make_tiny_checkpoint(directory: Path, *, cogvideox_1_5: bool = True, seed: int = 0) -> Path:
    """vae/, transformer/, scheduler/ and the prompt embedding, random weights (outputs non-trivial)."""
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    transformer = CogVideoXTransformer3DModel(**TINY_TRANSFORMER, **(ROTARY_1_5 if cogvideox_1_5 else {}))
    with torch.no_grad():  # CogVideoX zero-initialises nothing that matters here; make the DiT act
        for parameter in transformer.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    vae.save_pretrained(directory / "vae")
    transformer.save_pretrained(directory / "transformer")
    CogVideoXDPMScheduler(**SCHEDULER).save_pretrained(directory / "scheduler")
    embedding = torch.randn(1, TINY_TRANSFORMER["max_text_seq_length"], TINY_TRANSFORMER["text_embed_dim"])
    save_prompt_embedding(directory, embedding)
    return directory


def add_tiny_text_encoder(directory: Path, seed: int = 0) -> Path:
    """text_encoder/ (a random 1-layer T5 encoder) and tokenizer/ (a word-level T5-style tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(directory / "tokenizer")
    torch.manual_seed(seed)
    width = TINY_TRANSFORMER["text_embed_dim"]
    config = T5Config(vocab_size=len(vocab), d_model=width, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    T5EncoderModel(config).save_pretrained(directory / "text_encoder")
    return directory
