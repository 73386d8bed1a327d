"""Tiny random CogVideoX configurations saved in the diffusers layout DOVE's checkpoints use."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel

from models.fullscale.checkpoint import save_prompt_embedding
from models.fullscale.configs import COGVIDEOX_1_5_LAYOUT, COGVIDEOX_1_5_SCHEDULER, TINY_TRANSFORMER, TINY_VAE


def make_tiny_checkpoint(directory: Path, *, cogvideox_1_5: bool = True, seed: int = 0) -> Path:
    """vae/, transformer/, scheduler/ and the prompt embedding, random weights (outputs non-trivial)."""
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    layout = COGVIDEOX_1_5_LAYOUT if cogvideox_1_5 else {}
    transformer = CogVideoXTransformer3DModel(**TINY_TRANSFORMER, **layout)
    with torch.no_grad():  # CogVideoX zero-initialises nothing that matters here; make the DiT act
        for parameter in transformer.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    vae.save_pretrained(directory / "vae")
    transformer.save_pretrained(directory / "transformer")
    CogVideoXDPMScheduler(**COGVIDEOX_1_5_SCHEDULER).save_pretrained(directory / "scheduler")
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
