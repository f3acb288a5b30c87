"""Posterior sampling speed (the 50-sample pass at the end of every run) and a small end-to-end training.

1. Posterior sampling at the reference size (gen 200, fac 100, con 64, ci_enc 64, ic_enc 64, ic 64, co 4) on
   MC_Maze-shaped data (182 channels, 137 held in, 35 + 10 steps): seconds for 50 samples of a 256-trial
   batch, one sample per forward pass versus the batch repeated along the trial axis (what
   ``run_posterior_sampling`` does).
2. ``train_model`` on the package's Lorenz data with the recovery test's small model: seconds per epoch,
   total seconds, and the valid rate R² against the true rates.

    .venv/bin/python bench/bench_train.py [--threads 2] [--epochs 10] [--skip-train]

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

from autolfads.data.batch import SessionBatch
from autolfads.model import LFADS
from autolfads.outputs.posterior import sample_batch

N_RECON, N_ENC, T_ENC, T_RECON, BATCH, SAMPLES = 182, 137, 35, 45, 256, 50
LORENZ_OVERRIDES = (
    "model.gen_dim=64", "model.fac_dim=10", "model.ic_dim=32", "model.ic_enc_dim=32", "model.ci_enc_dim=0",
    "model.con_dim=0", "model.co_dim=0", "model.lr_init=0.01", "model.dropout_rate=0.05",
    "model.kl_increase_epoch=20", "model.l2_increase_epoch=20", "model.kl_ic_scale=1e-6",
    "datamodule.batch_size=32", "trainer.accelerator=cpu",
)  # fmt: skip


def reference_model() -> LFADS:
    m = "autolfads.model"
    return LFADS(
        encod_data_dim=N_ENC, encod_seq_len=T_ENC, recon_seq_len=T_RECON, ext_input_dim=0, ic_enc_seq_len=0,
        ic_enc_dim=64, ci_enc_dim=64, ci_lag=1, con_dim=64, co_dim=4, ic_dim=64, gen_dim=200, fac_dim=100,
        readin=[{"_target_": "torch.nn.Identity"}],
        readout=[{"_target_": f"{m}.readin_readout.FanInLinear", "in_features": 100,
                  "out_features": N_RECON}],
        reconstruction=[{"_target_": f"{m}.recons.Poisson"}],
        co_prior={"_target_": f"{m}.priors.AutoregressiveMultivariateNormal", "tau": 10.0, "nvar": 0.1,
                  "shape": 4},
        ic_prior={"_target_": f"{m}.priors.MultivariateNormal", "mean": 0, "variance": 0.1, "shape": 64},
    ).eval()  # fmt: skip


def bench_posterior() -> None:
    model = reference_model()
    counts = torch.poisson(torch.full((BATCH, T_RECON, N_RECON), 0.3))
    batch = SessionBatch(
        counts[:, :T_ENC, :N_ENC],
        counts,
        torch.zeros(BATCH, T_ENC, 0),
        torch.zeros(BATCH, T_RECON, 0),
        torch.ones(BATCH, T_ENC, N_ENC),
    )
    for label, max_trials in (("one sample per pass", BATCH), ("repeated batch (default)", None)):
        sample_batch(model, 0, (batch, ()), num_samples=2, max_trials=max_trials)  # warm-up
        start = time.perf_counter()
        sample_batch(model, 0, (batch, ()), num_samples=SAMPLES, max_trials=max_trials)
        seconds = time.perf_counter() - start
        print(
            f"posterior sampling, reference size, {SAMPLES} samples x {BATCH} trials, {label}: "
            f"{seconds:.2f} s"
        )


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
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load:.1f} at start")
    with torch.no_grad():
        bench_posterior()
    if not args.skip_train:
        bench_train(args.epochs)


if __name__ == "__main__":
    main()
