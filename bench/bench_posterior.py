"""Seconds for 50 posterior samples of every trial, as ``train``, ``run`` and ``infer`` end (issue 16).

The reference architecture (gen 200, fac 100, con 64, ci_enc 64, ic_enc 64, ic 64, co 4; Poisson, batch
256), untrained (sampling time does not depend on the weights), on two synthetic files:

- the Lorenz shape: 1,300 trials of 30 channels × 50 bins (lfads-torch took 55 s for this on the 2-core
  development machine; the target is ≤ 15 s there);
- the MC_Maze shape: 2,295 trials (1,721 train + 574 valid), 137 of 182 channels held in, 35 + 10 bins.

    .venv/bin/python bench/bench_posterior.py [--threads 2] [--device cpu|cuda] [--rounds 3]

For each shape, alternating in rounds so that all see the same machine load: ``run_posterior_sampling``
end to end (sampling and writing ``lfads_output_sess0.h5``) at the default rows per pass and at a few
others, and — for comparison — the method it replaced (every sample a full forward pass, encoders
included, 512 rows per pass). Prints the min and median wall seconds over the rounds, and the min CPU
seconds (all threads: the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repo, unless installed or on PYTHONPATH

from autolfads.config import load_config
from autolfads.data.synthetic import write_lorenz
from autolfads.outputs import posterior
from autolfads.train import build_datamodule, build_model

SAMPLES = 50
SHAPES = {  # name -> write_lorenz arguments
    "Lorenz (1300 trials, 30 ch, 50 bins)": {"n_trials": 1300, "n_neurons": 30, "encod_seq_len": 50},
    "MC_Maze (2295 trials, 137/182 ch, 35+10 bins)": {
        "n_trials": 2295, "n_neurons": 182, "held_in": 137, "encod_seq_len": 35, "recon_seq_len": 45,
    },
}  # fmt: skip
ROWS_PER_PASS = (None, 512, 4096)  # None: the default for the device


def sample_and_write(model: torch.nn.Module, datamodule: object, out: Path, rows: int | None) -> None:
    """What ``train``/``run``/``infer`` do at the end, with ``rows`` per pass (None: the default)."""
    posterior.MAX_TRIALS_PER_PASS = rows
    try:
        posterior.run_posterior_sampling(model, datamodule, out, SAMPLES)  # type: ignore[arg-type]
    finally:
        posterior.MAX_TRIALS_PER_PASS = None


def full_forward_sampling(model: torch.nn.Module, datamodule: object, rows: int = 512) -> None:
    """The replaced method: each sample a full forward pass (encoders too), the batch repeated."""
    model.eval()
    with torch.no_grad():
        for loader in datamodule.predict_dataloader()[0].values():  # type: ignore[attr-defined]
            for batch, _ in loader:
                batch = type(batch)(*(t.to(model.device) for t in batch))
                n = batch.encod_data.shape[0]
                per_pass, done = max(1, min(SAMPLES, rows // n)), 0
                while done < SAMPLES:
                    k = min(per_pass, SAMPLES - done)
                    rep = type(batch)(*(t.repeat(k, *([1] * (t.dim() - 1))) for t in batch))
                    out = model.predict_step({0: (rep, ())}, 0)[0]
                    for value in out:
                        value.view(k, n, *value.shape[1:]).sum(0).cpu()
                    done += k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"{where}; torch {torch.__version__}; {SAMPLES} samples; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape, options in SHAPES.items():
            data = write_lorenz(Path(tmp) / "data.h5", **options)
            cfg = load_config(None, [], data_paths=[str(data)])  # the shipped (reference) architecture
            torch.manual_seed(0)
            model = build_model(cfg).to(device)
            datamodule = build_datamodule(cfg)
            datamodule.setup("predict")
            runs: dict[str, Callable[[], None]] = {
                f"run_posterior_sampling, {rows or 'default'} rows per pass": functools.partial(
                    sample_and_write, model, datamodule, Path(tmp) / "out", rows
                )
                for rows in ROWS_PER_PASS
            }
            runs["replaced method (full forward per sample, 512 rows)"] = functools.partial(
                full_forward_sampling, model, datamodule
            )
            seconds: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
            for _ in range(args.rounds):
                for label, run in runs.items():
                    start, cpu_start = time.perf_counter(), time.process_time()
                    run()
                    seconds[label].append((time.perf_counter() - start, time.process_time() - cpu_start))
            print(f"{shape}:")
            for label, values in seconds.items():
                wall, cpu = [w for w, _ in values], [c for _, c in values]
                print(f"  {label:53s} wall min {min(wall):5.1f} s  median {statistics.median(wall):5.1f} s"
                      f"   CPU min {min(cpu):5.1f} s")  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
