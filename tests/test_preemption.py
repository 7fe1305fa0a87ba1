"""Runs killed with SIGKILL (as preemption kills them) and resumed with `--resume_from_checkpoint True` end exactly
where an uninterrupted run ends; every checkpoint is a model folder a pipeline loads on its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import pipeline

from claver_hf import ClaverProcessor
from claver_hf.training import (
    ClaverTrainer,
    ClaverTrainingArguments,
    check_checkpoint,
    checkpoint_problems,
    latest_complete_checkpoint,
)

from .conftest import write_dataset
from .test_modeling_claver import classifier
from .test_training import TINY

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "run_video_classification.py"
PREEMPTED = ROOT / "tests" / "preempted_run.py"
MAX_STEPS = 8  # 2 epochs of 4 steps; checkpoints at 2, 4, 6, 8


def script_arguments(data: Path, output: Path) -> list[str]:
    return [
        "--config_overrides", TINY, "--dataset_dir", str(data), "--num_frames", "4", "--image_size", "32",
        "--output_dir", str(output), "--do_train", "--do_eval", "--max_steps", str(MAX_STEPS),
        "--save_steps", "2", "--logging_steps", "1", "--eval_strategy", "no", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--seed", "3",
        "--use_cpu", "--dataloader_num_workers", "0", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip


def launch(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("preemption") / "data")


@pytest.fixture(scope="module")
def uninterrupted(data):
    output = data.parent / "uninterrupted"
    done = launch(str(SCRIPT), *script_arguments(data, output))
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def write_checkpoint(folder: Path, step: int, world_size: int = 1) -> Path:
    """The files `Trainer` writes into a checkpoint (contents stand-ins, torch files real archives)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    rng = ["rng_state.pth"] if world_size == 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    for name in ["optimizer.pt", "scheduler.pt", *rng]:
        torch.save({"state": torch.zeros(4)}, folder / name)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_checkpoint_completeness_rules(tmp_path):
    complete = write_checkpoint(tmp_path / "checkpoint-4", 4)
    assert checkpoint_problems(complete) == []
    assert checkpoint_problems(complete, world_size=2) == [
        "rng_state_0.pth is missing",
        "rng_state_1.pth is missing",
    ]

    for name in ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                 "trainer_state.json"):  # fmt: skip
        folder = write_checkpoint(tmp_path / name / "checkpoint-4", 4)
        (folder / name).unlink()
        assert checkpoint_problems(folder) == [f"{name} is missing"], name

    sharded = write_checkpoint(tmp_path / "sharded" / "checkpoint-4", 4)
    (sharded / "model.safetensors").rename(sharded / "model.safetensors.index.json")
    assert checkpoint_problems(sharded) == []

    # DeepSpeed and FSDP write weights and optimizer in their own layouts: only the shared files are required.
    engine = write_checkpoint(tmp_path / "engine" / "checkpoint-4", 4, world_size=2)
    for name in ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt"):
        (engine / name).unlink()
    assert checkpoint_problems(engine, world_size=2, engine_saves_weights=True) == []
    (engine / "rng_state_1.pth").write_bytes((engine / "rng_state_1.pth").read_bytes()[:100])
    assert checkpoint_problems(engine, world_size=2, engine_saves_weights=True) == [
        "rng_state_1.pth is truncated (not a whole torch.save archive)"
    ]

    broken = write_checkpoint(tmp_path / "broken" / "checkpoint-4", 4)
    (broken / "trainer_state.json").write_text('{"global_step": 4, "log_hi')
    (problem,) = checkpoint_problems(broken)
    assert problem.startswith("trainer_state.json is unreadable (JSONDecodeError")
    (broken / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert checkpoint_problems(broken) == ["trainer_state.json is at step 2, not 4"]
    renamed = write_checkpoint(tmp_path / "renamed" / "best", 2)  # not checkpoint-N: no step to compare with
    assert checkpoint_problems(renamed) == []

    jit = write_checkpoint(tmp_path / "jit" / "checkpoint-4", 4)
    (jit / "checkpoint-is-incomplete.txt").write_text("in progress")
    assert checkpoint_problems(jit) == [
        "checkpoint-is-incomplete.txt is present (the just-in-time save did not finish)"
    ]
    assert checkpoint_problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'} is not a directory"]


def test_latest_complete_checkpoint_skips_incomplete_ones_by_step(tmp_path, caplog):
    for step in (2, 10, 30):
        write_checkpoint(tmp_path / f"checkpoint-{step}", step)
    (tmp_path / "checkpoint-30" / "optimizer.pt").unlink()
    write_checkpoint(tmp_path / "checkpoint-20", 20)
    (tmp_path / "checkpoint-20" / "trainer_state.json").unlink()
    (tmp_path / "checkpoint-x").mkdir()
    with caplog.at_level("WARNING"):
        # By step, not by name: "checkpoint-2" sorts after "checkpoint-10" as text.
        assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    skipped = [record.getMessage() for record in caplog.records]
    assert skipped == [
        f"Skipping incomplete checkpoint {tmp_path / 'checkpoint-30'}: optimizer.pt is missing.",
        f"Skipping incomplete checkpoint {tmp_path / 'checkpoint-20'}: trainer_state.json is missing.",
    ]
    with pytest.raises(ValueError) as error:
        check_checkpoint(tmp_path / "checkpoint-30")
    assert str(error.value) == (
        f"Cannot resume from {tmp_path / 'checkpoint-30'}: optimizer.pt is missing. "
        f"The latest complete checkpoint in {tmp_path} is {tmp_path / 'checkpoint-10'}."
    )
    assert latest_complete_checkpoint(tmp_path / "empty") is None


def test_trainer_refuses_incomplete_checkpoints(tmp_path):
    arguments = ClaverTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1)
    trainer = ClaverTrainer(model=classifier(), args=arguments)
    with pytest.raises(ValueError, match=f"{tmp_path} holds no complete checkpoint-N folder"):
        trainer.train(resume_from_checkpoint=True)
    partial = write_checkpoint(tmp_path / "checkpoint-3", 3)
    (partial / "trainer_state.json").unlink()
    (partial / "rng_state.pth").unlink()
    with pytest.raises(ValueError, match=f"{tmp_path} holds no complete checkpoint-N folder"):
        trainer.train(resume_from_checkpoint="True")  # as the command line passes it
    with pytest.raises(
        ValueError,
        match=f"Cannot resume from {partial}: rng_state.pth is missing; trainer_state.json is missing. "
        f"{tmp_path} holds no complete checkpoint.",
    ):
        trainer.train(resume_from_checkpoint=str(partial))


