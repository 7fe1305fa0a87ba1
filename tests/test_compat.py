"""`claver_hf._compat`: the only module that uses private parts of transformers and torch, and what it relies on."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

import claver_hf
from claver_hf import ClaverForVideoClassification, ClaverModel, ClaverVisionModel
from claver_hf._compat import (
    attn_implementation,
    from_config,
    optional_cached_file,
    set_attn_implementation,
    tensor_version,
)

from .conftest import tiny_claver_config

ROOT = Path(claver_hf.__file__).parent.parent
SCANNED = ["claver_hf", "benchmarks", "examples"]  # tests may look inside transformers to check it
COMPAT = ROOT / "claver_hf" / "_compat.py"
# Internal modules of transformers whose public names are nevertheless not part of its API.
INTERNAL_MODULES = {"transformers.utils.generic", "transformers.utils.output_capturing"}
# The type `argparse.ArgumentParser.add_subparsers()` returns, which has no public name (annotations only).
PYTHON_PRIVATE = {"_SubParsersAction"}
# Private methods that transformers documents as the ones to override in subclasses.
DOCUMENTED_HOOKS = {
    "_init_weights",  # PreTrainedModel: a custom model's weight initialisation
    # BaseVideoProcessor: the steps a model's video processor overrides (its base declares the first two as such)
    "_decode_and_sample_videos",
    "_prepare_input_videos",
    "_preprocess",
    "_sanitize_parameters",  # Pipeline: splitting call arguments between the steps
    "_forward",  # Pipeline: the model step
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sources() -> dict[Path, ast.Module]:
    files = sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}


def _own_private_names(trees) -> set[str]:
    """Private names claver-hf defines itself: functions, classes, parameters, assigned names and attributes of
    `self` or `cls`."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                # Only its own objects' attributes: setting another object's private attribute is a private use.
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    names.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return {name for name in names if _is_private(name)}


def private_uses(sources: dict[Path, ast.Module]) -> list[str]:
    """Where code outside `_compat` imports, reads, calls or passes a private name that claver-hf does not define."""
    own = _own_private_names(sources.values()) | PYTHON_PRIVATE
    found = []
    for path, tree in sources.items():
        if path == COMPAT:
            continue
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
                name = node.attr
            elif isinstance(node, ast.keyword) and node.arg and _is_private(node.arg) and node.arg not in own:
                name = f"{node.arg}="
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and not node.module.startswith("claver_hf")
            ):
                parts = node.module.split(".")
                private = [p for p in parts if _is_private(p)] + [
                    a.name for a in node.names if _is_private(a.name)
                ]
                if private or node.module in INTERNAL_MODULES:
                    name = f"from {node.module} import"
            elif isinstance(node, ast.Import):
                name = next((a.name for a in node.names if any(map(_is_private, a.name.split(".")))), None)
            if name is not None:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_private_apis_are_used_only_in_compat():
    assert private_uses(_sources()) == []


def test_the_scan_finds_private_uses():
    source = ast.parse(
        "from transformers.utils.output_capturing import capture_outputs\n"
        "from torchvision.transforms.v2._utils import query_size\n"
        "config._attn_implementation = 'sdpa'\n"
        "cached_file(path, name, _raise_exceptions_for_missing_entries=False)\n"
    )
    assert len(private_uses({ROOT / "claver_hf" / "module.py": source})) == 4


def _claver_classes() -> list[type]:
    classes = []
    for module_info in pkgutil.walk_packages(claver_hf.__path__, "claver_hf."):
        module = importlib.import_module(module_info.name)
        classes += [
            cls for _, cls in inspect.getmembers(module, inspect.isclass) if cls.__module__ == module.__name__
        ]
    return classes


def test_no_private_method_of_a_library_is_overridden_outside_compat():
    overridden = []
    for cls in _claver_classes():
        if cls.__module__ == "claver_hf._compat":
            continue
        for name, value in vars(cls).items():
            if not (_is_private(name) and callable(value)) or name in DOCUMENTED_HOOKS:
                continue
            libraries = [base for base in cls.__mro__[1:] if not base.__module__.startswith("claver_hf")]
            if any(name in vars(base) for base in libraries):
                overridden.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    assert overridden == []


def test_base_model_is_the_claver_model():
    """transformers' `base_model` (through `base_model_prefix = "claver"`), which the visualisations use."""
    config = tiny_claver_config()
    classifier = ClaverForVideoClassification(config)
    assert classifier.base_model is classifier.claver
    model = ClaverModel(config)
    assert model.base_model is model
    vision = ClaverVisionModel(config.vision_config)
    assert vision.base_model is vision


def test_attention_implementation_of_a_config():
    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    set_attn_implementation(config, "sdpa")
    assert attn_implementation(config) == "sdpa"
    model = from_config(CLIPTextModel, config, attn_implementation="eager")
    assert attn_implementation(model.config) == "eager"


def test_optional_cached_file(tmp_path):
    (tmp_path / "present.json").write_text("{}")
    assert optional_cached_file(tmp_path, "present.json") == str(tmp_path / "present.json")
    assert optional_cached_file(tmp_path, "absent.json") is None


def test_tensor_version_counts_in_place_changes():
    tensor = torch.zeros(3)
    before = tensor_version(tensor)
    tensor.add_(1)
    assert tensor_version(tensor) > before
    assert tensor_version(tensor + 1) == 0


@pytest.mark.parametrize("model_class", [ClaverModel, ClaverVisionModel])
def test_every_module_is_initialised_as_for_models_inside_transformers(model_class):
    """CLIP initialises attention projections on modules without parameters of their own (`CLIPAttention`), which
    transformers skips for models defined outside it unless told otherwise (`InitializeEveryModule`)."""
    torch.manual_seed(0)
    config = tiny_claver_config()
    model = model_class(config if model_class is ClaverModel else config.vision_config)
    vision = model.vision_model if model_class is ClaverModel else model
    q_proj = vision.encoder.layers[0].self_attn.q_proj.weight
    hidden, layers = config.vision_config.hidden_size, config.vision_config.num_hidden_layers
    expected = hidden**-0.5 * (2 * layers) ** -0.5 * config.vision_config.initializer_factor
    assert q_proj.std().item() == pytest.approx(expected, rel=0.3)
