"""Video classification datasets in three formats, yielding processed clips and labels.

1. `VideoFolderDataset`: a folder of class sub-folders (the UCF-101 / HMDB-51 layout).
2. `AnnotationListDataset`: an annotation list or CSV of `relative/path label` lines plus a class-name CSV
   `id,name` (the Kinetics layout; the five benchmarks' lists are bundled, see `read_class_names`).
3. `HFVideoDataset`: a Hugging Face `datasets` dataset with a video column (paths, or `{"path", "bytes"}`
   dicts as `datasets.Video(decode=False)` gives them) and a label column.

Every item is `{"pixel_values": (T, 3, H, W) float tensor, "labels": int}`; with multi-view processor
settings (`num_clips` × `num_crops` > 1) `pixel_values` is `(V, T, 3, H, W)`.

Unreadable videos follow `on_error`: `"raise"` raises the processor's `VideoDecodingError` (it names the file
and the cause); `"skip"` probes every video when the dataset is built, drops the unreadable ones, logs their
paths and keeps them in `dataset.skipped` (path -> reason). Nothing is ever replaced by a blank clip. A video
that probes fine but fails later while decoding is skipped too: the item comes back as `None`, the failure is
logged with its path (from the worker process that met it), and `collate_video_batch` drops it from its batch.

With `cache_videos=True` every video is decoded whole once, when the dataset is built, and kept in memory: each
item then samples and augments frames of the cached array exactly as it would those of the file (the same item for
the same seed, epoch and index), without decoding again at every epoch. For small datasets (the demo's, few-shot
subsets): it holds all their frames, at their stored size, in RAM (in each training process that builds it). A
video that probes fine but fails to decode follows `on_error` there.

Training items are random (TSN frames, augmentation) but reproducible: item `index` of epoch `epoch` draws from
torch's generator seeded with `(seed, epoch, index)` (`dataset.seed`, `dataset.set_epoch`), so a clip does not
depend on the number of worker processes, on the loading order, or on whether the run was resumed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from transformers.video_utils import VideoMetadata

from ..processing.video_processing_claver import ClaverVideoProcessor
from ..video_io.common import VIDEO_EXTENSIONS, VideoDecodingError
from ..video_io.container import probe_video
from .symmetries import LabelSymmetries, LabelSymmetryAugmentation

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_Read = TypeVar("_Read")


class VideoClassificationDataset(Dataset):
    """A list of `(video file, class id)` samples turned into processed clips by a [`ClaverVideoProcessor`].

    Args:
        samples: `(path, label)` pairs.
        id2label: class names by id.
        processor: the video processor (sampling, resizing, normalisation, augmentation).
        training: random TSN frames and augmentation (`True`) or evaluation sampling (`False`).
        on_error: `"raise"` or `"skip"` unreadable videos (see the module docstring).
        processor_kwargs: extra keyword arguments for every processor call (e.g. `num_clips=4, num_crops=3`).
        num_probe_threads: threads that probe the videos when `on_error="skip"`, and decode them for
            `cache_videos`.
        seed: with the epoch (`set_epoch`) and the index, seeds the randomness of each training item, and draws
            the `samples_per_class` examples.
        samples_per_class: keep this many samples of each class (few-shot), drawn with `seed` among the readable
            ones; every class must have that many.
        label_symmetries: training only: mirror or reverse clips with probability `symmetry_prob` per
            transformation and relabel them as these maps say (`claver_hf.data.symmetries`).
        cache_videos: decode every video whole once, here, with `num_probe_threads` threads, and keep the frames in
            memory (see the module docstring).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | os.PathLike | int, int]],
        id2label: dict[int, str],
        processor: ClaverVideoProcessor,
        *,
        training: bool = False,
        on_error: OnError = "raise",
        processor_kwargs: dict[str, Any] | None = None,
        num_probe_threads: int = 8,
        seed: int = 0,
        samples_per_class: int | None = None,
        label_symmetries: LabelSymmetries | None = None,
        symmetry_prob: float = 0.5,
        cache_videos: bool = False,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"`on_error` must be 'raise' or 'skip', got {on_error!r}.")
        num_classes = len(id2label)
        for source, label in samples:
            if not 0 <= label < num_classes:
                raise ValueError(f"Label {label} of {source} is not a class id in [0, {num_classes - 1}].")
        self.id2label = dict(id2label)
        if label_symmetries is not None and not training:
            raise ValueError(
                "`label_symmetries` are a training augmentation: give them with `training=True` only."
            )
        self.augmentation = (
            LabelSymmetryAugmentation(label_symmetries, self.id2label, symmetry_prob)
            if label_symmetries
            else None
        )
        self.processor = processor
        self.training = training
        self.on_error = on_error
        self.processor_kwargs = dict(processor_kwargs or {})
        self.seed = seed
        self.epoch = 0
        self.skipped: dict[str, str] = {}
        # A sample's source is a path, or for `HFVideoDataset` a row number.
        self.samples = [
            (os.fspath(source) if isinstance(source, os.PathLike) else source, int(label))
            for source, label in samples
        ]
        if on_error == "skip":
            self._keep_readable(probe_video, num_probe_threads, "unreadable")
        if samples_per_class is not None:
            self.samples = self._draw_per_class(self.samples, samples_per_class)
        # Frames and metadata of each sample, in `samples` order, when cached.
        self.cache: list[tuple[np.ndarray, VideoMetadata]] | None = None
        if cache_videos:
            self.cache = self._keep_readable(self._decode_whole, num_probe_threads, "undecodable")
            size = sum(frames.nbytes for frames, _ in self.cache)
            logger.info(f"Decoded {len(self.cache)} videos into memory ({size / 2**20:.0f} MiB).")

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    def _keep_readable(self, read: Callable[[str], _Read], num_threads: int, unreadable: str) -> list[_Read]:
        """`read(path)` of every sample, in `num_threads` threads. A `VideoDecodingError` is raised with
        `on_error="raise"`; with `"skip"` its sample is dropped from `samples`, logged and kept in `skipped`."""

        def attempt(index: int) -> _Read | VideoDecodingError:
            try:
                with self._local_video(index) as path:
                    return read(path)
            except VideoDecodingError as error:
                if self.on_error == "raise":
                    raise
                return error

        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            results = list(pool.map(attempt, range(len(self.samples))))
        kept_samples, kept_results, skipped = [], [], {}
        for index, result in enumerate(results):
            if isinstance(result, VideoDecodingError):
                skipped[self._describe(index)] = result.reason
            else:
                kept_samples.append(self.samples[index])
                kept_results.append(result)
        if skipped:
            listed = "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:5])
            logger.warning(
                f"Skipping {len(skipped)} {unreadable} video(s) of {len(self.samples)} (on_error='skip'), e.g. {listed}"
            )
        self.skipped.update(skipped)
        self.samples = kept_samples
        return kept_results

    def _decode_whole(self, path: str) -> tuple[np.ndarray, VideoMetadata]:
        """Every frame of one video file, with its metadata, as the processor decodes them."""
        return self.processor.fetch_videos(path)

    def _draw_per_class(self, samples: list[tuple[Any, int]], k: int) -> list[tuple[Any, int]]:
        """`k` samples of each class drawn with `self.seed`, by class id then in drawing order."""
        by_class: dict[int, list[tuple[Any, int]]] = {}
        for sample in samples:
            by_class.setdefault(sample[1], []).append(sample)
        short = [self.id2label[label] for label, members in by_class.items() if len(members) < k]
        if short:
            raise ValueError(f"Few-shot K={k}: classes {short[:5]} have fewer than {k} training examples.")
        rng = random.Random(self.seed)
        return [sample for label in sorted(by_class) for sample in rng.sample(by_class[label], k)]

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Draw the training items of epoch `epoch` (called by the trainer before each epoch's workers start)."""
        self.epoch = int(epoch)

    @contextmanager
    def _item_randomness(self, index: int) -> Iterator[None]:
        """Within the context, torch's global generator is seeded with `(seed, epoch, index)` (training only);
        its previous state is restored afterwards, so loading an item consumes none of the caller's randomness."""
        if not self.training:
            yield
            return
        item_seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: `torch.manual_seed` would also queue seeds for accelerators, which
            # costs more than the rest of this context (it records a stack trace).
            torch.default_generator.manual_seed(int(item_seed))
            yield

    def _describe(self, index: int) -> str:
        """How item `index` is named in messages and in `skipped`."""
        return self.samples[index][0]

    @contextmanager
    def _local_video(self, index: int) -> Iterator[str]:
        """A local file holding the video of item `index` while the context lasts."""
        yield self.samples[index][0]

    @contextmanager
    def _processor_inputs(self, index: int) -> Iterator[dict[str, Any]]:
        """The processor's input arguments for item `index`: its cached frames, or its file."""
        if self.cache is None:
            with self._local_video(index) as path:
                yield {"videos": path}
        else:
            frames, metadata = self.cache[index]
            # A fresh metadata object per call: sampling writes the frames it takes into it.
            yield {"videos": frames, "video_metadata": [asdict(metadata)]}

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        label = self.samples[index][1]
        try:
            with self._processor_inputs(index) as inputs, self._item_randomness(index):
                outputs = self.processor(
                    **inputs, training=self.training, return_tensors="pt", **self.processor_kwargs
                )
                pixel_values = outputs["pixel_values"]
                if self.augmentation is not None:  # training: one view
                    clip, label = self.augmentation(pixel_values[0], label)
                    pixel_values = clip[None]
        except VideoDecodingError as error:
            if self.on_error == "raise":
                raise
            logger.warning(f"Skipping unreadable video {self._describe(index)}: {error.reason}")
            return None
        return {
            "pixel_values": pixel_values if "video_index" in outputs else pixel_values[0],
            "labels": label,
        }


def collate_video_batch(items: list[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
    """`default_collate` that drops items skipped as unreadable (`None`); a batch with none left is an error."""
    kept = [item for item in items if item is not None]
    if not kept:
        raise VideoDecodingError(
            "<batch>", f"all {len(items)} videos of this batch were unreadable and skipped"
        )
    return default_collate(kept)


class VideoFolderDataset(VideoClassificationDataset):
    """Videos in class sub-folders, `root/<class name>/<video>` (UCF-101 / HMDB-51 layout).

    Class ids follow the sorted sub-folder names; files are found recursively inside each class folder.
    """

    def __init__(self, root: str | os.PathLike, processor: ClaverVideoProcessor, **kwargs: Any):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"Video folder {root} does not exist or is not a directory.")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"Video folder {root} has no class sub-folders.")
        samples = [
            (path, label)
            for label, name in enumerate(classes)
            for path in sorted((root / name).rglob("*"))
            if path.suffix.lower() in VIDEO_EXTENSIONS
        ]
        if not samples:
            raise ValueError(f"No video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}.")
        super().__init__(samples, dict(enumerate(classes)), processor, **kwargs)


# Class-name lists shipped in `claver_hf/data/labels/` (their sources: the README there).
BUNDLED_LABELS = ("hmdb51", "kinetics400", "kinetics600", "ssv2", "ucf101")


def read_class_names(name_or_path: str | os.PathLike) -> dict[int, str]:
    """Class names by id: a bundled list by name (`BUNDLED_LABELS`), or a CSV file with an `id,name` header."""
    if str(name_or_path) in BUNDLED_LABELS:
        text = resources.files("claver_hf.data").joinpath("labels", f"{name_or_path}.csv").read_text("utf-8")
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text("utf-8")
    else:
        raise ValueError(
            f"No class-name list {str(name_or_path)!r}: not a bundled list ({', '.join(BUNDLED_LABELS)}) nor a file."
        )
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows or {"id", "name"} - set(rows[0]):
        raise ValueError(f"Class-name file {name_or_path} must be a CSV with columns 'id' and 'name'.")
    id2label = {int(row["id"]): row["name"] for row in rows}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(
            f"Class ids in {name_or_path} must be 0..{len(id2label) - 1} without gaps or repeats."
        )
    return id2label


class AnnotationListDataset(VideoClassificationDataset):
    """An annotation list of `relative/path label` lines (space- or comma-separated; a CSV header line
    `path,label` is allowed) with a class-name CSV `id,name`. Labels may be ids or class names.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        video_root: str | os.PathLike,
        class_names_file: str | os.PathLike,
        processor: ClaverVideoProcessor,
        **kwargs: Any,
    ):
        id2label = read_class_names(class_names_file)
        label2id = {name: i for i, name in id2label.items()}
        samples = []
        for number, line in enumerate(Path(annotation_file).read_text().splitlines(), start=1):
            line = line.strip()
            if not line or (number == 1 and line.replace(" ", "").lower() in ("path,label", "pathlabel")):
                continue
            relative, _, label = line.replace(",", " ").rpartition(" ")
            relative, label = relative.strip(), label.strip()
            if not relative:
                raise ValueError(f"{annotation_file}:{number}: expected 'relative/path label', got {line!r}.")
            if label.lstrip("-").isdigit():
                label_id = int(label)
            elif label in label2id:
                label_id = label2id[label]
            else:
                raise ValueError(
                    f"{annotation_file}:{number}: unknown class {label!r} (not in {class_names_file})."
                )
            samples.append((Path(video_root) / relative, label_id))
        super().__init__(samples, id2label, processor, **kwargs)


class HFVideoDataset(VideoClassificationDataset):
    """A Hugging Face `datasets.Dataset` with a video column and a label column.

    The video column may hold paths, or `{"path", "bytes"}` dicts (`datasets.Video(decode=False)`; a decoding
    `Video` column is cast to `decode=False`, since its decoder needs torchcodec). Embedded bytes are written
    to a temporary file for decoding. Class names come from a `ClassLabel` label column, or `id2label`.
    """

    def __init__(
        self,
        hf_dataset: Any,
        processor: ClaverVideoProcessor,
        *,
        video_column: str = "video",
        label_column: str = "label",
        id2label: dict[int, str] | None = None,
        **kwargs: Any,
    ):
        from datasets import ClassLabel, Video

        for column in (video_column, label_column):
            if column not in hf_dataset.column_names:
                raise ValueError(f"Dataset has no column {column!r}; columns: {hf_dataset.column_names}.")
        feature = hf_dataset.features[video_column]
        if isinstance(feature, Video) and feature.decode:
            hf_dataset = hf_dataset.cast_column(video_column, Video(decode=False))
        label_feature = hf_dataset.features[label_column]
        if id2label is None:
            if not isinstance(label_feature, ClassLabel):
                raise ValueError(f"Column {label_column!r} is not a ClassLabel: pass `id2label`.")
            id2label = dict(enumerate(label_feature.names))
        self.hf_dataset = hf_dataset
        self.video_column = video_column
        # Rows are named lazily (`_describe`): reading the column here would load every embedded video.
        samples = list(enumerate(hf_dataset[label_column]))
        super().__init__(samples, id2label, processor, **kwargs)

    def _describe(self, index: int) -> str:
        row = self.samples[index][0]
        cell = self.hf_dataset[row][self.video_column]
        if isinstance(cell, dict):
            return f"row {row} ({cell.get('path') or 'embedded bytes'})"
        return f"row {row} ({cell})"

    @contextmanager
    def _local_video(self, index: int) -> Iterator[str]:
        cell = self.hf_dataset[self.samples[index][0]][self.video_column]
        if isinstance(cell, dict) and cell.get("bytes"):
            suffix = Path(cell.get("path") or "video.mp4").suffix or ".mp4"
            with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
                handle.write(cell["bytes"])
                handle.flush()
                yield handle.name
        else:
            yield str(cell["path"] if isinstance(cell, dict) else cell)


__all__ = [
    "AnnotationListDataset",
    "HFVideoDataset",
    "VideoClassificationDataset",
    "VideoFolderDataset",
    "collate_video_batch",
    "read_class_names",
]
