"""The Prometheus series of a job, as a pure function of its ``progress.json`` record.

Why from ``progress.json``: one record already holds everything a dashboard shows about a run, it has one
writer (``autolfads.tune.progress.RunProgress``), and both places that export metrics read it:

- on Kubernetes the **operator** exports every job's series from the ``progress.json`` it already follows
  (``operators/metrics.py``), with ``namespace``/``job`` taken from the AutoLFADSJob itself. Drivers then
  need no port (all of a lab's drivers share its Ray head pod), dedicated clusters need no monitor of
  their own, and a job cannot claim another lab's labels;
- on a laptop ``autolfads run --metrics-port N`` serves the same series for its one run
  (``autolfads.tracking.metrics.RunMetrics``, ``namespace=""``, ``job`` = the run name).

So a dashboard query written once works for both. :data:`SERIES` names every series with its type and
labels; the chart's dashboard test checks its queries against it.

Series (every one also has the labels ``namespace`` and ``job``)::

    autolfads_job_phase{phase}                      gauge    1 for the current phase, 0 for the others
    autolfads_job_generation                        gauge    generations completed
    autolfads_job_generations_planned               gauge    generations trainer.max_epochs makes
    autolfads_job_epochs_done                       gauge    epochs completed, all members together
    autolfads_job_epochs_planned                    gauge    members x max_epochs
    autolfads_job_epoch_seconds                     gauge    mean wall time of one member's epoch
    autolfads_job_best_valid_recon_smth             gauge    best (lowest) valid/recon_smth so far
    autolfads_job_trials{state}                     gauge    running, paused (incl. pending), errored, done
    autolfads_job_population                        gauge    members (trials) in the population
    autolfads_job_exploits_total                    counter  exploits so far
    autolfads_job_checkpoint_bytes_total            counter  checkpoint bytes written (this attempt)
    autolfads_job_phase_progress                    gauge    fraction of the current phase's units done
                                                             (posterior sampling: batches), 0..1
    autolfads_job_elapsed_seconds                   gauge    since this attempt started
    autolfads_job_eta_seconds                       gauge    estimated seconds left in the current phase
    autolfads_job_progress_updated_timestamp_seconds gauge   when progress.json was written (staleness)

A value the record does not have (no best metric before the first epoch, no ETA) is left out rather
than exported as 0 or NaN, so a panel shows a gap instead of a wrong number.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JOB_LABELS = ("namespace", "job")
PHASES = ("starting", "training", "sampling", "writing", "succeeded", "failed", "interrupted")
TRIAL_STATES = ("running", "paused", "errored", "done")


@dataclass(frozen=True)
class Series:
    """One exported series: name, Prometheus type, help text, labels beyond ``namespace``/``job``."""

    name: str
    kind: str  # "gauge" | "counter" (a counter's name ends in _total)
    help: str
    labels: tuple[str, ...] = ()

    @property
    def all_labels(self) -> tuple[str, ...]:
        return (*JOB_LABELS, *self.labels)


# progress.json key -> series, for the plain numbers
_NUMBERS = {
    "generation": Series("autolfads_job_generation", "gauge", "PBT generations completed"),
    "generations_total": Series(
        "autolfads_job_generations_planned", "gauge", "PBT generations that trainer.max_epochs makes"
    ),
    "epochs_done": Series("autolfads_job_epochs_done", "gauge", "Epochs completed by all members together"),
    "epochs_total": Series("autolfads_job_epochs_planned", "gauge", "Members x trainer.max_epochs"),
    "epoch_seconds": Series(
        "autolfads_job_epoch_seconds", "gauge", "Mean wall time of one member's epoch (recent epochs)"
    ),
    "best_metric": Series(
        "autolfads_job_best_valid_recon_smth", "gauge", "Best (lowest) smoothed validation recon cost so far"
    ),
    "trials_total": Series("autolfads_job_population", "gauge", "Members (trials) in the population"),
    "exploits": Series(
        "autolfads_job_exploits_total", "counter", "PBT exploits (a member cloned a better one)"
    ),
    "checkpoint_bytes": Series(
        "autolfads_job_checkpoint_bytes_total", "counter", "Bytes of trial checkpoints written (this attempt)"
    ),
    "elapsed_s": Series("autolfads_job_elapsed_seconds", "gauge", "Seconds since this attempt started"),
    "eta_s": Series("autolfads_job_eta_seconds", "gauge", "Estimated seconds left in the current phase"),
}
PHASE = Series("autolfads_job_phase", "gauge", "1 for the job's current phase, 0 for the others", ("phase",))
TRIALS = Series("autolfads_job_trials", "gauge", "Trials by state (paused includes pending)", ("state",))
PHASE_PROGRESS = Series(
    "autolfads_job_phase_progress", "gauge", "Fraction of the current phase's units done (0..1)"
)
UPDATED = Series(
    "autolfads_job_progress_updated_timestamp_seconds", "gauge", "When progress.json was last written"
)
SERIES: tuple[Series, ...] = (PHASE, *_NUMBERS.values(), TRIALS, PHASE_PROGRESS, UPDATED)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def samples(progress: Mapping[str, Any]) -> list[tuple[Series, dict[str, str], float]]:
    """``(series, extra labels, value)`` for one job's progress record; malformed fields are left out."""
    out: list[tuple[Series, dict[str, str], float]] = []
    phase = progress.get("phase")
    if phase in PHASES:
        out += [(PHASE, {"phase": p}, 1.0 if p == phase else 0.0) for p in PHASES]
    for key, series in _NUMBERS.items():
        value = _number(progress.get(key))
        if value is not None and (series.kind != "counter" or value >= 0):
            out.append((series, {}, value))
    for state in TRIAL_STATES:
        value = _number(progress.get(f"trials_{state}"))
        if value is not None:
            out.append((TRIALS, {"state": state}, value))
    done, total = _number(progress.get("phase_done")), _number(progress.get("phase_total"))
    if done is not None and total:
        out.append((PHASE_PROGRESS, {}, min(max(done / total, 0.0), 1.0)))
    updated = progress.get("updated_at")
    if isinstance(updated, str):
        with contextlib.suppress(ValueError):
            out.append((UPDATED, {}, datetime.fromisoformat(updated).timestamp()))
    return out


def families(jobs: Iterable[tuple[Mapping[str, str], Mapping[str, Any]]]) -> list[Any]:
    """Prometheus metric families for ``(job labels, progress)`` pairs (``prometheus_client.core``).

    ``job labels`` holds ``namespace`` and ``job``. Every series of :data:`SERIES` is yielded (empty when
    no job has it), so a scrape always lists the same names.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    built: dict[str, Any] = {}
    for series in SERIES:
        family_type = CounterMetricFamily if series.kind == "counter" else GaugeMetricFamily
        # CounterMetricFamily takes the name without _total and adds it back
        name = series.name.removesuffix("_total") if series.kind == "counter" else series.name
        built[series.name] = family_type(name, series.help, labels=list(series.all_labels))
    for labels, progress in jobs:
        base = [str(labels.get(k, "")) for k in JOB_LABELS]
        for series, extra, value in samples(progress):
            built[series.name].add_metric(base + [extra[k] for k in series.labels], value)
    return list(built.values())


__all__ = ["JOB_LABELS", "PHASES", "SERIES", "TRIAL_STATES", "Series", "families", "samples"]
