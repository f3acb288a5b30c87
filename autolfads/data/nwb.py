"""Read what ``autolfads prepare`` needs from an NWB file, with pynwb, into plain numpy.

An NWB file (the field's standard; DANDI and the Neural Latents Benchmark publish them) holds spike-sorted
units as a ``units`` table (ragged ``spike_times`` per unit, optional ``obs_intervals`` and per-unit
columns such as ``quality``), trials as a ``trials`` table (``start_time``, ``stop_time`` and any other
columns, e.g. ``move_onset_time`` or NLB's ``split``), and behaviour as TimeSeries (``hand_vel`` in
``processing/behavior``, a SpatialSeries in a Position container, ...).

:func:`read_nwb` opens the file once, copies those parts out as numpy arrays and closes it, so everything
downstream (binning, trialising, chopping: ``autolfads.data.prepare``) is plain array code, testable
without NWB. Every problem with the file is one :class:`~autolfads.errors.DataError` line naming the
file and the part. pynwb is imported inside the functions: it takes about a second to load its schemas.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from autolfads.errors import AutoLFADSError, DataError

INSTALL_HINT = "pip install 'pynwb>=3.0'"


@dataclass(frozen=True)
class SourceInfo:
    """The identity of the NWB file a dataset was built from (recorded so the dataset can be rebuilt)."""

    path: str
    identifier: str
    session_start_time: str
    session_description: str
    nwb_version: str
    object_id: str
    sha256: str
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class UnitsTable:
    """The units table: one row per unit, in table order."""

    ids: np.ndarray  # (U,) the table's ``id`` column
    spike_times: list[np.ndarray]  # U sorted arrays of spike times, in seconds
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # scalar per-unit columns (U,)
    obs_span: tuple[float, float] | None = None  # earliest start, latest stop of obs_intervals, if given


@dataclass
class TrialsTable:
    """The trials table: ``start_time``, ``stop_time`` and every other scalar column, in table order."""

    ids: np.ndarray  # (K,)
    columns: dict[str, np.ndarray]  # (K,) each; includes start_time and stop_time
    ragged: tuple[str, ...] = ()  # columns with a variable number of values per trial (not usable here)


@dataclass(frozen=True)
class Series:
    """One TimeSeries, resolved to explicit timestamps."""

    path: str  # e.g. ``processing/behavior/hand_vel``
    data: np.ndarray  # (n, C) float64
    timestamps: np.ndarray  # (n,) seconds


@dataclass
class Recording:
    """Everything ``prepare`` reads from one NWB file."""

    source: SourceInfo
    units: UnitsTable
    trials: TrialsTable | None
    series: dict[str, Series] = field(default_factory=dict)  # by the name the user asked for


def import_pynwb() -> Any:
    """pynwb, or one line saying how to install it."""
    try:
        import pynwb
    except ImportError as error:  # pragma: no cover - pynwb is a dependency; this guards broken installs
        raise AutoLFADSError(
            f"reading NWB files needs pynwb, which is not installed: {INSTALL_HINT}"
        ) from error
    return pynwb


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 8 MB blocks (NWB files run to many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def check_nwb_file(path: str | os.PathLike[str]) -> str:
    """The file's NWB version, or one DataError line: missing, a directory, not HDF5, HDF5 but not NWB."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such NWB file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an NWB file")
    try:
        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("nwb_version")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as an NWB (HDF5) file ({_first_line(exc)})") from None
    if version is None:
        raise DataError(f"{path}: is an HDF5 file but not NWB (no 'nwb_version' attribute at its root)")
    return version.decode() if isinstance(version, bytes) else str(version)


def read_nwb(path: str | os.PathLike[str], series_names: Sequence[str] = ()) -> Recording:
    """Units, trials and the named TimeSeries of an NWB file, as numpy; the file is closed on return.

    ``series_names`` are TimeSeries names (``hand_vel``) or paths inside the file
    (``processing/behavior/hand_vel``); an unknown name is refused, listing the TimeSeries the file has.
    """
    path = Path(path)
    nwb_version = check_nwb_file(path)
    pynwb = import_pynwb()
    try:
        io = pynwb.NWBHDF5IO(str(path), mode="r")
        nwbfile = io.read()
    except Exception as exc:  # pynwb/hdmf raise many types for a damaged or foreign file
        raise DataError(f"{path}: pynwb cannot read it as NWB ({_first_line(exc)})") from None
    try:
        source = SourceInfo(
            path=str(path.resolve()),
            identifier=str(nwbfile.identifier),
            session_start_time=nwbfile.session_start_time.isoformat(),
            session_description=str(nwbfile.session_description),
            nwb_version=nwb_version,
            object_id=str(nwbfile.object_id),
            sha256=file_sha256(path),
            size_bytes=path.stat().st_size,
        )
        units = _read_units(path, nwbfile)
        trials = _read_trials(path, nwbfile)
        series = _read_series(path, nwbfile, series_names, pynwb.TimeSeries)
    finally:
        io.close()
    return Recording(source=source, units=units, trials=trials, series=series)


