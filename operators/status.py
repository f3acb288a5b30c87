"""Pure status mapping: a RayJob's status and the run's progress → the AutoLFADSJob's status.

KubeRay reports two fields (k8s-notes §1.2): ``jobDeploymentStatus`` (its own lifecycle) and ``jobStatus``
(Ray's job state). ``Complete`` only means the Ray job reached a terminal state, so the pair decides:

=========================================  ==========  =========================================
jobDeploymentStatus                        jobStatus   AutoLFADSJob phase
=========================================  ==========  =========================================
"" / Initializing / Waiting / Retrying     any         Pending
Suspending / Suspended                     any         Pending (reason Suspended)
Running                                    "" PENDING  Pending (reason WaitingForDriver: queued in Ray)
Running                                    RUNNING     Running
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
from operators.progress import MAX_COUNT, NAME_PATTERN, TIMESTAMP_PATTERN

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED)
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

_PENDING_DEPLOYMENT = {"", "Initializing", "Waiting", "Retrying", "New"}
_SUSPENDED_DEPLOYMENT = {"Suspending", "Suspended"}
_FAILED_DEPLOYMENT = {"Failed", "ValidationFailed"}

# Condition types, one per step a job goes through; each is True once reached.
COND_VALID = "SpecValid"
COND_SUBMITTED = "RayJobCreated"
COND_PLACED = "Placed"  # on a Ray cluster that runs its driver
COND_RUNNING = "Running"

# Why a submitted job is still Pending (status.reason and the Placed condition's reason).
WAITING_FOR_DRIVER = "WaitingForDriver"
WAITING_FOR_DRIVER_SLOT = "WaitingForDriverSlot"
CLUSTER_NOT_FOUND = "RayClusterNotFound"
CLUSTER_NOT_READY = "RayClusterNotReady"
QUEUED_BY_KUEUE = "QueuedByKueue"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
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
    if deployment == "Running" and job in ("", "PENDING"):
        # Submitted, but Ray has not started the driver: e.g. every driver slot of the lab's head is taken.
        return PhaseView(PENDING, WAITING_FOR_DRIVER, "submitted to Ray; waiting for the driver to start")
    if deployment == "Running":
        return PhaseView(RUNNING, "Running", message or f"Ray job {job}")
    if deployment == "Complete":
        if job == "SUCCEEDED":
            return PhaseView(SUCCEEDED, "Succeeded", message or "the run finished")
        default = "Stopped" if job == "STOPPED" else "AppFailed"
        ended = f"the Ray job ended with status {job or 'unknown'}"
        return PhaseView(FAILED, reason or default, run_error(message) or ended)
    if deployment in _FAILED_DEPLOYMENT:
        return PhaseView(FAILED, reason or deployment, run_error(message) or f"KubeRay reports {deployment}")
    return PhaseView(PENDING, "Unknown", f"unknown RayJob jobDeploymentStatus {deployment!r}")


def placement(
    view: PhaseView,
    rayjob: Mapping[str, Any] | None,
    shared_cluster: str | None,
    cluster: Mapping[str, Any] | None,
    driver_slots: int = 0,
) -> PhaseView:
    """Say why a submitted job is still Pending, where KubeRay itself would only log it.

    ``shared_cluster``: the lab's RayCluster the job runs on (``None``: a dedicated cluster); ``cluster``:
    that RayCluster as read (``None``: it does not exist, and KubeRay retries without a word in the
    RayJob); ``driver_slots``: drivers the lab's head runs at once (0: no limit)."""
    if view.phase != PENDING:
        return view
    meta = (rayjob or {}).get("metadata") or {}
    queue = (meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    if queue and ((rayjob or {}).get("spec") or {}).get("suspend"):
        return PhaseView(
            PENDING, QUEUED_BY_KUEUE, f"queued in Kueue LocalQueue {queue!r}: it starts when Kueue admits it"
        )
    if shared_cluster is not None:
        where = f"RayCluster {meta.get('namespace') or ''}/{shared_cluster}".replace(" /", " ")
        if cluster is None:
            return PhaseView(
                PENDING,
                CLUSTER_NOT_FOUND,
                f"{where}, the lab's Ray cluster, does not exist: the job waits until it does (cluster "
                "admin: Helm values labs[].rayCluster, and the KubeRay operator must be running)",
            )
        state = str(((cluster.get("status") or {}).get("state")) or "")
        if state.lower() != "ready":
            why = _not_ready(cluster.get("status") or {})
            return PhaseView(
                PENDING,
                CLUSTER_NOT_READY,
                f"{where} is not ready ({state or 'starting'}{why}): the job starts when its head runs",
            )
        if view.reason == WAITING_FOR_DRIVER and driver_slots:
            return PhaseView(
                PENDING,
                WAITING_FOR_DRIVER_SLOT,
                f"queued on {where}: its head runs {driver_slots} drivers at once and all are taken; "
                "the job starts when one finishes",
            )
    return view


def _not_ready(cluster_status: Mapping[str, Any]) -> str:
    """KubeRay's reason a cluster is not ready: its first False condition's message, or its reason."""
    for cond in cluster_status.get("conditions") or []:
        if cond.get("status") == "False" and (cond.get("message") or cond.get("reason")):
            return f": {str(cond.get('message') or cond.get('reason'))[:200]}"
    reason = cluster_status.get("reason")
    return f": {str(reason)[:200]}" if reason else ""


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


# progress.json is written by the run, in storage the job's owner controls: only these fields reach the
# status, each checked for type and size (docs/security.md; operators.progress.checked_progress checks the
# whole record the same way before any handler sees it).


def progress_fields(progress: Mapping[str, Any], mlflow_tracking_uri: str | None = None) -> dict[str, Any]:
    """The run's ``progress.json`` (interface 5) → status fields; unknown, malformed or oversized values
    are skipped.

    Besides the numbers, ``display`` holds them formatted for ``kubectl get`` (:func:`display_fields`)."""
    out: dict[str, Any] = {}
    for key, dst in (
        ("generation", "generation"),
        ("generations_total", "generationsTotal"),
        ("epoch", "epoch"),
        ("trials_running", "trialsRunning"),
        ("trials_paused", "trialsPaused"),
        ("trials_done", "trialsDone"),
        ("trials_errored", "trialsFailed"),
        ("trials_total", "trialsTotal"),
        ("exploits", "exploits"),
    ):
        value = progress.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
            out[dst] = value
    best = progress.get("best_metric")
    if isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best):
        out["bestValidReconSmth"] = float(best)
    trial = progress.get("best_trial")
    if isinstance(trial, int) and not isinstance(trial, bool) and 0 <= trial <= MAX_COUNT:
        out["bestTrial"] = str(trial)
    elif isinstance(trial, str) and NAME_PATTERN.match(trial):
        out["bestTrial"] = trial
    display = display_fields(out)
    if display:
        out["display"] = display
    updated = progress.get("updated_at")
    if isinstance(updated, str) and TIMESTAMP_PATTERN.match(updated):
        out["progressUpdatedAt"] = updated
    run_id = progress.get("mlflow_run_id")
    if isinstance(run_id, str) and NAME_PATTERN.match(run_id):
        out["mlflowRunID"] = run_id
        if mlflow_tracking_uri and mlflow_tracking_uri.startswith(("http://", "https://")):
            out["mlflowRunURL"] = f"{mlflow_tracking_uri.rstrip('/')}/#/runs/{run_id}"
    return out


