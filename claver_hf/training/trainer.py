"""`Trainer` with the paper's recipe: parameter groups, AdamW settings, cosine schedule, separate eval batching."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import TrainOutput

from .checkpoints import check_checkpoint, latest_complete_checkpoint
from .optim import claver_parameter_groups


@dataclass
class ClaverTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults (docs/recipe.md): AdamW betas (0.9, 0.98), eps 1e-8, weight decay 0.001,
    learning rate 1.2e-5 for CLIP weights and 10× for the temporal parts, warm-up then cosine to lr / 100.

    On a machine without an accelerator `use_cpu` is implied, so one command line serves GPUs and CPUs alike:
    `--bf16` then means bf16 autocast on the CPU (transformers refuses it without `--use_cpu`), and processes
    started by `accelerate launch` form their gloo group (without it each would silently train alone).
    """

    learning_rate: float = field(default=1.2e-5, metadata={"help": "Learning rate of the CLIP weights."})
    temporal_lr_multiplier: float = field(
        default=10.0, metadata={"help": "Learning-rate factor of the KMT blocks and the temporal embedding."}
    )
    text_lr_multiplier: float = field(
        default=1.0, metadata={"help": "Learning-rate factor of the text tower and its projection."}
    )
    text_warm_start_steps: int = field(
        default=0,
        metadata={
            "help": "Before training, steps of text-only training on the prompt bank that pull each class's "
            "prompts together and apart from the other classes' (for a text tower trained from scratch; 0: none). "
            "See claver_hf.training.text_warm_start."
        },
    )
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    weight_decay: float = field(
        default=0.001, metadata={"help": "Weight decay of matrices (not biases, norms, embeddings)."}
    )
    lr_scheduler_type: str = field(default="cosine_with_min_lr", metadata={"help": "Learning-rate schedule."})
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: {"min_lr_rate": 0.01},
        metadata={"help": "Schedule arguments (cosine down to lr/100)."},
    )

    def __post_init__(self):
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        if self.text_warm_start_steps < 0:
            raise ValueError(f"--text_warm_start_steps must be 0 or more, got {self.text_warm_start_steps}.")
        super().__post_init__()


class DatasetEpochCallback(TrainerCallback):
    """Calls `dataset.set_epoch(epoch)` when an epoch begins, before its data-loader workers start (accelerate
    forwards `set_epoch` to a dataset only when the sampler has none)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        # `state.epoch` is fractional when a run resumes inside an epoch.
        self.dataset.set_epoch(math.floor(state.epoch + 1e-6))


class ClaverTrainer(Trainer):
    """A `Trainer` that builds CLAVER's parameter groups, batches evaluation data with `eval_data_collator`
    (no MixUp / CutMix at evaluation) when one is given, tells a training dataset with `set_epoch` (one
    seeding its items by epoch and index) which epoch it serves, and resumes only from complete checkpoints
    (see `claver_hf.training.checkpoints`)."""

    def __init__(self, *args: Any, eval_data_collator: Callable | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        if hasattr(self.train_dataset, "set_epoch"):
            if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
                raise ValueError(
                    "--dataloader_persistent_workers keeps each worker's copy of the training dataset, which then "
                    "never learns the epoch: every epoch would repeat the same random frames and augmentation. "
                    "Leave persistent workers off."
                )
            self.add_callback(DatasetEpochCallback(self.train_dataset))

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> TrainOutput:
        """`Trainer.train`, resuming from the latest complete checkpoint of `output_dir` for
        `resume_from_checkpoint=True` (or `"True"`, as the command line gives it), each newer incomplete one
        skipped with a warning, and refusing an incomplete checkpoint path with an error that names what it lacks.
        """
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() == "true":
            resume_from_checkpoint = True
        layout = {
            "world_size": self.args.world_size,
            "engine_saves_weights": self.is_deepspeed_enabled or self.is_fsdp_enabled,
        }
        if resume_from_checkpoint is True:
            resume_from_checkpoint = latest_complete_checkpoint(self.args.output_dir, **layout)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"--resume_from_checkpoint True: {self.args.output_dir} holds no complete checkpoint-N folder "
                    "to resume from."
                )
        elif isinstance(resume_from_checkpoint, str):
            check_checkpoint(resume_from_checkpoint, **layout)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = claver_parameter_groups(
                model,
                self.args.learning_rate,
                self.args.weight_decay,
                getattr(self.args, "temporal_lr_multiplier", 1.0),
                getattr(self.args, "text_lr_multiplier", 1.0),
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        with self._evaluation_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset: Dataset) -> DataLoader:
        with self._evaluation_collator():
            return super().get_test_dataloader(test_dataset)

    @contextmanager
    def _evaluation_collator(self) -> Iterator[None]:
        """Within the block `data_collator` is `eval_data_collator` (when one is given), which the data loaders
        built there keep; the training collator is back after it."""
        if self.eval_data_collator is None:
            yield
            return
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            yield
        finally:
            self.data_collator = train_collator
