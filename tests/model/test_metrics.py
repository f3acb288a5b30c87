"""Bits per spike, R² and the smoothed validation metric (lfads-spec §8.1, §2.10)."""

from __future__ import annotations

import math

import pytest
import torch

from autolfads.model.metrics import ExpSmoothedMetric, bits_per_spike, r2_score, regional_bits_per_spike


def _poisson_nll_sum(rates: torch.Tensor, counts: torch.Tensor) -> float:
    total = 0.0
    for lam, y in zip(rates.flatten().tolist(), counts.flatten().tolist(), strict=True):
        stirling = y * math.log(y) - y + 0.5 * math.log(2 * math.pi * y) if y > 1 else 0.0
        total += lam - y * math.log(lam) + stirling
    return total


@pytest.mark.parametrize("shape", [(3, 4, 2), (5, 2, 3)])
def test_bits_per_spike_matches_hand_reference(shape: tuple[int, int, int]) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    rates = torch.rand(shape, generator=gen) * 3 + 0.2
    counts = torch.poisson(rates, generator=gen)
    null = counts.mean(dim=(0, 1), keepdim=True).expand_as(counts)
    expected = (
        (_poisson_nll_sum(null, counts) - _poisson_nll_sum(rates, counts)) / counts.sum().item() / math.log(2)
    )
    assert bits_per_spike(torch.log(rates), counts).item() == pytest.approx(expected, rel=1e-4)


def test_regions_split_heldin_heldout_and_forward() -> None:
    gen = torch.Generator().manual_seed(0)
    counts = torch.poisson(torch.full((4, 6, 5), 2.0), generator=gen)
    log_rates = torch.log(torch.full((4, 6, 5), 2.0))
    bps, co_bps, fp_bps = regional_bits_per_spike(log_rates, counts, heldin_dim=3, observed_len=4)
    torch.testing.assert_close(bps, bits_per_spike(log_rates[:, :4, :3], counts[:, :4, :3]))
    torch.testing.assert_close(co_bps, bits_per_spike(log_rates[:, :4, 3:], counts[:, :4, 3:]))
    torch.testing.assert_close(fp_bps, bits_per_spike(log_rates[:, 4:], counts[:, 4:]))
    assert math.isnan(regional_bits_per_spike(log_rates, counts, 5, 6)[1].item())  # no held-out neurons


def test_r2_is_mean_over_channels() -> None:
    targets = torch.tensor([[[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]])
    preds = torch.tensor([[[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]])
    # channel 0 perfect (1.0); channel 1: SS_res 2, SS_tot 2 -> 0.0
    assert r2_score(preds, targets).item() == pytest.approx(0.5)


def test_smoothing_weights_previous_by_coef_and_survives_state_dict() -> None:
    metric = ExpSmoothedMetric(coef=0.3)
    metric.update(2.0, 1)
    metric.update(4.0, 3)  # batch-size weighted: 3.5
    assert metric.compute() == (pytest.approx(3.5), pytest.approx(3.5))  # first epoch: smth = curr
    restored = ExpSmoothedMetric(coef=0.3)
    restored.load_state_dict(metric.state_dict())
    restored.update(1.0, 2)
    curr, smth = restored.compute()
    assert (curr, smth) == (pytest.approx(1.0), pytest.approx(0.3 * 3.5 + 0.7 * 1.0))
