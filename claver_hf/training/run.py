"""Fine-tuning and evaluation of CLAVER video classifiers: what `examples/run_video_classification.py` runs.

Arguments come as three dataclasses (`ModelArguments`, `DataTrainingArguments`, `ClaverTrainingArguments`) so
that `HfArgumentParser` turns them into a command line. Everything that can be wrong with the arguments is
checked by `prepare_run` before any training starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from ..data.datasets import (
    AnnotationListDataset,
    HFVideoDataset,
    VideoClassificationDataset,
    VideoFolderDataset,
)
from ..data.symmetries import load_label_symmetries
from ..modeling.modeling_claver import ClaverForVideoClassification
from ..processing.processing_claver import ClaverProcessor
from ..processing.tokenization import CLIP_TOKENIZER, WORD_LEVEL_TOKENIZER, check_tokenizer_fits
from ..processing.video_processing_claver import ClaverVideoProcessor
from ..prompts.bank import PromptBank, load_prompt_bank
from ..prompts.templates import TEMPLATES
from .collator import VideoClassificationCollator
from .metrics import compute_metrics, confusion_matrix, load_top_k_accuracy, predict_multiview
from .plots import plot_confusion_matrix, plot_training_curves
from .start import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_NUM_FRAMES,
    Checkpoint,
    ConfigOverrides,
    build_classifier,
    choose_tokenizer,
    clip_shape,
)
from .text_warm_start import warm_start_text_tower
from .trainer import ClaverTrainer, ClaverTrainingArguments

logger = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


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
    label_symmetries: str | None = field(
        default=None,
        metadata={
            "help": "Label-mapped augmentation: 'synthetic' or a JSON file giving, for horizontal_flip, "
            "vertical_flip, transpose and time_reversal, the class each class becomes (null: not transformed); "
            "each is applied to training clips with probability --symmetry_prob. Replaces --flip_prob, which "
            "must then be 0 (see claver_hf.data.symmetries)."
        },
    )
    symmetry_prob: float = field(
        default=0.5, metadata={"help": "Probability of each transformation of --label_symmetries."}
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
    test_symmetries: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Transformations of --label_symmetries the final test also averages over, each view read back "
            "through the class it shows: k of them give 2**k views (horizontal_flip vertical_flip transpose: "
            "the 8 mirror images and quarter turns). Every class needs an image under each."
        },
    )
    mixup_alpha: float = field(default=0.8, metadata={"help": "MixUp alpha (0 disables)."})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "CutMix alpha (0 disables)."})
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing."})
    few_shot_k: int | None = field(
        default=None, metadata={"help": "Train on K examples per class (few-shot)."}
    )
    on_error: str = field(default="skip", metadata={"help": "raise | skip unreadable videos."})
    cache_videos: bool = field(
        default=False,
        metadata={
            "help": "Decode the train and validation videos once, before training, and keep all their frames in "
            "memory instead of decoding them at every epoch: for datasets whose decoded frames fit in RAM "
            "(frames x height x width x 3 bytes per video, in every training process). Items are the same as "
            "without it."
        },
    )


@dataclass
class RunPlan:
    """Everything `run` needs, built and checked by `prepare_run`."""

    model: ClaverForVideoClassification
    processor: ClaverProcessor
    datasets: dict[str, VideoClassificationDataset]
    id2label: dict[int, str]
    bank: PromptBank


def _split_options(data: DataTrainingArguments, seed: int) -> dict[str, dict[str, Any]]:
    """Dataset arguments of each split: training randomness (seeded), few-shot selection and label-mapped
    augmentation for train, the final test's views for test; the splits read at every epoch are cached if asked."""
    symmetries = load_label_symmetries(data.label_symmetries) if data.label_symmetries else None
    return {
        "train": {
            "training": True,
            "seed": seed,
            "samples_per_class": data.few_shot_k,
            "label_symmetries": symmetries,
            "symmetry_prob": data.symmetry_prob,
            "cache_videos": data.cache_videos,
        },
        "validation": {"cache_videos": data.cache_videos},
        "test": {"processor_kwargs": {"num_clips": data.test_num_clips, "num_crops": data.test_num_crops}},
    }


