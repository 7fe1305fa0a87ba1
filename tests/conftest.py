"""Tiny CLAVER / CLIP configs built in-process: nothing is downloaded."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPConfig  # noqa: E402

from claver_hf import ClaverConfig  # noqa: E402

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 16,
}
# bos / eos / pad inside the tiny vocabulary, so EOS pooling finds the real end token.
TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 64,
    "max_position_embeddings": 16,
    "bos_token_id": 62,
    "eos_token_id": 63,
    "pad_token_id": 0,
}
NUM_FRAMES = 4
TOKENS_PER_FRAME = (32 // 16) ** 2 + 1


def tiny_claver_config(attn_implementation: str = "sdpa", **vision_kwargs) -> ClaverConfig:
    config = ClaverConfig(
        vision_config={**TINY_VISION, "num_frames": NUM_FRAMES, **vision_kwargs},
        text_config=TINY_TEXT,
        projection_dim=16,
    )
    config._attn_implementation = attn_implementation
    return config


def tiny_clip_config() -> CLIPConfig:
    return CLIPConfig(vision_config=TINY_VISION, text_config=TINY_TEXT, projection_dim=16)


def random_text(num_texts: int, length: int = 8, generator: torch.Generator | None = None) -> dict:
    """Token ids `bos ... eos pad...` with varied lengths, and their attention mask."""
    ids = torch.zeros(num_texts, length, dtype=torch.long)
    mask = torch.zeros(num_texts, length, dtype=torch.long)
    for i in range(num_texts):
        n = 3 + (i % (length - 3))
        ids[i, 0] = TINY_TEXT["bos_token_id"]
        ids[i, 1 : n - 1] = torch.randint(1, 60, (n - 2,), generator=generator)
        ids[i, n - 1] = TINY_TEXT["eos_token_id"]
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def random_video(batch: int = 2, frames: int = NUM_FRAMES, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)


def write_dataset(root: Path) -> Path:
    """A two-class folder-format dataset of tiny videos (16 frames of 40x32): 4 / 2 / 2 per class for train /
    validation / test."""
    from .videos import write_video

    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        for name in ("waving", "clapping"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                write_video(root / split / name / f"{i}.mp4", num_frames=16, size=(40, 32))
    return root


@pytest.fixture
def dataset_dir(tmp_path):
    return write_dataset(tmp_path / "data")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def clip_tokenizer():
    """CLIP's real BPE tokenizer, built offline from the vocabulary bundled with the package (49,408 tokens)."""
    from claver_hf.processing.tokenization import clip_tokenizer

    return clip_tokenizer()


@pytest.fixture(scope="session")
def clip_repository(tmp_path_factory):
    """A miniature `openai/clip-vit-base-patch16` Hub repository (see `tests/hub_repository.py`)."""
    from .hub_repository import write_clip_repository

    return write_clip_repository(tmp_path_factory.mktemp("hub") / "clip-vit-base-patch16")
