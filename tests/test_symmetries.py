import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from claver_hf.data import AnnotationListDataset, VideoFolderDataset, write_synthetic_dataset
from claver_hf.data.symmetries import (
    CLIP_TRANSFORMS,
    LabelSymmetries,
    LabelSymmetryAugmentation,
    load_label_symmetries,
    symmetric_views,
    transform_clips,
)
from claver_hf.data.synthetic import SYNTHETIC_CLASSES, synthetic_label_symmetries
from claver_hf.processing import ClaverVideoProcessor
from claver_hf.training.metrics import predict_multiview

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


def test_symmetric_views_compose_the_label_maps_in_the_order_the_clip_is_transformed():
    maps = synthetic_label_symmetries().label_maps
    id2label = dict(enumerate(SYNTHETIC_CLASSES))
    spatial = ("horizontal_flip", "vertical_flip", "transpose")
    permutations = synthetic_label_symmetries().permutations(id2label)
    views = symmetric_views({name: permutations[name] for name in spatial})
    assert len(views) == 8 and views[0][0] == () and views[0][1].tolist() == list(range(10))
    assert {names for names, _ in views} == {
        tuple(name for name in spatial if name in subset)
        for subset in (
            (),
            *[(a,) for a in spatial],
            *[(a, b) for a in spatial for b in spatial if a < b],
            spatial,
        )
    }
    for names, permutation in views:
        for index, name in id2label.items():
            for transform in names:
                name = maps[transform][name]
            assert id2label[int(permutation[index])] == name, (names, id2label[index])
    # Mirrored then transposed, "moving left" becomes "moving right", then "moving down".
    permutation = dict(views)[("horizontal_flip", "transpose")]
    assert id2label[int(permutation[SYNTHETIC_CLASSES.index("moving left")])] == "moving down"


def test_symmetric_views_need_every_class_s_image():
    permutations = LabelSymmetries({"time_reversal": {"a": "b", "b": "a", "z": None}}).permutations(
        {0: "z", 1: "a", 2: "b"}
    )
    with pytest.raises(ValueError, match="'time_reversal' maps class ids \\[0\\] to null"):
        symmetric_views(permutations)
    with pytest.raises(ValueError, match="at least one"):
        symmetric_views({})


def test_transform_clips_applies_the_transformations_in_order():
    clips = torch.arange(2 * 3 * 4 * 1 * 5 * 5, dtype=torch.float32).reshape(
        2, 3, 4, 1, 5, 5
    )  # (B, N, T, C, H, W)
    assert torch.equal(transform_clips(clips, ()), clips)
    assert torch.equal(
        transform_clips(clips, ("horizontal_flip", "transpose", "time_reversal")),
        clips.flip(-1).transpose(-1, -2).flip(-4),
    )
    with pytest.raises(ValueError, match="square frames, got \\(5, 4\\)"):
        transform_clips(clips[..., :4], ("transpose",))


class _BrighterSideReader(torch.nn.Module):
    """Says class 0 ("moving left") when the left half of a clip is the brighter, class 1 ("moving right") when the
    right half is: a model whose answer mirrors with the clip."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        half = pixel_values.shape[-1] // 2
        left = pixel_values[..., :half].flatten(1).mean(1) > pixel_values[..., half:].flatten(1).mean(1)
        probabilities = torch.stack([left, ~left], dim=-1).float() * 0.9 + 0.05
        return SimpleNamespace(logits=probabilities.log())


def test_symmetric_test_views_read_each_view_back_through_the_class_it_shows():
    clip = torch.zeros(2, 3, 4, 4)  # (T, C, H, W), bright on the left: class 0
    clip[..., :2] = 1.0
    dataset = [{"pixel_values": clip, "labels": 0}]
    plain, labels = predict_multiview(_BrighterSideReader(), dataset, progress=False)
    assert plain[0].tolist() == pytest.approx([0.95, 0.05]) and labels.tolist() == [0]
    # Mirrored, the clip is bright on the right and read as class 1, which is class 0 mirrored: still class 0.
    symmetries = {"horizontal_flip": torch.tensor([1, 0]), "vertical_flip": torch.tensor([0, 1])}
    averaged, _ = predict_multiview(_BrighterSideReader(), dataset, progress=False, symmetries=symmetries)
    assert averaged[0].tolist() == pytest.approx([0.95, 0.05])
    # A mirror image counted as the class it shows, not read back, would halve the evidence.
    unmapped = {"horizontal_flip": torch.tensor([0, 1])}
    assert predict_multiview(_BrighterSideReader(), dataset, progress=False, symmetries=unmapped)[0][
        0
    ].tolist() == pytest.approx([0.5, 0.5])
