"""The per-session batch that flows from the datamodule into the model (lfads-spec §1.2).

Shapes use B trials, T time bins, N channels. An absent optional field is an empty tensor with a zero-size
last dimension (``ext_input``: ``(B, T_enc, 0)``; ``truth``: NaN ``(B, T, 0)``) so the model never branches
on ``None``.
"""

from typing import NamedTuple

import torch


class SessionBatch(NamedTuple):
    encod_data: torch.Tensor  # (B, T_enc, N_enc) model input
    recon_data: torch.Tensor  # (B, T_recon, N_recon) reconstruction target; held-in channels first
    ext_input: torch.Tensor  # (B, T_enc or T_recon, N_ext) measured external inputs, N_ext may be 0
    truth: torch.Tensor  # (B, T_recon, N_recon) ground-truth rates, or empty
    sv_mask: torch.Tensor  # (B, T_enc, N_enc) sample-validation mask: 1 = usable for training loss
