"""``make demo``: AutoLFADS against one model with the default hyperparameters, for the same wall time.

    python -m autolfads.demo [--dir runs/demo]

1. ``autolfads synth lorenz``: synthetic spikes with the true rates (``*_truth``);
2. ``autolfads run``: a small population tuned by PBT, timed from start to written outputs;
3. ``autolfads train``: one model — the same data, the same architecture and fixed settings, every tuned
   hyperparameter at its default — given the whole of that time to train (``trainer.max_time``; its
   posterior sampling comes on top);
4. both models' valid-split rate R² against the true rates (``autolfads.outputs.quality.rate_r2``).

Every step is an ordinary CLI command, printed before it runs, so the demo shows what a user would type.
The settings below are sized for a 2-core CPU; `--epochs` and `--n-trials` size it for another machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from autolfads.outputs.quality import rate_r2

# The data: Lorenz spikes (docs/data.md); options of `autolfads synth lorenz`. 10 spikes/s (a cortical
# rate, sparser than the generator's default 25) and 200 trials: small enough that both fits converge
# within the demo's time on 2 cores.
DATA_OPTIONS = ("--seed", "0", "--mean-rate", "10")
N_TRIALS = 200  # train + valid trials of the demo file
# Shared by both fits: a small architecture and the ramps of the KL and L2 weights (not tuned by PBT).
COMMON = (
    "model.gen_dim=64", "model.fac_dim=16", "model.ic_enc_dim=32", "model.ci_enc_dim=32",
    "model.con_dim=32", "model.ic_dim=32", "model.kl_increase_epoch=10", "model.l2_increase_epoch=10",
)  # fmt: skip
# The population: 4 members sharing the CPU, the first tournament after 100 epochs and one every 50 after
# it. Measured on this data (2026-12-01, one run each): with 25-epoch generations from epoch 25 the least
# regularised members won the early tournaments (least dropout: they learn fastest at first), it settled on
# dropout ≈ 0.03 and its best member reached R² 0.922 against the single model's 0.939; with these
# settings it kept dropout ≈ 0.45 and coordinated dropout ≈ 0.5 and reached 0.938 against 0.939.
PBT = (
    "pbt.num_samples=4", "pbt.perturbation_interval=50", "pbt.burn_in_period=100",
    "pbt.resources_per_trial.cpu=1",
)  # fmt: skip
PBT_EPOCHS = 400  # per member (trainer.max_epochs of the run; the patience rule may end it sooner)
SINGLE_MAX_EPOCHS = 100_000  # the time limit, not the epochs, ends the single model's training


def autolfads_command() -> list[str]:
    """The ``autolfads`` entry point of this environment."""
    script = Path(sys.executable).with_name("autolfads")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "autolfads.cli"]


def step(*args: str) -> float:
    """Run one CLI command (printed first); its wall time in seconds. A failure stops the demo."""
    command = [*autolfads_command(), *args]
    print("$ autolfads " + " ".join(args), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo stopped: 'autolfads {args[0]}' failed with exit code {done.returncode}")
    return time.perf_counter() - start


def max_time(seconds: float) -> str:
    """Lightning's ``DD:HH:MM:SS`` for ``trainer.max_time``."""
    whole = int(seconds)
    return f"{whole // 86400:02d}:{whole // 3600 % 24:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/demo", help="where the data and both runs go")
    parser.add_argument("--n-trials", type=int, default=N_TRIALS, help="trials in the synthetic file")
    parser.add_argument("--epochs", type=int, default=PBT_EPOCHS, help="epochs per population member")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    data, pbt_dir, single_dir = root / "lorenz.h5", root / "pbt", root / "single"
    for old in (pbt_dir, single_dir):
        shutil.rmtree(old, ignore_errors=True)

    step("synth", "lorenz", str(data), "--force", *DATA_OPTIONS, "--n-trials", str(args.n_trials))
    pbt_seconds = step(
        "run", str(data), "--out", str(pbt_dir), *COMMON, *PBT, f"trainer.max_epochs={args.epochs}"
    )
    step(
        "train", str(data), "--out", str(single_dir), *COMMON,
        f"trainer.max_epochs={SINGLE_MAX_EPOCHS}", f"+trainer.max_time={max_time(pbt_seconds)}",
    )  # fmt: skip

    pbt_r2 = rate_r2(pbt_dir / "lfads_output_sess0.h5")
    single_r2 = rate_r2(single_dir / "lfads_output_sess0.h5")
    if pbt_r2 is None or single_r2 is None:
        raise SystemExit(f"demo: {data} has no valid_truth to score against")
    minutes = pbt_seconds / 60
    print()
    print(f"valid rate R² against the true rates, {minutes:.1f} min of wall time each:")
    print(f"  AutoLFADS (PBT best member)           {pbt_r2:.3f}   {pbt_dir}")
    print(f"  one model, default hyperparameters    {single_r2:.3f}   {single_dir}")
    verdict = "matches or beats" if pbt_r2 >= single_r2 - 0.005 else "does NOT beat"
    print(f"AutoLFADS {verdict} the single model on this data and machine.")


if __name__ == "__main__":
    main()
