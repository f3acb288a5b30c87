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

from autolfads.model.compiled import compiled_loop
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

    def _step_masks(self, steps: int, batch: int, width: int, like: torch.Tensor) -> torch.Tensor | None:
        """Inverted-dropout multipliers for every step at once, (T, B, width); None when dropout is off."""
        p = self.dropout.p
        if not self.training or p == 0:
            return None
        return scaled_keep_mask((steps, batch, width), p, like)

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
        ci_repeats: int = 1,
    ) -> tuple[torch.Tensor, ...]:
        """-> gen_init (B, G), gen_states (B, T, G), con_states (B, T, C), co_means (B, T, K),
        co_stds (B, T, K), gen_inputs (B, T, K+E), factors (B, T, F).

        ``co_noise(shape, like)`` draws the controller outputs' standard noise (the co prior's
        ``standard_noise``); None draws N(0, 1). The noise of every step is drawn here, before the
        (possibly compiled) loop, so the compiled and the eager loop read the same draws.

        ``ci_repeats`` = k: ``ci`` holds each trial once, (B/k, T, 2·H_ci), and the other inputs its k
        repeats (posterior sampling): the ci part of the controller's input is projected once and repeated.
        """
        batch, steps = ic_sample.shape[0], ci.shape[1]
        fac_w = self.factor_weight()
        # (B, G), not dropped for the state itself; in the sample's dtype under autocast (see gru.py)
        gen_init = self.ic_to_g0(ic_sample).to(ic_sample.dtype)
        factor = F.linear(self.dropout(gen_init), fac_w).to(gen_init.dtype)  # (B, F) initial factor
        # (B, T, E): zero-pad measured inputs to T, then one dropout over the whole sequence
        ext = self.dropout(F.pad(ext_input, (0, 0, 0, steps - ext_input.shape[1])))
        k = self.co_dim
        w_gen = self.gen_cell.weight_ih  # (3G, K+E) = [co part | ext part]
        if ext.shape[-1] > 0:
            gen_x = F.linear(ext, w_gen[:, k:], self.gen_cell.bias_ih)  # (B, T, 3G)
        else:  # the bias alone, broadcast by addmm: no (B, T, 3G) copy of it forward, no stack of it backward
            gen_x = self.gen_cell.bias_ih
        gen_masks = self._step_masks(steps, batch, gen_init.shape[-1], gen_init)
        con = None
        if self.use_con:
            w_con = self.con_cell.weight_ih  # (3C, 2·H_ci + F) = [ci part | factor part]
            con_ci_proj = F.linear(self.dropout(ci), w_con[:, : self.ci_dim], self.con_cell.bias_ih)
            if ci_repeats > 1:  # (B, T, 3C): the same rows repeated, as ic_sample and ext were
                con_ci_proj = con_ci_proj.repeat(ci_repeats, 1, 1)
            noise = None
            if sample_posteriors:
                draw = co_noise if co_noise is not None else gaussian_noise
                noise = draw((steps, batch, k), ci)  # (T, B, K)
            # (F, 3C) and (K, 3G) copied out of the input weights: a strided slice as a matmul operand puts
            # backward on a slow GEMM path (≈ 5× slower for the K = 4 columns of the controller outputs)
            con = (
                con_ci_proj,  # (B, T, 3C)
                w_con[:, self.ci_dim :].t().contiguous(),
                self.con_cell.weight_hh,
                self.co_linear.weight,
                self.co_linear.bias,
                w_gen[:, :k].t().contiguous(),
                self.con_h0.expand(batch, -1),
                noise,
                self._step_masks(steps, batch, factor.shape[-1], factor),
            )
        gen_states, factors, con_states, co_means, co_stds, co_outs = DECODER_LOOP(
            steps, gen_init, factor, gen_x, self.gen_cell.weight_hh, fac_w, gen_masks, con,
            self.gen_cell.clip_value,
        )  # fmt: skip
        if not self.use_con:  # controller state and outputs carried unchanged: zeros, std 1
            co_outs = ext.new_zeros(batch, steps, 0)
            con_states = ext.new_zeros(batch, steps, self.con_dim)
            co_means = ext.new_zeros(batch, steps, self.co_dim_out)
            co_stds = ext.new_ones(batch, steps, self.co_dim_out)
        gen_inputs = torch.cat([co_outs, ext], dim=-1)  # (B, T, K+E)
        return gen_init, gen_states, con_states, co_means, co_stds, gen_inputs, factors


ControllerInputs = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
    torch.Tensor | None, torch.Tensor | None,
]  # fmt: skip


