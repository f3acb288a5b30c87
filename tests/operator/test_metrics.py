"""The operator's Prometheus metrics: handler runs counted, errors classified, jobs counted by phase."""

from __future__ import annotations

import kopf
import pytest
from prometheus_client import REGISTRY

from operators import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (kopf.PermanentError("bad spec"), "permanent"),
        (kopf.TemporaryError("later"), "temporary"),
        (RuntimeError("bug"), "unexpected"),
    ],
)
def test_handler_errors_are_counted_by_kind_and_reraised(error: Exception, kind: str) -> None:
    @metrics.instrumented("test-errors")
    def handler() -> None:
        raise error

    before = sample("autolfads_operator_reconcile_errors_total", handler="test-errors", kind=kind)
    runs = sample("autolfads_operator_reconciles_total", handler="test-errors")
    with pytest.raises(type(error)):
        handler()
    assert sample("autolfads_operator_reconcile_errors_total", handler="test-errors", kind=kind) == before + 1
    assert sample("autolfads_operator_reconciles_total", handler="test-errors") == runs + 1


def test_handler_duration_is_observed_and_result_returned() -> None:
    @metrics.instrumented("test-ok")
    def handler(x: int) -> int:
        return x * 2

    count = sample("autolfads_operator_reconcile_duration_seconds_count", handler="test-ok")
    assert handler(x=21) == 42
    assert sample("autolfads_operator_reconcile_duration_seconds_count", handler="test-ok") == count + 1


def test_jobs_are_counted_by_their_last_seen_phase() -> None:
    phases = metrics.JobPhases()
    phases.record("a", "j1", None)
    phases.record("a", "j2", "Running")
    phases.record("b", "j1", "Running")
    phases.record("a", "j2", "Succeeded")
    phases.forget("b", "j1")
    (family,) = phases.collect()
    assert {s.labels["phase"]: s.value for s in family.samples} == {
        "Pending": 1,
        "Running": 0,
        "Succeeded": 1,
        "Failed": 0,
    }


def test_each_jobs_progress_is_exported_with_its_namespace_and_name_until_it_is_deleted() -> None:
    progress = metrics.JobProgress()
    running = {"phase": "training", "generation": 1, "generations_total": 4, "best_metric": 0.8}
    progress.record("lab-a", "lorenz", running)
    progress.record("lab-b", "lorenz", {**running, "generation": 3})
    progress.record("lab-a", "lorenz", {**running, "generation": 2})  # a later read replaces the first
    families = {f.name: f for f in progress.collect()}

    generation = {
        (s.labels["namespace"], s.labels["job"]): s.value
        for s in families["autolfads_job_generation"].samples
    }
    assert generation == {("lab-a", "lorenz"): 2, ("lab-b", "lorenz"): 3}
    phases = [s for s in families["autolfads_job_phase"].samples if s.value == 1]
    assert {(s.labels["namespace"], s.labels["phase"]) for s in phases} == {
        ("lab-a", "training"),
        ("lab-b", "training"),
    }

    progress.forget("lab-a", "lorenz")
    left = {f.name: f for f in progress.collect()}
    assert [s.labels["namespace"] for s in left["autolfads_job_generation"].samples] == ["lab-b"]


def test_the_operator_registry_serves_the_job_series() -> None:
    metrics.JOB_PROGRESS.record("lab-z", "served", {"phase": "sampling", "phase_done": 1, "phase_total": 4})
    try:
        assert sample("autolfads_job_phase_progress", namespace="lab-z", job="served") == 0.25
    finally:
        metrics.JOB_PROGRESS.forget("lab-z", "served")
