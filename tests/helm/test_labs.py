"""Two labs on one cluster (ci/two-labs-values.yaml), as an attacker from the other lab would probe them.

- Network: every NetworkPolicy the chart renders, plus the one the operator renders with a dedicated
  cluster, evaluated connection by connection (``tests.helm.netpol``) for Pods of both labs, the platform
  and strangers: exactly the expected connections are open, everything else is closed.
- RBAC: every Role and ClusterRole, rule by rule and verb by verb; no Secret read cluster-wide.
- Ray: each lab's RayCluster has token authentication, a head without trials, GPU workers with one GPU
  each, and the operator places a default job there at 0.5 GPU per trial.
- MLflow: authentication on, per-lab credentials only on that lab's Ray heads, and the provisioning Job
  with exactly the interface ``autolfads.tracking.mlflow_admin`` implements.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from operators import admission, labs, render
from tests.helm import netpol
from tests.helm.chart import CHART, MONITORING_API, RAY_API, REPO, by_kind, template_args
from tests.k8s.conftest import rayjob_validator
from tests.k8s.crd_schemas import CRDValidator

__all__ = ["rayjob_validator"]  # the session fixture, shared with the operator tests

TWO_LABS = CHART / "ci" / "two-labs-values.yaml"
RELEASE_NS = "autolfads"
LABS = {"alpha": ("lab-alpha", "alpha-ray"), "beta": ("lab-beta", "beta-pool")}


def two_lab_docs(helm_run, *extra: str) -> list[dict[str, Any]]:
    args = template_args(
        values_files=[TWO_LABS], api_versions=[RAY_API, MONITORING_API], namespace=RELEASE_NS
    )
    result = helm_run(*args, *extra)
    assert result.returncode == 0, result.stderr
    return result.documents


@pytest.fixture(scope="module")
def docs(helm_run) -> list[dict[str, Any]]:
    return two_lab_docs(helm_run)


def named(docs: Sequence[Mapping[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict:
    (doc,) = [
        d
        for d in by_kind(docs, kind)
        if d["metadata"]["name"] == name and namespace in (None, d["metadata"].get("namespace"))
    ]
    return doc


def policy(docs: Sequence[Mapping[str, Any]]) -> labs.Policy:
    """The operator's view of the labs: the labs file the chart renders, read by the operator's parser."""
    labs_cm = named(docs, "ConfigMap", "autolfads-labs")
    return labs.parse_policy(labs_cm["data"]["labs.yaml"])


def operator_rayjob(docs, lab: str, spec: Mapping[str, Any], kueue: bool = False) -> dict[str, Any]:
    """What the operator creates for ``spec`` in ``lab`` with the chart's labs file (pure functions)."""
    pol = policy(docs)
    the_lab = pol.lab_for(LABS[lab][0])
    assert the_lab is not None and admission.refusals(spec, the_lab, pol) == []
    meta = {"name": "job", "uid": f"uid-{lab}-{len(str(spec))}", "namespace": the_lab.namespace}
    job = admission.job_spec(spec, the_lab, pol, kueue=kueue)
    return {
        "rayjob": render.render_rayjob(job, meta),
        "fences": render.render_network_policies(job, meta, pol.kuberay_peers, pol.metrics_peers),
    }


def spec_in(lab: str, **extra: Any) -> dict[str, Any]:
    prefix = {"alpha": "s3://alpha-data/", "beta": "s3://beta-data/"}[lab]
    return {"dataURI": f"{prefix}mc_maze.h5", "outputURI": f"{prefix}runs", **extra}


# --- the network, connection by connection ----------------------------------------------------------


def pod_labels(template: Mapping[str, Any], **ray: str) -> dict[str, str]:
    """A Pod's labels: its template's, plus what KubeRay adds (ray.io/cluster, ray.io/node-type)."""
    out = dict(template.get("metadata", {}).get("labels") or {})
    out.update({f"ray.io/{k.replace('_', '-')}": v for k, v in ray.items()})
    return out


