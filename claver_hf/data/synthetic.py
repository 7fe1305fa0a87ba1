"""A synthetic action dataset whose classes differ only in motion direction and temporal order.

Ten classes in five reversed pairs: moving left / right, moving up / down, rotating clockwise /
anticlockwise, growing / shrinking, appearing / disappearing. Each clip shows one main object moving as its
class says, and everything that should not matter is drawn at random per clip from the clip's seed:

- the object: a shape (convex or not, rotationally symmetric or not), a surface texture (flat, stripes, two
  halves, an off-centre dot, in a pale tint of the object's colour: textures turn with the object), a vivid
  colour, a size;
- the background: flat, a linear gradient, smooth noise or stripes (checkerboards and radial gradients are held
  out, below), in two muted colours, with fine grain, plus noise that changes from frame to frame;
- the motion: start position, extent and so speed (slow ones included), when it starts and ends within the clip
  and its time profile (even, or speeding up then slowing down); rotations turn the object in place or carry it
  around a pivot from any start angle; growth starts from different sizes at different rates, geometric or
  linear; appearing fades in;
- small camera shake (the whole picture jitters by a pixel or two) and up to two small distractor objects that
  wander at random.

Rotation needs a visible orientation, and one that cannot be read the wrong way round: a rotating object is a
shape whose outline has no rotational symmetry (`ORIENTED_SHAPES`), or a circle (no outline cue at all) with a
texture that marks its orientation (two halves or a dot). A square or a cross turned by more than an eighth of a
turn between two frames a model sees looks turned the other way by the rest of the quarter turn, so such shapes
never rotate. Every rotation turns less than half a turn in all, so no step between any two frames can look like
the opposite sense either. Rotating objects are drawn larger than the objects of the other classes, so that their
orientation still shows at the demo's 32 pixels. Generators 6 and 7 made these choices after the rotations of
version 5, and then the in-place rotations of version 6, were told apart at chance; generator 8 draws in-place
rotations larger still and pivots closer, after those of version 7 were the demo's main error; generator 9 lets
the triangle rotate too (isosceles: one mirror axis, no rotational symmetry), so that training shows three oriented
outlines turning rather than two before the held-out split shows new ones (README, "Demo robustness").

The second class of each pair is the first one played backwards: `render_clip` draws every random choice
in the same way for both, renders the first class's motion and reverses the frame order for the second. So
for one random state the two clips hold exactly the same frames, and over the dataset the two classes have
the same distribution of frames: no single frame, and no order-free pooling of frames (the mean of
per-frame CLIP embeddings, say), tells a pair apart. Only a model of temporal order does. Every random
choice of the generator is symmetric in time (shake and grain are drawn independently per frame, distractors
wander without a preferred direction, the motion window's start and end have mirrored ranges), so no cue but
the motion's direction separates a pair.

Held-out split: ``heldout`` clips are drawn from shapes (`HELDOUT_SHAPES`: a T, a flag, a star, a hexagon) and
background kinds (`HELDOUT_BACKGROUNDS`: checkerboard, radial gradient) that no ``train``, ``validation`` or
``test`` clip contains, neither for the main object nor for a distractor: it measures whether a model learnt
the motions rather than the look of the training clips.

`write_synthetic_dataset` writes the clips as H.264 MP4 files with PyAV, in a layout that both
`VideoFolderDataset` and `AnnotationListDataset` read::

    output_dir/
      train/<class name>/0000.mp4 ...        (also validation/, test/, heldout/)
      classes.csv                            id,name in SYNTHETIC_CLASSES order
      train.txt, validation.txt, ...         "train/moving left/0000.mp4 0" lines (path, class id)
      clips.csv                              each clip's drawn factors (shape, texture, background, ...)
      prompt_bank.json                       the interpretive prompt bank of the classes
      settings.json                          seed and clip settings, checked when resuming

Class folders are named exactly as the classes, so the label names of both dataset classes match the
prompt bank's keys. Their ids differ: `VideoFolderDataset` numbers the classes in sorted folder order,
the annotation lists and `classes.csv` in `SYNTHETIC_CLASSES` order (pairs adjacent).

Every clip has its own seed, derived from ``(seed, split, class, index)``: the dataset is the same for a
seed whatever the number of worker processes, an interrupted run resumes where it stopped, and a rerun
with more clips per class keeps the existing ones and adds the rest.
"""

from __future__ import annotations

