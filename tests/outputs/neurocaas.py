"""How the NeuroCAAS AutoLFADS documentation reads ``fitlog.csv``, to run against our files as it is written.

The documentation plots the learning curves with ``pd.read_csv("fitlog.csv", index_col=0)``, then
``df.groupby("worker_id")`` and each worker's ``worker.epoch``. ``index_col=0`` takes the file's first
column as the row index: the reference writes pandas' unnamed row numbers there, so ``epoch`` has to stay a
column after it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DOCUMENTED_SNIPPET = """
import matplotlib.pyplot as plt
import pandas as pd

df = pd.read_csv("fitlog.csv", index_col=0)
fig, ax = plt.subplots()
for worker_id, worker in df.groupby("worker_id"):
    ax.plot(worker.epoch, worker["valid/recon_smth"], label=f"worker {worker_id}")
ax.set_xlabel("epoch")
ax.legend()
fig.savefig("learning_curves.png")
"""


def run_documented_snippet(run_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Run the snippet where a user would (a folder holding ``fitlog.csv``); returns its variables.

    ``fitlog.csv`` is copied into ``work_dir`` so the figure lands there, not in the run's outputs.
    """
    import matplotlib

    matplotlib.use("Agg")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "fitlog.csv").write_bytes((run_dir / "fitlog.csv").read_bytes())
    namespace: dict[str, Any] = {}
    before = Path.cwd()
    os.chdir(work_dir)
    try:
        exec(DOCUMENTED_SNIPPET, namespace)  # our own constant: the documented code
    finally:
        os.chdir(before)
        import matplotlib.pyplot as plt

        plt.close("all")
    assert (work_dir / "learning_curves.png").stat().st_size > 0
    return namespace
