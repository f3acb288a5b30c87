"""Other libraries' messages that do not apply to our users, silenced where they start.

A scientist running ``autolfads run`` should read our lines, not Ray's advice for Ray users:

- Ray Tune's experiment box, ``View detailed results here`` and the TensorBoard hint (there is no
  TensorBoard logger in our runs: ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` and the driver adds Ray's CSV and
  JSON result loggers itself, which Ray's result grid reads; ``RAY_AIR_NEW_OUTPUT=0`` selects Tune's
  older reporter, which ``verbose=0`` really silences);
- on Ctrl-C, ``Resume experiment with: Tuner.restore(...)`` and ``ERROR … Trials did not complete`` (our
  own line says ``--resume``), and ``Failed to fetch metrics … FileNotFoundError`` from Ray's result grid
  for trials that had not written a result yet (also on resume);
- ``Remote file not found: …/result.json`` when a restored trial has not written one yet, and
  ``… may be a performance bottleneck`` timing advice;
- INFO lines of ``ray.init`` (``Started a local Ray instance``), through ``RAY_INIT_QUIET``;
- a local Ray's token-auth warning and the ``~/.ray/auth_token`` it would write: :func:`local_ray_auth`
  gives the local cluster a token in the environment instead (auth stays on, nothing is written).

Each filter drops only the named messages of one Ray logger; everything else (real warnings and errors)
still shows. Environment variables are set with ``setdefault``, so a user who sets them wins.
"""

from __future__ import annotations

import logging
import os
import secrets

# ray.init(**RAY_INIT_QUIET): Ray's own INFO lines (cluster started, connected) are not for our users.
RAY_INIT_QUIET = {"logging_level": logging.WARNING}

_DRIVER_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no TensorBoard logger and hint; we add CSV/JSON ourselves
    "RAY_AIR_NEW_OUTPUT": "0",  # the reporter that verbose=0 silences (the new one prints a config box)
}

# logger name -> {message start: our line instead, or None to drop it}
_REPLACED: dict[str, dict[str, str | None]] = {
    "ray.tune.tune": {
        "Trials did not complete": None,
        "Experiment has been interrupted": None,
        "Training has been interrupted": None,
        "Stop signal received": "stopping: saving the population's state (Ctrl-C again skips that)",
    },
    "ray.tune.analysis.experiment_analysis": {"Failed to fetch metrics": None},
    "ray.tune.logger.logger": {"Remote file not found": None},
    # "The `process_trial_result` operation took 0.6 s, which may be a performance bottleneck": advice for
    # Tune users tuning their reporting; ours reports once per epoch by design.
    "ray.tune.utils.util": {"The `": None, "Processing trial results took": None},
}


class _ReplaceMessages(logging.Filter):
    """Drops the named messages of one logger, or says our line in their place."""

    def __init__(self, replaced: dict[str, str | None]) -> None:
        super().__init__()
        self.replaced = replaced

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().lstrip()
        for start, ours in self.replaced.items():
            if message.startswith(start):
                if ours is not None:
                    logging.getLogger("autolfads.tune").info(ours)
                return False
        return True


def quiet_ray_driver() -> None:
    """Silence Ray Tune's advice for Ray users in this (driver) process; idempotent."""
    for name, value in _DRIVER_ENV.items():
        os.environ.setdefault(name, value)
    for name, replaced in _REPLACED.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _ReplaceMessages) for f in target.filters):
            target.addFilter(_ReplaceMessages(replaced))


def local_ray_auth() -> None:
    """Before starting a *local* Ray: token auth on, with a fresh token in the environment.

    Ray 2.5x enables token auth for a new local cluster when ``RAY_AUTH_MODE`` is unset, warns about it
    and saves a token to ``~/.ray/auth_token`` (a file in the user's home for a cluster that lives as long
    as the run). A token passed in the environment keeps auth on, reaches the processes Ray starts (they
    inherit it), and is neither announced nor written. An explicit ``RAY_AUTH_MODE`` is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    Config.initialize("")  # Ray read its config at import: make this process see token mode too


__all__ = ["RAY_INIT_QUIET", "local_ray_auth", "quiet_ray_driver"]
