"""Clip-level spatial transforms built from `torchvision.transforms.v2`.

A clip is one `(T, C, H, W)` tensor: v2 transforms draw their random parameters once per call and apply them
to every leading index, so each augmentation is identical across the frames of a clip (a flip flips all
frames, a crop cuts the same window everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvF
from torchvision.transforms.v2 import query_size


class MultiScaleCrop(v2.Transform):
    """TSN's multi-scale crop: a window whose sides are `scales` × the short side, then resized to `size`.

    Height and width scales are drawn independently among pairs at most `max_distort` steps apart in
    `scales` (aspect jitter), and the window is placed uniformly at random.
    """

    def __init__(self, size: int, scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_distort: int = 1):
        super().__init__()
        self.size = size
        self.scales = tuple(scales)
        self.max_distort = max_distort

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        base = min(height, width)
        sides = [max(1, int(base * scale)) for scale in self.scales]
        pairs = [
            (h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort
        ]
        crop_h, crop_w = pairs[int(torch.randint(len(pairs), ()))]
        top = int(torch.randint(height - crop_h + 1, ()))
        left = int(torch.randint(width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tvF.resized_crop(inpt, **params, size=[self.size, self.size], antialias=True)


def training_transform(
    crop_size: int,
    short_side: int,
    scales: Sequence[float],
    flip_prob: float,
    color_jitter_prob: float,
    grayscale_prob: float,
) -> v2.Transform:
    """The paper's training augmentation (docs/recipe.md) on uint8 clips: short side `short_side`, multi-scale crop to
    `crop_size`, horizontal flip, colour jitter, grayscale."""
    return v2.Compose(
        [
            v2.Resize(short_side, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            MultiScaleCrop(crop_size, scales),
            v2.RandomHorizontalFlip(flip_prob),
            v2.RandomApply(
                [v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=color_jitter_prob
            ),
            v2.RandomGrayscale(grayscale_prob),
        ]
    )


def evaluation_crops(
    clip: torch.Tensor, crop_height: int, crop_width: int, num_crops: int
) -> list[torch.Tensor]:
    """`num_crops` crops of a resized `(..., C, H, W)` clip: the centre, or the start, centre and end of the
    long side (the 4×3 protocol's spatial views). A side shorter than the crop is padded with zeros."""
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 (centre) or 3 (start, centre, end), got {num_crops}.")
    if num_crops == 1:
        return [tvF.center_crop(clip, [crop_height, crop_width])]
    height, width = clip.shape[-2:]
    if height < crop_height or width < crop_width:
        # center_crop pads a side shorter than the crop.
        clip = tvF.center_crop(clip, [max(height, crop_height), max(width, crop_width)])
        height, width = clip.shape[-2:]
    crops = []
    for position in (0.0, 0.5, 1.0):
        top = round((height - crop_height) * position) if height > width else (height - crop_height) // 2
        left = round((width - crop_width) * position) if width >= height else (width - crop_width) // 2
        crops.append(tvF.crop(clip, top, left, crop_height, crop_width))
    return crops
