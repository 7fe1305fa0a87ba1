import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoVideoProcessor

from claver_hf import ClaverProcessor, ClaverVideoProcessor
from claver_hf.processing.transforms import MultiScaleCrop

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def numbered_video(frames: int = 16, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 whose frame t has value t everywhere, so sampled indices can be read back."""
    return np.broadcast_to(
        np.arange(frames, dtype=np.uint8)[:, None, None, None], (frames, height, width, 3)
    ).copy()


def frame_values(pixel_values: torch.Tensor) -> list[int]:
    """Undo CLIP normalisation of `(T, 3, H, W)` and read each frame's value."""
    raw = (pixel_values * STD + MEAN) * 255
    return raw.mean(dim=(1, 2, 3)).round().int().tolist()


@pytest.fixture
def processor():
    return ClaverVideoProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=8
    )


def test_eval_sampling_takes_segment_centres(processor):
    out = processor(numbered_video(16), return_tensors="pt")
    assert out["pixel_values"].shape == (1, 8, 3, 32, 32)
    assert frame_values(out["pixel_values"][0]) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert "video_index" not in out


def test_accepted_input_forms_agree(processor):
    video = numbered_video(8)
    expected = processor(video)["pixel_values"]
    forms = [
        torch.from_numpy(video),
        video.transpose(0, 3, 1, 2),
        video.astype(np.float32) / 255,
        [Image.fromarray(frame) for frame in video],
        [video],
        video[None],
    ]
    for form in forms:
        torch.testing.assert_close(processor(form)["pixel_values"], expected, atol=1e-5, rtol=0)
    assert processor([video, video])["pixel_values"].shape == (2, 8, 3, 32, 32)
    gray = processor(video[..., :1])["pixel_values"]
    assert gray.shape == (1, 8, 3, 32, 32)


def test_short_videos_repeat_frames(processor):
    out = processor(numbered_video(3))["pixel_values"][0]
    values = frame_values(out)
    assert len(values) == 8 and set(values) == {0, 1, 2} and values == sorted(values)


def test_multi_view_layout(processor):
    out = processor([numbered_video(32), numbered_video(32, 64, 48)], num_clips=4, num_crops=3)
    assert out["pixel_values"].shape == (2 * 12, 8, 3, 32, 32)
    assert out["video_index"].tolist() == [0] * 12 + [1] * 12
    first_frames = [frame_values(view)[0] for view in out["pixel_values"][:12:3]]
    assert first_frames == sorted(first_frames) and len(set(first_frames)) == 4  # 4 clips, shifted in time


def test_three_crops_cover_the_long_side():
    processor = ClaverVideoProcessor(
        size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}, num_frames=1
    )
    video = np.zeros((1, 8, 24, 3), dtype=np.uint8)
    video[:, :, :8], video[:, :, 8:16], video[:, :, 16:] = 10, 120, 250
    crops = processor(video, num_crops=3)["pixel_values"]
    assert [v[0] for v in (frame_values(c) for c in crops)] == [10, 120, 250]


def test_training_augmentation_is_identical_across_frames():
    processor = ClaverVideoProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=4, train_short_side=40
    )
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    video = np.stack([frame] * 12)
    torch.manual_seed(0)
    outs = [processor(video, training=True)["pixel_values"][0] for _ in range(4)]
    for out in outs:
        assert out.shape == (4, 3, 32, 32)
        for t in range(1, 4):
            torch.testing.assert_close(out[t], out[0])  # same crop / flip / jitter on every frame
    assert not all(torch.allclose(outs[0], o) for o in outs[1:])  # but random across calls


def test_training_sampling_is_random_within_segments():
    processor = ClaverVideoProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=4
    )
    processor.color_jitter_prob = processor.grayscale_prob = 0.0
    seen = set()
    for seed in range(6):
        out = processor(numbered_video(40), training=True, generator=torch.Generator().manual_seed(seed))
        values = frame_values(out["pixel_values"][0])
        assert all(10 * s <= v < 10 * (s + 1) for s, v in enumerate(values))
        seen.add(tuple(values))
    assert len(seen) > 1


def test_multiscale_crop_sizes():
    crop = MultiScaleCrop(16)
    torch.manual_seed(0)
    for _ in range(20):
        params = crop.make_params([torch.zeros(3, 100, 200)])
        assert params["height"] in (100, 87, 75, 66) and params["width"] in (100, 87, 75, 66)
        assert 0 <= params["top"] <= 100 - params["height"] and 0 <= params["left"] <= 200 - params["width"]
    assert crop(torch.zeros(2, 3, 100, 200)).shape == (2, 3, 16, 16)