import colorsys
import csv
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..prompts.bank import PromptBank, load_prompt_bank
from .prepare import write_h264
from .symmetries import LabelSymmetries

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating anticlockwise",
    "growing",
    "shrinking",
    "appearing",
    "disappearing",
)
HELDOUT_SPLIT = "heldout"
SYNTHETIC_SPLITS: tuple[str, ...] = ("train", "validation", "test", HELDOUT_SPLIT)

# Bumped whenever the rendering or encoding changes what a seed produces: a dataset written by another
# version is not resumed.
_GENERATOR_VERSION = 9
_SETTINGS_FILE = "settings.json"

# Shapes as unions of convex polygons, in object units: each fits the unit disc around the origin, whose
# radius is the shape's size in pixels. "circle" is drawn from its exact distance function.
_STAR_TIPS = 0.95 * np.stack([np.cos(a := np.arange(5) * 2 * np.pi / 5), np.sin(a)], axis=1)
_STAR_INNER = 0.42 * np.stack([np.cos(a + np.pi / 5), np.sin(a + np.pi / 5)], axis=1)
_POLYGONS: dict[str, tuple[np.ndarray, ...]] = {
    "square": (np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]]),),
    "triangle": (np.array([[0.95, 0.0], [-0.6, 0.7], [-0.6, -0.7]]),),
    "arrow": (
        np.array([[-0.9, -0.22], [0.1, -0.22], [0.1, 0.22], [-0.9, 0.22]]),
        np.array([[0.95, 0.0], [0.1, 0.62], [0.1, -0.62]]),
    ),
    "L": (
        np.array([[-0.6, -0.75], [-0.2, -0.75], [-0.2, 0.75], [-0.6, 0.75]]),
        np.array([[-0.6, 0.35], [0.55, 0.35], [0.55, 0.75], [-0.6, 0.75]]),
    ),
    "cross": (
        np.array([[-0.9, -0.28], [0.9, -0.28], [0.9, 0.28], [-0.9, 0.28]]),
        np.array([[-0.28, -0.9], [0.28, -0.9], [0.28, 0.9], [-0.28, 0.9]]),
    ),
    # Held out of training (HELDOUT_SHAPES).
    "T": (
        np.array([[-0.85, -0.8], [0.85, -0.8], [0.85, -0.35], [-0.85, -0.35]]),
        np.array([[-0.22, -0.35], [0.22, -0.35], [0.22, 0.85], [-0.22, 0.85]]),
    ),
    "star": (
        _STAR_INNER,
        *(np.stack([_STAR_TIPS[k], _STAR_INNER[k - 1], _STAR_INNER[k]]) for k in range(5)),
    ),
    "hexagon": (0.9 * np.stack([np.cos(b := np.arange(6) * np.pi / 3), np.sin(b)], axis=1),),
    "flag": (
        np.array([[-0.55, -0.8], [-0.3, -0.8], [-0.3, 0.8], [-0.55, 0.8]]),
        np.array([[-0.3, -0.8], [0.85, -0.4], [-0.3, 0.0]]),
    ),
}
# Shapes of the train / validation / test clips, and those of the held-out split only.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "arrow", "L", "cross")
HELDOUT_SHAPES: tuple[str, ...] = ("T", "flag", "star", "hexagon")
# Shapes whose outline shows which way they point (no rotational symmetry). Rotating objects take one of these, or
# a circle with an orienting texture: a symmetric outline's turn reads as the opposite one beyond half its period.
# (The isosceles triangle is one of them since generator 9.)
ORIENTED_SHAPES: tuple[str, ...] = ("triangle", "arrow", "L", "T", "flag")
# Surface textures, in object coordinates (they turn with the object).
TEXTURES: tuple[str, ...] = ("flat", "stripes", "halves", "dot")
ORIENTING_TEXTURES: tuple[str, ...] = ("halves", "dot")
BACKGROUNDS: tuple[str, ...] = ("flat", "linear gradient", "noise", "stripes")
HELDOUT_BACKGROUNDS: tuple[str, ...] = ("checkerboard", "radial gradient")
ROTATION_MODES: tuple[str, ...] = ("in place", "around a pivot")


