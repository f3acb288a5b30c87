"""Pure status mapping: a RayJob's status and the run's progress → the AutoLFADSJob's status.

KubeRay reports two fields (k8s-notes §1.2): ``jobDeploymentStatus`` (its own lifecycle) and ``jobStatus``
(Ray's job state). ``Complete`` only means the Ray job reached a terminal state, so the pair decides:

=========================================  ==========  =========================================
jobDeploymentStatus                        jobStatus   AutoLFADSJob phase
=========================================  ==========  =========================================
"" / Initializing / Waiting / Retrying     any         Pending
Suspending / Suspended                     any         Pending (reason Suspended)
Running                                    any         Running
Complete                                   SUCCEEDED   Succeeded
Complete                                   FAILED      Failed (reason AppFailed unless given)
Complete                                   STOPPED     Failed (reason Stopped unless given)
Failed / ValidationFailed                  any         Failed (KubeRay's reason and message)
=========================================  ==========  =========================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from operators.admission import REFUSAL_REASONS

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED)
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

_PENDING_DEPLOYMENT = {"", "Initializing", "Waiting", "Retrying", "New"}
_SUSPENDED_DEPLOYMENT = {"Suspending", "Suspended"}
_FAILED_DEPLOYMENT = {"Failed", "ValidationFailed"}

# Condition types, one per step a job goes through; each is True once reached.
COND_VALID = "SpecValid"
COND_SUBMITTED = "RayJobCreated"
COND_RUNNING = "Running"
COND_SUCCEEDED = "Succeeded"
COND_FAILED = "Failed"


@dataclass(frozen=True)
class PhaseView:
    """What the AutoLFADSJob's status says about where the job is."""

    phase: str
    reason: str
    message: str


def phase_from_rayjob(rayjob_status: Mapping[str, Any] | None) -> PhaseView:
    """Map a RayJob's ``status`` (may be missing right after creation) to a phase, reason and message."""
    st = rayjob_status or {}
    deployment = str(st.get("jobDeploymentStatus") or "")
    job = str(st.get("jobStatus") or "")
    reason = str(st.get("reason") or "")
    message = str(st.get("message") or "")
    if deployment in _PENDING_DEPLOYMENT:
        what = {"": "waiting for KubeRay to pick up the RayJob", "Retrying": "retrying on a new Ray cluster"}
        default = what.get(deployment) or _starting(st)
        return PhaseView(PENDING, reason or deployment or "Created", message or default)
    if deployment in _SUSPENDED_DEPLOYMENT:
        return PhaseView(PENDING, "Suspended", message or "suspended (spec.suspend is true)")
    if deployment == "Running":
        return PhaseView(RUNNING, "Running", message or f"Ray job {job or 'submitted'}")
    if deployment == "Complete":
        if job == "SUCCEEDED":
            return PhaseView(SUCCEEDED, "Succeeded", message or "the run finished")
        default = "Stopped" if job == "STOPPED" else "AppFailed"
        ended = f"the Ray job ended with status {job or 'unknown'}"
        return PhaseView(FAILED, reason or default, run_error(message) or ended)
    if deployment in _FAILED_DEPLOYMENT:
        return PhaseView(FAILED, reason or deployment, run_error(message) or f"KubeRay reports {deployment}")
    return PhaseView(PENDING, "Unknown", f"unknown RayJob jobDeploymentStatus {deployment!r}")


# Ray's message for a failed job: this line, then the driver's last output lines (up to 20,000 characters).
_ENTRYPOINT_FAILED = re.compile(r"^Job entrypoint command failed with exit code (-?\d+)")


def run_error(message: str) -> str:
    """The run's own one-line error from Ray's message for a failed job (the driver's last output line,
    where ``autolfads run`` prints it), not Ray's paragraph of logs; other messages as they are."""
    found = _ENTRYPOINT_FAILED.match(message)
    if found is None:
        return message
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    last = lines[-1].removeprefix("Error: ") if lines else ""
    failed = f"autolfads run failed (exit code {found.group(1)})"
    return f"{failed}: {last}" if last else failed


