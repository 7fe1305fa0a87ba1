import json

import pytest
import torch

from claver_hf import ClaverForVideoClassification, ClaverProcessor, ClaverVideoProcessor
from claver_hf.prompts import (
    BUNDLED_BANKS,
    TEMPLATES,
    PromptBank,
    PromptBankError,
    check_prompt_bank,
    display_name,
    load_prompt_bank,
)


def small_bank() -> dict:
    return {
        "format_version": 1,
        "dataset": "toy",
        "templates": ["{}", "a video of {}."],
        "classes": {
            "HighJump": {
                "display_name": "doing the high jump",
                "decomposition": [
                    "An athlete sprints on a curve, plants a foot and springs backwards over a bar."
                ],
                "body_parts": [
                    "The legs drive the take-off while the back arches and the hips rise over the bar."
                ],
                "synonyms": ["Leaping over a crossbar, clearing a raised bar with a Fosbury flop."],
            },
            "BrushingTeeth": {
                "display_name": "brushing teeth",
                "decomposition": [
                    "Someone squeezes paste on a brush, scrubs the teeth in small circles, then spits and rinses.",
                    "The brush moves from the back molars to the front teeth, top row first, then the bottom row.",
                ],
                "body_parts": [
                    "The wrist rotates and the elbow lifts while the jaw opens and the lips part."
                ],
                "synonyms": [
                    "Scrubbing the teeth, cleaning the mouth with a toothbrush, doing dental hygiene."
                ],
                "scene": ["A bathroom sink with a mirror and a cup of toothbrushes."],
            },
        },
    }


def write(tmp_path, data, name="bank.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_load_save_round_trip_and_views(tmp_path):
    bank = load_prompt_bank(write(tmp_path, small_bank()))
    assert bank.class_names == ["HighJump", "BrushingTeeth"]
    views = bank.views("BrushingTeeth")
    assert views[:2] == ["brushing teeth", "a video of brushing teeth."]
    assert len(views) == 2 + 4  # the scene form is not a default view
    assert len(bank.views("BrushingTeeth", forms=("scene",))) == 3
    bank.save(tmp_path / "again.json")
    assert load_prompt_bank(tmp_path / "again.json").to_dict() == bank.to_dict()
    assert bank.subset(["BrushingTeeth"]).class_names == ["BrushingTeeth"]
    with pytest.raises(PromptBankError, match=r"no prompts for classes \['Swimming'\]"):
        bank.subset(["Swimming"])


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda d: d["classes"]["HighJump"].update(smell=["x"]),
            r"class 'HighJump': unknown form\(s\) \['smell'\]",
        ),
        (
            lambda d: d["classes"]["HighJump"].update(synonyms=[]),
            r"class 'HighJump', form 'synonyms': expected a non-empty",
        ),
        (
            lambda d: d["classes"]["HighJump"].pop("body_parts"),
            r"class 'HighJump': missing form\(s\) \['body_parts'\]",
        ),
        (
            lambda d: d["classes"]["BrushingTeeth"]["decomposition"].append(
                "someone squeezes paste on a brush; scrubs the teeth in small circles, then spits and rinses"
            ),
            r"class 'BrushingTeeth', form 'decomposition': duplicate sentence",
        ),
        (lambda d: d.update(format_version=2), "unsupported format_version 2"),
        (lambda d: d.update(templates=["no placeholder"]), "must contain exactly one"),
    ],
)
def test_validation_errors_name_class_and_form(tmp_path, mutate, message):
    data = small_bank()
    mutate(data)
    with pytest.raises(PromptBankError, match=message):
        load_prompt_bank(write(tmp_path, data))


def test_missing_bank_and_bad_json(tmp_path):
    with pytest.raises(PromptBankError, match="not a bundled bank"):
        load_prompt_bank(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PromptBankError, match="not valid JSON"):
        load_prompt_bank(tmp_path / "broken.json")


