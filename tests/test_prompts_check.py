"""Each check of `check_prompt_bank` against a bank with exactly the fault it must flag, and a good bank it must pass."""

import copy

import pytest

from claver_hf.prompts import PromptBank, check_prompt_bank
from claver_hf.prompts.check import (
    action_terms,
    content_words,
    has_action_verb,
    near_duplicate,
    sentence_problems,
    stem,
)

ARCHERY = {
    "display_name": "practising archery",
    "decomposition": [
        "An archer stands side-on to a target, nocks an arrow on the string and raises the bow to shoulder height.",
        "The shooter pulls the string back to the corner of the mouth, holds still for a moment and then lets go.",
        "After the release the bow arm stays pointed at the target while the arrow flies downrange and hits the boss.",
        "Standing on a marked line, the athlete takes an arrow from a hip quiver, loads it and draws for the next shot.",
        "Walking up to the straw target, the archer plucks the arrows out of the rings and notes where they landed.",
    ],
    "body_parts": [
        "The left arm stays straight and locked toward the target while the right hand draws back to the jaw.",
        "Three fingers hook the string, then relax all at once so that the string slips away.",
        "While the shoulders stay level, the back muscles squeeze the shoulder blades together at full draw.",
        "Both feet are planted shoulder-width apart and never shift during the shot.",
        "One eye squints along the arrow shaft as the head turns to face the target.",
    ],
    "synonyms": [
        "A person shoots arrows from a bow at a round target with coloured rings.",
        "Someone looses shafts from a drawn recurve at a bullseye across a field.",
        "An athlete fires a longbow at a distant mark during target practice.",
        "A competitor releases fletched darts from a taut bowstring toward a butt of straw.",
        "A hunter-style shooter sends feathered shafts flying from a compound bow.",
    ],
}

PLAYING_PIANO = {
    "display_name": "playing the piano",
    "decomposition": [
        "A pianist sits down at the keyboard, opens the lid and places both hands over the middle keys.",
        "The musician reads the score on the stand and presses chords in time with a slow melody.",
        "Fingers run up a scale from the low notes to the high ones and come back down in a flourish.",
        "Near the end of the piece the player lifts the hands off the keys and lets the last chord ring.",
        "Between phrases the performer turns a page of sheet music with one hand without stopping the left.",
    ],
    "body_parts": [
        "Ten fingers press black and white keys while the wrists hover level above them.",
        "The right foot rests on the sustain pedal and pushes it down at every new harmony.",
        "Shoulders sway gently with the music as the forearms travel sideways along the keyboard.",
        "Eyes flick between the sheet and the hands, and the head nods to keep the beat.",
        "Curved knuckles strike the keys quickly, the thumb passing under the fingers on runs.",
    ],
    "synonyms": [
        "A musician performs a sonata on a grand instrument with ivory keys.",
        "Someone tinkles melodies on an upright keyboard in a living room.",
        "A performer gives a recital at a concert grand on a stage.",
        "A student practises scales and chords at an upright in a music lesson.",
        "An accompanist strikes chords on a keyboard while a singer stands beside.",
    ],
}


def bank(**classes) -> PromptBank:
    return PromptBank.from_dict(
        {"format_version": 1, "dataset": "toy", "templates": ["{}", "The man is {}."], "classes": classes}
    )


def good_bank() -> dict:
    return {"archery": copy.deepcopy(ARCHERY), "playing piano": copy.deepcopy(PLAYING_PIANO)}


def problems(classes: dict, **kwargs) -> list[str]:
    return check_prompt_bank(bank(**classes), **kwargs).problems


def test_a_bank_at_the_standard_passes(clip_tokenizer):
    report = check_prompt_bank(
        bank(**good_bank()), labels=["archery", "playing piano"], tokenizer=clip_tokenizer
    )
    assert report.ok, report.format()
    text = report.format()
    assert "decomposition: 10 prompts, 5-5 per class (mean 5.0), distinct skeletons 100%" in text
    assert "flagged items: 0" in text


def test_count_per_form_defaults_to_five():
    classes = good_bank()
    classes["archery"]["body_parts"].pop()
    assert problems(classes) == ["'archery', body_parts: 4 sentence(s), need 5"]
    assert problems(classes, min_per_form=4) == []


def test_display_name_without_a_verb():
    classes = good_bank()
    classes["playing piano"]["display_name"] = "piano"
    assert problems(classes) == ["'playing piano': display name 'piano' has no -ing verb"]


@pytest.mark.parametrize(
    "display,verb",
    [
        ("doing a routine on a pommel horse", True),
        ("moving left", True),
        ("pommel horse", False),
        ("pushing something from left to right", True),
        ("something on a string", False),
        ("wedding ceiling", False),
    ],
)
def test_has_action_verb(display, verb):
    assert has_action_verb(display) is verb


