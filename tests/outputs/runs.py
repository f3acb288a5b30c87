"""A tiny training setup shared by the train, CLI and output tests (not a test module).

The data has held-out neurons (6 of 8 channels held in) and forward prediction (10 observed + 2 bins) so
that every output shape of lfads-spec §6.2 is exercised; the model is small enough for sub-second epochs.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from autolfads.config import load_config
from autolfads.data.synthetic import write_lorenz

N_TRIALS, N_NEURONS, HELD_IN, ENCOD_LEN, RECON_LEN = 48, 8, 6, 10, 12
DIMS = {"ic_dim": 4, "gen_dim": 8, "fac_dim": 3, "con_dim": 4, "co_dim": 2}

TINY_OVERRIDES = (
    "model.ic_enc_dim=4",
    "model.ci_enc_dim=4",
    *(f"model.{key}={value}" for key, value in DIMS.items()),
    "model.l2_increase_epoch=2",
    "model.kl_increase_epoch=2",
    "datamodule.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "posterior_sampling.num_samples=3",
)


def tiny_data(path: Path, seed: int = 0) -> Path:
    return write_lorenz(
        path,
        seed=seed,
        n_conditions=4,
        n_trials=N_TRIALS,
        n_neurons=N_NEURONS,
        held_in=HELD_IN,
        encod_seq_len=ENCOD_LEN,
        recon_seq_len=RECON_LEN,
    )


def tiny_config(data: Path, *overrides: str) -> DictConfig:
    return load_config(None, [*TINY_OVERRIDES, *overrides], data_paths=[str(data)])
