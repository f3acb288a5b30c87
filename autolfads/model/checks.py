"""Refuse model configs and batches that cannot work, with one line naming both values (spec decision 3).

Called by ``LFADS`` at construction (``check_construction``) and first thing in every forward pass
(``check_batch``), so a contradiction surfaces as a ``ConfigError`` not a shape error deep in training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autolfads.data.batch import SessionBatch
from autolfads.errors import ConfigError
from autolfads.model.priors import Null


def check_construction(model: Any) -> None:
    """Checks on the built parts and the architecture hyperparameters of an ``LFADS``."""
    hp = model.hparams
    lengths = {
        "readin": len(model.readin),
        "readout": len(model.readout),
        "reconstruction": len(model.recon),
    }
    if len(set(lengths.values())) != 1:
        found = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ConfigError(
            f"model: readin, readout and reconstruction need one entry per session; found {found}"
        )
    if not hp.variational and not (isinstance(model.ic_prior, Null) and isinstance(model.co_prior, Null)):
        raise ConfigError("model.variational is False, so ic_prior and co_prior must both be Null")
    if not 0 <= hp.ic_enc_seq_len < hp.encod_seq_len:
        raise ConfigError(
            f"model.ic_enc_seq_len must be in [0, encod_seq_len={hp.encod_seq_len}); "
            f"found {hp.ic_enc_seq_len}"
        )
    if hp.recon_seq_len < hp.encod_seq_len:
        raise ConfigError(
            f"model.recon_seq_len ({hp.recon_seq_len}) is shorter than encod_seq_len ({hp.encod_seq_len})"
        )
    for name in ("encod_data_dim", "encod_seq_len", "ic_enc_dim", "ic_dim", "gen_dim", "fac_dim"):
        if hp[name] <= 0:
            raise ConfigError(f"model.{name} must be positive; found {hp[name]}")
    if not 0.0 <= hp.dropout_rate < 1.0:
        raise ConfigError(f"model.dropout_rate must be in [0, 1); found {hp.dropout_rate}")
    readin0 = model.readin[0]
    if isinstance(readin0, nn.Linear) and readin0.out_features != hp.encod_data_dim:
        raise ConfigError(
            f"model.readin[0] gives {readin0.out_features} features but encod_data_dim is {hp.encod_data_dim}"
        )
    for s, readout in enumerate(model.readout):
        if isinstance(readout, nn.Linear) and readout.in_features != hp.fac_dim:
            raise ConfigError(
                f"model.readout[{s}] reads {readout.in_features} features but fac_dim is {hp.fac_dim}"
            )


def check_batch(model: Any, s: int, batch: SessionBatch, encod: torch.Tensor) -> None:
    """Refuse data that cannot fit this model, naming both values (runs first thing in forward)."""
    hp = model.hparams
    if encod.shape[1] != hp.encod_seq_len:
        raise ConfigError(
            f"model.encod_seq_len is {hp.encod_seq_len} "
            f"but session {s}'s encod_data has {encod.shape[1]} steps"
        )
    if encod.shape[2] != hp.encod_data_dim:
        raise ConfigError(
            f"model.encod_data_dim is {hp.encod_data_dim} "
            f"but session {s}'s readin gives {encod.shape[2]} channels"
        )
    n_ext = batch.ext_input.shape[-1]
    if n_ext != hp.ext_input_dim:
        why = " (the data has no *_ext_input)" if n_ext == 0 else ""
        raise ConfigError(
            f"model.ext_input_dim is {hp.ext_input_dim} but session {s}'s ext_input has {n_ext} channels{why}"
        )
