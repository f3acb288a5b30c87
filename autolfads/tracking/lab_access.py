"""The labs an admin gives MLflow access to: a YAML list read and checked before any server is touched.

::

    - {lab: alpha, experiment: alpha, username: alpha, passwordFile: /secrets/alpha/password}
    - {lab: beta,  experiment: beta,  username: beta,  passwordFile: /secrets/beta/password}

Every problem of the file is one line naming the entry and field (an unknown field, a missing value, two
labs sharing a user or an experiment, a password file that cannot be read, or whose password MLflow would
refuse or runs could not match). Passwords stay in their files: :class:`LabAccess` reads one when it is
needed and never holds or prints it. ``python -m autolfads.tracking.mlflow_admin provision`` uses this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolfads.errors import ConfigError

FIELDS = ("lab", "experiment", "username", "passwordFile")
MIN_PASSWORD_LENGTH = 12  # mlflow.utils.validation._validate_password


@dataclass(frozen=True)
class LabAccess:
    """One lab's MLflow identity: its user, its experiment, and the file holding the user's password."""

    lab: str
    experiment: str
    username: str
    password_file: Path

    def password(self) -> str:
        """The password, read when needed (it never lives in this object, its repr or a message)."""
        return _read_password(self.password_file, self.lab)


def read_labs(path: str | os.PathLike[str]) -> list[LabAccess]:
    """The labs in a provisioning file; :class:`ConfigError` with one line per problem found."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the labs file ({exc.strerror or exc})") from None
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{path}: expected a non-empty list of {{lab, experiment, username, passwordFile}}, "
            f"found {type(entries).__name__}"
        )
    problems: list[str] = []
    labs: list[LabAccess] = []
    for index, entry in enumerate(entries):
        lab, entry_problems = _parse_entry(path, index, entry)
        problems += entry_problems
        if lab is not None:
            labs.append(lab)
    problems += _shared_values(path, labs)
    if problems:
        raise ConfigError("\n".join(problems))
    return labs


def _parse_entry(path: Path, index: int, entry: Any) -> tuple[LabAccess | None, list[str]]:
    where = f"{path}: [{index}]"
    if not isinstance(entry, dict):
        return None, [f"{where}: expected a mapping with {', '.join(FIELDS)}, found {type(entry).__name__}"]
    problems = [
        f"{where}.{key}: unknown field (expected {', '.join(FIELDS)})" for key in entry if key not in FIELDS
    ]
    values: dict[str, str] = {}
    for key in FIELDS:
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}.{key}: expected a non-empty string, found {value!r}")
        elif value != value.strip():
            problems.append(f"{where}.{key}: {value!r} has leading or trailing spaces")
        else:
            values[key] = value
    username = values.get("username", "")
    if ":" in username or any(c.isspace() for c in username):
        problems.append(f"{where}.username: {username!r} may not hold ':' or spaces (HTTP basic auth)")
    if problems:
        return None, problems
    lab = LabAccess(values["lab"], values["experiment"], username, Path(values["passwordFile"]))
    try:
        lab.password()
    except ConfigError as exc:
        return None, [f"{where}.passwordFile: {exc}"]
    return lab, []


def _shared_values(path: Path, labs: Sequence[LabAccess]) -> list[str]:
    """Two labs sharing a name, user or experiment would share each other's runs."""
    problems = []
    for field in ("lab", "username", "experiment"):
        seen: dict[str, str] = {}
        for lab in labs:
            value = getattr(lab, field)
            if value in seen:
                problems.append(
                    f"{path}: {field} {value!r} is given to both lab {seen[value]!r} and {lab.lab!r}"
                )
            seen.setdefault(value, lab.lab)
    return problems


def _read_password(path: Path, lab: str) -> str:
    try:
        password = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read lab {lab!r}'s password ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: lab {lab!r}'s password is not UTF-8 text") from None
    if password != password.strip():
        # Runs read the same Secret verbatim from MLFLOW_TRACKING_PASSWORD: a stripped copy here would
        # make their login fail.
        raise ConfigError(
            f"{path}: lab {lab!r}'s password starts or ends with whitespace (a trailing newline?); "
            "write it without (printf '%s' …)"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"{path}: lab {lab!r}'s password has {len(password)} characters; MLflow needs at least "
            f"{MIN_PASSWORD_LENGTH}"
        )
    return password


__all__ = ["FIELDS", "LabAccess", "read_labs"]
