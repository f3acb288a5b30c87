"""``autolfads prepare``: an NWB recording → the HDF5 data contract, plus a record of every choice.

The recipe, in order (each step's choices go into the record, ``DATA.prepare.json``):

1. **Units.** Rows of the units table, kept by ``--units-where COLUMN=V1,V2`` filters (values compared
   as text, case-insensitively: ``quality=good``, ``is_noise=false``).
2. **Samples.** With trials (and no ``--chop``): one sample per trial, rows kept by ``--trials-where``
   and the split column. ``--align COL --window A B`` takes ``[COL + A ms, COL + B ms)`` around each trial's
   ``COL`` time (trials whose ``COL`` is NaN are left out, with a warning); without ``--align`` each trial
   is kept from its ``start_time`` for the length of the shortest kept trial. ``--forward-ms F`` extends
   every sample by F ms of forward-prediction bins (in recon_data only). Without a trials table (or with
   ``--chop``) the recording is binned whole and cut into overlapping segments (``autolfads.data.chop``).
3. **Counts** in half-open bins of ``--bin-ms`` (``autolfads.data.binning``). Units with no spike in any
   prepared bin are dropped with a warning that lists them (a channel that is always 0 tells LFADS
   nothing and would only widen the readout).
4. **Held-out units**: ``--heldout N`` takes ``numpy.random.default_rng(seed).choice(unit_ids, N,
   replace=False)`` among the kept units; ``--heldout 3,17,42`` names unit ids. Held-in units come first in
   recon_data (in units-table order), then the held-out ones (in units-table order).
5. **Split**: ``--split-column`` (values ``train``, ``val``/``valid``, ``test``, ``none``: the NLB
   convention) or seeded: ``numpy.random.default_rng(seed).permutation(n)``, the first
   ``round(valid_fraction · n)`` (at least 1) positions go to valid. Each split keeps table order.
6. **ext_input** from named TimeSeries, linearly interpolated at the bin centres.

No ``*_truth`` is ever written: an NWB recording has no ground-truth rates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from autolfads.data.binning import bin_centres, bin_spikes, resample_at
from autolfads.data.chop import chop, segment_starts
from autolfads.data.nwb import Recording, TrialsTable
from autolfads.errors import DataError

RECORD_FORMAT = "autolfads-prepare"
RECORD_VERSION = 1
RECORD_KEY = "prepare_json"  # the record, as a JSON string dataset inside DATA.h5 (outputs copy it along)
HELDOUT_RULE = "numpy.random.default_rng(seed).choice(kept unit ids, N, replace=False), sorted"
SPLIT_RULE = (
    "numpy.random.default_rng(seed).permutation(n); the first max(1, round(valid_fraction*n)) go to valid"
)
EXT_INPUT_RULE = "linear interpolation of each TimeSeries column at the bin centres"
SPLIT_VALUES = {"train": "train", "val": "valid", "valid": "valid", "test": "test", "none": None, "": None}
_TOLERANCE = 1e-6  # in bins: how far a ms value may be from a whole number of bins (float round-off)


@dataclass(frozen=True)
class PrepareOptions:
    """What ``autolfads prepare`` was asked for (all times in ms, as on the command line)."""

    bin_ms: float = 10.0
    align: str | None = None
    window_ms: tuple[float, float] | None = None
    chop: bool = False
    chop_ms: float = 1000.0
    overlap_ms: float = 200.0
    forward_ms: float = 0.0
    heldout: int | tuple[int, ...] = 0
    valid_fraction: float = 0.2
    split_column: str | None = None
    seed: int = 0
    ext_input: tuple[str, ...] = ()
    units_where: tuple[str, ...] = ()
    trials_where: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["window_ms"] = list(self.window_ms) if self.window_ms else None
        values["heldout"] = self.heldout if isinstance(self.heldout, int) else list(self.heldout)
        for key in ("ext_input", "units_where", "trials_where"):
            values[key] = list(values[key])
        return values


@dataclass
class Prepared:
    """The contract arrays and the record that says how they were made."""

    arrays: dict[str, np.ndarray]
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        units = self.record["units"]
        bins = self.record["bins"]
        split = self.record["split"]
        counts = ", ".join(
            f"{len(split[f'{s}_inds'])} {s}" for s in ("train", "valid", "test") if split[f"{s}_inds"]
        )
        what = "segments" if self.record["mode"] == "chop" else "trials"
        return (
            f"{counts} {what}; {bins['observed']}+{bins['forward']} bins of {self.record['bin_ms']:g} ms; "
            f"{units['n_held_in']} of {len(units['channel_unit_ids'])} units held in"
        )


# ---------------------------------------------------------------------------------------------- options
def _whole_bins(value_ms: float, bin_ms: float, flag: str, allow_zero: bool = True) -> int:
    """``value_ms`` as a whole number of bins, or one line saying it is not one."""
    bins = value_ms / bin_ms
    if abs(bins - round(bins)) > _TOLERANCE:
        raise DataError(
            f"{flag} {value_ms:g} ms is not a whole number of --bin-ms {bin_ms:g} ms bins "
            f"({bins:.3g}); choose a multiple of the bin"
        )
    whole = round(bins)
    if whole < 0 or (whole == 0 and not allow_zero):
        raise DataError(f"{flag} {value_ms:g} ms holds no {bin_ms:g} ms bin; it must be at least one bin")
    return whole


def check_options(options: PrepareOptions) -> None:
    """Option combinations that can never work, refused before the file is read (one line each)."""
    if not (math.isfinite(options.bin_ms) and options.bin_ms > 0):
        raise DataError(f"--bin-ms must be a positive number of milliseconds, got {options.bin_ms:g}")
    if options.window_ms is not None:
        start, stop = options.window_ms
        if not stop > start:
            raise DataError(
                f"--window {start:g} {stop:g}: the end must come after the start (ms around --align)"
            )
        if stop - start < options.bin_ms:
            raise DataError(
                f"--bin-ms {options.bin_ms:g} makes no bin: the --window {start:g} {stop:g} is only "
                f"{stop - start:g} ms long"
            )
        _whole_bins(stop - start, options.bin_ms, "--window length")
    if options.window_ms is not None and options.align is None:
        raise DataError("--window needs --align COLUMN (the trials-table time the window is centred on)")
    if options.align is not None and options.window_ms is None:
        raise DataError(f"--align {options.align} needs --window START_MS END_MS (the window around it)")
    if options.forward_ms < 0:
        raise DataError(f"--forward-ms must be >= 0, got {options.forward_ms:g}")
    _whole_bins(options.forward_ms, options.bin_ms, "--forward-ms")
    if not 0 < options.valid_fraction < 1:
        raise DataError(f"--valid-fraction must be between 0 and 1, got {options.valid_fraction:g}")
    if isinstance(options.heldout, int) and options.heldout < 0:
        raise DataError(f"--heldout must be a count >= 0 or a list of unit ids, got {options.heldout}")
    if options.chop and options.align:
        raise DataError("--chop and --align exclude each other: chopping ignores the trials")
    if options.chop:  # without --chop, a file without trials is chopped too: checked once that is known
        check_chop_options(options)
    for flag, values in (("--units-where", options.units_where), ("--trials-where", options.trials_where)):
        for text in values:
            _parse_where(text, flag)


def check_chop_options(options: PrepareOptions) -> tuple[int, int]:
    """``--chop-ms`` and ``--overlap-ms`` as whole bins (segment, overlap), or one line saying why not."""
    if options.chop_ms < options.bin_ms:
        raise DataError(
            f"--bin-ms {options.bin_ms:g} makes no bin in a --chop-ms {options.chop_ms:g} segment"
        )
    chop_bins = _whole_bins(options.chop_ms, options.bin_ms, "--chop-ms", allow_zero=False)
    overlap_bins = _whole_bins(options.overlap_ms, options.bin_ms, "--overlap-ms")
    if overlap_bins >= chop_bins:
        raise DataError(
            f"--overlap-ms {options.overlap_ms:g} must be shorter than --chop-ms {options.chop_ms:g}"
        )
    return chop_bins, overlap_bins


_WHERE_EXAMPLE = {"--units-where": "quality=good", "--trials-where": "result=R"}


def _parse_where(text: str, flag: str) -> tuple[str, set[str]]:
    column, sep, values = text.partition("=")
    if not sep or not column.strip():
        raise DataError(
            f"{flag} '{text}' is not COLUMN=VALUE[,VALUE...]; "
            f"example: {flag} {_WHERE_EXAMPLE.get(flag, 'a=b')}"
        )
    return column.strip(), {v.strip().lower() for v in values.split(",")}


def _as_text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _column(columns: dict[str, np.ndarray], name: str, table: str, path: str, flag: str) -> np.ndarray:
    if name not in columns:
        import difflib

        close = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(
            f"{path}: {flag} names column '{name}', which the {table} table does not have{hint}; "
            f"columns: {', '.join(columns) or 'none'}"
        )
    return columns[name]


def _where_mask(
    columns: dict[str, np.ndarray], wheres: Sequence[str], table: str, path: str, flag: str
) -> np.ndarray:
    n = len(next(iter(columns.values()))) if columns else 0
    keep = np.ones(n, dtype=bool)
    for text in wheres:
        name, allowed = _parse_where(text, flag)
        values = _column(columns, name, table, path, flag)
        keep &= np.array([_as_text(v) in allowed for v in values], dtype=bool)
    return keep


# ---------------------------------------------------------------------------------------------- recipe
def prepare_recording(recording: Recording, options: PrepareOptions) -> Prepared:
    """Bin, trialise or chop, choose held-out units and the split: the arrays and the record."""
    check_options(options)
    path = recording.source.path
    bin_s = options.bin_ms / 1000.0
    warnings: list[str] = []
    units = recording.units

    # 1. units
    if options.units_where:
        unit_columns = {"id": units.ids, **units.columns}
        keep_units = _where_mask(unit_columns, options.units_where, "units", path, "--units-where")
    else:
        keep_units = np.ones(len(units.ids), dtype=bool)
    excluded_ids = units.ids[~keep_units].tolist()
    if not keep_units.any():
        raise DataError(
            f"{path}: --units-where {' '.join(options.units_where)} leaves no unit of {len(units.ids)}"
        )
    unit_rows = np.flatnonzero(keep_units)
    spike_times = [units.spike_times[r] for r in unit_rows]
    span = _recording_span(recording, spike_times)

    # 2-3. samples and counts
    forward_bins = _whole_bins(options.forward_ms, options.bin_ms, "--forward-ms")
    trials = recording.trials
    if trials is not None and len(trials.ids) == 0 and not options.chop:
        raise DataError(
            f"{path}: the trials table is empty (0 trials); pass --chop to cut the recording into segments"
        )
    chopping = options.chop or trials is None
    if chopping and options.align:
        raise DataError(
            f"{path}: has no trials table, so --align {options.align} has nothing to align on; leave it out"
        )
    if chopping and options.split_column:
        raise DataError(f"{path}: --split-column needs trials; chopped segments are split by --seed")
    if chopping:
        samples = _chop_samples(path, spike_times, span, options, forward_bins)
    else:
        assert trials is not None
        samples = _trial_samples(path, trials, spike_times, span, options, forward_bins, warnings)
    counts = samples.counts  # (N, T, U)

    # units with no spike in any prepared bin
    silent = counts.sum(axis=(0, 1)) == 0
    unit_ids = units.ids[unit_rows]
    dropped_ids = unit_ids[silent].tolist()
    if silent.all():
        raise DataError(f"{path}: none of the {len(unit_ids)} units has a spike in the prepared bins")
    if dropped_ids:
        warnings.append(
            f"{len(dropped_ids)} unit(s) have no spike in the prepared bins and were dropped: ids "
            f"{_id_list(dropped_ids)}"
        )
    counts = counts[:, :, ~silent]
    unit_ids = unit_ids[~silent]

    # 4. held-out units
    held_out = _choose_heldout(path, unit_ids, options, excluded_ids, dropped_ids)
    is_out = np.isin(unit_ids, held_out)
    order = np.concatenate([np.flatnonzero(~is_out), np.flatnonzero(is_out)])
    counts = counts[:, :, order]
    channel_ids = unit_ids[order]
    n_held_in = int((~is_out).sum())

    # 5. split
    split_inds = _split(path, samples, options)

    # 6. ext_input
    ext = _ext_input(path, recording, samples, bin_s)

    arrays: dict[str, np.ndarray] = {}
    n_obs = samples.n_bins - forward_bins
    for split, positions in split_inds.items():
        if not len(positions):
            continue
        recon = counts[positions].astype(np.float32)
        if split == "test":
            arrays["test_encod_data"] = recon[:, :n_obs, :n_held_in]
        else:
            arrays[f"{split}_recon_data"] = recon
            arrays[f"{split}_encod_data"] = recon[:, :n_obs, :n_held_in]
        arrays[f"{split}_inds"] = samples.inds[positions].astype(np.int64)
        if ext is not None:
            arrays[f"{split}_ext_input"] = ext[positions].astype(np.float32)

    record = _record(
        recording,
        options,
        samples,
        split_inds,
        channel_ids,
        n_held_in,
        held_out,
        excluded_ids,
        dropped_ids,
        forward_bins,
        arrays,
        warnings,
    )
    return Prepared(arrays=arrays, record=record, warnings=warnings)


def _id_list(ids: Sequence[Any], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def _recording_span(recording: Recording, spike_times: Sequence[np.ndarray]) -> tuple[float, float]:
    """The recorded time: the units' obs_intervals if given, else first to last spike or trial edge."""
    if recording.units.obs_span is not None:
        return recording.units.obs_span
    edges = [t[[0, -1]] for t in spike_times if len(t)]
    if recording.trials is not None and len(recording.trials.ids):
        columns = recording.trials.columns
        edges.append(np.array([np.nanmin(columns["start_time"]), np.nanmax(columns["stop_time"])]))
    if not edges:
        raise DataError(f"{recording.source.path}: the units have no spike times at all")
    both = np.concatenate(edges)
    return float(both.min()), float(both.max())


