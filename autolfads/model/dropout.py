"""Bernoulli masks and the dropout built on them (lfads-spec §2.13 placements use it).

Dropout masks are drawn over large tensors on every training step (the generator's state at every time
step, coordinated dropout over the whole input), and on CPU the drawing, not the multiply, is what costs:
``torch.rand`` makes one 32-bit draw per element and ``torch.bernoulli`` is slower still. On CPU a mask is
therefore read from raw random bits instead, 16 per element: one 64-bit draw serves four elements and the
keep probability is ``1 − p`` to within 2⁻¹⁶ (0.00002). Other devices draw uniforms, which are cheap there.
"""

from __future__ import annotations

import torch
from torch import nn

_BITS = 16
_LEVELS = 1 << _BITS


def keep_mask(
    shape: tuple[int, ...] | torch.Size,
    p: float,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A bool tensor of ``shape``, each entry True with probability ``1 − p``, independently."""
    if p >= 1:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if device.type != "cpu":
        return torch.rand(shape, device=device, generator=generator) >= p
    numel = 1
    for size in shape:
        numel *= size
    words = torch.empty((numel + 3) // 4, dtype=torch.int64)
    words.random_(-(2**63), 2**63 - 1, generator=generator)
    draws = words.view(torch.int16)[:numel].view(shape)  # uniform on [−2¹⁵, 2¹⁵)
    return draws >= round(p * _LEVELS) - _LEVELS // 2


def scaled_keep_mask(shape: tuple[int, ...] | torch.Size, p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout multipliers: 0 where dropped, ``1/(1 − p)`` where kept, in ``like``'s dtype."""
    return keep_mask(shape, p, like.device).to(like.dtype).mul_(1.0 / (1.0 - p) if p < 1 else 0.0)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (inverted dropout, identity in eval mode) with masks from :func:`keep_mask`.

    It subclasses ``nn.Dropout`` so that anything that looks for dropout modules (``update_hyperparameters``)
    finds it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.numel() == 0:
            return x
        return x * scaled_keep_mask(x.shape, self.p, x)