def test_check_finds_problems(clip_tokenizer):
    data = small_bank()
    data["classes"]["HighJump"]["synonyms"].append(data["classes"]["BrushingTeeth"]["synonyms"][0])
    data["classes"]["HighJump"]["decomposition"].append("A person is doing the high jump.")
    data["classes"]["HighJump"]["body_parts"].append(" ".join(["legs"] * 90))
    report = check_prompt_bank(
        PromptBank.from_dict(data), labels=["HighJump", "Swimming"], tokenizer=clip_tokenizer, min_per_form=2
    )
    text = report.format()
    assert not report.ok
    assert "1 label(s) without prompts: ['Swimming']" in text
    assert "class(es) not in the label list: ['BrushingTeeth']" in text
    assert "'BrushingTeeth', body_parts: 1 sentence(s), need 2" in text
    assert "'BrushingTeeth', synonyms: duplicate of 'HighJump', synonyms" in text
    assert "merely repeats the class name: 'A person is doing the high jump.'" in text
    assert "tokens > 77" in text
    assert check_prompt_bank(PromptBank.from_dict(small_bank()), tokenizer=clip_tokenizer, min_per_form=1).ok


@pytest.mark.parametrize(
    "name,expected",
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("YoYo", "yo yo"),
        ("Pushing [something] from left to right", "pushing something from left to right"),
        ("shoot_bow", "shoot bow"),
        ("PlayingDaf", "playing daf"),
        ("abseiling", "abseiling"),
    ],
)
def test_display_names(name, expected):
    assert display_name(name) == expected


def test_processor_text_bank_and_model(tmp_path, clip_tokenizer):
    data = small_bank()
    processor = ClaverProcessor(
        video_processor=ClaverVideoProcessor(), tokenizer=clip_tokenizer, prompt_bank=write(tmp_path, data)
    )
    bank = processor.text_bank()
    assert bank["input_ids"].shape[:2] == (2 + 4, 2)
    # HighJump has 5 views, BrushingTeeth 6: the gap is masked, not filled with a repeated prompt.
    assert bank["view_mask"].sum(0).tolist() == [5, 6]
    assert bank["input_ids"][5, 0].eq(0).all() and bank["attention_mask"][5, 0].eq(0).all()
    assert (
        bank["input_ids"][0, 1].tolist()[: bank["attention_mask"][0, 1].sum()]
        == clip_tokenizer("brushing teeth")["input_ids"]
    )
    assert processor.text_bank(labels=["BrushingTeeth"])["input_ids"].shape[1] == 1

    processor.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "prompt_bank.json").exists()
    config = json.loads((tmp_path / "saved" / "processor_config.json").read_text())
    assert "prompt_bank" not in config
    loaded = ClaverProcessor.from_pretrained(tmp_path / "saved")
    assert loaded.prompt_bank.to_dict() == processor.prompt_bank.to_dict()

    from .test_modeling_claver import tiny_claver_config

    config = tiny_claver_config()
    config.text_config.vocab_size = 49408
    config.text_config.max_position_embeddings = 77
    config.text_config.bos_token_id, config.text_config.eos_token_id = 49406, 49407
    model = ClaverForVideoClassification(config).eval()
    model.set_text_bank(**bank, id2label=dict(enumerate(processor.prompt_bank.class_names)))
    assert model.config.id2label == {0: "HighJump", 1: "BrushingTeeth"}
    logits = model(pixel_values=torch.randn(1, 4, 3, 32, 32)).logits
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(1))


def test_templates_are_the_sixteen_of_the_recipe():
    assert len(TEMPLATES) == 16 and all(t.count("{}") == 1 for t in TEMPLATES)
    assert "a video of a person {}." in TEMPLATES and "Look, the human is {}" in TEMPLATES


LABEL_FILES = {
    "ucf101": "ucf101",
    "hmdb51": "hmdb51",
    "kinetics400": "kinetics400",
    "kinetics600": "kinetics600",
    "ssv2": "ssv2",
    "synthetic": None,
}


@pytest.mark.parametrize("name", BUNDLED_BANKS)
def test_bundled_banks_pass_the_check(name, clip_tokenizer):
    from claver_hf.data import read_class_names
    from claver_hf.data.synthetic import SYNTHETIC_CLASSES

    labels_file = LABEL_FILES[name]
    labels = list(read_class_names(labels_file).values()) if labels_file else list(SYNTHETIC_CLASSES)
    bank = load_prompt_bank(name)
    # At the paper's standard: 5 prompts per form and every other check of `claver-hf prompts check`.
    report = check_prompt_bank(bank, labels=labels, tokenizer=clip_tokenizer)
    assert report.ok, report.format()
    assert bank.class_names == labels
    assert bank.templates == list(TEMPLATES)
