"""The Grafana dashboard queries only series that a chart install really produces, with their real labels.

What a Prometheus that follows the chart's monitors stores is worked out from the rendered chart, for a
lab with its shared Ray cluster and for labs whose jobs bring dedicated clusters:

- the operator's ServiceMonitor (``honorLabels``): every job's series as :data:`SERIES` defines them
  (``namespace``/``job`` the AutoLFADSJob's) and the operator's own ``autolfads_operator_*`` as its
  registry exports them, plus the target labels Prometheus adds (``instance``, ``pod``, ``service``…);
- each lab's PodMonitor: Ray's node metrics as Ray's metrics agent defines them (the installed Ray's
  ``METRICS_GAUGES``, prefixed ``ray_``), plus the target labels and the Pod labels the monitor copies
  (``ray.io/cluster`` → ``ray_io_cluster``), and only where the monitor selects the Ray pods that exist
  in that case (the chart's RayCluster, or the RayJob the operator renders for a dedicated job).

Every query (panels and template variables) is parsed (``tests.helm.promql``) and its selectors,
matchers, groupings and legend labels are checked against that catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from autolfads.tracking.series import SERIES
from tests.helm import netpol
from tests.helm.chart import CHART, MONITORING_API, RAY_API, by_kind, template_args
from tests.helm.promql import Catalogue, check, check_label_values, legend_labels

DASHBOARD = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
# Labels the Prometheus Operator gives every target (k8s SD relabelling); a ServiceMonitor adds service.
POD_TARGET_LABELS = frozenset({"namespace", "pod", "container", "endpoint", "instance", "job"})
SERVICE_TARGET_LABELS = POD_TARGET_LABELS | {"service"}
# What KubeRay puts on every Ray pod, beyond its template's labels, and the port it names for Ray's
# metrics agent (metrics-export-port 8080).
RAY_METRICS_PORT = "metrics"


def kuberay_labels(cluster: str, node_type: str, group: str) -> dict[str, str]:
    return {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
    }


def queries() -> list[tuple[str, str, str]]:
    """(panel title, expression, legend) of every panel query."""
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


# --- what the code exports --------------------------------------------------------------------------


def job_series() -> dict[str, frozenset[str]]:
    """The operator's per-job series, from the one definition the operator and the run share."""
    return {s.name: frozenset(s.all_labels) for s in SERIES}


def operator_series() -> dict[str, frozenset[str]]:
    """``autolfads_operator_*`` as the operator's registry exports them, every labelled child present."""
    import kopf

    from operators import metrics

    @metrics.instrumented("dashboard-test")
    def handler() -> None:
        raise kopf.TemporaryError("counted once, so every labelled operator series has a sample")

    with pytest.raises(kopf.TemporaryError):
        handler()
    out: dict[str, set[str]] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name.startswith("autolfads_operator_"):
                out.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in out.items()}


def ray_series() -> dict[str, frozenset[str]]:
    """Ray's node and cluster gauges as the installed Ray's metrics agent defines them."""
    from ray.dashboard.modules.reporter.reporter_agent import METRICS_GAUGES

    return {f"ray_{g.name}": frozenset(str(t) for t in g.view.columns) for g in METRICS_GAUGES.values()}


# --- what the chart scrapes -------------------------------------------------------------------------


def render(helm_run, *args: str) -> list[dict[str, Any]]:
    result = helm_run(*template_args(api_versions=[RAY_API, MONITORING_API]), *args)
    assert result.returncode == 0, result.stderr
    return result.documents


