"""The body of ``autolfads run``: storage staging, tracking and the PBT driver, wired together.

``autolfads.cli`` keeps only the click declaration; everything here can be called from Python too.

- ``--out s3://…``: the driver's files are staged in a local mirror (``autolfads.storage.RunMirror``)
  pushed while the run goes and at the end; trial checkpoints go to ``OUT/trials`` through Ray Tune's
  storage directly. ``--resume`` pulls the previous attempt's files first.
- MLflow and Prometheus come from ``autolfads.tracking.TrackingSession`` (``--no-mlflow`` turns MLflow off).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from autolfads.storage import is_remote, join_uri
from autolfads.tune.driver import DEFAULT_NAME, RunResult, run_autolfads

logger = logging.getLogger("autolfads")


def _console_logging() -> None:
    """Our progress lines on stderr; Ray's own PBT chatter only when something is wrong."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("ray.tune.schedulers.pbt").setLevel(logging.WARNING)


def run_command(
    data: str,
    out: str,
    *,
    config: str | None = None,
    name: str | None = None,
    resume: bool = False,
    address: str | None = None,
    overrides: Sequence[str] = (),
    mlflow_uri: str | None = None,
    mlflow_experiment: str | None = None,
    no_mlflow: bool = False,
    metrics_port: int | None = None,
) -> RunResult:
    """Run (or resume) AutoLFADS on ``data`` into ``out``; returns where the best member ended up."""
    from autolfads.tracking.session import TrackingOptions, TrackingSession

    _console_logging()
    from autolfads.storage import check_run_locations

    check_run_locations([data], out, resume)  # bucket/credentials/endpoint: one clear line, before Ray starts
    if not is_remote(data):
        data = str(Path(data).absolute())  # trials run in Ray workers, whose working directory is not ours
    mirror = None
    trials_uri = None
    local = Path(out)
    if is_remote(out):
        from autolfads.storage import RunMirror

        mirror = RunMirror(out)
        local = mirror.local_dir
        trials_uri = join_uri(out, "trials")
        if resume:
            mirror.pull()
    options = TrackingOptions(mlflow_uri=mlflow_uri, mlflow=not no_mlflow, metrics_port=metrics_port)
    if mlflow_experiment:
        options = dataclasses.replace(options, experiment=mlflow_experiment)
    run_name = name or DEFAULT_NAME
    try:
        with TrackingSession(out, run_name, options, data_uri=data, resume=resume, local_dir=local) as obs:
            listeners = [*obs.listeners, *([mirror] if mirror is not None else [])]
            result = run_autolfads(
                [data],
                config,
                local,
                name=run_name,
                resume=resume,
                address=address,
                overrides=overrides,
                callbacks=obs.callbacks,
                listeners=listeners,
                mlflow_run_id=obs.mlflow_run_id,
                trials_uri=trials_uri,
            )
            obs.set_best(result.best_worker, result.best_metric)
    finally:
        if mirror is not None:
            mirror.push(force=True)  # also after an interruption: --resume pulls these files back
    return result


__all__ = ["run_command"]
