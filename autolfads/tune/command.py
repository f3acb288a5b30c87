"""The body of ``autolfads run``: storage staging, tracking and the PBT driver, wired together.

``autolfads.cli`` keeps only the click declaration; everything here can be called from Python too. The
wiring itself is :func:`autolfads.tracking.session.run_observed`; this adds the console and the options.

- ``--out s3://…``: the driver's files are staged in a local mirror (``autolfads.storage.RunMirror``)
  pushed while the run goes and at the end; trial checkpoints go to ``OUT/trials`` through Ray Tune's
  storage directly. ``--resume`` pulls the previous attempt's files first.
- MLflow and Prometheus come from ``autolfads.tracking.TrackingSession`` (``--no-mlflow`` turns MLflow off).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from autolfads.tune.console import console_logging
from autolfads.tune.driver import DEFAULT_NAME, RunInterrupted, RunResult, run_autolfads

logger = logging.getLogger("autolfads")


def _console_logging() -> None:
    """Our progress lines on stderr (above the live block); Ray's PBT chatter only when something is wrong."""
    console_logging()
    logging.getLogger("ray.tune.schedulers.pbt").setLevel(logging.WARNING)


def _plain_local(uri: str) -> str:
    """``file:///x/y`` as the path ``/x/y`` (the operator renders a ``file://`` output URI that way)."""
    return urlparse(uri).path if uri.startswith("file://") else uri


def resume_command(data: str, out: str, name: str | None = None) -> str:
    """The command that continues an interrupted run (config and overrides are saved in the run)."""
    args = ["autolfads", "run", data, "--out", out]
    if name:
        args += ["--name", name]
    return shlex.join([*args, "--resume"])


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
    cfg: Any = None,
    store_dir: str | None = None,
    register_model: str | None = None,
) -> RunResult:
    """Run (or resume) AutoLFADS on ``data`` into ``out``; returns where the best member ended up.

    The CLI passes the config it already loaded and checked (``cfg``) and has claimed the output location
    (``autolfads.rundir``): ``out`` is then OUT itself or, with ``--force``, a staging folder in it, and
    ``store_dir`` the OUT the embedded MLflow store belongs to (``OUT/mlflow.db`` either way).
    """
    from autolfads.tracking.session import TrackingOptions, run_observed

    _console_logging()
    data, out = _plain_local(data), _plain_local(out)
    options = TrackingOptions(
        mlflow_uri=mlflow_uri,
        mlflow=not no_mlflow,
        metrics_port=metrics_port,
        store_dir=store_dir,
        register_model=register_model,
    )
    if mlflow_experiment:
        options = dataclasses.replace(options, experiment=mlflow_experiment)
    try:
        return run_observed(
            run_autolfads,
            [data],
            config,
            out,
            name=name or DEFAULT_NAME,
            options=options,
            resume=resume,
            address=address,
            overrides=overrides,
            cfg=cfg,
        )
    except RunInterrupted as error:
        raise RunInterrupted(
            f"interrupted with {error.unfinished} of {error.total} trials unfinished; the last completed "
            f"generation is saved. Continue with: {resume_command(data, store_dir or out, name)}",
            error.unfinished,
            error.total,
        ) from None


__all__ = ["run_command"]
