import logging

import pytest
import torch
from torch.utils.data import DataLoader

from claver_hf import ClaverVideoProcessor, VideoDecodingError
from claver_hf.data.datasets import (
    BUNDLED_LABELS,
    AnnotationListDataset,
    HFVideoDataset,
    VideoFolderDataset,
    collate_video_batch,
    read_class_names,
)

from .videos import pattern_index, write_text_as_mp4, write_video

CLASSES = ["jumping", "running", "waving"]


@pytest.fixture
def processor():
    return ClaverVideoProcessor(
        num_frames=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )


@pytest.fixture
def folder(tmp_path):
    """root/<class>/<video>.mp4, two videos per class; class c's videos have 20 * (c + 1) frames."""
    root = tmp_path / "videos"
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(2):
            write_video(root / name / f"{name}_{k}.mp4", num_frames=20 * (label + 1), size=(48, 32))
    (root / "waving" / "notes.txt").write_text("not a video")
    return root


def test_folder_dataset(folder, processor):
    dataset = VideoFolderDataset(folder, processor)
    assert len(dataset) == 6 and dataset.id2label == dict(enumerate(CLASSES))
    item = dataset[2]
    assert item["pixel_values"].shape == (4, 3, 32, 32) and item["labels"] == 1
    assert dataset.label2id["waving"] == 2


def test_items_hold_the_sampled_frames(folder):
    raw = ClaverVideoProcessor(
        num_frames=4, do_resize=False, do_center_crop=False, do_rescale=False, do_normalize=False
    )
    dataset = VideoFolderDataset(folder, raw)
    frames = dataset[0]["pixel_values"].permute(0, 2, 3, 1).to(torch.uint8).numpy()  # 20-frame video
    assert [pattern_index(f) for f in frames] == [2, 7, 12, 17]


def test_dataloader_with_workers(folder, processor):
    dataset = VideoFolderDataset(folder, processor, training=True)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_video_batch)
    batches = list(loader)
    assert [b["pixel_values"].shape for b in batches] == [(3, 4, 3, 32, 32)] * 2
    assert torch.cat([b["labels"] for b in batches]).tolist() == [0, 0, 1, 1, 2, 2]


def test_training_items_are_seeded_by_seed_epoch_and_index(folder, processor):
    """A training item depends on (seed, epoch, index) only: not on worker processes, loading order or the
    caller's random state, which loading leaves untouched."""
    dataset = VideoFolderDataset(folder, processor, training=True, seed=5)
    state = torch.random.get_rng_state()
    first = [dataset[i]["pixel_values"] for i in range(len(dataset))]
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)
    assert torch.equal(dataset[3]["pixel_values"], first[3])
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_video_batch)
    assert torch.equal(torch.cat([b["pixel_values"] for b in loader]), torch.stack(first))

    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["pixel_values"], first[3])  # another epoch, other frames and crops
    dataset.set_epoch(0)
    reseeded = VideoFolderDataset(folder, processor, training=True, seed=6)
    assert not torch.equal(reseeded[3]["pixel_values"], first[3])
    evaluation = VideoFolderDataset(folder, processor)
    assert torch.equal(evaluation[3]["pixel_values"], evaluation[3]["pixel_values"])


