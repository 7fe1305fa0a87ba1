"""ClaverVideoProcessor: video files or decoded frames -> CLAVER's `pixel_values`."""

# No `from __future__ import annotations`: transformers validates call arguments against the annotations of
# `ClaverVideoProcessorKwargs`, which must then be types, not strings.

import os
from functools import partial
from typing import Any

import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import TensorType
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata, make_batched_metadata

from .._compat import standardize_video_kwargs
from ..remote_code import save_remote_code
from ..video_io.backends import read_frames
from ..video_io.container import probe_video
from .sampling import multi_clip_indices, segment_indices
from .transforms import evaluation_crops, training_transform


class ClaverVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    training (`bool`, *optional*, defaults to `self.training`):
        Random TSN sampling and the training augmentation (one clip, one view) instead of the evaluation views.
    num_clips (`int`, *optional*, defaults to `self.num_clips`):
        Temporal clips per video at evaluation.
    num_crops (`int`, *optional*, defaults to `self.num_crops`):
        Spatial crops per clip at evaluation: 1 (centre) or 3 (start, centre and end of the long side).
    decoding_backend (`str`, *optional*, defaults to `self.decoding_backend`):
        `"pyav"`, `"torchcodec"` or `"decord"`: the library that decodes video files.
    generator (`torch.Generator`, *optional*):
        Random source of the training frame sampling.
    """

    training: bool | None
    num_clips: int | None
    num_crops: int | None
    decoding_backend: str | None
    generator: torch.Generator | None


class ClaverVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into CLAVER's `pixel_values` `(B, T, 3, H, W)`, normalised with CLIP's mean and std.

    Accepted inputs, one video or a batch: a path (decoded with PyAV, reading only the sampled frames), a list
    of paths, an array or tensor `(T, H, W, C)` or `(T, C, H, W)` (uint8 in [0, 255] or float in [0, 1];
    `C` = 1 or 3), a 5-D batch of those, a list of PIL images, or a list of any of these.

    Frame sampling (TSN): `num_frames` equal segments; evaluation takes each segment's centre, `training=True` a
    random frame per segment. Videos with fewer frames than `num_frames` repeat frames. `fps` instead of
    `num_frames` takes `fps` frames per second of video (the frame rate of a file is read from it, that of
    decoded frames comes from `video_metadata`). With `do_sample_frames=False` the frames are used as given: a
    file is decoded whole, and the frames of each video are split into `num_clips` consecutive clips of equal
    length (one clip by default).

    Evaluation views: `num_clips` temporal clips × `num_crops` spatial crops (1 = centre; 3 = start, centre and
    end of the long side, after resizing to `size`). With more than one view the output's `pixel_values` is
    `(B·V, T, 3, H, W)`, grouped by video, and `video_index` `(B·V,)` says which input each view comes from.
    Training applies the paper's augmentation (short side `train_short_side`, multi-scale crop to `crop_size`,
    flip, colour jitter, grayscale), identically to all frames of a clip; it resizes and crops by itself, so
    `size`, `resample`, `do_resize`, `do_center_crop`, `num_clips` and `num_crops` apply to evaluation only.

    Every attribute below can be overridden per call (`processor(video, num_frames=16, device="cuda")`), as
    can `video_metadata`, `input_data_format`, `do_convert_rgb` (grayscale to RGB), `return_metadata` (adds
    `video_metadata`, whose `frames_indices` are the frames taken) and `return_tensors` (`"pt"` or `"np"`;
    by default a `torch.Tensor`, or a list of views when their shapes differ).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 8
    num_clips = 1
    num_crops = 1
    train_short_side = 256
    train_scales = (1.0, 0.875, 0.75, 0.66)
    flip_prob = 0.5
    color_jitter_prob = 0.8
    grayscale_prob = 0.2
    decoding_backend = "pyav"
    valid_kwargs = ClaverVideoProcessorKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs: Unpack[ClaverVideoProcessorKwargs]) -> None:
        super().__init__(**kwargs)
        # A frame rate given without a frame count samples by rate; the default count would contradict it.
        if kwargs.get("fps") is not None and kwargs.get("num_frames") is None:
            self.num_frames = None

    def preprocess(self, videos: Any, **kwargs: Unpack[ClaverVideoProcessorKwargs]) -> BatchFeature:
        """Process one video or a batch; keyword arguments override the processor's attributes for this call.

        Returns a `BatchFeature` with `pixel_values`, `video_index` when there is more than one view per video,
        and `video_metadata` with `return_metadata=True`.
        """
        # `BaseVideoProcessor.preprocess`, with CLAVER's differences marked.
        # Diff: unknown arguments are an error, not a logged warning.
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"Unexpected keyword arguments for ClaverVideoProcessor: {sorted(unknown)}.")
        validate_typed_dict(self.valid_kwargs, kwargs)
        # Diff: `fps` or `num_frames` given for this call replaces the processor's other one (they are exclusive).
        if kwargs.get("fps") is not None:
            kwargs.setdefault("num_frames", None)
        if kwargs.get("num_frames") is not None:
            kwargs.setdefault("fps", None)
        for name in self.valid_kwargs.__annotations__:
            kwargs.setdefault(name, getattr(self, name, None))
        # Diff: CLAVER's own arguments.
        self._check_views(kwargs)

        input_data_format = kwargs.pop("input_data_format")
        do_convert_rgb = kwargs.pop("do_convert_rgb")
        do_sample_frames = kwargs.pop("do_sample_frames")
        device = kwargs.pop("device")
        video_metadata = kwargs.pop("video_metadata")
        decoding_backend = kwargs.pop("decoding_backend")

        sample_indices_fn = partial(self.sample_frames, **kwargs) if do_sample_frames else None
        videos, video_metadata = self._decode_and_sample_videos(
            videos,
            video_metadata=video_metadata,
            do_sample_frames=do_sample_frames,
            sample_indices_fn=sample_indices_fn,
            decoding_backend=decoding_backend,
        )
        videos = self._prepare_input_videos(
            videos=videos, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format, device=device
        )

        kwargs = standardize_video_kwargs(self, **kwargs)

        kwargs.pop("data_format")
        return_metadata = kwargs.pop("return_metadata")

        preprocessed_videos = self._preprocess(videos=videos, **kwargs)
        if return_metadata:
            preprocessed_videos["video_metadata"] = video_metadata
        return preprocessed_videos

    def sample_frames(
        self,
        metadata: VideoMetadata,
        num_frames: int | None = None,
        fps: int | float | None = None,
        training: bool = False,
        num_clips: int = 1,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """TSN frame indices of one video: `num_clips` clips of `num_frames` frames, concatenated.

        Evaluation clips interleave inside the segments (see `multi_clip_indices`); training draws one clip of a
        random frame per segment. `fps` sets the frame count to `fps` frames per second of video instead.
        """
        if fps is not None and num_frames is not None:
            raise ValueError(
                f"`num_frames` ({num_frames}) and `fps` ({fps}) are exclusive ways to say how many frames to "
                "sample: pass one of them."
            )
        if fps is not None:
            if not metadata.fps:
                raise ValueError(
                    f"Sampling `fps={fps}` frames per second needs the video's frame rate: pass `video_metadata` "
                    "with `fps` for decoded frames, or `num_frames`."
                )
            num_frames = max(1, int(metadata.total_num_frames / metadata.fps * fps))
        if num_frames is None:
            raise ValueError("Frame sampling needs `num_frames` or `fps`.")
        total = metadata.total_num_frames
        if training:
            clips = [segment_indices(total, num_frames, training=True, generator=generator)]
        else:
            clips = multi_clip_indices(total, num_frames, num_clips)
        return np.array(clips, dtype=np.int64).reshape(-1)

    def _decode_and_sample_videos(
        self,
        videos: Any,
        video_metadata: Any,
        do_sample_frames: bool | None = None,
        sample_indices_fn: Any = None,
        decoding_backend: str | None = None,
    ) -> tuple[list[np.ndarray | torch.Tensor], list[VideoMetadata]]:
        """Decode files (only the sampled frames) and sample decoded videos, in input order.

        Unlike `BaseVideoProcessor`'s, paths may be `os.PathLike` and mixed with decoded videos in one batch;
        `video_metadata` describes decoded videos only, since a file's is read from the file.
        """
        videos = [_stack_pil_frames(video) for video in _as_video_list(videos)]
        is_path = [isinstance(video, (str, os.PathLike)) for video in videos]
        decoded = [video for video, path in zip(videos, is_path, strict=True) if not path]
        for video in decoded:
            if len(video) == 0:
                raise ValueError(f"A video must be non-empty, got shape {tuple(video.shape)}.")
        if video_metadata is None:
            decoded_metadata = [
                VideoMetadata(total_num_frames=len(video), frames_indices=list(range(len(video))))
                for video in decoded
            ]
        elif any(is_path):
            raise ValueError(
                "`video_metadata` describes decoded frames, but a video path was given: the metadata of a file "
                "is read from the file. Pass frames, or leave `video_metadata` out."
            )
        else:
            decoded_metadata = make_batched_metadata(decoded, video_metadata)
        decoded_metadata = iter(decoded_metadata)

        frames, metadata = [], []
        for video, path in zip(videos, is_path, strict=True):
            if path:
                video, info = self.fetch_videos(
                    video, sample_indices_fn=sample_indices_fn, decoding_backend=decoding_backend
                )
            else:
                info = next(decoded_metadata)
                if info.total_num_frames != len(video):
                    raise ValueError(
                        f"`video_metadata` gives total_num_frames={info.total_num_frames} for a video of "
                        f"{len(video)} frames."
                    )
                if do_sample_frames:
                    info.frames_indices = sample_indices_fn(metadata=info).tolist()
                    video = video[info.frames_indices]
            frames.append(video)
            metadata.append(info)
        return frames, metadata

    def fetch_videos(
        self,
        video_url_or_urls: str | os.PathLike | list[str | os.PathLike],
        sample_indices_fn: Any = None,
        decoding_backend: str | None = None,
    ) -> tuple[Any, Any]:
        """Decode video files with claver-hf's reader: only the frames `sample_indices_fn` picks, every frame
        without it. Returns `(frames (T, H, W, 3) uint8, metadata)`, or two lists for a list of files."""
        if isinstance(video_url_or_urls, list):
            pairs = [self.fetch_videos(url, sample_indices_fn, decoding_backend) for url in video_url_or_urls]
            return [frames for frames, _ in pairs], [metadata for _, metadata in pairs]
        backend = decoding_backend or self.decoding_backend
        info = probe_video(video_url_or_urls)
        metadata = VideoMetadata(
            total_num_frames=info.num_frames,
            fps=info.fps,
            width=info.width,
            height=info.height,
            duration=info.duration,
            video_backend=backend,
        )
        if sample_indices_fn is None:
            indices = np.arange(info.num_frames)
        else:
            indices = sample_indices_fn(metadata=metadata)
        metadata.frames_indices = indices.tolist()
        return read_frames(video_url_or_urls, metadata.frames_indices, info=info, backend=backend), metadata

    def _prepare_input_videos(
        self,
        videos: list[np.ndarray | torch.Tensor],
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        device: str | torch.device | None = None,
    ) -> list[torch.Tensor]:
        """Each video as a uint8 tensor `(T, C, H, W)` on `device` (float frames in [0, 1] are scaled to uint8,
        so that both kinds go through the same rescaling and augmentation)."""
        prepared = []
        for video in videos:
            video = _to_uint8_clip(video, input_data_format)
            if do_convert_rgb and video.shape[1] == 1:
                video = video.expand(-1, 3, -1, -1).contiguous()
            prepared.append(video.to(device) if device is not None else video)
        return prepared

    def _preprocess(
        self,
        videos: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | int | None,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | tuple[float, ...],
        image_std: float | tuple[float, ...],
        return_tensors: str | TensorType | None = None,
        training: bool = False,
        num_clips: int = 1,
        num_crops: int = 1,
        **kwargs: Any,
    ) -> BatchFeature:
        views, video_index = [], []
        for index, video in enumerate(videos):
            if len(video) % num_clips:
                raise ValueError(
                    f"A video of {len(video)} frames given with `do_sample_frames=False` cannot be split into "
                    f"`num_clips={num_clips}` clips of equal length."
                )
            clips = video.unflatten(0, (num_clips, -1))  # (clips, T, C, H, W)
            if training:
                video_views = self._augment(clips[0], crop_size)[None]
            else:
                if do_resize:
                    clips = self.resize(clips, size=size, resample=resample)
                video_views = clips
                if do_center_crop:
                    crops = evaluation_crops(clips, crop_size.height, crop_size.width, num_crops)
                    video_views = torch.stack(crops, dim=1).flatten(0, 1)  # clip-major: clip 0's crops first
            video_views = self.rescale_and_normalize(
                video_views.float(), do_rescale, rescale_factor, do_normalize, image_mean, image_std
            )
            views.extend(video_views)
            video_index.extend([index] * len(video_views))

        if len({view.shape for view in views}) > 1:
            if return_tensors is not None:
                raise ValueError(
                    f"The views of these videos differ in shape ({sorted({tuple(v.shape) for v in views})}), so "
                    f"they cannot form one {return_tensors!r} tensor: give videos of equal frame counts and sizes, "
                    "or pass `return_tensors=None` for a list of views."
                )
            pixel_values: torch.Tensor | list[torch.Tensor] = views
        else:
            pixel_values = torch.stack(views)
        data: dict[str, Any] = {"pixel_values": pixel_values}
        if num_clips * num_crops > 1:
            data["video_index"] = torch.tensor(video_index)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _augment(self, clip: torch.Tensor, crop_size: SizeDict) -> torch.Tensor:
        if crop_size.height != crop_size.width:
            raise ValueError(
                f"Training crops are square; got `crop_size` {crop_size.height}x{crop_size.width}."
            )
        transform = training_transform(
            crop_size.height,
            self.train_short_side,
            self.train_scales,
            self.flip_prob,
            self.color_jitter_prob,
            self.grayscale_prob,
        )
        return transform(clip)

    @staticmethod
    def _check_views(kwargs: dict[str, Any]) -> None:
        """Validate CLAVER's view arguments; training takes one clip and one view whatever the processor's
        evaluation protocol says."""
        if kwargs["training"]:
            kwargs["num_clips"] = kwargs["num_crops"] = 1
        num_clips, num_crops = kwargs["num_clips"], kwargs["num_crops"]
        if not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"`num_clips` must be an integer >= 1, got {num_clips!r}.")
        if num_crops not in (1, 3):
            raise ValueError(f"`num_crops` must be 1 (centre) or 3 (start, centre, end), got {num_crops!r}.")
        if num_crops == 3 and not kwargs["do_center_crop"]:
            raise ValueError("`num_crops=3` takes crops: it needs `do_center_crop=True`.")
        if kwargs["data_format"] not in (None, ChannelDimension.FIRST, ChannelDimension.FIRST.value):
            raise ValueError(f"Outputs are channels-first; got `data_format={kwargs['data_format']!r}`.")
        if kwargs["do_pad"]:
            raise ValueError("`do_pad` is not supported: every view of a call has the same size.")

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> list[str]:
        """`BaseVideoProcessor.save_pretrained`, plus this class's source files and their `auto_map` in the
        JSON file: the folder then loads with `trust_remote_code=True` without claver-hf installed."""
        self._save_remote_code(save_directory)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _save_remote_code(self, save_directory: str | os.PathLike) -> None:
        # Apart from `save_pretrained`: `ClaverProcessor` saves this processor's settings in its own file.
        save_remote_code(self, {"AutoVideoProcessor": ClaverVideoProcessor}, save_directory)


def _is_single_video(item: Any) -> bool:
    if isinstance(item, (str, os.PathLike)):
        return True
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return item.ndim == 4
    return isinstance(item, (list, tuple)) and len(item) > 0 and all(isinstance(x, Image.Image) for x in item)


def _as_video_list(videos: Any) -> list[Any]:
    """Normalise the accepted inputs to a list of single videos."""
    if _is_single_video(videos):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        if videos.ndim == 5:
            return list(videos)
        raise ValueError(
            f"A video array must be (T, H, W, C) or (T, C, H, W), or a (B, T, ...) batch; got shape {tuple(videos.shape)}."
        )
    if isinstance(videos, (list, tuple)) and videos and all(_is_single_video(v) for v in videos):
        return list(videos)
    if isinstance(videos, (list, tuple)) and not videos:
        raise ValueError("No video given: `videos` is empty.")
    raise ValueError(
        "Expected a video path, a (T, H, W, C) / (T, C, H, W) array or tensor, a list of PIL images, or a list of "
        f"those; got {type(videos).__name__}."
    )


def _stack_pil_frames(video: Any) -> Any:
    """A list of PIL images -> one `(T, H, W, 3)` uint8 array; other videos unchanged."""
    if isinstance(video, (list, tuple)):
        return np.stack([np.asarray(image.convert("RGB")) for image in video])
    return video


def _to_uint8_clip(
    video: np.ndarray | torch.Tensor, input_data_format: str | ChannelDimension | None
) -> torch.Tensor:
    """One decoded video -> uint8 tensor `(T, C, H, W)`, `C` = 1 or 3."""
    tensor = torch.from_numpy(np.ascontiguousarray(video)) if isinstance(video, np.ndarray) else video
    if input_data_format is None:
        # Channels last unless the second axis already holds the channels.
        channels_last = tensor.shape[-1] in (1, 3) and tensor.shape[1] not in (1, 3)
    else:
        channels_last = ChannelDimension(input_data_format) == ChannelDimension.LAST
    if channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.shape[1] not in (1, 3):
        raise ValueError(
            f"Cannot find the channel dimension (1 or 3 channels) in a video of shape {tuple(video.shape)}"
            + (f" with `input_data_format={input_data_format!r}`." if input_data_format is not None else ".")
        )
    if tensor.is_floating_point():
        low, high = float(tensor.min()), float(tensor.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Float videos must hold values in [0, 1], got values in [{low:.3g}, {high:.3g}]; pass uint8 "
                "frames for [0, 255] data."
            )
        tensor = (tensor * 255).round().to(torch.uint8)
    elif tensor.dtype != torch.uint8:
        raise ValueError(f"Videos must be uint8 or float, got {tensor.dtype}.")
    return tensor.contiguous()


__all__ = ["ClaverVideoProcessor"]