def ray_pods(docs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(namespace, labels) of the Ray pods of this install: each lab's RayCluster's, and the dedicated
    cluster the operator renders for a job in each lab (with the chart's labs file)."""
    from operators import admission, labs, render

    out = []
    for cluster in by_kind(docs, "RayCluster"):
        ns, name, spec = cluster["metadata"]["namespace"], cluster["metadata"]["name"], cluster["spec"]
        head = spec["headGroupSpec"]["template"]["metadata"]["labels"]
        out.append((ns, {**head, **kuberay_labels(name, "head", "headgroup")}))
        for group in spec["workerGroupSpecs"]:
            labels = group["template"]["metadata"]["labels"]
            out.append((ns, {**labels, **kuberay_labels(name, "worker", group["groupName"])}))
    (labs_cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "autolfads-labs"]
    policy = labs.parse_policy(labs_cm["data"]["labs.yaml"])
    for lab in policy.labs.values():
        prefix = lab.allowed_prefixes[0] if lab.allowed_prefixes else "s3://lab/"
        spec = {"dataURI": f"{prefix}d.h5", "outputURI": f"{prefix}runs", "dedicatedCluster": {}}
        job = admission.job_spec(spec, lab, policy)
        rayjob = render.render_rayjob(job, {"name": "job", "uid": "u-1", "namespace": lab.namespace})
        generated = f"{rayjob['metadata']['name']}-x7k2p"  # KubeRay names the job's RayCluster
        cluster_spec = rayjob["spec"]["rayClusterSpec"]
        head = cluster_spec["headGroupSpec"]["template"]["metadata"]["labels"]
        out.append((lab.namespace, {**head, **kuberay_labels(generated, "head", "headgroup")}))
        for group in cluster_spec["workerGroupSpecs"]:
            labels = group["template"]["metadata"]["labels"]
            out.append((lab.namespace, {**labels, **kuberay_labels(generated, "worker", group["groupName"])}))
    return out


def catalogue(docs: Sequence[Mapping[str, Any]]) -> Catalogue:
    """Every series a Prometheus following this install's monitors stores, with its label names."""
    out: dict[str, frozenset[str]] = {}
    for monitor in by_kind(docs, "ServiceMonitor"):
        if monitor["metadata"]["name"].endswith("-operator"):
            (endpoint,) = monitor["spec"]["endpoints"]
            assert endpoint["honorLabels"] is True  # else namespace/job arrive as exported_namespace/job
            for name, labels in {**job_series(), **operator_series()}.items():
                out[name] = labels | SERVICE_TARGET_LABELS
    pods = ray_pods(docs)
    for monitor in by_kind(docs, "PodMonitor"):
        ns, spec = monitor["metadata"]["namespace"], monitor["spec"]
        selected = [
            labels for pod_ns, labels in pods if pod_ns == ns and netpol.selects(spec["selector"], labels)
        ]
        ports = {ep["port"] for ep in spec["podMetricsEndpoints"]}
        if not selected or RAY_METRICS_PORT not in ports:
            continue
        copied = frozenset(
            label.replace(".", "_").replace("/", "_").replace("-", "_")
            for label in spec.get("podTargetLabels", [])
        )
        for name, labels in ray_series().items():
            out[name] = labels | POD_TARGET_LABELS | copied
    return out


@pytest.fixture(scope="module", params=["shared", "dedicated"])
def produced(request: pytest.FixtureRequest, helm_run) -> Catalogue:
    """shared: two labs, each with its Ray cluster; dedicated: no lab has one, every job brings its own."""
    if request.param == "shared":
        docs = render(helm_run, "-f", str(CHART / "ci" / "two-labs-values.yaml"))
        assert by_kind(docs, "RayCluster")
    else:
        docs = render(helm_run, "--set", "rayCluster.enabled=false")
        assert not by_kind(docs, "RayCluster")
    return catalogue(docs)


def test_every_query_selects_produced_series_by_labels_they_have(produced: Catalogue) -> None:
    problems = []
    for title, expr, legend in queries():
        labels, found, _ = check(expr, produced)
        problems += [f"{title}: {p}" for p in found]
        missing = legend_labels(legend) - labels
        if missing:
            problems.append(
                f"{title}: legend uses {sorted(missing)}, the query's result has {sorted(labels)}"
            )
    assert not problems, "\n".join(problems)


def test_template_variables_list_lab_namespaces_and_jobs(produced: Catalogue) -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["namespace"]["query"]["query"] == "label_values(autolfads_job_phase, namespace)"
    assert (
        variables["job"]["query"]["query"]
        == 'label_values(autolfads_job_phase{namespace=~"$namespace"}, job)'
    )
    for name in ("namespace", "job"):
        assert check_label_values(variables[name]["query"]["query"], produced) == []


def test_every_autolfads_metric_in_the_dashboard_is_exported(produced: Catalogue) -> None:
    """Each panel shows something a chart install produces; the job panels filter by both variables, the
    Ray panels by namespace only (their job label is Prometheus' scrape job, not an AutoLFADSJob)."""
    used = set()
    for title, expr, _ in queries():
        _, _, selected = check(expr, produced)
        assert selected and set(selected) <= set(produced), title
        used |= set(selected)
        if any(s.startswith("autolfads_job_") for s in selected):
            assert 'namespace=~"$namespace"' in expr and 'job=~"$job"' in expr, title
        if any(s.startswith("ray_") for s in selected):
            assert 'namespace=~"$namespace"' in expr and "$job" not in expr, title
    job_names = {s.name for s in SERIES}
    assert used & job_names == job_names - {"autolfads_job_population"}  # every job series has a panel
    assert {"autolfads_operator_jobs", "ray_node_gpus_utilization", "ray_cluster_active_nodes"} <= used


def test_a_query_on_a_label_ray_does_not_have_is_caught(produced: Catalogue) -> None:
    """The checker itself: the old "Ray worker nodes" panel grouped by a label Ray does not have, and the
    old job panels queried series that no longer exist."""
    _, problems, _ = check("sum by (Name) (ray_cluster_active_nodes)", produced)
    assert problems == ["sum by (Name): the series have no label 'Name'"]
    _, problems, _ = check("min by (job, pod) (autolfads_best_valid_recon_smth)", produced)
    assert problems[0] == "series 'autolfads_best_valid_recon_smth' is not produced"
    _, problems, _ = check('autolfads_job_generation{exported_job="x"} / autolfads_job_trials', produced)
    assert len(problems) == 2  # no exported_job label; the operands' labels differ (state)


def test_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cell = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & cell, panel["title"]
        cells |= cell