# ---------------------------------------------------------------------------------------------- units
def _read_units(path: Path, nwbfile: Any) -> UnitsTable:
    table = nwbfile.units
    if table is None:
        raise DataError(
            f"{path}: has no units table (spike-sorted units with spike_times); autolfads prepare bins "
            "spike times, so sort spikes first and add them as units"
        )
    if "spike_times" not in table.colnames:
        raise DataError(
            f"{path}: the units table has no 'spike_times' column; columns: "
            f"{', '.join(table.colnames) or 'none'}"
        )
    n_units = len(table)
    if n_units == 0:
        raise DataError(f"{path}: the units table has no units (0 rows)")
    ids = np.asarray(table.id[:])
    flat = np.asarray(table.spike_times.data[:], dtype=np.float64)
    ends = np.asarray(table.spike_times_index.data[:], dtype=np.int64)
    spike_times = []
    for unit, times in zip(ids, np.split(flat, ends[:-1]), strict=True):
        if not np.isfinite(times).all():
            raise DataError(f"{path}: unit {unit} has non-finite spike times (NaN or Inf)")
        spike_times.append(np.sort(times))
    columns, _ = _scalar_columns(table, skip=("spike_times", "obs_intervals", "electrodes", "waveforms"))
    obs_span = None
    if "obs_intervals" in table.colnames:
        intervals = np.asarray(table.obs_intervals.data[:], dtype=np.float64).reshape(-1, 2)
        if len(intervals):
            obs_span = (float(intervals[:, 0].min()), float(intervals[:, 1].max()))
    return UnitsTable(ids=ids, spike_times=spike_times, columns=columns, obs_span=obs_span)


# ---------------------------------------------------------------------------------------------- trials
def _read_trials(path: Path, nwbfile: Any) -> TrialsTable | None:
    table = nwbfile.trials
    if table is None:
        return None
    columns, ragged = _scalar_columns(table, skip=("timeseries",))
    for name in ("start_time", "stop_time"):
        if name not in columns:
            raise DataError(f"{path}: the trials table has no '{name}' column")
        columns[name] = columns[name].astype(np.float64)
    return TrialsTable(ids=np.asarray(table.id[:]), columns=columns, ragged=tuple(ragged))


def _scalar_columns(table: Any, skip: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """One value per row columns as numpy (strings decoded); ragged (indexed) columns are only named."""
    scalar: dict[str, np.ndarray] = {}
    ragged: list[str] = []
    for name in table.colnames:
        if name in skip:
            continue
        if f"{name}_index" in table:
            ragged.append(name)
            continue
        values = np.asarray(table[name].data[:])
        if values.ndim != 1:
            ragged.append(name)
            continue
        if values.dtype.kind in "SO":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
        scalar[name] = values
    return scalar, ragged


# ---------------------------------------------------------------------------------------------- series
def _series_path(series: Any) -> str:
    """Where the series lives in the file (``processing/behavior/hand_vel``), from its HDF5 data's name."""
    location = getattr(series.data, "name", None)  # an h5py Dataset's full path, e.g. /processing/.../data
    if isinstance(location, str) and location.endswith("/data"):
        return location[: -len("/data")].lstrip("/")
    return str(series.name)


def _read_series(path: Path, nwbfile: Any, names: Sequence[str], timeseries_type: type) -> dict[str, Series]:
    if not names:
        return {}
    available = {}
    for obj in nwbfile.objects.values():
        if isinstance(obj, timeseries_type):
            available[_series_path(obj)] = obj
    by_name: dict[str, list[str]] = {}
    for series_path in available:
        by_name.setdefault(series_path.rsplit("/", 1)[-1], []).append(series_path)
    found = {}
    for name in names:
        if name in available:
            chosen = name
        elif len(by_name.get(name, [])) == 1:
            chosen = by_name[name][0]
        elif name in by_name:
            raise DataError(
                f"{path}: several TimeSeries are named '{name}' ({', '.join(sorted(by_name[name]))}); "
                "give the full path to --ext-input"
            )
        else:
            listing = ", ".join(sorted(available)) or "none"
            hint = _suggest(name, [*available, *by_name])
            raise DataError(
                f"{path}: no TimeSeries '{name}' for --ext-input{hint}; TimeSeries in the file: {listing}"
            )
        found[name] = _series_arrays(path, chosen, available[chosen])
    return found


def _series_arrays(path: Path, series_path: str, series: Any) -> Series:
    data = np.asarray(series.data[:], dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0:
        raise DataError(
            f"{path}: TimeSeries '{series_path}' has shape {data.shape}; --ext-input needs (time,) or "
            "(time, channels) values"
        )
    if series.timestamps is not None:
        timestamps = np.asarray(series.timestamps[:], dtype=np.float64)
    else:
        timestamps = float(series.starting_time or 0.0) + np.arange(data.shape[0]) / float(series.rate)
    if timestamps.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: TimeSeries '{series_path}' has {data.shape[0]} samples but "
            f"{timestamps.shape[0]} timestamps"
        )
    if timestamps.shape[0] > 1 and not (np.diff(timestamps) > 0).all():
        raise DataError(f"{path}: TimeSeries '{series_path}' has timestamps that do not increase")
    return Series(path=series_path, data=data, timestamps=timestamps)


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys(choices)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = [
    "INSTALL_HINT",
    "Recording",
    "Series",
    "SourceInfo",
    "TrialsTable",
    "UnitsTable",
    "check_nwb_file",
    "file_sha256",
    "import_pynwb",
    "read_nwb",
]