def decoder_loop(
    steps: int,
    gen_h0: torch.Tensor,
    factor0: torch.Tensor,
    gen_x: torch.Tensor,
    gen_u: torch.Tensor,
    fac_w: torch.Tensor,
    gen_masks: torch.Tensor | None,
    con: ControllerInputs | None,
    clip: float,
) -> tuple[torch.Tensor, ...]:
    """The recurrent part of the decoder: tensors in, tensors out, so it can be compiled.

    ``steps`` = T; gen_h0 (B, G) and factor0 (B, F) start the loop; gen_x is the generator's input
    projection without the controller's part, (B, T, 3G), or just its bias (3G) when there is no external
    input; gen_u (3G, G); fac_w (F, G) unit-norm rows; gen_masks (T, B, G) dropout multipliers or None.
    ``con`` (None without a controller) holds the controller's ci projection (B, T, 3C), factor input
    weights (F, 3C), recurrent weights (3C, C), ``co_linear`` weight (2K, C) and bias (2K), the
    generator's co input weights (K, 3G), con_h0 (B, C), the sampling noise (T, B, K) or None, and the
    factor dropout (T, B, F) or None.
    -> gen_states (B, T, G), factors (B, T, F), and with a controller con_states (B, T, C), co_means,
    co_stds, co_outs (B, T, K) (Nones without one).
    """
    gen_dim = gen_h0.shape[-1]
    gen_u_zr_t, gen_u_n_t = gen_u[: 2 * gen_dim].t(), gen_u[2 * gen_dim :].t()
    gen_xs = gen_x.unbind(1) if gen_x.dim() == 3 else [gen_x] * steps
    gen_ms = gen_masks.unbind(0) if gen_masks is not None else [None] * steps
    fac_w_t = fac_w.t()  # (G, F)
    gen_h, factor = gen_h0, factor0
    gen_states, factors, con_states, co_means, co_stds, co_outs = [], [], [], [], [], []
    if con is not None:
        con_ci, w_con_fac_t, con_u, co_w, co_b, w_gen_co_t, con_h, noise, fac_masks = con
        con_dim = con_h.shape[-1]
        con_u_zr_t, con_u_n_t = con_u[: 2 * con_dim].t(), con_u[2 * con_dim :].t()
        con_xs = con_ci.unbind(1)
        noises = noise.unbind(0) if noise is not None else [None] * steps
        fac_ms = fac_masks.unbind(0) if fac_masks is not None else [None] * steps
    for t in range(steps):
        clamp = clip_can_bind(t, clip)
        gen_in = gen_xs[t]
        if con is not None:
            fac_in = factor if fac_ms[t] is None else factor * fac_ms[t]
            con_x = torch.addmm(con_xs[t], fac_in, w_con_fac_t)
            con_h = gru_step_split(con_x, con_h, con_u_zr_t, con_u_n_t, clip, clamp)
            co_mean, co_logvar = F.linear(con_h, co_w, co_b).to(con_h.dtype).chunk(2, dim=-1)
            co_std = torch.exp(0.5 * co_logvar)  # no variance floor, as the reference
            co_out = co_mean + co_std * noises[t] if noises[t] is not None else co_mean
            gen_in = torch.addmm(gen_in, co_out, w_gen_co_t)
            con_states.append(con_h)
            co_means.append(co_mean)
            co_stds.append(co_std)
            co_outs.append(co_out)
        gen_h = gru_step_split(gen_in, gen_h, gen_u_zr_t, gen_u_n_t, clip, clamp)
        fac_in = gen_h if gen_ms[t] is None else gen_h * gen_ms[t]
        factor = (fac_in @ fac_w_t).to(gen_h.dtype)  # autocast: what the loop returns is in the state's dtype
        gen_states.append(gen_h)
        factors.append(factor)

    def seq(items: list[torch.Tensor], width: int) -> torch.Tensor:
        return torch.stack(items, dim=1) if items else gen_h0.new_zeros(gen_h0.shape[0], steps, width)

    gen_seq, fac_seq = seq(gen_states, gen_dim), seq(factors, fac_w.shape[0])
    if con is None:
        return gen_seq, fac_seq, None, None, None, None
    k = w_gen_co_t.shape[0]
    return gen_seq, fac_seq, seq(con_states, con_dim), seq(co_means, k), seq(co_stds, k), seq(co_outs, k)


def _batch_dims(
    steps: int,
    gen_h0: torch.Tensor,
    factor0: torch.Tensor,
    gen_x: torch.Tensor,
    gen_u: torch.Tensor,
    fac_w: torch.Tensor,
    gen_masks: torch.Tensor | None,
    con: ControllerInputs | None,
    clip: float,
) -> list[tuple[torch.Tensor | None, int]]:
    """Where the batch is in each argument of :func:`decoder_loop` (for one compiled graph per mode)."""
    dims = [(gen_h0, 0), (factor0, 0), (gen_x if gen_x.dim() == 3 else None, 0), (gen_masks, 1)]
    if con is not None:
        con_ci, _, _, _, _, _, con_h0, noise, fac_masks = con
        dims += [(con_ci, 0), (con_h0, 0), (noise, 1), (fac_masks, 1)]
    return dims


DECODER_LOOP = compiled_loop(decoder_loop, "decoder loop", _batch_dims)
