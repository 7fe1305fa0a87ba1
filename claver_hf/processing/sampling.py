"""Frame index sampling (TSN segments, docs/recipe.md).

A video of `num_total_frames` frames is split into `num_frames` equal segments: segment `k` covers the
fractional frame range ``[k * L, (k + 1) * L)`` with ``L = num_total_frames / num_frames``. One frame is
taken per segment, at fractional position ``u`` inside it, as ``floor((k + u) * L)``:

- training: ``u ~ Uniform[0, 1)`` independently per segment (TSN random sampling);
- evaluation: ``u = 1/2``, the segment centre;
- multi-clip evaluation (`multi_clip_indices`): clip ``c`` of ``n`` uses ``u = (c + 1/2) / n``.

Short videos (``num_total_frames < num_frames``): segments are shorter than one frame, so the formula
yields repeated indices, e.g. 3 frames sampled to 8 give ``[0, 0, 0, 1, 1, 2, 2, 2]``. This is the
policy: every call returns exactly `num_frames` indices, sorted non-decreasing, all inside
``[0, num_total_frames)``; frames are repeated rather than dropped or padded with blanks.
"""

from __future__ import annotations

import torch


def _check_counts(num_total_frames: int, num_frames: int) -> None:
    if num_total_frames < 1:
        raise ValueError(f"Cannot sample frames from a video with num_total_frames={num_total_frames} (< 1).")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")


def segment_indices(
    num_total_frames: int,
    num_frames: int,
    *,
    training: bool,
    generator: torch.Generator | None = None,
) -> list[int]:
    """TSN segment sampling: one frame index per equal segment.

    Args:
        num_total_frames: number of frames in the video (>= 1).
        num_frames: number of indices to return, one per segment (>= 1).
        training: if True, a uniformly random frame of each segment; if False, each segment's centre
            frame ``floor((k + 0.5) * num_total_frames / num_frames)``.
        generator: random source for training sampling (ignored in evaluation); pass a seeded
            `torch.Generator` for reproducible indices.

    Returns:
        `num_frames` indices, sorted non-decreasing, each in ``[0, num_total_frames)``. They repeat when
        the video has fewer than `num_frames` frames (see the module docstring).

    Raises:
        ValueError: if `num_total_frames` < 1 (empty or unreadable video) or `num_frames` < 1.
    """
    _check_counts(num_total_frames, num_frames)
    if not training:
        return multi_clip_indices(num_total_frames, num_frames, 1)[0]
    offsets = torch.rand(num_frames, generator=generator, dtype=torch.float64).tolist()
    # min() guards the float product against landing exactly on num_total_frames.
    return [
        min(int((k + u) * num_total_frames / num_frames), num_total_frames - 1) for k, u in enumerate(offsets)
    ]


def multi_clip_indices(num_total_frames: int, num_frames: int, num_clips: int) -> list[list[int]]:
    """Evaluation views for multi-clip testing (the temporal part of the 4x3 views protocol).

    Every clip spans the whole video with one frame per TSN segment; clip ``c`` takes the frame at
    fractional offset ``(c + 0.5) / num_clips`` inside each segment, so the clips interleave evenly and
    ``num_clips=1`` is exactly ``segment_indices(..., training=False)`` (the segment centres). Example:
    100 frames, 4 frames per clip, 2 clips -> ``[[6, 31, 56, 81], [18, 43, 68, 93]]``. Spatial crops
    are not handled here.

    Args:
        num_total_frames: number of frames in the video (>= 1).
        num_frames: indices per clip (>= 1).
        num_clips: number of temporal clips (>= 1).

    Returns:
        `num_clips` lists of `num_frames` indices each, every list sorted non-decreasing with indices in
        ``[0, num_total_frames)``; indices repeat for videos shorter than `num_frames`.

    Raises:
        ValueError: if any count is < 1.
    """
    _check_counts(num_total_frames, num_frames)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}.")
    # floor((k + (c + 0.5) / n) * total / T) in exact integer arithmetic: no float rounding at segment edges.
    denominator = 2 * num_frames * num_clips
    return [
        [num_total_frames * (2 * num_clips * k + 2 * c + 1) // denominator for k in range(num_frames)]
        for c in range(num_clips)
    ]
