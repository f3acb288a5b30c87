"""Prometheus metrics of a run, served on ``/metrics`` by ``autolfads run --metrics-port N``.

One :class:`RunMetrics` per run, in its own ``CollectorRegistry`` (never the process-global one, so two
runs in one process or a test suite never collide). It is fed by the same progress events as the console
view and ``progress.json`` (``update_from_progress``) plus per-epoch and per-checkpoint events from the
Ray callback (``observe_epoch``, ``add_checkpoint_bytes``).

Exposed names (Prometheus conventions: ``autolfads_`` prefix, base units in the name, ``_total`` counters)::

    autolfads_trials{state="running|pending|paused|terminated|error"}   gauge
    autolfads_generation                                               gauge
    autolfads_epochs_total                                             counter
    autolfads_best_valid_recon_smth                                    gauge (lower is better)
    autolfads_exploits_total                                           counter
    autolfads_epoch_duration_seconds                                   histogram
    autolfads_checkpoint_bytes_total                                   counter
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

TRIAL_STATES = ("pending", "running", "paused", "terminated", "error")
_DONE_PHASES = ("finished", "succeeded", "done", "failed")
EPOCH_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class RunMetrics:
    """The run's metrics and the events that move them (all methods are cheap and thread-safe)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.trials = Gauge("autolfads_trials", "PBT trials by state", ["state"], registry=self.registry)
        self.generation = Gauge("autolfads_generation", "Current PBT generation", registry=self.registry)
        self.epochs = Counter(
            "autolfads_epochs", "Training epochs completed, all trials", registry=self.registry
        )
        self.best = Gauge(
            "autolfads_best_valid_recon_smth",
            "Best (lowest) smoothed validation reconstruction cost so far",
            registry=self.registry,
        )
        self.exploits = Counter(
            "autolfads_exploits", "PBT exploits (a trial cloned a better one)", registry=self.registry
        )
        self.epoch_duration = Histogram(
            "autolfads_epoch_duration_seconds",
            "Wall time of one training epoch of one trial",
            buckets=EPOCH_BUCKETS_S,
            registry=self.registry,
        )
        self.checkpoint_bytes = Counter(
            "autolfads_checkpoint_bytes", "Bytes of trial checkpoints written", registry=self.registry
        )
        self._lock = threading.Lock()
        self._exploits_seen = 0
        self._best: float | None = None
        self.best.set(math.nan)
        for state in TRIAL_STATES:
            self.trials.labels(state=state).set(0)

    def set_trial_states(self, counts: Mapping[str, int]) -> None:
        """Trials per state (Ray's statuses, any case); states not given are set to 0."""
        lowered = {k.lower(): v for k, v in counts.items()}
        for state in {*TRIAL_STATES, *lowered}:
            self.trials.labels(state=state).set(lowered.get(state, 0))

    def set_generation(self, generation: int) -> None:
        self.generation.set(generation)

    def observe_best(self, value: float) -> None:
        """A new metric value; the gauge keeps the lowest finite one."""
        if value is None or not math.isfinite(value):
            return
        with self._lock:
            if self._best is None or value < self._best:
                self._best = value
                self.best.set(value)

    def observe_epoch(self, duration_s: float | None = None) -> None:
        """One trial finished one epoch (in ``duration_s`` seconds when known)."""
        self.epochs.inc()
        if duration_s is not None and math.isfinite(duration_s) and duration_s >= 0:
            self.epoch_duration.observe(duration_s)

    def add_exploits(self, count: int = 1) -> None:
        if count > 0:
            self.exploits.inc(count)

    def add_checkpoint_bytes(self, count: int) -> None:
        if count > 0:
            self.checkpoint_bytes.inc(count)

    def update_from_progress(self, progress: Mapping[str, Any]) -> None:
        """Apply a ``progress.json`` record (contracts §5): generation, best metric, trial counts, exploits.

        ``exploits`` there is a running total; the counter moves by the difference to the last total seen.
        """
        if isinstance(progress.get("generation"), int | float):
            self.set_generation(int(progress["generation"]))
        if isinstance(progress.get("best_metric"), int | float):
            self.observe_best(float(progress["best_metric"]))
        running, total = progress.get("trials_running"), progress.get("trials_total")
        if isinstance(running, int) and isinstance(total, int):
            paused, errored = progress.get("trials_paused"), progress.get("trials_errored")
            counts = {"running": running}
            if isinstance(paused, int):
                counts["paused"] = paused
            if isinstance(errored, int):
                counts["error"] = errored
            # Whatever is neither running, paused nor errored waits (or is done, at the end).
            rest = "terminated" if str(progress.get("phase", "")).lower() in _DONE_PHASES else "pending"
            counts[rest] = max(total - sum(counts.values()), 0)
            self.set_trial_states(counts)
        exploits = progress.get("exploits")
        if isinstance(exploits, int):
            with self._lock:
                delta, self._exploits_seen = (
                    exploits - self._exploits_seen,
                    max(exploits, self._exploits_seen),
                )
            self.add_exploits(delta)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``port`` is the real one (useful with port 0)."""

    port: int
    _server: Any
    _thread: threading.Thread

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(port: int, metrics: RunMetrics, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve ``metrics`` on ``http://addr:port/metrics`` from a daemon thread (port 0: any free port)."""
    server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return MetricsServer(port=int(server.server_address[1]), _server=server, _thread=thread)


__all__ = ["TRIAL_STATES", "MetricsServer", "RunMetrics", "start_metrics_server"]