def test_killed_runs_resume_to_the_uninterrupted_result(data, uninterrupted):
    """One output folder, killed four times: between checkpoints, while checkpoint-4 is written (no
    trainer_state.json yet), with checkpoint-6's trainer_state.json half written, and while the final model is
    saved. Each restart with `--resume_from_checkpoint True` takes the latest complete checkpoint."""
    output = data.parent / "preempted"
    arguments = script_arguments(data, output)
    resume = ["--resume_from_checkpoint", "True"]

    killed = launch(str(PREEMPTED), "step:3", *arguments)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-2"]

    killed = launch(str(PREEMPTED), "state:4", *arguments, *resume)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert checkpoint_problems(output / "checkpoint-4") == ["trainer_state.json is missing"]
    with pytest.raises(
        ValueError, match=f"The latest complete checkpoint in {output} is {output / 'checkpoint-2'}"
    ):
        check_checkpoint(output / "checkpoint-4")

    killed = launch(str(PREEMPTED), "half-state:6", *arguments, *resume)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert f"Skipping incomplete checkpoint {output / 'checkpoint-4'}: trainer_state.json is missing" in (
        killed.stderr
    )
    assert checkpoint_problems(output / "checkpoint-4") == []  # rewritten by the resumed run
    assert checkpoint_problems(output / "checkpoint-6")[0].startswith("trainer_state.json is unreadable")

    killed = launch(str(PREEMPTED), "final", *arguments, *resume)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert f"Skipping incomplete checkpoint {output / 'checkpoint-6'}: trainer_state.json is unreadable" in (
        killed.stderr
    )
    assert (output / "model.safetensors").exists() and not (output / "results.json").exists()

    finished = launch(str(SCRIPT), *arguments, *resume)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Skipping incomplete checkpoint" not in finished.stderr

    final_states = [json.loads((run / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
                    for run in (output, uninterrupted)]  # fmt: skip
    assert final_states[0]["global_step"] == final_states[1]["global_step"] == MAX_STEPS
    # Every step's loss, learning rate and gradient norm, whichever process ran the step.
    assert final_states[0]["log_history"] == final_states[1]["log_history"]
    results = [json.loads((run / "results.json").read_text()) for run in (output, uninterrupted)]
    for result in results:
        for timing in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second"):
            result["validation"].pop(timing)
    assert results[0]["validation"] == results[1]["validation"]
    assert results[0]["test"] == results[1]["test"]
    assert results[0]["train"]["epoch"] == results[1]["train"]["epoch"] == 2
    weights = [load_file(run / "model.safetensors") for run in (output, uninterrupted)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_every_checkpoint_is_a_model_folder_a_pipeline_loads(data, uninterrupted):
    checkpoint = uninterrupted / "checkpoint-2"
    for name in ("processor_config.json", "tokenizer.json", "prompt_bank.json"):
        assert (checkpoint / name).is_file(), name
    assert ClaverProcessor.from_pretrained(checkpoint).prompt_bank.class_names == ["clapping", "waving"]
    classify = pipeline("video-classification", model=str(checkpoint))
    predictions = classify(str(data / "test" / "waving" / "0.mp4"))
    assert sorted(p["label"] for p in predictions) == ["clapping", "waving"]
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
