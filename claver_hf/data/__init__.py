"""Video datasets (three formats) and the one-off dataset re-encoding that keeps accelerators fed."""

from .datasets import (
    AnnotationListDataset,
    HFVideoDataset,
    VideoClassificationDataset,
    VideoFolderDataset,
    collate_video_batch,
    read_class_names,
)
from .prepare import PrepareReport, prepare_video, prepare_videos
from .synthetic import SYNTHETIC_CLASSES, render_clip, synthetic_prompt_bank, write_synthetic_dataset

__all__ = [
    "SYNTHETIC_CLASSES",
    "render_clip",
    "synthetic_prompt_bank",
    "write_synthetic_dataset",
    "AnnotationListDataset",
    "HFVideoDataset",
    "PrepareReport",
    "VideoClassificationDataset",
    "VideoFolderDataset",
    "collate_video_batch",
    "prepare_video",
    "prepare_videos",
    "read_class_names",
]