def test_synonyms_that_reuse_the_class_name():
    classes = good_bank()
    # Both words of a two-word name: over the limit of one.
    classes["playing piano"]["synonyms"][0] = "A musician plays a grand piano with ivory keys on a stage."
    # The one word of a one-word name.
    classes["archery"]["synonyms"][0] = "An athlete does target archery with a recurve bow in a field."
    found = problems(classes)
    assert len(found) == 2, found
    assert "synonym repeats the class name's words ['piano', 'play']" in found[1]
    assert "synonym repeats the class name's words ['archery']" in found[0]


def test_a_synonym_naming_another_class():
    classes = good_bank()
    classes["twisting something"] = {
        "display_name": "twisting something",
        "decomposition": [f"{s}" for s in ARCHERY["decomposition"]],
        "body_parts": [f"{s}" for s in ARCHERY["body_parts"]],
        "synonyms": [
            "A hand rotates a bottle cap a quarter turn around its axis.",
            "Fingers turn a lid on a jar until it loosens.",
            "Someone is wringing a cloth between both fists.",
            "A wrist spins a knob clockwise and stops.",
            "The hand screws a small bolt into a plank.",
        ],
    }
    classes["Twisting (wringing) something wet until water comes out"] = copy.deepcopy(PLAYING_PIANO)
    classes["Twisting (wringing) something wet until water comes out"]["display_name"] = (
        "wringing something wet"
    )
    del classes["archery"], classes["playing piano"]
    found = [p for p in problems(classes) if "name of class" in p]
    assert found == [
        "'twisting something', synonyms: synonym uses 'wringing', the name of class "
        "'Twisting (wringing) something wet until water comes out': 'Someone is wringing a cloth between both fists.'"
    ]


def test_action_terms():
    assert action_terms(
        "Twisting (wringing) something wet until water comes out", "wringing something wet"
    ) == {
        "twisting something wet until water comes out",
        "wringing",
        "wringing something wet",
    }
    assert action_terms("cooking sausages (not on barbeque)", "frying sausages") == {
        "cooking sausages",
        "frying sausages",
    }
    # A name made of filler words only would match everything.
    assert action_terms("Something", "something") == frozenset()


def test_a_climb_inside_climb_stairs_is_its_own_word():
    terms = {"climb": action_terms("climb", "climbing")}
    assert (
        sentence_problems(
            "A walker ascends a flight of steps to climb higher.",
            "synonyms",
            "climb_stairs",
            "climbing stairs",
            terms,
        )
        == []
    )
    assert sentence_problems(
        "The hiker goes up a staircase to climb higher.", "synonyms", "run", "running", terms
    ) == ["synonym uses 'climb', the name of class 'climb'"]


def test_near_duplicates_inside_a_class():
    classes = good_bank()
    classes["archery"]["body_parts"][4] = (
        "The archer stands side-on to the target, nocks the arrow on the string and raises the bow to the shoulder."
    )
    found = [p for p in problems(classes) if "near-duplicates" in p]
    assert len(found) == 1 and found[0].startswith("'archery': near-duplicates (91% shared words)"), found
    assert near_duplicate("A hand pushes a cup left.", "The hand pushes the cup to the left.")
    assert not near_duplicate("A hand pushes a cup left.", "Fingers slide a mug toward the right edge.")


def test_a_rare_phrase_recurring_in_one_class():
    classes = good_bank()
    classes["playing piano"]["decomposition"][0] = (
        "A pianist sits down, tinkling the ivories with both hands."
    )
    classes["playing piano"]["body_parts"][0] = (
        "Ten fingers keep tinkling the ivories while the wrists hover."
    )
    found = problems(classes)
    assert found == ["'playing piano': the phrase 'tinkling the ivories' recurs in 2 prompts"], found


def test_a_common_phrase_or_the_class_name_may_recur():
    classes = {f"class {i}": copy.deepcopy(ARCHERY) for i in range(3)}
    for i, entry in enumerate(classes.values()):
        entry["display_name"] = f"practising archery {i}"
        for form in entry:
            if form != "display_name":
                entry[form] = [f"{s[:-1]} number {i}." for s in entry[form]]
        # "the bow arm" recurs in every class: common, not a rare phrase.
        entry["decomposition"][0] = f"An archer lifts the bow arm slowly toward a target, version {i}."
        entry["body_parts"][0] = f"Locked straight, the bow arm never wavers, version {i}."
    assert [p for p in problems(classes) if "recurs" in p] == []


def test_several_sentences_in_one_prompt():
    classes = good_bank()
    classes["archery"]["decomposition"][0] = (
        "An archer nocks an arrow. Then the archer draws and releases it."
    )
    assert problems(classes) == [
        "'archery', decomposition: more than one sentence: "
        "'An archer nocks an arrow. Then the archer draws and releases it.'"
    ]


def test_stems_and_content_words():
    assert [stem(w) for w in ["speed", "played", "drumming", "dances", "dancing", "running"]] == [
        "speed",
        "play",
        "drum",
        "danc",
        "danc",
        "run",
    ]
    assert content_words("The person is playing the piano in one's room.") == {"play", "piano", "room"}
