"""The ``claver-hf`` command line.

Each sub-command is a ``_add_<command>`` function that declares its arguments and a handler that only
turns them into one library call and prints the outcome; to add a sub-command, write both and register
the first in `build_parser`.

Exit status: 0 on success, 1 when the command ran but some of its work failed (listed in its output),
2 for invalid arguments or an unusable setup (a missing folder, ...), reported as one
``claver-hf: error: ...`` line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .configuration.configuration_claver import KRONECKER_MASK_TYPES
from .data.datasets import BUNDLED_LABELS, read_class_names
from .data.prepare import prepare_videos
from .processing.tokenization import CLIP_TOKENIZER, load_tokenizer
from .prompts.bank import ALL_FORMS, BUNDLED_BANKS, INTERPRETIVE_FORMS, load_prompt_bank
from .prompts.check import STANDARD_PER_FORM, check_prompt_bank
from .prompts.generate import (
    DEFAULT_SAMPLES_PER_FORM,
    Completer,
    EndpointCompleter,
    PromptGenerationError,
    TransformersCompleter,
    generate_prompt_bank,
)
from .video_io.common import VIDEO_EXTENSIONS

PROG = "claver-hf"
LABELS_HELP = f"class names: an id,name CSV or a bundled list ({', '.join(BUNDLED_LABELS)})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``) and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    # PromptGenerationError: an unusable LM backend, not a bug (those still show their traceback).
    except (OSError, ValueError, PromptGenerationError) as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``claver-hf`` parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog=PROG, description="CLAVER video-CLIP tools.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    # Sub-commands accept --debug after their name too; SUPPRESS keeps an absent flag there from
    # overriding one given before the name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_prepare_videos(commands, common)
    _add_prompts(commands, common)
    _add_convert(commands, common)
    _add_explain(commands, common)
    _add_classify(commands, common)
    _add_demo(commands, common)
    return parser


def _add_prepare_videos(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "prepare-videos",
        parents=[common],
        help="re-encode a video dataset for fast decoding (small, dense key frames)",
        description=(
            "Re-encode every video under SRC into DST, mirroring its folders: upright, scaled to a short "
            "side (never upscaled), H.264 with a key frame every few frames and no B-frames, no audio, "
            f"as .mp4. Videos are found by suffix ({', '.join(VIDEO_EXTENSIONS)}). Outputs that already "
            "exist are skipped, so an interrupted run can simply be started again. Exits with status 1 "
            "if any video failed."
        ),
    )
    parser.add_argument("source", metavar="SRC", help="folder tree of source videos (never modified)")
    parser.add_argument("target", metavar="DST", help="output folder, outside SRC")
    parser.add_argument(
        "--short-side", type=int, default=256, metavar="PIXELS", help="output short side (default: 256)"
    )
    parser.add_argument(
        "--keyframe-interval",
        type=int,
        default=16,
        metavar="FRAMES",
        help="frames between key frames (default: 16)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="parallel processes (default: one per CPU)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.set_defaults(handler=_prepare_videos)


def _prepare_videos(args: argparse.Namespace) -> int:
    report = prepare_videos(
        args.source,
        args.target,
        short_side=args.short_side,
        keyframe_interval=args.keyframe_interval,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    print(
        f"{len(report.converted)} converted, {len(report.skipped)} skipped (already done), "
        f"{len(report.failed)} failed: {args.target}"
    )
    for path, reason in report.failed.items():
        print(f"failed: {path}: {reason}")
    return 1 if report.failed else 0


def _add_prompts(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "prompts",
        parents=[common],
        help="check or generate interpretive prompt banks",
        description="Check a prompt bank, or generate one with a language model.",
    )
    prompt_commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_prompts_check(prompt_commands, common)
    _add_prompts_generate(prompt_commands, common)


def _add_tokenizer_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--tokenizer",
        default=CLIP_TOKENIZER,
        metavar="NAME_OR_PATH",
        help=f"tokenizer to {purpose}: a folder or Hub id, or {CLIP_TOKENIZER!r} (default: CLIP's, bundled)",
    )


def _labels(name_or_path: str) -> list[str]:
    """Class names of an `id,name` CSV or a bundled list, in id order."""
    names = read_class_names(name_or_path)
    return [names[i] for i in sorted(names)]


def _add_prompts_check(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "check",
        parents=[common],
        help="check a prompt bank against the paper's standard (counts, wording, duplicates, token lengths)",
        description=(
            "Check a prompt bank and print statistics and every flagged item: labels without prompts, forms "
            "with fewer than --min-per-form prompts, display names without an -ing verb, prompts used twice, of "
            "several sentences or only repeating the class name, synonyms that reuse the class name's words "
            "or name another class's action, near-duplicates and recurring rare phrases inside a class, and "
            "views longer than CLIP's 77 tokens. Exits with status 1 if any check fails."
        ),
    )
    parser.add_argument(
        "bank", metavar="BANK", help=f"a bundled bank ({', '.join(BUNDLED_BANKS)}) or a bank JSON file"
    )
    parser.add_argument("--labels", metavar="CSV", help=f"{LABELS_HELP} that the bank must cover")
    parser.add_argument(
        "--min-per-form",
        type=int,
        default=STANDARD_PER_FORM,
        metavar="N",
        help=f"fewest sentences per class and form (default: {STANDARD_PER_FORM}, the paper's)",
    )
    _add_tokenizer_argument(parser, "count tokens with")
    parser.set_defaults(handler=_prompts_check)


def _prompts_check(args: argparse.Namespace) -> int:
    report = check_prompt_bank(
        load_prompt_bank(args.bank),
        labels=_labels(args.labels) if args.labels else None,
        tokenizer=load_tokenizer(args.tokenizer),
        min_per_form=args.min_per_form,
    )
    print(report.format())
    return 0 if report.ok else 1


def _add_prompts_generate(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "generate",
        parents=[common],
        help="write a prompt bank with a language model (few-shot completion)",
        description=(
            "Generate the interpretive prompts of every class with a base language model, by few-shot "
            "completion (temperature 0.9, top-p 0.95, at most 77 new tokens), either a local transformers "
            "model or an OpenAI-compatible completions server. OUTPUT is rewritten after every class; "
            "running the same command again resumes an interrupted run."
        ),
    )
    parser.add_argument("--labels", metavar="CSV", required=True, help=LABELS_HELP)
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--model", metavar="NAME_OR_PATH", help="a transformers causal LM to run here")
    backend.add_argument(
        "--endpoint",
        metavar="URL",
        help="an OpenAI-compatible server: its base URL or its /v1/completions URL",
    )
    parser.add_argument("--endpoint-model", metavar="NAME", help="the model name to ask --endpoint for")
    parser.add_argument("--output", metavar="PATH", required=True, help="the bank JSON to write")
    parser.add_argument("--dataset", metavar="NAME", help="the bank's dataset name (default: the CSV's name)")
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES_PER_FORM,
        metavar="N",
        help=f"sentences per class and form (default: {DEFAULT_SAMPLES_PER_FORM})",
    )
    parser.add_argument(
        "--forms",
        nargs="+",
        choices=ALL_FORMS,
        default=list(INTERPRETIVE_FORMS),
        metavar="FORM",
        help=f"forms to generate, among {', '.join(ALL_FORMS)}; "
        f"{', '.join(INTERPRETIVE_FORMS)} are required (default: those)",
    )
    parser.add_argument(
        "--display-names",
        metavar="CSV",
        help="a `name,display_name` CSV of action names for the templates and the LM, for labels without a verb "
        "('pommel horse' -> 'doing a routine on a pommel horse'); default: the labels made readable",
    )
    _add_tokenizer_argument(parser, "cut sentences to 77 tokens with")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.set_defaults(handler=_prompts_generate)


def _prompts_generate(args: argparse.Namespace) -> int:
    if args.endpoint_model and not args.endpoint:
        raise ValueError("--endpoint-model needs --endpoint.")
    completer: Completer = (
        EndpointCompleter(args.endpoint, model=args.endpoint_model)
        if args.endpoint
        else TransformersCompleter(args.model)
    )
    labels = _labels(args.labels)
    tokenizer = load_tokenizer(args.tokenizer)
    bank = generate_prompt_bank(
        labels,
        completer,
        args.output,
        dataset=args.dataset or Path(args.labels).stem,
        forms=args.forms,
        samples_per_form=args.samples,
        tokenizer=tokenizer,
        progress=not args.no_progress,
        display_names=_display_names(args.display_names) if args.display_names else None,
    )
    print(f"{len(bank.classes)} classes: {args.output}")
    report = check_prompt_bank(bank, labels=labels, tokenizer=tokenizer, min_per_form=args.samples)
    print(report.format())
    return 0 if report.ok else 1


def _display_names(path: str) -> dict[str, str]:
    """`name -> display_name` of a CSV with those two columns."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows or not {"name", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with columns 'name' and 'display_name'.")
    return {row["name"]: row["display_name"] for row in rows}
    return 0