def _half_planes(polygon: np.ndarray) -> np.ndarray:
    """``(E, 3)`` rows ``(nx, ny, offset)`` of a convex polygon's edges, outward unit normals: inside,
    every ``n . p - offset`` is negative, and their maximum approximates the signed distance."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    offsets = (normals * polygon).sum(axis=1)
    # Outward means the centroid lies on the negative side, whichever way the vertices are listed.
    outward = np.where((normals @ polygon.mean(axis=0) - offsets) < 0, 1.0, -1.0)
    return np.concatenate([normals * outward[:, None], (offsets * outward)[:, None]], axis=1)


_HALF_PLANES = {name: tuple(_half_planes(p) for p in polygons) for name, polygons in _POLYGONS.items()}


@dataclass
class _Trajectory:
    """Per-frame pose of an object: centre ``(T, 2)`` as (x, y) pixels, size ``(T,)`` in pixels (radius of
    the unit disc), angle ``(T,)`` in radians (increasing is clockwise on screen, y pointing down) and
    opacity ``(T,)`` in [0, 1]."""

    centre: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    opacity: np.ndarray


@dataclass
class _Object:
    """One object to draw: shape, surface texture, its two colours ``(2, 3)`` and its trajectory."""

    shape: str
    texture: str
    colours: np.ndarray
    trajectory: _Trajectory


@dataclass(frozen=True)
class ClipFactors:
    """What a clip was drawn with, beyond its class (the `clips.csv` columns)."""

    shape: str
    texture: str
    background: str
    motion: str
    distractors: tuple[str, ...] = field(default=())


@dataclass
class ClipPlan:
    """Every random choice of one clip, drawn by `draw_clip`; `render_plan` turns it into frames."""

    class_name: str
    size: int
    objects: list[_Object]  # drawn in order: distractors first, the main object last
    background: np.ndarray  # (S + 2 margin, S + 2 margin, 3) floats in [0, 1]
    shake: np.ndarray  # (T, 2) integer camera offsets (x, y) within the margin
    noise_std: float  # per-frame grain
    noise_seed: int
    factors: ClipFactors


def draw_clip(
    class_name: str, rng: np.random.Generator, num_frames: int = 16, size: int = 64, heldout: bool = False
) -> ClipPlan:
    """Draw every random choice of one clip of `class_name` (see the module docstring).

    The second class of a pair consumes `rng` exactly as the first; its plan is the first class's, and
    `render_plan` plays it backwards.

    Args:
        class_name: one of `SYNTHETIC_CLASSES`.
        rng: source of every random choice.
        num_frames: frames in the clip, at least 2.
        size: height and width in pixels, at least 16.
        heldout: draw shapes from `HELDOUT_SHAPES` and backgrounds from `HELDOUT_BACKGROUNDS` (the held-out
            split) instead of `SHAPES` and `BACKGROUNDS`.
    """
    if class_name not in SYNTHETIC_CLASSES:
        raise ValueError(f"Unknown synthetic class {class_name!r}; expected one of {SYNTHETIC_CLASSES}.")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (motion needs two frames), got {num_frames}.")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")
    index = SYNTHETIC_CLASSES.index(class_name)
    forward_class = SYNTHETIC_CLASSES[index - index % 2]
    shapes = HELDOUT_SHAPES if heldout else SHAPES

    margin = max(1, int(np.ceil(0.04 * size)))
    background_kind = str(rng.choice(HELDOUT_BACKGROUNDS if heldout else BACKGROUNDS))
    background, background_colours = _background(rng, size + 2 * margin, background_kind)

    if forward_class == "rotating clockwise":  # an orientation that cannot be read the wrong way round
        shape = str(rng.choice([s for s in shapes if s in ORIENTED_SHAPES or s == "circle"]))
        texture = str(rng.choice(ORIENTING_TEXTURES if shape == "circle" else TEXTURES))
    else:
        shape, texture = str(rng.choice(shapes)), str(rng.choice(TEXTURES))
    progress = _time_profile(rng, num_frames)
    trajectory, motion = _FORWARD_MOTIONS[forward_class](rng, progress, size)
    main = _Object(shape, texture, _object_colours(rng, background_colours), trajectory)

    distractors = [
        _Object(
            str(rng.choice(shapes)),
            "flat",
            _object_colours(rng, background_colours),
            _wandering(rng, num_frames, size),
        )  # fmt: skip
        for _ in range(int(rng.integers(0, 3)))
    ]
    # Camera shake: a random offset per frame, up to a pixel or two at 64x64 (none in some clips).
    shake = np.clip(np.rint(rng.normal(0.0, rng.uniform(0.0, 0.02) * size, (num_frames, 2))), -margin, margin)
    return ClipPlan(
        class_name=class_name,
        size=size,
        objects=[*distractors, main],
        background=background,
        shake=shake.astype(int),
        noise_std=float(rng.uniform(0.0, 0.03)),
        noise_seed=int(rng.integers(2**31)),
        factors=ClipFactors(shape, texture, background_kind, motion, tuple(d.shape for d in distractors)),
    )


def render_plan(plan: ClipPlan) -> np.ndarray:
    """The frames of a drawn clip, ``(T, S, S, 3)`` uint8 RGB; reversed in time for the second class of a pair."""
    size, margin = plan.size, (plan.background.shape[0] - plan.size) // 2
    # The camera moves by the shake offset: the background window moves with it, objects shift against it.
    frames = np.stack(
        [
            plan.background[margin + dy : margin + dy + size, margin + dx : margin + dx + size]
            for dx, dy in plan.shake
        ]
    ).astype(np.float32)
    for obj in plan.objects:
        _composite(frames, obj, -plan.shake)
    frames += (
        np.random.default_rng(plan.noise_seed)
        .normal(0.0, plan.noise_std, frames.shape[:3] + (1,))
        .astype(np.float32)
    )
    frames = (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    reverse = SYNTHETIC_CLASSES.index(plan.class_name) % 2 == 1
    return frames[::-1].copy() if reverse else frames


def render_clip(
    class_name: str, rng: np.random.Generator, num_frames: int = 16, size: int = 64, heldout: bool = False
) -> np.ndarray:
    """Render one random clip of a synthetic class: ``render_plan(draw_clip(...))``.

    For a pair ``(a, b)`` and two generators in the same state, ``render_clip(b, rng_copy) ==
    render_clip(a, rng)[::-1]``, and both consume the generators alike.

    Returns:
        uint8 RGB frames of shape ``(num_frames, size, size, 3)``.
    """
    return render_plan(draw_clip(class_name, rng, num_frames, size, heldout))


def _time_profile(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Per-frame progress of the motion in [0, 1]: it starts in the first quarter of the clip, ends in the last
    and runs evenly or speeds up then slows down. Both are symmetric in time (the start and end ranges mirror
    each other; the smooth step is point-symmetric), so reversing a clip does not change their distribution."""
    time = np.linspace(0.0, 1.0, num_frames)
    begin, end = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
    progress = np.clip((time - begin) / (end - begin), 0.0, 1.0)
    if rng.random() < 0.5:
        progress = progress * progress * (3 - 2 * progress)
    return progress


