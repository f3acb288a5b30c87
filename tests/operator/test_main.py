"""``python -m operators``: the command line the operator image runs."""

from __future__ import annotations

import subprocess
import sys

from tests.k8s.conftest import REPO


def test_help_names_the_liveness_and_namespace_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "operators", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--liveness" in result.stdout and "--namespace" in result.stdout


def test_operator_package_imports_without_torch_or_ray() -> None:
    code = (
        "import sys, operators.main\n"
        "print(sorted(m for m in ('torch', 'ray', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
