"""Which checkpoint a run can resume from.

`Trainer._save_checkpoint` (transformers 5.24) writes a checkpoint's files one after another: `config.json`, the
weights, the processor and `training_args.bin`, then `optimizer.pt`, `scheduler.pt`, the grad scaler,
`rng_state.pth` (one `rng_state_<rank>.pth` per process in a distributed run) and `trainer_state.json` last. A run
killed in between leaves a `checkpoint-N` folder that transformers still picks for `resume_from_checkpoint=True`
(it looks at folder names only) and then stops on for want of `trainer_state.json`; a folder that has
`trainer_state.json` but lacks the optimizer, scheduler or RNG files is even worse: transformers resumes from it
without them and trains differently, with no error. A checkpoint here is complete when everything a resume reads
is present and `trainer_state.json`, the file written last, parses and is at the folder's step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from pathlib import Path

from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

logger = logging.getLogger(__name__)

CHECKPOINT_FOLDER = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# transformers' just-in-time checkpoint (`--enable_jit_checkpoint`) writes this first and removes it when done.
JIT_SENTINEL_NAME = "checkpoint-is-incomplete.txt"


def checkpoint_problems(
    path: str | os.PathLike, world_size: int = 1, engine_saves_weights: bool = False
) -> list[str]:
    """What keeps `path` from being resumed from; an empty list when it is a complete checkpoint.

    Args:
        path: a checkpoint folder (`checkpoint-N`; another name skips the step check).
        world_size: processes of the resuming run; each one reads its own RNG state file.
        engine_saves_weights: DeepSpeed or FSDP, which write weights and optimizer state in their own layouts;
            only the files every engine shares (`trainer_state.json`, the RNG states) are then checked.
    """
    folder = Path(path)
    if not folder.is_dir():
        return [f"{folder} is not a directory"]
    problems = []
    if (folder / JIT_SENTINEL_NAME).exists():
        problems.append(f"{JIT_SENTINEL_NAME} is present (the just-in-time save did not finish)")
    rng_files = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    if engine_saves_weights:
        written = [*rng_files, TRAINER_STATE_NAME]
    else:
        # A sharded save writes an index after its shards.
        weights = (
            SAFE_WEIGHTS_INDEX_NAME if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file() else SAFE_WEIGHTS_NAME
        )
        written = [CONFIG_NAME, weights, OPTIMIZER_NAME, SCHEDULER_NAME, *rng_files, TRAINER_STATE_NAME]
    problems += [f"{name} is missing" for name in written if not (folder / name).is_file()]
    # In a distributed run every process writes its own RNG file while process 0 writes trainer_state.json, so
    # the state file does not prove that they are whole; a torch.save archive cut short lacks its zip directory.
    problems += [
        f"{name} is truncated (not a whole torch.save archive)"
        for name in written
        if name.endswith((".pt", ".pth"))
        and (folder / name).is_file()
        and not zipfile.is_zipfile(folder / name)
    ]
    state_file = folder / TRAINER_STATE_NAME
    if state_file.is_file():
        try:
            step = json.loads(state_file.read_text(encoding="utf-8"))["global_step"]
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{TRAINER_STATE_NAME} is unreadable ({type(error).__name__}: {error})")
        else:
            match = CHECKPOINT_FOLDER.match(folder.name)
            if match and int(match.group(1)) != step:
                problems.append(f"{TRAINER_STATE_NAME} is at step {step}, not {match.group(1)}")
    return problems


def _checkpoints_newest_first(output_dir: Path) -> list[Path]:
    steps = {
        path: int(match.group(1))
        for path in output_dir.iterdir()
        if path.is_dir() and (match := CHECKPOINT_FOLDER.match(path.name))
    }
    return sorted(steps, key=steps.get, reverse=True)


def latest_complete_checkpoint(
    output_dir: str | os.PathLike, world_size: int = 1, engine_saves_weights: bool = False
) -> str | None:
    """The highest-step complete `checkpoint-N` folder of `output_dir` (None if there is none); each newer,
    incomplete one is skipped with a warning that says what it lacks."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    for checkpoint in _checkpoints_newest_first(folder):
        problems = checkpoint_problems(checkpoint, world_size, engine_saves_weights)
        if not problems:
            return str(checkpoint)
        logger.warning(f"Skipping incomplete checkpoint {checkpoint}: {'; '.join(problems)}.")
    return None


def check_checkpoint(
    path: str | os.PathLike, world_size: int = 1, engine_saves_weights: bool = False
) -> None:
    """Raise a ValueError if `path` is not a complete checkpoint, naming what it lacks and the latest complete
    checkpoint beside it, if any, to resume from instead."""
    problems = checkpoint_problems(path, world_size, engine_saves_weights)
    if not problems:
        return
    parent = Path(path).parent
    alternative = next(
        (
            str(checkpoint)
            for checkpoint in (_checkpoints_newest_first(parent) if parent.is_dir() else [])
            if not checkpoint_problems(checkpoint, world_size, engine_saves_weights)
        ),
        None,
    )
    hint = (
        f"The latest complete checkpoint in {parent} is {alternative}."
        if alternative
        else f"{parent} holds no complete checkpoint."
    )
    raise ValueError(f"Cannot resume from {path}: {'; '.join(problems)}. {hint}")
