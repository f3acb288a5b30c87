"""Chop/merge math on hand-computed values (autolfads/data/chop.py)."""

from __future__ import annotations

import numpy as np
import pytest

from autolfads.data.chop import chop, merge, segment_starts, segment_weights


@pytest.mark.parametrize(
    ("n_bins", "seg_len", "overlap", "expected"),
    [
        (10, 6, 2, [0, 4]),  # the grid ends exactly on the last bin
        (11, 6, 2, [0, 4, 5]),  # one more segment flush with the end
        (6, 6, 0, [0]),
        (12, 4, 0, [0, 4, 8]),
        (13, 4, 0, [0, 4, 8, 9]),
        (20, 10, 5, [0, 5, 10]),
    ],
)
def test_segment_starts_cover_every_bin_and_none_past_the_end(n_bins, seg_len, overlap, expected) -> None:
    starts = segment_starts(n_bins, seg_len, overlap)
    assert starts.tolist() == expected
    covered = np.zeros(n_bins, bool)
    for start in starts:
        covered[start : start + seg_len] = True
    assert covered.all() and starts[-1] + seg_len == n_bins


@pytest.mark.parametrize(
    ("args", "message"),
    [((5, 6, 0), "fewer than one segment"), ((10, 4, 4), "overlap"), ((10, 0, 0), "at least 1")],
)
def test_segment_starts_refuse_impossible_cuts(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        segment_starts(*args)


def test_chop_takes_the_named_windows() -> None:
    data = np.arange(20).reshape(10, 2)
    segments = chop(data, np.array([0, 4]), 6)
    assert segments.shape == (2, 6, 2)
    np.testing.assert_array_equal(segments[1], data[4:10])


def test_weights_for_a_two_bin_overlap_by_hand() -> None:
    # Segments [0, 6) and [4, 10): overlap bins 4 and 5. The outgoing segment fades 0.75, 0.25 and the
    # incoming one rises 0.25, 0.75: (k + 0.5) / O with O = 2.
    weights = segment_weights(np.array([0, 4]), 6)
    np.testing.assert_allclose(weights[0], [1, 1, 1, 1, 0.75, 0.25])
    np.testing.assert_allclose(weights[1], [0.25, 0.75, 1, 1, 1, 1])


def test_merge_of_a_two_bin_overlap_by_hand() -> None:
    first = np.full((6, 1), 10.0)
    second = np.full((6, 1), 20.0)
    merged = merge(np.stack([first, second]), np.array([0, 4]), 10)
    # bins 0-3 from the first alone, 4: 0.75·10 + 0.25·20 = 12.5, 5: 0.25·10 + 0.75·20 = 17.5, 6-9 second
    np.testing.assert_allclose(merged[:, 0], [10, 10, 10, 10, 12.5, 17.5, 20, 20, 20, 20])


def test_merge_of_an_uneven_end_segment_by_hand() -> None:
    # 11 bins, segments of 6 at 0, 4 and 5 (the last flush with the end). Weights before normalising:
    # seg0 [1,1,1,1,.75,.25]            trail 2
    # seg1 lead 2: (j+.5)/2 = [.25,.75,1.25,…]; trail 5: (6-j-.5)/5 = [1.1,.9,.7,.5,.3,.1] → min:
    #      [.25,.75,.7,.5,.3,.1]
    # seg2 lead 5: (j+.5)/5 = [.1,.3,.5,.7,.9,1.1] → min 1 → [.1,.3,.5,.7,.9,1]
    weights = segment_weights(np.array([0, 4, 5]), 6)
    np.testing.assert_allclose(weights[1], [0.25, 0.75, 0.7, 0.5, 0.3, 0.1])
    np.testing.assert_allclose(weights[2], [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    values = np.stack([np.full((6, 1), v) for v in (0.0, 10.0, 30.0)])
    merged = merge(values, np.array([0, 4, 5]), 11)[:, 0]
    # bin 4: seg0 .75·0, seg1 .25·10 → 2.5 / 1.0
    assert merged[4] == pytest.approx(2.5 / 1.0)
    # bin 5: seg0 .25·0 + seg1 .75·10 + seg2 .1·30 = 10.5 over 1.1
    assert merged[5] == pytest.approx(10.5 / 1.1)
    # bin 10: only seg2
    assert merged[10] == pytest.approx(30.0)


def test_merge_of_a_chopped_signal_returns_it_exactly() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(97, 3))
    starts = segment_starts(97, 20, 7)
    np.testing.assert_allclose(merge(chop(signal, starts, 20), starts, 97), signal)


def test_merge_refuses_mismatched_segments() -> None:
    with pytest.raises(ValueError, match="do not match"):
        merge(np.zeros((3, 6, 1)), np.array([0, 4]), 10)
    with pytest.raises(ValueError, match="overrun"):
        merge(np.zeros((2, 6, 1)), np.array([0, 5]), 10)
    with pytest.raises(ValueError, match="covered by no segment"):
        merge(np.zeros((2, 3, 1)), np.array([0, 5]), 8)
