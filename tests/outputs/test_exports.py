"""autolfads.outputs: every exported name resolves, and the light helpers load without torch."""

from __future__ import annotations

import subprocess
import sys

import autolfads.outputs as outputs


def test_every_exported_name_resolves() -> None:
    for name in outputs.__all__:
        assert getattr(outputs, name) is not None, name


def test_atomic_and_fitlog_helpers_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from autolfads.outputs import atomic_path, write_fitlog, write_autolfads_zip\n"
        "print('torch' in sys.modules, 'lightning' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
