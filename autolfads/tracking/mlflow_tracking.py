"""MLflow: one parent run per ``autolfads run``, one nested child run per PBT member (DESIGN.md §4.5).

Laid out for a scientist comparing members in the MLflow UI:

- Parent run: named after the run; params = the resolved config flattened to dotted keys (values cut to
  MLflow's 6000-character limit); tags = data URI, ``population``, code version, and at the end
  ``best/worker``, ``best/run_id``, ``best/metric``, ``best/value``; metric ``best/valid/recon_smth``
  (the population's best, one point per epoch, steps strictly increasing, the last one the selected
  member's value); artifacts = ``autolfads.zip``, ``pbt_history.csv``, ``fitlog.csv``, plots, and the
  best model as an MLflow model (``model/``, optionally registered).
- Child run per member, named ``worker-00``, ``worker-01``, … (the persistent worker id, as in the
  console, ``fitlog.csv`` and the plots): per-epoch metrics (step = epoch) of the model (``train/*``,
  ``valid/*``, ``lr-AdamW``) and ``hp/*`` of the searched hyperparameters only (PBT's changes show as
  steps); tags ``worker_id``, ``generation`` (current), ``exploit/from`` and ``exploit/generation`` (its
  last exploit), ``best=true`` on the selected member; params = the member's **final** hyperparameters,
  logged when it ends. Why not the starting values as params: MLflow refuses to change a param
  (``Changing param values is not allowed``; Ray's ``MLflowLoggerCallback`` stops the whole run on it,
  k8s-notes §6.5), and starting values would make the compare view plot what PBT replaced.
- Where runs go: ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI``; otherwise an embedded sqlite store
  ``OUT/mlflow.db`` with artifacts in ``OUT/mlartifacts`` (``mlflow ui --backend-store-uri
  sqlite:///OUT/mlflow.db``). For an ``s3://`` output the embedded store is ``./mlflow.db`` in the working
  directory. MLflow's file store is refused by MLflow 3.x, so there is no ``mlruns/`` option.
- A down or slow server never stops training: every call goes through :class:`~.outbox.Outbox` (short HTTP
  timeouts, few retries, then buffered and retried every ``cooldown_s``); ``finish`` returns what was lost.
- A server that *refuses us* does stop the run, before training: the parent run is created (or reopened)
  synchronously in ``start``, so a wrong password (401) or an experiment the user may not use (403) is one
  :class:`TrackingError` line naming the server, the user and what was refused (``mlflow_auth``). Runs
  authenticate with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which MLflow's client sends
  with every call, trial runs and artifact uploads included (all of them are made by this process: trials
  report to the driver through Ray Tune, never to MLflow themselves).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolfads.errors import TrackingError
from autolfads.storage import is_remote
from autolfads.tracking.mlflow_auth import auth_status, describe_refusal, redact_uri
from autolfads.tracking.outbox import Call, Outbox, is_refusal

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("autolfads.tracking")

DEFAULT_EXPERIMENT = "autolfads"
PARAM_VALUE_MAX = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
TAG_VALUE_MAX = 8000
KEY_MAX = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

TRIAL_ID_TAG = "autolfads.trial_id"
PARENT_TAG = "mlflow.parentRunId"
BEST_TAG = "best"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
MODEL_ARTIFACT = "model"

# Ray Tune bookkeeping in every result: not metrics of the model.
_RESULT_SKIP = {
    "pid",
    "reported_at",  # a wall-clock time, for the benchmark
    "setup_s",  # trial set-up and report round-trip times: for the benchmark, not model metrics
    "report_s",
    "timestamp",
    "done",
    "training_iteration",
    "iterations_since_restore",
    "time_since_restore",
    "time_total_s",
    "trial_id",
    "date",
    "hostname",
    "node_ip",
    "should_checkpoint",
    "experiment_tag",
    "checkpoint_dir_name",
    "epoch",  # the step of every metric already
    "step",  # Lightning's global step: an optimizer counter, not a model metric
    "worker_id",  # a tag of the child run
    "cur_epoch",  # the step again
    "generation",  # a tag of the child run (a staircase curve says nothing more)
    "hp_metric",  # Lightning's TensorBoard hparams placeholder: read by no one here
    "epoch_s",  # the benchmark's timing; the console and metrics show epoch times
    "time_this_iter_s",
}
_STEP_KEYS = ("epoch", "cur_epoch", "training_iteration")
# Short HTTP budget per call (mlflow defaults: 120 s timeout, 7 retries with exponential backoff).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}


# MLflow prints "🏃 View run worker-03 at: URL" for every run it closes: 33 lines for a population of 32.
# The session names the parent run's URL once instead.
QUIET_DEFAULTS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class _DropPickleAdvice(logging.Filter):
    """mlflow.pytorch warns that pickled models run code when loaded; docs/observability.md says it once
    (and why the model is pickled), so every run need not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Saving pytorch model by Pickle")


