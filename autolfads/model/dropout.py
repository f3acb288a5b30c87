"""Dropout that draws its mask from uniform numbers (lfads-spec §2.13 placements use it).

Same operation as ``nn.Dropout`` (inverted dropout, identity in eval mode) but ``rand >= p`` is several times
faster than ``torch.bernoulli`` on CPU, and dropout is drawn over large tensors on every step. It subclasses
``nn.Dropout`` so that anything that looks for dropout modules (``update_hyperparameters``) finds it.
"""

from __future__ import annotations

import torch
from torch import nn


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.numel() == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))