def _moving(rng: np.random.Generator, progress: np.ndarray, size: int, axis: int) -> tuple[_Trajectory, str]:
    """Towards smaller coordinates along `axis` (0: left, 1: up), drifting a little across it, over 30 % to all
    of the free width: slow and fast."""
    radius = rng.uniform(0.1, 0.22) * size
    span = size - 2 * radius
    distance = rng.uniform(0.3, 1.0) * span
    drift = rng.uniform(-0.25, 0.25) * distance
    start = rng.uniform(radius + distance, size - radius)
    across = rng.uniform(radius + max(0.0, -drift), size - radius - max(0.0, drift))
    centre = np.empty((len(progress), 2))
    centre[:, axis] = start - distance * progress
    centre[:, 1 - axis] = across + drift * progress
    trajectory = _Trajectory(
        centre, np.full_like(progress, radius), _still_angle(rng, progress), np.ones_like(progress)
    )
    return trajectory, "translation"


def _rotating(rng: np.random.Generator, progress: np.ndarray, size: int) -> tuple[_Trajectory, str]:
    """Clockwise (the angle grows, y pointing down) from any start angle: in place around the object's centre, by 70
    to 160 degrees, or carried around a pivot near its edge (the object turning with its position, as on a wheel), by
    125 to 175 degrees (a shorter arc looks like a straight path). The whole turn stays below the half turn, so no
    step between any two frames, however few a model samples, can look like the opposite direction.

    Generator 8 draws rotating objects larger (in place 28-38 % of the frame instead of 22-36 %, around a pivot 18-24 %
    instead of 15-22 %) and keeps the pivot within 0.7-1.2 object radii (instead of 1.0-1.6): the smaller in-place
    objects and the wider arcs of generator 7 were the rotations most often taken for the other sense or a translation."""
    mode = str(rng.choice(ROTATION_MODES))
    start = rng.uniform(0.0, 2 * np.pi)
    turn = rng.uniform(0.4, 0.9) * np.pi if mode == "in place" else rng.uniform(0.7, 0.97) * np.pi
    angle = start + turn * progress
    # Larger than translated objects: an orientation must stay visible at the demo's 32 pixels.
    if mode == "in place":
        radius = rng.uniform(0.28, 0.38) * size
        centre = np.broadcast_to(rng.uniform(radius, size - radius, size=2), (len(progress), 2))
        return _Trajectory(centre, np.full_like(progress, radius), angle, np.ones_like(progress)), mode
    radius = rng.uniform(0.18, 0.24) * size
    orbit = min(rng.uniform(0.7, 1.2) * radius, size / 2 - radius - 1)
    pivot = rng.uniform(orbit + radius, size - orbit - radius, size=2)
    centre = pivot + orbit * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    heading = rng.uniform(0.0, 2 * np.pi)  # the object's orientation relative to the line from the pivot
    return _Trajectory(centre, np.full_like(progress, radius), angle + heading, np.ones_like(progress)), mode


