"""Priors and KL terms against hand-computed values (lfads-spec §2.7)."""

from __future__ import annotations

import math

import pytest
import torch

from autolfads.model.priors import (
    AutoregressiveMultivariateNormal,
    MultivariateNormal,
    MultivariateStudentT,
    Null,
)


def test_ic_kl_is_analytic_summed_over_dims_and_averaged_over_batch() -> None:
    prior = MultivariateNormal(mean=0.0, variance=0.1, shape=2)
    mean = torch.tensor([[0.5, -1.0], [0.0, 0.2]])
    std = torch.tensor([[0.3, 0.2], [1.0, 0.5]])

    def kl_1d(m: float, s: float, pm: float = 0.0, pv: float = 0.1) -> float:
        return 0.5 * (math.log(pv / s**2) + (s**2 + (m - pm) ** 2) / pv - 1)

    expected = (kl_1d(0.5, 0.3) + kl_1d(-1.0, 0.2) + kl_1d(0.0, 1.0) + kl_1d(0.2, 0.5)) / 2  # two trials
    assert prior(mean, std).item() == pytest.approx(expected, rel=1e-5)


def test_ic_prior_mean_trains_and_variance_is_fixed() -> None:
    prior = MultivariateNormal(mean=0.0, variance=0.1, shape=3)
    assert prior.mean.requires_grad
    assert not prior.logvar.requires_grad
    torch.testing.assert_close(prior.logvar, torch.full((3,), math.log(0.1)))


def test_ar1_log_prob_matches_hand_computed_values() -> None:
    tau, nvar = 4.0, 0.2
    prior = AutoregressiveMultivariateNormal(tau=tau, nvar=nvar, shape=1)
    z = torch.tensor([[[0.3], [-0.1], [0.5]]])  # one trial, three steps, one dim
    alpha = math.exp(-1 / tau)

    def log_normal(x: float, mean: float, var: float) -> float:
        return -0.5 * math.log(2 * math.pi * var) - (x - mean) ** 2 / (2 * var)

    expected = (
        log_normal(0.3, 0.0, nvar / (1 - alpha**2))  # stationary variance at t = 0
        + log_normal(-0.1, alpha * 0.3, nvar)
        + log_normal(0.5, alpha * -0.1, nvar)
    )
    assert prior.log_prob(z).item() == pytest.approx(expected, rel=1e-5)
    assert prior.logtaus.requires_grad and prior.lognvars.requires_grad


def test_ar1_kl_is_one_sample_estimate_log_q_minus_log_p() -> None:
    prior = AutoregressiveMultivariateNormal(tau=10.0, nvar=0.1, shape=2)
    mean, std = torch.zeros(4, 5, 2), torch.full((4, 5, 2), 0.3)
    torch.manual_seed(0)
    kl = prior(mean, std)
    torch.manual_seed(0)
    posterior = prior.make_posterior(mean, std)
    z = posterior.rsample()
    expected = (posterior.log_prob(z) - prior.log_prob(z)).mean()
    torch.testing.assert_close(kl, expected)
    # averaged over many samples it approaches a positive KL
    many = torch.stack([prior(mean, std) for _ in range(200)]).mean()
    assert many.item() > 0


def test_student_t_location_starts_at_loc_not_scale() -> None:
    prior = MultivariateStudentT(loc=0.25, scale=2.0, df=5.0, shape=3)
    torch.testing.assert_close(prior.loc.detach(), torch.full((3,), 0.25))
    torch.testing.assert_close(prior.logscale.detach(), torch.full((3,), math.log(2.0)))
    kl = prior(torch.zeros(4, 3), torch.ones(4, 3))
    assert kl.shape == () and torch.isfinite(kl)
    assert torch.isfinite(prior(torch.zeros(4, 6, 3), torch.ones(4, 6, 3)))


def test_null_prior_gives_zero_kl_and_no_posterior() -> None:
    prior = Null()
    assert prior.make_posterior(torch.zeros(2, 3), torch.ones(2, 3)) is None
    assert prior(torch.zeros(2, 3), torch.ones(2, 3)).item() == 0.0
