"""Chop a continuous recording into overlapping segments, and merge per-segment outputs back (numpy only).

LFADS runs an RNN over fixed-length trials; a continuous recording (minutes to hours) is cut into segments
of ``seg_len`` bins that overlap by ``overlap`` bins, the model runs on each, and the per-segment outputs
(rates, factors) are stitched back into one continuous array of the original length.

Segment starts step by ``seg_len - overlap`` from bin 0; when that grid does not end exactly on the last
bin, one more segment is added flush with the end (so it overlaps its predecessor by more than
``overlap``). Every bin is therefore covered, and no bin past the recording is invented.

**Overlap weighting.** A segment's outputs are least reliable at its edges (the first bins come from the
inferred initial condition with little data behind them; the last bins have little data ahead of them for
the backward encoder), so in an overlap the outgoing segment fades out and the incoming one fades in,
linearly. Within a segment of L bins whose leading overlap (with the previous segment) is ``a`` bins and
trailing overlap (with the next) is ``b`` bins, bin ``j`` gets the weight

    w(j) = min(1, (j + 0.5) / a, (L - j - 0.5) / b)      (a term is left out when a or b is 0)

and the merged value of a bin is the weighted mean over the segments that cover it,
``sum_s w_s x_s / sum_s w_s``. Where exactly two segments overlap by ``O`` bins the weights are already
complementary: at overlap bin ``k`` the incoming segment has ``(k + 0.5) / O`` and the outgoing one
``(O - k - 0.5) / O``; e.g. for ``O = 2``: 0.25/0.75 then 0.75/0.25. Outside overlaps a bin comes from
its one segment unchanged.
"""

from __future__ import annotations

import numpy as np


def segment_starts(n_bins: int, seg_len: int, overlap: int) -> np.ndarray:
    """The start bin of every segment: ``0, stride, 2·stride, …`` plus one flush with the end if needed.

    ``stride = seg_len - overlap``. Raises ValueError when the arguments cannot cut the recording.
    """
    if seg_len < 1:
        raise ValueError(f"segment length must be at least 1 bin, got {seg_len}")
    if not 0 <= overlap < seg_len:
        raise ValueError(f"overlap must be in [0, segment length {seg_len}) bins, got {overlap}")
    if n_bins < seg_len:
        raise ValueError(f"the recording has {n_bins} bins, fewer than one segment of {seg_len}")
    stride = seg_len - overlap
    starts = list(range(0, n_bins - seg_len + 1, stride))
    if starts[-1] + seg_len < n_bins:
        starts.append(n_bins - seg_len)  # flush with the end: every bin covered, none invented
    return np.asarray(starts, dtype=np.int64)


def chop(data: np.ndarray, starts: np.ndarray, seg_len: int) -> np.ndarray:
    """``data`` ``(T, C)`` → segments ``(S, seg_len, C)``; segment ``s`` is ``data[starts[s]:][:seg_len]``."""
    data = np.asarray(data)
    index = np.asarray(starts)[:, None] + np.arange(seg_len)[None, :]  # (S, L)
    if index.size and (index.min() < 0 or index.max() >= data.shape[0]):
        raise ValueError(f"segments reach bin {int(index.max())} but the data has {data.shape[0]} bins")
    return data[index]


def segment_weights(starts: np.ndarray, seg_len: int) -> np.ndarray:
    """The overlap weights ``(S, seg_len)`` of the module docstring (before normalisation)."""
    starts = np.asarray(starts, dtype=np.int64)
    n = len(starts)
    j = np.arange(seg_len) + 0.5
    weights = np.ones((n, seg_len))
    for s in range(n):
        lead = starts[s - 1] + seg_len - starts[s] if s > 0 else 0
        trail = starts[s] + seg_len - starts[s + 1] if s + 1 < n else 0
        if lead > 0:
            weights[s] = np.minimum(weights[s], j / lead)
        if trail > 0:
            weights[s] = np.minimum(weights[s], (seg_len - j) / trail)
    return weights


def merge(segments: np.ndarray, starts: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-segment outputs ``(S, L, C)`` → the continuous ``(n_bins, C)`` weighted mean (module docstring).

    Segments longer than the coverage of ``starts`` are not allowed; every bin of ``[0, n_bins)`` must be
    covered by at least one segment.
    """
    segments = np.asarray(segments, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    if segments.ndim != 3 or segments.shape[0] != len(starts):
        raise ValueError(
            f"segments of shape {segments.shape} do not match {len(starts)} segment starts; "
            "expected (S, L, C)"
        )
    seg_len = segments.shape[1]
    if len(starts) and (starts.min() < 0 or starts.max() + seg_len > n_bins):
        raise ValueError(f"segments of {seg_len} bins at starts up to {starts.max()} overrun {n_bins} bins")
    weights = segment_weights(starts, seg_len)  # (S, L)
    total = np.zeros((n_bins, segments.shape[2]))
    norm = np.zeros(n_bins)
    for s, start in enumerate(starts):
        total[start : start + seg_len] += weights[s][:, None] * segments[s]
        norm[start : start + seg_len] += weights[s]
    if (norm <= 0).any():
        missing = int(np.flatnonzero(norm <= 0)[0])
        raise ValueError(f"bin {missing} of {n_bins} is covered by no segment")
    return total / norm[:, None]


__all__ = ["chop", "merge", "segment_starts", "segment_weights"]
