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
import logging
import sys
from collections.abc import Sequence

from .data.prepare import prepare_videos
from .processing.decoding import VIDEO_EXTENSIONS

PROG = "claver-hf"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``) and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except (OSError, ValueError) as err:
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


if __name__ == "__main__":
    raise SystemExit(main())
