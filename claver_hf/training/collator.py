"""Batching of processed clips, with MixUp / CutMix from `torchvision.transforms.v2` for training."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..data.datasets import collate_video_batch


@dataclass
class VideoClassificationCollator:
    """Stacks dataset items (`{"pixel_values": (T, C, H, W), "labels": int}`) into a batch.

    With `mixup_alpha` or `cutmix_alpha` > 0 it mixes each training batch with one of the two, chosen at
    random (`switch_prob` = probability of CutMix when both are on), the same mixing for every frame of a clip,
    and turns the labels into soft targets `(B, num_classes)`. Items skipped as unreadable are dropped.

    The mixing draws from torch's generator seeded with a checksum of the batch (its labels and a corner of its
    pixels) and restores the caller's random state: a batch is mixed the same way whenever it is loaded, also
    when a resumed run loads again a batch that the interrupted one had prefetched.
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    switch_prob: float = 0.5

    def __post_init__(self):
        choices, weights = [], []
        if self.mixup_alpha > 0:
            choices.append(v2.MixUp(alpha=self.mixup_alpha, num_classes=self.num_classes))
            weights.append(1.0 - self.switch_prob if self.cutmix_alpha > 0 else 1.0)
        if self.cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=self.cutmix_alpha, num_classes=self.num_classes))
            weights.append(self.switch_prob if self.mixup_alpha > 0 else 1.0)
        self._mix = v2.RandomChoice(choices, p=weights) if choices else None

    def __call__(self, items: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
        batch = collate_video_batch(items)
        if self._mix is not None and batch["pixel_values"].ndim == 5:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_checksum(batch))
                videos, labels = self._mix(tv_tensors.Video(batch["pixel_values"]), batch["labels"])
            batch["pixel_values"], batch["labels"] = videos.as_subclass(torch.Tensor), labels
        return batch


def _checksum(batch: dict[str, torch.Tensor]) -> int:
    corner = batch["pixel_values"][..., :4, :4].contiguous()
    return zlib.crc32(corner.numpy().tobytes() + batch["labels"].numpy().tobytes())
