"""Pure metric functions and the smoothed PBT objective (lfads-spec §2.10, §8.1).

Shapes: B trials, T time bins, N channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def bits_per_spike(log_rates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Information gain over a per-neuron mean-rate model, in bits per spike.

    (NLL_null − NLL_model) / Σ targets / ln 2, both summed Poisson NLLs with the Stirling term; the null rate
    of each neuron is its mean count over trials and time. Inputs are (B, T, N); an empty region gives NaN.
    """
    return _bits_per_spike(_poisson_nll_terms(log_rates, targets), targets)


def regional_bits_per_spike(
    log_rates: torch.Tensor, targets: torch.Tensor, heldin_dim: int, observed_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bps, co_bps, fp_bps): held-in × observed, held-out × observed, and all neurons × forward steps."""
    n, t = heldin_dim, observed_len
    # one pass over the whole contiguous tensor, then region sums: elementwise math on strided region views
    # runs several times slower on CPU, and this runs on every training step
    nll_terms = _poisson_nll_terms(log_rates, targets)
    regions = (
        (slice(None), slice(None, t), slice(None, n)),
        (slice(None), slice(None, t), slice(n, None)),
        (slice(None), slice(t, None)),
    )
    bps, co_bps, fp_bps = (_bits_per_spike(nll_terms[r], targets[r]) for r in regions)
    return bps, co_bps, fp_bps


def _poisson_nll_terms(log_rates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """λ − y·log λ per element. The Stirling term depends on the targets only and is the same in the model's
    and the null model's NLL, so it cancels exactly in their difference and is left out of both."""
    return torch.exp(log_rates) - targets * log_rates


def _bits_per_spike(nll_terms: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.numel() == 0:
        return targets.new_tensor(float("nan"))
    nll_model = nll_terms.sum()
    # null model: Σ_{b,t} (λ_n − y log λ_n) = B·T·λ_n − log λ_n · Σ y, per neuron n (λ_n = its mean count)
    counts = targets.sum(dim=(0, 1))  # (N,)
    n_bins = targets.shape[0] * targets.shape[1]
    null_rates = counts / n_bins
    nll_null = (n_bins * null_rates - counts * torch.log(null_rates + 1e-8)).sum()
    return (nll_null - nll_model) / targets.sum() / math.log(2)


def r2_score(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over channels of 1 − SS_res/SS_tot, trials and time flattened together."""
    preds = preds.reshape(-1, preds.shape[-1])
    targets = targets.reshape(-1, targets.shape[-1])
    ss_tot = ((targets - targets.mean(dim=0)) ** 2).sum(dim=0)
    ss_res = ((targets - preds) ** 2).sum(dim=0)
    return (1 - ss_res / ss_tot).mean()


class ExpSmoothedMetric(nn.Module):
    """Batch-size-weighted mean within an epoch, exponentially smoothed across epochs.

    ``smth = coef · prev + (1 − coef) · curr`` (coef 0.3 for ``valid/recon_smth``, i.e. 0.7 on the new epoch);
    the first epoch gives ``smth = curr``. Unlike the reference, every piece of state is a persistent buffer,
    so it is saved in checkpoints and a PBT trial restored from its winner continues the same curve.
    """

    def __init__(self, coef: float = 0.3):
        super().__init__()
        self.coef = coef
        self.register_buffer("total", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("prev", torch.tensor(float("nan"), dtype=torch.float64))

    def update(self, value: torch.Tensor | float, weight: int) -> None:
        self.total += float(value) * weight
        self.count += weight

    def compute(self) -> tuple[float, float]:
        """Close the epoch: returns (epoch mean, smoothed value) and resets the accumulators."""
        curr = (self.total / self.count).item() if self.count > 0 else float("nan")
        prev = self.prev.item()
        smth = curr if math.isnan(prev) else self.coef * prev + (1 - self.coef) * curr
        if not math.isnan(smth):
            self.prev.fill_(smth)
        self.total.zero_()
        self.count.zero_()
        return curr, smth
