"""The trace every exploit leaves (STYLE rule 9): one JSON line per event, then ``pbt_history.csv``.

The scheduler appends to ``pbt_history.jsonl`` in the run directory while the run goes on (so a console
view, MLflow or the operator can follow it); the driver turns it into ``pbt_history.csv`` at the end. A
resumed run that replays a generation writes its exploits again: the CSV keeps the last record per
(generation, loser).

CSV columns: ``generation, epoch, loser, loser_trial, winner, winner_trial, loser_score, winner_score``
(``loser``/``winner`` are persistent worker ids, as in ``fitlog.csv``), then per hyperparameter
``old/<key>`` (the loser's value before), ``winner/<key>`` (the value it cloned), ``new/<key>`` (after
explore) and ``op/<key>`` (``* 0.8``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HISTORY_JSONL = "pbt_history.jsonl"
HISTORY_CSV = "pbt_history.csv"


@dataclass(frozen=True)
class ExploitRecord:
    """One loser cloning one winner at one generation boundary."""

    generation: int  # the generation that just ended (0-based)
    epoch: int  # epochs completed at the boundary
    loser: int
    winner: int
    loser_trial: str
    winner_trial: str
    loser_score: float
    winner_score: float
    old: dict[str, float] = field(default_factory=dict)
    winner_hps: dict[str, float] = field(default_factory=dict)
    new: dict[str, float] = field(default_factory=dict)
    operations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True, sort_keys=True)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ExploitRecord:
        return cls(**dict(data))

    def flat(self) -> dict[str, Any]:
        """One CSV row."""
        row: dict[str, Any] = {
            "generation": self.generation,
            "epoch": self.epoch,
            "loser": self.loser,
            "loser_trial": self.loser_trial,
            "winner": self.winner,
            "winner_trial": self.winner_trial,
            "loser_score": self.loser_score,
            "winner_score": self.winner_score,
        }
        for key in self.new:
            row[f"old/{key}"] = self.old.get(key)
            row[f"winner/{key}"] = self.winner_hps.get(key)
            row[f"new/{key}"] = self.new[key]
            row[f"op/{key}"] = self.operations.get(key, "")
        return row


def append_record(path: str | os.PathLike[str], record: ExploitRecord) -> None:
    """Append one line and flush it to disk (a killed driver loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(record.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: str | os.PathLike[str]) -> list[ExploitRecord]:
    """All complete records, the last one per (generation, loser), in event order."""
    path = Path(path)
    if not path.is_file():
        return []
    records: dict[tuple[int, int], ExploitRecord] = {}
    for line in _lines(path):
        try:
            record = ExploitRecord.from_mapping(json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue  # a line cut by a kill
        records.pop((record.generation, record.loser), None)
        records[(record.generation, record.loser)] = record
    return list(records.values())


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line


def write_history_csv(records: list[ExploitRecord], path: str | os.PathLike[str]) -> Path:
    """``pbt_history.csv`` (header only when nothing was exploited), written atomically."""
    import pandas as pd

    from autolfads.outputs.atomic import atomic_path

    columns = [
        "generation",
        "epoch",
        "loser",
        "loser_trial",
        "winner",
        "winner_trial",
        "loser_score",
        "winner_score",
    ]
    frame = pd.DataFrame([r.flat() for r in records])
    frame = frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


__all__ = [
    "HISTORY_CSV",
    "HISTORY_JSONL",
    "ExploitRecord",
    "append_record",
    "read_records",
    "write_history_csv",
]