SIGNIFICANT_DIGITS = 4  # of the best metric in `kubectl get`: enough to tell members apart, not 17 digits


def display_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """The progress numbers as ``kubectl get`` shows them (a printer column prints a value as it is):
    ``generation`` "2/5" (done of planned), ``best`` to 4 significant digits, ``trials``
    "running/done/failed" (running counts members paused at a generation boundary too)."""
    out: dict[str, str] = {}
    if "generation" in fields:
        total = fields.get("generationsTotal")
        out["generation"] = f"{fields['generation']}/{total}" if total else str(fields["generation"])
    if "bestValidReconSmth" in fields:
        out["best"] = f"{fields['bestValidReconSmth']:.{SIGNIFICANT_DIGITS}g}"
    counts = ("trialsRunning", "trialsPaused", "trialsDone", "trialsFailed")
    if any(k in fields for k in counts):
        running = fields.get("trialsRunning", 0) + fields.get("trialsPaused", 0)
        out["trials"] = f"{running}/{fields.get('trialsDone', 0)}/{fields.get('trialsFailed', 0)}"
    return out


def conditions(
    phase: str, reason: str, message: str, previous: list[Mapping[str, Any]] | None, now: str
) -> list[dict[str, Any]]:
    """The standard condition list for a phase; ``lastTransitionTime`` only moves when a status flips."""
    submitted = reason not in ("InvalidSpec", "MissingReference", *REFUSAL_REASONS)
    before = {c.get("type"): c for c in previous or []}
    was_placed = (before.get(COND_PLACED) or {}).get("status") == "True"
    reached = {
        COND_VALID: phase != FAILED or reason != "InvalidSpec",
        COND_SUBMITTED: submitted,
        COND_PLACED: phase in (RUNNING, SUCCEEDED) or (phase == FAILED and was_placed),
        COND_RUNNING: phase == RUNNING,
        COND_SUCCEEDED: phase == SUCCEEDED,
        COND_FAILED: phase == FAILED,
    }
    out = []
    for ctype, ok in reached.items():
        status = "True" if ok else "False"
        old = before.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        cond = {"type": ctype, "status": status, "lastTransitionTime": since or now}
        explained = ctype in (COND_FAILED, COND_SUCCEEDED, COND_RUNNING) if ok else ctype == COND_VALID
        explained = explained or (ctype == COND_PLACED and not ok and submitted and phase == PENDING)
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
