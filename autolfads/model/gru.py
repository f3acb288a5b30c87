"""Clipped GRU cells, the one recurrent unit of every LFADS part (lfads-spec §2.2).

Shapes: B trials, T time bins, I input size, H hidden size.

The gates follow the TensorFlow convention of the original LFADS, stacked [update z | reset r | candidate n]:

    z  = σ(x W_z + b_z + h U_z)        r = σ(x W_r + b_r + h U_r)
    n  = tanh(x W_n + b_n + (r ⊙ h) U_n)          (reset applied BEFORE the recurrent matmul)
    h' = clamp(z ⊙ h + (1 − z) ⊙ n, −clip, +clip)      (binds only at the first step: clip_can_bind)

The hidden-to-hidden bias of the reference is frozen at zero, so it is left out: it cannot change any value.

Speed: the input half of every gate (``x W + b``) does not depend on the state, so sequence runners compute it
for all time steps in one matmul (:meth:`ClippedGRUCell.project_input`) and the loop only does the two
recurrent matmuls per step. :class:`BidirectionalClippedGRU` runs both directions in the same loop with one
batched matmul per gate group.

Mixed precision (Lightning's ``bf16-mixed`` / ``16-mixed``, i.e. autocast): the matmuls return bfloat16 or
float16, but the state keeps its own dtype (the parameters'): the gates are cast to it before the update,
so rounding does not compound over the steps of a sequence. In float32 the casts are no-ops.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from autolfads.model.compiled import compiled_loop


class ClippedGRUCell(nn.Module):
    """One step of the clipped GRU.

    ``is_encoder`` selects the reference initialisation: encoder cells draw both weight matrices from
    N(0, 1/(I+H)); decoder cells (generator, controller) use N(0, 1/I) for input and N(0, 1/H) for recurrent
    weights. The update and reset biases start at 1 (a forget bias), the candidate bias at 0.
    """

    def __init__(self, input_size: int, hidden_size: int, clip_value: float = 5.0, is_encoder: bool = False):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.clip_value = float(clip_value)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.reset_parameters(is_encoder)

    def reset_parameters(self, is_encoder: bool) -> None:
        i, h = self.input_size, self.hidden_size
        ih_var = 1.0 / (i + h) if is_encoder else 1.0 / max(i, 1)
        hh_var = 1.0 / (i + h) if is_encoder else 1.0 / h
        with torch.no_grad():
            self.weight_ih.normal_(0.0, math.sqrt(ih_var))
            self.weight_hh.normal_(0.0, math.sqrt(hh_var))
            self.bias_ih.zero_()
            self.bias_ih[: 2 * h] = 1.0

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x W + b`` for any leading shape: (..., I) -> (..., 3H)."""
        return nn.functional.linear(x, self.weight_ih, self.bias_ih)

    def step(self, x_proj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Advance one step from a precomputed input projection (B, 3H) and state (B, H)."""
        return gru_step(x_proj, h, self.weight_hh, self.clip_value)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step from raw input (B, I) and state (B, H) -> new state (B, H)."""
        return self.step(self.project_input(x), h)


class _Tanh(torch.autograd.Function):
    """tanh(x) computed as 2·σ(2x) − 1 (the same function; within 2e-7 of ``torch.tanh`` in float32).

    On CPU ``torch.tanh`` takes 2-3× longer than ``torch.sigmoid`` at the GRU's sizes and runs once per step
    of every recurrent loop. The backward is tanh's own, from the saved output.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def candidate_tanh(x: torch.Tensor) -> torch.Tensor:
    """The candidate-state nonlinearity of the clipped GRU: the faster formulation on CPU in eager mode
    (compiled code has its own vectorised tanh, and fuses it with its neighbours)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return torch.tanh(x)
    return _Tanh.apply(x)


def gru_step(x_proj: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, clip: float) -> torch.Tensor:
    """The gate math for one step; ``weight_hh`` is (3H, H) stacked [U_z | U_r | U_n]."""
    hidden = h.shape[-1]
    return gru_step_split(x_proj, h, weight_hh[: 2 * hidden].t(), weight_hh[2 * hidden :].t(), clip)


def gru_step_split(
    x_proj: torch.Tensor,
    h: torch.Tensor,
    u_zr_t: torch.Tensor,
    u_n_t: torch.Tensor,
    clip: float,
    clamp: bool = True,
) -> torch.Tensor:
    """:func:`gru_step` with the recurrent weights pre-split and transposed, (H, 2H) and (H, H), so a loop
    slices them once rather than every step (each slice costs a zero-filled gradient buffer in backward).

    ``clamp=False`` skips the clip where it cannot bind (see :func:`clip_can_bind`)."""
    hidden = h.shape[-1]
    x_zr, x_n = x_proj.split([2 * hidden, hidden], dim=-1)
    # (B, 2H): update and reset gates share one recurrent matmul
    zr = torch.sigmoid(torch.addmm(x_zr, h, u_zr_t))
    z, r = zr.split(hidden, dim=-1)
    n = candidate_tanh(torch.addmm(x_n, r * h, u_n_t))
    h_new = torch.lerp(n.to(h.dtype), h, z.to(h.dtype))  # z·h + (1 − z)·n in one op, in h's dtype
    return torch.clamp(h_new, -clip, clip) if clamp else h_new


def clip_can_bind(step: int, clip: float) -> bool:
    """Whether the clip can change the state at this step of a sequence (0-based).

    The new state is ``lerp(n, h, z)`` with z in [0, 1]: a point between n and h, and ``torch.lerp`` keeps it
    between them in floating point too. The candidate n is a tanh, within ±1. So once the state is within
    ±clip (after the first step's clip) and clip ≥ 1, no later step can leave it: the clip only binds at the
    first step, and loops skip its forward and backward everywhere else. The result is the same to the bit.
    """
    return step == 0 or clip < 1


class ClippedGRU(nn.Module):
    """Runs a :class:`ClippedGRUCell` over a sequence: (B, T, I), (B, H) -> outputs (B, T, H), last (B, H)."""

    def __init__(self, input_size: int, hidden_size: int, clip_value: float = 5.0, is_encoder: bool = True):
        super().__init__()
        self.cell = ClippedGRUCell(input_size, hidden_size, clip_value, is_encoder)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, T, 3H), one matmul for every step; unbind so backward stacks rather than zero-fills per step
        x_proj = self.cell.project_input(x).unbind(1)
        hid = self.cell.hidden_size
        u_zr_t, u_n_t = self.cell.weight_hh[: 2 * hid].t(), self.cell.weight_hh[2 * hid :].t()
        h = h0
        outputs = []
        clip = self.cell.clip_value
        for t, xp in enumerate(x_proj):
            h = gru_step_split(xp, h, u_zr_t, u_n_t, clip, clip_can_bind(t, clip))
            outputs.append(h)
        if not outputs:
            return x.new_zeros(x.shape[0], 0, self.cell.hidden_size), h
        return torch.stack(outputs, dim=1), h


