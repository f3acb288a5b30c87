"""Reconstruction likelihoods: readout parameters -> per-element loss and means (lfads-spec §2.6).

Shared interface: class attribute ``n_params`` (parameters per channel, so the readout width is
``n_channels * n_params``); ``reshape_output_params`` (B, T, N·P) -> (B, T, N, P); ``compute_loss(data,
params)`` -> elementwise NLL (B, T, N), no reduction; ``compute_means(params)`` -> (B, T, N);
``compute_l2()`` -> any extra penalty added to the L2 term (0 except for the zero-inflated Gamma).
"""

from __future__ import annotations

import copy
import glob
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from autolfads.errors import ConfigError


def stirling_term(counts: torch.Tensor) -> torch.Tensor:
    """y·log y − y + ½·log(2πy) where y > 1, else 0: the ``full=True`` term of torch's Poisson NLL.

    Spike counts are integers, so the term is looked up in a table over 0..max(y) instead of computing two
    logs over the whole batch; the rare non-integer entries (data that are not counts) get the formula.
    """
    if counts.numel() == 0:
        return torch.zeros_like(counts)
    whole = counts.long().clamp_min_(0)  # negative or non-finite entries take the formula below
    values = torch.arange(int(whole.max()) + 1, dtype=counts.dtype, device=counts.device)
    out = torch.take(_stirling(values), whole)
    fractional = whole != counts
    if fractional.any():
        out = torch.where(fractional, _stirling(counts), out)
    return out


def _stirling(y: torch.Tensor) -> torch.Tensor:
    safe = y.clamp_min(1.0)  # keeps log(0) out of the branch that where() discards
    return torch.where(y > 1, safe * torch.log(safe) - safe + 0.5 * torch.log(2 * math.pi * safe), 0.0)


class _Reconstruction(nn.Module):
    n_params: int = 1

    def reshape_output_params(self, output_params: torch.Tensor) -> torch.Tensor:
        # (B, T, N·P) laid out as P consecutive blocks of N -> (B, T, N, P)
        if self.n_params == 1:
            return output_params.unsqueeze(-1)  # a view: no copy of the largest tensor of the step
        return torch.stack(output_params.chunk(self.n_params, dim=-1), dim=-1)

    def compute_l2(self) -> torch.Tensor:
        return torch.zeros(())


class Poisson(_Reconstruction):
    """Parameter: log-rate. Poisson NLL with the Stirling term (as ``full=True``); means are rates per bin."""

    n_params = 1

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        # squeeze, not [..., 0]: the gradient of a squeeze is a view, that of an index a zero-filled copy
        return _PoissonNLL.apply(output_params.squeeze(-1), data, stirling_term(data))

    def compute_means(self, output_params: torch.Tensor) -> torch.Tensor:
        return torch.exp(output_params[..., 0])


class _PoissonNLL(torch.autograd.Function):
    """exp(λ) − y·λ + s for log-rates λ, counts y and Stirling terms s; gradient exp(λ) − y.

    Written out because this runs over the largest tensor of every step: three passes forward and two
    backward, where autograd's version of the same expression takes four and five.
    """

    @staticmethod
    def forward(
        ctx: Any, log_rates: torch.Tensor, data: torch.Tensor, stirling: torch.Tensor
    ) -> torch.Tensor:
        rates = torch.exp(log_rates)
        ctx.save_for_backward(rates, data)
        return torch.addcmul(rates, data, log_rates, value=-1).add_(stirling)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        rates, data = ctx.saved_tensors
        return torch.sub(rates, data).mul_(grad), None, None


class PoissonBPS(Poisson):
    """Poisson loss expressed relative to a per-neuron mean-rate null model, in bits per spike units."""

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        nll_model = super().compute_loss(data, output_params)
        null_rates = data.mean(dim=(0, 1), keepdim=True).expand_as(data)
        nll_null = F.poisson_nll_loss(null_rates, data, log_input=False, full=True, reduction="none")
        return (nll_model - nll_null) / (torch.log(torch.tensor(2.0)) * data.mean().clamp_min(1e-8))


