"""RunMetrics served over real HTTP and scraped the way Prometheus does."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autolfads.tracking.metrics import MetricsServer, RunMetrics, start_metrics_server


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as ``{"name{label=value}": value}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest.fixture
def served() -> Iterator[tuple[RunMetrics, MetricsServer]]:
    metrics = RunMetrics()
    server = start_metrics_server(0, metrics, addr="127.0.0.1")
    try:
        yield metrics, server
    finally:
        server.shutdown()


def test_scrapes_show_generation_best_metric_and_counters_moving(served) -> None:
    metrics, server = served
    before = scrape(server.port)

    metrics.update_from_progress(
        {
            "phase": "running",
            "generation": 1,
            "best_metric": 0.9,
            "trials_running": 3,
            "trials_total": 4,
            "exploits": 0,
        }
    )
    for duration in (0.2, 0.3):
        metrics.observe_epoch(duration)
    middle = scrape(server.port)
    metrics.update_from_progress({"generation": 2, "best_metric": 0.7, "exploits": 2})
    metrics.update_from_progress({"generation": 2, "best_metric": 0.8, "exploits": 2})
    metrics.add_checkpoint_bytes(1234)
    after = scrape(server.port)

    assert before["autolfads_generation"] == 0
    assert before["autolfads_epochs_total"] == 0
    assert middle["autolfads_generation"] == 1
    assert middle["autolfads_best_valid_recon_smth"] == pytest.approx(0.9)
    assert middle["autolfads_trials{state=running}"] == 3
    assert middle["autolfads_trials{state=pending}"] == 1
    assert middle["autolfads_epochs_total"] == 2
    assert middle["autolfads_epoch_duration_seconds_count"] == 2
    assert middle["autolfads_epoch_duration_seconds_sum"] == pytest.approx(0.5)
    assert after["autolfads_generation"] == 2
    assert after["autolfads_best_valid_recon_smth"] == pytest.approx(0.7)  # the lowest value stays
    assert after["autolfads_exploits_total"] == 2
    assert after["autolfads_checkpoint_bytes_total"] == 1234


def test_trial_states_not_reported_drop_to_zero() -> None:
    metrics = RunMetrics()
    metrics.set_trial_states({"RUNNING": 4})
    metrics.set_trial_states({"TERMINATED": 4})

    value = metrics.registry.get_sample_value
    assert value("autolfads_trials", {"state": "running"}) == 0
    assert value("autolfads_trials", {"state": "terminated"}) == 4


def test_two_runs_in_one_process_keep_separate_registries() -> None:
    first, second = RunMetrics(), RunMetrics()
    first.observe_epoch(1.0)
    assert second.registry.get_sample_value("autolfads_epochs_total") == 0
    assert first.registry.get_sample_value("autolfads_epochs_total") == 1


def test_non_finite_metric_values_never_become_the_best() -> None:
    metrics = RunMetrics()
    metrics.observe_best(float("nan"))
    metrics.observe_best(0.5)
    metrics.observe_best(float("-inf"))
    assert metrics.registry.get_sample_value("autolfads_best_valid_recon_smth") == 0.5
