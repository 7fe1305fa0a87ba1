import json

import pytest
import torch

from claver_hf import ClaverForVideoClassification, ClaverProcessor
from claver_hf.training import (
    ClaverTrainer,
    ClaverTrainingArguments,
    DataTrainingArguments,
    ModelArguments,
    VideoClassificationCollator,
    claver_parameter_groups,
    confusion_matrix,
    load_top_k_accuracy,
    prepare_run,
    run,
)

from .test_modeling_claver import classifier

TINY = json.dumps(
    {
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                          "num_attention_heads": 4, "patch_size": 16},
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 4, "max_position_embeddings": 77},
        "projection_dim": 16,
    }
)  # fmt: skip


def arguments(dataset_dir, output_dir, *extra_model, **overrides):
    model = ModelArguments(config_overrides=TINY, kronecker_mask="kmcta")
    data = DataTrainingArguments(
        dataset_dir=str(dataset_dir), num_frames=4, image_size=32, test_num_clips=2, test_num_crops=3
    )
    settings = {
        "do_train": True, "do_eval": True, "max_steps": 2, "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4, "learning_rate": 1e-3, "use_cpu": True, "report_to": "none",
        "disable_tqdm": True, "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "no",
    }  # fmt: skip
    training = ClaverTrainingArguments(output_dir=str(output_dir), **{**settings, **overrides})
    return model, data, training


def test_parameter_groups():
    model = classifier()
    groups = claver_parameter_groups(
        model, learning_rate=1e-5, weight_decay=0.001, temporal_lr_multiplier=10, text_lr_multiplier=0.1
    )
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["claver.vision_model.temporal_encoder.layers.0.mlp.fc1.weight"])][
        "lr"
    ] == pytest.approx(1e-4)
    assert (
        by_id[id(named["claver.vision_model.temporal_encoder.layers.0.mlp.fc1.weight"])]["weight_decay"]
        == 0.001
    )
    assert (
        by_id[id(named["claver.vision_model.temporal_encoder.layers.0.mlp.fc1.bias"])]["weight_decay"] == 0.0
    )
    assert by_id[id(named["claver.vision_model.temporal_embedding.embedding"])]["lr"] == pytest.approx(1e-4)
    assert by_id[id(named["claver.vision_model.temporal_embedding.embedding"])]["weight_decay"] == 0.0
    assert by_id[id(named["claver.vision_model.encoder.layers.0.mlp.fc1.weight"])]["lr"] == pytest.approx(
        1e-5
    )
    assert by_id[id(named["claver.vision_model.embeddings.position_embedding.weight"])]["weight_decay"] == 0.0
    assert by_id[id(named["claver.logit_scale"])]["weight_decay"] == 0.0
    assert by_id[id(named["claver.visual_projection.weight"])]["lr"] == pytest.approx(1e-5)
    text = [name for name in named if name.startswith(("claver.text_model.", "claver.text_projection."))]
    assert text and all(by_id[id(named[name])]["lr"] == pytest.approx(1e-6) for name in text)
    assert by_id[id(named["claver.text_projection.weight"])]["weight_decay"] == 0.001
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_trainer_optimizer_applies_the_learning_rate_multipliers(tmp_path):
    model = classifier()
    arguments = ClaverTrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-4, temporal_lr_multiplier=10, text_lr_multiplier=0.5,
        use_cpu=True, report_to="none",
    )  # fmt: skip
    optimizer = ClaverTrainer(model=model, args=arguments).create_optimizer()
    learning_rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert learning_rates[id(named["claver.text_projection.weight"])] == pytest.approx(5e-5)
    assert learning_rates[id(named["claver.vision_model.temporal_embedding.embedding"])] == pytest.approx(
        1e-3
    )
    assert learning_rates[id(named["claver.visual_projection.weight"])] == pytest.approx(1e-4)


def test_trainer_batches_evaluation_and_test_data_with_the_eval_collator(tmp_path):
    def named_collator(name):
        def collate(items):
            return {"collator": name, "labels": torch.tensor([item["labels"] for item in items])}

        return collate

    items = [{"pixel_values": torch.zeros(1), "labels": i} for i in range(4)]
    arguments = ClaverTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = ClaverTrainer(
        model=classifier(), args=arguments, train_dataset=items, eval_dataset=items,
        data_collator=named_collator("train"), eval_data_collator=named_collator("eval"),
    )  # fmt: skip
    assert next(iter(trainer.get_eval_dataloader()))["collator"] == "eval"
    assert next(iter(trainer.get_test_dataloader(items)))["collator"] == "eval"
    assert next(iter(trainer.get_train_dataloader()))["collator"] == "train"
    plain = ClaverTrainer(
        model=classifier(), args=arguments, eval_dataset=items, data_collator=named_collator("one")
    )
    assert next(iter(plain.get_eval_dataloader()))["collator"] == "one"