def _growing(rng: np.random.Generator, progress: np.ndarray, size: int) -> tuple[_Trajectory, str]:
    """From a small size (8-15 % of the frame: smaller starts look like a fade-in at 32 pixels) to 1.8 to 4 times
    it, at a constant rate of growth (geometric) or of size (linear), staying in the frame."""
    small = rng.uniform(0.08, 0.15) * size
    large = min(small * rng.uniform(1.8, 4.0), 0.42 * size)
    geometric = rng.random() < 0.5
    radius = small * (large / small) ** progress if geometric else small + (large - small) * progress
    centre = rng.uniform(large, size - large, size=2)
    trajectory = _Trajectory(
        np.broadcast_to(centre, (len(progress), 2)),
        radius,
        _still_angle(rng, progress),
        np.ones_like(progress),
    )
    return trajectory, "geometric growth" if geometric else "linear growth"


def _appearing(rng: np.random.Generator, progress: np.ndarray, size: int) -> tuple[_Trajectory, str]:
    """Fading in from invisible to opaque as the motion progresses."""
    radius = rng.uniform(0.1, 0.3) * size
    centre = rng.uniform(radius, size - radius, size=2)
    trajectory = _Trajectory(
        np.broadcast_to(centre, (len(progress), 2)), np.full_like(progress, radius), _still_angle(rng, progress),
        progress.copy(),
    )  # fmt: skip
    return trajectory, "fade"


def _wandering(rng: np.random.Generator, num_frames: int, size: int) -> _Trajectory:
    """A small distractor on a random walk (no preferred direction, so also none in time)."""
    radius = rng.uniform(0.05, 0.09) * size
    steps = rng.normal(0.0, 0.02 * size, (num_frames, 2))
    steps[0] = rng.uniform(radius, size - radius, size=2)
    centre = np.clip(np.cumsum(steps, axis=0), radius, size - radius)
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0.0, 0.1, num_frames))
    return _Trajectory(centre, np.full(num_frames, radius), angle, np.ones(num_frames))


def _still_angle(rng: np.random.Generator, progress: np.ndarray) -> np.ndarray:
    return np.full_like(progress, rng.uniform(0, 2 * np.pi))


_FORWARD_MOTIONS = {
    "moving left": lambda rng, progress, size: _moving(rng, progress, size, axis=0),
    "moving up": lambda rng, progress, size: _moving(rng, progress, size, axis=1),
    "rotating clockwise": _rotating,
    "growing": _growing,
    "appearing": _appearing,
}


