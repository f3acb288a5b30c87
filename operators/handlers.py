"""kopf handlers: thin orchestration over the pure modules (STYLE rules 11-12).

- create: validate → render → ``kopf.adopt`` → create (idempotent) → status Pending.
- RayJob watch events: mirror KubeRay's status pair into the job's phase, with Events on transitions.
- timer while Running: read the run's ``progress.json`` into status (generation, best metric, trials).
- spec update: a job refused before submission (invalid spec) is tried again with the new spec; once
  submitted, ``spec.suspend`` is applied to the RayJob (dedicated clusters) and anything else is refused.
- delete: nothing to do here. Owned objects go with their owner (ownerReferences, Kubernetes GC); the
  outputs in object storage are never touched.

Invalid specs fail permanently with the field named; references that do not exist *yet* (a Secret
applied after the job) are retried for a while before the job fails.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from operators import kube, metrics, render, validation
from operators.progress import ZIP_FILE, ProgressReadError, ReadBackoff, read_progress, run_dir
from operators.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, JobSpec, parse_spec
from operators.status import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_PHASES,
    PhaseView,
    phase_from_rayjob,
    progress_fields,
    rayjob_fields,
    status_patch,
    transition_event,
)

METRICS_PORT_ENV = "AUTOLFADS_METRICS_PORT"
PROGRESS_INTERVAL_ENV = "AUTOLFADS_PROGRESS_INTERVAL"
REF_RETRY_DELAY_ENV = "AUTOLFADS_REF_RETRY_DELAY"
PROGRESS_INTERVAL = float(os.environ.get(PROGRESS_INTERVAL_ENV, "30"))
REF_RETRY_DELAY = float(os.environ.get(REF_RETRY_DELAY_ENV, "15"))
REF_RETRIES = 20  # × REF_RETRY_DELAY: how long a job waits for its ConfigMap/Secret to appear
MUTABLE_FIELDS = frozenset({"suspend"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    settings.posting.level = logging.INFO  # Normal Events from kopf.info (log lines are not posted in 1.45)
    settings.execution.max_workers = 8
    settings.persistence.finalizer = f"{GROUP}/operator"
    port = int(os.environ.get(METRICS_PORT_ENV, "8080"))
    if port:
        memo.metrics_server, _thread = start_http_server(port)
        logger.info(f"Serving /metrics on port {port}")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Same credentials for kopf and the kubernetes client (in-cluster, else ``$KUBECONFIG``)."""
    cfg = kube.configure()
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization") or ""
    scheme, _, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.create(GROUP, VERSION, PLURAL)
@metrics.instrumented("create")
def create_fn(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, namespace: str, status: kopf.Status,
    patch: kopf.Patch, retry: int, **_: Any,
) -> None:
    _submit(body, spec, meta, namespace, status, patch, retry)


def _submit(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, namespace: str, status: kopf.Status,
    patch: kopf.Patch, retry: int,
) -> None:
    """Validate → render → adopt → create (idempotent) → status Pending."""
    job = _validated(body, spec, namespace, status, patch, retry)
    rayjob = render.render_rayjob(job, meta)
    config_map = render.render_config_map(job, meta["name"], meta["uid"])
    if config_map is not None:
        kopf.adopt(config_map, owner=body)
        kube.create_config_map(namespace, config_map)
    kopf.adopt(rayjob, owner=body)
    _ensure_rayjob(body, namespace, rayjob)
    # Exactly what the RayJob watch computes for a fresh RayJob, so that it has nothing more to write.
    patch.status.update(rayjob_fields(None), **status_patch(phase_from_rayjob(None), status, _now()))
    patch.status.update(rayJobName=rayjob["metadata"]["name"], observedGeneration=meta.get("generation"))


def _validated(
    body: kopf.Body, spec: kopf.Spec, namespace: str, status: kopf.Status, patch: kopf.Patch, retry: int
) -> JobSpec:
    """The typed spec; else the job is marked Failed (PermanentError) or waits for a reference
    (TemporaryError)."""
    problems = validation.validate_spec(spec)
    missing: list[str] = []
    if not problems:
        problems, missing = _check_references(spec, namespace)
    if problems:
        _fail(body, patch, status, "InvalidSpec", "; ".join(problems))
    if missing:
        message = "; ".join(missing)
        if retry >= REF_RETRIES:
            _fail(body, patch, status, "MissingReference", message)
        if retry == 0:
            kopf.warn(body, reason="MissingReference", message=message)
        patch.status.update(status_patch(PhaseView(PENDING, "MissingReference", message), status, _now()))
        raise kopf.TemporaryError(message, delay=REF_RETRY_DELAY)
    return parse_spec(spec)


