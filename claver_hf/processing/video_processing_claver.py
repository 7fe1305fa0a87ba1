"""ClaverVideoProcessor: video files or decoded frames -> CLAVER's `pixel_values`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor

from ..remote_code import save_remote_code
from ..video_io.backends import read_frames
from ..video_io.container import probe_video
from .sampling import multi_clip_indices, segment_indices
from .transforms import evaluation_crops, training_transform


class ClaverVideoProcessorKwargs(VideosKwargs, total=False):
    training: bool
    num_clips: int
    num_crops: int
    decoding_backend: str
    generator: torch.Generator | None


class ClaverVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into CLAVER's `pixel_values` `(B, T, 3, H, W)`, normalised with CLIP's mean and std.

    Accepted inputs, one video or a batch: a path (decoded with PyAV, reading only the sampled frames), a list
    of paths, an array or tensor `(T, H, W, C)` or `(T, C, H, W)` (uint8 in [0, 255] or float in [0, 1];
    `C` = 1 or 3), a 5-D batch of those, a list of PIL images, or a list of any of these.

    Frame sampling (SPEC §4, TSN): `num_frames` equal segments; evaluation takes each segment's centre,
    `training=True` a random frame per segment. Videos with fewer frames than `num_frames` repeat frames.

    Evaluation views: `num_clips` temporal clips × `num_crops` spatial crops (1 = centre; 3 = start, centre and
    end of the long side after resizing the short side to `size["shortest_edge"]`). With more than one view
    the output's `pixel_values` is `(B·V, T, 3, H, W)`, grouped by video, and `video_index` `(B·V,)` says which
    input each view comes from. Training applies SPEC §4's augmentation (short side `train_short_side`,
    multi-scale crop, flip, colour jitter, grayscale), identically to all frames of a clip.
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

    def preprocess(self, videos: Any, **kwargs: Any) -> BatchFeature:
        """Process one video or a batch; keyword arguments override the processor's attributes for this call.

        Returns a `BatchFeature` with `pixel_values` and, when there is more than one view per video,
        `video_index`.
        """
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__) - {"return_tensors"}
        if unknown:
            raise TypeError(f"Unexpected keyword arguments for ClaverVideoProcessor: {sorted(unknown)}.")
        options = {
            name: kwargs.get(name, getattr(self, name, None)) for name in self.valid_kwargs.__annotations__
        }
        training = bool(options["training"])
        num_frames = int(options["num_frames"])
        num_clips = 1 if training else int(options["num_clips"])
        num_crops = 1 if training else int(options["num_crops"])
        if num_frames < 1 or num_clips < 1:
            raise ValueError(f"`num_frames` and `num_clips` must be >= 1, got {num_frames} and {num_clips}.")

        pixel_values, video_index = [], []
        for index, video in enumerate(_as_video_list(videos)):
            for clip in self._sample_clips(video, num_frames, num_clips, training, options):
                for view in self._spatial_views(clip, training, num_crops):
                    pixel_values.append(self._normalize(view, options))
                    video_index.append(index)

        data: dict[str, Any] = {"pixel_values": torch.stack(pixel_values)}
        if num_clips * num_crops > 1:
            data["video_index"] = torch.tensor(video_index)
        return BatchFeature(data=data, tensor_type=kwargs.get("return_tensors"))

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> list[str]:
        """`BaseVideoProcessor.save_pretrained`, plus this class's source files and their `auto_map` in the
        JSON file: the folder then loads with `trust_remote_code=True` without claver-hf installed."""
        self._save_remote_code(save_directory)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _save_remote_code(self, save_directory: str | os.PathLike) -> None:
        # Apart from `save_pretrained`: `ClaverProcessor` saves this processor's settings in its own file.
        save_remote_code(self, {"AutoVideoProcessor": ClaverVideoProcessor}, save_directory)

    def _sample_clips(
        self, video: Any, num_frames: int, num_clips: int, training: bool, options: dict[str, Any]
    ) -> list[torch.Tensor]:
        """`num_clips` uint8 clips `(T, 3, H, W)` of `num_frames` sampled frames each."""
        generator = options.get("generator")
        if not options["do_sample_frames"]:
            return [_to_uint8_clip(video)]

        def indices_for(total: int) -> list[list[int]]:
            if training:
                return [segment_indices(total, num_frames, training=True, generator=generator)]
            return multi_clip_indices(total, num_frames, num_clips)

        if isinstance(video, (str, os.PathLike)):
            info = probe_video(video)
            clips = indices_for(info.num_frames)
            flat = [i for clip in clips for i in clip]
            frames = _to_uint8_clip(read_frames(video, flat, info=info, backend=options["decoding_backend"]))
            return list(frames.split(num_frames))
        frames = _to_uint8_clip(video)
        return [frames[clip] for clip in indices_for(frames.shape[0])]

    def _spatial_views(self, clip: torch.Tensor, training: bool, num_crops: int) -> list[torch.Tensor]:
        crop = self.crop_size["height"]
        if training:
            transform = training_transform(
                crop,
                self.train_short_side,
                self.train_scales,
                self.flip_prob,
                self.color_jitter_prob,
                self.grayscale_prob,
            )
            return [transform(clip)]
        if not self.do_resize and not self.do_center_crop:
            return [clip]
        return evaluation_crops(clip, self.size["shortest_edge"], crop, num_crops)

    def _normalize(self, clip: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        clip = clip.float()
        if options["do_rescale"]:
            clip = clip * options["rescale_factor"]
        if options["do_normalize"]:
            mean = torch.tensor(options["image_mean"]).view(1, -1, 1, 1)
            std = torch.tensor(options["image_std"]).view(1, -1, 1, 1)
            clip = (clip - mean) / std
        return clip


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


def _to_uint8_clip(video: Any) -> torch.Tensor:
    """One video in any accepted form -> uint8 tensor `(T, 3, H, W)`."""
    if isinstance(video, (list, tuple)):
        video = np.stack([np.asarray(image.convert("RGB")) for image in video])
    tensor = torch.as_tensor(np.asarray(video)) if isinstance(video, np.ndarray) else video
    if tensor.ndim != 4 or tensor.shape[0] == 0:
        raise ValueError(
            f"A video must be a non-empty (T, H, W, C) or (T, C, H, W) array, got shape {tuple(tensor.shape)}."
        )
    if tensor.shape[-1] in (1, 3) and tensor.shape[1] not in (1, 3):
        tensor = tensor.permute(0, 3, 1, 2)
    elif tensor.shape[1] not in (1, 3):
        raise ValueError(
            f"Cannot find the channel dimension (1 or 3 channels) in a video of shape {tuple(tensor.shape)}."
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
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return tensor.contiguous()


__all__ = ["ClaverVideoProcessor"]
