import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoVideoProcessor
from transformers.image_utils import PILImageResampling

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


# ---------------------------------------------------------------- per-call arguments

SMALL = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "num_frames": 8}


@pytest.mark.parametrize(
    "name,value",
    [
        ("size", {"shortest_edge": 40}),
        ("size", 40),
        ("size", {"height": 36, "width": 48}),
        ("crop_size", {"height": 16, "width": 24}),
        ("do_resize", False),
        ("resample", PILImageResampling.NEAREST),
        ("do_center_crop", False),
        ("do_rescale", False),
        ("rescale_factor", 1 / 127.5),
        ("do_normalize", False),
        ("image_mean", [0.5, 0.5, 0.5]),
        ("image_std", [0.1, 0.2, 0.3]),
        ("num_frames", 4),
        ("num_clips", 2),
        ("num_crops", 3),
    ],
)
def test_call_arguments_override_attributes(name, value):
    """An argument given to the call does what the same attribute does, for this call only."""
    processor = ClaverVideoProcessor(**SMALL)
    video = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    default = processor(video)["pixel_values"]
    expected = ClaverVideoProcessor(**{**SMALL, name: value})(video)
    out = processor(video, **{name: value})
    assert out.keys() == expected.keys()
    torch.testing.assert_close(out["pixel_values"], expected["pixel_values"])
    assert out["pixel_values"].shape != default.shape or not torch.allclose(out["pixel_values"], default)
    torch.testing.assert_close(processor(video)["pixel_values"], default)  # the processor is unchanged


def test_training_arguments_per_call():
    processor = ClaverVideoProcessor(**SMALL, train_short_side=40)
    out = processor(numbered_video(16), training=True, crop_size={"height": 24, "width": 24}, num_clips=4)
    assert out["pixel_values"].shape == (1, 8, 3, 24, 24) and "video_index" not in out  # one training view
    with pytest.raises(ValueError, match="Training crops are square"):
        processor(numbered_video(16), training=True, crop_size={"height": 24, "width": 32})


def test_do_sample_frames_false_uses_every_frame_given(processor):
    out = processor(numbered_video(6), do_sample_frames=False, do_resize=False, do_center_crop=False)
    assert frame_values(out["pixel_values"][0]) == [0, 1, 2, 3, 4, 5]
    # The frames of several clips, given together, are split into `num_clips` clips of equal length.
    out = processor(numbered_video(8), do_sample_frames=False, num_clips=2)
    assert [frame_values(clip) for clip in out["pixel_values"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="cannot be split into `num_clips=3`"):
        processor(numbered_video(8), do_sample_frames=False, num_clips=3)


def test_do_sample_frames_false_decodes_a_whole_file(tmp_path, processor):
    """A file without frame sampling is decoded whole (it raised AttributeError before)."""
    from claver_hf.video_io import read_frames

    from .videos import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=12, size=(64, 48))
    out = processor(path, do_sample_frames=False, return_metadata=True)
    assert out["pixel_values"].shape == (1, 12, 3, 32, 32)
    assert out["video_metadata"][0].frames_indices == list(range(12))
    frames = read_frames(path, list(range(12)))
    torch.testing.assert_close(out["pixel_values"], processor(frames, do_sample_frames=False)["pixel_values"])


def test_metadata_of_sampled_frames(tmp_path, processor):
    from .videos import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=80, size=(64, 48), fps=20)
    out = processor(path, num_clips=2, return_metadata=True)
    (metadata,) = out["video_metadata"]
    assert (metadata.total_num_frames, metadata.fps, metadata.width, metadata.height) == (80, 20.0, 64, 48)
    assert metadata.frames_indices == [2, 12, 22, 32, 42, 52, 62, 72, 7, 17, 27, 37, 47, 57, 67, 77]
    assert "video_metadata" not in processor(path)


def test_fps_sampling(tmp_path, processor):
    from .videos import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=80, size=(64, 48), fps=20)  # 4 seconds
    assert processor(path, fps=3)["pixel_values"].shape[1] == 12
    # Decoded frames take their frame rate from `video_metadata`.
    video = numbered_video(40)
    out = processor(video, fps=2, video_metadata={"total_num_frames": 40, "fps": 10.0}, return_metadata=True)
    indices = [2, 7, 12, 17, 22, 27, 32, 37]
    assert frame_values(out["pixel_values"][0]) == out["video_metadata"][0].frames_indices == indices
    with pytest.raises(ValueError, match="needs the video's frame rate"):
        processor(video, fps=2)
    with pytest.raises(ValueError, match="exclusive"):
        processor(video, fps=2, num_frames=4)
    # A processor built with a frame rate samples by rate, and keeps doing so once saved and loaded.
    by_rate = ClaverVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, fps=1.5)
    assert by_rate(path)["pixel_values"].shape[1] == 6
    assert ClaverVideoProcessor.from_dict(by_rate.to_dict())(path)["pixel_values"].shape[1] == 6
    assert by_rate(path, num_frames=4)["pixel_values"].shape[1] == 4


def test_video_metadata(tmp_path, processor):
    video = numbered_video(16)
    metadata = {"total_num_frames": 16, "fps": 8.0}
    out = processor([video, video], video_metadata=[metadata, metadata], return_metadata=True)
    assert [m.fps for m in out["video_metadata"]] == [8.0, 8.0]
    with pytest.raises(ValueError, match="total_num_frames=10 for a video of 16 frames"):
        processor(video, video_metadata={"total_num_frames": 10, "fps": 8.0})
    with pytest.raises(ValueError, match="2 videos but 1 `video_metadata` entries"):
        processor([video, video], video_metadata=[metadata])
    from .videos import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=16)
    with pytest.raises(ValueError, match="a video path was given"):
        processor(path, video_metadata=metadata)