def _check_references(spec: Mapping[str, Any], namespace: str) -> tuple[list[str], list[str]]:
    """(problems, missing): the ConfigMap's config must parse; the ConfigMap and Secret must exist."""
    problems: list[str] = []
    missing: list[str] = []
    ref = spec.get("configMapRef")
    if ref:
        key = ref.get("key") or "config.yaml"
        data = kube.get_config_map_data(namespace, ref["name"])
        where = f"ConfigMap {namespace}/{ref['name']} key {key}"
        if data is None:
            missing.append(f"spec.configMapRef.name: ConfigMap {namespace}/{ref['name']} not found")
        elif key not in data:
            keys = ", ".join(sorted(data)) or "none"
            problems.append(f"spec.configMapRef.key: {where} not found (keys: {keys})")
        else:
            config, problems = validation.parse_config_text(data[key], where)
            if config is not None:
                problems += validation.validate_config(config, spec, where)
    secret = (spec.get("storageSecretRef") or {}).get("name")
    if secret and kube.get_secret_data(namespace, secret) is None:
        missing.append(f"spec.storageSecretRef.name: Secret {namespace}/{secret} not found")
    return problems, missing


def _fail(body: kopf.Body, patch: kopf.Patch, status: kopf.Status, reason: str, message: str) -> None:
    patch.status.update(status_patch(PhaseView(FAILED, reason, message), status, _now()))
    kopf.warn(body, reason=reason, message=message)
    raise kopf.PermanentError(message)


def _ensure_rayjob(body: kopf.Body, namespace: str, rayjob: dict[str, Any]) -> None:
    """Create the RayJob unless this job already owns one of that name (operator restarted mid-way).

    Create first and look only on a conflict: one call in the common case, and no window between a
    lookup and a create for a second reconcile to slip into.
    """
    name = rayjob["metadata"]["name"]
    if kube.create_rayjob(namespace, rayjob):
        kopf.info(body, reason="RayJobCreated", message=f"created RayJob {name}")
        return
    existing = kube.get_rayjob(namespace, name) or {}
    owners = {o.get("uid") for o in existing.get("metadata", {}).get("ownerReferences") or []}
    if body.metadata.uid not in owners:
        raise kopf.PermanentError(f"RayJob {namespace}/{name} exists and is not owned by this AutoLFADSJob")


@kopf.on.event("ray.io", "v1", "rayjobs", labels={render.JOB_LABEL: kopf.PRESENT})
@metrics.instrumented("rayjob")
def rayjob_event(event: Mapping[str, Any], body: kopf.Body, namespace: str, **_: Any) -> None:
    """Mirror KubeRay's status into the owning AutoLFADSJob, patching only what changed."""
    job = _owning_job(body, namespace)
    view = None if job is None else _rayjob_view(event, body, job)
    if job is None or view is None:
        return
    old = job.get("status") or {}
    new = {**rayjob_fields(body.get("status")), **status_patch(view, old, _now())}
    new["rayJobName"] = body.metadata.name
    if view.phase in TERMINAL_PHASES:
        new.update(_final_progress(job, succeeded=view.phase == SUCCEEDED))
    changed = {k: v for k, v in new.items() if old.get(k) != v and k != "conditions"}
    if changed:
        changed["conditions"] = new["conditions"]
        kube.patch_job_status(namespace, job["metadata"]["name"], changed)
        transition = transition_event(old.get("phase"), view.phase)
        if transition is not None:
            kopf.event(job, type=transition[0], reason=transition[1], message=view.message)


def _owning_job(body: kopf.Body, namespace: str) -> dict[str, Any] | None:
    """The live AutoLFADSJob that owns this RayJob (same uid, not being deleted), if any."""
    owner = _owner(body)
    job = kube.get_job(namespace, owner["name"]) if owner is not None else None
    if job is None or owner is None or job["metadata"].get("uid") != owner.get("uid"):
        return None
    return None if job["metadata"].get("deletionTimestamp") else job  # going: its RayJob goes with it