def _split_datasets(
    data: DataTrainingArguments, processor: ClaverVideoProcessor, seed: int
) -> dict[str, VideoClassificationDataset]:
    options = {
        split: {"on_error": data.on_error, **kwargs} for split, kwargs in _split_options(data, seed).items()
    }
    fmt = data.dataset_format
    if fmt == "hf" or (fmt == "auto" and data.hf_dataset_path):
        from datasets import load_from_disk

        if not data.hf_dataset_path:
            raise ValueError("--dataset_format hf needs --hf_dataset_path.")
        splits = load_from_disk(data.hf_dataset_path)
        return {
            split: HFVideoDataset(
                splits[split], processor, video_column=data.video_column, label_column=data.label_column,
                **options[split],
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
            split: AnnotationListDataset(root / f"{split}.txt", root, root / "classes.csv", processor, **options[split])
            for split in SPLITS
            if (root / f"{split}.txt").is_file()
        }  # fmt: skip
    return {
        split: VideoFolderDataset(root / split, processor, **options[split])
        for split in SPLITS
        if (root / split).is_dir()
    }


def _bank_for(labels: list[str], bank_name: str | None) -> PromptBank:
    if bank_name is None:
        from ..prompts.bank import ClassPrompts, display_name

        classes = {label: ClassPrompts(display_name(label), {}) for label in labels}
        return PromptBank("templates", list(TEMPLATES), classes)
    return load_prompt_bank(bank_name).subset(labels)


def _check_data_arguments(data: DataTrainingArguments) -> None:
    for name in ("num_frames", "image_size"):
        value = getattr(data, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}.")
    if not data.train_scales or not all(0 < scale <= 1 for scale in data.train_scales):
        raise ValueError(f"--train_scales must be fractions in (0, 1], got {data.train_scales}.")
    for name in ("flip_prob", "color_jitter_prob", "grayscale_prob", "symmetry_prob"):
        if not 0 <= getattr(data, name) <= 1:
            raise ValueError(f"--{name} must be a probability in [0, 1], got {getattr(data, name)}.")
    if data.label_symmetries and data.flip_prob > 0:
        raise ValueError(
            f"--label_symmetries {data.label_symmetries!r} flips clips with their labels; --flip_prob "
            f"{data.flip_prob} would also flip them without: give --flip_prob 0."
        )
    if data.test_symmetries:
        named = load_label_symmetries(data.label_symmetries).label_maps if data.label_symmetries else {}
        missing = [name for name in data.test_symmetries if name not in named]
        if missing:
            raise ValueError(
                f"--test_symmetries {missing} are not among the transformations of --label_symmetries "
                f"{data.label_symmetries!r} ({sorted(named)})."
            )
        for name in data.test_symmetries:
            unknown = sorted(label for label, image in named[name].items() if image is None)
            if unknown:
                raise ValueError(
                    f"--test_symmetries {name!r}: --label_symmetries maps {unknown[:5]} to null, so a test view "
                    "of their clips would have no class to be read back as."
                )
    if data.on_error not in ("raise", "skip"):
        raise ValueError(f"--on_error must be 'raise' or 'skip', got {data.on_error!r}.")


def _video_processor(
    data: DataTrainingArguments, checkpoint: Checkpoint | None, num_frames: int, image_size: int
) -> ClaverVideoProcessor:
    """Frames sampled and resized for the model, with the training augmentation the arguments ask for."""
    return ClaverVideoProcessor(
        num_frames=num_frames,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        train_short_side=data.train_short_side or round(image_size * 256 / 224),
        flip_prob=data.flip_prob,
        train_scales=tuple(data.train_scales),
        color_jitter_prob=data.color_jitter_prob,
        grayscale_prob=data.grayscale_prob,
        **(checkpoint.normalisation() if checkpoint else {}),
    )


def prepare_run(
    model_args: ModelArguments, data: DataTrainingArguments, training_args: ClaverTrainingArguments
) -> RunPlan:
    """Build model, processor and datasets; every argument error is raised here, before training."""
    set_seed(training_args.seed)  # before the model is built: a fresh model's weights depend on it
    _check_data_arguments(data)
    checkpoint = Checkpoint.load(model_args.model_name_or_path) if model_args.model_name_or_path else None
    overrides = ConfigOverrides.parse(model_args.config_overrides, model_args.kronecker_mask)
    num_frames, image_size = clip_shape(data.num_frames, data.image_size, checkpoint, overrides)
    video_processor = _video_processor(data, checkpoint, num_frames, image_size)
    # The seed also draws the few-shot examples (recorded in the run's results).
    datasets = _split_datasets(data, video_processor, training_args.seed)
    if training_args.do_train and "train" not in datasets:
        raise ValueError("--do_train needs a 'train' split in the dataset.")
    if not datasets:
        raise ValueError("The dataset has none of the splits train, validation, test.")
    id2label = next(iter(datasets.values())).id2label
    bank = _bank_for(list(id2label.values()), data.prompt_bank)

    texts = [view for label in bank.class_names for view in bank.views(label)]
    tokenizer = choose_tokenizer(model_args.tokenizer_name_or_path, checkpoint, texts)
    processor = ClaverProcessor(video_processor=video_processor, tokenizer=tokenizer, prompt_bank=bank)
    model = build_classifier(
        checkpoint, overrides, num_frames, image_size, tokenizer, id2label, data.label_smoothing
    )
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
        if training_args.text_warm_start_steps and not training_args.resume_from_checkpoint:
            # On the training device (the trainer has moved the model there); every process of a distributed run
            # does the same seeded steps, and DDP broadcasts rank 0's weights when it wraps the model anyway.
            warm_start = warm_start_text_tower(
                trainer.model, training_args.text_warm_start_steps, training_args.learning_rate
            )
            results["text_warm_start"] = asdict(warm_start)
            logger.info(
                f"Text warm start ({warm_start.steps} steps): mean cosine between classes "
                f"{warm_start.class_cosine_before:.3f} -> {warm_start.class_cosine_after:.3f}"
            )
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
        results["log_history"] = trainer.state.log_history  # the curves as numbers, beside their figure
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
        f"{_test_views(data)}; validation 1 view; prompt bank: {bank}; "
        "class probabilities averaged over the text views."
    )
    training = "Fine-tuned" if model_args.model_name_or_path else "Trained from scratch"
    if data.few_shot_k:
        training += f", few-shot with {data.few_shot_k} examples per class (seed {results['seed']})"
    return model_card(
        plan.model, plan.processor, str(output_dir), base_model=model_args.model_name_or_path,
        eval_results=evaluations, evaluation_protocol=protocol,
        training=f"{training} with claver-hf's run_video_classification (the paper's recipe as defaults).",
    )  # fmt: skip