def _add_convert(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "convert",
        parents=[common],
        help="convert a reference CLAVER checkpoint or OpenAI CLIP weights to a transformers folder",
        description=(
            "Convert CHECKPOINT (a .pth/.pt state dict, loaded with weights_only=True) into OUTPUT_DIR "
            "(config.json, model.safetensors and the model's source files). 'reference': a checkpoint of the "
            "reference CLAVER code (temporal weights included). 'openai-clip': OpenAI CLIP weights, giving a "
            "fresh CLAVER whose temporal parts are newly initialised."
        ),
    )
    parser.add_argument("source_format", choices=["reference", "openai-clip"], help="what CHECKPOINT holds")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the state dict file")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write")
    parser.add_argument(
        "--kronecker-mask",
        default="kmta",
        choices=KRONECKER_MASK_TYPES,
        help="mask the checkpoint was trained with (not stored in it)",
    )
    parser.add_argument(
        "--num-frames", type=int, default=8, help="frames of a new temporal embedding (openai-clip)"
    )
    parser.add_argument("--labels", metavar="CSV", help=f"{LABELS_HELP}: write a classification model")
    parser.add_argument("--head-dim", type=int, default=64, help="attention head width (CLIP: 64)")
    parser.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_openai_clip, convert_reference_checkpoint

    id2label = read_class_names(args.labels) if args.labels else None
    common = {
        "kronecker_mask": args.kronecker_mask,
        "id2label": id2label,
        "classification": id2label is not None,
        "head_dim": args.head_dim,
    }
    if args.source_format == "reference":
        output = convert_reference_checkpoint(args.checkpoint, args.output_dir, **common)
    else:
        output = convert_openai_clip(args.checkpoint, args.output_dir, num_frames=args.num_frames, **common)
    print(f"wrote {output}")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser, labels_required: bool = True) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="a saved CLAVER model folder with its processor (local or Hub id)",
    )
    labels = parser.add_mutually_exclusive_group(required=labels_required)
    labels.add_argument("--labels", help="comma-separated labels, e.g. 'waving,clapping'")
    labels.add_argument("--bank", help=f"all classes of a prompt bank ({', '.join(BUNDLED_BANKS)} or a file)")


