"""The improvement-ratio stop rule (lfads-spec §5.8) and its saved state."""

import json
import math

from autolfads.tune.stopper import ImprovementRatioRule


def _rule(**kw):
    return ImprovementRatioRule(num_trials=2, perturbation_interval=25, burn_in_period=105, **kw)


def _generation(rule, epoch, a, b):
    rule.update("a", epoch, a)
    return rule.update("b", epoch, b)


def test_records_only_at_generation_ends_after_burn_in():
    rule = _rule()
    for epoch in (0, 50, 103, 105, 128):
        rule.update("a", epoch, 1.0)
    assert rule.records == {}
    rule.update("a", 104, 1.0)
    assert rule.records == {"a": 1.0}


def test_stops_when_the_window_of_bests_stops_improving():
    rule = _rule(patience=4, min_improvement_ratio=5e-4)
    epochs = [104, 129, 154, 179]
    assert not _generation(rule, epochs[0], 1.0, 2.0)
    assert not _generation(rule, epochs[1], 1.0, 2.0)
    assert not _generation(rule, epochs[2], 1.0, 2.0)
    assert _generation(rule, epochs[3], 1.0, 2.0)  # earliest stop: the 4th recorded generation


def test_keeps_going_while_improving_enough():
    rule = _rule(patience=2, min_improvement_ratio=0.01)
    assert not _generation(rule, 104, 1.0, 3.0)
    assert not _generation(rule, 129, 0.9, 3.0)  # (1.0 - 0.9) / 0.95 > 0.01
    assert _generation(rule, 154, 0.9, 3.0)


def test_generation_is_only_complete_when_every_trial_recorded():
    rule = _rule(patience=1)
    assert not rule.update("a", 104, 1.0)
    assert rule.bests == []
    assert rule.update("b", 104, 1.0)  # patience 1: a full window of one never improves


def test_non_finite_values_do_not_count_as_a_best():
    rule = _rule(patience=2)
    _generation(rule, 104, math.nan, 2.0)
    assert rule.bests == [2.0]


def test_state_survives_a_json_round_trip_mid_window():
    rule = _rule(patience=3)
    _generation(rule, 104, 1.0, 2.0)
    rule.update("a", 129, 1.0)
    restored = ImprovementRatioRule.from_state(json.loads(json.dumps(rule.state())))
    assert restored == rule
    assert not restored.update("b", 129, 1.0)
    assert restored.update("a", 154, 1.0) is False
    assert restored.update("b", 154, 1.0) is True


def test_a_member_that_left_is_no_longer_waited_for():
    rule = _rule(patience=2)
    assert not _generation(rule, 104, 1.0, 2.0)
    assert not rule.update("a", 129, 1.0)  # b died before reaching this boundary
    assert rule.bests == [1.0]
    assert rule.member_left("b")  # the generation closes with a alone, and the window has stopped improving
    assert rule.bests == [1.0, 1.0]
    assert rule.member_left("b")  # told twice: the same answer, the population shrinks once
    assert rule.left == ["b"]


def test_a_member_leaving_mid_window_drops_its_record_and_survives_a_round_trip():
    rule = ImprovementRatioRule(num_trials=3, perturbation_interval=25, burn_in_period=105, patience=3)
    rule.update("a", 104, 1.0)
    rule.update("c", 104, 0.5)
    assert not rule.member_left("c")  # its record goes; a and b are still expected
    assert rule.records == {"a": 1.0}
    restored = ImprovementRatioRule.from_state(json.loads(json.dumps(rule.state())))
    assert restored.left == ["c"]
    restored.update("b", 104, 2.0)
    assert restored.bests == [1.0]