@dataclass
class _Samples:
    counts: np.ndarray  # (N, T, U) recon bins, units in kept-row order
    starts: np.ndarray  # (N,) left edge of each sample's first bin, seconds
    inds: np.ndarray  # (N,) trials-table row, or segment index
    n_bins: int  # recon bins per sample (observed + forward)
    details: dict[str, Any]
    split_values: np.ndarray | None = None  # per sample, from --split-column


def _chop_samples(
    path: str,
    spike_times: Sequence[np.ndarray],
    span: tuple[float, float],
    options: PrepareOptions,
    forward_bins: int,
) -> _Samples:
    bin_s = options.bin_ms / 1000.0
    t_start, t_stop = span
    n_total = math.floor((t_stop - t_start) / bin_s + _TOLERANCE)
    if n_total == 0:
        raise DataError(
            f"{path}: --bin-ms {options.bin_ms:g} makes no bin: the recording lasts only "
            f"{(t_stop - t_start) * 1000:g} ms"
        )
    chop_bins, overlap = check_chop_options(options)
    seg_len = chop_bins + forward_bins
    try:
        starts = segment_starts(n_total, seg_len, overlap)
    except ValueError:
        raise DataError(
            f"{path}: the recording ({n_total} bins of {options.bin_ms:g} ms from {t_start:g} s) is "
            f"shorter than one segment of {seg_len} bins (--chop-ms {options.chop_ms:g} + --forward-ms "
            f"{options.forward_ms:g}); use a shorter --chop-ms"
        ) from None
    continuous = bin_spikes(spike_times, np.array([t_start]), n_total, bin_s)[0]  # (T_total, U)
    details = {
        "t_start_s": t_start,
        "t_stop_s": t_start + n_total * bin_s,
        "recording_span_s": [t_start, t_stop],
        "n_bins": n_total,
        "segment_bins": seg_len,
        "overlap_bins": overlap,
        "segment_starts_bins": starts.tolist(),
        "weighting": "linear cross-fade over each overlap (autolfads.data.chop)",
    }
    return _Samples(
        counts=chop(continuous, starts, seg_len),
        starts=t_start + starts * bin_s,
        inds=np.arange(len(starts)),
        n_bins=seg_len,
        details=details,
    )


