"""Prometheus metrics of one run, served on ``/metrics`` by ``autolfads run --metrics-port N`` (laptops).

The series are those of :mod:`autolfads.tracking.series` — the same names and labels the Kubernetes
operator exports for every job on a cluster — computed at scrape time from the run's latest
``progress.json`` record. The record is the one source (its one writer is the driver's
``RunProgress``), so no number is written from two code paths and two scrapes never disagree.

One :class:`RunMetrics` per run, in its own ``CollectorRegistry`` (never the process-global one, so two
runs in one process or a test suite never collide).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from autolfads.tracking.series import families


class RunMetrics(Collector):
    """The run's series, from the latest progress record it was given (thread-safe)."""

    def __init__(self, job: str = "", namespace: str = "") -> None:
        self.labels = {"namespace": namespace, "job": job}
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def update_from_progress(self, progress: Mapping[str, Any]) -> None:
        """A progress listener: keep the latest ``progress.json`` record."""
        with self._lock:
            self._progress = dict(progress)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            jobs = [] if self._progress is None else [(self.labels, self._progress)]
        yield from families(jobs)


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


__all__ = ["MetricsServer", "RunMetrics", "start_metrics_server"]
