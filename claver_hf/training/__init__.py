"""What fine-tuning CLAVER needs beyond `Trainer`: parameter groups, batching with MixUp / CutMix, metrics,
multi-view testing, figures, resuming from complete checkpoints only, and the run that ties them together."""

from .checkpoints import check_checkpoint, checkpoint_problems, latest_complete_checkpoint
from .collator import VideoClassificationCollator
from .metrics import (
    TOP_K_ACCURACY_PATH,
    compute_metrics,
    confusion_matrix,
    load_top_k_accuracy,
    predict_multiview,
)
from .optim import claver_parameter_groups
from .run import DataTrainingArguments, ModelArguments, prepare_run, run
from .trainer import ClaverTrainer, ClaverTrainingArguments

__all__ = [
    "TOP_K_ACCURACY_PATH",
    "ClaverTrainer",
    "ClaverTrainingArguments",
    "DataTrainingArguments",
    "ModelArguments",
    "VideoClassificationCollator",
    "check_checkpoint",
    "checkpoint_problems",
    "claver_parameter_groups",
    "compute_metrics",
    "confusion_matrix",
    "latest_complete_checkpoint",
    "load_top_k_accuracy",
    "predict_multiview",
    "prepare_run",
    "run",
]
