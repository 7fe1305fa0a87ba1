import json

import pytest
import torch

from claver_hf.training import run
from claver_hf.training.text_warm_start import mean_class_cosine, warm_start_text_tower
from claver_hf.training.trainer import ClaverTrainingArguments

from .test_modeling_claver import classifier
from .test_training import arguments


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def test_warm_start_moves_the_classes_apart_and_trains_only_the_text_tower():
    model = classifier(num_views=4).train()
    before_weights = _weights(model)
    before = mean_class_cosine(model)

    result = warm_start_text_tower(model, steps=60, learning_rate=3e-3, views_per_class=2)

    assert result.class_cosine_before == pytest.approx(before)
    assert result.class_cosine_after == pytest.approx(mean_class_cosine(model))
    assert result.class_cosine_after < min(0.0, before - 0.3)
    assert result.final_loss < 0.5  # ln 3 ≈ 1.1 at chance
    assert model.training  # the caller's mode is restored
    after_weights = model.state_dict()
    text = [
        name for name in after_weights if name.startswith(("claver.text_model.", "claver.text_projection."))
    ]
    assert text and any(not torch.equal(after_weights[n], before_weights[n]) for n in text)
    others = [name for name in after_weights if name not in text]
    assert others and all(torch.equal(after_weights[n], before_weights[n]) for n in others)


def test_warm_start_is_reproducible_with_the_same_seed():
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        model = classifier(num_views=4)
        warm_start_text_tower(model, steps=5, learning_rate=1e-3)
        results.append(model.bank_text_features())
    assert torch.equal(results[0], results[1])


def test_warm_start_refuses_what_it_cannot_do():
    model = classifier(num_views=2)
    with pytest.raises(ValueError, match="at least 1"):
        warm_start_text_tower(model, steps=0, learning_rate=1e-3)
    with pytest.raises(ValueError, match="`views_per_class`"):
        warm_start_text_tower(model, steps=1, learning_rate=1e-3, views_per_class=0)
    for parameter in model.claver.text_parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        warm_start_text_tower(model, steps=1, learning_rate=1e-3)
    with pytest.raises(ValueError, match="text_warm_start_steps"):
        ClaverTrainingArguments(output_dir="unused", text_warm_start_steps=-1)


def test_run_warm_starts_the_text_tower_and_reports_it(dataset_dir, tmp_path):
    results = run(*arguments(dataset_dir, tmp_path / "out", text_warm_start_steps=80))
    warm_start = results["text_warm_start"]
    assert warm_start["steps"] == 80
    assert warm_start["class_cosine_after"] < warm_start["class_cosine_before"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["text_warm_start"] == warm_start
