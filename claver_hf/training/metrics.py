"""Evaluation: top-k accuracy through `evaluate` (offline, with the module shipped here), multi-view testing
(clips × crops, docs/text-bank.md#inference-the-scoring-rule; label-mapped mirror images) and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import EvalPrediction

from ..data.datasets import collate_video_batch
from ..data.symmetries import symmetric_views, transform_clips

TOP_K_ACCURACY_PATH = str(Path(__file__).with_name("top_k_accuracy"))


def load_top_k_accuracy():
    """The top-k accuracy metric, loaded by local path (the Hub's metric scripts need the network)."""
    import evaluate

    return evaluate.load(TOP_K_ACCURACY_PATH)


def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`Trainer.compute_metrics`: top-1 and top-5 accuracy of the evaluation logits, and how many videos they
    cover (with several processes, a check that every video counted exactly once)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    metrics = load_top_k_accuracy().compute(
        predictions=logits, references=eval_prediction.label_ids, k=[1, 5]
    )
    return {**metrics, "num_samples": len(eval_prediction.label_ids)}


@torch.no_grad()
def predict_multiview(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 4,
    num_workers: int = 0,
    progress: bool = True,
    symmetries: Mapping[str, torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities per video, averaged over its test views, and the labels.

    Items of `dataset` hold `pixel_values` `(N, T, C, H, W)` (a multi-view processor setting) or
    `(T, C, H, W)`; `model` (a [`ClaverForVideoClassification`]) scores the `N` views of each video together, by
    the rule of [`class_log_probs`]. With `symmetries` (transformation name -> class permutation, from
    [`LabelSymmetries.permutations`]), each video is also scored mirrored, turned or reversed as they say (every
    composition of them, [`symmetric_views`]), each view's probabilities read back through the class it shows,
    and the views' probabilities averaged.

    Returns:
        `(probabilities (B, C), labels (B,))` as numpy arrays.
    """
    model.eval()
    device = next(model.parameters()).device
    views = symmetric_views(symmetries) if symmetries else [((), None)]
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_video_batch
    )
    probabilities, labels = [], []
    for batch in tqdm(loader, desc="multi-view test", disable=not progress):
        pixel_values = batch["pixel_values"].to(device)
        if pixel_values.ndim == 5:
            pixel_values = pixel_values[:, None]
        total = 0
        for names, permutation in views:
            view = model(pixel_values=transform_clips(pixel_values, names)).logits.exp().float().cpu()
            total = total + (view if permutation is None else view[:, permutation])
        probabilities.append(total / len(views))
        labels.append(batch["labels"])
    return torch.cat(probabilities).numpy(), torch.cat(labels).numpy()


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts `(num_classes, num_classes)`: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix
