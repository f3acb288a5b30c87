"""`--strict-skips` (what `make test` and so CI run with): only the allow-listed skip reasons pass.

Run as a user would, in a pytest subprocess on a throwaway test file, so the exit code is the one `make`
and `.ci/run` see. Slow only because each case starts a Python process (2-3 s on a shared 2-core box).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.skip_policy import ALLOWED_SKIPS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_pytest(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text("import pytest\n\n" + body)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skip_policy", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


ALLOWED = next(iter(ALLOWED_SKIPS))
ALLOWED_BODY = (
    f"def test_schema():\n    pytest.skip({ALLOWED + 'is not set'!r})\n\ndef test_ok():\n    pass\n"
)
OTHER_BODY = "def test_tool():\n    pytest.skip('HELM is not set')\n\ndef test_ok():\n    pass\n"
MODULE_BODY = "pytest.skip('no tool', allow_module_level=True)\n\ndef test_never():\n    pass\n"


@pytest.mark.parametrize(
    ("body", "strict", "code"),
    [
        (ALLOWED_BODY, True, 0),
        (OTHER_BODY, True, 1),
        (MODULE_BODY, True, 1),  # a whole module skipped at collection counts too
        (OTHER_BODY, False, 0),  # a developer's plain `pytest` still just reports the skip
    ],
    ids=["allow-listed", "other-reason", "module-level", "not-strict"],
)
def test_strict_skips_fail_the_run_on_reasons_off_the_allow_list(
    tmp_path: Path, body: str, strict: bool, code: int
) -> None:
    result = run_pytest(tmp_path, body, *(["--strict-skips"] if strict else []))
    assert result.returncode == code, result.stdout + result.stderr
    if code:
        assert "unexpected skips (--strict-skips)" in result.stdout
