"""A small end-to-end training: ``train_model`` on the package's Lorenz data.

With the recovery test's small model: seconds per epoch, total seconds, and the valid rate R² against the
true rates. (Posterior sampling alone: ``bench/bench_posterior.py``.)

    .venv/bin/python bench/bench_train.py [--threads 2] [--epochs 10]

The machine may be shared: report the figures with the load they ran under.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repo, unless installed or on PYTHONPATH


LORENZ_OVERRIDES = (
    "model.gen_dim=64", "model.fac_dim=10", "model.ic_dim=32", "model.ic_enc_dim=32", "model.ci_enc_dim=0",
    "model.con_dim=0", "model.co_dim=0", "model.lr_init=0.01", "model.dropout_rate=0.05",
    "model.kl_increase_epoch=20", "model.l2_increase_epoch=20", "model.kl_ic_scale=1e-6",
    "datamodule.batch_size=32", "trainer.accelerator=cpu",
)  # fmt: skip


def bench_train(epochs: int) -> None:
    from autolfads.config import load_config
    from autolfads.data.synthetic import write_lorenz
    from autolfads.outputs.quality import rate_r2
    from autolfads.train import train_model

    with tempfile.TemporaryDirectory() as tmp:
        data = write_lorenz(Path(tmp) / "lorenz.h5")
        cfg = load_config(None, [*LORENZ_OVERRIDES, f"trainer.max_epochs={epochs}"], data_paths=[str(data)])
        start = time.perf_counter()
        result = train_model(cfg, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - start
        r2 = rate_r2(result.outputs[0])
    print(
        f"train_model on Lorenz (400 trials, 30 neurons, 50 bins; gen 64, no controller, batch 32): "
        f"{epochs} epochs in {seconds:.1f} s ({seconds / epochs:.2f} s/epoch incl. posterior sampling), "
        f"valid rate R² {r2:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load:.1f} at start")
    bench_train(args.epochs)


if __name__ == "__main__":
    main()