def _trial_samples(
    path: str,
    trials: TrialsTable,
    spike_times: Sequence[np.ndarray],
    span: tuple[float, float],
    options: PrepareOptions,
    forward_bins: int,
    warnings: list[str],
) -> _Samples:
    bin_s = options.bin_ms / 1000.0
    columns = trials.columns
    n_rows = len(trials.ids)
    keep = _where_mask({"id": trials.ids, **columns}, options.trials_where, "trials", path, "--trials-where")
    dropped: dict[str, list[Any]] = {"trials_where": trials.ids[~keep].tolist()}
    split_values = None
    if options.split_column:
        raw = _column(columns, options.split_column, "trials", path, "--split-column")
        split_values = np.empty(n_rows, dtype=object)
        for row, value in enumerate(raw):
            text = _as_text(value)
            if text not in SPLIT_VALUES:
                raise DataError(
                    f"{path}: --split-column {options.split_column} has value '{value}' "
                    f"(trial {trials.ids[row]}); expected one of train, val, valid, test, none (or empty)"
                )
            split_values[row] = SPLIT_VALUES[text]
        unused = keep & (split_values == None)  # noqa: E711 (element-wise on an object array)
        dropped["split_none"] = trials.ids[unused].tolist()
        keep &= ~unused
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise DataError(f"{path}: no trial is left after --trials-where/--split-column (of {n_rows})")

    start, stop = columns["start_time"][rows], columns["stop_time"][rows]
    bad = ~(np.isfinite(start) & np.isfinite(stop))
    if bad.any():
        raise DataError(f"{path}: trial {trials.ids[rows][bad][0]} has a NaN start_time or stop_time")
    empty = stop <= start
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(
            f"{path}: trial {trials.ids[rows][i]} is empty (start_time {start[i]:g} s, stop_time "
            f"{stop[i]:g} s); every trial must have stop_time > start_time (drop bad trials with "
            "--trials-where)"
        )
    by_start = np.argsort(start, kind="stable")
    overlaps = np.flatnonzero(start[by_start][1:] < stop[by_start][:-1] - 1e-9)
    if len(overlaps):
        a, b = by_start[overlaps[0]], by_start[overlaps[0] + 1]
        raise DataError(
            f"{path}: trials {trials.ids[rows][a]} ({start[a]:g} s to {stop[a]:g} s) and "
            f"{trials.ids[rows][b]} ({start[b]:g} s to {stop[b]:g} s) overlap; a trials table must not "
            "count the same time twice"
        )

    if options.align:
        align = _column(columns, options.align, "trials", path, "--align")
        if align.dtype.kind not in "fiu":
            raise DataError(
                f"{path}: --align column '{options.align}' holds "
                f"{'text' if align.dtype.kind in 'OSU' else align.dtype} (e.g. {align[0]!r}), expected times "
                "in seconds"
            )
        align = align[rows].astype(np.float64)
        missing = ~np.isfinite(align)
        if missing.all():
            raise DataError(f"{path}: --align column '{options.align}' is NaN for every kept trial")
        if missing.any():
            dropped["nan_align"] = trials.ids[rows][missing].tolist()
            warnings.append(
                f"{int(missing.sum())} trial(s) have no {options.align} (NaN) and were left out: ids "
                f"{_id_list(dropped['nan_align'])}"
            )
            rows, align = rows[~missing], align[~missing]
        assert options.window_ms is not None  # check_options: --align comes with --window
        window = options.window_ms
        n_obs = _whole_bins(window[1] - window[0], options.bin_ms, "--window length", allow_zero=False)
        starts = align + window[0] / 1000.0
        details = {"align": options.align, "window_ms": list(window)}
    else:
        lengths = np.floor((stop - start) / bin_s + _TOLERANCE).astype(int)
        n_obs = int(lengths.min())
        if n_obs == 0:
            i = int(np.argmin(lengths))
            raise DataError(
                f"{path}: --bin-ms {options.bin_ms:g} makes no bin in trial {trials.ids[rows][i]} "
                f"({(stop[i] - start[i]) * 1000:g} ms long); use a smaller bin, --align with a --window, "
                "or drop short trials with --trials-where"
            )
        if lengths.max() != n_obs:
            warnings.append(
                f"trials last {n_obs}-{int(lengths.max())} bins; each is kept from start_time for {n_obs} "
                "bins (the shortest); use --align/--window to choose the window instead"
            )
        starts = start.copy()
        details = {"align": None, "window": "whole trials from start_time, cut to the shortest"}
    n_bins = n_obs + forward_bins
    ends = starts + n_bins * bin_s
    lo, hi = span
    off = np.flatnonzero((starts < lo - 1e-9) | (ends > hi + 1e-9))
    if len(off):
        i = int(off[0])
        raise DataError(
            f"{path}: the window of trial {trials.ids[rows][i]} ({starts[i]:g} s to {ends[i]:g} s"
            f"{', forward bins included' if forward_bins else ''}) runs off the recording "
            f"({lo:g} s to {hi:g} s); "
            f"{len(off)} trial(s) do: shorten --window/--forward-ms or drop them with --trials-where"
        )
    details.update(
        {
            "trial_rows": rows.tolist(),
            "trial_ids": trials.ids[rows].tolist(),
            "window_starts_s": starts.tolist(),
            "dropped_trial_ids": dropped,
            "recording_span_s": [lo, hi],
        }
    )
    return _Samples(
        counts=bin_spikes(spike_times, starts, n_bins, bin_s),
        starts=starts,
        inds=rows,
        n_bins=n_bins,
        details=details,
        split_values=None if split_values is None else split_values[rows],
    )


