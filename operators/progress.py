"""Read the run's ``progress.json`` from the job's output URI with its storage credentials, defensively.

Why the operator reads a file instead of the run patching the status: the run then needs no Kubernetes
credentials or RBAC on the Ray pods (the shared cluster runs many users' jobs), ``autolfads run`` stays the
same command on a laptop and on a cluster, and the file is already there for ``--resume``. The cost is one
small GET per job per interval, and a status that lags the run by at most that interval.

Each job runs in its own directory, ``OUTPUT_URI/NAMESPACE/NAME`` (passed as ``--out``): two jobs sharing
an output URI never write into, or ``--resume``, each other's run, and re-applying a deleted job of the
same name continues its run. ``progress.json`` is read there; ``--out/NAME/`` is tried too, for a run
that nests its files under ``--name``.

The URI, the endpoint and the file all come from the job's owner, so the read is bounded (docs/security.md):

- only the schemes of ``autolfads.locations`` (``s3://``, ``s3a://``, ``file://``), nothing fsspec could
  reach besides (no ``http://``, no ``ssh://``);
- an endpoint override in the job's Secret must be one the admin listed (chart value
  ``operator.allowedStorageEndpoints`` → ``AUTOLFADS_ALLOWED_STORAGE_ENDPOINTS``); without one the
  request goes to AWS S3 itself;
- at most :data:`MAX_PROGRESS_BYTES`, read in small pieces whatever the server sends; a connect timeout,
  a per-read timeout and a deadline for the whole read, so a slow or endless answer costs seconds;
- a ``file://`` read stays under the output directory (no symlink out of it) and reads only a regular file.

Anything else is a :class:`ProgressReadError` (one line); the handlers keep the last status and back off
for that job (:class:`ReadBackoff`). Which fields reach the status, and their types and sizes, is decided
in ``operators.status.progress_fields``.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import math
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from autolfads.errors import StorageError
from autolfads.locations import local_path_under, scheme_of, uri_problem
from autolfads.tracking.series import PHASES

PROGRESS_FILE = "progress.json"
ZIP_FILE = "autolfads.zip"
MAX_PROGRESS_BYTES = 1_000_000  # a real progress.json is under 1 kB
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 3.0  # per socket read
DEADLINE_S = 8.0  # for the whole answer, however it trickles in
ALLOWED_ENDPOINTS_ENV = "AUTOLFADS_ALLOWED_STORAGE_ENDPOINTS"
_CHUNK = 64 * 1024
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ProgressReadError(Exception):
    """``progress.json`` could not be read within the bounds above; the message is one line."""


def run_dir(output_uri: str, namespace: str, job_name: str) -> str:
    """The job's own output directory: ``--out`` of its ``autolfads run``."""
    return f"{output_uri.rstrip('/')}/{namespace}/{job_name}"


def run_dirs(output_uri: str, namespace: str, job_name: str) -> list[str]:
    """Where the run's files may be: ``--out`` itself, then ``--out/NAME``."""
    base = run_dir(output_uri, namespace, job_name)
    return [base, f"{base}/{job_name}"]


