"""A synthetic action dataset whose classes differ only in motion direction and temporal order.

Ten classes in five reversed pairs: moving left / right, moving up / down, rotating clockwise /
anticlockwise, growing / shrinking, appearing / disappearing. Each clip shows one flat-coloured shape (circle,
square, triangle, arrow or L; rotations swing an arrow, triangle or L over a pivot below it like a
metronome's arm) over a textured background (smooth noise, stripes or a checkerboard in two muted colours, with
fine grain), with random shape, colours, size, position, extent and speed of the motion.

The second class of each pair is the first one played backwards: `render_clip` draws every random choice
in the same way for both, renders the first class's motion and reverses the frame order for the second. So
for one random state the two clips hold exactly the same frames, and over the dataset the two classes have
the same distribution of frames: no single frame, and no order-free pooling of frames (the mean of
per-frame CLIP embeddings, say), tells a pair apart. Only a model of temporal order does.

`write_synthetic_dataset` writes the clips as H.264 MP4 files with PyAV, in a layout that both
`VideoFolderDataset` and `AnnotationListDataset` read::

    output_dir/
      train/<class name>/0000.mp4 ...        (also validation/, test/)
      classes.csv                            id,name in SYNTHETIC_CLASSES order
      train.txt, validation.txt, test.txt    "train/moving left/0000.mp4 0" lines (path, class id)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..prompts.bank import PromptBank, load_prompt_bank
from .prepare import write_h264

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
SYNTHETIC_SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Bumped whenever the rendering or encoding changes what a seed produces: a dataset written by another
# version is not resumed.
_GENERATOR_VERSION = 4
_SETTINGS_FILE = "settings.json"

# Shapes as unions of convex polygons, in object units: each fits the unit disc around the origin, whose
# radius is the shape's size in pixels. "circle" is drawn from its exact distance function.
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
}
SHAPES: tuple[str, ...] = ("circle", *_POLYGONS)
# Shapes that point away from the pivot they swing around (a circle would seem to orbit, not turn).
ROTATION_SHAPES: tuple[str, ...] = ("arrow", "triangle", "L")


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
    """Per-frame pose of the shape: centre ``(T, 2)`` as (x, y) pixels, size ``(T,)`` in pixels (radius of
    the unit disc), angle ``(T,)`` in radians (increasing is clockwise on screen, y pointing down) and
    opacity ``(T,)`` in [0, 1]."""

    centre: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    opacity: np.ndarray


def render_clip(
    class_name: str, rng: np.random.Generator, num_frames: int = 16, size: int = 64
) -> np.ndarray:
    """Render one random clip of a synthetic class.

    The second class of a pair (``SYNTHETIC_CLASSES[1::2]``) consumes `rng` exactly as the first and
    returns the first class's clip reversed in time: ``render_clip(b, rng_copy) == render_clip(a, rng)[::-1]``
    for a pair ``(a, b)`` and two generators in the same state.

    Args:
        class_name: one of `SYNTHETIC_CLASSES`.
        rng: source of every random choice (shape, colours, background, size, position, motion).
        num_frames: frames in the clip, at least 2.
        size: height and width in pixels, at least 16.

    Returns:
        uint8 RGB frames of shape ``(num_frames, size, size, 3)``.
    """
    if class_name not in SYNTHETIC_CLASSES:
        raise ValueError(f"Unknown synthetic class {class_name!r}; expected one of {SYNTHETIC_CLASSES}.")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (motion needs two frames), got {num_frames}.")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")
    index = SYNTHETIC_CLASSES.index(class_name)
    forward_class, reverse = SYNTHETIC_CLASSES[index - index % 2], index % 2 == 1

    shape = str(rng.choice(ROTATION_SHAPES if forward_class == "rotating clockwise" else SHAPES))
    background, background_colours = _background(rng, size)
    colour = _object_colour(rng, background_colours)
    progress = np.linspace(0.0, 1.0, num_frames)
    trajectory = _FORWARD_MOTIONS[forward_class](rng, progress, size)
    frames = _render(shape, trajectory, colour, background)
    return frames[::-1].copy() if reverse else frames


def _moving(rng: np.random.Generator, progress: np.ndarray, size: int, axis: int) -> _Trajectory:
    """Towards smaller coordinates along `axis` (0: left, 1: up), drifting a little across it, over most of the
    frame: a tiny model sees 32-pixel frames in 8-pixel patches, so the shape spans one or two patches and
    crosses at least two."""
    radius = rng.uniform(0.14, 0.22) * size
    span = size - 2 * radius
    distance = rng.uniform(0.75, 1.0) * span
    drift = rng.uniform(-0.2, 0.2) * distance
    start = rng.uniform(radius + distance, size - radius)
    across = rng.uniform(radius + max(0.0, -drift), size - radius - max(0.0, drift))
    centre = np.empty((len(progress), 2))
    centre[:, axis] = start - distance * progress
    centre[:, 1 - axis] = across + drift * progress
    return _Trajectory(
        centre, np.full_like(progress, radius), _still_angle(rng, progress), np.ones_like(progress)
    )


def _rotating(rng: np.random.Generator, progress: np.ndarray, size: int) -> _Trajectory:
    """Clockwise by 108 to 162 degrees around a pivot in the middle or lower half of the frame, over the top
    like a metronome's arm or a wiper: the shape points away from the pivot, one radius from it, and its swing
    is centred within 27 degrees of straight up. Clockwise then carries the shape from left to right,
    anticlockwise (the same frames backwards) from right to left. Starting at any angle (generator v3), the
    direction is the sign of a cross product of position and motion, which the demo's tiny model read at chance
    (README). Steps are at most 11 degrees from frame to frame in 16 frames, far below the half turn at which a
    step could look like the opposite direction."""
    radius = rng.uniform(0.2, 0.25) * size
    # The shape reaches two radii above the pivot and to either side of it, and at most 1.4 radii below it.
    pivot_x = size / 2 + rng.uniform(-1.0, 1.0) * (size / 2 - 2 * radius)
    pivot_y = size - 1.5 * radius - rng.uniform(0.0, 0.1) * size
    pivot = np.array([pivot_x, pivot_y])
    middle, turn = -np.pi / 2 + rng.uniform(-0.15, 0.15) * np.pi, rng.uniform(0.6, 0.9) * np.pi
    angle = middle + turn * (progress - 0.5)
    centre = pivot + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _Trajectory(centre, np.full_like(progress, radius), angle, np.ones_like(progress))


def _growing(rng: np.random.Generator, progress: np.ndarray, size: int) -> _Trajectory:
    """From a small to a large size, geometrically (a constant rate of growth), staying in the frame."""
    small, large = rng.uniform(0.06, 0.12) * size, rng.uniform(0.3, 0.45) * size
    centre = rng.uniform(large, size - large, size=2)
    return _Trajectory(
        np.broadcast_to(centre, (len(progress), 2)),
        small * (large / small) ** progress,
        _still_angle(rng, progress),
        np.ones_like(progress),
    )


def _appearing(rng: np.random.Generator, progress: np.ndarray, size: int) -> _Trajectory:
    """Fading in linearly between a random start (first third) and end (last third) of the clip."""
    radius = rng.uniform(0.15, 0.3) * size
    centre = rng.uniform(radius, size - radius, size=2)
    begin, end = rng.uniform(0.0, 0.35), rng.uniform(0.65, 1.0)
    return _Trajectory(
        np.broadcast_to(centre, (len(progress), 2)),
        np.full_like(progress, radius),
        _still_angle(rng, progress),
        np.clip((progress - begin) / (end - begin), 0.0, 1.0),
    )


def _still_angle(rng: np.random.Generator, progress: np.ndarray) -> np.ndarray:
    return np.full_like(progress, rng.uniform(0, 2 * np.pi))


_FORWARD_MOTIONS = {
    "moving left": lambda rng, progress, size: _moving(rng, progress, size, axis=0),
    "moving up": lambda rng, progress, size: _moving(rng, progress, size, axis=1),
    "rotating clockwise": _rotating,
    "growing": _growing,
    "appearing": _appearing,
}


def _render(shape: str, trajectory: _Trajectory, colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Composite the shape over the background, anti-aliased over one pixel: ``(T, S, S, 3)`` uint8."""
    size = background.shape[0]
    f32 = np.float32
    coords = np.arange(size, dtype=f32) + 0.5  # pixel centres
    dx = coords[None, None, :] - trajectory.centre[:, 0, None, None].astype(f32)
    dy = coords[None, :, None] - trajectory.centre[:, 1, None, None].astype(f32)
    cos = np.cos(trajectory.angle).astype(f32)[:, None, None]
    sin = np.sin(trajectory.angle).astype(f32)[:, None, None]
    radius = trajectory.radius.astype(f32)[:, None, None]
    # Pixel offsets from the centre turned back by the shape's angle: object axes, in pixels.
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    if shape == "circle":
        distance = np.hypot(u, v) - radius
    else:
        # Signed distance in pixels: of a convex piece, the largest over its edges; of the union, the
        # smallest over its pieces.
        distance = np.full(u.shape, np.inf, dtype=f32)
        for planes in _HALF_PLANES[shape]:
            piece = np.full(u.shape, -np.inf, dtype=f32)
            for nx, ny, offset in planes.astype(f32):
                np.maximum(piece, nx * u + ny * v - offset * radius, out=piece)
            np.minimum(distance, piece, out=distance)
    alpha = np.clip(0.5 - distance, 0.0, 1.0) * trajectory.opacity.astype(f32)[:, None, None]
    base = background.astype(f32)
    frames = base + alpha[..., None] * (colour.astype(f32) - base)
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A random texture in two muted colours plus fine grain: ``(S, S, 3)`` floats in [0, 1], and the two
    colours ``(2, 3)``."""
    colours = np.array([_hsv(rng, saturation=(0.0, 0.6), value=(0.1, 0.55)) for _ in range(2)])
    kind = rng.integers(3)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if kind == 0:  # smooth noise: a coarse random grid, bilinearly upsampled
        cells = int(rng.integers(3, 9))
        upsample = _bilinear_matrix(cells, size)
        texture = upsample @ rng.uniform(size=(cells, cells)) @ upsample.T
        texture = (texture - texture.min()) / max(np.ptp(texture), 1e-6)
    elif kind == 1:  # stripes at a random angle and period
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(5, 16), rng.uniform(0, 2 * np.pi)
        texture = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    else:  # a checkerboard, turned by a random angle
        angle, cell = rng.uniform(0, np.pi / 2), rng.uniform(4, 12)
        u = (x * np.cos(angle) + y * np.sin(angle)) / cell
        v = (y * np.cos(angle) - x * np.sin(angle)) / cell
        texture = (np.floor(u) + np.floor(v)) % 2
    image = colours[0] + texture[..., None] * (colours[1] - colours[0])
    image += rng.normal(0.0, 0.03, size=(size, size, 1))
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


def _object_colour(rng: np.random.Generator, background_colours: np.ndarray) -> np.ndarray:
    """A vivid colour that stands out from both background colours (redrawn until it does, a few times at most)."""
    for _ in range(16):
        colour = _hsv(rng, saturation=(0.5, 1.0), value=(0.7, 1.0))
        if np.linalg.norm(background_colours - colour, axis=1).min() > 0.45:
            break
    return colour


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


@dataclass(frozen=True)
class _ClipJob:
    path: Path
    class_name: str
    seed: tuple[int, int, int, int]
    num_frames: int
    size: int
    fps: int


def _make_clip(job: _ClipJob) -> None:
    """Render and write one clip (runs in worker processes)."""
    frames = render_clip(job.class_name, np.random.default_rng(job.seed), job.num_frames, job.size)
    write_mp4(job.path, frames, fps=job.fps)


def write_synthetic_dataset(
    output_dir: str | os.PathLike,
    *,
    num_train_per_class: int = 80,
    num_val_per_class: int = 20,
    num_test_per_class: int = 20,
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
    records them), since it would mix two datasets in one folder. ``classes.csv``, the annotation lists and
    ``prompt_bank.json`` are rewritten on every call.

    Args:
        output_dir: the dataset folder (created if needed).
        num_train_per_class, num_val_per_class, num_test_per_class: clips per class of each split.
        num_frames: frames per clip, at least 2.
        size: frame height and width in pixels: even (yuv420p) and at least 16.
        fps: frame rate written to the files.
        seed: seed of the whole dataset; each clip's generator is seeded with ``(seed, split, class, index)``.
        progress: show a progress bar.
        num_workers: processes rendering and encoding in parallel; 1 works in this process.

    Returns:
        A dict with ``root`` (the output folder), ``classes`` (`SYNTHETIC_CLASSES` as a list), ``counts``
        (split -> number of clips), ``written`` and ``skipped`` (clips encoded by this call, or found
        already written), ``classes_csv``, ``lists`` (split -> annotation list path) and ``prompt_bank``
        (paths).

    Raises:
        ValueError: invalid settings, or `output_dir` holds a dataset written with other settings.
    """
    counts = dict(
        zip(SYNTHETIC_SPLITS, (num_train_per_class, num_val_per_class, num_test_per_class), strict=True)
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
    jobs, skipped, lists = [], 0, {}
    for split_id, split in enumerate(SYNTHETIC_SPLITS):
        lines = []
        for class_id, class_name in enumerate(SYNTHETIC_CLASSES):
            (root / split / class_name).mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                relative = f"{split}/{class_name}/{index:0{digits}d}.mp4"
                lines.append(f"{relative} {class_id}\n")
                if (root / relative).exists():
                    skipped += 1
                else:
                    seed_key = (seed, split_id, class_id, index)
                    jobs.append(_ClipJob(root / relative, class_name, seed_key, num_frames, size, fps))
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("".join(lines), encoding="utf-8")

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
    "ROTATION_SHAPES",
    "SHAPES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLITS",
    "render_clip",
    "synthetic_prompt_bank",
    "write_mp4",
    "write_synthetic_dataset",
]
