"""Seconds per LFADS training step and peak memory at the reference size (issue 2, "How we will know").

Reference size: gen 200, fac 100, con 64, ci_enc 64, ic_enc 64, ic 64, co 4; MC_Maze-shaped data
(182 channels, 137 held in; 35 observed + 10 forward steps); batch 256; Poisson; coordinated dropout on.
One step = forward, backward, gradient clipping and an AdamW update of ``LFADS.shared_step``'s loss, as
Lightning's training step does it.

    .venv/bin/python bench/bench_model.py [--steps 10] [--warmup 2] [--threads 2] [--device cpu|cuda]

Prints min and median seconds per step, wall and CPU (the machine may be shared: say so with the numbers),
seconds per epoch for an MC_Maze-sized train split (1721 trials -> 6 steps of 256), and peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repo, unless installed or on PYTHONPATH

from autolfads.data.batch import SessionBatch
from autolfads.model import LFADS

M = "autolfads.model"
N_RECON, N_ENC, T_ENC, T_RECON, BATCH = 182, 137, 35, 45, 256
TRAIN_TRIALS = 1721  # MC_Maze train split


def reference_config() -> dict:
    return {
        "encod_data_dim": N_ENC, "encod_seq_len": T_ENC, "recon_seq_len": T_RECON, "ext_input_dim": 0,
        "ic_enc_seq_len": 0, "ic_enc_dim": 64, "ci_enc_dim": 64, "ci_lag": 1, "con_dim": 64, "co_dim": 4,
        "ic_dim": 64, "gen_dim": 200, "fac_dim": 100,
        "readin": [{"_target_": "torch.nn.Identity"}],
        "readout": [{"_target_": f"{M}.readin_readout.FanInLinear", "in_features": 100,
                     "out_features": N_RECON}],
        "reconstruction": [{"_target_": f"{M}.recons.Poisson"}],
        "train_aug_stack": {"_target_": f"{M}.augment.AugmentationStack", "transforms": [
            {"_target_": f"{M}.augment.CoordinatedDropout", "cd_rate": 0.3, "cd_pass_rate": 0.0}],
            "batch_order": [0], "loss_order": [0]},
        "infer_aug_stack": {"_target_": f"{M}.augment.AugmentationStack"},
        "co_prior": {"_target_": f"{M}.priors.AutoregressiveMultivariateNormal", "tau": 10.0, "nvar": 0.1,
                     "shape": 4},
        "ic_prior": {"_target_": f"{M}.priors.MultivariateNormal", "mean": 0, "variance": 0.1, "shape": 64},
        "dropout_rate": 0.3, "l2_gen_scale": 1e-3, "l2_con_scale": 1e-3, "kl_ic_scale": 1e-5,
        "kl_co_scale": 1e-5,
    }  # fmt: skip


def make_batch(device: torch.device) -> dict[int, tuple[SessionBatch, tuple]]:
    gen = torch.Generator().manual_seed(0)
    recon = torch.poisson(torch.full((BATCH, T_RECON, N_RECON), 0.3), generator=gen)
    batch = SessionBatch(
        recon[:, :T_ENC, :N_ENC].clone(), recon, torch.zeros(BATCH, T_ENC, 0),
        torch.full((BATCH, T_RECON, 0), float("nan")), torch.ones(BATCH, T_ENC, N_ENC),
    )  # fmt: skip
    return {0: (SessionBatch(*(t.to(device) for t in batch)), ())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = LFADS(**reference_config()).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)
    batch = make_batch(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.shared_step(batch, "train").loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        optimizer.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):  # allocator, AdamW state
        step()
    sync()
    per_step, cpu_per_step = [], []
    for _ in range(args.steps):  # each step timed alone: on a shared machine the min is the best estimate
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        sync()
        per_step.append(time.perf_counter() - start)
        cpu_per_step.append(time.process_time() - cpu_start)
    steps_per_epoch = TRAIN_TRIALS // BATCH
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{args.threads} threads"
    load = os.getloadavg()[0]
    print(f"device: {device} ({where}); torch {torch.__version__}; batch {BATCH}; {args.steps} timed steps")
    print(f"load average at the end: {load:.1f}")
    print(f"s/step wall: min {min(per_step):.4f}  median {statistics.median(per_step):.4f}")
    cpu_min, cpu_med = min(cpu_per_step), statistics.median(cpu_per_step)
    print(f"s/step CPU (all threads): min {cpu_min:.4f}  median {cpu_med:.4f}")
    print(f"s/epoch ({steps_per_epoch} steps of {BATCH}): min {min(per_step) * steps_per_epoch:.3f}")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