@pytest.mark.parametrize(
    "video,message",
    [
        (np.zeros((4, 8, 8), dtype=np.uint8), "got shape"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "non-empty"),
        (np.zeros((4, 8, 8, 5), dtype=np.uint8), "channel dimension"),
        (np.full((4, 8, 8, 3), 2.0, dtype=np.float32), r"Float videos must hold values in \[0, 1\]"),
        ([], "empty"),
        (42, "Expected a video path"),
    ],
)
def test_bad_arrays(processor, video, message):
    with pytest.raises(ValueError, match=message):
        processor(video)


def test_save_load_and_auto_classes(tmp_path, clip_tokenizer):
    video_processor = ClaverVideoProcessor(num_frames=16, num_clips=4, num_crops=3)
    processor = ClaverProcessor(video_processor=video_processor, tokenizer=clip_tokenizer)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ClaverProcessor) and isinstance(loaded.video_processor, ClaverVideoProcessor)
    assert (loaded.video_processor.num_frames, loaded.video_processor.num_clips) == (16, 4)
    assert isinstance(AutoVideoProcessor.from_pretrained(tmp_path), ClaverVideoProcessor)
    text = "a video of a person playing guitar"
    assert loaded(text=text)["input_ids"].tolist() == [[49406, 320, 1455, 539, 320, 2533, 1629, 5084, 49407]]


def test_processor_text_and_video(clip_tokenizer, caplog):
    processor = ClaverProcessor(
        video_processor=ClaverVideoProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=clip_tokenizer,
    )
    out = processor(text=["waving", "a video of a person playing guitar"], videos=numbered_video(8))
    assert out["input_ids"].shape == (2, 9) and out["attention_mask"].sum(1).tolist() == [3, 9]
    assert out["pixel_values"].shape == (1, 8, 3, 32, 32)
    long_text = " ".join(["jump"] * 100)
    with caplog.at_level("WARNING"):
        ids = processor(text=[long_text, "run"])["input_ids"]
        processor(text=[long_text])
    assert ids.shape == (2, 77) and ids[0, -1].item() == 49407
    assert sum("truncated" in r.message for r in caplog.records) == 1  # warned once


# ---------------------------------------------------------------- files


def test_video_files_are_decoded_at_the_sampled_frames(tmp_path, processor):
    from .videos import pattern_index, write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=80, size=(64, 48))
    out = processor(str(path))
    assert out["pixel_values"].shape == (1, 8, 3, 32, 32)
    unnormalised = ClaverVideoProcessor(
        do_resize=False, do_center_crop=False, do_normalize=False, do_rescale=False
    )
    frames = unnormalised(path, num_frames=8)["pixel_values"][0].permute(0, 2, 3, 1).numpy().astype(np.uint8)
    assert [pattern_index(frame) for frame in frames] == [5, 15, 25, 35, 45, 55, 65, 75]
    # A path and the same frames as an array give the same pixel values.
    decoded = processor(frames, do_sample_frames=False)["pixel_values"]
    torch.testing.assert_close(out["pixel_values"], decoded)
    assert processor([path, str(path)])["pixel_values"].shape == (2, 8, 3, 32, 32)


def test_unreadable_file_raises_one_clear_error(tmp_path, processor):
    from claver_hf import VideoDecodingError

    from .videos import write_text_as_mp4

    bad = write_text_as_mp4(tmp_path / "notes.mp4")
    with pytest.raises(VideoDecodingError, match="notes.mp4"):
        processor(str(bad))
    with pytest.raises(VideoDecodingError, match="missing.mp4"):
        processor(str(tmp_path / "missing.mp4"))


def test_video_classification_pipeline(tmp_path):
    """transformers' own pipeline runs a saved classifier + processor from a local folder, video only."""
    from transformers import pipeline

    from .test_modeling_claver import LABELS, classifier
    from .videos import write_video

    model = classifier()
    video_processor = ClaverVideoProcessor(
        num_frames=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    model.save_pretrained(tmp_path / "model")
    video_processor.save_pretrained(tmp_path / "model")
    classify = pipeline("video-classification", model=str(tmp_path / "model"))
    path = write_video(tmp_path / "clip.mp4", num_frames=40)
    predictions = classify(str(path), top_k=3)
    assert sorted(p["label"] for p in predictions) == sorted(LABELS.values())
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
