"""Resume state as plain data: ``pbt_state.json``, read back and checked, never an unpickled object.

``autolfads run --resume`` does not call Ray's ``Tuner.restore``: that unpickles ``tuner.pkl`` and the
experiment state from OUT (a crafted file there would run code as the driver) and needs Ray's private
``Tuner._local_tuner`` to re-attach live callbacks. Instead, after every tournament the scheduler writes
the generation boundary and, per population member (worker id), its hyperparameters and the checkpoint
it holds at that boundary, relative to the experiment directory (the run may move before it resumes). A
resume builds a *fresh* Tuner whose members start there:

- :func:`read_resume_point` reads that JSON and checks every field (types, ranges, worker ids, HP names,
  checkpoint paths that stay inside the experiment); anything else is refused with one line;
- the member's HP values go into the fresh Tuner's ``param_space``; the scheduler puts each member at the
  boundary (``BinaryTournamentPBT(resume=…)``);
- the trial loads the member's checkpoint through :class:`ResumeCheckpoints`, weights-only
  (``autolfads.model.checkpoint``), exactly like a checkpoint Ray hands it after an exploit.

Trial ids are Ray's and change on a resume; everything that must survive one is keyed by worker id (the
stopper's records, MLflow's child runs, this file).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolfads.config.pbt import PBTSettings
from autolfads.errors import AutoLFADSError, StorageError
from autolfads.locations import check_object_key

STATE_FILE = "pbt_state.json"
STATE_VERSION = 2


@dataclass(frozen=True)
class MemberState:
    """One member at the boundary: its hyperparameters and the checkpoint (relative to the experiment)."""

    checkpoint: str
    hps: dict[str, float]
    metrics: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumePoint:
    """The last completed generation: every member's state at ``boundary`` epochs."""

    boundary: int
    exploits: int
    members: dict[int, MemberState]

    def scores(self, metric: str) -> dict[int, float]:
        """Each member's ``metric`` at the boundary, where it was recorded as a finite number."""
        found = {}
        for worker, member in self.members.items():
            value = member.metrics.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                found[worker] = float(value)
        return found


class ResumeStateError(AutoLFADSError):
    """``pbt_state.json`` is not resume state this version wrote; the message says what is wrong."""


def state_record(boundary: int, exploits: int, members: Mapping[int, MemberState]) -> dict[str, Any]:
    """The JSON-able record of a resume point (what :func:`read_resume_point` reads)."""
    return {
        "version": STATE_VERSION,
        "boundary": int(boundary),
        "exploits": int(exploits),
        "members": {
            str(worker): {"checkpoint": m.checkpoint, "hps": dict(m.hps), "metrics": dict(m.metrics)}
            for worker, m in sorted(members.items())
        },
    }


def read_resume_point(run_dir: str | os.PathLike[str], settings: PBTSettings) -> ResumePoint | None:
    """The resume point saved in ``run_dir`` (None when no generation completed), every field checked."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResumeStateError(f"{path}: not readable JSON ({error}); {_RESTART}") from None
    return parse_resume_point(data, settings, str(path))


_RESTART = "delete it to start the population over"


def parse_resume_point(data: Any, settings: PBTSettings, where: str = STATE_FILE) -> ResumePoint:
    """Check a decoded ``pbt_state.json`` against the run's settings; one ResumeStateError line if wrong."""
    if not isinstance(data, dict):
        raise ResumeStateError(f"{where}: expected a JSON object, found {type(data).__name__}; {_RESTART}")
    boundary = _int(data.get("boundary"), f"{where}: boundary")
    if boundary < 1 or not settings.is_boundary(boundary):
        raise ResumeStateError(f"{where}: boundary {boundary} is not a generation boundary; {_RESTART}")
    exploits = _int(data.get("exploits", 0), f"{where}: exploits")
    raw = data.get("members")
    if raw is None and isinstance(data.get("trials"), dict):  # written before version 2: keyed by trial
        raw = {str((e.get("config") or {}).get("worker_id")): _v1(e) for e in data["trials"].values()}
    if not isinstance(raw, dict):
        raise ResumeStateError(f"{where}: expected 'members', a mapping of worker ids; {_RESTART}")
    members = {}
    for key, entry in raw.items():
        worker = _int(int(key) if str(key).isdigit() else key, f"{where}: member id")
        if not 0 <= worker < settings.num_samples:
            raise ResumeStateError(
                f"{where}: member {worker} is outside the population of {settings.num_samples}; {_RESTART}"
            )
        members[worker] = _member(entry, settings, f"{where}: members.{worker}")
    return ResumePoint(boundary=boundary, exploits=exploits, members=members)


def _member(entry: Any, settings: PBTSettings, where: str) -> MemberState:
    if not isinstance(entry, dict):
        raise ResumeStateError(f"{where}: expected a mapping, found {type(entry).__name__}")
    checkpoint = entry.get("checkpoint")
    if not isinstance(checkpoint, str):
        raise ResumeStateError(f"{where}.checkpoint: expected a path in the experiment, found {checkpoint!r}")
    try:
        check_object_key(checkpoint, f"{where}.checkpoint")
    except StorageError as error:
        raise ResumeStateError(str(error)) from None
    hps = entry.get("hps")
    if not isinstance(hps, dict) or set(hps) != set(settings.space):
        found = sorted(hps) if isinstance(hps, dict) else hps
        raise ResumeStateError(f"{where}.hps: expected values for {sorted(settings.space)}, found {found!r}")
    values = {}
    for key, value in hps.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ResumeStateError(f"{where}.hps.{key}: expected a finite number, found {value!r}")
        values[key] = float(value)
    metrics = entry.get("metrics") or {}
    if not isinstance(metrics, dict):
        metrics = {}
    plain = {str(k): v for k, v in metrics.items() if isinstance(v, int | float | str) and len(str(v)) < 200}
    return MemberState(checkpoint=checkpoint, hps=values, metrics=plain)


def _v1(entry: Any) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        return entry
    config = entry["config"]
    return {**entry, "hps": {k: v for k, v in config.items() if k != "worker_id"}}


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResumeStateError(f"{where}: expected a non-negative integer, found {value!r}; {_RESTART}")
    return value


@dataclass(frozen=True)
class ResumeCheckpoints:
    """Where each resumed member's boundary checkpoint is, for the trials (picklable: sent to workers).

    ``experiment`` is the experiment's path on ``filesystem`` (pyarrow; None: the local filesystem),
    as Ray Tune's storage names it: an absolute path, or ``bucket/prefix`` on S3.
    """

    experiment: str
    filesystem: Any
    members: dict[int, str]

    def location(self, worker: int) -> tuple[Any, str] | None:
        """``(pyarrow filesystem, checkpoint directory)`` of ``worker``'s checkpoint, or None."""
        relative = self.members.get(worker)
        if relative is None:
            return None
        from pyarrow import fs as pafs

        return self.filesystem or pafs.LocalFileSystem(), f"{self.experiment.rstrip('/')}/{relative}"


__all__ = [
    "STATE_FILE",
    "MemberState",
    "ResumeCheckpoints",
    "ResumePoint",
    "ResumeStateError",
    "parse_resume_point",
    "read_resume_point",
    "state_record",
]
