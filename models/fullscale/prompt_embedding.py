"""Store the empty prompt's T5 embedding with a checkpoint, once, so inference needs no text encoder.

    python -m models.fullscale.prompt_embedding CHECKPOINT_DIR [--prompt ""]

DOVE conditions its one step on the empty prompt: T5 tokens of "" padded to the transformer's
`max_text_seq_length`, encoded by DIR/text_encoder (T5EncoderModel) with DIR/tokenizer. The result,
(1, tokens, text_embed_dim), goes to DIR/prompt_embedding.safetensors; text_encoder/ and tokenizer/ can
then be left out of the serving image (the T5 encoder of CogVideoX1.5 is about 9 GB in bf16).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, T5EncoderModel

from models.fullscale.checkpoint import CheckpointError, save_prompt_embedding


@torch.no_grad()
def embed_prompt(directory: Path, prompt: str = "") -> torch.Tensor:
    """The T5 embedding of `prompt`, as DOVE computes it, (1, max_text_seq_length, text_embed_dim)."""
    for part in ("text_encoder", "tokenizer", "transformer/config.json"):
        if not (directory / part).exists():
            raise CheckpointError(f"{directory}: missing {part} (needed to embed the prompt)")
    tokens = json.loads((directory / "transformer" / "config.json").read_text())["max_text_seq_length"]
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    encoder = T5EncoderModel.from_pretrained(directory / "text_encoder").eval()
    ids = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokens,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    ).input_ids
    return encoder(ids)[0].float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--prompt", default="", help="DOVE uses the empty prompt")
    args = parser.parse_args(argv)
    print(save_prompt_embedding(args.checkpoint, embed_prompt(args.checkpoint, args.prompt)))


if __name__ == "__main__":
    main()
