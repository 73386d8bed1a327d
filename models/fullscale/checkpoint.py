"""Load a DOVE / CogVideoX1.5 checkpoint directory (diffusers layout) into a `FullScaleVSR`.

    DIR/vae/{config.json, diffusion_pytorch_model.safetensors}          AutoencoderKLCogVideoX
    DIR/transformer/{config.json, diffusion_pytorch_model*.safetensors} CogVideoXTransformer3DModel
    DIR/scheduler/scheduler_config.json                                 CogVideoXDPMScheduler
    DIR/prompt_embedding.safetensors   the empty prompt's T5 embedding, (1, tokens, text_embed_dim)
    DIR/f16_decoder/model.safetensors  optional: a trained f16 decoder (else warm-started from the f8)

DOVE's published directory has the first three (plus text_encoder/ and tokenizer/, which inference
does not need once the embedding is stored; `python -m models.fullscale.prompt_embedding DIR` makes it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
from safetensors.torch import load_file, save_file

from models.fullscale.f16_decoder import CogVideoXF16Decoder
from models.fullscale.pipeline import FullScaleVSR

PROMPT_FILE = "prompt_embedding.safetensors"
PROMPT_KEY = "prompt_embedding"
F16_FILE = Path("f16_decoder") / "model.safetensors"


class CheckpointError(ValueError):
    """The directory is not a usable checkpoint; the message names what is missing or wrong."""


def _require(directory: Path, relative: str) -> Path:
    path = directory / relative
    if not path.exists():
        raise CheckpointError(f"{directory}: missing {relative} (expected the diffusers layout)")
    return path


def save_prompt_embedding(directory: Path, embedding: torch.Tensor) -> Path:
    path = directory / PROMPT_FILE
    save_file({PROMPT_KEY: embedding.detach().contiguous().cpu()}, str(path))
    return path


def load_prompt_embedding(directory: Path, transformer: CogVideoXTransformer3DModel) -> torch.Tensor:
    path = directory / PROMPT_FILE
    if not path.exists():
        raise CheckpointError(
            f"{directory}: missing {PROMPT_FILE}; make it once with "
            f"`python -m models.fullscale.prompt_embedding {directory}` (needs text_encoder/ and tokenizer/)"
        )
    tensors = load_file(str(path))
    if PROMPT_KEY not in tensors:
        raise CheckpointError(f"{path}: no tensor named {PROMPT_KEY!r}")
    embedding = tensors[PROMPT_KEY]
    want = transformer.config.text_embed_dim
    if embedding.ndim != 3 or embedding.shape[0] != 1 or embedding.shape[2] != want:
        raise CheckpointError(f"{path}: shape {tuple(embedding.shape)}, expected (1, tokens, {want})")
    return embedding


def save_f16_decoder(directory: Path, decoder: CogVideoXF16Decoder) -> Path:
    path = directory / F16_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(path))
    return path


def load_checkpoint(directory: str | Path, dtype: torch.dtype = torch.float32) -> FullScaleVSR:
    """The whole model from `directory`, in `dtype`, in eval mode on the CPU."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory")
    for part in ("vae/config.json", "transformer/config.json", "scheduler/scheduler_config.json"):
        _require(directory, part)
    try:
        vae = AutoencoderKLCogVideoX.from_pretrained(directory / "vae", torch_dtype=dtype)
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            directory / "transformer", torch_dtype=dtype
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: cannot load the weights: {exc}") from exc
    scheduler = CogVideoXDPMScheduler.from_pretrained(directory / "scheduler", timestep_spacing="trailing")
    if scheduler.config.prediction_type != "v_prediction":
        raise CheckpointError(f"{directory}: scheduler predicts {scheduler.config.prediction_type!r}, not v")
    model = FullScaleVSR(vae, transformer, scheduler, load_prompt_embedding(directory, transformer).to(dtype))
    f16 = directory / F16_FILE
    if f16.exists():
        try:
            model.f16_decoder.load_state_dict(load_file(str(f16)), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{f16}: does not match the VAE's decoder: {exc}") from exc
    return model.eval()
