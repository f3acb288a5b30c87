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


def test_background_imports_load_the_modules_and_swallow_failures(caplog):
    """The driver imports torch and Lightning in a thread while its trials train
    (autolfads.tune.driver.import_in_background); a module that fails there is left for the main thread's
    own import to report."""
    import logging
    import sys

    from autolfads.tune.driver import import_in_background

    ours = logging.getLogger("autolfads")  # may not propagate to the root (console_logging)
    ours.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="autolfads"):
            thread = import_in_background(("tests.tune.toy", "autolfads.no_such_module"))
            thread.join(timeout=60)
    finally:
        ours.removeHandler(caplog.handler)
    assert not thread.is_alive() and not thread.daemon
    assert "tests.tune.toy" in sys.modules
    assert "background import of autolfads.no_such_module failed" in caplog.text
