"""PNG figures of a training run: the loss / accuracy curves and the confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(log_history: list[dict], path: str | os.PathLike) -> None:
    """Training loss and evaluation top-1 accuracy against the step, from `Trainer.state.log_history`."""
    plt = _pyplot()
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_top_1_accuracy"]) for e in log_history if "eval_top_1_accuracy" in e]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if train:
        loss_axis.plot(*zip(*train, strict=True), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    if evals:
        accuracy_axis = loss_axis.twinx()
        accuracy_axis.plot(*zip(*evals, strict=True), "o-", color="tab:orange", label="validation top-1")
        accuracy_axis.set_ylabel("validation top-1 accuracy", color="tab:orange")
        accuracy_axis.set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike) -> None:
    """The confusion matrix with row-normalised colours and counts in the cells."""
    plt = _pyplot()
    size = max(5, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 30:
        for row, col in np.ndindex(matrix.shape):
            color = "white" if rates[row, col] > 0.5 else "black"
            axis.text(col, row, str(matrix[row, col]), ha="center", va="center", color=color, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
