"""Label-mapped augmentations: mirror or reverse a training clip and give it the class it then shows.

The usual horizontal flip is wrong for classes named by a direction: the mirror image of "moving left" shows
"moving right", of "pushing something from left to right" (Something-Something v2) "pushing something from
right to left". `flip_prob=0` avoids the error by dropping the augmentation. A label map keeps it: for each
transformation, the class each class becomes. For the synthetic motion classes every class has one, for all
four transformations below, which multiplies the distinct training clips by 16 and shows the model the same
motion in every direction.

A label map names every class of the dataset, so that none is relabelled by mistake:

```json
{
  "horizontal_flip": {"moving left": "moving right", "moving right": "moving left", "growing": "growing"},
  "time_reversal": {"growing": "shrinking", "shrinking": "growing", "moving left": null}
}
```

A class maps to itself when the transformation leaves it what it is, and to ``null`` when it has no known image
(its clips are then never transformed). The transformations are mirror images or reversals, each its own
inverse, so each map must be too: ``a -> b`` needs ``b -> a``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

# Transformations of a processed clip (..., T, C, H, W): each is its own inverse.
CLIP_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "horizontal_flip": lambda clip: clip.flip(-1),
    "vertical_flip": lambda clip: clip.flip(-2),
    "transpose": lambda clip: clip.transpose(-1, -2),  # mirror along the main diagonal: left <-> up
    "time_reversal": lambda clip: clip.flip(-4),
}


@dataclass(frozen=True)
class LabelSymmetries:
    """For each transformation of `CLIP_TRANSFORMS` it names, the class each class becomes (`None`: not known, the
    class's clips are not transformed)."""

    label_maps: Mapping[str, Mapping[str, str | None]]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.label_maps) - set(CLIP_TRANSFORMS))
        if unknown:
            raise ValueError(
                f"Unknown transformations {unknown} in label symmetries; expected {sorted(CLIP_TRANSFORMS)}."
            )
        for name, label_map in self.label_maps.items():
            for source, image in label_map.items():
                if image is not None and label_map.get(image, "<missing>") != source:
                    raise ValueError(
                        f"Label symmetry {name!r} maps {source!r} to {image!r} but {image!r} to "
                        f"{label_map.get(image, '<nothing>')!r}: a mirror image or reversal undoes itself, so "
                        f"{image!r} must map back to {source!r}."
                    )

    def permutations(self, id2label: Mapping[int, str]) -> dict[str, torch.Tensor]:
        """Per transformation, the `(num_classes,)` class id each class id becomes (-1: not transformed), checked
        against the dataset's classes: each map must name every class, and only those."""
        label2id = {label: index for index, label in id2label.items()}
        permutations = {}
        for name, label_map in self.label_maps.items():
            missing = sorted(set(label2id) - set(label_map))
            extra = sorted(set(label_map) - set(label2id))
            if missing or extra:
                raise ValueError(
                    f"Label symmetry {name!r} must name every class of the dataset and only those: missing "
                    f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unknown {extra[:5]}"
                    f"{' ...' if len(extra) > 5 else ''}. Map a class to itself if {name} leaves it unchanged, "
                    "or to null if its clips should not be transformed."
                )
            permutation = torch.full((len(id2label),), -1, dtype=torch.long)
            for label, index in label2id.items():
                if label_map[label] is not None:
                    permutation[index] = label2id[label_map[label]]
            permutations[name] = permutation
        return permutations


class LabelSymmetryAugmentation:
    """Apply each transformation of `symmetries` with probability `probability` to a processed training clip
    `(T, C, H, W)`, in a fixed order, relabelling the clip as the map says; clips whose class maps to `null` are
    left as they are. Randomness comes from torch's global generator (which the datasets seed per item)."""

    def __init__(self, symmetries: LabelSymmetries, id2label: Mapping[int, str], probability: float = 0.5):
        if not 0 <= probability <= 1:
            raise ValueError(f"The probability of a label symmetry must be in [0, 1], got {probability}.")
        self.permutations = symmetries.permutations(id2label)
        self.probability = probability

    def __call__(self, clip: torch.Tensor, label: int) -> tuple[torch.Tensor, int]:
        for name, permutation in self.permutations.items():
            # Drawn for every clip, so a class's own items consume the same randomness as any other's.
            apply = bool(torch.rand(()) < self.probability)
            image = int(permutation[label])
            if apply and image >= 0:
                clip, label = CLIP_TRANSFORMS[name](clip), image
        return clip, label


def symmetric_views(permutations: Mapping[str, torch.Tensor]) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    """The test-time views a set of label symmetries gives: every composition of the transformations (``2**k``
    views for `k` of them, the unchanged clip first), each with the `(num_classes,)` permutation it induces (class
    ``c`` of the original clip shows as class ``permutation[c]`` in the view).

    `permutations` are those of [`LabelSymmetries.permutations`], for the transformations to average over. Each
    must be a whole permutation: a class mapped to ``null`` has no known image, so a view would have no label to
    read it back as. Horizontal flip, vertical flip and transpose give the 8 mirror images and quarter turns.
    """
    if not permutations:
        raise ValueError("Symmetric views need at least one label symmetry.")
    views: list[tuple[tuple[str, ...], torch.Tensor]] = []
    for name, permutation in permutations.items():
        if (permutation < 0).any():
            raise ValueError(
                f"Label symmetry {name!r} maps class ids {(permutation < 0).nonzero().flatten().tolist()} to null: a "
                "test-time view needs every class's image, so leave this transformation out of the test views."
            )
    for included in itertools.product((False, True), repeat=len(permutations)):
        names = tuple(name for name, use in zip(permutations, included, strict=True) if use)
        composed = torch.arange(len(next(iter(permutations.values()))))
        for name in names:  # applied in this order to the clip, so to its class too
            composed = permutations[name][composed]
        views.append((names, composed))
    return views


def transform_clips(pixel_values: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """Apply the transformations `names` of `CLIP_TRANSFORMS`, in order, to clips `(..., T, C, H, W)`."""
    if "transpose" in names and pixel_values.shape[-1] != pixel_values.shape[-2]:
        raise ValueError(
            f"The transpose view needs square frames, got {tuple(pixel_values.shape[-2:])} (H, W)."
        )
    for name in names:
        pixel_values = CLIP_TRANSFORMS[name](pixel_values)
    return pixel_values


def load_label_symmetries(name_or_path: str | os.PathLike) -> LabelSymmetries:
    """`"synthetic"` (those of `SYNTHETIC_CLASSES`) or a JSON file of label maps (module docstring)."""
    if str(name_or_path) == "synthetic":
        from .synthetic import synthetic_label_symmetries

        return synthetic_label_symmetries()
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"Label symmetries {str(name_or_path)!r} are neither 'synthetic' nor a JSON file.")
    try:
        label_maps = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Label symmetries file {path} is not valid JSON: {error}") from error
    if not isinstance(label_maps, dict) or not all(isinstance(m, dict) for m in label_maps.values()):
        raise ValueError(
            f"Label symmetries file {path} must hold an object of objects: transformation -> class -> class."
        )
    return LabelSymmetries(label_maps)
