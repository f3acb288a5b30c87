"""Generator, controller and factors: the decoder of LFADS (lfads-spec §2.4).

Shapes: B trials, T = recon_seq_len, G gen_dim, C con_dim, F fac_dim, K co_dim, E ext_input_dim.

Per step t (with a controller):
    con_h  = GRU_con(dropout([ci_t, f_{t−1}]), con_h)
    co     = co_mean + co_std · ε, [co_mean | log co_var] = co_linear(con_h)  (co_mean if not sampling;
             ε standard noise of the co prior's posterior family: Normal, or Student-t for that prior)
    gen_h  = GRU_gen([co, ext_t], gen_h)
    f_t    = fac_linear(dropout(gen_h)), fac_linear rows normalised to unit L2 norm on every call
Everything that does not depend on the recurrent state is computed for all steps before the loop: the ci and
ext parts of the input projections (dropout on a concatenation is elementwise, so dropping each part
separately is the same operation), the factor weights' normalisation, the per-step dropout masks (one draw
for all steps) and the sampling noise. Per-step slices are taken with ``unbind`` so that backward stacks the
gradients instead of zero-filling a full-size buffer per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from autolfads.model.dropout import FastDropout, scaled_keep_mask
from autolfads.model.encoders import fan_in_linear
from autolfads.model.gru import ClippedGRUCell, clip_can_bind, gru_step_split
from autolfads.model.priors import gaussian_noise


class Decoder(nn.Module):
    def __init__(
        self,
        ic_dim: int,
        ci_dim: int,
        ext_input_dim: int,
        con_dim: int,
        co_dim: int,
        gen_dim: int,
        fac_dim: int,
        use_con: bool,
        dropout_rate: float,
        cell_clip: float,
    ):
        super().__init__()
        self.use_con = use_con
        self.co_dim = co_dim if use_con else 0
        self.co_dim_out = co_dim  # width of the carried zeros when there is no controller
        self.con_dim = con_dim
        self.ci_dim = ci_dim
        self.dropout = FastDropout(dropout_rate)
        self.ic_to_g0 = fan_in_linear(ic_dim, gen_dim)
        self.gen_cell = ClippedGRUCell(self.co_dim + ext_input_dim, gen_dim, cell_clip, is_encoder=False)
        self.fac_weight = nn.Parameter(torch.empty(fac_dim, gen_dim))
        nn.init.normal_(self.fac_weight, std=1 / math.sqrt(gen_dim))
        if use_con:
            self.con_h0 = nn.Parameter(torch.zeros(1, con_dim))
            self.con_cell = ClippedGRUCell(ci_dim + fac_dim, con_dim, cell_clip, is_encoder=False)
            self.co_linear = fan_in_linear(con_dim, 2 * co_dim)

    def _step_masks(
        self, steps: int, batch: int, width: int, like: torch.Tensor
    ) -> list[torch.Tensor | None]:
        """Inverted-dropout masks for every step at once, (B, width) each; Nones when dropout is off."""
        p = self.dropout.p
        if not self.training or p == 0:
            return [None] * steps
        return list(scaled_keep_mask((steps, batch, width), p, like).unbind(0))

    def factor_weight(self) -> torch.Tensor:
        """(F, G) with unit-norm rows: each factor reads a unit vector of generator units."""
        return F.normalize(self.fac_weight, dim=1)

    def forward(
        self,
        ic_sample: torch.Tensor,
        ci: torch.Tensor,
        ext_input: torch.Tensor,
        sample_posteriors: bool,
        co_noise: Callable[[Sequence[int], torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """-> gen_init (B, G), gen_states (B, T, G), con_states (B, T, C), co_means (B, T, K),
        co_stds (B, T, K), gen_inputs (B, T, K+E), factors (B, T, F).

        ``co_noise(shape, like)`` draws the controller outputs' standard noise (the co prior's
        ``standard_noise``); None draws N(0, 1)."""
        batch, steps = ic_sample.shape[0], ci.shape[1]
        clip = self.gen_cell.clip_value
        fac_w = self.factor_weight()
        gen_init = self.ic_to_g0(ic_sample)  # (B, G), not dropped for the state itself
        factor = F.linear(self.dropout(gen_init), fac_w)  # (B, F) initial factor
        # (B, T, E): zero-pad measured inputs to T, then one dropout over the whole sequence
        ext = self.dropout(F.pad(ext_input, (0, 0, 0, steps - ext_input.shape[1])))
        k = self.co_dim
        w_gen = self.gen_cell.weight_ih  # (3G, K+E) = [co part | ext part]
        if ext.shape[-1] > 0:
            gen_ext_proj = F.linear(ext, w_gen[:, k:], self.gen_cell.bias_ih).unbind(1)  # T × (B, 3G)
        else:  # the bias alone, broadcast by addmm: no (B, T, 3G) copy of it forward, no stack of it backward
            gen_ext_proj = [self.gen_cell.bias_ih] * steps
        gen_dim = gen_init.shape[-1]
        gen_u = self.gen_cell.weight_hh
        gen_u_zr_t, gen_u_n_t = gen_u[: 2 * gen_dim].t(), gen_u[2 * gen_dim :].t()
        fac_w_t = fac_w.t()  # (G, F)
        gen_masks = self._step_masks(steps, batch, gen_dim, gen_init)
        gen_h = gen_init
        gen_states, factors = [], []
        if self.use_con:
            w_con = self.con_cell.weight_ih  # (3C, 2·H_ci + F) = [ci part | factor part]
            con_ci_proj = F.linear(self.dropout(ci), w_con[:, : self.ci_dim], self.con_cell.bias_ih).unbind(1)
            # (F, 3C) and (K, 3G) copied out of the input weights: a strided slice as a matmul operand puts
            # backward on a slow GEMM path (≈ 5× slower for the K = 4 columns of the controller outputs)
            w_con_fac_t = w_con[:, self.ci_dim :].t().contiguous()
            con_u = self.con_cell.weight_hh
            con_u_zr_t, con_u_n_t = con_u[: 2 * self.con_dim].t(), con_u[2 * self.con_dim :].t()
            w_gen_co_t = w_gen[:, :k].t().contiguous()
            noise = None
            if sample_posteriors:
                draw = co_noise if co_noise is not None else gaussian_noise
                noise = draw((steps, batch, k), ci).unbind(0)  # T × (B, K)
            fac_masks = self._step_masks(steps, batch, factor.shape[-1], factor)
            con_h = self.con_h0.expand(batch, -1)
            con_states, co_means, co_stds, co_outs = [], [], [], []
        for t in range(steps):
            clamp = clip_can_bind(t, clip)
            if self.use_con:
                fac_in = factor if fac_masks[t] is None else factor * fac_masks[t]
                con_x = torch.addmm(con_ci_proj[t], fac_in, w_con_fac_t)
                con_h = gru_step_split(con_x, con_h, con_u_zr_t, con_u_n_t, clip, clamp)
                co_mean, co_logvar = self.co_linear(con_h).chunk(2, dim=-1)
                co_std = torch.exp(0.5 * co_logvar)  # no variance floor, as the reference
                co_out = co_mean + co_std * noise[t] if noise is not None else co_mean
                gen_x = torch.addmm(gen_ext_proj[t], co_out, w_gen_co_t)
                con_states.append(con_h)
                co_means.append(co_mean)
                co_stds.append(co_std)
                co_outs.append(co_out)
            else:
                gen_x = gen_ext_proj[t]
            gen_h = gru_step_split(gen_x, gen_h, gen_u_zr_t, gen_u_n_t, clip, clamp)
            fac_in = gen_h if gen_masks[t] is None else gen_h * gen_masks[t]
            factor = fac_in @ fac_w_t
            gen_states.append(gen_h)
            factors.append(factor)

        def seq(items: list[torch.Tensor], width: int) -> torch.Tensor:
            return torch.stack(items, dim=1) if items else ic_sample.new_zeros(batch, steps, width)

        if self.use_con:
            co_out_seq = seq(co_outs, k)
            con_seq, mean_seq, std_seq = seq(con_states, self.con_dim), seq(co_means, k), seq(co_stds, k)
        else:  # controller state and outputs carried unchanged: zeros, std 1
            co_out_seq = ext.new_zeros(batch, steps, 0)
            con_seq = ext.new_zeros(batch, steps, self.con_dim)
            mean_seq = ext.new_zeros(batch, steps, self.co_dim_out)
            std_seq = ext.new_ones(batch, steps, self.co_dim_out)
        gen_inputs = torch.cat([co_out_seq, ext], dim=-1)  # (B, T, K+E)
        return (
            gen_init,
            seq(gen_states, gen_init.shape[-1]),
            con_seq,
            mean_seq,
            std_seq,
            gen_inputs,
            seq(factors, fac_w.shape[0]),
        )
