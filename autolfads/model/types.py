"""The typed results the model returns (lfads-spec §2.5, §6.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SessionOutput(NamedTuple):
    """One session's forward-pass outputs; B trials, T = recon_seq_len.

    ``output_params`` is (B, T, N) distribution means when ``output_means`` (Poisson: rates per bin), else the
    reshaped parameters (B, T, N, n_params).
    """

    output_params: torch.Tensor
    factors: torch.Tensor  # (B, T, fac_dim)
    ic_mean: torch.Tensor  # (B, ic_dim)
    ic_std: torch.Tensor  # (B, ic_dim)
    co_means: torch.Tensor  # (B, T, co_dim)
    co_stds: torch.Tensor  # (B, T, co_dim)
    gen_states: torch.Tensor  # (B, T, gen_dim)
    gen_init: torch.Tensor  # (B, gen_dim)
    gen_inputs: torch.Tensor  # (B, T, co_dim + ext_input_dim)
    con_states: torch.Tensor  # (B, T, con_dim)


class Encoding(NamedTuple):
    """What the encoders made of a batch (``LFADS.encode``), before any sampling; B trials of all sessions.

    In eval mode it is deterministic, so posterior sampling computes it once and decodes it many times.
    """

    sessions: list[int]  # session indices, sorted: the order of the trials below
    sizes: list[int]  # trials per session
    ic_mean: torch.Tensor  # (B, ic_dim)
    ic_std: torch.Tensor  # (B, ic_dim)
    ci: torch.Tensor  # (B, T, 2·ci_enc_dim), (B, T, 0) without a controller
    ext_input: torch.Tensor  # (B, T_ext, ext_input_dim)


class StepResult(NamedTuple):
    """What one training/validation step computed; ``LFADS`` logs every field under ``{split}/…``."""

    loss: torch.Tensor  # the scaled, ramped total that is optimised
    recon: torch.Tensor  # unweighted mean over sessions of the per-session reconstruction cost
    sess_recon: dict[int, torch.Tensor]
    bps: torch.Tensor
    co_bps: torch.Tensor
    fp_bps: torch.Tensor
    r2: torch.Tensor  # NaN when no session carries truth
    wt_l2: torch.Tensor
    l2_ramp: float
    wt_kl: torch.Tensor
    wt_kl_ic: torch.Tensor
    wt_kl_co: torch.Tensor
    kl_ramp: float
    batch_size: int