def _starting(st: Mapping[str, Any]) -> str:
    cluster = st.get("rayClusterName")
    return f"starting (Ray cluster {cluster})" if cluster else "starting the Ray cluster and submitter"


def rayjob_fields(rayjob_status: Mapping[str, Any] | None) -> dict[str, Any]:
    """RayJob status fields copied as they are (for ``kubectl describe`` and troubleshooting)."""
    st = rayjob_status or {}
    out: dict[str, Any] = {
        "jobDeploymentStatus": st.get("jobDeploymentStatus") or "",
        "jobStatus": st.get("jobStatus") or "",
    }
    for src, dst in (("rayClusterName", "rayClusterName"), ("dashboardURL", "dashboardURL")):
        if st.get(src):
            out[dst] = st[src]
    if st.get("startTime"):
        out["startTime"] = st["startTime"]
    if st.get("endTime") and st.get("jobDeploymentStatus") in ("Complete", "Failed", "ValidationFailed"):
        out["completionTime"] = st["endTime"]
    return out


def progress_fields(progress: Mapping[str, Any], mlflow_tracking_uri: str | None = None) -> dict[str, Any]:
    """The run's ``progress.json`` (interface 5) → status fields; unknown or malformed values are skipped."""
    out: dict[str, Any] = {}
    for key, dst in (
        ("generation", "generation"),
        ("epoch", "epoch"),
        ("trials_running", "trialsRunning"),
        ("trials_total", "trialsTotal"),
        ("exploits", "exploits"),
    ):
        value = progress.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[dst] = value
    best = progress.get("best_metric")
    if isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best):
        out["bestValidReconSmth"] = float(best)
    if progress.get("best_trial") is not None:
        out["bestTrial"] = str(progress["best_trial"])
    if "trialsRunning" in out and "trialsTotal" in out:
        out["trials"] = f"{out['trialsRunning']}/{out['trialsTotal']}"
    if progress.get("updated_at"):
        out["progressUpdatedAt"] = str(progress["updated_at"])
    run_id = progress.get("mlflow_run_id")
    if run_id:
        out["mlflowRunID"] = str(run_id)
        if mlflow_tracking_uri and mlflow_tracking_uri.startswith(("http://", "https://")):
            out["mlflowRunURL"] = f"{mlflow_tracking_uri.rstrip('/')}/#/runs/{run_id}"
    return out


def conditions(
    phase: str, reason: str, message: str, previous: list[Mapping[str, Any]] | None, now: str
) -> list[dict[str, Any]]:
    """The standard condition list for a phase; ``lastTransitionTime`` only moves when a status flips."""
    reached = {
        COND_VALID: phase != FAILED or reason != "InvalidSpec",
        COND_SUBMITTED: reason not in ("InvalidSpec", "MissingReference", *REFUSAL_REASONS),
        COND_RUNNING: phase == RUNNING,
        COND_SUCCEEDED: phase == SUCCEEDED,
        COND_FAILED: phase == FAILED,
    }
    before = {c.get("type"): c for c in previous or []}
    out = []
    for ctype, ok in reached.items():
        status = "True" if ok else "False"
        old = before.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        cond = {"type": ctype, "status": status, "lastTransitionTime": since or now}
        explained = ctype in (COND_FAILED, COND_SUCCEEDED, COND_RUNNING) if ok else ctype == COND_VALID
        if explained:
            cond["reason"], cond["message"] = reason, message
        out.append(cond)
    return out


def status_patch(
    view: PhaseView, previous_status: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    """Status fields for a phase view, with conditions kept stable against the previous status."""
    prev = previous_status or {}
    return {
        "phase": view.phase,
        "reason": view.reason,
        "message": view.message,
        "conditions": conditions(view.phase, view.reason, view.message, prev.get("conditions"), now),
    }


def transition_event(old_phase: str | None, new_phase: str) -> tuple[str, str] | None:
    """(event type, CamelCase reason) for a phase change worth an Event, else ``None``."""
    if old_phase == new_phase:
        return None
    return {
        RUNNING: ("Normal", "JobRunning"),
        SUCCEEDED: ("Normal", "JobSucceeded"),
        FAILED: ("Warning", "JobFailed"),
    }.get(new_phase)
