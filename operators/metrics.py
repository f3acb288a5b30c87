"""Prometheus metrics of the operator: every job's progress, jobs by phase, reconciles, errors, durations.

Served on ``AUTOLFADS_METRICS_PORT`` (default 8080) from ``@kopf.on.startup``; liveness is kopf's own
``--liveness`` endpoint. Jobs by phase is computed at scrape time from what the operator last saw of each
job, so it is right after a restart as soon as the first watch listing arrives.

Per-job series (``autolfads_job_*{namespace, job, …}``, :mod:`autolfads.tracking.series`) come from the
``progress.json`` the progress timer reads anyway: the operator is the one exporter of a cluster's jobs,
so drivers open no port (a lab's drivers share its Ray head pod) and dedicated clusters need no monitor.
``namespace`` and ``job`` are the AutoLFADSJob's own, never values from the run, so no job can pose as
another lab's. A job's series go when the job is deleted.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import kopf
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from operators.status import PHASES

RECONCILES = Counter(
    "autolfads_operator_reconciles_total", "Handler runs, by handler.", ["handler"]
)
ERRORS = Counter(
    "autolfads_operator_reconcile_errors_total",
    "Handler runs that raised, by handler and kind (permanent, temporary, unexpected).",
    ["handler", "kind"],
)
DURATION = Histogram(
    "autolfads_operator_reconcile_duration_seconds",
    "Wall time of handler runs, by handler.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

F = TypeVar("F", bound=Callable[..., Any])


class JobPhases(Collector):
    """``autolfads_operator_jobs{phase}``: how many AutoLFADSJobs the operator sees in each phase."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase: dict[tuple[str, str], str] = {}

    def record(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            self._phase[(namespace, name)] = phase or "Pending"

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phase.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("autolfads_operator_jobs", "AutoLFADSJobs by phase.", labels=["phase"])
        with self._lock:
            phases = list(self._phase.values())
        for phase in PHASES:
            family.add_metric([phase], phases.count(phase))
        yield family


class JobProgress(Collector):
    """The ``autolfads_job_*`` series of every job, from the last ``progress.json`` read for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, namespace: str, name: str, progress: Mapping[str, Any]) -> None:
        with self._lock:
            self._progress[(namespace, name)] = dict(progress)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._progress.pop((namespace, name), None)

    def collect(self) -> Iterator[Any]:
        from autolfads.tracking.series import families

        with self._lock:
            jobs = [({"namespace": ns, "job": name}, p) for (ns, name), p in sorted(self._progress.items())]
        yield from families(jobs)


JOBS = JobPhases()
REGISTRY.register(JOBS)
JOB_PROGRESS = JobProgress()
REGISTRY.register(JOB_PROGRESS)


def instrumented(handler: str) -> Callable[[F], F]:
    """Count, time and classify the errors of a (sync) handler; kopf still sees the original exception."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            RECONCILES.labels(handler).inc()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except kopf.PermanentError:
                ERRORS.labels(handler, "permanent").inc()
                raise
            except kopf.TemporaryError:
                ERRORS.labels(handler, "temporary").inc()
                raise
            except Exception:
                ERRORS.labels(handler, "unexpected").inc()
                raise
            finally:
                DURATION.labels(handler).observe(time.perf_counter() - start)

        return run  # type: ignore[return-value]

    return wrap