def _choose_heldout(
    path: str, unit_ids: np.ndarray, options: PrepareOptions, excluded: list[Any], dropped: list[Any]
) -> np.ndarray:
    if isinstance(options.heldout, int):
        n = options.heldout
        if n >= len(unit_ids):
            raise DataError(
                f"--heldout {n} leaves no held-in unit: only {len(unit_ids)} units are kept in {path}"
            )
        if n == 0:
            return np.array([], dtype=unit_ids.dtype)
        return np.sort(np.random.default_rng(options.seed).choice(unit_ids, size=n, replace=False))
    wanted = list(dict.fromkeys(options.heldout))
    missing = [u for u in wanted if u not in set(unit_ids.tolist())]
    if missing:
        reasons = []
        for unit in missing:
            if unit in excluded:
                reasons.append(f"{unit} (excluded by --units-where)")
            elif unit in dropped:
                reasons.append(f"{unit} (no spikes, dropped)")
            else:
                reasons.append(f"{unit} (not in the units table)")
        raise DataError(f"{path}: --heldout names unit ids that are not kept: {', '.join(reasons)}")
    if len(wanted) >= len(unit_ids):
        raise DataError(
            f"--heldout names all {len(unit_ids)} kept units of {path}; keep at least one held in"
        )
    return np.sort(np.asarray(wanted, dtype=unit_ids.dtype))