def test_cached_items_are_the_items_of_the_files(folder, processor):
    """Cached frames give the very items the files give (seeded training frames and augmentation at every epoch,
    evaluation views, frame-rate sampling), in worker processes too, without reading the files again."""
    settings = [
        {"training": True, "seed": 4},
        {"processor_kwargs": {"num_clips": 2, "num_crops": 3}},
        {"processor_kwargs": {"fps": 10}},  # needs the frame rate, which the cache keeps
    ]
    for kwargs in settings:
        files = VideoFolderDataset(folder, processor, **kwargs)
        cached = VideoFolderDataset(folder, processor, cache_videos=True, **kwargs)
        assert files.cache is None and len(cached.cache) == len(files) == 6
        for epoch in (0, 1):
            files.set_epoch(epoch)
            cached.set_epoch(epoch)
            for index in range(len(files)):
                expected, item = files[index], cached[index]
                assert torch.equal(item["pixel_values"], expected["pixel_values"]), (kwargs, epoch, index)
                assert item["labels"] == expected["labels"]
    assert cached[0]["pixel_values"].shape == (8, 3, 32, 32)  # 20 frames at 25 fps: 0.8 s at 10 fps

    training = VideoFolderDataset(folder, processor, training=True, cache_videos=True)
    expected = torch.stack([training[i]["pixel_values"] for i in range(len(training))])
    for video in folder.rglob("*.mp4"):
        video.unlink()
    loader = DataLoader(training, batch_size=2, num_workers=2, collate_fn=collate_video_batch)
    assert torch.equal(torch.cat([batch["pixel_values"] for batch in loader]), expected)


def test_videos_that_fail_to_decode_into_the_cache_raise_or_are_skipped(
    folder, processor, monkeypatch, caplog
):
    broken = str(folder / "running" / "running_0.mp4")
    decode = processor.fetch_videos

    def fetch_videos(path, *args, **kwargs):
        if str(path) == broken:  # probes fine, fails while decoding
            raise VideoDecodingError(path, "invalid data at frame 12")
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(processor, "fetch_videos", fetch_videos)
    with pytest.raises(VideoDecodingError, match="running_0.mp4: invalid data at frame 12"):
        VideoFolderDataset(folder, processor, cache_videos=True)
    with caplog.at_level(logging.WARNING):
        lenient = VideoFolderDataset(folder, processor, cache_videos=True, on_error="skip")
    assert lenient.skipped == {broken: "invalid data at frame 12"}
    assert len(lenient) == len(lenient.cache) == 5
    assert [lenient[i]["labels"] for i in range(5)] == [0, 0, 1, 2, 2]
    assert "Skipping 1 undecodable video(s) of 6" in caplog.text and "running_0.mp4" in caplog.text


def test_samples_per_class_are_drawn_with_the_seed(folder, processor):
    few = VideoFolderDataset(folder, processor, samples_per_class=1, seed=3)
    assert [label for _, label in few.samples] == [0, 1, 2]
    assert few.samples == VideoFolderDataset(folder, processor, samples_per_class=1, seed=3).samples
    drawn = {
        tuple(VideoFolderDataset(folder, processor, samples_per_class=1, seed=s).samples) for s in range(8)
    }
    assert len(drawn) > 1  # other seeds draw other videos
    assert len(VideoFolderDataset(folder, processor, samples_per_class=2)) == 6
    with pytest.raises(ValueError, match="fewer than 3 training examples"):
        VideoFolderDataset(folder, processor, samples_per_class=3)


def test_multi_view_items(folder, processor):
    dataset = VideoFolderDataset(folder, processor, processor_kwargs={"num_clips": 2, "num_crops": 3})
    assert dataset[0]["pixel_values"].shape == (6, 4, 3, 32, 32)


def test_annotation_list_dataset(tmp_path, folder, processor):
    labels = tmp_path / "classes.csv"
    labels.write_text("id,name\n" + "".join(f"{i},{name}\n" for i, name in enumerate(CLASSES)))
    annotations = tmp_path / "train.txt"
    annotations.write_text("jumping/jumping_0.mp4 0\nwaving/waving_1.mp4 waving\n\nrunning/running_0.mp4,1\n")
    dataset = AnnotationListDataset(annotations, folder, labels, processor)
    assert [label for _, label in dataset.samples] == [0, 2, 1]
    assert dataset[1]["pixel_values"].shape == (4, 3, 32, 32)
    csv_annotations = tmp_path / "val.csv"
    csv_annotations.write_text("path,label\nrunning/running_1.mp4,1\n")
    assert len(AnnotationListDataset(csv_annotations, folder, labels, processor)) == 1

    bad = tmp_path / "bad.txt"
    bad.write_text("jumping/jumping_0.mp4 swimming\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: unknown class 'swimming'"):
        AnnotationListDataset(bad, folder, labels, processor)
    with pytest.raises(ValueError, match="not a class id"):
        bad.write_text("jumping/jumping_0.mp4 7\n")
        AnnotationListDataset(bad, folder, labels, processor)