def test_symmetries(data: DataTrainingArguments, id2label: dict[int, str]) -> dict[str, torch.Tensor] | None:
    """The class permutations of the final test's label-mapped views (`--test_symmetries`), or None."""
    if not data.test_symmetries:
        return None
    permutations = load_label_symmetries(data.label_symmetries).permutations(id2label)
    return {name: permutations[name] for name in data.test_symmetries}


def _test_views(data: DataTrainingArguments) -> str:
    views = f"{data.test_num_clips} clips x {data.test_num_crops} crops"
    if data.test_symmetries:
        views += (
            f" x {2 ** len(data.test_symmetries)} label-mapped images ({', '.join(data.test_symmetries)})"
        )
    return views


def _final_test(trainer: ClaverTrainer, plan: RunPlan, data: DataTrainingArguments, output_dir: Path) -> dict:
    test = plan.datasets["test"]  # built with the test views (`_split_options`)
    probabilities, labels = predict_multiview(
        trainer.model, test, batch_size=trainer.args.per_device_eval_batch_size,
        symmetries=test_symmetries(data, plan.id2label),
    )  # fmt: skip
    metrics = load_top_k_accuracy().compute(predictions=probabilities, references=labels, k=[1, 5])
    matrix = confusion_matrix(probabilities.argmax(1), labels, len(plan.id2label))
    plot_confusion_matrix(matrix, list(plan.id2label.values()), output_dir / "confusion_matrix.png")
    return {
        **metrics,
        "views": f"{data.test_num_clips}x{data.test_num_crops}",
        **({"label_mapped_views": list(data.test_symmetries)} if data.test_symmetries else {}),
        "confusion_matrix": matrix.tolist(),
    }