class Cluster:
    """The Pods of two labs, the platform and the outside, each with the ports they listen on."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.pods: dict[str, netpol.Pod] = {}
        self.ports: dict[str, list[int]] = {}
        self.policies = [d for d in by_kind(docs, "NetworkPolicy")]
        ray_ports = [6379, 8265, 10001, 8080, 20000]  # GCS, job API, client, metrics, a worker's port
        n = 0

        def add(name: str, namespace: str, labels: Mapping[str, str], ports: list[int], ip: str = "") -> None:
            nonlocal n
            n += 1
            self.pods[name] = netpol.Pod(
                name, namespace, ip or f"10.244.{n // 200}.{n % 200 + 10}", dict(labels)
            )
            self.ports[name] = ports

        for lab, (ns, cluster_name) in LABS.items():
            cluster = named(docs, "RayCluster", cluster_name, ns)["spec"]
            head = cluster["headGroupSpec"]["template"]
            worker = cluster["workerGroupSpecs"][0]["template"]
            add(f"{lab}-head", ns, pod_labels(head, cluster=cluster_name, node_type="head"), ray_ports)
            add(f"{lab}-worker", ns, pod_labels(worker, cluster=cluster_name, node_type="worker"), ray_ports)
            shared = operator_rayjob(docs, lab, spec_in(lab))["rayjob"]["spec"]["submitterPodTemplate"]
            add(f"{lab}-submitter", ns, pod_labels(shared), [])
            made = operator_rayjob(docs, lab, spec_in(lab, dedicatedCluster={}))
            dedicated = made["rayjob"]["spec"]
            generated = f"{made['rayjob']['metadata']['name']}-x7k2p"  # KubeRay names the RayCluster
            dhead = dedicated["rayClusterSpec"]["headGroupSpec"]["template"]
            dworker = dedicated["rayClusterSpec"]["workerGroupSpecs"][0]["template"]
            add(
                f"{lab}-dedicated-head", ns, pod_labels(dhead, cluster=generated, node_type="head"), ray_ports
            )
            add(
                f"{lab}-dedicated-worker",
                ns,
                pod_labels(dworker, cluster=generated, node_type="worker"),
                ray_ports,
            )
            add(f"{lab}-dedicated-submitter", ns, pod_labels(dedicated["submitterPodTemplate"]), [])
            add(f"{lab}-notebook", ns, {"app": "jupyter"}, [8888])  # a pod a lab admin might run
            self.policies += [{**f, "metadata": {**f["metadata"], "namespace": ns}} for f in made["fences"]]

        def template_of(kind: str, name: str) -> Mapping[str, Any]:
            return named(docs, kind, name, RELEASE_NS)["spec"]["template"]

        add("mlflow", RELEASE_NS, pod_labels(template_of("Deployment", "autolfads-mlflow")), [5000])
        add("minio", RELEASE_NS, pod_labels(template_of("Deployment", "autolfads-minio")), [9000, 9001])
        add("operator", RELEASE_NS, pod_labels(template_of("Deployment", "autolfads-operator")), [8080, 8081])
        add("provisioner", RELEASE_NS, pod_labels(template_of("Job", "autolfads-mlflow-provision")), [])
        add("kuberay", "kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"}, [])
        add("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, [])
        add("ingress", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, [])
        add("stranger", "default", {"app": "anything"}, [])
        add("s3.amazonaws.com", "", {}, [443], ip="52.95.110.1")  # outside the cluster, not a Pod

    def open_connections(self) -> set[tuple[str, str, int]]:
        return {
            (src, dst, port)
            for src, a in self.pods.items()
            for dst, b in self.pods.items()
            for port in self.ports[dst]
            if src != dst and a.namespace and netpol.allowed(self.policies, a, b, port)
        }


def expected_open() -> set[tuple[str, str, int]]:
    """What must be reachable, and nothing more (issue 11, "Ray access" and "MLflow")."""
    ray_ports = [6379, 8265, 10001, 8080, 20000]
    out: set[tuple[str, str, int]] = set()
    everyone = ["mlflow", "minio", "operator", "provisioner", "kuberay", "prometheus", "ingress", "stranger"]
    for lab in LABS:
        members = [f"{lab}-{p}" for p in ("head", "worker", "submitter", "notebook")]
        members += [f"{lab}-dedicated-{p}" for p in ("head", "worker", "submitter")]
        everyone += members
        for cluster in (
            [f"{lab}-head", f"{lab}-worker"],
            [f"{lab}-dedicated-head", f"{lab}-dedicated-worker"],
        ):
            out |= {(a, b, p) for a in cluster for b in cluster if a != b for p in ray_ports}  # Ray within
        # the job API: the lab's submitters (any, for the lab's cluster; its own, for a dedicated one)
        out |= {(f"{lab}-{s}", f"{lab}-head", 8265) for s in ("submitter", "dedicated-submitter")}
        out.add((f"{lab}-dedicated-submitter", f"{lab}-dedicated-head", 8265))
        for head in (f"{lab}-head", f"{lab}-dedicated-head"):
            out.add(("kuberay", head, 8265))  # KubeRay polls the job's status
            out.add((head, "mlflow", 5000))  # drivers log their runs
        for ray_pod in ("head", "worker", "dedicated-head", "dedicated-worker"):
            out.add(("prometheus", f"{lab}-{ray_pod}", 8080))
            out.add((f"{lab}-{ray_pod}", "minio", 9000))  # data and outputs, with the lab's own keys
    out |= {("provisioner", "mlflow", 5000), ("ingress", "mlflow", 5000), ("prometheus", "operator", 8080)}
    platform = ["mlflow", "minio", "operator", "provisioner"]
    out |= {(a, "minio", p) for a in platform if a != "minio" for p in (9000, 9001)}
    out |= {(a, "s3.amazonaws.com", 443) for a in everyone}  # object storage outside the cluster
    return out


@pytest.mark.parametrize("cidrs", ["known", "unknown"])
def test_every_connection_between_labs_platform_and_strangers_is_as_designed(helm_run, cidrs: str) -> None:
    """With the cluster's CIDRs unknown, the "outside the cluster" egress rule may match Pods on some
    CNIs; the ingress side alone must still keep the labs apart."""
    extra = [] if cidrs == "known" else ["--set-json", "networkPolicies.clusterCIDRs=[]"]
    cluster = Cluster(two_lab_docs(helm_run, *extra))
    got, want = cluster.open_connections(), expected_open()
    assert not got - want, f"open but should be closed: {sorted(got - want)}"
    assert not want - got, f"closed but should be open: {sorted(want - got)}"


def test_lab_namespaces_deny_everything_by_default(docs) -> None:
    for ns, _ in LABS.values():
        deny = named(docs, "NetworkPolicy", "autolfads-default-deny", ns)["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_ray_ports_admit_only_the_labs_own_pods_kuberay_and_prometheus(docs) -> None:
    for ns, cluster in LABS.values():
        spec = named(docs, "NetworkPolicy", "autolfads-ray", ns)["spec"]
        assert spec["podSelector"] == {"matchLabels": {"ray.io/cluster": cluster}}
        own, metrics = spec["ingress"]
        assert own == {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": cluster}}}]}
        head = named(docs, "NetworkPolicy", "autolfads-ray-head", ns)["spec"]
        assert head["podSelector"] == {"matchLabels": {"ray.io/cluster": cluster, "ray.io/node-type": "head"}}
        (job_api,) = head["ingress"]
        assert job_api == {
            "from": [
                {"podSelector": {"matchLabels": {"autolfads.io/component": "ray-submitter"}}},
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
                },
            ],
            "ports": [{"port": 8265, "protocol": "TCP"}],
        }
        monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        assert metrics == {"from": [monitoring], "ports": [{"port": 8080, "protocol": "TCP"}]}


def test_mlflow_admits_only_lab_heads_the_provisioner_and_the_chosen_ingress(docs) -> None:
    (rule,) = named(docs, "NetworkPolicy", "autolfads-mlflow", RELEASE_NS)["spec"]["ingress"]
    heads, provisioner, ingress = rule["from"]
    assert heads == {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["lab-alpha", "lab-beta"]}
            ]
        },
        "podSelector": {"matchLabels": {"ray.io/node-type": "head"}},
    }
    assert provisioner["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mlflow-provision"
    assert "namespaceSelector" not in provisioner  # the release namespace only
    assert ingress["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert rule["ports"] == [{"port": 5000, "protocol": "TCP"}]


def test_lab_egress_leaves_the_cluster_only_outside_its_cidrs(docs) -> None:
    egress = named(docs, "NetworkPolicy", "autolfads-lab-egress", "lab-alpha")["spec"]["egress"]
    dns, own, outside, minio = egress
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert own == {"to": [{"podSelector": {}}]}
    assert outside == {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16", "10.96.0.0/12"]}},
            {"ipBlock": {"cidr": "::/0", "except": ["fd00:10:244::/56"]}},
        ]
    }
    assert minio["ports"] == [{"port": 9000, "protocol": "TCP"}]


# --- RBAC, verb by verb ------------------------------------------------------------------------------


def rules(doc: Mapping[str, Any]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(apiGroup, resource, verbs, resourceNames) per resource, sorted: one line per grant."""
    out = []
    for rule in doc["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.append(
                    (group, resource, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", ())))
                )
    return sorted(out)


EXPECTED_CLUSTER_ROLES = {
    "autolfads-operator": [
        ("", "events", ("create",), ()),
        ("autolfads.io", "autolfadsjobs", ("get", "list", "patch", "watch"), ()),
        ("autolfads.io", "autolfadsjobs/status", ("patch",), ()),
        ("ray.io", "rayjobs", ("list", "watch"), ()),
    ],
    "autolfads-jobs-edit": [
        (
            "autolfads.io",
            "autolfadsjobs",
            ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
            (),
        ),
        ("autolfads.io", "autolfadsjobs/status", ("get",), ()),
    ],
    "autolfads-jobs-view": [
        ("autolfads.io", "autolfadsjobs", ("get", "list", "watch"), ()),
        ("autolfads.io", "autolfadsjobs/status", ("get", "list", "watch"), ()),
    ],
}


def lab_operator_rules(secrets: tuple[str, ...]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    return sorted(
        [
            ("", "configmaps", ("create", "get"), ()),
            ("", "secrets", ("get",), secrets),
            ("autolfads.io", "autolfadsjobs/finalizers", ("update",), ()),
            ("networking.k8s.io", "networkpolicies", ("create",), ()),
            ("ray.io", "rayjobs", ("create", "get", "patch"), ()),
        ]
    )


def test_every_role_and_cluster_role_grants_exactly_these_verbs(docs) -> None:
    assert {d["metadata"]["name"]: rules(d) for d in by_kind(docs, "ClusterRole")} == EXPECTED_CLUSTER_ROLES
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): rules(d) for d in by_kind(docs, "Role")}
    assert roles == {
        ("lab-alpha", "autolfads-operator"): lab_operator_rules(("alpha-s3", "alpha-archive")),
        ("lab-beta", "autolfads-operator"): lab_operator_rules(("beta-s3",)),
    }