def _composite(frames: np.ndarray, obj: _Object, offset: np.ndarray) -> None:
    """Draw `obj` over float frames ``(T, S, S, 3)`` in place, anti-aliased over one pixel, its centre moved
    by `offset` ``(T, 2)`` pixels."""
    size = frames.shape[1]
    f32 = np.float32
    trajectory = obj.trajectory
    centre = (trajectory.centre + offset).astype(f32)
    coords = np.arange(size, dtype=f32) + 0.5  # pixel centres
    dx = coords[None, None, :] - centre[:, 0, None, None]
    dy = coords[None, :, None] - centre[:, 1, None, None]
    cos = np.cos(trajectory.angle).astype(f32)[:, None, None]
    sin = np.sin(trajectory.angle).astype(f32)[:, None, None]
    radius = trajectory.radius.astype(f32)[:, None, None]
    # Pixel offsets from the centre turned back by the object's angle: object axes, in pixels.
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    if obj.shape == "circle":
        distance = np.hypot(u, v) - radius
    else:
        # Signed distance in pixels: of a convex piece, the largest over its edges; of the union, the
        # smallest over its pieces.
        distance = np.full(u.shape, np.inf, dtype=f32)
        for planes in _HALF_PLANES[obj.shape]:
            piece = np.full(u.shape, -np.inf, dtype=f32)
            for nx, ny, offset_ in planes.astype(f32):
                np.maximum(piece, nx * u + ny * v - offset_ * radius, out=piece)
            np.minimum(distance, piece, out=distance)
    alpha = np.clip(0.5 - distance, 0.0, 1.0) * trajectory.opacity.astype(f32)[:, None, None]
    # Second-colour share of the surface, in object units (u, v divided by the radius).
    un, vn = u / radius, v / radius
    if obj.texture == "stripes":
        second = (np.sin(2.5 * np.pi * un) > 0).astype(f32)
    elif obj.texture == "halves":
        second = np.clip(0.5 + un * radius, 0.0, 1.0)  # anti-aliased along the dividing line
    elif obj.texture == "dot":
        second = np.clip(0.5 - (np.hypot(un - 0.45, vn) - 0.35) * radius, 0.0, 1.0)
    else:
        second = np.zeros_like(un)
    colours = obj.colours.astype(f32)
    colour = colours[0] + second[..., None] * (colours[1] - colours[0])
    frames += alpha[..., None] * (colour - frames)


def _background(rng: np.random.Generator, size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A background of `kind` in two muted colours plus fine grain: ``(S, S, 3)`` floats in [0, 1], and the two
    colours ``(2, 3)``."""
    colours = np.array([_hsv(rng, saturation=(0.0, 0.6), value=(0.1, 0.6)) for _ in range(2)])
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if kind == "flat":
        texture = np.zeros((size, size))
    elif kind == "linear gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = x * np.cos(angle) + y * np.sin(angle)
        texture = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    elif kind == "noise":  # smooth noise: a coarse random grid, bilinearly upsampled
        cells = int(rng.integers(3, 9))
        upsample = _bilinear_matrix(cells, size)
        texture = upsample @ rng.uniform(size=(cells, cells)) @ upsample.T
        texture = (texture - texture.min()) / max(np.ptp(texture), 1e-6)
    elif kind == "stripes":  # at a random angle and period
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(5, 16), rng.uniform(0, 2 * np.pi)
        texture = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    elif kind == "checkerboard":  # turned by a random angle
        angle, cell = rng.uniform(0, np.pi / 2), rng.uniform(4, 12)
        u = (x * np.cos(angle) + y * np.sin(angle)) / cell
        v = (y * np.cos(angle) - x * np.sin(angle)) / cell
        texture = (np.floor(u) + np.floor(v)) % 2
    elif kind == "radial gradient":  # around a random point, light falling off or rising outwards
        cx, cy = rng.uniform(0, size, size=2)
        distance = np.hypot(x - cx, y - cy)
        texture = distance / max(distance.max(), 1e-6)
    else:
        raise ValueError(f"Unknown background kind {kind!r}.")
    image = colours[0] + texture[..., None] * (colours[1] - colours[0])
    image += rng.normal(0.0, rng.uniform(0.0, 0.04), size=(size, size, 1))
    return np.clip(image, 0.0, 1.0), colours


def _bilinear_matrix(cells: int, size: int) -> np.ndarray:
    """``(size, cells)`` matrix interpolating `cells` samples (cell centres) to `size` pixel centres."""
    position = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    low = np.minimum(np.floor(position).astype(int), cells - 2) if cells > 1 else np.zeros(size, int)
    weight = position - low
    matrix = np.zeros((size, cells))
    matrix[np.arange(size), low] = 1 - weight
    if cells > 1:
        matrix[np.arange(size), low + 1] += weight
    return matrix


def _object_colours(rng: np.random.Generator, background_colours: np.ndarray) -> np.ndarray:
    """``(2, 3)``: a vivid colour that stands out from both background colours (redrawn until it does, a few
    times at most), and a pale tint of it for the texture's second part: lighter than the vivid colour and the
    muted backgrounds, so that a texture marking an orientation stays visible (a dark shade vanished into dark
    backgrounds)."""
    for _ in range(16):
        colour = _hsv(rng, saturation=(0.5, 1.0), value=(0.7, 1.0))
        if np.linalg.norm(background_colours - colour, axis=1).min() > 0.45:
            break
    return np.stack([colour, 1.0 - (1.0 - colour) * rng.uniform(0.05, 0.3)])


def _hsv(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 1] of random hue, with saturation and value drawn from the given ranges."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value)))


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, fps: int = 8, keyframe_interval: int = 4, crf: int = 18
) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames (H, W even) as H.264 yuv420p MP4.

    The rendered frames are exactly reproducible; the encoded ones are too in most runs, but they were seen to
    differ by about two grey levels on average between processes now and then (cause not found; one encoder
    thread did not remove it). Key frames come exactly every
    `keyframe_interval` frames and there are no B-frames (cheap seeks for sparse frame sampling). The file
    is written atomically (see `claver_hf.data.prepare.write_h264`).
    """
    path = Path(path)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}.")
    write_h264(
        path, frames, width=width, height=height, rate=fps, keyframe_interval=keyframe_interval, crf=crf,
        threads=1,
    )  # fmt: skip


