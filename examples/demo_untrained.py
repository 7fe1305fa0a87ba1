"""Placeholder main job: an UNTRAINED tiny CLAVER scores a generated clip against a few labels.

It builds a randomly initialised KMTA model, writes it to disk as a Hugging Face checkpoint, loads it back
through `AutoModel`, and prints the video/text similarities for a clip of a square moving to the right.
The weights are random, so the scores carry no meaning: this shows the package end to end, offline, until
the training job replaces it.

    python examples/demo_untrained.py [--output-dir outputs/demo-untrained]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModel

import claver_hf  # noqa: F401  (registers CLAVER with the Auto classes)
from claver_hf import ClaverConfig, ClaverModel

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
LABELS = ["moving right", "moving left", "moving up", "moving down"]


def moving_square_clip(num_frames: int = 8, size: int = 64, square: int = 12) -> torch.Tensor:
    """`(1, T, 3, size, size)` normalised frames of a white square crossing a dark frame left to right."""
    frames = torch.full((num_frames, 3, size, size), 0.1)
    top = (size - square) // 2
    for t in range(num_frames):
        left = round(t * (size - square) / max(num_frames - 1, 1))
        frames[t, :, top : top + square, left : left + square] = 1.0
    return ((frames - CLIP_MEAN) / CLIP_STD).unsqueeze(0)


def word_vocabulary(texts: list[str]) -> dict[str, int]:
    """Word ids for `texts`, laid out like CLIP's: padding 0, then the words, then start and end tokens.

    The end token must not be 2: CLIP's text model reads `eos_token_id == 2` as a legacy checkpoint and pools
    the largest token id instead of the end token.
    """
    words = sorted({word for text in texts for word in text.split()})
    vocabulary = {"<pad>": 0, **{word: index + 1 for index, word in enumerate(words)}}
    vocabulary["<bos>"], vocabulary["<eos>"] = len(vocabulary), len(vocabulary) + 1
    return vocabulary


def tokenize(texts: list[str], vocabulary: dict[str, int], length: int = 8) -> dict[str, torch.Tensor]:
    """A word-level stand-in for CLIP's BPE tokenizer (the real one needs its vocabulary file)."""
    ids = torch.full((len(texts), length), vocabulary["<pad>"])
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [vocabulary["<bos>"], *(vocabulary[word] for word in text.split()), vocabulary["<eos>"]]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo-untrained"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    vocabulary = word_vocabulary(LABELS)
    config = ClaverConfig(
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
                       "num_attention_heads": 4, "image_size": 64, "patch_size": 16, "num_frames": 8},
        text_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "vocab_size": len(vocabulary), "max_position_embeddings": 8, "pad_token_id": vocabulary["<pad>"],
                     "bos_token_id": vocabulary["<bos>"], "eos_token_id": vocabulary["<eos>"]},
        projection_dim=32,
    )  # fmt: skip
    ClaverModel(config).save_pretrained(args.output_dir)
    model = AutoModel.from_pretrained(args.output_dir).eval()

    with torch.inference_mode():
        outputs = model(pixel_values=moving_square_clip(), **tokenize(LABELS, vocabulary))
    probabilities = outputs.logits_per_video.softmax(dim=-1)[0]

    print("UNTRAINED CLAVER (random weights): the scores below are not predictions.")
    print(
        f"model: {type(model).__name__}, Kronecker mask {config.vision_config.kronecker_mask!r}, saved to {args.output_dir}"
    )
    print("clip: 8 frames of a square moving right\n")
    print(f"{'label':<14} {'similarity':>10} {'softmax':>8}")
    for label, logit, probability in zip(LABELS, outputs.logits_per_video[0], probabilities, strict=True):
        print(f"{label:<14} {logit.item():>10.3f} {probability.item():>8.3f}")


if __name__ == "__main__":
    main()
