"""Read the run's ``progress.json`` from the job's output URI, with the job's storage credentials.

Why the operator reads a file instead of the run patching the status: the run then needs no Kubernetes
credentials or RBAC on the Ray pods (the shared cluster runs many users' jobs), ``autolfads run`` stays the
same command on a laptop and on a cluster, and the file is already there for ``--resume``. The cost is one
small GET per job per interval, and a status that lags the run by at most that interval.

Each job runs in its own directory, ``OUTPUT_URI/NAMESPACE/NAME`` (passed as ``--out``): two jobs sharing
an output URI never write into, or ``--resume``, each other's run, and re-applying a deleted job of the
same name continues its run. ``progress.json`` is read there; ``--out/NAME/`` is tried too, for a run
that nests its files under ``--name``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PROGRESS_FILE = "progress.json"
ZIP_FILE = "autolfads.zip"


def run_dir(output_uri: str, namespace: str, job_name: str) -> str:
    """The job's own output directory: ``--out`` of its ``autolfads run``."""
    return f"{output_uri.rstrip('/')}/{namespace}/{job_name}"


def run_dirs(output_uri: str, namespace: str, job_name: str) -> list[str]:
    """Where the run's files may be: ``--out`` itself, then ``--out/NAME``."""
    base = run_dir(output_uri, namespace, job_name)
    return [base, f"{base}/{job_name}"]


def storage_options(secret_data: Mapping[str, str], uri: str) -> dict[str, Any]:
    """fsspec options for ``uri`` from a Secret's (decoded) AWS_* variables; nothing for other schemes."""
    if not uri.startswith(("s3://", "s3a://")):
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
    output_uri: str, namespace: str, job_name: str, secret_data: Mapping[str, str]
) -> tuple[dict[str, Any], str] | None:
    """(progress, run dir URI) from the first place that has ``progress.json``; ``None`` if none has yet.

    Raises ``OSError``/``ValueError`` when storage answers but the file cannot be read or parsed; the caller
    logs it and keeps the last status (the next tick tries again).
    """
    import fsspec  # imported here: only the progress timer needs it, and s3fs loads lazily with it

    for candidate in run_dirs(output_uri, namespace, job_name):
        uri = f"{candidate}/{PROGRESS_FILE}"
        fs, path = fsspec.core.url_to_fs(uri, **storage_options(secret_data, uri))
        if not fs.exists(path):
            continue
        with fs.open(path, "rb") as f:
            data = json.loads(f.read().decode())
        if not isinstance(data, dict):
            raise ValueError(f"{uri}: expected a JSON object, got {type(data).__name__}")
        return data, candidate
    return None
