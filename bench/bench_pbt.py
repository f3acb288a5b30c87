"""PBT overhead: how much of a population's wall time is spent training, and what an exploit costs.

Prints, for a population of N LFADS models on synthetic Lorenz data, on this machine's cores:

- ``single``: wall time of one model's E epochs, trained in-process with the same Trainer setup a trial
  uses, with all the cores (no Ray);
- ``population``: wall time of ``run_population`` for N members x E epochs, one trial at a time with all
  the cores (``resources_per_trial.cpu`` = cores), tournaments every ``interval`` epochs;
- ``training fraction`` = N x single / population (target >= 90 %), the same from the epoch times the
  trials report (``epoch_s`` in ``trial_results.jsonl``), and where the rest went: the run's fixed start
  and end (Ray and Tune start-up, the first worker process importing torch), and per generation the
  trial (re)starts (Ray pausing and resuming a trial, in-trial set-up: data, model, trainer, checkpoint
  restore, HP update) and the per-epoch report round trips;
- checkpoint save and load times for the tiny model and for the default (nlb_mc_maze-sized) model.

``--model reference`` (the default) trains the default config's model (gen 200, fac 100, ...) on
MC_Maze-shaped data (182 channels, 137 held in, 35 + 10 bins, 1721 + 574 trials, batch 256): epochs of
about 2 s on 2 cores, as in a real run. ``--model tiny`` trains a model of a few thousand weights whose
epochs take 0.2 s: the worst case, where fixed costs weigh most.

Usage: ``python bench/bench_pbt.py [--model reference|tiny] [--population 4] [--epochs 12]
[--interval 4]``. Run it on a quiet machine; figures on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _write_inputs(root: Path, model: str, population: int, epochs: int, interval: int, cpus: int):
    from autolfads.data.synthetic import write_lorenz

    pbt = {
        "num_samples": population,
        "perturbation_interval": interval,
        "burn_in_period": interval,
        "resources_per_trial": {"cpu": cpus, "gpu": 0},
    }
    trainer = {"max_epochs": epochs, "accelerator": "cpu"}
    if model == "reference":
        data = write_lorenz(
            root / "data.h5", seed=0, n_conditions=27, n_trials=2295, n_neurons=182, held_in=137,
            encod_seq_len=35, recon_seq_len=45, valid_fraction=0.25,
        )  # fmt: skip
        config = {"trainer": trainer, "pbt": pbt}
    else:
        data = write_lorenz(
            root / "data.h5", seed=0, n_conditions=8, n_trials=200, n_neurons=30, encod_seq_len=25
        )
        config = {
            "model": {
                "gen_dim": 32, "fac_dim": 8, "ic_enc_dim": 16, "ci_enc_dim": 16, "con_dim": 16, "ic_dim": 16,
                "co_dim": 2,
            },
            "datamodule": {"batch_size": 32},
            "trainer": {**trainer, "log_every_n_steps": 5},
            "pbt": pbt,
        }  # fmt: skip
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    return data, path


def _single(cfg, work: Path, epochs: int, threads: int) -> float:
    import lightning.pytorch as pl
    import torch

    from autolfads.train import build_datamodule, build_model, build_trainer, quiet_lightning

    torch.set_num_threads(threads)
    with quiet_lightning():
        pl.seed_everything(0, verbose=False)
        datamodule, model = build_datamodule(cfg), build_model(cfg)
        warm = build_trainer(cfg, work / "warm", progress=False, checkpoint=False, max_epochs=1)
        warm.fit(build_model(cfg), datamodule=datamodule)  # first-use costs (imports, data loading) out
        trainer = build_trainer(cfg, work, progress=False, checkpoint=False, max_epochs=epochs)
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        return time.perf_counter() - start


def _checkpoint_times(cfg, work: Path) -> tuple[float, float, int]:
    import lightning.pytorch as pl

    from autolfads.train import build_datamodule, build_model, build_trainer, quiet_lightning

    with quiet_lightning():
        datamodule, model = build_datamodule(cfg), build_model(cfg)
        trainer = build_trainer(cfg, work, progress=False, checkpoint=False, max_epochs=1)
        trainer.fit(model, datamodule=datamodule)
        path = work / "bench.ckpt"
        start = time.perf_counter()
        trainer.save_checkpoint(path)
        save = time.perf_counter() - start
        start = time.perf_counter()
        type(model).load_from_checkpoint(path, map_location="cpu")
        load = time.perf_counter() - start
        pl.seed_everything(0, verbose=False)
        return save, load, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("reference", "tiny"), default="reference")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--interval", type=int, default=4, help="epochs per generation")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    cpus = os.cpu_count() or 1

    from omegaconf import OmegaConf, open_dict

    from autolfads.config import load_config
    from autolfads.config.pbt import parse_pbt_block
    from autolfads.tune.collect import read_result_rows
    from autolfads.tune.driver import ensure_ray, run_population
    from autolfads.tune.entry import lfads_trial

    with tempfile.TemporaryDirectory(prefix="bench-pbt-") as tmp:
        root = Path(tmp)
        data, config = _write_inputs(root, args.model, args.population, args.epochs, args.interval, cpus)
        cfg = load_config(config, data_paths=[data])
        settings = parse_pbt_block(cfg.pbt)

        single = _single(cfg, root / "single", args.epochs, cpus)
        ensure_ray(num_cpus=cpus)
        start_wall, start, driver_cpu = time.time(), time.perf_counter(), time.process_time()
        run_population(
            lfads_trial,
            settings,
            root / "run",
            max_epochs=args.epochs,
            live=False,
            trainable_kwargs={"run_config": OmegaConf.to_container(cfg, resolve=True), "settings": settings},
        )
        population, end_wall = time.perf_counter() - start, time.time()
        driver_cpu = time.process_time() - driver_cpu
        rows = sorted(read_result_rows(root / "run"), key=lambda row: row["reported_at"])
        (root / "tiny").mkdir()
        tiny = load_config(_write_inputs(root / "tiny", "tiny", 2, 1, 1, cpus)[1], data_paths=[data])
        tiny_save, tiny_load, tiny_size = _checkpoint_times(tiny, root / "ckpt-tiny")
        default = load_config(None, data_paths=[data])
        with open_dict(default):
            default.datamodule.batch_size = 32
        big_save, big_load, big_size = _checkpoint_times(default, root / "ckpt-default")

    generations = settings.generation_of(args.epochs - 1) + 1
    starts = args.population * generations
    in_trial = sum(row["epoch_s"] for row in rows)
    setups = [row["setup_s"] for row in rows if row["setup_s"]]
    report_waits = [row["report_s"] for row in rows if row["report_s"]]
    first = rows[0]
    fixed = (first["reported_at"] - first["epoch_s"] - first["setup_s"] - start_wall) + (
        end_wall - rows[-1]["reported_at"]
    )
    # between one trial's pause and the next one's start: Ray stopping, scheduling and resuming trials
    switches = population - fixed - in_trial - sum(setups) - sum(report_waits)
    steady = population - fixed
    print(
        f"machine: {cpus} CPU cores; {args.model} model; population {args.population}, {args.epochs} epochs, "
        f"{args.interval}-epoch generations ({generations} generations, {starts} trial starts)"
    )
    print(
        f"single model, {args.epochs} epochs, in-process:  {single:8.1f} s  "
        f"({single / args.epochs:.2f} s/epoch)"
    )
    print(
        f"population of {args.population}, {args.epochs} epochs each:   {population:8.1f} s  "
        f"(ideal {args.population * single:.1f} s)"
    )
    print(
        f"training fraction, N x single / population: {100 * args.population * single / population:5.1f} %"
        "  (target >= 90 %)"
    )
    print(f"training fraction, epoch time inside trials / population: {100 * in_trial / population:5.1f} %")
    print(f"  without the run's fixed start and end: {100 * in_trial / steady:5.1f} %")
    print("where the rest went:")
    print(f"  run start (Ray, Tune, first worker process) and end: {fixed:6.2f} s, once per run")
    print(
        f"  trial set-up in the trial (data, model, trainer, restore): {sum(setups):6.2f} s "
        f"({sum(setups) / max(len(setups), 1):.3f} s x {len(setups)} starts; the first in a fresh process)"
    )
    print(
        f"  trial switches (Ray pausing one trial, resuming the next): {switches:6.2f} s "
        f"({switches / max(starts - 1, 1):.3f} s x {starts - 1})"
    )
    print(
        f"  per-epoch report round trips: {sum(report_waits):6.2f} s "
        f"({sum(report_waits) / max(len(report_waits), 1):.3f} s x {len(report_waits)})"
    )
    print(
        f"  the driver process's own CPU time meanwhile (Tune's loop, callbacks): {driver_cpu:6.2f} s "
        f"({100 * driver_cpu / population:.0f} % of one core, taken from the trials on a small machine)"
    )
    print(
        f"checkpoint save/load, tiny model ({tiny_size / 1e3:.0f} kB):     {tiny_save * 1e3:6.1f} ms / "
        f"{tiny_load * 1e3:6.1f} ms"
    )
    print(
        f"checkpoint save/load, default model ({big_size / 1e6:.1f} MB): {big_save * 1e3:6.1f} ms / "
        f"{big_load * 1e3:6.1f} ms"
    )


if __name__ == "__main__":
    main()
