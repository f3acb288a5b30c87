"""kopf handlers: thin orchestration over the pure modules (STYLE rules 11-12).

- create: admit (the namespace is a lab, the spec uses only what the lab allows; ``operators.admission``) →
  validate → render → ``kopf.adopt`` → create (idempotent) → status Pending.
- RayJob watch events: mirror KubeRay's status pair into the job's phase, with Events on transitions.
- timer while Running: read the run's ``progress.json`` into status (generation, best metric, trials).
- spec update: a job refused before submission (invalid spec) is tried again with the new spec; once
  submitted, ``spec.suspend`` is applied to the RayJob (dedicated clusters) and anything else is refused.
- delete: nothing to do here. Owned objects go with their owner (ownerReferences, Kubernetes GC); the
  outputs in object storage are never touched.

Invalid specs and jobs their lab does not allow fail permanently with the field named (reason
``InvalidSpec``, or one of ``operators.admission.REFUSAL_REASONS``) before anything is created;
references that do not exist *yet* (a Secret applied after the job) are retried for a while before the
job fails.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from operators import admission, kube, labs, metrics, render, validation
from operators.admission import Refusal
from operators.labs import Lab, Policy
from operators.progress import ZIP_FILE, read_progress, run_dir
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

KUEUE_GROUP = "kueue.x-k8s.io"
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
    # No watching of CRDs or namespaces: their resources are discovered once at start (the CRDs are
    # installed before the operator), so the operator needs no cluster-wide rights on either.
    settings.scanning.disabled = True
    kube.forget_api_groups()  # Kueue may have come or gone since the last start
    try:
        memo.policy = labs.policy_file_from_env()
    except labs.PolicyError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    logger.info(f"Labs: {', '.join(sorted(memo.policy.current().labs)) or 'none declared'}")
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
    patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any,
) -> None:
    _submit(body, spec, meta, namespace, status, patch, retry, memo.policy.current())


def _submit(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, namespace: str, status: kopf.Status,
    patch: kopf.Patch, retry: int, policy: Policy,
) -> None:
    """Admit → validate → render → adopt → create (idempotent) → status Pending."""
    job = _validated(body, spec, namespace, status, patch, retry, policy)
    rayjob = render.render_rayjob(job, meta)
    config_map = render.render_config_map(job, meta["name"], meta["uid"])
    if config_map is not None:
        kopf.adopt(config_map, owner=body)
        kube.create_config_map(namespace, config_map)
    # before the RayJob: a dedicated cluster never runs unfenced
    for fence in render.render_network_policies(job, meta, policy.kuberay_peers, policy.metrics_peers):
        kopf.adopt(fence, owner=body)
        kube.create_network_policy(namespace, fence)
    kopf.adopt(rayjob, owner=body)
    _ensure_rayjob(body, namespace, rayjob)
    # Exactly what the RayJob watch computes for a fresh RayJob, so that it has nothing more to write.
    patch.status.update(rayjob_fields(None), **status_patch(phase_from_rayjob(None), status, _now()))
    patch.status.update(rayJobName=rayjob["metadata"]["name"], observedGeneration=meta.get("generation"))


def _validated(
    body: kopf.Body, spec: kopf.Spec, namespace: str, status: kopf.Status, patch: kopf.Patch, retry: int,
    policy: Policy,
) -> JobSpec:
    """The typed spec with its lab's settings; else the job is marked Failed (PermanentError) or waits
    for a reference (TemporaryError). Nothing is created before this returns."""
    lab = policy.lab_for(namespace)
    if lab is None:
        _refuse(body, patch, status, [admission.not_a_lab(namespace)])
    assert lab is not None  # _refuse raised
    problems = validation.validate_spec(spec)
    if problems:
        _fail(body, patch, status, "InvalidSpec", "; ".join(problems))
    _refuse(body, patch, status, admission.refusals(spec, lab, policy))
    problems, missing, refused = _check_references(spec, namespace, lab)
    _refuse(body, patch, status, refused)
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
    return admission.job_spec(spec, lab, policy, kueue=kube.has_api_group(KUEUE_GROUP))


def _check_references(
    spec: Mapping[str, Any], namespace: str, lab: Lab
) -> tuple[list[str], list[str], list[Refusal]]:
    """(problems, missing, refused): the ConfigMap's config must parse; the ConfigMap and the storage
    Secret the job will use must exist, and that Secret must carry the admin's mark."""
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
    named = (spec.get("storageSecretRef") or {}).get("name")
    secret = named or lab.cluster_secret
    field = "spec.storageSecretRef.name" if named else f"lab {lab.name!r} storage Secret"
    refused: list[Refusal] = []
    if secret:
        try:
            secret_labels = kube.get_secret_labels(namespace, secret)
        except kube.Forbidden:
            refused.append(admission.secret_unreadable(field, namespace, secret))
        else:
            if secret_labels is None:
                missing.append(f"{field}: Secret {namespace}/{secret} not found")
            elif secret_labels.get(admission.STORAGE_SECRET_LABEL) != "true":
                refused.append(admission.secret_unmarked(field, namespace, secret))
    return problems, missing, refused


def _fail(body: kopf.Body, patch: kopf.Patch, status: kopf.Status, reason: str, message: str) -> None:
    patch.status.update(status_patch(PhaseView(FAILED, reason, message), status, _now()))
    kopf.warn(body, reason=reason, message=message)
    raise kopf.PermanentError(message)


