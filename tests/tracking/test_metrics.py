"""The job series (``autolfads.tracking.series``) and RunMetrics, served over real HTTP and scraped the way
Prometheus does."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autolfads.tracking.metrics import MetricsServer, RunMetrics, start_metrics_server
from autolfads.tracking.series import JOB_LABELS, PHASES, SERIES, samples

TRAINING = {
    "phase": "training",
    "generation": 1,
    "generations_total": 3,
    "epochs_done": 10,
    "epochs_total": 24,
    "epoch_seconds": 0.25,
    "best_metric": 0.9,
    "trials_running": 2,
    "trials_paused": 1,
    "trials_errored": 1,
    "trials_done": 0,
    "trials_total": 4,
    "exploits": 2,
    "checkpoint_bytes": 1234,
    "elapsed_s": 12.5,
    "eta_s": 30.0,
    "updated_at": "2026-11-30T12:00:00+00:00",
}


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def parse(text: str) -> dict[str, float]:
    """A scrape as ``{"name{label=value,...}": value}`` (labels sorted)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


@pytest.fixture
def served() -> Iterator[tuple[RunMetrics, MetricsServer]]:
    metrics = RunMetrics(job="demo")
    server = start_metrics_server(0, metrics, addr="127.0.0.1")
    try:
        yield metrics, server
    finally:
        server.shutdown()


def test_a_scrape_shows_the_latest_progress_record_with_job_labels(served) -> None:
    metrics, server = served
    before = parse(scrape_text(server.port))
    metrics.update_from_progress(TRAINING)
    during = parse(scrape_text(server.port))
    metrics.update_from_progress({**TRAINING, "phase": "sampling", "phase_done": 3, "phase_total": 12})
    sampling = parse(scrape_text(server.port))

    assert not before  # nothing known yet: no series with made-up values
    job = "job=demo,namespace="
    assert during[f"autolfads_job_phase{{{job},phase=training}}"] == 1
    assert during[f"autolfads_job_phase{{{job},phase=sampling}}"] == 0
    assert during[f"autolfads_job_generation{{{job}}}"] == 1
    assert during[f"autolfads_job_generations_planned{{{job}}}"] == 3
    assert during[f"autolfads_job_epochs_done{{{job}}}"] == 10
    assert during[f"autolfads_job_best_valid_recon_smth{{{job}}}"] == pytest.approx(0.9)
    assert during[f"autolfads_job_trials{{{job},state=errored}}"] == 1
    assert during[f"autolfads_job_exploits_total{{{job}}}"] == 2
    assert during[f"autolfads_job_checkpoint_bytes_total{{{job}}}"] == 1234
    assert during[f"autolfads_job_eta_seconds{{{job}}}"] == 30
    assert during[f"autolfads_job_progress_updated_timestamp_seconds{{{job}}}"] == 1796040000
    assert sampling[f"autolfads_job_phase{{{job},phase=sampling}}"] == 1
    assert sampling[f"autolfads_job_phase_progress{{{job}}}"] == pytest.approx(0.25)


def test_every_series_the_code_declares_is_what_a_scrape_lists(served) -> None:
    metrics, server = served
    metrics.update_from_progress({**TRAINING, "phase_done": 1, "phase_total": 2})
    families = {f.name: f for f in text_string_to_metric_families(scrape_text(server.port))}

    for series in SERIES:
        name = series.name.removesuffix("_total") if series.kind == "counter" else series.name
        assert families[name].type == series.kind, series.name
        for sample in families[name].samples:
            assert set(sample.labels) == {*JOB_LABELS, *series.labels}, sample


@pytest.mark.parametrize(
    ("progress", "left_out"),
    [
        ({"best_metric": None}, "autolfads_job_best_valid_recon_smth"),
        ({"best_metric": float("nan")}, "autolfads_job_best_valid_recon_smth"),
        ({"eta_s": None}, "autolfads_job_eta_seconds"),
        ({"exploits": -1}, "autolfads_job_exploits_total"),
        ({"exploits": True}, "autolfads_job_exploits_total"),
        ({"phase": "dancing"}, "autolfads_job_phase"),
        ({"updated_at": "yesterday"}, "autolfads_job_progress_updated_timestamp_seconds"),
    ],
)
def test_a_missing_or_malformed_field_is_left_out_not_made_up(progress: dict, left_out: str) -> None:
    names = {series.name for series, _, _ in samples({**TRAINING, **progress})}
    assert left_out not in names
    assert "autolfads_job_generation" in names


def test_the_phase_series_has_exactly_one_phase_set() -> None:
    for phase in PHASES:
        values = {
            extra["phase"]: v for s, extra, v in samples({"phase": phase}) if s.name == "autolfads_job_phase"
        }
        assert values == {p: float(p == phase) for p in PHASES}


def test_two_runs_in_one_process_keep_separate_registries() -> None:
    first, second = RunMetrics(job="a"), RunMetrics(job="b")
    first.update_from_progress(TRAINING)
    labels = {"namespace": "", "job": "a"}
    assert first.registry.get_sample_value("autolfads_job_generation", labels) == 1
    assert second.registry.get_sample_value("autolfads_job_generation", {**labels, "job": "b"}) is None
