"""The driver starts the population without torch or Lightning (autolfads.tune.entry), and imports them
only once the first epoch is in (``ImportOnceTraining``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

from autolfads.tune.driver import ImportOnceTraining


def test_the_trial_function_the_driver_hands_tune_imports_neither_torch_nor_lightning():
    """Everything ``run_autolfads`` imports before ``tuner.fit`` (the trial function included, as Tune
    pickles it) leaves torch and Lightning to the trial processes."""
    script = textwrap.dedent(
        """
        import sys
        import ray.cloudpickle as cloudpickle
        from ray import tune
        import autolfads.tune.driver, autolfads.tune.scheduler, autolfads.tune.progress
        import autolfads.tracking.session, autolfads.tracking.ray_callbacks
        from autolfads.config.loader import save_resolved_config
        from autolfads.tune.entry import lfads_trial
        blob = cloudpickle.dumps(tune.with_parameters(lfads_trial, run_config={}, settings=None))
        assert b"autolfads.tune.entry" in cloudpickle.dumps(lfads_trial)  # by reference, not by value
        heavy = sorted(m for m in ("torch", "lightning", "autolfads.train", "autolfads.tune.trainable")
                       if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout, done.stdout


def test_the_driver_imports_torch_in_a_thread_at_the_first_epoch_only(tmp_path, monkeypatch):
    module = f"probe_{uuid.uuid4().hex}"  # stands in for autolfads.train: no other test imports it
    (tmp_path / f"{module}.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importer = ImportOnceTraining((module,))
    assert importer.thread is None and module not in sys.modules  # nothing while the trials start
    importer.on_trial_result(0, [], None, {"cur_epoch": 0})
    first = importer.thread
    assert first is not None
    first.join(timeout=60)
    assert module in sys.modules
    importer.on_trial_result(1, [], None, {"cur_epoch": 1})
    assert importer.thread is first  # once per run
