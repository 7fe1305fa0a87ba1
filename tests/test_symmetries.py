import json

import numpy as np
import pytest
import torch

from claver_hf.data import AnnotationListDataset, VideoFolderDataset, write_synthetic_dataset
from claver_hf.data.symmetries import (
    CLIP_TRANSFORMS,
    LabelSymmetries,
    LabelSymmetryAugmentation,
    load_label_symmetries,
)
from claver_hf.data.synthetic import SYNTHETIC_CLASSES, synthetic_label_symmetries
from claver_hf.processing import ClaverVideoProcessor

from .test_synthetic import _change_centroid, _main_object_only


def test_synthetic_maps_swap_the_mirrored_directions_and_the_pairs():
    maps = synthetic_label_symmetries().label_maps
    assert set(maps) == set(CLIP_TRANSFORMS)
    moved = {name: {c: m for c, m in label_map.items() if m != c} for name, label_map in maps.items()}
    sense = {"rotating clockwise": "rotating anticlockwise", "rotating anticlockwise": "rotating clockwise"}
    assert moved["horizontal_flip"] == {"moving left": "moving right", "moving right": "moving left", **sense}
    assert moved["vertical_flip"] == {"moving up": "moving down", "moving down": "moving up", **sense}
    assert moved["transpose"] == {
        "moving left": "moving up", "moving up": "moving left", "moving right": "moving down",
        "moving down": "moving right", **sense,
    }  # fmt: skip
    assert moved["time_reversal"] == {
        **{a: b for a, b in zip(SYNTHETIC_CLASSES[::2], SYNTHETIC_CLASSES[1::2], strict=True)},
        **{b: a for a, b in zip(SYNTHETIC_CLASSES[::2], SYNTHETIC_CLASSES[1::2], strict=True)},
    }
    assert load_label_symmetries("synthetic") == synthetic_label_symmetries()


@pytest.mark.parametrize("seed", range(3))
def test_transformed_synthetic_clips_move_as_their_new_class(seed):
    """A mirrored "moving left" clip moves right; transposed, it moves up; reversed, right again."""
    clip = torch.from_numpy(_main_object_only("moving left", seed)).permute(0, 3, 1, 2)  # (T, C, H, W)

    def centroids(transform: str) -> np.ndarray:
        return _change_centroid(CLIP_TRANSFORMS[transform](clip).permute(0, 2, 3, 1).numpy())

    assert (
        _change_centroid(clip.permute(0, 2, 3, 1).numpy())[-1, 0]
        < _change_centroid(clip.permute(0, 2, 3, 1).numpy())[0, 0]
    )
    for transform, axis, sign in (("horizontal_flip", 0, 1), ("transpose", 1, -1), ("time_reversal", 0, 1)):
        track = centroids(transform)
        assert sign * (track[-1, axis] - track[0, axis]) > 3, transform
    track = centroids("vertical_flip")  # still moving left
    assert track[-1, 0] < track[0, 0] - 3


def test_maps_must_undo_themselves_and_name_every_class():
    with pytest.raises(ValueError, match="'a' must map back to 'b'"):
        LabelSymmetries({"horizontal_flip": {"b": "a", "a": "a"}})
    with pytest.raises(ValueError, match="Unknown transformations \\['rotate'\\]"):
        LabelSymmetries({"rotate": {}})
    symmetries = LabelSymmetries({"time_reversal": {"a": "b", "b": "a", "z": None}})
    with pytest.raises(ValueError, match="missing \\['c'\\], unknown \\['z'\\]"):
        symmetries.permutations({0: "a", 1: "b", 2: "c"})
    assert symmetries.permutations({0: "z", 1: "a", 2: "b"})["time_reversal"].tolist() == [-1, 2, 1]


def test_augmentation_applies_the_transformations_in_order_and_relabels():
    symmetries = LabelSymmetries(
        {"horizontal_flip": {"l": "r", "r": "l", "x": None}, "transpose": {"l": "l", "r": "r", "x": "x"}}
    )
    id2label = {0: "l", 1: "r", 2: "x"}
    clip = torch.randn(4, 3, 8, 8)
    always = LabelSymmetryAugmentation(symmetries, id2label, probability=1.0)
    out, label = always(clip, 0)
    assert label == 1 and torch.equal(out, clip.flip(-1).transpose(-1, -2))
    out, label = always(clip, 2)  # no mirror image: only the transpose applies
    assert label == 2 and torch.equal(out, clip.transpose(-1, -2))
    never = LabelSymmetryAugmentation(symmetries, id2label, probability=0.0)
    out, label = never(clip, 0)
    assert label == 0 and out is clip
    with pytest.raises(ValueError, match="probability"):
        LabelSymmetryAugmentation(symmetries, id2label, probability=1.5)


def test_load_label_symmetries_from_a_file(tmp_path):
    path = tmp_path / "symmetries.json"
    path.write_text(json.dumps({"time_reversal": {"opening": "closing", "closing": "opening"}}))
    assert load_label_symmetries(path).label_maps["time_reversal"]["opening"] == "closing"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="object of objects"):
        load_label_symmetries(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_label_symmetries(path)
    with pytest.raises(ValueError, match="neither 'synthetic' nor a JSON file"):
        load_label_symmetries(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(
        root, num_train_per_class=1, num_val_per_class=0, num_test_per_class=0, num_heldout_per_class=0,
        num_frames=8, size=32, progress=False,
    )  # fmt: skip
    return root


def test_training_items_are_transformed_with_their_labels(synthetic_dir):
    """Each training item is the plain item mirrored, transposed and reversed as its own seeded draws say, with
    the class the maps give; the same for the list and folder layouts, whose class ids differ."""
    processor = ClaverVideoProcessor(
        num_frames=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, flip_prob=0.0
    )
    symmetries = synthetic_label_symmetries()
    for dataset_class, args in (
        (AnnotationListDataset, (synthetic_dir / "train.txt", synthetic_dir, synthetic_dir / "classes.csv")),
        (VideoFolderDataset, (synthetic_dir / "train",)),
    ):
        plain = dataset_class(*args, processor, training=True, seed=3)
        always = dataset_class(
            *args, processor, training=True, seed=3, label_symmetries=symmetries, symmetry_prob=1
        )
        half = dataset_class(*args, processor, training=True, seed=3, label_symmetries=symmetries)
        labels = plain.id2label
        relabelled = 0
        for index in range(len(plain)):
            item, mirrored = plain[index], always[index]
            expected = item["pixel_values"].flip(-1).flip(-2).transpose(-1, -2).flip(0)
            assert torch.equal(mirrored["pixel_values"], expected)
            name = labels[item["labels"]]
            for transform in CLIP_TRANSFORMS:
                name = symmetries.label_maps[transform][name]
            assert labels[mirrored["labels"]] == name
            drawn = half[index]
            assert torch.equal(drawn["pixel_values"], half[index]["pixel_values"])  # seeded per item
            relabelled += int(drawn["labels"] != item["labels"])
        assert 0 < relabelled < len(plain)  # at probability 0.5, some items change class and some keep theirs
    with pytest.raises(ValueError, match="training augmentation"):
        VideoFolderDataset(synthetic_dir / "train", processor, label_symmetries=symmetries)
