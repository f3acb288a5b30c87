"""MLflow authentication as a run sees it: who we log in as, and a refusal put in one line.

An authenticated tracking server (``mlflow server --app-name basic-auth``) takes HTTP basic auth from the
standard variables ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow's client reads them
on every request: tracking calls and proxied artifact uploads alike). The server answers

- 401 ``UNAUTHENTICATED``: no login, or a wrong username or password;
- 403 ``PERMISSION_DENIED``: the user is known but may not touch that experiment (lab A's user on lab B's
  experiment).

Retrying cannot fix either, so :class:`~.mlflow_tracking.RunTracker` turns one met before training into a
:class:`~autolfads.errors.TrackingError` built here: the server, the user and what was refused, never the
password. :func:`redact_uri` keeps a password written into a URI (``http://user:pw@host``) out of every
message too.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"

_AUTH_CODES = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}
_USERINFO_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*):[^@/\s]*@")


def auth_status(exc: BaseException) -> int | None:
    """401 or 403 when ``exc`` is the server refusing who we are or what we asked; else None."""
    code = str(getattr(exc, "error_code", ""))
    if code in _AUTH_CODES:
        return _AUTH_CODES[code]
    status = getattr(exc, "get_http_status_code", None)
    if callable(status):
        try:
            value = int(status())
        except (TypeError, ValueError):
            return None
        return value if value in (401, 403) else None
    return None


def current_user() -> str | None:
    """The username MLflow's client sends (``MLFLOW_TRACKING_USERNAME`` or ``~/.mlflow/credentials``)."""
    try:
        from mlflow.utils.credentials import read_mlflow_creds
    except ImportError:  # pragma: no cover - mlflow-skinny always has it
        return os.environ.get(USERNAME_ENV) or None
    return read_mlflow_creds().username or None


def redact_uri(uri: str) -> str:
    """``http://user:secret@host/x`` → ``http://user:***@host/x``; other URIs unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password masked (for error messages)."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", text)


def describe_refusal(exc: BaseException, uri: str, action: str, user: str | None = None) -> str:
    """One line for a 401/403 from ``uri`` while doing ``action`` (e.g. "create runs in experiment 'x'")."""
    where = redact_uri(uri)
    user = user if user is not None else current_user()
    if auth_status(exc) == 401:
        if user is None:
            return (
                f"MLflow at {where} requires a login (401 UNAUTHENTICATED) and none was given: set "
                f"{USERNAME_ENV} and {PASSWORD_ENV} to your lab's MLflow credentials"
            )
        return (
            f"MLflow at {where} refused the login of user '{user}' (401 UNAUTHENTICATED: wrong username "
            f"or password) while trying to {action}: check {USERNAME_ENV} / {PASSWORD_ENV}"
        )
    who = f"user '{user}'" if user is not None else "the anonymous user"
    return (
        f"MLflow at {where}: {who} may not {action} (403 PERMISSION_DENIED): use your lab's experiment "
        "(--mlflow-experiment) or ask the MLflow admin for access to this one"
    )


__all__ = [
    "PASSWORD_ENV",
    "USERNAME_ENV",
    "auth_status",
    "current_user",
    "describe_refusal",
    "redact_text",
    "redact_uri",
]