def _split(path: str, samples: _Samples, options: PrepareOptions) -> dict[str, np.ndarray]:
    n = len(samples.inds)
    if samples.split_values is not None:
        positions = {s: np.flatnonzero(samples.split_values == s) for s in ("train", "valid", "test")}
        for split in ("train", "valid"):
            if not len(positions[split]):
                raise DataError(
                    f"{path}: --split-column {options.split_column} leaves the {split} split empty; "
                    "it needs trials marked train and val"
                )
        return positions
    if n < 2:
        raise DataError(f"{path}: only {n} sample(s); a train and a valid split need at least 2")
    n_valid = min(n - 1, max(1, round(options.valid_fraction * n)))
    order = np.random.default_rng(options.seed).permutation(n)
    return {
        "train": np.sort(order[n_valid:]),
        "valid": np.sort(order[:n_valid]),
        "test": np.array([], dtype=np.int64),
    }


def _ext_input(path: str, recording: Recording, samples: _Samples, bin_s: float) -> np.ndarray | None:
    if not recording.series:
        return None
    centres = bin_centres(samples.starts, samples.n_bins, bin_s)  # (N, T)
    parts = []
    for name, series in recording.series.items():
        first, last = series.timestamps[0], series.timestamps[-1]
        if centres.min() < first - 1e-9 or centres.max() > last + 1e-9:
            raise DataError(
                f"{path}: TimeSeries '{series.path}' (--ext-input {name}) covers {first:g} s to {last:g} s "
                f"but the prepared bins need {centres.min():g} s to {centres.max():g} s"
            )
        values = resample_at(series.timestamps, series.data, centres)
        if not np.isfinite(values).all():
            sample, step = np.argwhere(~np.isfinite(values).all(axis=-1))[0]
            raise DataError(
                f"{path}: TimeSeries '{series.path}' (--ext-input {name}) is NaN/Inf near "
                f"{centres[sample, step]:g} s; ext_input must be finite"
            )
        parts.append(values)
    return np.concatenate(parts, axis=-1)


