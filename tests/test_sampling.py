"""TSN segment sampling and multi-clip evaluation views."""

import pytest
import torch

from claver_hf.processing.sampling import multi_clip_indices, segment_indices

CASES = [(1, 1), (1, 8), (3, 8), (7, 8), (8, 8), (9, 8), (80, 8), (301, 16), (1000, 3)]


@pytest.mark.parametrize(("total", "num_frames"), CASES)
@pytest.mark.parametrize("training", [False, True])
def test_count_range_and_order(total, num_frames, training):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20 if training else 1):
        indices = segment_indices(total, num_frames, training=training, generator=generator)
        assert len(indices) == num_frames
        assert all(isinstance(i, int) and 0 <= i < total for i in indices)
        assert indices == sorted(indices)


def test_eval_takes_segment_centres():
    assert segment_indices(80, 8, training=False) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_indices(10, 1, training=False) == [5]
    assert segment_indices(1, 4, training=False) == [0, 0, 0, 0]


@pytest.mark.parametrize(("total", "num_frames"), [(80, 8), (301, 16), (9, 8), (3, 8)])
def test_training_indices_stay_in_their_segment(total, num_frames):
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        indices = segment_indices(total, num_frames, training=True, generator=generator)
        for k, index in enumerate(indices):
            # Segment k covers the fractional frames [k * L, (k + 1) * L), L = total / num_frames.
            low = k * total // num_frames
            high = max(low, -(-(k + 1) * total // num_frames) - 1)
            assert low <= index <= high


def test_training_covers_the_segment_and_is_reproducible():
    seen = set()
    generator = torch.Generator().manual_seed(2)
    for _ in range(200):
        seen.add(segment_indices(80, 8, training=True, generator=generator)[3])
    assert seen == set(range(30, 40))  # every frame of segment 3 gets drawn

    first = segment_indices(300, 8, training=True, generator=torch.Generator().manual_seed(7))
    again = segment_indices(300, 8, training=True, generator=torch.Generator().manual_seed(7))
    other = segment_indices(300, 8, training=True, generator=torch.Generator().manual_seed(8))
    assert first == again
    assert first != other


def test_short_video_repeats_frames():
    assert segment_indices(3, 8, training=False) == [0, 0, 0, 1, 1, 2, 2, 2]
    training = segment_indices(3, 8, training=True, generator=torch.Generator().manual_seed(0))
    assert set(training) <= {0, 1, 2} and training == sorted(training) and len(training) == 8


@pytest.mark.parametrize("function", ["segment", "multi_clip"])
def test_invalid_counts_raise(function):
    call = (
        (lambda total, t: segment_indices(total, t, training=False))
        if function == "segment"
        else (lambda total, t: multi_clip_indices(total, t, 2))
    )
    with pytest.raises(ValueError, match="num_total_frames=0"):
        call(0, 8)
    with pytest.raises(ValueError, match="num_total_frames=-3"):
        call(-3, 8)
    with pytest.raises(ValueError, match="num_frames"):
        call(10, 0)


def test_multi_clip_layout():
    assert multi_clip_indices(100, 4, 2) == [[6, 31, 56, 81], [18, 43, 68, 93]]
    clips = multi_clip_indices(120, 8, 4)
    assert len(clips) == 4 and all(len(clip) == 8 for clip in clips)
    for k in range(8):
        # Segment k is frames [15k, 15k + 15); clip c sits at offset (c + 0.5) / 4 inside it.
        assert [clip[k] for clip in clips] == [15 * k + int(15 * (c + 0.5) / 4) for c in range(4)]
    with pytest.raises(ValueError, match="num_clips"):
        multi_clip_indices(100, 4, 0)


@pytest.mark.parametrize(("total", "num_frames"), CASES)
def test_multi_clip_matches_eval_sampling_and_stays_in_range(total, num_frames):
    assert multi_clip_indices(total, num_frames, 1) == [segment_indices(total, num_frames, training=False)]
    for clip in multi_clip_indices(total, num_frames, 3):
        assert len(clip) == num_frames and clip == sorted(clip) and all(0 <= i < total for i in clip)
