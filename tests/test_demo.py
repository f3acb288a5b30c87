"""``make demo`` (autolfads.demo): its settings stay valid configs, and the single model differs from the
population only in what PBT tunes and in how long it may train."""

from __future__ import annotations

from pathlib import Path

import pytest

from autolfads import demo
from autolfads.config import load_config
from autolfads.config.pbt import parse_pbt_block
from autolfads.data.synthetic import write_lorenz


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.4, "00:00:00:00"), (191.7, "00:00:03:11"), (90061, "01:01:01:01")]
)
def test_max_time_is_lightnings_days_hours_minutes_seconds(seconds: float, expected: str) -> None:
    assert demo.max_time(seconds) == expected


def test_both_fits_load_as_configs_that_differ_only_in_population_and_time(tmp_path: Path) -> None:
    data = write_lorenz(tmp_path / "lorenz.h5", n_trials=20, n_conditions=2)
    population = load_config(None, [*demo.COMMON, *demo.PBT], data_paths=[str(data)])
    single = load_config(
        None, [*demo.COMMON, "trainer.max_epochs=7", "+trainer.max_time=00:00:01:00"], data_paths=[str(data)]
    )
    settings = parse_pbt_block(population.pbt)
    assert settings.num_samples >= 2
    assert population.model == single.model  # same architecture, same fixed settings, same defaults
    assert population.datamodule == single.datamodule
    assert single.trainer.max_time == "00:00:01:00"