def _load_model_and_processor(args: argparse.Namespace):
    """The model and processor of `--model`."""
    from .modeling.modeling_claver import ClaverModel
    from .processing.processing_claver import ClaverProcessor

    return ClaverModel.from_pretrained(args.model).eval(), ClaverProcessor.from_pretrained(args.model)


def _candidate_labels(args: argparse.Namespace) -> list[str]:
    """The candidate labels named by `--labels` or `--bank`."""
    if args.bank:
        return load_prompt_bank(args.bank).class_names
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if len(labels) < 2:
        raise ValueError(f"--labels needs at least two comma-separated labels, got {args.labels!r}.")
    return labels


def _add_explain(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "explain",
        parents=[common],
        help="write attention heat maps and word importance for a video",
        description=(
            "Score the labels for VIDEO, then write attention.png / attention.gif (per-frame heat maps), "
            "words.png (word importance of the best label's prompt) and explain.json to --output-dir."
        ),
    )
    parser.add_argument("video", metavar="VIDEO", help="a video file")
    _add_model_arguments(parser)
    parser.add_argument("--output-dir", required=True, help="folder for the figures")
    parser.add_argument("--method", choices=["kmt", "rollout"], default="kmt", help="attention maps from")
    parser.add_argument(
        "--words", choices=["gradient", "occlusion"], default="gradient", help="word importance by"
    )
    parser.add_argument("--mp4", action="store_true", help="also write attention.mp4")
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from .visualization import explain_video

    labels = _candidate_labels(args)
    model, processor = _load_model_and_processor(args)
    result = explain_video(
        model, processor, args.video, labels, args.output_dir, method=args.method,
        prompt_bank=args.bank, word_method=args.words, mp4=args.mp4,
    )  # fmt: skip
    print(f"best label: {result.label} ({result.scores[result.label]:.3f})")
    print("wrote " + ", ".join(str(path) for path in result.files.values()))
    return 0


