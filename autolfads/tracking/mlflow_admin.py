"""The admin's side of MLflow authentication: one user and one experiment per lab, and nothing more.

::

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=… \\
        python -m autolfads.tracking.mlflow_admin provision labs.yaml

``labs.yaml`` lists the labs (the Helm chart renders it and runs this as a post-install/upgrade Job)::

    - {lab: alpha, experiment: alpha, username: alpha, passwordFile: /secrets/alpha/password}
    - {lab: beta,  experiment: beta,  username: beta,  passwordFile: /secrets/beta/password}

For each lab, through MLflow's own auth client (``mlflow.server.auth.client.AuthServiceClient``) and
tracking client, never the database:

1. the lab's user exists with the password in ``passwordFile`` (created, or its password updated when a
   login with the file's password fails; a password is never printed);
2. the lab's experiment exists (created, or restored if it was deleted);
3. the lab's user holds MANAGE on it, and nobody else but admins holds anything on it (an experiment
   another user created first, or opened to someone else, is refused rather than handed over).

It changes nothing else: other labs' users and grants, and grants the lab's user got by creating
experiments of its own, are left alone. Running it twice changes nothing the second time. Before granting
anything it checks that the server's ``default_permission`` is ``NO_PERMISSIONS``: with MLflow's default
(``READ``) every user could read every lab's runs, and no grant can take that back.

Errors are one line each (an unreadable file, a bad field, the server refusing the admin) and the exit
status is non-zero; every change is printed as it is made.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from autolfads.errors import AutoLFADSError, ConfigError, TrackingError
from autolfads.tracking.lab_access import LabAccess, read_labs
from autolfads.tracking.mlflow_auth import PASSWORD_ENV, USERNAME_ENV, auth_status, redact_uri

LAB_PERMISSION = "MANAGE"
ISOLATING_DEFAULT = "NO_PERMISSIONS"
# An experiment id no server hands out: a user's permission on it is the server's default permission.
_UNUSED_EXPERIMENT_ID = "999999999999999"
# What requests/urllib3 say (inside MLflow's message) when no HTTP answer came, and how we say it.
_UNREACHABLE = {
    "Connection refused": "connection refused",
    "Name or service not known": "unknown host",
    "timed out": "timed out",
    "Failed to establish a new connection": "no connection",
    "Max retries exceeded": "no answer",
}
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}


# ---------------------------------------------------------------------------------------- the server
def _auth_client_class() -> Any:
    """MLflow's auth client (needs the full ``mlflow`` package), with the two admin reads it lacks."""
    try:
        with warnings.catch_warnings():  # the server modules it imports warn about Starlette internals
            warnings.simplefilter("ignore")
            from mlflow.server.auth.client import AuthServiceClient
            from mlflow.server.auth.routes import GET_CURRENT_USER, LIST_USERS
    except ImportError as exc:
        raise TrackingError(
            "provisioning needs the full MLflow package with its auth app "
            f"(pip install 'mlflow[auth]'): {exc}"
        ) from None

    class AdminClient(AuthServiceClient):  # type: ignore[misc,valid-type]
        def current_user(self) -> dict[str, Any]:
            return dict(self._request(GET_CURRENT_USER, "GET")["user"])

        def list_users(self) -> list[dict[str, Any]]:
            return list(self._request(LIST_USERS, "GET")["users"])

    return AdminClient


