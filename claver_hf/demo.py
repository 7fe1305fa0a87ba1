"""The embedded main job: generate the synthetic motion dataset, train a small CLAVER from scratch on it, test it.

Everything runs offline on a CPU: the dataset is rendered and encoded locally, the model and its word-level
tokenizer are built from scratch. The output folder receives the model (safetensors), processor and prompt
bank, a model card, `results.json`, a training-curve PNG and a confusion-matrix PNG.

The synthetic classes come in pairs that differ only in the order of their frames (moving left / right,
growing / shrinking, ...), so `reversed_pair_accuracy` (per pair) and `direction_accuracy` (within the right
pair) in the results measure how well a model tells time direction apart; a model that pools frames without
temporal modelling (`mean_pooling=True`) cannot. The model is tested twice: on the in-distribution `test`
split and on the `heldout` split, whose shapes and background kinds no training clip shows (results
``test`` and ``heldout``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.datasets import AnnotationListDataset
from .data.synthetic import (
    HELDOUT_SPLIT,
    SYNTHETIC_CLASSES,
    synthetic_label_symmetries,
    write_synthetic_dataset,
)
from .modeling.modeling_claver import ClaverForVideoClassification
from .processing.processing_claver import ClaverProcessor
from .processing.tokenization import WORD_LEVEL_TOKENIZER
from .training import ClaverTrainingArguments, DataTrainingArguments, ModelArguments, run
from .training.metrics import confusion_matrix, load_top_k_accuracy, predict_multiview
from .training.plots import plot_confusion_matrix

# A small model that trains in minutes on two CPU cores: 32x32 frames in 8x8 patches. From scratch, the temporal
# and spatial position embeddings start at unit scale and the patch embedding at 0.1 instead of CLIP's 0.02 (which
# suits fine-tuning, where the layers start from trained features): with CLIP's patch scale the frames' content is
# a sixth of each token beside the unit-scale positions, the videos' embeddings start at cosine 0.996 and the model
# sat at chance; with small position embeddings it learnt frame order and positions more slowly (README). Width 128
# rather than 96: the sense of rotation, the slowest thing to learn, needed it (README, "Demo robustness").
DEMO_MODEL_CONFIG: dict[str, Any] = {
    "vision_config": {
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "patch_size": 8,
        "kmt_num_hidden_layers": 2,
        "initializer_range": 0.1,
        "temporal_initializer_range": 1.0,
        "position_initializer_range": 1.0,
    },
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
    },
    "projection_dim": 64,
    "num_text_views_per_step": 3,
}


# Clips per class (train, validation, test, heldout) and epochs: training longer is what raised the sense of rotation
# most (held-out own class, mean of five seeds: 0.81 at 30 epochs, 0.92 at 45), and decoding the clips once made room
# for it. `make demo` from a fresh clone took 8 min 24 s on two CPU cores, install, dataset writing and both tests
# included (measured: README, "Demo speed").
DEMO_CLIPS_PER_CLASS: tuple[int, int, int, int] = (200, 20, 40, 40)
DEMO_EPOCHS: float = 45
# At 1e-3 the sense of rotation was learnt only late, as the schedule decayed, and less often (README).
DEMO_LEARNING_RATE: float = 5e-4
# The tests average each clip's 8 mirror images and quarter turns, each read back through the class it shows (a
# mirrored "moving left" scored as "moving right"): the spatial views of a synthetic clip, whose whole frame is the
# crop. Time reversal stays out, so a model blind to frame order stays blind (README).
DEMO_TEST_SYMMETRIES: tuple[str, ...] = ("horizontal_flip", "vertical_flip", "transpose")


def demo_arguments(
    output_dir: str | Path,
    data_dir: str | Path,
    *,
    kronecker_mask: str = "kmta",
    mean_pooling: bool = False,
    epochs: float = DEMO_EPOCHS,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    save_checkpoints: bool = False,
) -> tuple[ModelArguments, DataTrainingArguments, ClaverTrainingArguments]:
    """The three argument dataclasses of the demo run (also what `run_video_classification.py` would take)."""
    config = json.loads(json.dumps(DEMO_MODEL_CONFIG))
    if mean_pooling:
        config["vision_config"].update(kmt_num_hidden_layers=0, use_temporal_embedding=False)
    model = ModelArguments(
        config_overrides=json.dumps(config),
        kronecker_mask=kronecker_mask,
        tokenizer_name_or_path=WORD_LEVEL_TOKENIZER,  # a from-scratch text tower learns its own small vocabulary
    )
    data = DataTrainingArguments(
        dataset_dir=str(data_dir),
        prompt_bank="synthetic",
        # Four frames: on generator v5 the model left chance sooner with 4 than with 8 (README), at half the cost.
        num_frames=4,
        image_size=32,
        # Training crops are the whole frame, as at evaluation: a larger short side would show objects bigger in
        # training than in the tests and cut off motions that end near the border (positions are drawn at random
        # anyway).
        train_short_side=32,
        # Mirrored, transposed and reversed clips relabelled as what they show (a flipped "moving left" is "moving
        # right"): 16 distinct clips from each one, and every motion seen in every direction (README).
        label_symmetries="synthetic",
        flip_prob=0.0,  # the plain flip would keep the label
        # Fixed-size crops, no colour jitter or grayscale: multi-scale crops can cut off where a motion starts or
        # ends, and the flat-coloured shapes on muted backgrounds need no photometric invariance.
        train_scales=[1.0],
        color_jitter_prob=0.0,
        grayscale_prob=0.0,
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        test_symmetries=list(DEMO_TEST_SYMMETRIES),
        # The training and validation clips (about 430 MB decoded) are decoded once rather than at every epoch,
        # which leaves the cores to the model: no data workers are needed (README, "Demo speed").
        cache_videos=True,
    )
    training = ClaverTrainingArguments(
        output_dir=str(output_dir),
        do_train=True,
        do_eval=True,
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=DEMO_LEARNING_RATE,
        temporal_lr_multiplier=1.0,  # everything starts from scratch here
        # A text tower at the full rate often collapsed every class's text onto one point in the first epochs
        # (loss stuck at ln 10 for up to 6 epochs); at a tenth, no run stalled for more than two (README).
        text_lr_multiplier=0.1,
        # The from-scratch text tower first learns to tell the classes' prompts apart (seconds): without it, text
        # and video embeddings both start nearly equal and each tower's gradient waits for the other's (README).
        text_warm_start_steps=300,
        warmup_steps=0.05,
        weight_decay=0.01,
        use_cpu=True,
        eval_strategy="epoch",
        # The output folder holds the final model and its results; per-epoch checkpoints only when asked for
        # (to resume an interrupted run).
        save_strategy="epoch" if save_checkpoints else "no",
        save_total_limit=1,
        logging_steps=10,
        dataloader_num_workers=num_workers,
        disable_tqdm=not progress,
        report_to="none",
        seed=seed,
    )
    return model, data, training


def reversed_pair_accuracy(confusion: np.ndarray) -> dict[str, float]:
    """For each pair of time-reversed classes: accuracy over the pair's test videos, counting a video as right
    only when it gets its own class (so 0.5 on a pair is chance between the two directions, if the model at
    least finds the pair)."""
    accuracies = {}
    for first in range(0, len(SYNTHETIC_CLASSES), 2):
        pair = slice(first, first + 2)
        rows = confusion[pair]
        accuracies[f"{SYNTHETIC_CLASSES[first]} / {SYNTHETIC_CLASSES[first + 1]}"] = float(
            np.trace(confusion[pair, pair]) / max(rows.sum(), 1)
        )
    return accuracies


def pair_direction_accuracy(confusion: np.ndarray) -> dict[str, float]:
    """For each pair of time-reversed classes: of its test videos predicted as one of the pair's two classes, the
    share predicted as their own (0.5: the pair's two directions told apart at chance, as by a model blind to
    frame order; a pair never predicted counts 0.5)."""
    accuracies = {}
    for first in range(0, len(SYNTHETIC_CLASSES), 2):
        block = confusion[first : first + 2, first : first + 2]
        total = block.sum()
        accuracies[f"{SYNTHETIC_CLASSES[first]} / {SYNTHETIC_CLASSES[first + 1]}"] = (
            float(np.trace(block) / total) if total else 0.5
        )
    return accuracies


def direction_accuracy(confusion: np.ndarray) -> float:
    """Of the test videos predicted as one of the two classes of their own pair, the share predicted as their own
    class: 0.5 is chance between the two directions, which is all a model blind to frame order can do."""
    blocks = [
        confusion[first : first + 2, first : first + 2] for first in range(0, len(SYNTHETIC_CLASSES), 2)
    ]
    return float(sum(np.trace(block) for block in blocks) / max(sum(block.sum() for block in blocks), 1))


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def model_threads(num_workers: int) -> Iterator[None]:
    """Give the model's torch threads the cores the data workers leave, for the duration of the block: a data
    worker that decodes videos keeps a core busy (README, "Demo speed")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, _available_cores() - num_workers))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def evaluate_split(
    model_dir: str | Path,
    data_dir: str | Path,
    split: str = HELDOUT_SPLIT,
    progress: bool = True,
    symmetries: Sequence[str] = DEMO_TEST_SYMMETRIES,
    plot: bool = True,
) -> dict[str, Any]:
    """Test the model saved in `model_dir` on one split of a synthetic dataset (one clip per video, averaged over
    its label-mapped images under `symmetries`, transformations of `synthetic_label_symmetries`; empty: the clip
    alone): top-1 / top-5 accuracy, confusion matrix (with `plot`, also drawn as ``confusion_matrix_<split>.png``
    in `model_dir`), and the per-pair and direction accuracies."""
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    model = ClaverForVideoClassification.from_pretrained(model_dir).eval()
    processor = ClaverProcessor.from_pretrained(model_dir)
    dataset = AnnotationListDataset(
        data_dir / f"{split}.txt",
        data_dir,
        data_dir / "classes.csv",
        processor.video_processor,
        training=False,
    )
    permutations = synthetic_label_symmetries().permutations(model.config.id2label)
    with torch.inference_mode():
        probabilities, labels = predict_multiview(
            model, dataset, batch_size=32, progress=progress,
            symmetries={name: permutations[name] for name in symmetries},
        )  # fmt: skip
    metrics = load_top_k_accuracy().compute(predictions=probabilities, references=labels, k=[1, 5])
    matrix = confusion_matrix(probabilities.argmax(1), labels, len(SYNTHETIC_CLASSES))
    if plot:
        plot_confusion_matrix(matrix, list(SYNTHETIC_CLASSES), model_dir / f"confusion_matrix_{split}.png")
    return {
        **metrics,
        "confusion_matrix": matrix.tolist(),
        "reversed_pair_accuracy": reversed_pair_accuracy(matrix),
        "pair_direction_accuracy": pair_direction_accuracy(matrix),
        "direction_accuracy": direction_accuracy(matrix),
    }