def synthetic_prompt_bank() -> PromptBank:
    """The interpretive prompt bank of `SYNTHETIC_CLASSES` (shipped as ``prompts/banks/synthetic.json``)."""
    return load_prompt_bank("synthetic")


def synthetic_label_symmetries() -> LabelSymmetries:
    """The class each of `SYNTHETIC_CLASSES` becomes when its clips are mirrored or played backwards: a mirror image
    swaps the directions along the mirrored axis and the sense of rotation, the transpose (mirror along the
    diagonal) also left with up, the reversal each class with its pair. The generator draws every other factor
    symmetrically, so a transformed clip is a clip of its new class."""

    def swapping(*pairs: tuple[str, str]) -> dict[str, str]:
        label_map = {name: name for name in SYNTHETIC_CLASSES}
        for first, second in pairs:
            label_map[first], label_map[second] = second, first
        return label_map

    sense = ("rotating clockwise", "rotating anticlockwise")
    return LabelSymmetries(
        {
            "horizontal_flip": swapping(("moving left", "moving right"), sense),
            "vertical_flip": swapping(("moving up", "moving down"), sense),
            "transpose": swapping(("moving left", "moving up"), ("moving right", "moving down"), sense),
            "time_reversal": swapping(*zip(SYNTHETIC_CLASSES[::2], SYNTHETIC_CLASSES[1::2], strict=True)),
        }
    )


@dataclass(frozen=True)
class _ClipJob:
    path: Path
    plan: ClipPlan
    fps: int


def _make_clip(job: _ClipJob) -> None:
    """Render and write one clip (runs in worker processes)."""
    write_mp4(job.path, render_plan(job.plan), fps=job.fps)