@dataclass
class Provisioner:
    """Brings an authenticated MLflow server in line with a list of labs, printing each change."""

    tracking_uri: str
    echo: Any = print

    def __post_init__(self) -> None:
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        self.where = redact_uri(self.tracking_uri)
        self.admin = os.environ.get(USERNAME_ENV) or None
        self.auth = _auth_client_class()(self.tracking_uri)
        self.tracking = MlflowClient(tracking_uri=self.tracking_uri)
        self.changes = 0

    # --- one call, one line on failure ----------------------------------------------------------------
    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MLflow's client raises several types for one refusal
            raise TrackingError(self._describe(exc, action)) from None

    def _describe(self, exc: BaseException, action: str) -> str:
        status = auth_status(exc)
        admin = f"user '{self.admin}'" if self.admin else "no user (MLFLOW_TRACKING_USERNAME unset)"
        if status == 401:
            return (
                f"MLflow at {self.where} refused the admin login as {admin} (401) while trying to {action}: "
                f"check {USERNAME_ENV} / {PASSWORD_ENV}"
            )
        if status == 403:
            return f"MLflow at {self.where} refused {admin} (403) to {action}: provisioning needs an admin"
        text = " ".join(str(exc).split())
        if any(sign in text for sign in _UNREACHABLE):
            reason = next((why for sign, why in _UNREACHABLE.items() if sign in text), "no answer")
            return (
                f"cannot reach MLflow at {self.where} ({reason}) to {action}: is the server up, and "
                "MLFLOW_TRACKING_URI right?"
            )
        text = text if len(text) <= 300 else text[:297] + "..."
        return f"MLflow at {self.where} could not {action}: {text}"

    def _change(self, lab: LabAccess, line: str) -> None:
        self.changes += 1
        self.echo(f"lab {lab.lab}: {line}")

    # --- the steps --------------------------------------------------------------------------------------
    def check_admin(self) -> None:
        """The server has authentication, and we are an admin of it."""
        try:
            me = self.auth.current_user()
        except Exception as exc:
            if _http_status(exc) == 404:
                raise TrackingError(
                    f"MLflow at {self.where} has no authentication: start it with "
                    "`mlflow server --app-name basic-auth` (see docs/security.md)"
                ) from None
            raise TrackingError(self._describe(exc, "read the current user")) from None
        if not me.get("is_admin"):
            raise TrackingError(
                f"MLflow at {self.where}: user '{me.get('username')}' is not an admin; provisioning needs "
                f"the admin's credentials in {USERNAME_ENV} / {PASSWORD_ENV}"
            )

    def ensure_user(self, lab: LabAccess) -> None:
        password = lab.password()
        try:
            user = self.auth.get_user(lab.username)
        except Exception as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise TrackingError(self._describe(exc, f"read user '{lab.username}'")) from None
            self._call(f"create user '{lab.username}'", self.auth.create_user, lab.username, password)
            self._change(lab, f"created user '{lab.username}'")
            return
        if user.is_admin:
            raise TrackingError(
                f"lab {lab.lab}: user '{lab.username}' is an MLflow admin, who can read every lab's runs; "
                "give the lab a user of its own"
            )
        if not self._login_works(lab.username, password):
            self._call(
                f"update the password of user '{lab.username}'",
                self.auth.update_user_password,
                lab.username,
                password,
            )
            self._change(lab, f"updated the password of user '{lab.username}'")

    def _login_works(self, username: str, password: str) -> bool:
        from mlflow.utils.rest_utils import MlflowHostCreds, http_request

        creds = MlflowHostCreds(host=self.tracking_uri, username=username, password=password)
        try:
            response = http_request(creds, "/api/2.0/mlflow/users/current", "GET", max_retries=0)
        except Exception as exc:
            raise TrackingError(self._describe(exc, f"check the login of user '{username}'")) from None
        return bool(response.status_code == 200)

    def check_default_permission(self, username: str) -> None:
        """Refuse a server where every user may read every experiment no one granted them."""
        result = self._call(
            "read the server's default permission",
            self.auth.get_user_permission,
            username,
            "experiment",
            _UNUSED_EXPERIMENT_ID,
        )
        if result.permission != ISOLATING_DEFAULT:
            raise TrackingError(
                f"MLflow at {self.where} gives every user {result.permission} on experiments no one "
                f"granted them, so labs would see each other's runs: set default_permission = "
                f"{ISOLATING_DEFAULT} in the server's auth config (MLFLOW_AUTH_CONFIG_PATH)"
            )

    def ensure_experiment(self, lab: LabAccess) -> str:
        found = self._call(
            f"read experiment '{lab.experiment}'", self.tracking.get_experiment_by_name, lab.experiment
        )
        if found is None:
            experiment_id = self._call(
                f"create experiment '{lab.experiment}'", self.tracking.create_experiment, lab.experiment
            )
            self._change(lab, f"created experiment '{lab.experiment}' (id {experiment_id})")
            return str(experiment_id)
        if found.lifecycle_stage == "deleted":
            self._call(
                f"restore experiment '{lab.experiment}'",
                self.tracking.restore_experiment,
                found.experiment_id,
            )
            self._change(
                lab, f"restored the deleted experiment '{lab.experiment}' (id {found.experiment_id})"
            )
        return str(found.experiment_id)

    def ensure_grant(self, lab: LabAccess, experiment_id: str, users: list[dict[str, Any]]) -> None:
        others = [
            (user["username"], grant["permission"])
            for user in users
            if not user.get("is_admin") and user["username"] != lab.username
            for grant in _experiment_grants(user)
            if grant["resource_pattern"] in (experiment_id, "*")
        ]
        if others:
            listed = ", ".join(f"'{name}' ({permission})" for name, permission in others)
            raise TrackingError(
                f"lab {lab.lab}: experiment '{lab.experiment}' (id {experiment_id}) is also open to "
                f"{listed}; a lab's experiment must be its own: revoke those grants, or delete the "
                "experiment, first"
            )
        own = [
            grant
            for user in users
            if user["username"] == lab.username
            for grant in _experiment_grants(user)
            if grant["resource_pattern"] == experiment_id
        ]
        if any(grant["permission"] == LAB_PERMISSION for grant in own):
            return
        if own:
            grant = own[0]
            self._call(
                f"raise user '{lab.username}' to {LAB_PERMISSION} on experiment '{lab.experiment}'",
                self.auth.update_role_permission,
                grant["id"],
                LAB_PERMISSION,
            )
            self._change(
                lab,
                f"raised user '{lab.username}' from {grant['permission']} to {LAB_PERMISSION} "
                f"on experiment '{lab.experiment}'",
            )
            return
        self._call(
            f"grant user '{lab.username}' {LAB_PERMISSION} on experiment '{lab.experiment}'",
            self.auth.grant_user_permission,
            lab.username,
            "experiment",
            experiment_id,
            LAB_PERMISSION,
        )
        self._change(lab, f"granted user '{lab.username}' {LAB_PERMISSION} on experiment '{lab.experiment}'")

    # --- all of it --------------------------------------------------------------------------------------
    def provision(self, labs: Sequence[LabAccess]) -> list[str]:
        """Every lab brought in line; lines describing the labs that could not be (empty when all were).

        A problem of one lab (its experiment held by someone else) does not stop the others; a problem
        of the server (unreachable, not an admin, an open default permission) stops everything.
        """
        self.check_admin()
        failed: list[str] = []
        ready: list[LabAccess] = []
        for lab in labs:
            try:
                self.ensure_user(lab)
                ready.append(lab)
            except (AutoLFADSError, ConfigError) as exc:
                failed.append(str(exc))
        if ready:
            self.check_default_permission(ready[0].username)
        experiments = {}
        for lab in ready:
            try:
                experiments[lab.lab] = self.ensure_experiment(lab)
            except AutoLFADSError as exc:
                failed.append(str(exc))
        users = self._call("list users", self.auth.list_users)
        for lab in ready:
            if lab.lab not in experiments:
                continue
            try:
                self.ensure_grant(lab, experiments[lab.lab], users)
            except AutoLFADSError as exc:
                failed.append(str(exc))
        return failed


