"""A file that *declares* a 40 GB array is checked from its metadata: seconds, and no big allocation.

Bounds, not speed targets: ``autolfads validate`` in a fresh interpreter must answer in < 5 s with a peak
RSS < 200 MB, whether the memory budget refuses the file or (with a budget that allows it) the never-written
arrays are checked through their fill value instead of being read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

GB40 = (1, 1000, 10**7)  # float32: 40 GB per array
# This process's own peak RSS: VmHWM belongs to the memory map exec made. (getrusage's ru_maxrss keeps
# the forking parent's high-water mark across exec, so under pytest it would report pytest's.)
PEAK_RSS = (
    "def _peak_rss_mb():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1]) / 1024\n"
)


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split in ("train", "valid"):
            f[f"{split}_encod_data"] = rng.poisson(1.0, size=(1, 1000, 5)).astype("f4")
            f.create_dataset(f"{split}_recon_data", shape=GB40, dtype="f4")  # declared, never written
    assert path.stat().st_size < 200_000
    return path


def _validate(path: Path, budget: str, *overrides: str) -> dict:
    code = PEAK_RSS + (
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "from autolfads.cli import main\n"
        "try:\n"
        f"    main(['validate', {str(path)!r}, *{list(overrides)!r}])\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        "peak = _peak_rss_mb()\n"
        "print(json.dumps({'status': status, 'seconds': time.perf_counter() - start, 'rss_mb': peak}))\n"
    )
    env = {**os.environ, "AUTOLFADS_MEMORY_BUDGET": budget}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "stderr": done.stderr, "stdout": done.stdout}


def test_a_declared_40_gb_array_beyond_the_budget_is_refused_quickly_and_small(declared: Path) -> None:
    result = _validate(declared, "16G")
    assert result["status"] == 1, result
    assert "'train_recon_data' (1, 1000, 10000000)" in result["stderr"] and "16G" in result["stderr"]
    assert result["seconds"] < 5 and result["rss_mb"] < 200, result


def test_a_declared_40_gb_array_within_the_budget_is_checked_through_its_fill_value(declared: Path) -> None:
    small = ("model.gen_dim=8", "model.fac_dim=2", "model.ic_dim=2", "model.co_dim=0")
    result = _validate(declared, "1P", *small, "datamodule.batch_size=1")
    assert result["status"] == 0, result
    assert "recon_data    1000 steps x 10000000 channels" in result["stdout"]
    assert result["seconds"] < 5 and result["rss_mb"] < 200, result
