"""What ``kubectl get alj`` and ``kubectl explain autolfadsjob.status`` show, from the CRD and the status
the operator writes.

The API server prints a printer column by evaluating its JSONPath over the stored object and printing the
value as it is (a number with all its digits), so the columns are checked over a status rendered by the
operator's own mapping (``operators.status``): a finished job, a running one and a refused one. The
CRD's columns are simple field paths, evaluated here as the API server does; the slow operator test
(``tests/operator/test_handlers.py``) has kubectl evaluate them against the emulated API server too.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from operators.status import (
    FAILED,
    PhaseView,
    phase_from_rayjob,
    progress_fields,
    rayjob_fields,
    status_patch,
)
from tests.k8s.conftest import OUR_CRD
from tests.k8s.crd_schemas import CRDValidator, load_yaml_documents

(CRD,) = load_yaml_documents(OUR_CRD)
(VERSION,) = CRD["spec"]["versions"]
COLUMNS = VERSION["additionalPrinterColumns"]
STATUS_SCHEMA = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]
# Fields the handlers write themselves (operators/handlers.py), besides those of operators.status.
HANDLER_FIELDS = {"rayJobName", "observedGeneration", "specChangeRefused", "outputURI"}

FINAL_PROGRESS = {
    "phase": "succeeded",
    "generation": 5,
    "generations_total": 5,
    "epoch": 100,
    "best_metric": 1.0134567890123457,
    "best_trial": "3",
    "trials_running": 0,
    "trials_paused": 0,
    "trials_done": 4,
    "trials_errored": 0,
    "trials_total": 4,
    "exploits": 7,
    "updated_at": "2026-11-25T13:00:00+00:00",
    "mlflow_run_id": "0a1b2c",
}
RAYJOB_STATUS = {
    "jobDeploymentStatus": "Complete",
    "jobStatus": "SUCCEEDED",
    "rayClusterName": "lab-ray",
    "dashboardURL": "lab-ray-head-svc.lab:8265",
    "startTime": "2026-11-25T12:00:00Z",
    "endTime": "2026-11-25T13:01:00Z",
}


def job_with(status: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "autolfads.io/v1alpha1",
        "kind": "AutoLFADSJob",
        "metadata": {"name": "mc-maze", "namespace": "lab", "creationTimestamp": "2026-11-25T11:59:00Z"},
        "spec": {"dataURI": "s3://lab/data.h5", "outputURI": "s3://lab/runs"},
        "status": dict(status),
    }


def finished_job() -> dict[str, Any]:
    status = {**rayjob_fields(RAYJOB_STATUS), **status_patch(phase_from_rayjob(RAYJOB_STATUS), None, "t")}
    status |= progress_fields(FINAL_PROGRESS, "http://mlflow.autolfads:5000")
    status |= {"rayJobName": "mc-maze-1a2b3c", "outputURI": "s3://lab/runs/lab/mc-maze/autolfads.zip"}
    status["conditions"] = status_patch(phase_from_rayjob(RAYJOB_STATUS), None, "2026-11-25T13:01:00Z")[
        "conditions"
    ]
    return job_with(status)


def evaluate(path: str, obj: Mapping[str, Any]) -> Any:
    """A printer column's JSONPath (``.a.b.c``, the only form the CRD uses) over an object."""
    assert path.startswith(".") and all(part.isidentifier() for part in path[1:].split(".")), path
    value: Any = obj
    for part in path[1:].split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def row(job: Mapping[str, Any]) -> dict[str, Any]:
    return {c["name"]: evaluate(c["jsonPath"], job) for c in COLUMNS}


def test_kubectl_get_shows_phase_generation_of_total_best_to_four_digits_trials_and_times() -> None:
    shown = row(finished_job())
    assert shown == {
        "Phase": "Succeeded",
        "Generation": "5/5",
        "Best valid recon": "1.013",
        "Trials R/D/F": "0/4/0",
        "Start": "2026-11-25T12:00:00Z",
        "End": "2026-11-25T13:01:00Z",
        "Age": "2026-11-25T11:59:00Z",
        "Reason": "Succeeded",
        "Message": "the run finished",
    }
    assert [c["name"] for c in COLUMNS if c.get("priority")] == ["Reason", "Message"]  # kubectl get -o wide


def test_each_column_gets_a_value_of_its_declared_type() -> None:
    """An integer or number column over a string (or the reverse) prints nothing useful."""
    for column in COLUMNS:
        value = evaluate(column["jsonPath"], finished_job())
        if column["type"] == "date":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            assert isinstance(value, {"string": str, "integer": int, "number": float}[column["type"]]), column


def test_a_refused_job_shows_why_and_no_progress() -> None:
    refused = job_with(status_patch(PhaseView(FAILED, "StorageOutsideLab", "spec.dataURI: …"), None, "t"))
    assert {k: v for k, v in row(refused).items() if v is not None} == {
        "Phase": "Failed",
        "Age": "2026-11-25T11:59:00Z",
        "Reason": "StorageOutsideLab",
        "Message": "spec.dataURI: …",
    }


def test_the_status_the_operator_writes_is_valid_against_the_crd(alj_validator: CRDValidator) -> None:
    assert alj_validator.errors(finished_job()) == []


def test_every_status_field_the_operator_writes_is_declared() -> None:
    """status keeps unknown fields (kopf's bookkeeping lives there), so an undeclared field would be
    stored silently, with no type check and nothing for kubectl explain."""
    written = set(finished_job()["status"]) | HANDLER_FIELDS
    assert written <= set(STATUS_SCHEMA["properties"]), sorted(written - set(STATUS_SCHEMA["properties"]))


def fields(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from fields(sub, f"{path}.{name}")
    if "items" in schema:
        yield from fields(schema["items"], f"{path}[]")


SPEC_SCHEMA = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]
EXPLAINED = {**dict(fields(STATUS_SCHEMA, "status")), **dict(fields(SPEC_SCHEMA, "spec"))}


@pytest.mark.parametrize("path", sorted(EXPLAINED))
def test_kubectl_explain_describes_every_field(path: str) -> None:
    assert EXPLAINED[path].get("description", "").strip(), (
        f"kubectl explain autolfadsjob.{path} would be empty"
    )


def test_kubectl_explain_describes_status_itself() -> None:
    assert STATUS_SCHEMA["description"].strip()
