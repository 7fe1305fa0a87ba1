"""Runs `examples/run_video_classification.py` and kills it with SIGKILL at a chosen point, as a preempted job
dies: no exception, no clean-up, files left as far as they were written.

    python tests/preempted_run.py KILL_POINT SCRIPT_ARGUMENTS...

KILL_POINT is one of
    step:N        as the step after global step N begins (between two checkpoints);
    state:N       while checkpoint-N is written: weights, processor, optimizer, scheduler and RNG state are on
                  disk, trainer_state.json (written last) is not;
    half-state:N  the same, with the first half of trainer_state.json written;
    final         while the final model is written to the output folder, after its weights, before its processor.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

import transformers

from claver_hf import ClaverProcessor

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_video_classification.py"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at(point: str) -> None:
    kind, _, step = point.partition(":")
    if kind == "step":
        training_step = transformers.Trainer.training_step

        def killing_training_step(self, *args, **kwargs):
            if self.state.global_step == int(step):
                die()
            return training_step(self, *args, **kwargs)

        transformers.Trainer.training_step = killing_training_step
    elif kind in ("state", "half-state"):
        save_to_json = transformers.TrainerState.save_to_json

        def killing_save_to_json(self, json_path):
            if self.global_step == int(step) and Path(json_path).parent.name == f"checkpoint-{step}":
                if kind == "half-state":
                    save_to_json(self, json_path)
                    text = Path(json_path).read_text()
                    Path(json_path).write_text(text[: len(text) // 2])
                die()
            save_to_json(self, json_path)

        transformers.TrainerState.save_to_json = killing_save_to_json
    elif kind == "final":
        save_pretrained = ClaverProcessor.save_pretrained

        def killing_save_pretrained(self, save_directory, *args, **kwargs):
            if not Path(save_directory).name.startswith("checkpoint-"):
                die()
            return save_pretrained(self, save_directory, *args, **kwargs)

        ClaverProcessor.save_pretrained = killing_save_pretrained
    else:
        raise ValueError(f"Unknown kill point {point!r}: expected step:N, state:N, half-state:N or final.")


if __name__ == "__main__":
    kill_at(sys.argv[1])
    sys.argv = [str(SCRIPT), *sys.argv[2:]]
    runpy.run_path(str(SCRIPT), run_name="__main__")
