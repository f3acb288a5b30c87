"""Everything observability needs for one ``autolfads run``, behind one object the CLI opens and closes.

::

    with TrackingSession(out, name, TrackingOptions(...), local_dir=work, data_uri=data) as obs:
        result = run_autolfads(..., work, callbacks=obs.callbacks, listeners=obs.listeners,
                               mlflow_run_id=obs.mlflow_run_id)
        obs.set_best(result.best_worker, result.best_metric, result.model)
    # on exit: plots, zip, history, config and the best model (an MLflow model) logged, the best member
    # tagged, runs closed (FAILED/KILLED on an exception), metrics server stopped, and what MLflow could
    # not take is printed

- MLflow: parent run (reopened on ``--resume`` from ``progress.json``'s ``mlflow_run_id``), child runs
  through :class:`~.ray_callbacks.MLflowTrialCallback`, run curves and exploits through
  :class:`~.progress_listeners.MlflowProgressListener`. ``--no-mlflow`` turns all of it off. The default
  embedded sqlite store needs the full ``mlflow`` package; without it the session warns and goes on
  without MLflow (an explicit ``--mlflow-uri`` that cannot be used is an error instead).
- Prometheus: with ``metrics_port`` set, ``/metrics`` serves the run's series
  (:mod:`~.series`, from ``progress.json``); a port that cannot be bound is a warning, not an error.

``out`` is the run's location as the user gave it (a path or ``s3://``); ``local_dir`` is where the
driver writes the run's files on this machine (the same directory for a local ``out``; the staging copy
of :class:`~autolfads.storage.RunMirror` for ``s3://``). The resolved config is logged as the parent's
params when given, else from ``local_dir/config.yaml`` at the first progress update.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from autolfads.constants import PBT_METRIC
from autolfads.errors import AutoLFADSError, TrackingError
from autolfads.storage import is_remote
from autolfads.tracking.metrics import MetricsServer, RunMetrics, start_metrics_server
from autolfads.tracking.mlflow_tracking import (
    DEFAULT_EXPERIMENT,
    RunTracker,
    embedded_store_available,
    resolve_tracking_uri,
    run_url,
)

log = logging.getLogger("autolfads.tracking")

RUN_ARTIFACTS = ("autolfads.zip", "pbt_history.csv", "fitlog.csv", "config.yaml")


@dataclass(frozen=True)
class TrackingOptions:
    """What the ``autolfads run`` flags say about tracking."""

    mlflow_uri: str | None = None  # --mlflow-uri (else MLFLOW_TRACKING_URI, else the embedded store)
    experiment: str = DEFAULT_EXPERIMENT  # --mlflow-experiment
    mlflow: bool = True  # False with --no-mlflow
    metrics_port: int | None = None  # --metrics-port (None: no /metrics)
    metrics_addr: str = "0.0.0.0"
    store_dir: str | None = None  # where the embedded store lives (default: the run's out_dir)
    register_model: str | None = None  # --register-model: registered-model name for the best model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def model_requirements() -> list[str]:
    """pip requirements of the logged MLflow model: this package and the torch it was trained with."""
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for package in ("autolfads", "torch"):
        try:
            requirements.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def _previous_run_id(out_dir: str | os.PathLike[str]) -> str | None:
    """The parent run id a previous attempt wrote into ``progress.json`` (for ``--resume``)."""
    path = Path(out_dir) / "progress.json"
    try:
        value = json.loads(path.read_text()).get("mlflow_run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class TrackingSession:
    """MLflow parent run + Ray callbacks + progress listeners + ``/metrics`` for one run."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        name: str,
        options: TrackingOptions | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        data_uri: str | None = None,
        population: int | None = None,
        resume: bool = False,
        tags: Mapping[str, Any] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.options = options or TrackingOptions()
        self.out_dir = out_dir
        if local_dir is None and is_remote(out_dir):
            raise AutoLFADSError(f"TrackingSession for {out_dir} needs local_dir (the staging directory)")
        self.local_dir = Path(local_dir if local_dir is not None else out_dir)
        self._config_logged = config is not None
        self.name = name
        self.tracker: RunTracker | None = None
        self.metrics = RunMetrics(job=name)
        self.metrics_server: MetricsServer | None = None
        self._best: tuple[Any, float, Any] | None = None
        self._mlflow_listener: Any = None
        self._closed = False
        if self.options.mlflow:
            self.tracker = self._open_tracker()
        if self.tracker is not None:
            run_tags = {
                "data_uri": data_uri,
                "population": population,
                "out_uri": str(out_dir),
                **(tags or {}),
            }
            self.tracker.start(
                name,
                config,
                tags={k: v for k, v in run_tags.items() if v is not None},
                run_id=_previous_run_id(self.local_dir) if resume else None,
            )
        if self.options.metrics_port is not None:
            try:
                self.metrics_server = start_metrics_server(
                    self.options.metrics_port, self.metrics, addr=self.options.metrics_addr
                )
            except OSError as exc:  # a second run on this machine, say: the run matters more than /metrics
                log.warning(
                    "--metrics-port %d: cannot serve /metrics (%s); the run goes on without it "
                    "(--metrics-port 0 picks a free port)",
                    self.options.metrics_port,
                    exc.strerror or exc,
                )
            else:
                log.info(
                    "Prometheus metrics on http://%s:%d/metrics",
                    self.options.metrics_addr,
                    self.metrics_server.port,
                )

    def _open_tracker(self) -> RunTracker | None:
        uri = resolve_tracking_uri(self.options.mlflow_uri, self.options.store_dir or self.out_dir)
        explicit = bool(self.options.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI"))
        if uri.startswith("sqlite:") and not embedded_store_available() and not explicit:
            log.warning(
                "MLflow is off: the embedded store (%s) needs the full mlflow package; "
                "pip install mlflow, or pass --mlflow-uri, or --no-mlflow to silence this",
                uri,
            )
            return None
        tracker = RunTracker(uri, self.options.experiment)  # TrackingError for an unusable explicit URI
        if uri.startswith("sqlite:///"):
            log.info("MLflow runs go to %s (mlflow ui --backend-store-uri %s)", uri, uri)
        return tracker

    # --- what the driver plugs in ----------------------------------------------------------------------

    @property
    def key(self) -> str:
        return str(self.out_dir)

    @property
    def mlflow_run_id(self) -> str | None:
        return None if self.tracker is None else self.tracker.parent_run_id

    @property
    def callbacks(self) -> list[Any]:
        """Ray Tune callbacks (import Ray lazily: only ``autolfads run`` needs them)."""
        if self.tracker is None:
            return []
        from autolfads.tracking.ray_callbacks import MLflowTrialCallback

        return [MLflowTrialCallback(self.tracker, key=self.key)]

    @property
    def listeners(self) -> list[Any]:
        """Progress listeners (called with each ``progress.json`` record)."""
        from autolfads.tracking.progress_listeners import MlflowProgressListener

        listeners: list[Any] = [self.metrics.update_from_progress]
        if self.tracker is not None:
            if self._mlflow_listener is None:
                self._mlflow_listener = MlflowProgressListener(self.tracker, self.local_dir)
            listeners += [self._log_config_once, self._mlflow_listener]
        return listeners

    def _log_config_once(self, progress: Mapping[str, Any] | None = None) -> None:
        """The run's resolved config (``config.yaml``, written before the first trial) as parent params."""
        path = self.local_dir / "config.yaml"
        if self._config_logged or self.tracker is None or not path.is_file():
            return
        import yaml

        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            log.warning("cannot read %s for MLflow params: %s", path, exc)
            config = None
        self._config_logged = True
        if isinstance(config, Mapping):
            self.tracker.log_params(config)
            population = (config.get("pbt") or {}).get("num_samples")
            if population is not None:
                self.tracker.set_tags({"population": population})

    def set_best(self, worker: Any, value: float, model: Any = None) -> None:
        """The selected best member (its worker id), its metric, and (optionally) the model itself, which
        goes to the parent run as an MLflow model at the end."""
        self._best = (worker, float(value), model)

    # --- the end ---------------------------------------------------------------------------------------

    def finish(
        self, status: str = "FINISHED", plots: bool = True, outputs_dir: str | os.PathLike[str] | None = None
    ) -> list[str]:
        """Log the run's files and plots to the parent run, close everything; lines MLflow could not take.

        ``outputs_dir``: where the run's files are on this machine (default: ``local_dir``).
        """
        if self._closed:
            return []
        self._closed = True
        lost: list[str] = []
        try:
            if self.tracker is not None:
                self._log_config_once()
                local = Path(outputs_dir) if outputs_dir is not None else self.local_dir
                self._log_outputs(local, plots and status == "FINISHED")
                self._log_best()
                lost = self.tracker.finish(status)
                url = run_url(self.tracker.tracking_uri, self.tracker.experiment_id, self.mlflow_run_id)
                if url is not None:
                    log.info("MLflow run: %s", url)
        finally:
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
        return lost

    def _log_best(self) -> None:
        if self.tracker is None:
            return
        progress = _read_json(self.local_dir / "progress.json")
        best = self._best[1] if self._best is not None else None
        if self._mlflow_listener is not None:
            epochs = progress.get("epoch")
            self._mlflow_listener.finish(best, epochs if isinstance(epochs, int) else None)
        if self._best is None:
            return
        worker, value, model = self._best
        self.tracker.set_best(worker, PBT_METRIC, value)
        if isinstance(progress.get("exploits"), int):
            self.tracker.set_tags({"exploits": progress["exploits"]})
        if model is not None:
            self.tracker.log_model(model, self.options.register_model, model_requirements())

    def _log_outputs(self, out: Path, draw_plots: bool) -> None:
        if self.tracker is None:
            return
        for name in RUN_ARTIFACTS:
            if (out / name).is_file():
                self.tracker.log_artifact(out / name)
        plot_dir = out / "plots"
        if draw_plots and not any(plot_dir.glob("*.png")):
            from autolfads.outputs.plots import make_plots

            try:
                make_plots(out)
            except AutoLFADSError as exc:
                log.warning("no plots for MLflow: %s", exc)
        if any(plot_dir.glob("*.png")):
            self.tracker.log_artifact(plot_dir, "plots")
        self._log_member_fitlogs(out / "fitlog.csv")

    def _log_member_fitlogs(self, fitlog_path: Path) -> None:
        """Each member's rows of ``fitlog.csv`` as ``fitlog.csv`` of its child run (cheap, and what a
        scientist downloads from one member). Plots stay population views, on the parent."""
        if self.tracker is None or not fitlog_path.is_file():
            return
        from autolfads.outputs.fitlog import read_fitlog

        try:
            fitlog = read_fitlog(fitlog_path)
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s for the members' runs: %s", fitlog_path, exc)
            return
        if "worker_id" not in fitlog.columns:
            return
        for worker, rows in fitlog.groupby("worker_id"):
            self.tracker.log_trial_table(worker, rows, "fitlog.csv")

    def __enter__(self) -> TrackingSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        self.finish(status)  # the tracker already warned about anything it could not log


def run_observed(
    run: Callable[..., Any],
    data: Sequence[str],
    config: str | os.PathLike[str] | None,
    out: str,
    *,
    name: str,
    options: TrackingOptions | None = None,
    resume: bool = False,
    listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    **run_kwargs: Any,
) -> Any:
    """Run ``run`` (``autolfads.tune.driver.run_autolfads``) with storage checks, mirroring and tracking.

    1. Every DATA URI must be readable and OUT writable: one StorageError line before anything starts.
    2. An ``s3://`` OUT gets a local working copy (:class:`~autolfads.storage.RunMirror`, pulled back on
       ``--resume``) and its trials go to ``OUT/trials`` through Ray's storage (``trials_uri=``).
    3. A :class:`TrackingSession` wraps the run (MLflow, ``/metrics``); the mirror is a progress listener,
       and pushes everything once more at the end, whatever happened.

    ``listeners`` are further progress listeners (e.g. a console view). ``run`` is passed in, not
    imported, because tracking sits below tune in the layering.
    Returns what ``run`` returned (a ``RunResult`` with ``best_worker`` and ``best_metric``).
    """
    from autolfads.storage import RunMirror, check_run_locations, join_uri

    check_run_locations(data, out, resume)
    mirror = RunMirror(out) if is_remote(out) else None
    if mirror is not None:
        if resume:
            mirror.pull()
        else:  # a new run: nothing of an earlier run of this URI in the working copy
            shutil.rmtree(mirror.local_dir, ignore_errors=True)
            mirror.local_dir.mkdir(parents=True, exist_ok=True)
        run_kwargs["trials_uri"] = join_uri(out, "trials")
    local = mirror.local_dir if mirror is not None else Path(out)
    try:
        with TrackingSession(
            out,
            name,
            options,
            local_dir=local,
            data_uri=",".join(str(d) for d in data),
            resume=resume,
        ) as obs:
            result = run(
                list(data),
                config,
                local,
                name=name,
                resume=resume,
                callbacks=obs.callbacks,
                listeners=[*obs.listeners, *([mirror] if mirror is not None else []), *listeners],
                mlflow_run_id=obs.mlflow_run_id,
                **run_kwargs,
            )
            best_worker, best_metric = (
                getattr(result, "best_worker", None),
                getattr(result, "best_metric", None),
            )
            if best_worker is not None and best_metric is not None:
                obs.set_best(best_worker, best_metric, getattr(result, "model", None))
            return result
    finally:
        if mirror is not None:
            mirror.push(force=True)


__all__ = ["TrackingError", "TrackingOptions", "TrackingSession", "run_observed"]