def run_demo(
    output_dir: str | Path = "outputs/demo",
    *,
    data_dir: str | Path | None = None,
    kronecker_mask: str = "kmta",
    mean_pooling: bool = False,
    epochs: float = DEMO_EPOCHS,
    seed: int = 0,
    clips_per_class: tuple[int, int, int, int] = DEMO_CLIPS_PER_CLASS,
    num_workers: int = 0,
    progress: bool = True,
    save_checkpoints: bool = False,
) -> dict[str, Any]:
    """Write the synthetic dataset under `data_dir` (default `output_dir/data`; reused if already there;
    `clips_per_class` for the train / validation / test / heldout splits), train and test a model into
    `output_dir/model` (per-epoch checkpoints only with `save_checkpoints`), test it on the held-out split too,
    and return the results (also in `output_dir/model/results.json`). `num_workers`: data-loader processes
    (the demo's clips are decoded once, in this process, so none are needed); the dataset is written by one
    process per core."""
    output_dir = Path(output_dir)
    train, validation, test, heldout = clips_per_class
    dataset = write_synthetic_dataset(
        output_dir / "data" if data_dir is None else data_dir, num_train_per_class=train,
        num_val_per_class=validation, num_test_per_class=test, num_heldout_per_class=heldout, seed=seed,
        num_workers=_available_cores(), progress=progress,
    )  # fmt: skip
    model_dir = output_dir / "model"
    arguments = demo_arguments(
        model_dir, dataset["root"], kronecker_mask=kronecker_mask, mean_pooling=mean_pooling, epochs=epochs,
        seed=seed, num_workers=num_workers, progress=progress, save_checkpoints=save_checkpoints,
    )  # fmt: skip
    with model_threads(num_workers):
        results = run(*arguments)
        if heldout:
            results[HELDOUT_SPLIT] = evaluate_split(model_dir, dataset["root"], HELDOUT_SPLIT, progress)
    confusion = np.array(results["test"]["confusion_matrix"])
    results["reversed_pair_accuracy"] = reversed_pair_accuracy(confusion)
    results["pair_direction_accuracy"] = pair_direction_accuracy(confusion)
    results["direction_accuracy"] = direction_accuracy(confusion)
    (model_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
