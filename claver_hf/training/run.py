"""Fine-tuning and evaluation of CLAVER video classifiers: what `examples/run_video_classification.py` runs.

Arguments come as three dataclasses (`ModelArguments`, `DataTrainingArguments`, `ClaverTrainingArguments`) so
that `HfArgumentParser` turns them into a command line. Everything that can be wrong with the arguments is
checked by `prepare_run` before any training starts.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoImageProcessor, CLIPConfig, PreTrainedTokenizerBase, set_seed
from transformers.utils import IMAGE_PROCESSOR_NAME, PROCESSOR_NAME, VIDEO_PROCESSOR_NAME, cached_file

from ..configuration.configuration_claver import ClaverConfig
from ..data.datasets import (
    AnnotationListDataset,
    HFVideoDataset,
    VideoClassificationDataset,
    VideoFolderDataset,
)
from ..modeling.modeling_claver import ClaverForVideoClassification, ClaverModel
from ..processing.processing_claver import ClaverProcessor
from ..processing.tokenization import (
    CLIP_TOKENIZER,
    WORD_LEVEL_TOKENIZER,
    check_tokenizer_fits,
    has_tokenizer,
    load_tokenizer,
    word_level_tokenizer,
)
from ..processing.video_processing_claver import ClaverVideoProcessor
from ..prompts.bank import PromptBank, load_prompt_bank
from ..prompts.templates import TEMPLATES
from .collator import VideoClassificationCollator
from .metrics import compute_metrics, confusion_matrix, load_top_k_accuracy, predict_multiview
from .plots import plot_confusion_matrix, plot_training_curves
from .trainer import ClaverTrainer, ClaverTrainingArguments

logger = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
# A fresh model's clip shape when nothing else sets it (CLIP's frame size, the paper's 8 frames).
DEFAULT_NUM_FRAMES = 8
DEFAULT_IMAGE_SIZE = 224


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A CLAVER checkpoint to fine-tune further, or a CLIP checkpoint to build a new CLAVER from (its "
            "weights, tokenizer, frame size and normalisation). Unset: a fresh model (see --config_overrides)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": 'JSON object of ClaverConfig fields, e.g. \'{"vision_config": {"hidden_size": 128}}\': the '
            "architecture of a fresh model; with a checkpoint, only fields that keep the shapes of its weights "
            "(kronecker_mask, zero_init_temporal, kmt_num_hidden_layers of a CLIP start, ...); others are refused."
        },
    )
    kronecker_mask: str | None = field(default=None, metadata={"help": "Kronecker mask of the KMT blocks."})
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": f"A tokenizer folder or Hub id, {CLIP_TOKENIZER!r} (CLIP's BPE tokenizer, bundled) or "
            f"{WORD_LEVEL_TOKENIZER!r} (a word-level tokenizer of the prompt bank's words; fresh models only). "
            "Default: the checkpoint's own tokenizer; for a fresh model, word-level (with a warning)."
        },
    )
    freeze_text_encoder: bool = field(
        default=False, metadata={"help": "Freeze the text tower and reuse its cached features at every step."}
    )


@dataclass
class DataTrainingArguments:
    dataset_dir: str | None = field(
        default=None,
        metadata={
            "help": "A dataset folder: <dir>/<split>/<class>/<video> (folder format), or, with classes.csv and "
            "<split>.txt lists inside (list format)."
        },
    )
    dataset_format: str = field(default="auto", metadata={"help": "auto | folder | list | hf"})
    hf_dataset_path: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset saved with save_to_disk (format hf)."}
    )
    video_column: str = field(default="video", metadata={"help": "Video column of an hf dataset."})
    label_column: str = field(default="label", metadata={"help": "Label column of an hf dataset."})
    prompt_bank: str | None = field(
        default=None, metadata={"help": "A bundled prompt bank name or a bank file; unset: templates only."}
    )
    num_frames: int | None = field(
        default=None,
        metadata={
            "help": f"Frames per clip. Default: the CLAVER checkpoint's, else {DEFAULT_NUM_FRAMES}; a checkpoint's "
            "temporal embedding is resampled to another count."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": f"Frame size (short side resized to it, then cropped square). Default: the checkpoint's, else "
            f"{DEFAULT_IMAGE_SIZE}; a checkpoint's position embeddings are resampled to another size (a multiple "
            "of its patch size)."
        },
    )
    train_short_side: int | None = field(
        default=None, metadata={"help": "Short side before training crops (default: image_size x 256 / 224)."}
    )
    flip_prob: float = field(
        default=0.5, metadata={"help": "Horizontal flip probability (0 for direction-sensitive classes)."}
    )
    train_scales: list[float] = field(
        default_factory=lambda: [1.0, 0.875, 0.75, 0.66],
        metadata={
            "help": "Multi-scale crop: crop sides as fractions of the short side ([1.0]: fixed-size crops)."
        },
    )
    color_jitter_prob: float = field(default=0.8, metadata={"help": "Colour-jitter probability."})
    grayscale_prob: float = field(default=0.2, metadata={"help": "Grayscale probability."})
    test_num_clips: int = field(default=1, metadata={"help": "Temporal views of the final test (paper: 4)."})
    test_num_crops: int = field(default=1, metadata={"help": "Spatial views of the final test (paper: 3)."})
    mixup_alpha: float = field(default=0.8, metadata={"help": "MixUp alpha (0 disables)."})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "CutMix alpha (0 disables)."})
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing."})
    few_shot_k: int | None = field(
        default=None, metadata={"help": "Train on K examples per class (few-shot)."}
    )
    on_error: str = field(default="skip", metadata={"help": "raise | skip unreadable videos."})


@dataclass
class RunPlan:
    """Everything `run` needs, built and checked by `prepare_run`."""

    model: ClaverForVideoClassification
    processor: ClaverProcessor
    datasets: dict[str, VideoClassificationDataset]
    id2label: dict[int, str]
    bank: PromptBank


def _split_datasets(data: DataTrainingArguments, processor: ClaverVideoProcessor) -> dict[str, Any]:
    fmt = data.dataset_format
    if fmt == "hf" or (fmt == "auto" and data.hf_dataset_path):
        from datasets import load_from_disk

        if not data.hf_dataset_path:
            raise ValueError("--dataset_format hf needs --hf_dataset_path.")
        splits = load_from_disk(data.hf_dataset_path)
        return {
            split: HFVideoDataset(
                splits[split], processor, video_column=data.video_column, label_column=data.label_column,
                training=split == "train", on_error=data.on_error,
            )
            for split in SPLITS
            if split in splits
        }  # fmt: skip
    if not data.dataset_dir:
        raise ValueError("Give a dataset: --dataset_dir (folder or list format) or --hf_dataset_path.")
    root = Path(data.dataset_dir)
    if not root.is_dir():
        raise ValueError(f"--dataset_dir {root} is not a directory.")
    if fmt == "list" or (fmt == "auto" and (root / "classes.csv").is_file()):
        return {
            split: AnnotationListDataset(
                root / f"{split}.txt", root, root / "classes.csv", processor,
                training=split == "train", on_error=data.on_error,
            )
            for split in SPLITS
            if (root / f"{split}.txt").is_file()
        }  # fmt: skip
    return {
        split: VideoFolderDataset(root / split, processor, training=split == "train", on_error=data.on_error)
        for split in SPLITS
        if (root / split).is_dir()
    }


def _few_shot(dataset: VideoClassificationDataset, k: int, seed: int) -> None:
    """Keep `k` training examples per class, drawn with `seed` (recorded in the run's results)."""
    by_class: dict[int, list] = {}
    for sample in dataset.samples:
        by_class.setdefault(sample[1], []).append(sample)
    rng = random.Random(seed)
    short = [dataset.id2label[c] for c, samples in by_class.items() if len(samples) < k]
    if short:
        raise ValueError(f"Few-shot K={k}: classes {short[:5]} have fewer than {k} training examples.")
    dataset.samples = [s for c in sorted(by_class) for s in rng.sample(by_class[c], k)]


def _bank_for(labels: list[str], bank_name: str | None) -> PromptBank:
    if bank_name is None:
        from ..prompts.bank import ClassPrompts, display_name

        classes = {label: ClassPrompts(display_name(label), {}) for label in labels}
        return PromptBank("templates", list(TEMPLATES), classes)
    return load_prompt_bank(bank_name).subset(labels)


@dataclass
class Checkpoint:
    """The checkpoint a run starts from: its name or path and its config (CLAVER's or CLIP's)."""

    path: str
    config: ClaverConfig | CLIPConfig

    @classmethod
    def load(cls, path: str) -> Checkpoint:
        config = AutoConfig.from_pretrained(path)
        if not isinstance(config, (ClaverConfig, CLIPConfig)):
            raise ValueError(
                f"--model_name_or_path {path} is neither a CLAVER nor a CLIP checkpoint (model type {config.model_type!r})."
            )
        return cls(path, config)

    @property
    def is_claver(self) -> bool:
        return isinstance(self.config, ClaverConfig)

    def as_claver_config(self) -> ClaverConfig:
        """The checkpoint's architecture as a CLAVER config (a CLIP one gains the default temporal parts)."""
        return self.config if self.is_claver else ClaverConfig.from_clip_config(self.config)


@dataclass
class ConfigOverrides:
    """`--config_overrides` split by sub-config, with `--kronecker_mask` folded in."""

    vision: dict[str, Any]
    text: dict[str, Any]
    top: dict[str, Any]

    @classmethod
    def parse(cls, model_args: ModelArguments) -> ConfigOverrides:
        overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
        if not isinstance(overrides, dict):
            raise ValueError(
                f"--config_overrides must be a JSON object, got {model_args.config_overrides!r}."
            )
        vision = dict(overrides.pop("vision_config", {}))
        if model_args.kronecker_mask:
            vision["kronecker_mask"] = model_args.kronecker_mask
        return cls(vision, dict(overrides.pop("text_config", {})), overrides)


def _check_data_arguments(data: DataTrainingArguments) -> None:
    for name in ("num_frames", "image_size"):
        value = getattr(data, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}.")
    if not data.train_scales or not all(0 < scale <= 1 for scale in data.train_scales):
        raise ValueError(f"--train_scales must be fractions in (0, 1], got {data.train_scales}.")
    for name in ("flip_prob", "color_jitter_prob", "grayscale_prob"):
        if not 0 <= getattr(data, name) <= 1:
            raise ValueError(f"--{name} must be a probability in [0, 1], got {getattr(data, name)}.")
    if data.on_error not in ("raise", "skip"):
        raise ValueError(f"--on_error must be 'raise' or 'skip', got {data.on_error!r}.")


def _clip_shape(
    data: DataTrainingArguments, checkpoint: Checkpoint | None, overrides: ConfigOverrides
) -> tuple[int, int]:
    """Frames per clip and frame size: given (as an argument or in `--config_overrides`, not both differently),
    else the checkpoint's, else the defaults. Removes them from `overrides`: the model is loaded at the
    checkpoint's shape and resampled to these."""
    resolved = []
    for name, default in (("num_frames", DEFAULT_NUM_FRAMES), ("image_size", DEFAULT_IMAGE_SIZE)):
        given, in_overrides = getattr(data, name), overrides.vision.pop(name, None)
        if given is not None and in_overrides is not None and given != in_overrides:
            raise ValueError(
                f"--{name} {given} and --config_overrides vision_config.{name} {in_overrides} disagree; give one."
            )
        value = given if given is not None else in_overrides
        if value is None and checkpoint is not None:
            value = getattr(checkpoint.config.vision_config, name, None)  # a CLIP config has no num_frames
        resolved.append(default if value is None else value)
    return resolved[0], resolved[1]


def _checkpoint_normalisation(checkpoint: Checkpoint) -> dict[str, Any]:
    """The pixel mean and std of the checkpoint's own processor (CLAVER's video processor, or CLIP's image
    processor); nothing when it has none (CLIP's values are the default)."""
    if checkpoint.is_claver:
        files, load = (PROCESSOR_NAME, VIDEO_PROCESSOR_NAME), ClaverVideoProcessor.from_pretrained
    else:
        files, load = (IMAGE_PROCESSOR_NAME, PROCESSOR_NAME), AutoImageProcessor.from_pretrained
    if not any(cached_file(checkpoint.path, f, _raise_exceptions_for_missing_entries=False) for f in files):
        return {}
    processor = load(checkpoint.path)
    return {"image_mean": list(processor.image_mean), "image_std": list(processor.image_std)}


def _video_processor(
    data: DataTrainingArguments, checkpoint: Checkpoint | None, num_frames: int, image_size: int
) -> ClaverVideoProcessor:
    return ClaverVideoProcessor(
        num_frames=num_frames,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        train_short_side=data.train_short_side or round(image_size * 256 / 224),
        flip_prob=data.flip_prob,
        train_scales=tuple(data.train_scales),
        color_jitter_prob=data.color_jitter_prob,
        grayscale_prob=data.grayscale_prob,
        **(_checkpoint_normalisation(checkpoint) if checkpoint else {}),
    )


def _tokenizer(
    model_args: ModelArguments, checkpoint: Checkpoint | None, bank: PromptBank
) -> PreTrainedTokenizerBase:
    """The tokenizer the text tower is fed by: the one asked for, else the checkpoint's own; a word-level one only
    for a fresh model, whose text tower learns its ids from scratch."""
    name = model_args.tokenizer_name_or_path
    if name == WORD_LEVEL_TOKENIZER or (name is None and checkpoint is None):
        if checkpoint is not None:
            raise ValueError(
                f"--tokenizer_name_or_path {WORD_LEVEL_TOKENIZER} builds a new vocabulary, for models trained from "
                f"scratch; the text tower of {checkpoint.path} was trained on its own tokenizer's ids."
            )
        if name is None:
            logger.warning(
                "A fresh model and no --tokenizer_name_or_path: using a word-level tokenizer built from the prompt "
                f"bank's words. Pass --tokenizer_name_or_path {WORD_LEVEL_TOKENIZER} to choose it explicitly, or "
                f"{CLIP_TOKENIZER} for CLIP's BPE tokenizer."
            )
        return word_level_tokenizer([view for label in bank.class_names for view in bank.views(label)])
    if name is not None:
        return load_tokenizer(name)
    if not has_tokenizer(checkpoint.path):
        raise ValueError(
            f"{checkpoint.path} has no tokenizer, and its text tower must be fed the ids of the tokenizer it was "
            f"trained with: pass --tokenizer_name_or_path (a folder or Hub id, or {CLIP_TOKENIZER!r} for CLIP's "
            "BPE tokenizer, bundled with claver-hf, which every OpenAI CLIP model uses)."
        )
    return load_tokenizer(checkpoint.path)


def _parameter_shapes(config: ClaverConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = ClaverModel(config)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def _refuse_reshaping(checkpoint: Checkpoint, base: ClaverConfig, config: ClaverConfig) -> None:
    """Raise when `config` (the checkpoint's with `--config_overrides`) would change or drop a weight of the
    checkpoint (for a CLIP checkpoint, every weight but CLAVER's temporal ones)."""
    before, after = _parameter_shapes(base), _parameter_shapes(config)
    if not checkpoint.is_claver:
        before = {
            name: shape for name, shape in before.items() if not name.startswith("vision_model.temporal_")
        }
    changed = [
        f"{name} {shape} -> {after.get(name, 'absent')}"
        for name, shape in before.items()
        if after.get(name) != shape
    ]
    if changed:
        raise ValueError(
            f"--config_overrides would change the shape of {len(changed)} weight(s) of {checkpoint.path}, e.g. "
            f"{'; '.join(changed[:3])}. With a checkpoint, override only fields that keep its weights (frames and "
            "frame size have their own arguments)."
        )


def _config(fields: dict[str, Any]) -> ClaverConfig:
    """`ClaverConfig.from_dict(fields)`, its validation errors as `ValueError`s that name the arguments."""
    try:
        return ClaverConfig.from_dict(fields)
    except StrictDataclassError as error:
        raise ValueError(f"--config_overrides / --kronecker_mask: {error.__cause__ or error}") from error


def _merge(base: ClaverConfig, overrides: ConfigOverrides, **fields: Any) -> ClaverConfig:
    data = base.to_dict()
    data["vision_config"] = {**data["vision_config"], **overrides.vision}
    data["text_config"] = {**data["text_config"], **overrides.text}
    return _config({**data, **overrides.top, **fields})


def _model(
    checkpoint: Checkpoint | None,
    overrides: ConfigOverrides,
    data: DataTrainingArguments,
    num_frames: int,
    image_size: int,
    tokenizer: PreTrainedTokenizerBase,
    id2label: dict[int, str],
) -> ClaverForVideoClassification:
    if checkpoint is None:
        text = {
            **overrides.text,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        vision = {**overrides.vision, "num_frames": num_frames, "image_size": image_size}
        return ClaverForVideoClassification(
            _config({
                "vision_config": vision, "text_config": text, **overrides.top,
                "id2label": id2label, "label_smoothing": data.label_smoothing,
            })
        )  # fmt: skip

    base = checkpoint.as_claver_config()
    # A CLAVER classifier's stored text bank keeps the checkpoint's classes until `set_text_bank` replaces it.
    labels = {} if checkpoint.is_claver else {"id2label": id2label}
    config = _merge(base, overrides, label_smoothing=data.label_smoothing, **labels)
    _refuse_reshaping(checkpoint, base, config)
    trained_mask = base.vision_config.kronecker_mask
    if checkpoint.is_claver and config.vision_config.kronecker_mask != trained_mask:
        logger.warning(
            f"{checkpoint.path} was trained with the {trained_mask} mask; its KMT blocks now run with "
            f"{config.vision_config.kronecker_mask}."
        )
    model = ClaverForVideoClassification.from_pretrained(checkpoint.path, config=config)
    vision_model = model.claver.vision_model
    if num_frames != config.vision_config.num_frames:
        logger.info(
            f"Temporal embedding resampled from {config.vision_config.num_frames} to {num_frames} frames."
        )
        vision_model.resize_temporal_embedding(num_frames)
    if image_size != config.vision_config.image_size:
        logger.info(
            f"Position embeddings resampled from {config.vision_config.image_size} to {image_size} pixels."
        )
        vision_model.resize_position_embeddings(image_size)
    return model


def prepare_run(
    model_args: ModelArguments, data: DataTrainingArguments, training_args: ClaverTrainingArguments
) -> RunPlan:
    """Build model, processor and datasets; every argument error is raised here, before training."""
    set_seed(training_args.seed)  # before the model is built: a fresh model's weights depend on it
    _check_data_arguments(data)
    checkpoint = Checkpoint.load(model_args.model_name_or_path) if model_args.model_name_or_path else None
    overrides = ConfigOverrides.parse(model_args)
    num_frames, image_size = _clip_shape(data, checkpoint, overrides)
    video_processor = _video_processor(data, checkpoint, num_frames, image_size)
    datasets = _split_datasets(data, video_processor)
    if "train" in datasets:
        datasets["train"].seed = training_args.seed
    if training_args.do_train and "train" not in datasets:
        raise ValueError("--do_train needs a 'train' split in the dataset.")
    if not datasets:
        raise ValueError("The dataset has none of the splits train, validation, test.")
    id2label = next(iter(datasets.values())).id2label
    bank = _bank_for(list(id2label.values()), data.prompt_bank)
    if data.few_shot_k is not None and "train" in datasets:
        _few_shot(datasets["train"], data.few_shot_k, training_args.seed)

    tokenizer = _tokenizer(model_args, checkpoint, bank)
    processor = ClaverProcessor(video_processor=video_processor, tokenizer=tokenizer, prompt_bank=bank)
    model = _model(checkpoint, overrides, data, num_frames, image_size, tokenizer, id2label)
    check_tokenizer_fits(
        tokenizer, model.config.text_config, model_args.model_name_or_path or "the new model"
    )
    model.set_text_bank(**processor.text_bank(), id2label=id2label)
    if model_args.freeze_text_encoder:
        for parameter in [*model.claver.text_model.parameters(), *model.claver.text_projection.parameters()]:
            parameter.requires_grad = False
    return RunPlan(model, processor, datasets, id2label, bank)


def run(
    model_args: ModelArguments, data: DataTrainingArguments, training_args: ClaverTrainingArguments
) -> dict[str, Any]:
    """Train (if asked), validate, run the final multi-view test and write the artefacts to `output_dir`:
    model (safetensors), processor with prompt bank, metrics, training-curve and confusion-matrix PNGs and a
    model card."""
    plan = prepare_run(model_args, data, training_args)
    num_classes = len(plan.id2label)
    trainer = ClaverTrainer(
        model=plan.model,
        args=training_args,
        processing_class=plan.processor,  # every checkpoint then holds the processor: a complete model folder
        train_dataset=plan.datasets.get("train"),
        eval_dataset=plan.datasets.get("validation"),
        data_collator=VideoClassificationCollator(num_classes, data.mixup_alpha, data.cutmix_alpha),
        eval_data_collator=VideoClassificationCollator(num_classes),
        compute_metrics=compute_metrics,
    )
    results: dict[str, Any] = {
        "seed": training_args.seed,
        "few_shot_k": data.few_shot_k,
        "world_size": training_args.world_size,
    }
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        results["train"] = train_result.metrics
    if "validation" in plan.datasets and training_args.do_eval:
        results["validation"] = trainer.evaluate()

    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        if "test" in plan.datasets:
            results["test"] = _final_test(trainer, plan, data, output_dir)
        skipped = {name: len(d.skipped) for name, d in plan.datasets.items()}
        results["skipped_videos"] = skipped
        if any(skipped.values()):
            logger.warning(f"Unreadable videos skipped per split: {skipped}")
        trainer.save_model(str(output_dir))
        (output_dir / "README.md").write_text(_model_card(plan, model_args, data, results, output_dir))
        plot_training_curves(trainer.state.log_history, output_dir / "training_curve.png")
        (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def _model_card(
    plan: RunPlan, model_args: ModelArguments, data: DataTrainingArguments, results: dict, output_dir: Path
) -> str:
    from huggingface_hub import EvalResult

    from ..hub import model_card

    dataset = Path(data.hf_dataset_path or data.dataset_dir or "dataset").name
    evaluations = []
    for split, prefix in (("test", ""), ("validation", "eval_")):
        for k in (1, 5):
            value = results.get(split, {}).get(f"{prefix}top_{k}_accuracy")
            if value is not None:
                evaluations.append(
                    EvalResult(
                        task_type="video-classification", dataset_type=dataset, dataset_name=dataset,
                        dataset_split=split, metric_type="accuracy", metric_name=f"top-{k} accuracy",
                        metric_value=round(100 * value, 2),
                    )
                )  # fmt: skip
    bank = data.prompt_bank or "templates only"
    vision = plan.model.config.vision_config
    protocol = (
        f"{vision.num_frames} frames at {vision.image_size}x{vision.image_size}; test views "
        f"{data.test_num_clips} clips x {data.test_num_crops} crops; validation 1 view; prompt bank: {bank}; "
        "class probabilities averaged over the text views."
    )
    training = "Fine-tuned" if model_args.model_name_or_path else "Trained from scratch"
    if data.few_shot_k:
        training += f", few-shot with {data.few_shot_k} examples per class (seed {results['seed']})"
    return model_card(
        plan.model, plan.processor, str(output_dir), base_model=model_args.model_name_or_path,
        eval_results=evaluations, evaluation_protocol=protocol,
        training=f"{training} with claver-hf's run_video_classification (SPEC §4 recipe defaults).",
    )  # fmt: skip


def _final_test(trainer: ClaverTrainer, plan: RunPlan, data: DataTrainingArguments, output_dir: Path) -> dict:
    test = plan.datasets["test"]
    test.processor_kwargs = {"num_clips": data.test_num_clips, "num_crops": data.test_num_crops}
    probabilities, labels = predict_multiview(
        trainer.model, test, batch_size=trainer.args.per_device_eval_batch_size
    )
    metrics = load_top_k_accuracy().compute(predictions=probabilities, references=labels, k=[1, 5])
    matrix = confusion_matrix(probabilities.argmax(1), labels, len(plan.id2label))
    plot_confusion_matrix(matrix, list(plan.id2label.values()), output_dir / "confusion_matrix.png")
    return {
        **metrics,
        "views": f"{data.test_num_clips}x{data.test_num_crops}",
        "confusion_matrix": matrix.tolist(),
    }
