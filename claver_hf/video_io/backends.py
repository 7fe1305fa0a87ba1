"""`read_frames`: sampled frames of a video file from PyAV (default), torchcodec or decord."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .common import Backend, PathLike, VideoDecodingError, VideoInfo, check_path, check_range, sorted_unique
from .sparse_reader import read_frames_with_stats


def read_frames(
    path: PathLike,
    indices: Sequence[int],
    *,
    info: VideoInfo | None = None,
    backend: Backend = "pyav",
) -> np.ndarray:
    """Decode the frames at `indices` (index space and failure policy: `common`'s docstring).

    Args:
        path: the video file.
        indices: frame indices in ``[0, info.num_frames)``, any order, repeats allowed.
        info: `probe_video(path)`, if already known (saves probing again; its fps and frame count define
            the index space). Used by the ``"pyav"`` backend; other backends only range-check with it.
        backend: ``"pyav"`` (default); ``"torchcodec"`` or ``"decord"`` when that package is installed.
            Those return frames as their library decodes them, without applying rotation metadata.

    Returns:
        uint8 RGB array of shape ``(len(indices), H, W, 3)``, frame ``j`` being ``indices[j]``; with the
        pyav backend, H and W are the upright (rotated) size.

    Raises:
        VideoDecodingError: the file cannot be read.
        ValueError: `indices` is empty, negative or out of range, or `backend` is unknown.
        ImportError: the requested backend's package is not installed (the message names it).
    """
    if backend == "pyav":
        return read_frames_with_stats(path, indices, info=info)[0]
    if backend == "torchcodec":
        return _read_frames_torchcodec(path, indices, info)
    if backend == "decord":
        return _read_frames_decord(path, indices, info)
    raise ValueError(f"Unknown decoding backend {backend!r}; expected 'pyav', 'torchcodec' or 'decord'.")


def _read_frames_torchcodec(path: PathLike, indices: Sequence[int], info: VideoInfo | None) -> np.ndarray:
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        raise ImportError(
            "backend='torchcodec' needs the torchcodec package: pip install torchcodec"
        ) from err
    check_range(sorted_unique(indices), info)
    path_str = check_path(path)
    try:
        # get_frames_at returns the frames in the order asked, repeats included.
        batch = VideoDecoder(path_str, dimension_order="NHWC").get_frames_at(
            indices=[int(i) for i in indices]
        )
    except (RuntimeError, ValueError, OSError) as err:
        raise VideoDecodingError(path_str, str(err)) from err
    return batch.data.numpy()


def _read_frames_decord(path: PathLike, indices: Sequence[int], info: VideoInfo | None) -> np.ndarray:
    try:
        import decord
    except ImportError as err:
        raise ImportError("backend='decord' needs the decord package: pip install decord") from err
    check_range(sorted_unique(indices), info)
    path_str = check_path(path)
    try:
        batch = decord.VideoReader(path_str, ctx=decord.cpu(0)).get_batch([int(i) for i in indices])
    except (RuntimeError, ValueError, OSError) as err:  # decord's DECORDError is a RuntimeError
        raise VideoDecodingError(path_str, str(err)) from err
    # decord.bridge may be set to torch globally, in which case get_batch returns a tensor.
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
