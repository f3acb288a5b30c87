"""The IC and controller-input encoders (lfads-spec §2.3).

Shapes: B trials, T_enc = encod_seq_len, T = recon_seq_len, N = encod_data_dim (readin width).

forward(data (B, T_enc, N)) -> ic_mean (B, ic_dim), ic_std (B, ic_dim), ci (B, T, 2·ci_enc_dim) — ci is
(B, T, 0) without a controller. With a nonzero ``ic_enc_seq_len`` the IC encoder reads the first steps and the
CI encoder the rest; the CI is zero-padded at the start and the end so its length is always T (as lfads-torch
PR #18, so the generator and controller always run T steps).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from autolfads.model.dropout import FastDropout
from autolfads.model.gru import BidirectionalClippedGRU, run_lockstep


def fan_in_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """Linear layer, weights N(0, 1/in_features), zero bias (``ic_linear``, ``co_linear``, ``ic_to_g0``)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.normal_(layer.weight, std=1 / math.sqrt(in_features))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class Encoder(nn.Module):
    def __init__(
        self,
        encod_data_dim: int,
        encod_seq_len: int,
        recon_seq_len: int,
        ic_enc_seq_len: int,
        ic_enc_dim: int,
        ci_enc_dim: int,
        ci_lag: int,
        ic_dim: int,
        use_con: bool,
        dropout_rate: float,
        cell_clip: float,
        ic_post_var_min: float,
    ):
        super().__init__()
        self.encod_seq_len = encod_seq_len
        self.recon_seq_len = recon_seq_len
        self.ic_enc_seq_len = ic_enc_seq_len
        self.ci_lag = ci_lag
        self.ci_enc_dim = ci_enc_dim
        self.use_con = use_con
        self.ic_post_var_min = ic_post_var_min
        self.dropout = FastDropout(dropout_rate)
        self.ic_enc_h0 = nn.Parameter(torch.zeros(2, 1, ic_enc_dim))
        self.ic_enc = BidirectionalClippedGRU(encod_data_dim, ic_enc_dim, cell_clip)
        self.ic_linear = fan_in_linear(2 * ic_enc_dim, 2 * ic_dim)
        if use_con:
            self.ci_enc_h0 = nn.Parameter(torch.zeros(2, 1, ci_enc_dim))
            self.ci_enc = BidirectionalClippedGRU(encod_data_dim, ci_enc_dim, cell_clip)

    def forward(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = data.shape[0]
        data = self.dropout(data)  # one dropout, shared by both encoders
        split = self.ic_enc_seq_len
        ic_data, ci_data = (data[:, :split], data[:, split:]) if split > 0 else (data, data)

        if self._fusable():
            return self._forward_fused(data)
        _, ic_h = self.ic_enc(ic_data, self.ic_enc_h0.expand(-1, batch, -1).contiguous())  # (2, B, H_ic)
        ic_h = self.dropout(torch.cat([ic_h[0], ic_h[1]], dim=-1))  # (B, 2·H_ic), forward first
        ic_mean, ic_logvar = self.ic_linear(ic_h).to(ic_h.dtype).chunk(2, dim=-1)  # autocast: state dtype
        ic_std = torch.sqrt(torch.exp(ic_logvar) + self.ic_post_var_min)

        if not self.use_con:
            return ic_mean, ic_std, data.new_zeros(batch, self.recon_seq_len, 0)
        ci_out, _ = self.ci_enc(
            ci_data, self.ci_enc_h0.expand(-1, batch, -1).contiguous()
        )  # (B, T_ci, 2·H_ci)
        ci = self._lag(ci_out)
        # zeros for the IC-encoder steps (front) and the forward-prediction steps (end): (B, T, 2·H_ci)
        ci = F.pad(ci, (0, 0, split, self.recon_seq_len - self.encod_seq_len))
        return ic_mean, ic_std, ci

    def _fusable(self) -> bool:
        """Both encoders read the same sequence with equal sizes: run their four directions in one loop."""
        return self.use_con and self.ic_enc_seq_len == 0 and self.ic_enc.hidden_size == self.ci_enc_dim

    def _forward_fused(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same computation as the two-encoder path, with the four GRU directions advanced together."""
        batch = data.shape[0]
        cells = [self.ic_enc.fwd, self.ic_enc.bwd, self.ci_enc.fwd, self.ci_enc.bwd]
        rev = data.flip(1)
        h0 = torch.cat([self.ic_enc_h0, self.ci_enc_h0]).expand(-1, batch, -1)  # (4, B, H)
        out, h = run_lockstep(cells, [data, rev, data, rev], h0)  # (4, B, T, H), (4, B, H)
        ic_h = self.dropout(torch.cat([h[0], h[1]], dim=-1))  # (B, 2·H), forward first
        ic_mean, ic_logvar = self.ic_linear(ic_h).to(ic_h.dtype).chunk(2, dim=-1)
        ic_std = torch.sqrt(torch.exp(ic_logvar) + self.ic_post_var_min)
        _, _, ci_fwd, ci_bwd = out.unbind(0)  # unbind: backward stacks, where indexing would zero-fill twice
        ci = self._lag(torch.cat([ci_fwd, ci_bwd.flip(1)], dim=-1))  # (B, T_enc, 2·H_ci)
        ci = F.pad(ci, (0, 0, 0, self.recon_seq_len - self.encod_seq_len))
        return ic_mean, ic_std, ci

    def _lag(self, ci_out: torch.Tensor) -> torch.Tensor:
        """Shift the forward half ``ci_lag`` steps later and the backward half as many steps earlier."""
        lag, hid, steps = self.ci_lag, self.ci_enc_dim, ci_out.shape[1]
        fwd, bwd = ci_out[..., :hid], ci_out[..., hid:]
        if lag == 0:
            return ci_out
        fwd = F.pad(fwd, (0, 0, lag, 0))[:, :steps]  # zeros at the start
        bwd = F.pad(bwd, (0, 0, 0, lag))[:, -steps:]  # zeros at the end
        return torch.cat([fwd, bwd], dim=-1)
