"""Render the chart with the real helm CLI and validate what comes out, for the tests in this folder.

Validation follows k8s-notes §4: built-in kinds with kubernetes-validate (strict), custom resources with
jsonschema against their CRD's openAPIV3Schema made strict (``additionalProperties: false`` wherever the
schema lists properties and does not preserve unknown fields), as ``kubectl --validate=strict`` would.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "autolfads"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RAY_API = "ray.io/v1"
MONITORING_API = "monitoring.coreos.com/v1"
KUBE_VERSIONS = ("1.30", "1.37")


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.stdout) if d]


def run_helm(helm: Path, *args: str, home: Path) -> HelmResult:
    """Run helm with its cache/config/data directories under ``home`` (never the user's)."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return HelmResult(proc.returncode, proc.stdout, proc.stderr)


def template_args(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    api_versions: Sequence[str] = (RAY_API,),
    namespace: str = "autolfads",
    release: str = "autolfads",
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", "1.30.0"]
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def by_kind(docs: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def pod_specs(doc: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every Pod spec a rendered object carries, named ``Kind/name[/group]``."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield name, spec["template"]["spec"]
    elif doc["kind"] == "RayCluster":
        yield f"{name}/head", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{name}/{group['groupName']}", group["template"]["spec"]


# --- custom resources against CRD schemas ------------------------------------------------------------


def strictify(schema: Any) -> Any:
    """A copy of an OpenAPI v3.0 CRD schema as strict JSON Schema 2020-12.

    Unknown fields are refused, ``nullable`` becomes a ``null`` type, and the v3.0 boolean
    ``exclusiveMinimum: true`` (with ``minimum``) becomes 2020-12's numeric form; read as 2020-12 the
    boolean would mean "> 1".
    """
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strictify(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    return out


@functools.cache
def crd_validators(crd_path: Path) -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    """``{(apiVersion, kind): strict validator}`` for every served version of a CRD file."""
    with open(crd_path) as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out = {}
    for version in crd["spec"]["versions"]:
        schema = strictify(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
        out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft202012Validator(schema)
    return out


def crd_errors(doc: Mapping[str, Any], crd_path: Path) -> list[str]:
    """One line per schema violation of ``doc``: ``path: message``."""
    validator = crd_validators(crd_path)[(doc["apiVersion"], doc["kind"])]
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in validator.iter_errors(doc)
    ]