def test_no_secret_is_readable_cluster_wide(docs) -> None:
    for role in by_kind(docs, "ClusterRole"):
        assert not [r for r in role["rules"] if "secrets" in r["resources"] or "*" in r["resources"]], role
    for role in by_kind(docs, "Role"):
        for rule in role["rules"]:
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"] and rule["resourceNames"], role  # by name, read only


def test_bindings_grant_the_operator_and_each_labs_members_only_their_own(docs) -> None:
    (cluster_binding,) = by_kind(docs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "autolfads-operator"
    bindings = {
        (b["metadata"]["namespace"], b["roleRef"]["name"]): sorted(
            (s["kind"], s["name"]) for s in b["subjects"]
        )
        for b in by_kind(docs, "RoleBinding")
    }
    assert bindings == {
        ("lab-alpha", "autolfads-operator"): [("ServiceAccount", "autolfads-operator")],
        ("lab-alpha", "autolfads-jobs-edit"): [("Group", "alpha-members"), ("User", "pi@alpha.example.org")],
        ("lab-alpha", "view"): [("Group", "alpha-members"), ("User", "pi@alpha.example.org")],
        ("lab-beta", "autolfads-operator"): [("ServiceAccount", "autolfads-operator")],
        ("lab-beta", "autolfads-jobs-edit"): [("Group", "beta-members")],
        ("lab-beta", "view"): [("Group", "beta-members")],
    }


def test_listed_namespaces_leave_no_cluster_role_binding(helm_run) -> None:
    docs = two_lab_docs(helm_run, "--set", "operator.watchNamespaces={lab-alpha,lab-beta}")
    assert by_kind(docs, "ClusterRoleBinding") == []
    watch = {
        (b["metadata"]["namespace"], b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in by_kind(docs, "RoleBinding")
    }
    assert {
        ("lab-alpha", "ClusterRole", "autolfads-operator"),
        ("lab-beta", "ClusterRole", "autolfads-operator"),
    } <= watch


def test_every_operator_rule_says_why(tmp_path: Path) -> None:
    """Each rule of the operator's RBAC files has its reason written above it."""
    for name in ("operator-clusterrole.yaml", "operator-lab-role.yaml"):
        lines = (REPO / "k8s" / "rbac" / name).read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
        assert starts, name
        for i in starts:
            assert lines[i - 1].strip().startswith("#"), f"{name}:{i + 1} has no comment above it"


# --- each lab's Ray cluster ---------------------------------------------------------------------------


@pytest.mark.parametrize("lab", LABS)
def test_each_labs_ray_cluster_has_token_auth_no_trials_on_the_head_and_one_gpu_per_worker(
    docs, lab: str
) -> None:
    ns, name = LABS[lab]
    spec = named(docs, "RayCluster", name, ns)["spec"]
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert (head["rayStartParams"]["num-cpus"], head["rayStartParams"]["num-gpus"]) == ("0", "0")
    slots = {"alpha": 4, "beta": 2}[lab]
    assert head["rayStartParams"]["resources"] == f"'{{\"autolfads_driver\": {slots}}}'"
    (workers,) = spec["workerGroupSpecs"]
    container = workers["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert "num-gpus" not in workers["rayStartParams"]  # KubeRay takes it from the GPU limit
    assert workers["maxReplicas"] == {"alpha": 4, "beta": 2}[lab]
    for pod in (head["template"]["spec"], workers["template"]["spec"]):
        for c in pod["containers"]:
            # KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN; a value of ours would win and could turn auth off
            assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & {e["name"] for e in c.get("env", [])}


@pytest.mark.parametrize("lab", LABS)
def test_operator_places_a_default_job_on_its_labs_cluster_at_half_a_gpu_per_trial(
    docs, lab: str, rayjob_validator: CRDValidator
) -> None:
    rayjob = operator_rayjob(docs, lab, spec_in(lab))["rayjob"]
    assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": LABS[lab][1]}
    args = shlex.split(rayjob["spec"]["entrypoint"])
    assert "pbt.resources_per_trial.gpu=0.5" in args  # two trials share each worker's one GPU
    assert rayjob["spec"]["entrypointResources"] == '{"autolfads_driver": 1}'
    assert rayjob_validator.errors(rayjob) == []


def test_credentials_reach_only_the_pods_that_use_them(docs) -> None:
    for lab, (ns, name) in LABS.items():
        spec = named(docs, "RayCluster", name, ns)["spec"]
        head_pod = spec["headGroupSpec"]["template"]["spec"]
        head = head_pod["containers"][0]
        worker = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        storage = f"{lab}-s3"
        assert head["envFrom"] == [
            {"secretRef": {"name": storage}},
            {"secretRef": {"name": "autolfads-mlflow"}},
        ]
        assert worker["envFrom"] == [{"secretRef": {"name": storage}}]  # trials: storage, no MLflow
        # The head runs the lab's drivers: no Kubernetes token there; only the autoscaler sidecar gets one.
        assert head_pod["automountServiceAccountToken"] is False
        assert not [m for m in head.get("volumeMounts", []) if "serviceaccount" in m["mountPath"]]
        mounts = {m["name"]: m["mountPath"] for m in spec["autoscalerOptions"]["volumeMounts"]}
        assert mounts["autoscaler-api-access"] == "/var/run/secrets/kubernetes.io/serviceaccount"


# --- MLflow ----------------------------------------------------------------------------------------------


def test_mlflow_runs_with_authentication_and_no_default_access(docs) -> None:
    pod = named(docs, "Deployment", "autolfads-mlflow", RELEASE_NS)["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    for name, key in (
        ("MLFLOW_AUTH_ADMIN_USERNAME", "username"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "password"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask-secret-key"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "autolfads-mlflow-admin", "key": key}
    (init,) = pod["initContainers"]
    assert "default_permission = NO_PERMISSIONS" in init["args"][0]
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow-auth/basic_auth.ini"


def test_provisioning_job_has_the_interface_mlflow_admin_implements(docs) -> None:
    job = named(docs, "Job", "autolfads-mlflow-provision", RELEASE_NS)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "python",
        "-m",
        "autolfads.tracking.mlflow_admin",
        "provision",
        "/etc/autolfads/mlflow-labs.yaml",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://autolfads-mlflow.autolfads.svc:5000"
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "autolfads-mlflow-admin",
        "key": "username",
    }
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "autolfads-mlflow-admin",
        "key": "password",
    }
    listed = yaml.safe_load(named(docs, "ConfigMap", "autolfads-mlflow-labs")["data"]["mlflow-labs.yaml"])
    assert listed == [
        {
            "lab": "alpha",
            "experiment": "alpha",
            "username": "alpha",
            "passwordFile": "/etc/autolfads/lab-secrets/alpha/password",
        },
        {
            "lab": "beta",
            "experiment": "beta-runs",
            "username": "beta",
            "passwordFile": "/etc/autolfads/lab-secrets/beta/password",
        },
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for entry in listed:
        directory, file = entry["passwordFile"].rsplit("/", 1)
        secret = volumes[mounts[directory]["name"]]["secret"]
        assert secret["items"] == [{"key": "password", "path": file}]
        copy = named(docs, "Secret", secret["secretName"], RELEASE_NS)
        lab_secret = named(docs, "Secret", "autolfads-mlflow", dict(LABS)[entry["lab"]][0])
        # the provisioner sets the very password the lab's drivers present
        assert copy["stringData"]["password"] == lab_secret["stringData"]["MLFLOW_TRACKING_PASSWORD"]
        assert lab_secret["stringData"]["MLFLOW_TRACKING_USERNAME"] == entry["username"]
        assert len(copy["stringData"]["password"]) >= 32
    alpha = named(docs, "Secret", "autolfads-mlflow", "lab-alpha")["stringData"]["MLFLOW_TRACKING_PASSWORD"]
    beta = named(docs, "Secret", "autolfads-mlflow", "lab-beta")["stringData"]["MLFLOW_TRACKING_PASSWORD"]
    assert alpha != beta


def test_each_labs_runs_go_to_its_own_experiment(docs) -> None:
    for lab, (ns, name) in LABS.items():
        head = named(docs, "RayCluster", name, ns)["spec"]["headGroupSpec"]["template"]["spec"]["containers"][
            0
        ]
        env = {e["name"]: e.get("value") for e in head["env"]}
        experiment = {"alpha": "alpha", "beta": "beta-runs"}[lab]
        assert env["MLFLOW_EXPERIMENT_NAME"] == experiment
        args = shlex.split(operator_rayjob(docs, lab, spec_in(lab))["rayjob"]["spec"]["entrypoint"])
        assert args[args.index("--mlflow-experiment") + 1] == experiment


# --- the labs file the operator gets ------------------------------------------------------------------


def test_operator_gets_each_labs_settings_and_the_image_allow_list(docs) -> None:
    pol = policy(docs)
    alpha, beta = pol.lab_for("lab-alpha"), pol.lab_for("lab-beta")
    assert alpha is not None and beta is not None
    assert (alpha.ray_cluster, beta.ray_cluster) == ("alpha-ray", "beta-pool")
    assert alpha.storage_secrets == ("alpha-s3", "alpha-archive") and beta.storage_secrets == ("beta-s3",)
    assert alpha.allowed_prefixes == ("s3://alpha-data/", "s3://shared/alpha/")
    assert (alpha.default_deadline_seconds, beta.default_deadline_seconds) == (604800, 86400)
    assert alpha.mlflow_credentials_secret == "autolfads-mlflow" and beta.mlflow_experiment == "beta-runs"
    assert pol.default_image == "ghcr.io/autolfads/autolfads:0.1.0"
    assert pol.images_for(beta)[-1] == "registry.example.org/autolfads:0.1.0-beta"
    assert "registry.example.org/autolfads:0.1.0-beta" not in pol.images_for(alpha)
    # a job of one lab naming the other's cluster or prefix is refused by the same file
    assert [r.reason for r in admission.refusals(spec_in("beta"), alpha, pol)] == [
        admission.OUTSIDE_LAB_STORAGE
    ] * 2
    refused = admission.refusals({**spec_in("alpha"), "rayClusterName": "beta-pool"}, alpha, pol)
    assert [r.reason for r in refused] == [admission.CLUSTER_NOT_ALLOWED]


def test_each_lab_gets_its_quota_and_limits_and_beta_keeps_its_namespace(docs) -> None:
    quotas = {q["metadata"]["namespace"]: q["spec"]["hard"] for q in by_kind(docs, "ResourceQuota")}
    assert (
        quotas["lab-alpha"]["requests.nvidia.com/gpu"] == "4"
        and quotas["lab-beta"]["requests.nvidia.com/gpu"] == "2"
    )
    assert {lr["metadata"]["namespace"] for lr in by_kind(docs, "LimitRange")} == {"lab-alpha", "lab-beta"}
    assert [n["metadata"]["name"] for n in by_kind(docs, "Namespace")] == ["lab-alpha"]  # beta's exists