def test_collator_mixes_training_batches_only():
    items = [{"pixel_values": torch.rand(4, 3, 8, 8), "labels": i % 3} for i in range(4)]
    mixed = VideoClassificationCollator(num_classes=3, mixup_alpha=0.8, cutmix_alpha=1.0)(items)
    assert mixed["labels"].shape == (4, 3) and torch.allclose(mixed["labels"].sum(1), torch.ones(4))
    assert mixed["pixel_values"].shape == (4, 4, 3, 8, 8) and type(mixed["pixel_values"]) is torch.Tensor
    plain = VideoClassificationCollator(num_classes=3)(items)
    assert plain["labels"].tolist() == [0, 1, 2, 0]


def test_collator_mixes_a_batch_the_same_way_each_time_it_is_loaded():
    collator = VideoClassificationCollator(num_classes=3, mixup_alpha=0.8, cutmix_alpha=1.0)
    items = [{"pixel_values": torch.rand(4, 3, 8, 8), "labels": i % 3} for i in range(4)]
    state = torch.random.get_rng_state()
    first = collator(items)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's randomness is not consumed
    torch.manual_seed(7)
    again = collator(items)
    assert torch.equal(first["pixel_values"], again["pixel_values"]) and torch.equal(
        first["labels"], again["labels"]
    )
    other = collator([{**item, "pixel_values": torch.rand(4, 3, 8, 8)} for item in items])
    assert not torch.equal(other["labels"], first["labels"])  # another batch, another mixing coefficient


def test_top_k_metric_and_confusion_matrix():
    metric = load_top_k_accuracy()
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]
    result = metric.compute(predictions=scores, references=[1, 1, 0], k=[1, 2])
    assert result == {"top_1_accuracy": pytest.approx(1 / 3), "top_2_accuracy": pytest.approx(2 / 3)}
    assert confusion_matrix(torch.tensor([1, 0, 2]).numpy(), torch.tensor([1, 1, 0]).numpy(), 3).tolist() == [
        [0, 0, 1],
        [1, 1, 0],
        [0, 0, 0],
    ]


def test_run_end_to_end(dataset_dir, tmp_path):
    results = run(*arguments(dataset_dir, tmp_path / "out"))
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "prompt_bank.json", "training_curve.png",
                 "confusion_matrix.png", "results.json", "README.md"):  # fmt: skip
        assert (out / name).exists(), name
    from huggingface_hub import ModelCard

    card = ModelCard((out / "README.md").read_text())
    assert card.data.library_name == "transformers" and "claver" in card.data.tags
    results_block = card.data.to_dict()["model-index"][0]["results"]
    assert {r["dataset"]["split"] for r in results_block} >= {"test", "validation"}
    assert results["test"]["views"] == "2x3" and 0 <= results["test"]["top_1_accuracy"] <= 1
    assert "eval_top_1_accuracy" in results["validation"]
    model = ClaverForVideoClassification.from_pretrained(out)
    processor = ClaverProcessor.from_pretrained(out)
    assert model.config.id2label == {0: "clapping", 1: "waving"}
    assert model.config.vision_config.kronecker_mask == "kmcta"
    logits = model.eval()(**processor(videos=str(dataset_dir / "test" / "waving" / "0.mp4"))).logits
    assert logits.shape == (1, 2)