def test_return_tensors(processor):
    video = numbered_video(16)
    out = processor(video, num_clips=2, return_tensors="np")
    assert isinstance(out["pixel_values"], np.ndarray) and isinstance(out["video_index"], np.ndarray)
    assert out["pixel_values"].shape == (2, 8, 3, 32, 32)
    assert isinstance(processor(video, return_tensors="pt")["pixel_values"], torch.Tensor)
    assert isinstance(processor(video)["pixel_values"], torch.Tensor)
    # Views of different shapes: a list by default, an error when tensors are asked for.
    ragged = [numbered_video(16, 40, 40), numbered_video(16, 48, 64)]
    views = processor(ragged, do_resize=False, do_center_crop=False)["pixel_values"]
    assert [tuple(v.shape) for v in views] == [(8, 3, 40, 40), (8, 3, 48, 64)]
    with pytest.raises(ValueError, match="differ in shape"):
        processor(ragged, do_resize=False, do_center_crop=False, return_tensors="pt")


def test_device(processor):
    """Frames move to `device` before resizing, and the outputs stay there."""
    out = processor(numbered_video(16), device="meta", num_crops=3)
    assert out["pixel_values"].device.type == "meta" and out["pixel_values"].shape == (3, 8, 3, 32, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda(processor):
    video = numbered_video(16)
    out = processor(video, device="cuda")["pixel_values"]
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), processor(video)["pixel_values"], atol=1e-4, rtol=0)


def test_input_data_format_and_rgb_conversion(processor):
    # (T, 3, W, 3): channels-first unless told otherwise.
    video = np.random.default_rng(0).integers(0, 255, (8, 3, 40, 3), dtype=np.uint8)
    channels_last = processor(video, input_data_format="channels_last", do_resize=False, do_center_crop=False)
    assert channels_last["pixel_values"].shape == (1, 8, 3, 3, 40)
    assert processor(video, do_resize=False, do_center_crop=False)["pixel_values"].shape == (1, 8, 3, 40, 3)
    gray = numbered_video(8)[..., :1]
    assert processor(gray)["pixel_values"].shape == (1, 8, 3, 32, 32)
    single = processor(gray, do_convert_rgb=False, image_mean=[0.5], image_std=[0.5])["pixel_values"]
    assert single.shape == (1, 8, 1, 32, 32)


def test_decoding_backend_per_call(tmp_path, processor):
    from .videos import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=16)
    with pytest.raises(ValueError, match="Unknown decoding backend 'nope'"):
        processor(path, decoding_backend="nope")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"num_clips": 0}, ValueError, "`num_clips` must be an integer >= 1"),
        ({"num_crops": 2}, ValueError, "`num_crops` must be 1"),
        ({"num_crops": 3, "do_center_crop": False}, ValueError, "needs `do_center_crop=True`"),
        ({"data_format": "channels_last"}, ValueError, "channels-first"),
        ({"do_pad": True}, ValueError, "`do_pad` is not supported"),
        ({"training": "yes"}, Exception, "training"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_arguments(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(numbered_video(8), **kwargs)


def test_processor_passes_arguments_on(clip_tokenizer):
    processor = ClaverProcessor(video_processor=ClaverVideoProcessor(**SMALL), tokenizer=clip_tokenizer)
    texts = ["waving", "a video of a person playing guitar"]
    out = processor(text=texts, videos=numbered_video(16), num_frames=4, padding="max_length", max_length=12)
    assert out["input_ids"].shape == (2, 12) and out["pixel_values"].shape == (1, 4, 3, 32, 32)
    out = processor(text=texts, text_kwargs={"max_length": 5}, videos_kwargs={"num_clips": 2})
    assert out["input_ids"].shape == (2, 5) and out["input_ids"][1, -1].item() == 49407
    out = processor(text=texts, videos=numbered_video(16), return_tensors="np")
    assert isinstance(out["input_ids"], np.ndarray) and isinstance(out["pixel_values"], np.ndarray)
    assert processor(text=texts, return_tensors=None)["input_ids"][0] == [49406, 26545] + [49407] * 7
    long_text = " ".join(["jump"] * 100)
    assert len(processor(text=[long_text], truncation=False, padding=False)["input_ids"][0]) == 102


def test_truncation_warning_only_for_cut_texts(clip_tokenizer, caplog):
    processor = ClaverProcessor(video_processor=ClaverVideoProcessor(), tokenizer=clip_tokenizer)
    exactly_77 = " ".join(["jump"] * 75)
    with caplog.at_level("WARNING"):
        assert processor(text=[exactly_77, "run"])["input_ids"].shape == (2, 77)
        assert processor(text=[exactly_77 + " jump"], max_length=80)["input_ids"].shape == (1, 78)
    assert not any("truncated" in r.message for r in caplog.records)
    with caplog.at_level("WARNING"):
        processor(text=["jump jump jump"], max_length=4)
    assert sum("longer than 4 tokens" in r.message for r in caplog.records) == 1


def test_tokenize_returns_lists(clip_tokenizer):
    processor = ClaverProcessor(video_processor=ClaverVideoProcessor(), tokenizer=clip_tokenizer)
    assert processor.tokenize(["waving", "a person waving"]) == {
        "input_ids": [[49406, 26545, 49407, 49407, 49407], [49406, 320, 2533, 26545, 49407]],
        "attention_mask": [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
    }