class MSE(_Reconstruction):
    """Parameter: the value itself; squared error."""

    n_params = 1

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        return (data - output_params[..., 0]) ** 2

    def compute_means(self, output_params: torch.Tensor) -> torch.Tensor:
        return output_params[..., 0]


class Gaussian(_Reconstruction):
    """Parameters: [means | log-variances]. Gaussian NLL without the ½·log 2π constant (torch's eps 1e-6)."""

    n_params = 2

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        means, logvars = output_params[..., 0], output_params[..., 1]
        return F.gaussian_nll_loss(means, data, torch.exp(logvars), reduction="none")

    def compute_means(self, output_params: torch.Tensor) -> torch.Tensor:
        return output_params[..., 0]


class Gamma(_Reconstruction):
    """Parameters: [log α | log β] (shape, rate). Zeros are outside the support: use ZeroInflatedGamma."""

    n_params = 2

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        alpha, beta = torch.exp(output_params[..., 0]), torch.exp(output_params[..., 1])
        return -torch.distributions.Gamma(alpha, beta, validate_args=False).log_prob(data)

    def compute_means(self, output_params: torch.Tensor) -> torch.Tensor:
        return torch.exp(output_params[..., 0] - output_params[..., 1])


class ZeroInflatedGamma(_Reconstruction):
    """Parameters: [α logit | β logit | q logit]; a zero with probability 1 − q, else gamma_loc + Gamma(α, β).

    α = σ(·)·scale[0], β = σ(·)·scale[1] with a learned per-channel ``scale`` (2, N); the sigmoids are
    floored at 1e-5. The scale carries the penalty ½·scale_penalty·Σ(scale − scale_prior)².
    The reference requires every argument; the defaults here (ours) give a plain ZIG with no scale penalty.
    """

    n_params = 3

    def __init__(
        self,
        recon_dim: int,
        gamma_loc: float = 0.0,
        scale_init: float = 1.0,
        scale_prior: float = 1.0,
        scale_penalty: float = 0.0,
    ):
        super().__init__()
        self.gamma_loc = float(gamma_loc)
        self.scale_prior = float(scale_prior)
        self.scale_penalty = float(scale_penalty)
        self.scale = nn.Parameter(torch.full((2, recon_dim), float(scale_init)))

    def _split(self, output_params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sig = torch.sigmoid(output_params).clamp_min(1e-5)
        return sig[..., 0] * self.scale[0], sig[..., 1] * self.scale[1], sig[..., 2]

    def compute_loss(self, data: torch.Tensor, output_params: torch.Tensor) -> torch.Tensor:
        alpha, beta, q = self._split(output_params)
        is_zero = data == 0
        # evaluate the Gamma only where it is defined, so zeros give no NaN in either branch's gradient
        shifted = torch.where(is_zero, torch.ones_like(data), data - self.gamma_loc)
        gamma_nll = -torch.distributions.Gamma(alpha, beta, validate_args=False).log_prob(shifted)
        return torch.where(is_zero, -torch.log1p(-q), gamma_nll - torch.log(q))

    def compute_means(self, output_params: torch.Tensor) -> torch.Tensor:
        alpha, beta, q = self._split(output_params)
        return q * (alpha / beta + self.gamma_loc)

    def compute_l2(self) -> torch.Tensor:
        return 0.5 * self.scale_penalty * ((self.scale - self.scale_prior) ** 2).sum()


class MultisessionReconstruction(nn.ModuleList):
    """One copy of ``recon`` per file matched by ``datafile_pattern`` (sorted), for multi-session configs."""

    def __init__(self, datafile_pattern: str, recon: nn.Module):
        paths = sorted(glob.glob(datafile_pattern))
        if not paths:
            raise ConfigError(f"model.reconstruction.datafile_pattern: no file matches {datafile_pattern!r}")
        super().__init__([copy.deepcopy(recon) for _ in paths])
