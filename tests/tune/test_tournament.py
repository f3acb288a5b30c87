"""Binary tournament pairing (lfads-spec §5.7) without Ray."""

import math

import numpy as np
import pytest

from autolfads.tune.tournament import Match, tournament_pairs


def test_even_population_pairs_first_half_with_last_half_of_the_shuffle():
    scores = [5.0, 1.0, 3.0, 2.0]
    order = [int(i) for i in np.random.default_rng(7).permutation(4)]
    result = tournament_pairs(scores, np.random.default_rng(7))
    assert result.bye is None
    expected = []
    for a, b in zip(order[:2], order[2:], strict=True):
        expected.append(Match(a, b) if scores[a] < scores[b] else Match(b, a))
    assert list(result.matches) == expected


@pytest.mark.parametrize("seed", range(20))
def test_every_member_plays_once_and_the_lower_score_wins(seed):
    rng = np.random.default_rng(seed)
    scores = list(rng.normal(size=8))
    result = tournament_pairs(scores, np.random.default_rng(seed))
    members = [i for m in result.matches for i in (m.winner, m.loser)]
    assert sorted(members) == list(range(8))
    assert all(scores[m.winner] < scores[m.loser] for m in result.matches)


@pytest.mark.parametrize("seed", range(10))
def test_odd_population_leaves_the_middle_of_the_shuffle_out(seed):
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]
    order = [int(i) for i in np.random.default_rng(seed).permutation(5)]
    result = tournament_pairs(scores, np.random.default_rng(seed))
    assert result.bye == order[2]
    assert len(result.matches) == 2
    assert order[2] not in {i for m in result.matches for i in (m.winner, m.loser)}


def test_tie_goes_to_the_second_member_of_the_pair():
    order = [int(i) for i in np.random.default_rng(3).permutation(2)]
    result = tournament_pairs([1.0, 1.0], np.random.default_rng(3))
    assert result.matches == (Match(winner=order[1], loser=order[0]),)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("seed", range(10))
def test_non_finite_score_always_loses(bad, seed):
    scores = [1.0, 2.0, bad, 4.0, 5.0, 6.0]
    result = tournament_pairs(scores, np.random.default_rng(seed))
    assert 2 in result.losers
    assert 2 not in result.winners
    assert result.bye != 2


@pytest.mark.parametrize("seed", range(10))
def test_two_diverged_members_paired_together_both_clone_a_healthy_winner(seed):
    scores = [math.nan, math.nan, 1.0, 2.0, 3.0]
    result = tournament_pairs(scores, np.random.default_rng(seed))
    assert {0, 1} <= set(result.losers)
    assert all(math.isfinite(scores[m.winner]) for m in result.matches)


def test_all_diverged_gives_no_exploit():
    result = tournament_pairs([math.nan, math.inf], np.random.default_rng(0))
    assert result.matches == ()


def test_single_member_sits_out():
    result = tournament_pairs([1.0], np.random.default_rng(0))
    assert result.matches == () and result.bye == 0