def _refuse(body: kopf.Body, patch: kopf.Patch, status: kopf.Status, refused: list[Refusal]) -> None:
    """Fail the job when its lab refuses it: the first refusal's reason, every refusal's message."""
    if refused:
        _fail(body, patch, status, refused[0].reason, "; ".join(r.message for r in refused))


def _effective_spec(spec: Mapping[str, Any], namespace: str, policy: Policy) -> JobSpec:
    """The spec as it runs: with its lab's defaults when its namespace is (still) a lab."""
    lab = policy.lab_for(namespace)
    return parse_spec(spec) if lab is None else admission.job_spec(spec, lab, policy)


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
def rayjob_event(
    event: Mapping[str, Any], body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any
) -> None:
    """Mirror KubeRay's status into the owning AutoLFADSJob, patching only what changed."""
    job = _owning_job(body, namespace)
    view = None if job is None else _rayjob_view(event, body, job)
    if job is None or view is None:
        return
    old = job.get("status") or {}
    new = {**rayjob_fields(body.get("status")), **status_patch(view, old, _now())}
    new["rayJobName"] = body.metadata.name
    if view.phase in TERMINAL_PHASES:
        new.update(_final_progress(job, memo.policy.current(), succeeded=view.phase == SUCCEEDED))
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


def _final_progress(job: Mapping[str, Any], policy: Policy, succeeded: bool) -> dict[str, Any]:
    """Last progress + where autolfads.zip is, read once when the job ends (best effort)."""
    spec = _effective_spec(job.get("spec") or {}, job["metadata"]["namespace"], policy)
    found = _read_progress(spec, job["metadata"]["name"], job["metadata"]["namespace"])
    if found:
        metrics.JOB_PROGRESS.record(job["metadata"]["namespace"], job["metadata"]["name"], found[0])
    out = progress_fields(found[0], spec.mlflow_tracking_uri) if found else {}
    meta = job["metadata"]
    where = found[1] if found else run_dir(spec.output_uri, meta["namespace"], meta["name"])
    if succeeded:
        out["outputURI"] = f"{where}/{ZIP_FILE}"
    return out


def _read_progress(spec: JobSpec, name: str, namespace: str) -> tuple[dict[str, Any], str] | None:
    try:
        secret = kube.get_secret_data(namespace, spec.storage_secret) if spec.storage_secret else {}
        return read_progress(spec.output_uri, namespace, name, secret or {})
    except (OSError, ValueError, ImportError, kube.ApiException) as exc:  # keep the last status
        logging.getLogger(__name__).warning(f"progress of {namespace}/{name} unreadable: {exc}")
        return None


@kopf.timer(GROUP, VERSION, PLURAL, interval=PROGRESS_INTERVAL,
            when=lambda status, **_: status.get("phase") == RUNNING)
@metrics.instrumented("progress")
def progress_timer(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, status: kopf.Status, patch: kopf.Patch,
    memo: kopf.Memo, **_: Any,
) -> None:
    """Copy the run's progress.json into status while the job runs; an Event per finished generation."""
    job = _effective_spec(spec, namespace, memo.policy.current())
    found = _read_progress(job, name, namespace)
    if found is None:
        return
    metrics.JOB_PROGRESS.record(namespace, name, found[0])
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
    status: kopf.Status, patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any,
) -> None:
    """A job refused before submission is tried again with its new spec. Once submitted, ``spec.suspend``
    is applied to a dedicated cluster's RayJob (unless Kueue queues it: then Kueue alone decides when it
    runs) and every other change is refused with an Event."""
    rayjob = status.get("rayJobName")
    if not rayjob:
        _submit(body, spec, meta, namespace, status, patch, retry, memo.policy.current())
        return
    changed = sorted({".".join(str(p) for p in op[1]).removeprefix("spec.") or "spec" for op in diff})
    refused = [f for f in changed if f.split(".")[0] not in MUTABLE_FIELDS]
    message = (
        f"{', '.join('spec.' + f for f in refused)} cannot change once the job is submitted; "
        "delete and re-create the job (its outputs are kept)"
    )
    if not refused and "suspend" in changed and _queued_by_kueue(namespace, rayjob):
        message = "spec.suspend: Kueue queues this job and decides when it runs; delete the job to stop it"
        refused = ["suspend"]
    if refused:
        kopf.warn(body, reason="SpecChangeRefused", message=message)
        patch.status["specChangeRefused"] = message
        return
    if "suspend" in changed and spec.get("dedicatedCluster") is not None:
        suspend = bool(body["spec"].get("suspend", False))
        kube.patch_rayjob(namespace, rayjob, {"spec": {"suspend": suspend}})
        reason = "Suspended" if suspend else "Resumed"
        kopf.info(body, reason=reason, message=f"spec.suspend={suspend} applied")
    patch.status.update(observedGeneration=meta.get("generation"), specChangeRefused=None)


def _queued_by_kueue(namespace: str, rayjob: str) -> bool:
    labels = ((kube.get_rayjob(namespace, rayjob) or {}).get("metadata") or {}).get("labels") or {}
    return render.KUEUE_QUEUE_LABEL in labels


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_event(event: Mapping[str, Any], name: str, namespace: str, status: kopf.Status, **_: Any) -> None:
    """Keep the jobs-by-phase gauge current (also right after a restart: the first listing replays all)."""
    if event.get("type") == "DELETED":
        metrics.JOBS.forget(namespace, name)
        metrics.JOB_PROGRESS.forget(namespace, name)
    else:
        metrics.JOBS.record(namespace, name, status.get("phase"))