def _rayjob_view(event: Mapping[str, Any], body: kopf.Body, job: Mapping[str, Any]) -> PhaseView | None:
    """The phase a RayJob event implies. A RayJob deleted by hand under an unfinished job fails the job
    (nothing would ever finish it otherwise); ``None`` when there is nothing to say."""
    if event.get("type") != "DELETED":
        return phase_from_rayjob(body.get("status"))
    if (job.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return None
    return PhaseView(FAILED, "RayJobDeleted", f"RayJob {body.metadata.name} was deleted before it finished")


def _owner(body: kopf.Body) -> Mapping[str, Any] | None:
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
            return ref
    return None


def _final_progress(job: Mapping[str, Any], succeeded: bool) -> dict[str, Any]:
    """Last progress + where autolfads.zip is, read once when the job ends (best effort)."""
    spec = parse_spec(job.get("spec") or {})
    try:
        found = _read_progress(spec, job["metadata"]["name"], job["metadata"]["namespace"])
    except ProgressReadError as exc:
        logging.getLogger(__name__).warning(f"final progress of {job['metadata']['name']} unreadable: {exc}")
        found = None
    out = progress_fields(found[0], spec.mlflow_tracking_uri) if found else {}
    meta = job["metadata"]
    where = found[1] if found else run_dir(spec.output_uri, meta["namespace"], meta["name"])
    if succeeded:
        out["outputURI"] = f"{where}/{ZIP_FILE}"
    return out


def _read_progress(spec: JobSpec, name: str, namespace: str) -> tuple[dict[str, Any], str] | None:
    """The job's progress, read within the bounds of ``operators.progress``; ProgressReadError (one line)
    when it cannot be (storage down, endpoint not allowed, too big, too slow, not JSON)."""
    secret = kube.get_secret_data(namespace, spec.storage_secret) if spec.storage_secret else {}
    try:
        return read_progress(spec.output_uri, namespace, name, secret or {})
    except (OSError, ValueError, ImportError) as exc:  # anything the bounded read did not name itself
        raise ProgressReadError(f"{type(exc).__name__}: {str(exc)[:200]}") from None


@kopf.timer(GROUP, VERSION, PLURAL, interval=PROGRESS_INTERVAL,
            when=lambda status, **_: status.get("phase") == RUNNING)
@metrics.instrumented("progress")
def progress_timer(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, status: kopf.Status, patch: kopf.Patch,
    memo: kopf.Memo, logger: logging.Logger, **_: Any,
) -> None:
    """Copy the run's progress.json into status while the job runs; an Event per finished generation.

    A failed read keeps the last status and backs this job off (``ReadBackoff``, in its kopf memo)."""
    job = parse_spec(spec)
    backoff = memo.setdefault("progress_backoff", ReadBackoff(base_s=PROGRESS_INTERVAL))
    if not backoff.ready():
        return
    try:
        found = _read_progress(job, name, namespace)
    except ProgressReadError as exc:
        logger.warning(f"progress unreadable: {exc}; next read in {backoff.failed():.0f} s")
        return
    backoff.succeeded()
    if found is None:
        return
    fields = progress_fields(found[0], job.mlflow_tracking_uri)
    patch.status.update({k: v for k, v in fields.items() if status.get(k) != v})
    generation = fields.get("generation")
    if isinstance(generation, int) and generation > (status.get("generation") or 0):
        best = fields.get("bestValidReconSmth")
        trial = fields.get("bestTrial")
        detail = f"; best valid/recon_smth {best:.6g} (trial {trial})" if best is not None else ""
        kopf.info(body, reason="GenerationCompleted", message=f"generation {generation} done{detail}")


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@metrics.instrumented("update")
def update_fn(
    body: kopf.Body, spec: kopf.Spec, diff: kopf.Diff, meta: kopf.Meta, namespace: str,
    status: kopf.Status, patch: kopf.Patch, retry: int, **_: Any,
) -> None:
    """A job refused before submission is tried again with its new spec. Once submitted, ``spec.suspend``
    is applied to a dedicated cluster's RayJob and every other change is refused with an Event."""
    rayjob = status.get("rayJobName")
    if not rayjob:
        _submit(body, spec, meta, namespace, status, patch, retry)
        return
    changed = sorted({".".join(str(p) for p in op[1]).removeprefix("spec.") or "spec" for op in diff})
    refused = [f for f in changed if f.split(".")[0] not in MUTABLE_FIELDS]
    if refused:
        message = (
            f"{', '.join('spec.' + f for f in refused)} cannot change once the job is submitted; "
            "delete and re-create the job (its outputs are kept)"
        )
        kopf.warn(body, reason="SpecChangeRefused", message=message)
        patch.status["specChangeRefused"] = message
        return
    if "suspend" in changed and spec.get("dedicatedCluster") is not None:
        suspend = bool(body["spec"].get("suspend", False))
        kube.patch_rayjob(namespace, rayjob, {"spec": {"suspend": suspend}})
        reason = "Suspended" if suspend else "Resumed"
        kopf.info(body, reason=reason, message=f"spec.suspend={suspend} applied")
    patch.status.update(observedGeneration=meta.get("generation"), specChangeRefused=None)


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_event(event: Mapping[str, Any], name: str, namespace: str, status: kopf.Status, **_: Any) -> None:
    """Keep the jobs-by-phase gauge current (also right after a restart: the first listing replays all)."""
    if event.get("type") == "DELETED":
        metrics.JOBS.forget(namespace, name)
    else:
        metrics.JOBS.record(namespace, name, status.get("phase"))
