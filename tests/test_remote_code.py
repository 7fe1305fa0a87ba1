"""Remote code: the flat source files `save_pretrained` writes, and saved folders loading with
`trust_remote_code=True` where claver_hf cannot be imported (and as before where it can)."""

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
    pipeline,
)
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from claver_hf import (
    ClaverConfig,
    ClaverForVideoClassification,
    ClaverModel,
    ClaverProcessor,
    ClaverVideoProcessor,
    ClaverVisionModel,
)
from claver_hf.remote_code import RemoteCodeError, write_flat_modules

from .conftest import NUM_FRAMES, tiny_claver_config
from .test_pipelines import tiny_clip_text_model, tiny_processor
from .videos import write_video

LABELS = ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]  # the first classes of the bundled ucf101 bank
MODEL_FILES = {
    "_compat.py",
    "configuration_claver.py",
    "kronecker.py",
    "modeling_claver.py",
    "remote_code.py",
    "scoring.py",
    "text_bank.py",
}
VIDEO_PROCESSOR_FILES = {
    "_compat.py",
    "video_processing_claver.py",
    "common.py",
    "container.py",
    "sparse_reader.py",
    "backends.py",
    "sampling.py",
    "transforms.py",
    "remote_code.py",
}
PROCESSOR_FILES = {"processing_claver.py", "bank.py", "remote_code.py"} | VIDEO_PROCESSOR_FILES