def test_few_shot_and_bad_arguments(dataset_dir, tmp_path):
    model, data, training = arguments(dataset_dir, tmp_path / "o")
    data.few_shot_k = 2
    data.train_scales, data.color_jitter_prob, data.grayscale_prob = [1.0], 0.0, 0.0
    plan = prepare_run(model, data, training)
    assert len(plan.datasets["train"]) == 4 and plan.datasets["train"].seed == training.seed
    # Every split is built with its settings; none is changed afterwards.
    assert plan.datasets["train"].training and not plan.datasets["validation"].training
    views = {"num_clips": data.test_num_clips, "num_crops": data.test_num_crops}
    assert (
        plan.datasets["test"].processor_kwargs == views and plan.datasets["validation"].processor_kwargs == {}
    )
    assert all(dataset.cache is None for dataset in plan.datasets.values())
    video_processor = plan.processor.video_processor
    assert list(video_processor.train_scales) == [1.0]
    assert video_processor.color_jitter_prob == video_processor.grayscale_prob == 0.0
    training.dataloader_num_workers, training.dataloader_persistent_workers = 2, True
    with pytest.raises(ValueError, match="persistent_workers"):
        ClaverTrainer(
            model=plan.model,
            args=training,
            train_dataset=plan.datasets["train"],
            eval_dataset=plan.datasets["train"],
        )
    training.dataloader_num_workers, training.dataloader_persistent_workers = 0, False
    data.cache_videos = True  # the splits read at every epoch, decoded once
    plan = prepare_run(model, data, training)
    assert [len(plan.datasets[split].cache) for split in ("train", "validation")] == [4, 4]
    assert plan.datasets["test"].cache is None
    data.cache_videos = False
    data.few_shot_k = 9
    with pytest.raises(ValueError, match="fewer than 9 training examples"):
        prepare_run(model, data, training)
    data.few_shot_k = None
    data.num_frames = 0
    with pytest.raises(ValueError, match="--num_frames must be >= 1"):
        prepare_run(model, data, training)
    data.num_frames = 4
    data.train_scales = [1.0, 1.5]
    with pytest.raises(ValueError, match=r"--train_scales must be fractions in \(0, 1\]"):
        prepare_run(model, data, training)
    data.train_scales, data.grayscale_prob = [1.0], 2.0
    with pytest.raises(ValueError, match=r"--grayscale_prob must be a probability in \[0, 1\], got 2.0"):
        prepare_run(model, data, training)
    data.grayscale_prob = 0.0
    data.prompt_bank = "no-such-bank"
    with pytest.raises(ValueError, match="No prompt bank 'no-such-bank'"):
        prepare_run(model, data, training)
    data.prompt_bank = "ucf101"
    with pytest.raises(ValueError, match="has no prompts for classes"):
        prepare_run(model, data, training)
    data.prompt_bank, data.dataset_dir = None, str(tmp_path / "missing")
    with pytest.raises(ValueError, match="is not a directory"):
        prepare_run(model, data, training)


def test_label_symmetries_reach_the_training_split_only(dataset_dir, tmp_path):
    model, data, training = arguments(dataset_dir, tmp_path / "o")
    symmetries = tmp_path / "symmetries.json"
    symmetries.write_text(json.dumps({"time_reversal": {"clapping": "clapping", "waving": None}}))
    data.label_symmetries, data.symmetry_prob = str(symmetries), 1.0
    with pytest.raises(ValueError, match="give --flip_prob 0"):
        prepare_run(model, data, training)
    data.flip_prob = 0.0
    plan = prepare_run(model, data, training)
    train = plan.datasets["train"]
    assert train.augmentation.permutations["time_reversal"].tolist() == [0, -1]
    assert train.augmentation.probability == 1.0
    assert plan.datasets["validation"].augmentation is None and plan.datasets["test"].augmentation is None
    data.test_symmetries = ["horizontal_flip"]
    with pytest.raises(ValueError, match="--test_symmetries \\['horizontal_flip'\\] are not among"):
        prepare_run(model, data, training)
    data.test_symmetries = ["time_reversal"]
    with pytest.raises(ValueError, match="maps \\['waving'\\] to null"):
        prepare_run(model, data, training)
    data.test_symmetries = []
    symmetries.write_text(json.dumps({"time_reversal": {"clapping": "clapping"}}))
    with pytest.raises(ValueError, match="missing \\['waving'\\]"):
        prepare_run(model, data, training)


def test_resumed_run_ends_like_an_uninterrupted_one(dataset_dir, tmp_path):
    """A run killed after its step-2 checkpoint and resumed from it ends with the same weights and metrics.

    The uninterrupted run saves checkpoints at steps 2 and 4; its step-2 checkpoint is exactly what a run killed
    between steps 2 and 4 leaves behind (same schedule, optimizer, RNG and data-order state). Training items are
    seeded by (seed, epoch, index), so the clips after resumption are the ones the uninterrupted run drew."""
    common = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "eval_strategy": "no", "seed": 3,
              "per_device_train_batch_size": 2, "dataloader_num_workers": 0}  # fmt: skip
    model, data, training = arguments(dataset_dir, tmp_path / "full", **common)
    data.test_num_clips = data.test_num_crops = 1
    full = run(model, data, training)

    _, _, resumed_args = arguments(dataset_dir, tmp_path / "resumed", **common)
    resumed_args.resume_from_checkpoint = str(tmp_path / "full" / "checkpoint-2")
    resumed = run(model, data, resumed_args)
    assert resumed["train"]["epoch"] == full["train"]["epoch"]

    assert resumed["test"] == full["test"]
    a = ClaverForVideoClassification.from_pretrained(tmp_path / "full").state_dict()
    b = ClaverForVideoClassification.from_pretrained(tmp_path / "resumed").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
