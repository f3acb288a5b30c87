"""Priors and KL terms against hand-computed values (lfads-spec §2.7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import StudentT

from autolfads.model import LFADS
from autolfads.model.priors import (
    AutoregressiveMultivariateNormal,
    MultivariateNormal,
    MultivariateStudentT,
    Null,
)
from tests.model.builders import make_batch, model_config


def _student_t_log_pdf(x: float, df: float, loc: float, scale: float) -> float:
    """log density of the location-scale Student-t, written out."""
    u = (x - loc) / scale
    return (
        math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi) - math.log(scale)
        - (df + 1) / 2 * math.log1p(u * u / df)
    )  # fmt: skip


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


def test_student_t_controller_kl_is_a_mean_over_time_not_a_sum() -> None:
    """One sample z per (trial, step, dim); KL = mean over trials and steps of Σ_dims log q(z) − log p(z)."""
    df, loc, scale = 4.0, 0.1, 0.5
    prior = MultivariateStudentT(loc=loc, scale=scale, df=df, shape=2)
    b, t, d = 3, 5, 2
    mean = torch.linspace(-1.0, 1.0, b * t * d).view(b, t, d)
    std = torch.linspace(0.2, 0.9, b * t * d).view(b, t, d)
    torch.manual_seed(7)
    kl = prior(mean, std).item()
    torch.manual_seed(7)
    z = StudentT(df, mean, std).rsample()  # the same draw
    per_step = [
        sum(
            _student_t_log_pdf(z[i, j, k].item(), df, mean[i, j, k].item(), std[i, j, k].item())
            - _student_t_log_pdf(z[i, j, k].item(), df, loc, scale)
            for k in range(d)
        )
        for i in range(b)
        for j in range(t)
    ]
    assert kl == pytest.approx(sum(per_step) / (b * t), rel=1e-4)  # T× smaller than a sum over time
    # the IC form (B, D): summed over dims, averaged over trials
    torch.manual_seed(8)
    kl_ic = prior(mean[:, 0], std[:, 0]).item()
    torch.manual_seed(8)
    z0 = StudentT(df, mean[:, 0], std[:, 0]).rsample()
    expected = (
        sum(
            _student_t_log_pdf(z0[i, k].item(), df, mean[i, 0, k].item(), std[i, 0, k].item())
            - _student_t_log_pdf(z0[i, k].item(), df, loc, scale)
            for i in range(b)
            for k in range(d)
        )
        / b
    )
    assert kl_ic == pytest.approx(expected, rel=1e-4)


def _sampled_co_noise(co_prior: dict) -> torch.Tensor:
    """ε = (sampled controller output − mean) / std of a tiny LFADS's forward pass, (B·T·K,)."""
    cfg = model_config(co_prior=co_prior, dropout_rate=0.0)
    torch.manual_seed(0)
    model = LFADS(**cfg).eval()
    batch = make_batch(cfg, n_trials=1500)
    with torch.no_grad():
        out = model(batch, sample_posteriors=True)[0]
    co = out.gen_inputs[..., : cfg["co_dim"]]
    return ((co - out.co_means) / out.co_stds).flatten()


def test_controller_outputs_are_sampled_from_the_co_priors_family() -> None:
    """P(|ε| > 3): 0.0577 for a Student-t with df 3, (2/π)-formula by hand; 0.0027 for a Normal."""
    student = {"_target_": "autolfads.model.priors.MultivariateStudentT", "loc": 0.0, "scale": 1.0,
               "df": 3.0, "shape": 2}  # fmt: skip
    eps = _sampled_co_noise(student)  # 1500 trials × 10 steps × 2 dims = 30000 draws
    root3 = math.sqrt(3.0)
    # the t₃ CDF is 1/2 + (1/π)·(x/(√3·(1 + x²/3)) + atan(x/√3)), so P(|T₃| > 3) is:
    t3_tail = 1 - (2 / math.pi) * (3 / (root3 * (1 + 9 / 3)) + math.atan(3 / root3))
    assert t3_tail == pytest.approx(0.0577, abs=1e-4)
    assert (eps.abs() > 3).float().mean().item() == pytest.approx(t3_tail, abs=0.008)  # sd ≈ 0.0013
    gaussian = _sampled_co_noise(model_config()["co_prior"])  # the AR(1) prior: Normal posteriors
    assert (gaussian.abs() > 3).float().mean().item() == pytest.approx(0.0027, abs=0.002)


def test_null_prior_gives_zero_kl_and_no_posterior() -> None:
    prior = Null()
    assert prior.make_posterior(torch.zeros(2, 3), torch.ones(2, 3)) is None
    assert prior(torch.zeros(2, 3), torch.ones(2, 3)).item() == 0.0
