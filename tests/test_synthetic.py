import csv
import re

import numpy as np
import pytest

from claver_hf import ClaverVideoProcessor
from claver_hf.data import AnnotationListDataset, VideoFolderDataset, read_class_names
from claver_hf.data.synthetic import (
    BACKGROUNDS,
    HELDOUT_BACKGROUNDS,
    HELDOUT_SHAPES,
    ORIENTED_SHAPES,
    ORIENTING_TEXTURES,
    ROTATION_MODES,
    SHAPES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    _composite,
    _Object,
    _Trajectory,
    draw_clip,
    render_clip,
    render_plan,
    synthetic_prompt_bank,
    write_synthetic_dataset,
)
from claver_hf.prompts import check_prompt_bank, load_prompt_bank
from claver_hf.video_io import probe_video, read_frames

PAIRS = list(zip(SYNTHETIC_CLASSES[::2], SYNTHETIC_CLASSES[1::2], strict=True))
# A tiny dataset: 2 / 1 / 1 clips per class, 8 frames of 32x32.
COUNTS = {
    "num_train_per_class": 2,
    "num_val_per_class": 1,
    "num_test_per_class": 1,
    "num_heldout_per_class": 1,
}
CLIP = {"num_frames": 8, "size": 32, "fps": 8}


def assert_same_clip(a: np.ndarray, b: np.ndarray) -> None:
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    # Observed between processes: mean |difference| up to about 2 grey levels; another clip differs by tens.
    assert difference.mean() < 4, (difference.mean(), difference.max())


def write_tiny(root, **overrides):
    return write_synthetic_dataset(root, **{**COUNTS, **CLIP, "seed": 3, "progress": False, **overrides})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, write_tiny(root)


@pytest.fixture
def processor():
    return ClaverVideoProcessor(
        num_frames=8, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )


@pytest.mark.parametrize("class_name", SYNTHETIC_CLASSES)
def test_render_clip_shape_and_determinism(class_name):
    clip = render_clip(class_name, np.random.default_rng(0), num_frames=12, size=48)
    assert clip.shape == (12, 48, 48, 3) and clip.dtype == np.uint8
    assert not np.array_equal(clip[0], clip[-1])  # something changes
    np.testing.assert_array_equal(clip, render_clip(class_name, np.random.default_rng(0), 12, 48))
    assert not np.array_equal(clip, render_clip(class_name, np.random.default_rng(1), 12, 48))


@pytest.mark.parametrize("first, second", PAIRS)
def test_pairs_are_time_reversals(first, second):
    """Same random state: the second class's clip is the first's played backwards (identical frame sets),
    and both consume the generator alike."""
    for seed, heldout in zip(range(6), [False, True] * 3, strict=True):
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        forward, backward = (
            render_clip(first, rng_a, heldout=heldout),
            render_clip(second, rng_b, heldout=heldout),
        )
        np.testing.assert_array_equal(backward, forward[::-1])
        assert rng_a.bit_generator.state == rng_b.bit_generator.state


def _main_object_only(class_name: str, seed: int, heldout: bool = False) -> np.ndarray:
    """A clip with its distractors, camera shake and per-frame grain removed: the class's motion alone."""
    plan = draw_clip(class_name, np.random.default_rng(seed), heldout=heldout)
    plan.objects, plan.noise_std = plan.objects[-1:], 0.0
    plan.shake[:] = 0
    return render_plan(plan)


