"""Priors over the initial condition and the controller outputs, and their KL terms (lfads-spec §2.7).

Shared interface: ``make_posterior(mean, std)`` gives the posterior distribution to sample from,
``standard_noise(shape, like)`` the noise ε of that family's reparameterisation ``mean + std · ε`` (the
decoder draws the controller outputs' noise for all steps at once), and calling the prior with the
posterior parameters gives the KL estimate, summed over the latent dims and **averaged over the batch**
(and, for the Student-t prior's per-step controller outputs, over time). Shapes: B trials, T time bins, D
latent dims.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal, StudentT, kl_divergence


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def gaussian_noise(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """ε ~ N(0, 1) of ``shape``, in ``like``'s dtype and device: the Normal family's reparameterisation."""
    return torch.randn(tuple(shape), dtype=like.dtype, device=like.device)


class Null(nn.Module):
    """No prior: non-variational or controller-free models. KL is 0 and nothing is sampled."""

    def make_posterior(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        return None

    standard_noise = staticmethod(gaussian_noise)  # never drawn: a Null model samples nothing

    def forward(self, post_mean: torch.Tensor, post_std: torch.Tensor) -> torch.Tensor:
        return post_mean.new_zeros(())


class MultivariateNormal(nn.Module):
    """Diagonal Gaussian prior for the IC; trainable mean, fixed log-variance; analytic KL."""

    def __init__(self, mean: float, variance: float, shape: int | Sequence[int]):
        super().__init__()
        shape = _shape(shape)
        self.mean = nn.Parameter(torch.full(shape, float(mean)))
        self.logvar = nn.Parameter(torch.full(shape, math.log(variance)), requires_grad=False)

    def make_posterior(self, mean: torch.Tensor, std: torch.Tensor) -> Independent:
        return Independent(Normal(mean, std), 1)

    standard_noise = staticmethod(gaussian_noise)

    def forward(self, post_mean: torch.Tensor, post_std: torch.Tensor) -> torch.Tensor:
        prior = Independent(Normal(self.mean, torch.exp(0.5 * self.logvar)), 1)
        return kl_divergence(self.make_posterior(post_mean, post_std), prior).mean()


class AutoregressiveMultivariateNormal(nn.Module):
    """AR(1) prior over controller outputs, one process per dim with trainable log τ and log noise variance.

    α = exp(−1/τ). At t = 0: z ~ N(0, nvar / (1 − α²)) (the stationary variance); for t > 0:
    z_t ~ N(α z_{t−1}, nvar). The KL is a one-sample Monte-Carlo estimate log q(z) − log p(z).
    """

    def __init__(self, tau: float, nvar: float, shape: int | Sequence[int]):
        super().__init__()
        shape = _shape(shape)
        self.logtaus = nn.Parameter(torch.full(shape, math.log(tau)))
        self.lognvars = nn.Parameter(torch.full(shape, math.log(nvar)))

    def make_posterior(self, mean: torch.Tensor, std: torch.Tensor) -> Independent:
        return Independent(Normal(mean, std), 2)

    standard_noise = staticmethod(gaussian_noise)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of a (B, T, D) sample, summed over T and D -> (B,)."""
        alphas = torch.exp(-1.0 / torch.exp(self.logtaus))
        nvars = torch.exp(self.lognvars)
        means = torch.cat([torch.zeros_like(z[:, :1]), alphas * z[:, :-1]], dim=1)  # (B, T, D)
        var0 = nvars / (1 - alphas**2)
        stds = torch.cat([torch.sqrt(var0).expand_as(z[:, :1]), torch.sqrt(nvars).expand_as(z[:, 1:])], dim=1)
        return Normal(means, stds).log_prob(z).sum(dim=(1, 2))

    def forward(self, post_mean: torch.Tensor, post_std: torch.Tensor) -> torch.Tensor:
        posterior = self.make_posterior(post_mean, post_std)
        z = posterior.rsample()
        return (posterior.log_prob(z) - self.log_prob(z)).mean()


class MultivariateStudentT(nn.Module):
    """Student-t prior with trainable location and log-scale, fixed degrees of freedom; one-sample MC KL.

    The posterior is a Student-t with the same ``df`` (lfads-spec §2.7), for the IC and for the controller
    outputs alike (the decoder samples them as ``mean + std · ε``, ε from a standard Student-t). The KL
    is log q(z) − log p(z) of one sample, summed over the latent dims and averaged over everything else: the
    batch for the IC, batch and time for controller outputs, as the reference (a per-step mean, not a sum
    over T like the AR prior's). Fixes the reference's quirk (lfads-spec §11.6): the location starts at
    ``loc``, not at ``scale``.
    """

    def __init__(self, loc: float, scale: float, df: float, shape: int | Sequence[int]):
        super().__init__()
        shape = _shape(shape)
        self.loc = nn.Parameter(torch.full(shape, float(loc)))
        self.logscale = nn.Parameter(torch.full(shape, math.log(scale)))
        self.df = float(df)

    def make_posterior(self, mean: torch.Tensor, std: torch.Tensor) -> Independent:
        return Independent(StudentT(self.df, mean, std), 1)

    def standard_noise(self, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """ε ~ StudentT(df, 0, 1): ``mean + std · ε`` is a reparameterised draw of the posterior."""
        df = torch.tensor(self.df, dtype=like.dtype, device=like.device)
        return StudentT(df).sample(tuple(shape))

    def forward(self, post_mean: torch.Tensor, post_std: torch.Tensor) -> torch.Tensor:
        posterior = self.make_posterior(post_mean, post_std)
        z = posterior.rsample()  # (B, D) or (B, T, D)
        prior = Independent(StudentT(self.df, self.loc, torch.exp(self.logscale)), 1)
        return (posterior.log_prob(z) - prior.log_prob(z)).mean()
