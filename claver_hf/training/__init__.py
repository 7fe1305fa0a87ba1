"""What fine-tuning CLAVER needs beyond `Trainer`: parameter groups, batching with MixUp / CutMix, metrics,
multi-view testing, figures, resuming from complete checkpoints only, a text warm start for text towers trained from
scratch, and the run that ties them together."""

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
from .text_warm_start import TextWarmStartResult, mean_class_cosine, warm_start_text_tower
from .trainer import ClaverTrainer, ClaverTrainingArguments

__all__ = [
    "TOP_K_ACCURACY_PATH",
    "ClaverTrainer",
    "ClaverTrainingArguments",
    "DataTrainingArguments",
    "ModelArguments",
    "TextWarmStartResult",
    "VideoClassificationCollator",
    "check_checkpoint",
    "checkpoint_problems",
    "claver_parameter_groups",
    "compute_metrics",
    "confusion_matrix",
    "latest_complete_checkpoint",
    "load_top_k_accuracy",
    "mean_class_cosine",
    "predict_multiview",
    "prepare_run",
    "run",
    "warm_start_text_tower",
]
