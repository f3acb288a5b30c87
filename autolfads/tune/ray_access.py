"""Reaching an existing Ray cluster that has token authentication, or a clear line saying why not.

Ray (2.52+) authenticates every request to a cluster started with ``RAY_AUTH_MODE=token`` — GCS, Ray
Client, dashboard and job API — against one shared token. A process joining such a cluster sends a token
when *its own* environment says so (Ray's documented variables; the chart mounts them from the lab
cluster's Secret, and a Ray job's driver inherits them from the head):

- ``RAY_AUTH_MODE=token``, and the token from (first found) ``RAY_AUTH_TOKEN``, the file named by
  ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``.

Left to itself, ``ray.init(address=…)`` answers a missing or wrong token with ``ConnectionError: Failed
to connect to Ray cluster`` after about 20 s, the reason only in a C++ log line. :func:`check_ray_access`
asks the cluster's GCS once (``GetClusterId``, 5 s at most, through Ray's own authenticated channel) and
turns "unauthenticated" into one line that says which token was sent, or that none was. Unreachable or
slow clusters are left to ``ray.init``'s own retries.

Ray Client addresses (``ray://``) are refused: under Ray Client, Ray Tune runs its driver loop on the
cluster, away from this process's run directory, progress file and MLflow session. ``autolfads run``
belongs on the cluster instead, as a Ray job (what the operator's RayJob does) or with the GCS address.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from autolfads.errors import AutoLFADSError

log = logging.getLogger("autolfads.tune")

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
PROBE_TIMEOUT_S = 5.0
_HOST_PORT = re.compile(r"^[\w.\-]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$")


class RayAccessError(AutoLFADSError):
    """The Ray cluster cannot be used from here: wrong address kind, or its token is missing or wrong."""


@dataclass(frozen=True)
class TokenSetting:
    """What this process will present to a Ray cluster: the mode, and where its token comes from."""

    mode: str  # "token", "disabled", or "" when RAY_AUTH_MODE is unset
    source: str | None  # "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH=/x", "~/.ray/auth_token", or None

    @property
    def sends_token(self) -> bool:
        return self.mode == "token" and self.source is not None


def token_setting() -> TokenSetting:
    """Read the token variables the way Ray does, refusing a token file Ray could not read.

    (Ray aborts the whole process on an unreadable ``RAY_AUTH_TOKEN_PATH``; we say it in a line first.)
    """
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if os.environ.get(TOKEN_ENV, "").strip():
        return TokenSetting(mode, TOKEN_ENV)
    if path := os.environ.get(TOKEN_PATH_ENV):
        if mode == "token":
            try:
                text = Path(path).read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise RayAccessError(
                    f"{TOKEN_PATH_ENV}={path}: cannot read the Ray token file ({reason})"
                ) from None
            if not text:
                raise RayAccessError(f"{TOKEN_PATH_ENV}={path}: the Ray token file is empty")
        return TokenSetting(mode, f"{TOKEN_PATH_ENV}={path}")
    default = Path.home() / ".ray" / "auth_token"
    return TokenSetting(mode, "~/.ray/auth_token" if default.is_file() else None)


def check_ray_access(address: str) -> None:
    """Raise :class:`RayAccessError` (one line) when ``address`` cannot be used as ``--address``, or when
    the cluster there refuses this process's token; return quietly otherwise (reachable or not)."""
    if address.startswith("ray://"):
        raise RayAccessError(
            f"--address {address}: Ray Client (ray://) is not supported: Ray Tune would run the driver on "
            "the cluster, away from this run's files and MLflow session. Run autolfads on the cluster: as "
            "a Ray job (ray job submit --address http://HEAD:8265 -- autolfads run …, as the operator "
            "does) or with the GCS address (--address HEAD:6379) from a machine on the cluster's network"
        )
    if not _HOST_PORT.match(address):
        return  # "auto", "local" and other forms: Ray's own discovery
    setting = token_setting()
    if setting.mode == "token" and setting.source is None:
        raise RayAccessError(
            f"--address {address}: {MODE_ENV}=token but no Ray token is set: set {TOKEN_ENV}, or "
            f"{TOKEN_PATH_ENV} to a file holding it"
        )
    if _gcs_refuses(address):
        if not setting.sends_token:
            shown = setting.mode or "unset"
            raise RayAccessError(
                f"--address {address}: the Ray cluster there requires token authentication and no token "
                f"was sent ({MODE_ENV} is {shown}): set {MODE_ENV}=token and {TOKEN_ENV} (or "
                f"{TOKEN_PATH_ENV}) to the cluster's token"
            )
        raise RayAccessError(
            f"--address {address}: the Ray cluster there refused the token from {setting.source}: it is "
            "not this cluster's token (on Kubernetes, the lab cluster's token Secret)"
        )


def _gcs_refuses(address: str) -> bool:
    """True when the GCS at ``address`` answers "unauthenticated" to our (possibly absent) token."""
    try:
        import grpc
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError as exc:  # a Ray without these internals: ray.init's own errors still apply
        log.debug("no Ray token probe (%s)", exc)
        return False
    channel = init_grpc_channel(address)  # adds Ray's token interceptor when RAY_AUTH_MODE=token
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S)
    except grpc.RpcError as error:
        code = error.code() if callable(getattr(error, "code", None)) else None
        log.debug("Ray token probe of %s: %s", address, code)
        return bool(code == grpc.StatusCode.UNAUTHENTICATED)
    finally:
        channel.close()
    return False


__all__ = ["RayAccessError", "TokenSetting", "check_ray_access", "token_setting"]
