"""PBT overhead: how much of a population's wall time is spent training, and what an exploit costs.

Prints, for a population of N tiny LFADS models (synthetic Lorenz data) on this machine's cores:

- ``single``: wall time of one model's E epochs, trained in-process with the same Trainer setup a trial
  uses, with all the cores (no Ray);
- ``population``: wall time of ``run_population`` for N members x E epochs, one trial at a time with all
  the cores (``resources_per_trial.cpu`` = cores), tournaments every ``interval`` epochs;
- ``training fraction`` = N x single / population (target >= 90 %), the same measured from the epoch
  times the trials report (``epoch_s`` in ``trial_results.jsonl``), and the overhead per trial
  (re)start (Ray scheduling, process/actor reuse, checkpoint save + restore, HP update);
- checkpoint save and load times for the tiny model and for the default (nlb_mc_maze-sized) model.

Usage: ``python bench/bench_pbt.py [--population 4] [--epochs 8] [--interval 2]``. Run it on a quiet
machine; figures on a shared CPU are noisy.
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


def _write_inputs(root: Path, population: int, epochs: int, interval: int, cpus: int) -> tuple[Path, Path]:
    from autolfads.data.synthetic import write_lorenz

    data = write_lorenz(
        root / "data.h5", seed=0, n_conditions=8, n_trials=200, n_neurons=30, encod_seq_len=25
    )
    config = {
        "model": {
            "gen_dim": 32,
            "fac_dim": 8,
            "ic_enc_dim": 16,
            "ci_enc_dim": 16,
            "con_dim": 16,
            "ic_dim": 16,
            "co_dim": 2,
        },
        "datamodule": {"batch_size": 32},
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "log_every_n_steps": 5},
        "posterior_sampling": {"num_samples": 2},
        "pbt": {
            "num_samples": population,
            "perturbation_interval": interval,
            "burn_in_period": interval,
            "resources_per_trial": {"cpu": cpus, "gpu": 0},
        },
    }
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
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    cpus = os.cpu_count() or 1

    from omegaconf import OmegaConf, open_dict

    from autolfads.config import load_config
    from autolfads.config.pbt import parse_pbt_block
    from autolfads.tune.collect import read_result_rows
    from autolfads.tune.driver import ensure_ray, run_population
    from autolfads.tune.trainable import lfads_trial

    with tempfile.TemporaryDirectory(prefix="bench-pbt-") as tmp:
        root = Path(tmp)
        data, config = _write_inputs(root, args.population, args.epochs, args.interval, cpus)
        cfg = load_config(config, data_paths=[data])
        settings = parse_pbt_block(cfg.pbt)

        single = _single(cfg, root / "single", args.epochs, cpus)
        ensure_ray(num_cpus=cpus)
        start = time.perf_counter()
        run_population(
            lfads_trial,
            settings,
            root / "run",
            max_epochs=args.epochs,
            live=False,
            trainable_kwargs={"run_config": OmegaConf.to_container(cfg, resolve=True), "settings": settings},
        )
        population = time.perf_counter() - start
        in_trial = sum(row.get("epoch_s", 0.0) for row in read_result_rows(root / "run"))
        tiny_save, tiny_load, tiny_size = _checkpoint_times(cfg, root / "ckpt-tiny")
        default = load_config(None, data_paths=[data])
        with open_dict(default):
            default.datamodule.batch_size = 32
        big_save, big_load, big_size = _checkpoint_times(default, root / "ckpt-default")

    generations = settings.generation_of(args.epochs - 1) + 1
    starts = args.population * generations
    print(
        f"machine: {cpus} CPU cores; population {args.population}, {args.epochs} epochs, "
        f"{args.interval}-epoch generations ({generations} generations, {starts} trial starts)"
    )
    print(f"single model, {args.epochs} epochs, in-process:  {single:8.1f} s")
    print(
        f"population of {args.population}, {args.epochs} epochs each:   {population:8.1f} s  "
        f"(ideal {args.population * single:.1f} s)"
    )
    print(
        f"training fraction, N x single / population: {100 * args.population * single / population:5.1f} %"
        "  (target >= 90 %)"
    )
    print(f"training fraction, epoch time inside trials / population: {100 * in_trial / population:5.1f} %")
    print(f"overhead per trial (re)start: {(population - args.population * single) / starts:6.2f} s")
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
