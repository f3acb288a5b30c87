"""The Grafana dashboard queries metrics that our code really exports (names drift silently otherwise)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from tests.helm.chart import CHART

DASHBOARD = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names(families: Iterable[Metric]) -> set[str]:
    return {f.name + suffix for f in families for suffix in SUFFIXES.get(f.type, ("",))}


def test_every_autolfads_metric_in_the_dashboard_is_exported() -> None:
    from autolfads.tracking.metrics import RunMetrics
    from operators import metrics as operator_metrics

    exported = exposed_names(RunMetrics().registry.collect()) | exposed_names(
        operator_metrics.REGISTRY.collect()
    )
    queried = {
        name
        for panel in DASHBOARD["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bautolfads_[a-z_]+", target["expr"])
    }
    assert len(queried) >= 8
    assert queried <= exported, sorted(queried - exported)


def test_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    cells = set()
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        pos = panel["gridPos"]
        cell = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & cell, panel["title"]
        cells |= cell
