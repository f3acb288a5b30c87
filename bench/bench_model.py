"""Seconds per LFADS training step at the reference size, eager against compiled loops (issue 16).

Reference size: gen 200, fac 100, con 64, ci_enc 64, ic_enc 64, ic 64, co 4; MC_Maze-shaped data
(182 channels, 137 held in; 35 observed + 10 forward steps); batch 256; Poisson; coordinated dropout on.
One step = forward, backward, gradient clipping and an AdamW update of ``LFADS.shared_step``'s loss, as
Lightning's training step does it.

    .venv/bin/python bench/bench_model.py                 # CPU: 2 threads, then 1 thread
    .venv/bin/python bench/bench_model.py --device cuda   # GPU: ms per step, then trials per GPU
    .venv/bin/python bench/bench_model.py --precision bf16-mixed   # matmuls in bfloat16 (autocast)

CPU: for each thread count, one fresh process runs eager and compiled steps alternately (``--steps`` of
each, after warm-up), so both see the same load; it prints the first compiled step's time (the compile:
cold or from inductor's on-disk cache), then min and median wall and CPU seconds per step. A shared
machine makes wall times noisy: CPU seconds per step are the steadier figure, and the min the best
estimate of the quiet-machine time.

GPU (``--device cuda``): ms per step eager against compiled with CUDA graphs, alternating, then
``--trials-per-gpu`` (default 1 2 4) processes stepping the compiled model at once: the aggregate steps
per second, and from it the time per PBT generation of a population of 16 (25 epochs of MC_Maze: 6
training steps of 256 and one validation pass of 574 trials per epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repo, unless installed or on PYTHONPATH

from autolfads.data.batch import SessionBatch
from autolfads.model import LFADS
from autolfads.model.compiled import compiler_problem, set_compile_setting

M = "autolfads.model"
N_RECON, N_ENC, T_ENC, T_RECON, BATCH = 182, 137, 35, 45, 256
TRAIN_STEPS_PER_EPOCH, VALID_TRIALS = 6, 574  # MC_Maze: 1721 train trials in batches of 256, 574 valid
POPULATION, EPOCHS_PER_GENERATION = 16, 25


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


def make_batch(device: torch.device, n_trials: int = BATCH) -> dict[int, tuple[SessionBatch, tuple]]:
    gen = torch.Generator().manual_seed(0)
    recon = torch.poisson(torch.full((n_trials, T_RECON, N_RECON), 0.3), generator=gen)
    batch = SessionBatch(
        recon[:, :T_ENC, :N_ENC].clone(), recon, torch.zeros(n_trials, T_ENC, 0),
        torch.full((n_trials, T_RECON, 0), float("nan")), torch.ones(n_trials, T_ENC, N_ENC),
    )  # fmt: skip
    return {0: (SessionBatch(*(t.to(device) for t in batch)), ())}


class Stepper:
    """One reference model, its optimiser and a batch: ``step()`` is one training step, synchronised.

    ``precision`` "bf16-mixed" runs forward and loss under autocast, as Lightning's precision of that name.
    """

    def __init__(self, device: torch.device, precision: str = "32-true") -> None:
        torch.manual_seed(0)
        self.device = device
        self.autocast = precision == "bf16-mixed"
        self.model = LFADS(**reference_config()).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=4e-3)
        self.batch = make_batch(device)
        self.valid_batch = make_batch(device, VALID_TRIALS)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model.shared_step(self.batch, "train").loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 200.0)
        self.optimizer.step()
        self.sync()

    def validate(self) -> None:
        self.model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            self.model.shared_step(self.valid_batch, "valid")
        self.model.train()
        self.sync()


def timed(fn: object) -> tuple[float, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start, time.process_time() - cpu_start


def alternate(args: argparse.Namespace) -> dict:
    """Eager and compiled steps alternately in this process; the figures as a dict."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    stepper = Stepper(device, args.precision)
    set_compile_setting("on")
    compile_wall, compile_cpu = timed(stepper.step)  # compiles (or loads from inductor's cache)
    times: dict[str, list[tuple[float, float]]] = {"eager": [], "compiled": []}
    for _ in range(args.warmup):
        for setting in ("off", "on"):
            set_compile_setting(setting)
            stepper.step()
    for _ in range(args.steps):
        for name, setting in (("eager", "off"), ("compiled", "on")):
            set_compile_setting(setting)
            times[name].append(timed(stepper.step))
    figures = {
        "threads": args.threads,
        "load": os.getloadavg()[0],
        "compile": [compile_wall, compile_cpu],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for name, runs in times.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        figures[name] = {"wall_min": min(wall), "wall_median": statistics.median(wall),
                         "cpu_min": min(cpu), "cpu_median": statistics.median(cpu)}  # fmt: skip
    if device.type == "cuda":
        figures["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        set_compile_setting("on")
        figures["valid_s"] = statistics.median(timed(stepper.validate)[0] for _ in range(3))
    return figures


def trial_worker(args: argparse.Namespace) -> dict:
    """One of several processes sharing a GPU: compiled steps after a start barrier, timed together."""
    stepper = Stepper(torch.device(args.device), args.precision)
    set_compile_setting("on")
    for _ in range(args.warmup + 1):
        stepper.step()
    stepper.validate()
    barrier = Path(args.barrier)
    Path(f"{barrier}.ready.{os.getpid()}").touch()
    while not barrier.exists():  # every worker compiled and warmed up: start together
        time.sleep(0.05)
    start = time.perf_counter()
    for _ in range(args.steps):
        stepper.step()
    seconds = time.perf_counter() - start
    return {"steps": args.steps, "seconds": seconds}


def child(args: argparse.Namespace, *extra: str) -> subprocess.Popen:
    command = [sys.executable, __file__, "--device", args.device, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--precision", args.precision, *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def result_of(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"benchmark child failed with exit code {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def print_alternating(figures: dict, where: str) -> None:
    wall, cpu = figures["compile"]
    print(f"{where}, load average {figures['load']:.1f}; first compiled step (compile or cache) "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU; peak RSS {figures['peak_rss_mib']:.0f} MiB")  # fmt: skip
    for name in ("eager", "compiled"):
        f = figures[name]
        print(f"  {name:9s} s/step wall min {f['wall_min']:.3f}  median {f['wall_median']:.3f}   "
              f"CPU min {f['cpu_min']:.3f}  median {f['cpu_median']:.3f}")  # fmt: skip
    speedup = figures["eager"]["wall_median"] / figures["compiled"]["wall_median"]
    print(f"  median speed-up compiled/eager: {speedup:.2f}x")


def run_cpu(args: argparse.Namespace) -> None:
    problem = compiler_problem("cpu")
    if problem:
        raise SystemExit(f"cannot compile on this CPU: {problem}")
    print(f"torch {torch.__version__}; batch {BATCH}; precision {args.precision}; {args.steps} timed steps "
          "of each, alternating")
    for threads in args.threads_list:
        print_alternating(result_of(child(args, "--threads", str(threads), "--role", "alternate")),
                          f"cpu, {threads} thread(s)")  # fmt: skip


def run_cuda(args: argparse.Namespace) -> None:
    problem = compiler_problem("cuda")
    if problem:
        raise SystemExit(f"cannot compile for CUDA here: {problem}")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; batch {BATCH}; "
          f"precision {args.precision}")
    figures = result_of(child(args, "--role", "alternate"))
    print_alternating(figures, "cuda")
    print(f"  peak GPU memory {figures['peak_gpu_mib']:.0f} MiB; validation pass of {VALID_TRIALS} "
          f"trials {figures['valid_s'] * 1e3:.1f} ms")  # fmt: skip
    for k in args.trials_per_gpu:
        barrier = Path(f"/tmp/bench-model-{os.getpid()}-{k}")
        workers = [child(args, "--role", "trial", "--barrier", str(barrier)) for _ in range(k)]
        while len(list(barrier.parent.glob(f"{barrier.name}.ready.*"))) < k:
            if any(w.poll() is not None for w in workers):
                break  # a worker died: result_of() reports it
            time.sleep(0.1)
        barrier.touch()  # all compiled and warmed up: they step together from here
        results = [result_of(w) for w in workers]
        for path in [barrier, *barrier.parent.glob(f"{barrier.name}.ready.*")]:
            path.unlink(missing_ok=True)
        rate = sum(r["steps"] / r["seconds"] for r in results)
        per_step = statistics.median(r["seconds"] / r["steps"] for r in results)
        # members run k at a time; validation measured alone, scaled by the steps' slow-down
        valid = figures["valid_s"] * per_step / figures["compiled"]["wall_median"]
        epoch = TRAIN_STEPS_PER_EPOCH * per_step + valid
        generation = POPULATION / k * EPOCHS_PER_GENERATION * epoch
        print(f"  {k} trial(s) per GPU: {per_step * 1e3:.1f} ms/step each, {rate:.1f} steps/s together; "
              f"population of {POPULATION}: ≈ {generation:.0f} s per generation of "
              f"{EPOCHS_PER_GENERATION} epochs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each kind first")
    parser.add_argument("--threads", dest="threads_list", type=int, nargs="+", default=[2, 1],
                        help="CPU thread counts, one process each")  # fmt: skip
    parser.add_argument("--trials-per-gpu", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="as Lightning's trainer.precision")  # fmt: skip
    parser.add_argument("--role", default="main", choices=["main", "alternate", "trial"], help="internal")
    parser.add_argument("--barrier", default="", help="internal")
    args = parser.parse_args()
    args.threads = args.threads_list[0]
    if args.role == "alternate":
        print(json.dumps(alternate(args)))
    elif args.role == "trial":
        print(json.dumps(trial_worker(args)))
    elif args.device == "cuda":
        run_cuda(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
