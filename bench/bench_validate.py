"""How long ``autolfads validate`` and the refusals of ``train``/``run`` take, and their peak memory.

Each case runs the console entry point in a fresh interpreter (what a user waits for) and prints the
median wall time of ``--repeats`` runs and the peak RSS. Cases: a valid tiny file; a file that declares two
40 GB arrays (refused by the memory budget, and, with a budget that allows it, checked through the fill
value); a bad override refused by validate, train and run; a --resume refused for other inputs. Nothing
here imports torch, Lightning or Ray, which is the point.

    .venv/bin/python bench/bench_validate.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.data.files import contract_arrays, write_h5  # noqa: E402

PROBE = """
import json, sys, time
start = time.perf_counter()
from autolfads.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": status, "seconds": time.perf_counter() - start, "rss_mb": peak / 1024,
                  "heavy": [m for m in ("torch", "lightning", "ray") if m in sys.modules]}))
"""


def measure(args: list[str], repeats: int, budget: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOLFADS_")}
    if budget:
        env["AUTOLFADS_MEMORY_BUDGET"] = budget
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "status": runs[0]["status"],
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "heavy": runs[0]["heavy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        good = write_h5(root / "good.h5", contract_arrays())
        huge = root / "huge.h5"
        with h5py.File(huge, "w") as f:
            for split in ("train", "valid"):
                f[f"{split}_encod_data"] = np.ones((1, 1000, 5), dtype="f4")
                f.create_dataset(f"{split}_recon_data", shape=(1, 1000, 10**7), dtype="f4")
        small = [
            "model.gen_dim=8",
            "model.fac_dim=2",
            "model.ic_dim=2",
            "model.co_dim=0",
            "datamodule.batch_size=1",
        ]
        out = str(root / "out")
        cases = [
            ("validate, valid tiny file", ["validate", str(good)], None),
            ("validate, 2 x 40 GB declared, refused by budget 16G", ["validate", str(huge)], "16G"),
            ("validate, 2 x 40 GB declared, budget 1P", ["validate", str(huge), *small], "1P"),
            ("validate, bad override", ["validate", str(good), "model.lr_init=-1"], None),
            ("train, bad override", ["train", str(good), "--out", out, "model.lr_init=-1"], None),
            ("run, bad override", ["run", str(good), "--out", out, "model.lr_init=-1"], None),
            ("--help", ["--help"], None),
        ]
        print(f"{'case':58s} {'exit':>4s} {'median s':>9s} {'peak RSS MB':>12s}  heavy imports")
        for name, args, budget in cases:
            result = measure(args, repeats, budget)
            heavy = ", ".join(result["heavy"]) or "none"
            figures = f"{result['status']!s:>4s} {result['seconds']:9.2f} {result['rss_mb']:12.0f}"
            print(f"{name:58s} {figures}  {heavy}")


if __name__ == "__main__":
    main()
