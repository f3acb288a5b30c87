"""``fitlog.csv``: one row per epoch (per trial, for PBT) with every logged metric (lfads-spec §6.1).

Lightning's CSVLogger writes several rows per epoch (the learning-rate monitor's row at the epoch start,
which has no ``epoch`` value, the validation row and the training row). Here each source is folded into
one row per epoch: a row without an epoch belongs to the epoch logged next (the monitor logs before the
epoch's metrics), and per column the last non-empty value of the epoch wins. Columns that are empty
everywhere (``r2`` without ground truth, ``co_bps`` without held-out neurons) are dropped.

Decisions of this project (lfads-spec "Decisions"): for PBT, ``worker_id`` is the persistent trial index
and a ``generation`` column says which generation logged the row; the reference's ``worker_id`` counted
(trial, generation) log files. A single model (``autolfads train``) is worker 0.

Layout: like the reference's file, the CSV starts with pandas' unnamed row-number column, so the NeuroCAAS
documentation's way of reading it, ``pd.read_csv("fitlog.csv", index_col=0)`` then
``df.groupby("worker_id")`` and ``worker.epoch``, keeps ``epoch`` as a column. ``read_fitlog`` reads this
layout and the earlier one without that column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Union

import pandas as pd

from autolfads.constants import GENERATION, WORKER_ID
from autolfads.errors import AutoLFADSError
from autolfads.outputs.atomic import atomic_path

EPOCH = "epoch"
STEP = "step"
# Metrics are logged as float32 (about 7 significant digits); more would only print float32 noise such as
# ``0.30000001192092896`` for a dropout rate of 0.3.
FLOAT_FORMAT = "%.7g"
_UNNAMED = "Unnamed: "  # how pandas names a column with an empty header (the row numbers)

# A source of metrics: a Lightning ``metrics.csv`` path, a DataFrame, or rows as mappings.
FitlogSource = Union[str, os.PathLike, pd.DataFrame, Sequence[Mapping[str, object]]]  # noqa: UP007


def _as_frame(source: FitlogSource) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise AutoLFADSError(f"metrics file {path} does not exist; nothing was logged")
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
    return pd.DataFrame(list(source))


def epoch_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Fold one log (one trial or one generation of it) into one row per epoch, sorted by epoch.

    Rows without an epoch take the next logged epoch; rows after the last epoch are dropped.
    """
    if frame.empty or EPOCH not in frame.columns:
        return pd.DataFrame(columns=[EPOCH])
    frame = frame.copy()
    frame[EPOCH] = frame[EPOCH].bfill()
    frame = frame.dropna(subset=[EPOCH])
    frame[EPOCH] = frame[EPOCH].astype(int)
    # groupby().last() takes the last non-null value of each column within the epoch.
    return frame.groupby(EPOCH, sort=True).last().reset_index()


def _ordered_columns(columns: Iterable[str]) -> list[str]:
    """``epoch``, the PBT identity columns, ``step``, then the metrics alphabetically."""
    columns = list(columns)
    first = [c for c in (EPOCH, WORKER_ID, GENERATION, STEP) if c in columns]
    return first + sorted(c for c in columns if c not in first)


def fitlog_frame(
    sources: FitlogSource | Sequence[FitlogSource],
    worker_ids: Sequence[int] | None = None,
    generations: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Build the fitlog table from one source or a list of them.

    ``worker_ids``/``generations`` (one per source) label each source's rows for PBT; a source that already
    has ``worker_id``/``generation`` columns keeps them. With a ``worker_id`` column, a trial that logs an
    epoch twice (after restoring a winner's checkpoint) keeps the last row for that epoch.
    """
    if isinstance(sources, str | os.PathLike | pd.DataFrame):
        sources = [sources]
    elif sources and isinstance(sources[0], Mapping):
        sources = [sources]  # one list of rows
    sources = list(sources)
    for name, labels in ((WORKER_ID, worker_ids), (GENERATION, generations)):
        if labels is not None and len(labels) != len(sources):
            raise ValueError(f"{len(labels)} {name} values for {len(sources)} fitlog sources")
    frames = []
    for index, source in enumerate(sources):
        raw = _as_frame(source)
        if WORKER_ID in raw.columns or GENERATION in raw.columns:
            # Already labelled (TUNE's rows): fold per label so epochs of different trials never merge.
            keys = [c for c in (WORKER_ID, GENERATION) if c in raw.columns]
            parts = []
            for labels, part in raw.groupby(keys, sort=False):
                folded = epoch_rows(part.drop(columns=keys))
                for key, value in zip(keys, labels, strict=True):
                    folded[key] = value
                parts.append(folded)
            rows = pd.concat(parts, ignore_index=True) if parts else epoch_rows(raw)
        else:
            rows = epoch_rows(raw)
        if worker_ids is not None:
            rows[WORKER_ID] = worker_ids[index]
        if generations is not None:
            rows[GENERATION] = generations[index]
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[EPOCH])
    if WORKER_ID in frame.columns:
        frame = frame.drop_duplicates(subset=[WORKER_ID, EPOCH], keep="last")
        frame = frame.sort_values([WORKER_ID, EPOCH], kind="stable")
    frame = frame.dropna(axis="columns", how="all")
    for column in (EPOCH, WORKER_ID, GENERATION, STEP):
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    return frame[_ordered_columns(frame.columns)].reset_index(drop=True)


def write_fitlog(
    sources: FitlogSource | Sequence[FitlogSource],
    path: str | os.PathLike[str],
    worker_ids: Sequence[int] | None = None,
    generations: Sequence[int] | None = None,
) -> Path:
    """Write ``fitlog.csv`` atomically from Lightning ``metrics.csv`` files, DataFrames or row lists.

    Single model: ``write_fitlog(out / "csv_logs/metrics.csv", out / "fitlog.csv")``. PBT: pass one source
    per (trial, generation) with ``worker_ids`` (persistent trial indices) and ``generations``, or one
    DataFrame that already has those columns.
    """
    frame = fitlog_frame(sources, worker_ids=worker_ids, generations=generations)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=True, float_format=FLOAT_FORMAT)  # the leading unnamed row number
    return Path(path)


def read_fitlog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``fitlog.csv`` written by :func:`write_fitlog` (or by a version without the row numbers)."""
    frame = pd.read_csv(path)
    if len(frame.columns) and str(frame.columns[0]).startswith(_UNNAMED):
        frame = frame.set_index(frame.columns[0]).rename_axis(None)
    return frame


__all__ = ["epoch_rows", "fitlog_frame", "read_fitlog", "write_fitlog"]
