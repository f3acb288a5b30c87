"""A tiny LFADS PBT setup for end-to-end tests and the benchmark: small Lorenz data and a config file."""

from __future__ import annotations

from pathlib import Path

import yaml

from autolfads.data.synthetic import write_lorenz


def tiny_data(path: Path, seed: int = 0) -> Path:
    return write_lorenz(path, seed=seed, n_conditions=4, n_trials=40, n_neurons=8, encod_seq_len=10)


def tiny_config(path: Path, num_samples: int = 4, max_epochs: int = 6, interval: int = 2, **pbt) -> Path:
    """A config file: 4 members, 2-epoch generations, a model small enough for ~0.1 s epochs on one core."""
    config = {
        "model": {
            "ic_enc_dim": 4,
            "ci_enc_dim": 4,
            "con_dim": 4,
            "co_dim": 2,
            "ic_dim": 4,
            "gen_dim": 8,
            "fac_dim": 3,
            "l2_increase_epoch": 2,
            "kl_increase_epoch": 2,
        },
        "datamodule": {"batch_size": 16},
        "trainer": {"max_epochs": max_epochs, "log_every_n_steps": 1, "accelerator": "cpu"},
        "posterior_sampling": {"num_samples": 2},
        "pbt": {
            "num_samples": num_samples,
            "perturbation_interval": interval,
            "burn_in_period": interval,
            "resources_per_trial": {"cpu": 1, "gpu": 0},
            **pbt,
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path