class BidirectionalClippedGRU(nn.Module):
    """A forward GRU plus a separate GRU over the time-reversed input, its outputs flipped back.

    (B, T, I), h0 (2, B, H) -> outputs (B, T, 2H) = [forward | backward], h_n (2, B, H) = [forward, backward]
    final states. Both directions advance together: their recurrent weights are stacked so that each step is
    two batched matmuls (``baddbmm``) instead of four.
    """

    def __init__(self, input_size: int, hidden_size: int, clip_value: float = 5.0):
        super().__init__()
        self.fwd = ClippedGRUCell(input_size, hidden_size, clip_value, is_encoder=True)
        self.bwd = ClippedGRUCell(input_size, hidden_size, clip_value, is_encoder=True)
        self.hidden_size = hidden_size

    @property
    def recurrent_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernels the L2 penalty applies to (lfads-spec §2.8)."""
        return self.fwd.weight_hh, self.bwd.weight_hh

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = run_lockstep([self.fwd, self.bwd], [x, x.flip(1)], h0)  # (2, B, T, H), (2, B, H)
        return torch.cat([out[0], out[1].flip(1)], dim=-1), h


def run_lockstep(
    cells: list[ClippedGRUCell], inputs: list[torch.Tensor], h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run K independent GRUs with the same input and hidden sizes in one loop.

    ``inputs``: K sequences (B, T, I), already in the order each GRU reads them; h0 (K, B, H) ->
    outputs (K, B, T, H) in reading order, last states (K, B, H). Each step is two batched matmuls
    (``baddbmm``) over all K GRUs instead of 2·K small ones, and the input projections of every step and
    every GRU are one batched matmul before the loop. The loop itself is :func:`lockstep_loop`, compiled
    where a compiler works (``autolfads.model.compiled``).
    """
    k = len(cells)
    batch, steps, _ = inputs[0].shape
    hid = cells[0].hidden_size
    if steps == 0:
        return inputs[0].new_zeros(k, batch, 0, hid), h0
    w_ih = torch.stack([c.weight_ih for c in cells]).transpose(1, 2)  # (K, I, 3H)
    b_ih = torch.stack([c.bias_ih for c in cells]).unsqueeze(1)  # (K, 1, 3H)
    x_all = torch.stack(inputs).reshape(k, batch * steps, -1)  # (K, B·T, I)
    x_proj = torch.baddbmm(b_ih, x_all, w_ih)  # (K, B·T, 3H)
    w_hh = torch.stack([c.weight_hh for c in cells]).transpose(1, 2)  # (K, H, 3H)
    return LOCKSTEP_LOOP(steps, x_proj, h0, w_hh, cells[0].clip_value)


def lockstep_loop(
    steps: int, x_proj: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrent part of :func:`run_lockstep`: x_proj (K, B·T, 3H), h0 (K, B, H), w_hh (K, H, 3H)
    -> outputs (K, B, T, H), last states (K, B, H). Tensors in, tensors out, so it can be compiled (and no
    argument is a view: a compiled function guards on a view's base, whose batch size would be fixed)."""
    hid = h0.shape[-1]
    w_zr, w_n = w_hh[:, :, : 2 * hid], w_hh[:, :, 2 * hid :]
    h = h0
    outputs = []
    x_steps = x_proj.view(x_proj.shape[0], -1, steps, 3 * hid).unbind(2)  # T × (K, B, 3H)
    for t, xp in enumerate(x_steps):
        x_zr, x_n = xp.split([2 * hid, hid], dim=-1)
        zr = torch.sigmoid(torch.baddbmm(x_zr, h, w_zr))
        z, r = zr.split(hid, dim=-1)
        n = candidate_tanh(torch.baddbmm(x_n, r * h, w_n))
        h = torch.lerp(n.to(h.dtype), h, z.to(h.dtype))
        if clip_can_bind(t, clip):
            h = torch.clamp(h, -clip, clip)
        outputs.append(h)
    return torch.stack(outputs, dim=2), h


LOCKSTEP_LOOP = compiled_loop(
    lockstep_loop, "encoder loop", lambda steps, x_proj, h0, w_hh, clip: [(x_proj, 1), (h0, 1)]
)
