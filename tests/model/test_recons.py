"""Each reconstruction's NLL against torch.distributions (lfads-spec §2.6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D
from torch.nn import functional as F

from autolfads.model.recons import MSE, Gamma, Gaussian, Poisson, ZeroInflatedGamma, stirling_term


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_n_params_per_class() -> None:
    classes = (Poisson, MSE, Gaussian, Gamma, ZeroInflatedGamma)
    assert [c.n_params for c in classes] == [1, 1, 2, 2, 3]


def test_reshape_reads_consecutive_blocks_of_channels() -> None:
    flat = torch.arange(12.0).view(1, 2, 6)  # N = 3 channels × 2 params
    params = Gaussian().reshape_output_params(flat)
    assert params.shape == (1, 2, 3, 2)
    torch.testing.assert_close(params[0, 0, :, 0], torch.tensor([0.0, 1.0, 2.0]))  # means block
    torch.testing.assert_close(params[0, 0, :, 1], torch.tensor([3.0, 4.0, 5.0]))  # logvars block


def test_poisson_nll_matches_distribution_up_to_stirling(gen: torch.Generator) -> None:
    recon = Poisson()
    log_rates = torch.randn(4, 5, 3, generator=gen)
    data = torch.poisson(torch.exp(log_rates) * 3, generator=gen)
    loss = recon.compute_loss(data, recon.reshape_output_params(log_rates))
    exact = -D.Poisson(torch.exp(log_rates)).log_prob(data)
    # Stirling's log(y!) ≈ y log y − y + ½ log(2πy), used only where y > 1, errs by < 1/(12y)
    assert torch.allclose(loss, exact, atol=0.05)
    small = data <= 1
    torch.testing.assert_close(loss[small], exact[small])
    torch.testing.assert_close(
        recon.compute_means(recon.reshape_output_params(log_rates)), torch.exp(log_rates)
    )


def test_gaussian_nll_matches_distribution_without_constant(gen: torch.Generator) -> None:
    recon = Gaussian()
    means, logvars = torch.randn(4, 5, 3, generator=gen), torch.randn(4, 5, 3, generator=gen) * 0.5
    data = torch.randn(4, 5, 3, generator=gen)
    params = recon.reshape_output_params(torch.cat([means, logvars], dim=-1))
    expected = -D.Normal(means, torch.exp(0.5 * logvars)).log_prob(data) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(recon.compute_loss(data, params), expected)
    torch.testing.assert_close(recon.compute_means(params), means)


def test_gamma_nll_matches_distribution(gen: torch.Generator) -> None:
    recon = Gamma()
    log_a, log_b = torch.randn(4, 5, 3, generator=gen) * 0.3, torch.randn(4, 5, 3, generator=gen) * 0.3
    data = torch.rand(4, 5, 3, generator=gen) + 0.1
    params = recon.reshape_output_params(torch.cat([log_a, log_b], dim=-1))
    expected = -D.Gamma(torch.exp(log_a), torch.exp(log_b)).log_prob(data)
    torch.testing.assert_close(recon.compute_loss(data, params), expected)
    torch.testing.assert_close(recon.compute_means(params), torch.exp(log_a) / torch.exp(log_b))


def test_zero_inflated_gamma_matches_mixture_and_has_scale_penalty(gen: torch.Generator) -> None:
    recon = ZeroInflatedGamma(recon_dim=3, gamma_loc=0.1, scale_init=2.0, scale_prior=1.0, scale_penalty=0.5)
    logits = torch.randn(4, 5, 9, generator=gen)
    data = torch.rand(4, 5, 3, generator=gen) + 0.2
    data[0, :2] = 0.0
    params = recon.reshape_output_params(logits)
    sig = torch.sigmoid(params).clamp_min(1e-5)
    alpha, beta, q = sig[..., 0] * 2.0, sig[..., 1] * 2.0, sig[..., 2]
    gamma_part = -D.Gamma(alpha, beta).log_prob((data - 0.1).clamp_min(1e-3)) - torch.log(q)
    expected = torch.where(data == 0, -D.Bernoulli(probs=q).log_prob(torch.zeros_like(q)), gamma_part)
    loss = recon.compute_loss(data, params)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(recon.compute_means(params), q * (alpha / beta + 0.1))
    assert recon.compute_l2().item() == pytest.approx(0.5 * 0.5 * 6 * (2.0 - 1.0) ** 2)
    logits.requires_grad_(True)
    recon.compute_loss(data, recon.reshape_output_params(logits)).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_mse_is_squared_error(gen: torch.Generator) -> None:
    recon = MSE()
    values, data = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    params = recon.reshape_output_params(values)
    torch.testing.assert_close(recon.compute_loss(data, params), (data - values) ** 2)
    torch.testing.assert_close(recon.compute_means(params), values)


def test_poisson_loss_equals_torch_full_poisson_nll(gen: torch.Generator) -> None:
    log_rates = torch.randn(3, 4, 5, generator=gen)
    data = torch.poisson(torch.full((3, 4, 5), 2.0), generator=gen)
    data[0, 0, 0] = 7.5  # non-integer data are allowed too
    expected = torch.nn.functional.poisson_nll_loss(
        log_rates, data, log_input=True, full=True, reduction="none"
    )
    torch.testing.assert_close(Poisson().compute_loss(data, log_rates.unsqueeze(-1)), expected)


def test_stirling_term_is_torchs_full_poisson_term() -> None:
    counts = torch.tensor([[0.0, 1.0, 2.0, 3.0], [7.0, 40.0, 1.0, 0.0]])
    log_rates = torch.zeros_like(counts)
    full = F.poisson_nll_loss(log_rates, counts, full=True, reduction="none")
    bare = F.poisson_nll_loss(log_rates, counts, full=False, reduction="none")
    torch.testing.assert_close(stirling_term(counts), full - bare)
    assert stirling_term(torch.zeros(0, 3)).shape == (0, 3)


def test_poisson_loss_gradient_is_rate_minus_count(gen: torch.Generator) -> None:
    log_rates = torch.randn(3, 4, 5, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    data = torch.poisson(torch.full((3, 4, 5), 1.5, dtype=torch.float64), generator=gen)
    weights = torch.rand(3, 4, 5, generator=gen, dtype=torch.float64)
    (Poisson().compute_loss(data, log_rates) * weights).sum().backward()
    expected = (torch.exp(log_rates.detach()[..., 0]) - data) * weights
    torch.testing.assert_close(log_rates.grad[..., 0], expected)
    assert torch.autograd.gradcheck(lambda lr: Poisson().compute_loss(data, lr), (log_rates,))