def write_synthetic_dataset(
    output_dir: str | os.PathLike,
    *,
    num_train_per_class: int = 80,
    num_val_per_class: int = 20,
    num_test_per_class: int = 20,
    num_heldout_per_class: int = 20,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    progress: bool = True,
    num_workers: int = 1,
) -> dict[str, Any]:
    """Write the synthetic action dataset (layout in the module docstring) as MP4 files.

    Clips that already exist are kept, so an interrupted run resumes, and a rerun with larger counts adds
    clips. Resuming with another seed, clip size, frame count or frame rate is refused (``settings.json``
    records them), since it would mix two datasets in one folder. ``classes.csv``, ``clips.csv``, the annotation
    lists and ``prompt_bank.json`` are rewritten on every call (drawing a clip's factors is cheap; rendering
    and encoding it is not).

    Args:
        output_dir: the dataset folder (created if needed).
        num_train_per_class, num_val_per_class, num_test_per_class, num_heldout_per_class: clips per class of
            each split (the held-out one with held-out shapes and backgrounds).
        num_frames: frames per clip, at least 2.
        size: frame height and width in pixels: even (yuv420p) and at least 16.
        fps: frame rate written to the files.
        seed: seed of the whole dataset; each clip's generator is seeded with ``(seed, split, class, index)``.
        progress: show a progress bar.
        num_workers: processes rendering and encoding in parallel; 1 works in this process.

    Returns:
        A dict with ``root`` (the output folder), ``classes`` (`SYNTHETIC_CLASSES` as a list), ``counts``
        (split -> number of clips), ``written`` and ``skipped`` (clips encoded by this call, or found
        already written), ``classes_csv``, ``clips_csv``, ``lists`` (split -> annotation list path) and
        ``prompt_bank`` (paths).

    Raises:
        ValueError: invalid settings, or `output_dir` holds a dataset written with other settings.
    """
    counts = dict(
        zip(
            SYNTHETIC_SPLITS,
            (num_train_per_class, num_val_per_class, num_test_per_class, num_heldout_per_class),
            strict=True,
        )
    )
    if any(count < 0 for count in counts.values()):
        raise ValueError(f"Clip counts per class must not be negative, got {counts}.")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even (yuv420p) and at least 16 pixels, got {size}.")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}.")
    if fps < 1:
        raise ValueError(f"fps must be at least 1, got {fps}.")
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}.")

    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "generator_version": _GENERATOR_VERSION,
        "seed": seed,
        "num_frames": num_frames,
        "size": size,
        "fps": fps,
    }
    settings_path = root / _SETTINGS_FILE
    if settings_path.exists():
        previous = json.loads(settings_path.read_text("utf-8"))
        if previous != settings:
            raise ValueError(
                f"{root} holds a synthetic dataset written with {previous}, not {settings}: "
                "choose another folder (or delete it) to write a different one."
            )
    settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    digits = max(4, len(str(max(counts.values(), default=1) - 1)))
    jobs, skipped, lists, factors = [], 0, {}, []
    for split_id, split in enumerate(SYNTHETIC_SPLITS):
        lines = []
        for class_id, class_name in enumerate(SYNTHETIC_CLASSES):
            (root / split / class_name).mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                relative = f"{split}/{class_name}/{index:0{digits}d}.mp4"
                lines.append(f"{relative} {class_id}\n")
                rng = np.random.default_rng((seed, split_id, class_id, index))
                plan = draw_clip(class_name, rng, num_frames, size, heldout=split == HELDOUT_SPLIT)
                factors.append((relative, class_name, plan.factors))
                if (root / relative).exists():
                    skipped += 1
                else:
                    jobs.append(_ClipJob(root / relative, plan, fps))
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("".join(lines), encoding="utf-8")

    clips_csv = root / "clips.csv"
    with open(clips_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "class", "shape", "texture", "background", "motion", "distractors"])
        writer.writerows(
            [path, name, f.shape, f.texture, f.background, f.motion, " ".join(f.distractors)]
            for path, name, f in factors
        )
    classes_csv = root / "classes.csv"
    with open(classes_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name"])
        writer.writerows(enumerate(SYNTHETIC_CLASSES))
    prompt_bank = root / "prompt_bank.json"
    synthetic_prompt_bank().save(prompt_bank)

    with tqdm(
        total=len(jobs) + skipped,
        initial=skipped,
        unit="clip",
        desc="Writing synthetic clips",
        disable=not progress,
    ) as bar:
        for _ in _run_jobs(jobs, min(num_workers, max(1, len(jobs)))):
            bar.update()

    return {
        "root": root,
        "classes": list(SYNTHETIC_CLASSES),
        "counts": {split: count * len(SYNTHETIC_CLASSES) for split, count in counts.items()},
        "written": len(jobs),
        "skipped": skipped,
        "classes_csv": classes_csv,
        "clips_csv": clips_csv,
        "lists": lists,
        "prompt_bank": prompt_bank,
    }


def _run_jobs(jobs: Sequence[_ClipJob], num_workers: int) -> Iterator[None]:
    """Make every clip, yielding once per finished clip."""
    if num_workers <= 1:
        for job in jobs:
            yield _make_clip(job)
        return
    pool = ProcessPoolExecutor(max_workers=num_workers)
    try:
        # Clips take milliseconds: chunks keep the inter-process traffic small next to the work.
        yield from pool.map(_make_clip, jobs, chunksize=8)
    finally:
        # On Ctrl-C (or an error in the caller), queued clips are dropped instead of run to the end.
        pool.shutdown(cancel_futures=True)


__all__ = [
    "BACKGROUNDS",
    "HELDOUT_BACKGROUNDS",
    "HELDOUT_SHAPES",
    "HELDOUT_SPLIT",
    "ORIENTED_SHAPES",
    "SHAPES",
    "TEXTURES",
    "ClipFactors",
    "ClipPlan",
    "draw_clip",
    "render_plan",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLITS",
    "render_clip",
    "synthetic_prompt_bank",
    "write_mp4",
    "write_synthetic_dataset",
]
