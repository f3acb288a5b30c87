"""Sampling and the multiplicative explore rule (lfads-spec §5.5, §5.6) without Ray."""

import numpy as np
import pytest

from autolfads.config.pbt import HyperParam
from autolfads.tune.explore import MAX_TRIES, describe_change, initial_config, perturb, perturb_value, sample

LR = HyperParam("model.lr_init", 1e-5, 5e-3, 4e-3, "loguniform", 0.3, True)
KL = HyperParam("model.kl_co_scale", 1e-6, 1e-4, None, "loguniform", 0.8, False)
DROP = HyperParam("model.dropout_rate", 0.0, 0.6, None, "uniform", 0.3, True)


def test_multiplier_stays_in_the_two_bands_of_the_spec():
    rng = np.random.default_rng(0)
    hp = HyperParam("x", 0.0, 1.0, None, "uniform", 0.3, False)
    factors = np.array([perturb_value(1.0, hp, rng)[1] for _ in range(5000)])
    low_band = (factors >= 0.7) & (factors <= 1 - 0.0006)
    high_band = (factors >= 1 + 0.0006) & (factors <= 1.3)
    assert np.all(low_band | high_band)
    assert 0.45 < low_band.mean() < 0.55


def test_enforced_limits_keep_values_inside_bounds():
    rng = np.random.default_rng(1)
    for start in (1e-5, 4e-3, 5e-3):
        for _ in range(300):
            value, _ = perturb_value(start, LR, rng)
            assert LR.min_samp <= value <= LR.max_samp


def test_unenforced_limits_let_values_leave_the_sampling_range_but_stay_non_negative():
    rng = np.random.default_rng(2)
    values = []
    value = KL.max_samp
    for _ in range(200):
        value, _ = perturb_value(value, KL, rng)
        values.append(value)
    assert max(values) > KL.max_samp
    assert min(values) >= 0.0


def test_value_outside_reachable_range_is_clipped_after_the_retry_limit():
    class CountingRng:
        def __init__(self):
            self.inner = np.random.default_rng(3)
            self.uniform_calls = 0

        def uniform(self, low, high):
            self.uniform_calls += 1
            return self.inner.uniform(low, high)

        def random(self):
            return self.inner.random()

    rng = CountingRng()
    hp = HyperParam("x", 0.1, 0.2, None, "uniform", 0.3, True)
    value, _ = perturb_value(10.0, hp, rng)  # no multiplier in [0.7, 1.3] reaches [0.1, 0.2]
    assert value == 0.2
    assert rng.uniform_calls == MAX_TRIES


def test_perturb_changes_every_hp_of_the_space_and_copies_the_rest():
    rng = np.random.default_rng(4)
    winner = {"model.lr_init": 4e-3, "model.kl_co_scale": 1e-5, "model.dropout_rate": 0.3, "other": 7}
    new, ops = perturb(winner, {hp.key: hp for hp in (LR, KL, DROP)}, rng)
    assert new["other"] == 7
    assert set(ops) == {"model.lr_init", "model.kl_co_scale", "model.dropout_rate"}
    for key in ops:
        assert new[key] != winner[key]
        assert isinstance(new[key], float)
        factor = float(ops[key].split()[1].rstrip(","))
        assert new[key] == pytest.approx(winner[key] * factor, rel=1e-3) or "clipped" in ops[key]


def test_same_seed_gives_same_perturbation():
    winner = {"model.lr_init": 4e-3}
    a = perturb(winner, {LR.key: LR}, np.random.default_rng(9))
    b = perturb(winner, {LR.key: LR}, np.random.default_rng(9))
    assert a == b


def test_loguniform_samples_spread_evenly_over_decades_and_uniform_over_values():
    rng = np.random.default_rng(5)
    logs = np.log10([sample(KL, rng) for _ in range(4000)])
    assert logs.min() >= -6 and logs.max() <= -4
    assert abs(np.mean(logs < -5) - 0.5) < 0.05
    lin = np.array([sample(DROP, rng) for _ in range(4000)])
    assert abs(np.mean(lin < 0.3) - 0.5) < 0.05


def test_fixed_init_is_used_and_missing_init_is_sampled():
    config = initial_config({hp.key: hp for hp in (LR, DROP)}, np.random.default_rng(6))
    assert config["model.lr_init"] == 4e-3
    assert 0.0 <= config["model.dropout_rate"] <= 0.6


def test_change_line_has_the_ray_style():
    assert describe_change("lr_init", 0.004, 0.0032, "* 0.8") == "lr_init : 0.004 --- (* 0.8) --> 0.0032"


def test_list_init_gives_each_member_its_own_start():
    hp = HyperParam("model.lr_init", 1e-5, 5e-3, (4e-3, 1e-3), "loguniform", 0.3, True)
    rng = np.random.default_rng(0)
    assert [initial_config({hp.key: hp}, rng, member)[hp.key] for member in range(3)] == [4e-3, 1e-3, 4e-3]