def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "get_http_status_code", None)
    try:
        return int(status()) if callable(status) else None
    except (TypeError, ValueError):
        return None


def _experiment_grants(user: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for role in user.get("roles", []):
        for grant in role.get("permissions", []):
            if grant.get("resource_type") == "experiment":
                yield grant


# ---------------------------------------------------------------------------------------------- CLI
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Admin tools for an MLflow server with authentication (mlflow server --app-name basic-auth)."""


@main.command()
@click.argument("labs_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tracking-uri",
    metavar="URI",
    envvar="MLFLOW_TRACKING_URI",
    required=True,
    help="The MLflow server (also: MLFLOW_TRACKING_URI). The admin logs in with MLFLOW_TRACKING_USERNAME / "
    "MLFLOW_TRACKING_PASSWORD.",
)
def provision(labs_file: Path, tracking_uri: str) -> None:
    """Create each lab's MLflow user and experiment and grant the user MANAGE on it; idempotent.

    FILE is YAML: a list of {lab, experiment, username, passwordFile}.

    \b
    Example:
      MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=… \\
        python -m autolfads.tracking.mlflow_admin provision labs.yaml
    """
    try:
        labs = read_labs(labs_file)
        provisioner = Provisioner(tracking_uri, echo=click.echo)
        failed = provisioner.provision(labs)
    except AutoLFADSError as exc:
        _fail(str(exc))
    for line in failed:
        click.echo(f"Error: {line}", err=True)
    done = len(labs) - len(failed)
    summary = f"{provisioner.changes} changes" if provisioner.changes else "nothing to change"
    click.echo(f"MLflow at {provisioner.where}: {done} of {len(labs)} labs provisioned; {summary}")
    if failed:
        sys.exit(1)


def _fail(message: str) -> NoReturn:
    for line in message.splitlines():
        click.echo(f"Error: {line}", err=True)
    sys.exit(1)


__all__ = ["Provisioner", "main"]


if __name__ == "__main__":  # pragma: no cover
    main()
