"""``autolfads run`` refuses what cannot work in one line, before starting Ray."""

from __future__ import annotations

from click.testing import CliRunner

from autolfads.cli import main
from tests.tune.tiny import tiny_config, tiny_data


def test_out_holding_a_run_is_refused_without_resume(tmp_path):
    data = tiny_data(tmp_path / "data.h5")
    out = tmp_path / "out"
    (out / "trials").mkdir(parents=True)
    result = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--no-mlflow"])
    assert result.exit_code == 1
    assert "already holds an unfinished run (trials); pass --resume to continue it" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_pbt_field_is_one_line_naming_it(tmp_path):
    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "cfg.yaml", hps={"model.lr_init": {"explore_wt": 2.0}})
    result = CliRunner().invoke(
        main, ["run", str(data), "--config", str(config), "--out", str(tmp_path / "out"), "--no-mlflow"]
    )
    assert result.exit_code == 1
    assert "pbt.hps.model.lr_init.explore_wt: expected a number in (0, 1), found 2" in result.output
    assert not (tmp_path / "out" / "trials").exists()