def test_bundled_label_lists():
    sizes = {"kinetics400": 400, "kinetics600": 600, "hmdb51": 51, "ucf101": 101, "ssv2": 174}
    assert sorted(sizes) == sorted(BUNDLED_LABELS)
    for name, size in sizes.items():
        assert len(read_class_names(name)) == size, name
    assert read_class_names("ucf101")[0] == "ApplyEyeMakeup"
    with pytest.raises(ValueError, match="not a bundled list .*hmdb51.* nor a file"):
        read_class_names("ucf-101")


def test_hf_dataset_with_paths_and_bytes(folder, processor):
    datasets = pytest.importorskip("datasets")
    paths = sorted(str(p) for p in folder.rglob("*.mp4"))
    labels = [CLASSES.index(p.split("/")[-2]) for p in paths]
    features = datasets.Features({"video": datasets.Video(), "label": datasets.ClassLabel(names=CLASSES)})
    by_path = datasets.Dataset.from_dict({"video": paths, "label": labels}, features=features)
    dataset = HFVideoDataset(by_path, processor)
    assert dataset.id2label == dict(enumerate(CLASSES)) and len(dataset) == 6
    with_bytes = datasets.Dataset.from_dict(
        {"video": [{"path": None, "bytes": open(p, "rb").read()} for p in paths], "label": labels},
        features=datasets.Features(
            {"video": datasets.Video(decode=False), "label": datasets.ClassLabel(names=CLASSES)}
        ),
    )
    embedded = HFVideoDataset(with_bytes, processor)
    torch.testing.assert_close(embedded[3]["pixel_values"], dataset[3]["pixel_values"])
    assert embedded[3]["labels"] == dataset[3]["labels"]
    with pytest.raises(ValueError, match="no column 'clip'"):
        HFVideoDataset(by_path, processor, video_column="clip")


def test_unreadable_videos_raise_or_are_skipped(folder, processor, caplog):
    write_text_as_mp4(folder / "running" / "broken.mp4")
    strict = VideoFolderDataset(folder, processor)
    broken = [i for i, (path, _) in enumerate(strict.samples) if path.endswith("broken.mp4")][0]
    with pytest.raises(VideoDecodingError, match="broken.mp4"):
        strict[broken]

    with caplog.at_level(logging.WARNING):
        lenient = VideoFolderDataset(folder, processor, on_error="skip")
    assert len(lenient) == 6 and list(lenient.skipped) == [str(folder / "running" / "broken.mp4")]
    assert "Skipping 1 unreadable video" in caplog.text and "broken.mp4" in caplog.text


def test_decode_failures_after_probing_are_dropped_from_the_batch(folder, processor, caplog):
    dataset = VideoFolderDataset(folder, processor, on_error="skip")
    write_text_as_mp4(folder / "running" / "running_0.mp4")  # breaks after the dataset probed it
    with caplog.at_level(logging.WARNING):
        batch = collate_video_batch([dataset[i] for i in range(4)])
    assert batch["labels"].tolist() == [0, 0, 1]  # nothing stands in for the broken clip
    assert "running_0.mp4" in caplog.text
    with pytest.raises(VideoDecodingError, match="all 1 videos of this batch"):
        collate_video_batch([None])


def test_bad_arguments(tmp_path, folder, processor):
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nope", processor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        VideoFolderDataset(tmp_path / "empty", processor)
    with pytest.raises(ValueError, match="on_error"):
        VideoFolderDataset(folder, processor, on_error="ignore")