def _record(
    recording: Recording,
    options: PrepareOptions,
    samples: _Samples,
    split_inds: dict[str, np.ndarray],
    channel_ids: np.ndarray,
    n_held_in: int,
    held_out: np.ndarray,
    excluded: list[Any],
    dropped: list[Any],
    forward_bins: int,
    arrays: dict[str, np.ndarray],
    warnings: list[str],
) -> dict[str, Any]:
    from autolfads import __version__

    mode = "chop" if "segment_starts_bins" in samples.details else "trials"
    return _plain(
        {
            "format": RECORD_FORMAT,
            "format_version": RECORD_VERSION,
            "autolfads_version": __version__,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": recording.source.as_dict(),
            "options": options.as_dict(),
            "mode": mode,
            "bin_ms": options.bin_ms,
            "bins": {
                "observed": samples.n_bins - forward_bins,
                "forward": forward_bins,
                "recon": samples.n_bins,
            },
            "units": {
                "channel_unit_ids": channel_ids.tolist(),
                "n_held_in": n_held_in,
                "held_out_unit_ids": held_out.tolist(),
                "heldout_rule": HELDOUT_RULE if isinstance(options.heldout, int) else "unit ids given",
                "excluded_by_units_where": excluded,
                "dropped_no_spikes": dropped,
            },
            mode: samples.details,
            "split": {
                "rule": "column" if options.split_column else SPLIT_RULE,
                "seed": options.seed,
                **{f"{split}_inds": samples.inds[pos].tolist() for split, pos in split_inds.items()},
            },
            "ext_input": [
                {
                    "name": name,
                    "path": series.path,
                    "channels": int(series.data.shape[1]),
                    "rule": EXT_INPUT_RULE,
                }
                for name, series in recording.series.items()
            ],
            "shapes": {key: list(value.shape) for key, value in arrays.items()},
            "warnings": warnings,
        }
    )


def _plain(value: Any) -> Any:
    """numpy scalars and arrays → JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_json(record: dict[str, Any]) -> str:
    """The record as indented JSON, each list of plain values on one line (trial ids, starts, ...)."""
    text = json.dumps(record, indent=2)
    flat = re.sub(
        r"\[\n\s+([^\[\]{}]*?)\n\s*\]",
        lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",\n")) + "]",
        text,
    )
    return flat + "\n"


__all__ = [
    "HELDOUT_RULE",
    "RECORD_KEY",
    "PrepareOptions",
    "Prepared",
    "check_options",
    "prepare_recording",
    "record_json",
]