def allowed_endpoints(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The admin's allowed endpoint overrides (comma or space separated URLs), normalised."""
    text = (os.environ if env is None else env).get(ALLOWED_ENDPOINTS_ENV, "")
    return frozenset(n for item in re.split(r"[,\s]+", text) if item and (n := normalise_endpoint(item)))


def normalise_endpoint(url: str) -> str | None:
    """``scheme://host:port`` (default port filled in, host lower-cased); None for anything else."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{parsed.scheme}://{parsed.hostname.lower()}:{port}"


def storage_options(secret_data: Mapping[str, str], uri: str) -> dict[str, Any]:
    """Credentials, endpoint and region for ``uri`` from a Secret's (decoded) AWS_* variables; nothing for
    other schemes."""
    if scheme_of(uri) not in ("s3", "s3a"):
        return {}
    opts: dict[str, Any] = {}
    if secret_data.get("AWS_ACCESS_KEY_ID"):
        opts["key"] = secret_data["AWS_ACCESS_KEY_ID"]
        opts["secret"] = secret_data.get("AWS_SECRET_ACCESS_KEY", "")
    if secret_data.get("AWS_SESSION_TOKEN"):
        opts["token"] = secret_data["AWS_SESSION_TOKEN"]
    client: dict[str, str] = {}
    endpoint = secret_data.get("AWS_ENDPOINT_URL_S3") or secret_data.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = secret_data.get("AWS_DEFAULT_REGION") or secret_data.get("AWS_REGION")
    if region:
        client["region_name"] = region
    if client:
        opts["client_kwargs"] = client
    return opts


def read_progress(
    output_uri: str,
    namespace: str,
    job_name: str,
    secret_data: Mapping[str, str],
    allowed: frozenset[str] | None = None,
) -> tuple[dict[str, Any], str] | None:
    """(progress, run dir URI) from the first place that has ``progress.json``; ``None`` if none has yet.

    Raises ``ProgressReadError`` (one line) when the URI or endpoint is not allowed, or storage answers
    with an error, too much, too slowly or not JSON; the caller keeps the last status and backs off.
    """
    problem = uri_problem(output_uri, "spec.outputURI", local_paths=False)
    if problem is not None:
        raise ProgressReadError(problem)
    allowed = allowed_endpoints() if allowed is None else allowed
    for candidate in run_dirs(output_uri, namespace, job_name):
        uri = f"{candidate}/{PROGRESS_FILE}"
        body = fetch(uri, output_uri, secret_data, allowed)
        if body is None:
            continue
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProgressReadError(f"{uri}: not JSON ({(str(exc).splitlines() or [''])[0][:120]})") from None
        except RecursionError:  # a megabyte of '[' nests deeper than the parser goes
            raise ProgressReadError(f"{uri}: not JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ProgressReadError(f"{uri}: expected a JSON object, got {type(data).__name__}")
        return checked_progress(data), candidate
    return None


# The progress.json fields the operator uses (its status, and the per-job series of operators.metrics via
# autolfads.tracking.series), each with the one shape it may have. The file is written in storage the
# job's owner controls: everything else is dropped here, so no handler ever sees the raw record.
MAX_COUNT = 10**9  # generations, epochs, trials, exploits, batches
MAX_BYTES = 10**15  # checkpoint bytes
MAX_SECONDS = 10**9  # durations
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$")
_COUNTS = (
    "phase_done", "phase_total", "generation", "generations_total", "epoch", "max_epochs", "epochs_done",
    "epochs_total", "trials_running", "trials_paused", "trials_errored", "trials_done", "trials_total",
    "exploits",
)  # fmt: skip
_SECONDS = ("epoch_seconds", "elapsed_s", "eta_s")
_TIMES = ("started_at", "updated_at")
PROGRESS_FIELDS = (
    "phase", "phase_unit", *_COUNTS, "checkpoint_bytes", *_SECONDS, "best_metric", "best_trial", *_TIMES,
    "mlflow_run_id",
)  # fmt: skip


def checked_progress(progress: Mapping[str, Any]) -> dict[str, Any]:
    """Only the documented ``progress.json`` fields (:data:`PROGRESS_FIELDS`) of the right type and size;
    a field that is missing, malformed or out of range is left out (a gap, never a wrong number)."""
    out: dict[str, Any] = {}
    phase = progress.get("phase")
    if isinstance(phase, str) and phase in PHASES:
        out["phase"] = phase
    for key in ("phase_unit", "mlflow_run_id"):
        value = progress.get(key)
        if isinstance(value, str) and NAME_PATTERN.match(value):
            out[key] = value
    for key, high in (*((k, MAX_COUNT) for k in _COUNTS), ("checkpoint_bytes", MAX_BYTES)):
        value = progress.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high:
            out[key] = value
    for key in _SECONDS:
        value = progress.get(key)
        if _finite(value) and 0 <= value <= MAX_SECONDS:
            out[key] = float(value)
    best = progress.get("best_metric")
    if _finite(best) and abs(best) <= 1e300:
        out["best_metric"] = float(best)
    trial = progress.get("best_trial")
    a_worker = isinstance(trial, int) and not isinstance(trial, bool) and 0 <= trial <= MAX_COUNT
    if a_worker or (isinstance(trial, str) and NAME_PATTERN.match(trial)):
        out["best_trial"] = trial
    for key in _TIMES:
        value = progress.get(key)
        if isinstance(value, str) and TIMESTAMP_PATTERN.match(value):
            out[key] = value
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fetch(uri: str, root_uri: str, secret_data: Mapping[str, str], allowed: frozenset[str]) -> bytes | None:
    """The object or file at ``uri`` (under ``root_uri``), at most MAX_PROGRESS_BYTES; None if absent."""
    scheme = scheme_of(uri)
    if scheme == "file":
        return _read_local(urlparse(uri).path, urlparse(root_uri).path, uri)
    if scheme in ("s3", "s3a"):
        return _read_s3(uri, secret_data, allowed)
    raise ProgressReadError(f"{uri}: the scheme {scheme}:// is not read by the operator")


def _read_local(path: str, root: str, uri: str) -> bytes | None:
    relative = path[len(root.rstrip("/")) :].lstrip("/")
    try:
        resolved = local_path_under(root, relative, uri)  # no symlink out of the output directory
    except StorageError as exc:
        raise ProgressReadError(str(exc)) from None
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProgressReadError(f"{uri}: cannot open ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ProgressReadError(f"{uri}: not a regular file")
        if info.st_size > MAX_PROGRESS_BYTES:
            raise ProgressReadError(
                f"{uri}: {info.st_size} bytes, more than the {MAX_PROGRESS_BYTES} allowed"
            )
        data = handle.read(MAX_PROGRESS_BYTES + 1)
    if len(data) > MAX_PROGRESS_BYTES:
        raise ProgressReadError(f"{uri}: more than the {MAX_PROGRESS_BYTES} bytes allowed")
    return data


def _read_s3(uri: str, secret_data: Mapping[str, str], allowed: frozenset[str]) -> bytes | None:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    options = storage_options(secret_data, uri)
    client_kwargs = options.get("client_kwargs", {})
    endpoint = client_kwargs.get("endpoint_url")
    if endpoint is not None:
        normal = normalise_endpoint(endpoint)
        if normal is None or normal not in allowed:
            raise ProgressReadError(
                f"{uri}: the storage endpoint {endpoint[:200]!r} of the job's Secret is not one the cluster "
                f"admin allowed ({ALLOWED_ENDPOINTS_ENV}; chart value operator.allowedStorageEndpoints)"
            )
    region = client_kwargs.get("region_name") or "us-east-1"
    if not _REGION.match(region):
        raise ProgressReadError(f"{uri}: the Secret's region {region[:64]!r} is not an AWS region name")
    url = _presigned_get(bucket, key, options, endpoint, region)
    return _http_get(url, uri)


def _presigned_get(
    bucket: str, key: str, options: Mapping[str, Any], endpoint: str | None, region: str
) -> str:
    """A short-lived signed GET URL (signing needs no network; the request is then ours to bound)."""
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 1},
    )
    with _SESSION_LOCK:  # one botocore session (its parsed service models) for all reads; not thread-safe
        client = _session().create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=options.get("key"),
            aws_secret_access_key=options.get("secret"),
            aws_session_token=options.get("token"),
            config=config,
        )
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def _http_get(url: str, uri: str) -> bytes | None:
    """GET ``url`` with a connect timeout, a per-read timeout, a total deadline and a size cap."""
    parsed = urlparse(url)
    started = time.monotonic()
    if parsed.scheme == "https":
        context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parsed.netloc, timeout=CONNECT_TIMEOUT_S, context=context
        )
    else:
        conn = http.client.HTTPConnection(parsed.netloc, timeout=CONNECT_TIMEOUT_S)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    # Socket timeouts bound each read; the watchdog bounds the whole exchange (a server that trickles its
    # headers one byte at a time would otherwise never hit a per-read timeout).
    watchdog = threading.Timer(DEADLINE_S, _abort, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(READ_TIMEOUT_S)
        conn.request("GET", target, headers={"Range": f"bytes=0-{MAX_PROGRESS_BYTES}"})
        response = conn.getresponse()
        if response.status == 404:
            return None
        if response.status not in (200, 206):
            raise ProgressReadError(f"{uri}: storage answered HTTP {response.status} {response.reason[:80]}")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_PROGRESS_BYTES:
            raise ProgressReadError(f"{uri}: {declared} bytes, more than the {MAX_PROGRESS_BYTES} allowed")
        body = bytearray()
        while True:
            if time.monotonic() - started > DEADLINE_S:
                raise ProgressReadError(f"{uri}: no complete answer within {DEADLINE_S:g} s")
            chunk = response.read1(_CHUNK)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > MAX_PROGRESS_BYTES:
                raise ProgressReadError(f"{uri}: more than the {MAX_PROGRESS_BYTES} bytes allowed")
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS, bad status line
        if time.monotonic() - started >= DEADLINE_S:
            raise ProgressReadError(f"{uri}: no complete answer within {DEADLINE_S:g} s") from None
        raise ProgressReadError(
            f"{uri}: storage unreachable or broken answer ({type(exc).__name__})"
        ) from None
    finally:
        watchdog.cancel()
        conn.close()


def _abort(conn: http.client.HTTPConnection) -> None:
    """Wake a read blocked on ``conn`` (shutdown, unlike close, interrupts a blocking recv)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@dataclass
class ReadBackoff:
    """Per-job pause after failed reads: ``base_s`` × 2^(failures − 1), at most ``cap_s``.

    A job whose storage errs, answers too much or too slowly is read less and less often, so it cannot
    keep an operator worker busy; one good read resets it. Kept in the job's kopf memo.
    """

    base_s: float
    cap_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    not_before: float = field(default=0.0)

    def ready(self) -> bool:
        return self.clock() >= self.not_before

    def failed(self) -> float:
        """Record a failure; returns the pause until the next read."""
        self.failures += 1
        delay = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        self.not_before = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.not_before = 0, 0.0


__all__ = [
    "ALLOWED_ENDPOINTS_ENV",
    "MAX_PROGRESS_BYTES",
    "PROGRESS_FIELDS",
    "PROGRESS_FILE",
    "ZIP_FILE",
    "ProgressReadError",
    "ReadBackoff",
    "allowed_endpoints",
    "checked_progress",
    "normalise_endpoint",
    "read_progress",
    "run_dir",
    "run_dirs",
    "storage_options",
]