# Run in a fresh interpreter in which `import claver_hf` raises ImportError: everything must come from the folder.
LOAD_WITHOUT_CLAVER_HF = textwrap.dedent(
    """
    import sys

    sys.modules["claver_hf"] = None
    import json

    import torch
    from transformers import (
        AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor, AutoVideoProcessor, pipeline,
    )

    folder, vision_folder, video = sys.argv[1:]
    try:
        import claver_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("claver_hf is importable in the remote-code subprocess")

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    video_processor = AutoVideoProcessor.from_pretrained(folder, trust_remote_code=True)
    classifier = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    vision = AutoModel.from_pretrained(vision_folder, trust_remote_code=True).eval()
    inputs = processor(videos=video)
    pixel_values = torch.linspace(-1, 1, 2 * 4 * 3 * 32 * 32).view(2, 4, 3, 32, 32)
    with torch.no_grad():
        results = {
            "logits": classifier(**inputs).logits.tolist(),
            "video_embeds": model.get_video_features(**inputs).pooler_output.tolist(),
            "vision_pooler": vision(pixel_values=pixel_values).pooler_output.tolist(),
        }
    results["pixel_values"] = video_processor(video)["pixel_values"].tolist()
    results["pipeline"] = pipeline("video-classification", model=folder, trust_remote_code=True)(video, top_k=3)
    results["prompt_bank"] = processor.prompt_bank.dataset
    objects = [config, classifier, model, vision, processor, processor.video_processor, video_processor]
    results["classes"] = [f"{type(obj).__module__}.{type(obj).__name__}" for obj in objects]
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def processor(clip_tokenizer):
    return tiny_processor(clip_tokenizer)


@pytest.fixture(scope="module")
def classifier(processor):
    model = tiny_clip_text_model(ClaverForVideoClassification)
    model.set_text_bank(**processor.text_bank(LABELS), id2label=dict(enumerate(LABELS)))
    return model


@pytest.fixture(scope="module")
def vision_model():
    torch.manual_seed(0)
    return ClaverVisionModel(tiny_claver_config().vision_config).eval()


@pytest.fixture(scope="module")
def folders(classifier, processor, vision_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    classifier.save_pretrained(root / "classifier")
    processor.save_pretrained(root / "classifier")
    vision_model.save_pretrained(root / "vision")
    video = write_video(root / "clip.mp4", num_frames=24)
    return root / "classifier", root / "vision", video


def load_without_claver_hf(folder, vision_folder, video, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    return subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_CLAVER_HF, str(folder), str(vision_folder), str(video)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )


def read_json(path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- what save_pretrained writes


def test_saved_folder_has_the_sources_and_auto_maps(folders):
    folder, vision_folder, _ = folders
    assert {path.name for path in folder.glob("*.py")} == MODEL_FILES | PROCESSOR_FILES
    assert {path.name for path in vision_folder.glob("*.py")} == MODEL_FILES
    assert read_json(folder / "config.json")["auto_map"] == {
        "AutoConfig": "configuration_claver.ClaverConfig",
        "AutoModel": "modeling_claver.ClaverModel",
        "AutoModelForVideoClassification": "modeling_claver.ClaverForVideoClassification",
    }
    assert read_json(vision_folder / "config.json")["auto_map"] == {
        "AutoConfig": "configuration_claver.ClaverVisionConfig",
        "AutoModel": "modeling_claver.ClaverVisionModel",
    }
    processor_config = read_json(folder / "processor_config.json")
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_claver.ClaverProcessor"}
    assert processor_config["video_processor"]["auto_map"] == {
        "AutoVideoProcessor": "video_processing_claver.ClaverVideoProcessor"
    }
    # Every relative import is a same-folder one that transformers' own file gathering follows.
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (folder / f"{node.module}.py").is_file(), (path.name, node.lineno)
    assert {os.path.basename(f) for f in get_relative_import_files(folder / "modeling_claver.py")} == (
        MODEL_FILES - {"modeling_claver.py"}
    )
    assert (
        "from .configuration_claver import ClaverConfig, ClaverVisionConfig"
        in (folder / "modeling_claver.py").read_text()
    )


def test_video_processor_alone(tmp_path):
    ClaverVideoProcessor(num_frames=NUM_FRAMES).save_pretrained(tmp_path)
    assert {path.name for path in tmp_path.glob("*.py")} == VIDEO_PROCESSOR_FILES
    assert read_json(tmp_path / "video_preprocessor_config.json")["auto_map"] == {
        "AutoVideoProcessor": "video_processing_claver.ClaverVideoProcessor"
    }


@pytest.mark.parametrize("model_class", [ClaverModel, ClaverForVideoClassification, ClaverVisionModel])
def test_auto_map_builds_what_the_registrations_build(model_class, tmp_path):
    """Remote loading builds the classes that claver_hf's own registrations build for the saved config."""
    config = tiny_claver_config()
    model = model_class(config.vision_config if model_class is ClaverVisionModel else config)
    model.save_pretrained(tmp_path)
    auto_map = read_json(tmp_path / "config.json")["auto_map"]
    config_class = type(model.config)
    assert (
        auto_map.pop("AutoConfig")
        == f"configuration_claver.{CONFIG_MAPPING[config_class.model_type].__name__}"
    )
    registered = {
        name: getattr(transformers, name)._model_mapping.get(config_class, None)
        for name in ("AutoModel", "AutoModelForVideoClassification")
    }
    assert auto_map == {name: f"modeling_claver.{cls.__name__}" for name, cls in registered.items() if cls}


# ---------------------------------------------------------------- loading


def test_claver_hf_loads_the_folder_as_before(folders, monkeypatch):
    """With claver_hf imported the registered classes are used, with or without `trust_remote_code`, and the
    `auto_map` never makes transformers ask whether to run the folder's code."""

    def no_prompt(*args):
        raise AssertionError("transformers asked whether to trust remote code")

    monkeypatch.setattr("builtins.input", no_prompt)
    folder, vision_folder, _ = folders
    for kwargs in ({}, {"trust_remote_code": True}, {"trust_remote_code": False}):
        assert type(AutoConfig.from_pretrained(folder, **kwargs)) is ClaverConfig
        assert (
            type(AutoModelForVideoClassification.from_pretrained(folder, **kwargs))
            is ClaverForVideoClassification
        )
        assert type(AutoModel.from_pretrained(folder, **kwargs)) is ClaverModel
        assert type(AutoModel.from_pretrained(vision_folder, **kwargs)) is ClaverVisionModel
        assert type(AutoProcessor.from_pretrained(folder, **kwargs)) is ClaverProcessor
        assert type(AutoVideoProcessor.from_pretrained(folder, **kwargs)) is ClaverVideoProcessor


def test_loads_without_claver_hf(folders, classifier, processor, vision_model, tmp_path):
    folder, vision_folder, video = folders
    run = load_without_claver_hf(folder, vision_folder, video, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    remote = json.loads(run.stdout.strip().splitlines()[-1])

    assert all(name.startswith("transformers_modules.") for name in remote["classes"]), remote["classes"]
    assert [name.rpartition(".")[2] for name in remote["classes"]] == [
        "ClaverConfig",
        "ClaverForVideoClassification",
        "ClaverModel",
        "ClaverVisionModel",
        "ClaverProcessor",
        "ClaverVideoProcessor",
        "ClaverVideoProcessor",
    ]
    assert remote["prompt_bank"] == "ucf101"

    inputs = processor(videos=str(video))
    pixel_values = torch.linspace(-1, 1, 2 * 4 * 3 * 32 * 32).view(2, 4, 3, 32, 32)
    with torch.no_grad():
        logits = classifier(**inputs).logits
        video_embeds = classifier.claver.get_video_features(**inputs).pooler_output
        vision_pooler = vision_model(pixel_values=pixel_values).pooler_output
    torch.testing.assert_close(
        torch.tensor(remote["pixel_values"]), inputs["pixel_values"], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(torch.tensor(remote["logits"]), logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(remote["video_embeds"]), video_embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(remote["vision_pooler"]), vision_pooler, rtol=0, atol=1e-5)

    expected = pipeline("video-classification", model=str(folder))(str(video), top_k=3)
    assert [p["label"] for p in remote["pipeline"]] == [p["label"] for p in expected]
    assert [p["score"] for p in remote["pipeline"]] == pytest.approx([p["score"] for p in expected], abs=1e-5)


def delete_kronecker(folder):
    (folder / "kronecker.py").unlink()


def drop_model_auto_map(folder):
    config = read_json(folder / "config.json")
    del config["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))


def drop_video_processor_auto_map(folder):
    config = read_json(folder / "processor_config.json")
    del config["video_processor"]["auto_map"]
    (folder / "processor_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "damage, error",
    [
        (delete_kronecker, "No such file or directory: '.*kronecker.py'"),
        (drop_model_auto_map, "model type `claver`"),
        (drop_video_processor_auto_map, "Unrecognized video processor"),
    ],
)
def test_loading_without_claver_hf_needs_every_file_and_auto_map(folders, damage, error, tmp_path):
    """The subprocess gets CLAVER from the folder alone: without one of its files or `auto_map`s it fails."""
    folder, vision_folder, video = folders
    damaged = shutil.copytree(folder, tmp_path / "damaged")
    damage(damaged)
    run = load_without_claver_hf(damaged, vision_folder, video, tmp_path)
    assert run.returncode != 0
    assert re.search(error, run.stderr), run.stderr[-3000:]


# ---------------------------------------------------------------- flattening


def write_package(root, files: dict[str, str]):
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


PACKAGE = {
    "pkg/__init__.py": "",
    "pkg/first/__init__.py": "",
    "pkg/first/main.py": '''
        """Imports at two levels, one of them inside a function."""
        import os

        from ..second.other import OTHER  # a comment after the import
        from .helper import (
            HELPER,
        )


        def lazy():
            from ..second.late import LATE

            return LATE, os.sep
        ''',
    "pkg/first/helper.py": "HELPER = 1\n",
    "pkg/second/__init__.py": "",
    "pkg/second/other.py": "from ..first.helper import HELPER\n\nOTHER = HELPER + 1\n",
    "pkg/second/late.py": "LATE = 3\n",
}


def test_flattening_follows_every_relative_import(tmp_path, monkeypatch):
    package = write_package(tmp_path / "src", PACKAGE)
    flat = tmp_path / "flat_modules"
    written = write_flat_modules([package / "pkg/first/main.py"], flat)
    assert [path.name for path in written] == ["helper.py", "late.py", "main.py", "other.py"]
    expected_main = (
        textwrap.dedent(PACKAGE["pkg/first/main.py"])
        .replace("from ..second.other import", "from .other import")
        .replace("from ..second.late import", "from .late import")
    )
    assert (flat / "main.py").read_text() == expected_main
    assert (flat / "other.py").read_text() == "from .helper import HELPER\n\nOTHER = HELPER + 1\n"
    assert (flat / "helper.py").read_text() == PACKAGE["pkg/first/helper.py"]
    # transformers finds every file from the first, and the flat files import each other.
    assert sorted(os.path.basename(f) for f in get_relative_import_files(flat / "main.py")) == [
        "helper.py",
        "late.py",
        "other.py",
    ]
    (flat / "__init__.py").touch()
    monkeypatch.syspath_prepend(tmp_path)
    main = importlib.import_module("flat_modules.main")
    assert (main.OTHER, main.lazy()[0]) == (2, 3)


@pytest.mark.parametrize(
    "files, error",
    [
        (
            {"pkg/second/helper.py": "", "pkg/second/other.py": "from .helper import *\nOTHER = 2\n"},
            "share the file name 'helper.py'",
        ),
        ({"pkg/second/other.py": "from ..first import helper\nOTHER = 2\n"}, "imports the package .*first"),
        ({"pkg/second/other.py": "from . import late\nOTHER = 2\n"}, "imports the package .*second"),
        (
            {"pkg/second/late.py": "def f():\n    import claver_hf\n"},
            "late.py:2 imports claver_hf by its absolute",
        ),
        ({"pkg/second/other.py": "from claver_hf.prompts import bank\n"}, "other.py:1 imports claver_hf"),
        ({"pkg/second/other.py": "from .missing import x\n"}, "names no module file .*missing.py is missing"),
        ({"pkg/second/late.py": "from \\\n    .other import OTHER\n"}, "late.py:1: cannot rewrite"),
    ],
)
def test_flattening_errors(files, error, tmp_path):
    package = write_package(tmp_path / "src", {**PACKAGE, **files})
    with pytest.raises(RemoteCodeError, match=error):
        write_flat_modules([package / "pkg/first/main.py"], tmp_path / "out")