def _change_centroid(clip: np.ndarray) -> np.ndarray:
    """(N, 2) x, y centroids of the change between consecutive frames (the static background cancels), for the
    N frame pairs that differ (the motion may start after the first frame and end before the last)."""
    diff = np.abs(np.diff(clip.astype(float), axis=0)).sum(-1)
    diff = diff[diff.sum((1, 2)) > 0]
    ys, xs = np.mgrid[: clip.shape[1], : clip.shape[2]]
    mass = diff.sum((1, 2))
    return np.stack([(diff * xs).sum((1, 2)) / mass, (diff * ys).sum((1, 2)) / mass], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("heldout", [False, True])
def test_forward_classes_move_as_named(seed, heldout):
    # Moving: the change ends further left (up) than it starts; slow clips cross 30 % of the free width.
    left = _change_centroid(_main_object_only("moving left", seed, heldout))
    assert left[-1, 0] < left[0, 0] - 3
    up = _change_centroid(_main_object_only("moving up", seed, heldout))
    assert up[-1, 1] < up[0, 1] - 3
    # Rotating clockwise: the object's angle grows (clockwise on screen: next test) by 70 to 160 degrees in place,
    # 125 to 175 around a pivot (under half a turn: no step between any frames reads as the other sense), and
    # its orientation shows one way only: an outline without rotational symmetry, or a circle with a marking.
    plan = draw_clip("rotating clockwise", np.random.default_rng(seed), heldout=heldout)
    main = plan.objects[-1]
    turn = main.trajectory.angle[-1] - main.trajectory.angle[0]
    low, high = (0.4, 0.9) if plan.factors.motion == "in place" else (0.7, 0.97)
    assert np.all(np.diff(main.trajectory.angle) >= 0) and low * np.pi - 0.01 < turn < high * np.pi + 0.01
    assert turn < np.pi
    # Large enough, and on arcs tight enough, that the turn shows at 32 pixels rather than passing for a translation.
    radius = main.trajectory.radius[0]
    if plan.factors.motion == "in place":
        assert radius >= 0.28 * 64 and np.ptp(main.trajectory.centre, axis=0).max() == 0
    else:
        chord = np.linalg.norm(main.trajectory.centre[-1] - main.trajectory.centre[0])
        orbit = chord / (2 * np.sin(turn / 2))
        assert radius >= 0.18 * 64 and 0.7 * radius - 0.01 < orbit < 1.2 * radius + 0.01
    assert main.shape in ORIENTED_SHAPES or (main.shape == "circle" and main.texture in ORIENTING_TEXTURES)
    # Appearing: every frame differs more from the first (the background alone) than the one before.
    appearing = _main_object_only("appearing", seed, heldout).astype(float)
    distance = np.abs(appearing - appearing[0]).sum((1, 2, 3))
    assert distance[0] == 0 and distance[-1] > 0 and np.all(np.diff(distance) >= -0.01 * distance[-1])
    # Growing: the object covers more and more of the frame, from a start too big to pass for a fade-in.
    radius = draw_clip("growing", np.random.default_rng(seed), heldout=heldout).objects[-1].trajectory.radius
    assert np.all(np.diff(radius) >= 0) and radius[-1] > 1.7 * radius[0] and radius[0] >= 0.08 * 64


def test_increasing_angle_turns_clockwise_on_screen():
    """The arrow points right at angle 0 and down (y grows downwards) a quarter turn later: clockwise."""
    trajectory = _Trajectory(
        centre=np.full((2, 2), 32.0),
        radius=np.full(2, 20.0),
        angle=np.array([0, np.pi / 2]),
        opacity=np.ones(2),
    )
    frames = np.zeros((2, 64, 64, 3), dtype=np.float32)
    _composite(frames, _Object("arrow", "flat", np.ones((2, 3)), trajectory), np.zeros((2, 2)))
    frames = frames[..., 0]
    # The arrow head holds more of the shape than the shaft: the side it lies on is the brighter half.
    assert frames[0, :, 32:].sum() > 1.3 * frames[0, :, :32].sum()
    assert frames[1, 32:].sum() > 1.3 * frames[1, :32].sum()


def _silhouette(shape: str, angle: float) -> np.ndarray:
    trajectory = _Trajectory(np.full((1, 2), 32.0), np.full(1, 28.0), np.full(1, angle), np.ones(1))
    frames = np.zeros((1, 64, 64, 3), dtype=np.float32)
    _composite(frames, _Object(shape, "flat", np.ones((2, 3)), trajectory), np.zeros((1, 2)))
    return frames[0, ..., 0] > 0.5


@pytest.mark.parametrize("shape", ORIENTED_SHAPES)
def test_oriented_shapes_have_no_rotational_symmetry(shape):
    """Turned by any fraction of a turn up to a half, an oriented shape's outline overlaps its unturned self far
    less than a square turned by a quarter turn does (which looks unturned: why squares never rotate)."""

    def overlap(first, second):
        return (first & second).sum() / (first | second).sum()

    upright = _silhouette(shape, 0.0)
    square = overlap(_silhouette("square", 0.0), _silhouette("square", np.pi / 2))
    assert square > 0.95
    for turn in np.pi * np.array([1 / 3, 2 / 5, 1 / 2, 2 / 3, 4 / 5, 1.0]):
        assert overlap(upright, _silhouette(shape, turn)) < 0.8, turn


def test_rotating_objects_take_every_unambiguous_shape_of_their_split():
    """Rotation draws every oriented shape of its split, and in training the textured circle too; never a shape
    whose outline repeats within a turn."""
    for heldout, expected in ((False, {"triangle", "arrow", "L", "circle"}), (True, {"T", "flag"})):
        shapes = {
            draw_clip("rotating clockwise", np.random.default_rng(seed), 8, 32, heldout=heldout).factors.shape
            for seed in range(60)
        }
        assert shapes == expected


@pytest.mark.parametrize("texture", ["halves", "dot"])
def test_orienting_textures_mark_one_side(texture):
    """A circle is symmetric; its halves or dot texture darkens one side (the +u side of the object), so it
    turns visibly."""
    trajectory = _Trajectory(np.full((1, 2), 32.0), np.full(1, 20.0), np.zeros(1), np.ones(1))
    frames = np.zeros((1, 64, 64, 3), dtype=np.float32)
    colours = np.array([[1.0, 1.0, 1.0], [0.2, 0.2, 0.2]])
    _composite(frames, _Object("circle", texture, colours, trajectory), np.zeros((1, 2)))
    assert frames[0, :, 32:].sum() < 0.9 * frames[0, :, :32].sum()


def test_heldout_factors_never_appear_in_the_other_splits():
    """Held-out shapes and background kinds are drawn only for the held-out split, for the main object and the
    distractors alike; the held-out split draws nothing else."""
    seen: dict[bool, set[str]] = {False: set(), True: set()}
    for heldout in (False, True):
        for seed in range(60):
            for name in SYNTHETIC_CLASSES:
                factors = draw_clip(name, np.random.default_rng(seed), 8, 32, heldout=heldout).factors
                seen[heldout] |= {factors.shape, factors.background, *factors.distractors}
    assert seen[False] == {*SHAPES, *BACKGROUNDS}
    assert seen[True] == {*HELDOUT_SHAPES, *HELDOUT_BACKGROUNDS}


def test_draw_clip_is_deterministic_per_seed():
    for heldout in (False, True):
        first = render_clip("rotating clockwise", np.random.default_rng(7), 8, 32, heldout=heldout)
        np.testing.assert_array_equal(
            first, render_clip("rotating clockwise", np.random.default_rng(7), 8, 32, heldout=heldout)
        )


def test_render_clip_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown synthetic class"):
        render_clip("jumping", np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_frames"):
        render_clip("growing", np.random.default_rng(0), num_frames=1)
    with pytest.raises(ValueError, match="even"):
        write_synthetic_dataset("unused", size=33)


def test_dataset_layout(dataset):
    root, report = dataset
    assert report["written"] == 50 and report["skipped"] == 0
    assert report["counts"] == {"train": 20, "validation": 10, "test": 10, "heldout": 10}
    for split, per_class in zip(SYNTHETIC_SPLITS, (2, 1, 1, 1), strict=True):
        for name in SYNTHETIC_CLASSES:
            assert len(list((root / split / name).glob("*.mp4"))) == per_class
        lines = [line.rsplit(" ", 1) for line in (root / f"{split}.txt").read_text().splitlines()]
        assert len(lines) == 10 * per_class
        for relative, label in lines:
            assert (root / relative).is_file() and relative.split("/")[1] == SYNTHETIC_CLASSES[int(label)]
    assert read_class_names(root / "classes.csv") == dict(enumerate(SYNTHETIC_CLASSES))
    with open(root / "classes.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["id", "name"]
    bank = load_prompt_bank(root / "prompt_bank.json")
    assert bank.to_dict() == synthetic_prompt_bank().to_dict() and bank.class_names == list(SYNTHETIC_CLASSES)
    assert not list(root.rglob(".*"))  # no temporary files left behind
    # clips.csv: one row per clip, the held-out split alone with held-out shapes and backgrounds.
    with open(report["clips_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 50
    for row in rows:
        heldout = row["path"].startswith("heldout/")
        shapes, backgrounds = (HELDOUT_SHAPES, HELDOUT_BACKGROUNDS) if heldout else (SHAPES, BACKGROUNDS)
        assert row["shape"] in shapes and row["background"] in backgrounds
        assert all(shape in shapes for shape in row["distractors"].split())


def test_written_clips_decode_to_their_seeded_render(dataset):
    """Each clip is `render_clip` with the generator seeded ``(seed, split, class, index)``."""
    root, _ = dataset
    path = root / "validation" / "rotating anticlockwise" / "0000.mp4"
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (8, 32, 32, 8.0)
    frames = read_frames(path, range(8), info=info)
    expected = render_clip("rotating anticlockwise", np.random.default_rng((3, 1, 5, 0)), 8, 32)
    assert np.abs(frames.astype(float) - expected).mean() < 6


def test_dataset_classes_load_it(dataset, processor):
    root, report = dataset
    annotated = AnnotationListDataset(report["lists"]["train"], root, report["classes_csv"], processor)
    assert len(annotated) == 20 and annotated.id2label == dict(enumerate(SYNTHETIC_CLASSES))
    item = annotated[3]
    assert item["pixel_values"].shape == (8, 3, 32, 32) and item["labels"] == 1
    # Class folders sort alphabetically; the names are the same, so the prompt bank serves both.
    folder = VideoFolderDataset(root / "test", processor)
    assert folder.id2label == dict(enumerate(sorted(SYNTHETIC_CLASSES))) and len(folder) == 10
    assert folder[0]["pixel_values"].shape == (8, 3, 32, 32)


def test_deterministic_across_workers_and_resumable(dataset, tmp_path):
    root, _ = dataset
    other = tmp_path / "copy"
    report = write_tiny(other, num_workers=2)
    assert report["written"] == 50
    files = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    # The same clips, whatever the worker count. The rendered frames are exact (tested above); after H.264 the
    # pixels were seen to differ by a few grey levels between processes now and then, so decoded clips are
    # compared with that tolerance (a wrong seed or class differs by far more).
    for relative in files:
        if relative.suffix == ".mp4":
            assert_same_clip(read_frames(other / relative, range(8)), read_frames(root / relative, range(8)))
        else:
            assert (other / relative).read_text() == (root / relative).read_text(), relative

    stamps = {p: p.stat().st_mtime_ns for p in other.rglob("*.mp4")}
    again = write_tiny(other)
    assert (again["written"], again["skipped"]) == (0, 50)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*.mp4")} == stamps

    # A lost clip is redone identically; more clips per class keeps the existing ones.
    lost = other / "train" / "growing" / "0001.mp4"
    lost.unlink()
    more = write_tiny(other, num_train_per_class=3)
    assert (more["written"], more["skipped"]) == (11, 49)
    assert_same_clip(
        read_frames(lost, range(8)), read_frames(root / "train" / "growing" / "0001.mp4", range(8))
    )
    assert len((other / "train.txt").read_text().splitlines()) == 30

    with pytest.raises(ValueError, match="other folder"):
        write_tiny(other, seed=4)


def test_prompt_bank_passes_the_check(clip_tokenizer):
    bank = synthetic_prompt_bank()
    assert bank.dataset == "synthetic"
    report = check_prompt_bank(bank, labels=SYNTHETIC_CLASSES, tokenizer=clip_tokenizer, min_per_form=3)
    assert report.ok, report.format()


def test_prompt_bank_describes_what_the_generator_draws():
    """The bank is written from the generator's class definitions: rotations name both modes the generator draws,
    and no sentence names a held-out shape or background kind (training texts must not describe the held-out
    split's look)."""
    bank = synthetic_prompt_bank()
    held_out_words = [*HELDOUT_SHAPES, *(kind.split()[0] for kind in HELDOUT_BACKGROUNDS)]
    for name in SYNTHETIC_CLASSES:
        text = " ".join(bank.views(name)).lower()
        named = [
            word for word in held_out_words if len(word) > 1 and re.search(rf"\b{word.lower()}s?\b", text)
        ]
        assert not named, (name, named)
        if name.startswith("rotating"):
            assert "in place" in ROTATION_MODES and "around a pivot" in ROTATION_MODES
            assert re.search(r"\bpivot", text) and re.search(r"in place|own (centre|center|middle)", text), (
                name
            )
