"""A newcomer's `git clone` + `make`: everything the suite needs comes from the clone itself.

The clone goes into an empty temporary folder, so no shared/ (CI's KubeRay schemas and helm installer)
sits beside it, and runs with none of CI's variables. `make venv tools` installs from the lock and
fetches helm and kubectl; then the whole suite must collect, and the chart, manifest and operator-schema
tests must run with no skip but the allow-listed KubeRay-schema ones (``--strict-skips``).

What it costs: a full venv install from the lock (the price of checking what a newcomer gets); pip
reuses the machine's pip cache and any wheel folder pip is configured with. Measured figures are in
the README (Development).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.skip_policy import is_allowed

REPO = Path(__file__).resolve().parents[1]
# Variables that would hand the clone what a newcomer does not have (CI's tools, CI's strictness).
CI_ONLY = ("CI", "HELM", "KUBERAY_CRD_DIR", "SHARED", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
CI_ONLY += ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # the outer `make test` must not steer the clone's make


def _fetch_tools_module():
    spec = importlib.util.spec_from_file_location("fetch_tools", REPO / ".ci" / "fetch_tools.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(command: str, cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_fresh_clone_fetches_its_tools_and_skips_only_the_kuberay_schema_tests(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("this test clones the repository: run it from a git checkout with git installed")
    clone = tmp_path / "autolfads"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in CI_ONLY}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)

    install = run("make venv tools", clone, env, timeout=1200)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    # Bytecode comes with the install (uv skips it, pip does not): without it, with PYTHONDONTWRITEBYTECODE
    # set, every process compiled torch and Lightning from source on import (3-4x the import time).
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    for module in ("torch/__init__.py", "lightning/__init__.py", "ray/__init__.py"):
        assert Path(importlib.util.cache_from_source(str(site / module))).is_file(), f"{module} not compiled"

    tools = _fetch_tools_module()
    for name, (_, digest) in tools.BINARIES.items():
        binary = clone / ".tools" / "bin" / name
        fetched = hashlib.sha256(binary.read_bytes()).hexdigest()
        assert fetched == digest, f"{name} was not fetched and checked"

    pytest_cmd = ". ./.ci/test-env.sh && .venv/bin/python -m pytest -p no:cacheprovider"
    collected = run(f"{pytest_cmd} --co -q", clone, env, timeout=600)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert re.search(r"^\d+ tests collected", collected.stdout, flags=re.M), collected.stdout[-500:]

    tests = "tests/helm tests/k8s tests/operator/test_render.py tests/operator/test_validation.py"
    result = run(f'{pytest_cmd} {tests} -m "not slow" -q -rs --strict-skips', clone, env, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    skipped = re.findall(r"^SKIPPED \[(\d+)\] [^:]+:\d+: (.*)$", result.stdout, flags=re.M)
    assert all(is_allowed(reason) for _, reason in skipped), skipped
    assert re.search(r"\b(\d{2,}) passed\b", result.stdout), result.stdout[-500:]
    assert "HELM is not set" not in result.stdout
