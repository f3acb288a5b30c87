"""Fixtures every test shares: a clean environment, and the real external tools CI provides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.services", "tests.skip_policy"]

# Variables that would point a test at a developer's real cluster, bucket or tracking server.
_ISOLATED_PREFIXES = ("AWS_", "MLFLOW_", "RAY_ADDRESS", "KUBECONFIG", "AUTOLFADS_")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def external_tool(env_var: str, install_hint: str) -> Path:
    """The path an env var names (set by ``.ci/test-env.sh``).

    Outside CI a missing tool skips the test with what to install (and ``--strict-skips`` fails the run
    unless tests/skip_policy.py allows that reason); in CI (``CI=true``) nothing may skip, so it fails.
    """
    value = os.environ.get(env_var)
    if value and Path(value).exists():
        return Path(value)
    message = f"{env_var} is not set or does not exist: {install_hint}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