def _add_classify(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "classify",
        parents=[common],
        help="zero-shot classification of videos with your own labels",
        description="Score each VIDEO against the labels (interpretive prompts when they are in the bank).",
    )
    parser.add_argument("videos", metavar="VIDEO", nargs="+", help="video files")
    _add_model_arguments(parser, labels_required=False)
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per video (default: 5)")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal views per video")
    parser.add_argument("--num-crops", type=int, default=1, choices=[1, 3], help="spatial views per video")
    embeddings = parser.add_mutually_exclusive_group()
    embeddings.add_argument(
        "--text-embeddings",
        metavar="PATH",
        help="the labels' text embeddings saved by --save-text-embeddings (then --labels/--bank are optional): "
        "no text is encoded; refused if they come from another model or tokenizer",
    )
    embeddings.add_argument(
        "--save-text-embeddings", metavar="PATH", help="also save the labels' text embeddings to PATH"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_classify)


def _classify(args: argparse.Namespace) -> int:
    import json

    from transformers import pipeline

    if not (args.labels or args.bank or args.text_embeddings):
        raise ValueError("classify needs --labels, --bank or --text-embeddings.")
    labels = _candidate_labels(args) if args.labels or args.bank else None
    model, processor = _load_model_and_processor(args)
    classify = pipeline("zero-shot-video-classification", model=model, processor=processor)
    if args.text_embeddings:
        text_embeddings = args.text_embeddings
    else:
        text_embeddings = classify.label_embeddings(labels, prompt_bank=args.bank)
        if args.save_text_embeddings:
            text_embeddings.save(args.save_text_embeddings)
    results = classify(
        list(args.videos), candidate_labels=labels, text_embeddings=text_embeddings, top_k=args.top_k,
        num_clips=args.num_clips, num_crops=args.num_crops,
    )  # fmt: skip
    if args.json:
        print(json.dumps(dict(zip(args.videos, results, strict=True)), indent=2))
        return 0
    for video, ranked in zip(args.videos, results, strict=True):
        print(video)
        for entry in ranked:
            print(f"  {entry['score']:7.3f}  {entry['label']}")
    if args.save_text_embeddings:
        print(f"text embeddings: {args.save_text_embeddings}")
    return 0


def _add_demo(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="train and test a small CLAVER on a generated motion dataset (offline, CPU)",
        description=(
            "Generate the synthetic motion dataset, train a small CLAVER from scratch on it and test it; "
            "writes the dataset, model, processor, model card, results and figures under --output-dir."
        ),
    )
    parser.add_argument("--output-dir", default="outputs/demo", help="where everything is written")
    parser.add_argument(
        "--kronecker-mask", default="kmta", choices=KRONECKER_MASK_TYPES, help="the KMT blocks' mask"
    )
    parser.add_argument("--mean-pooling", action="store_true", help="baseline without KMT blocks")
    parser.add_argument("--epochs", type=float, default=None, help="training epochs (default: the demo's)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and training seed")
    parser.add_argument(
        "--save-checkpoints",
        action="store_true",
        help="also keep the latest per-epoch checkpoint (to resume)",
    )
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_EPOCHS, run_demo

    results = run_demo(
        args.output_dir, kronecker_mask=args.kronecker_mask, mean_pooling=args.mean_pooling,
        epochs=DEMO_EPOCHS if args.epochs is None else args.epochs, seed=args.seed,
        save_checkpoints=args.save_checkpoints,
    )  # fmt: skip
    test = results["test"]
    splits = [("test (in distribution)", test, results)]
    if "heldout" in results:
        splits.append(("held-out shapes and backgrounds", results["heldout"], results["heldout"]))
    for title, metrics, pairs in splits:
        print(f"{title}: top-1 {metrics['top_1_accuracy']:.3f}, top-5 {metrics['top_5_accuracy']:.3f}")
        for pair, accuracy in pairs["reversed_pair_accuracy"].items():
            print(f"  {pair:<45} {accuracy:.3f}")
        print(f"  direction within the right pair: {pairs['direction_accuracy']:.3f} (0.5 = chance)")
    print(f"model, processor, model card and figures: {Path(args.output_dir) / 'model'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