def _quiet_mlflow_logs() -> None:
    # "Waiting up to 300 seconds for model version to finish creation": the registration's INFO chatter
    logging.getLogger("mlflow.store.model_registry.abstract_store").setLevel(logging.WARNING)
    pytorch = logging.getLogger("mlflow.pytorch")
    if not any(isinstance(f, _DropPickleAdvice) for f in pytorch.filters):
        pytorch.addFilter(_DropPickleAdvice())


def run_url(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """The UI address of a run on an HTTP tracking server (None for an embedded store)."""
    if not tracking_uri.startswith(("http://", "https://")) or not run_id:
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def worker_run_name(worker: Any) -> str:
    """``worker-03``: a member's child-run name from its persistent worker id (sorts right up to 100)."""
    try:
        return f"worker-{int(worker):02d}"
    except (TypeError, ValueError):
        return f"worker-{worker}"


def _clean_key(key: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . / space :``; anything else becomes ``_``."""
    return re.sub(r"[^\w\-./ :]", "_", key)[:KEY_MAX]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr_init": 0.004}, "l": [1, 2]}`` → ``{"model.lr_init": 0.004, "l.0": 1, "l.1": 2}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            if not value:
                out[name] = "[]"
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{index}."))
                else:
                    out[f"{name}.{index}"] = item
        else:
            out[name] = value
    return out


def flatten_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params: dotted keys, string values cut to MLflow's length limit."""
    params = {}
    for key, value in flatten(_plain(config)).items():
        text = "None" if value is None else str(value)
        if len(text) > PARAM_VALUE_MAX:
            text = text[: PARAM_VALUE_MAX - 3] + "..."
        params[_clean_key(key)] = text
    return params


def hp_params(hps: Mapping[str, Any]) -> dict[str, str]:
    """A member's hyperparameters as params, floats to 6 significant digits: ``0.00489566``, not
    ``0.004895661403791054`` (the compare view's table and axes read the strings)."""
    return flatten_params({k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in hps.items()})


def _plain(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """OmegaConf configs become plain containers (interpolations resolved) before flattening."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return config
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return config


def numeric_items(result: Mapping[str, Any], skip: set[str] | None = None) -> dict[str, float]:
    """The numeric leaves of a (nested) result, as floats; booleans, strings and ``config`` are left out."""
    skip = _RESULT_SKIP if skip is None else skip
    out: dict[str, float] = {}
    for key, value in flatten({k: v for k, v in result.items() if k != "config"}, "").items():
        if key in skip or isinstance(value, bool):
            continue
        if isinstance(value, int | float) or _is_numpy_number(value):
            out[_clean_key(key)] = float(value)
    return out


def _is_numpy_number(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0


def step_of(result: Mapping[str, Any]) -> int:
    """The epoch a result belongs to: ``epoch``, else ``cur_epoch``, else Ray's ``training_iteration``."""
    for key in _STEP_KEYS:
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return int(value)
    return 0


def embedded_store_available() -> bool:
    """The sqlite store needs SQLAlchemy and alembic (full ``mlflow``, not only ``mlflow-skinny``)."""
    return find_spec("sqlalchemy") is not None and find_spec("alembic") is not None


def resolve_tracking_uri(cli_uri: str | None, out_dir: str | os.PathLike[str] | None) -> str:
    """``--mlflow-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///OUT/mlflow.db`` (local OUT) or
    ``sqlite:///$PWD/mlflow.db`` (OUT in object storage, which cannot hold a sqlite file)."""
    if cli_uri:
        return cli_uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    base = Path.cwd() if out_dir is None or is_remote(out_dir) else Path(out_dir)
    return f"sqlite:///{base.absolute() / 'mlflow.db'}"


def _embedded_artifacts(tracking_uri: str) -> str | None:
    """Artifacts of an embedded sqlite store live beside it (``mlartifacts/``), not in ``./mlruns``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").absolute().as_uri()


class RunTracker:
    """The parent MLflow run of one ``autolfads run`` and the child runs of its trials.

    Every public method returns quickly and never raises for a tracking failure (see ``Outbox``), except
    the constructor's :class:`TrackingError` for a URI MLflow cannot use at all.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        cooldown_s: float = 30.0,
        max_pending: int = 20_000,
    ) -> None:
        for name, value in {**HTTP_DEFAULTS, **QUIET_DEFAULTS}.items():
            os.environ.setdefault(name, value)
        if tracking_uri.startswith("sqlite:") and not embedded_store_available():
            raise TrackingError(
                f"the MLflow tracking store {tracking_uri} needs the full mlflow package "
                "(pip install mlflow), or pass --mlflow-uri http://SERVER, or --no-mlflow"
            )
        _quiet_mlflow_logs()
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # Creating the embedded store logs schema migrations at INFO: noise on a scientist's console.
            for name in ("mlflow.store.db.utils", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow import MlflowClient

        try:
            self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        except Exception as exc:
            raise TrackingError(
                f"MLflow tracking URI {redact_uri(tracking_uri)} cannot be used: {exc}"
            ) from exc
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment
        self.outbox = Outbox(tracking_uri, cooldown_s=cooldown_s, max_pending=max_pending)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._lock = threading.RLock()
        self._trial_runs: dict[str, str] = {}
        self._trial_params: dict[str, dict[str, str]] = {}
        self._trial_configs: dict[str, dict[str, Any]] = {}
        self._worker_trials: dict[str, str] = {}  # worker id -> its current trial id
        self._series_last: dict[str, int] = {}
        self._reopened = False
        self._trial_tags: dict[tuple[str, str], Any] = {}
        self._trial_steps: dict[str, int] = {}
        self._known_trials: set[str] = set()
        self._started = False  # parent-run calls before ``start`` are ignored
        self._finished = False

    # --- plumbing ---------------------------------------------------------------------------------------

    def _submit(self, kind: str, fn: Any, size: int = 1, droppable: bool = True) -> None:
        self.outbox.submit(Call(kind=kind, fn=fn, size=size, droppable=droppable))

    def _ensure_experiment(self) -> str:
        if self.experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=_embedded_artifacts(self.tracking_uri)
                )
            if found is None or EXPERIMENT_KIND_TAG not in found.tags:
                # MLflow 3's UI opens an experiment of unknown kind on its GenAI (traces) overview; this
                # one is model training, so it opens on the runs table.
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return self.experiment_id

    def _log_batch(
        self, run_key: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = ()
    ) -> None:
        run_id = self._run_id(run_key)
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=list(metrics[start : start + METRICS_PER_BATCH]))
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=list(params[start : start + PARAMS_PER_BATCH]))
        for start in range(0, len(tags), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, tags=list(tags[start : start + PARAMS_PER_BATCH]))

    def _run_id(self, run_key: str) -> str:
        run_id = self.parent_run_id if run_key == "" else self._trial_runs.get(run_key)
        if run_id is None:  # its creation is still queued ahead, so this cannot happen in order
            raise RuntimeError(f"no MLflow run for {run_key or 'the parent'} yet")
        return run_id

    @staticmethod
    def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(key, float(value), now, step) for key, value in values.items()]

    @staticmethod
    def _params(values: Mapping[str, str]) -> list[Any]:
        from mlflow.entities import Param

        return [Param(key, value) for key, value in values.items()]

    @staticmethod
    def _tags(values: Mapping[str, Any]) -> list[Any]:
        from mlflow.entities import RunTag

        return [RunTag(_clean_key(k), str(v)[:TAG_VALUE_MAX]) for k, v in values.items()]

    # --- parent run -------------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str | None:
        """Create the parent run (or reopen ``run_id`` on ``--resume``); its id, or None if MLflow is down.

        Params already on a reopened run are not logged again (MLflow refuses a changed value). Raises
        :class:`TrackingError` when the server refuses the login or the experiment (401/403): that is
        checked now, before any training, by doing this first call directly rather than through the
        outbox (which would drop a refusal and let the run train without its logs).
        """
        from autolfads import __version__

        all_tags = {"autolfads.version": __version__, **(tags or {})}
        params = flatten_params(config or {})
        step = ["read experiment"]  # what ``create`` was doing, for the refusal message

        def create() -> None:
            step[0] = f"read experiment '{self.experiment_name}'"
            experiment_id = self._ensure_experiment()
            existing: dict[str, str] = {}
            if self.parent_run_id is None and run_id is not None:
                step[0] = f"reopen run {run_id} in experiment '{self.experiment_name}'"
                self._reopened = True
                run = self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                self.parent_run_id = run.info.run_id
                existing = dict(run.data.params)
            elif self.parent_run_id is None:
                step[0] = f"create runs in experiment '{self.experiment_name}'"
                run = self.client.create_run(experiment_id, run_name=name, tags=dict(all_tags))
                self.parent_run_id = run.info.run_id
            else:  # a retry after the run was made: only the params it may still lack
                existing = dict(self.client.get_run(self.parent_run_id).data.params)
            step[0] = f"log to runs of experiment '{self.experiment_name}'"
            new = {k: v for k, v in params.items() if k not in existing}
            self._log_batch("", params=self._params(new), tags=self._tags(all_tags))

        self._started = True
        call = Call(kind="parent run", fn=create, droppable=False)
        try:
            create()
        except Exception as exc:  # the tracking backend's own errors, whatever their type
            if auth_status(exc) is not None:
                raise TrackingError(describe_refusal(exc, self.tracking_uri, step[0])) from None
            if is_refusal(exc):  # e.g. --resume naming a run the server no longer has
                self.outbox.record_refusal(call, exc)
            else:
                self.outbox.defer(call, exc)  # down: buffered, retried after the cooldown
        return self.parent_run_id

    def log_params(self, config: Mapping[str, Any]) -> None:
        """More params on the parent run (flattened); keys it already has are left alone."""
        params = flatten_params(config)
        if not self._started or not params:
            return

        def log_new() -> None:
            existing = self.client.get_run(self._run_id("")).data.params
            new = {k: v for k, v in params.items() if k not in existing}
            self._log_batch("", params=self._params(new))

        self._submit("parent params", log_new, size=len(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Metrics on the parent run (e.g. ``best/valid/recon_smth`` per generation)."""
        values = dict(metrics)
        if not self._started or not values:
            return
        self._submit(
            "parent metric values",
            lambda: self._log_batch("", metrics=self._metrics(values, step)),
            size=len(values),
        )

    def log_series_point(self, key: str, value: float, step: int) -> None:
        """One point of a parent-run series whose steps must strictly increase (``best/…``), also across
        ``--resume``: a step at or before the series' last step on the server is not logged."""
        if not self._started:
            return

        def log_point() -> None:
            if key not in self._series_last:
                history = self.client.get_metric_history(self._run_id(""), key) if self._reopened else []
                self._series_last[key] = max((m.step for m in history), default=-1)
            if step > self._series_last[key]:
                self._log_batch("", metrics=self._metrics({key: value}, step))
                self._series_last[key] = step

        self._submit("parent metric values", log_point)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags on the parent run."""
        values = dict(tags)
        if not self._started or not values:
            return
        self._submit("parent tags", lambda: self._log_batch("", tags=self._tags(values)), size=len(values))

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file or directory to the parent run's artifacts (the server's store, e.g. S3)."""
        path = Path(local_path)
        if not self._started:
            return

        def upload() -> None:
            run_id = self._run_id("")
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path)
            else:
                self.client.log_artifact(run_id, str(path), artifact_path)

        self._submit("artifacts", upload)

    def set_best(self, worker: Any, metric_name: str, value: float) -> None:
        """The selected best member: parent tags ``best/worker`` (``worker-03``), ``best/run_id``,
        ``best/metric``, ``best/value``, and ``best=true`` on that member's child run."""
        values = {
            "best/worker": worker_run_name(worker),
            "best/metric": metric_name,
            "best/value": f"{value:.6g}",
        }
        trial_id = self._worker_trials.get(str(worker))
        if not self._started:
            return

        def tag() -> None:
            tags = dict(values)
            child = self._trial_runs.get(trial_id) if trial_id is not None else None
            if child is not None:
                tags["best/run_id"] = child
                self._log_batch(trial_id or "", tags=self._tags({BEST_TAG: "true"}))
            self._log_batch("", tags=self._tags(tags))

        self._submit("parent tags", tag, size=len(values))

    # --- trials -----------------------------------------------------------------------------------------

    def start_trial(
        self,
        trial_id: str,
        config: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
        run_name: str | None = None,
    ) -> None:
        """Open (or, after an exploit, a crash or ``--resume``, find again) the trial's child run.

        Nothing of ``config`` is logged now: PBT changes a member's hyperparameters at every exploit, and
        the ``hp/*`` curves show them. The last config seen becomes the run's params when it ends
        (:meth:`end_trial`), so MLflow's compare view shows the values the member finished with."""
        all_tags = {TRIAL_ID_TAG: trial_id, **(tags or {})}
        self._known_trials.add(trial_id)
        self._trial_configs[trial_id] = dict(config)
        if "worker_id" in all_tags:
            self._worker_trials[str(all_tags["worker_id"])] = trial_id

        def open_run() -> None:
            with self._lock:
                if trial_id not in self._trial_runs:
                    self._find_or_create_trial_run(trial_id, all_tags, run_name)
            self._log_batch(trial_id, tags=self._tags(all_tags))

        self._submit("trial runs", open_run, droppable=False)

    def _find_or_create_trial_run(
        self, trial_id: str, tags: Mapping[str, Any], run_name: str | None = None
    ) -> None:
        parent = self.parent_run_id  # None when used without ``start``: trial runs are then top-level
        experiment_id = self._ensure_experiment()
        query = f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'"
        if parent is not None:
            query += f" and tags.`{PARENT_TAG}` = '{parent}'"
        found = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        if found:
            self._trial_runs[trial_id] = found[0].info.run_id
            self._trial_params[trial_id] = dict(found[0].data.params)
            if found[0].info.status != "RUNNING":
                self.client.update_run(found[0].info.run_id, status="RUNNING")
            return
        run_tags = {k: str(v) for k, v in tags.items()}
        if parent is not None:
            run_tags[PARENT_TAG] = parent
        run = self.client.create_run(experiment_id, run_name=run_name or trial_id, tags=run_tags)
        self._trial_runs[trial_id] = run.info.run_id

    def last_step(self, trial_id: str) -> int:
        """The step of the trial's latest result (0 before any)."""
        return self._trial_steps.get(trial_id, 0)

    def _ensure_trial(self, trial_id: str) -> None:
        """A trial seen first through a result or an event still gets its run."""
        if trial_id not in self._known_trials:
            self.start_trial(trial_id, {})

    def log_trial_result(
        self,
        trial_id: str,
        result: Mapping[str, Any],
        step: int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Every numeric entry of one epoch's result as metrics at ``step`` (default: the result's epoch),
        and ``tags`` (e.g. the current ``generation``) when they changed."""
        self._ensure_trial(trial_id)
        values = numeric_items(result)
        at = step_of(result) if step is None else step
        self._trial_steps[trial_id] = at
        changed = {k: v for k, v in (tags or {}).items() if self._trial_tags.get((trial_id, k)) != v}
        self._trial_tags.update({(trial_id, k): v for k, v in changed.items()})
        self._submit(
            "metric values",
            lambda: self._log_batch(trial_id, metrics=self._metrics(values, at), tags=self._tags(changed)),
            size=len(values),
        )

    def record_exploit(self, trial_id: str, generation: int, cloned_from: str) -> None:
        """A PBT exploit: ``trial_id`` took the checkpoint of ``cloned_from`` (a worker's run name) at the
        end of ``generation``. Tags ``exploit/from`` and ``exploit/generation`` say the last one; the
        new hyperparameters show on the ``hp/*`` curves."""
        self._ensure_trial(trial_id)
        tags = {"exploit/from": cloned_from, "exploit/generation": generation}
        self._submit("exploit events", lambda: self._log_batch(trial_id, tags=self._tags(tags)), size=1)

    def end_trial(self, trial_id: str, status: str = "FINISHED") -> None:
        """Close a trial's run (``FINISHED``, ``FAILED`` or ``KILLED``) with its final hyperparameters."""
        self._ensure_trial(trial_id)
        params = hp_params(self._trial_configs.get(trial_id, {}))

        def close() -> None:
            seen = self._trial_params.setdefault(trial_id, {})
            new = {k: v for k, v in params.items() if k not in seen}  # a resumed trial may have them
            seen.update(new)
            self._log_batch(trial_id, params=self._params(new))
            self.client.set_terminated(self._run_id(trial_id), status=status)

        self._submit("trial status", close)

    def log_trial_table(self, worker: Any, table: Any, name: str) -> None:
        """A DataFrame as CSV artifact ``name`` of worker ``worker``'s child run (skipped if it has none)."""
        trial_id = self._worker_trials.get(str(worker))
        if trial_id is None or not self._started:
            return
        text = table.to_csv(index=False)

        def upload() -> None:
            self.client.log_text(self._run_id(trial_id), text, name)

        self._submit("artifacts", upload)

    def log_model(self, model: Any, register_as: str | None = None, requirements: Sequence[str] = ()) -> None:
        """The best model as an MLflow model (``mlflow.pytorch`` flavor) in the parent run's ``model/``.

        Saved locally with ``mlflow.pytorch.save_model`` and uploaded like any artifact (no fluent
        active-run state, so it works from the outbox's thread); then, with ``register_as``, a new version
        of that registered model. Load it with ``mlflow.pytorch.load_model("runs:/<parent>/model")``.
        ``requirements`` are its pip requirements (given, so MLflow does not start a process to infer them).
        """
        if not self._started:
            return

        def upload() -> None:
            import tempfile

            import mlflow.pytorch

            run_id = self._run_id("")
            with tempfile.TemporaryDirectory(prefix="autolfads-mlflow-model-") as tmp:
                local = Path(tmp) / "model"
                # "pickle": the default "pt2" traces forward() with an example input, and LFADS takes
                # a structured batch (SessionBatch) rather than one tensor
                mlflow.pytorch.save_model(
                    model,
                    str(local),
                    pip_requirements=list(requirements) or None,
                    serialization_format="pickle",
                )
                self.client.log_artifacts(run_id, str(local), MODEL_ARTIFACT)
            if register_as:
                from mlflow.exceptions import MlflowException

                try:
                    self.client.create_registered_model(register_as)
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                version = self.client.create_model_version(
                    register_as, f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id
                )
                log.info("MLflow: registered the best model as %s version %s", register_as, version.version)

        self._submit("model", upload)

    # --- end ----------------------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Try to send everything now (ignores the cooldown); True when nothing is pending."""
        return self.outbox.drain(force=True)

    def finish(self, status: str = "FINISHED") -> list[str]:
        """Close open trial runs and the parent run; return lines about what could not be logged."""
        if self._finished:
            return []
        self._finished = True

        def close_all() -> None:
            for trial_id, run_id in list(self._trial_runs.items()):
                run = self.client.get_run(run_id)
                if run.info.status != "RUNNING":
                    continue
                if status == "FINISHED":  # a killed run's params would pin values a resume still changes
                    params = hp_params(self._trial_configs.get(trial_id, {}))
                    self._log_batch(
                        trial_id,
                        params=self._params({k: v for k, v in params.items() if k not in run.data.params}),
                    )
                self.client.set_terminated(run_id, status=status)
            if self._started:
                self.client.set_terminated(self._run_id(""), status=status)

        self._submit("run status", close_all)
        lost = self.outbox.close()
        for line in lost:
            log.warning("MLflow: %s", line)
        return lost

    @property
    def trial_run_ids(self) -> dict[str, str]:
        """Trial id → MLflow run id, for the runs created so far."""
        return dict(self._trial_runs)


__all__ = [
    "DEFAULT_EXPERIMENT",
    "RunTracker",
    "embedded_store_available",
    "flatten",
    "flatten_params",
    "numeric_items",
    "resolve_tracking_uri",
    "run_url",
    "step_of",
    "worker_run_name",
]
