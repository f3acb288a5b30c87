"""A trial lost with its Ray node is restarted only once Ray knows the node is gone.

A node that dies without a word (a worker pod killed, a machine lost) stays "alive" to Ray's control store
until it has missed enough heartbeats (tens of seconds with Ray's defaults, more on a busy head). Until
then Ray still places actors on it: seen in ``tests/e2e/test_worker_lost.py``, where a member's new actor
was placed on the killed node and "never ran"; each such failure spends one of the member's
``pbt.max_failures`` restarts.

So when a trial is about to be restarted and a node is still listed alive but its raylet no longer accepts
connections, the driver waits (at most :data:`WAIT_S`) until Ray marks that node dead, then lets the
restart go ahead. A trial that crashed on a healthy node (its raylet answers) is
restarted at once, as before.

A lost node also breaks Ray Tune's actor reuse, which PBT relies on (a paused member resumes in a warm
process). A member's process kept for reuse on the lost node is dead, but Tune learns that only when the
next member is reset into it: that one failure reaches Tune's controller twice (once as the actor's
failure, once as the reset call's), so Tune requeues the member and then, seeing it pending, errors it for
good; and the member stays marked "resetting", so it could never be given a process again. The member
left the population in about half of the worker-lost runs. :func:`install_reused_actor_fix` makes Tune
count that failure once (see its docstring); the rest of Tune's recovery is unchanged.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from ray.exceptions import RayActorError
from ray.tune import Callback

logger = logging.getLogger("autolfads.tune")

WAIT_S = 120.0  # Ray's default detection is 15-45 s; a head under load can take longer
POLL_S = 1.0
CONNECT_TIMEOUT_S = 3.0


def _alive_nodes() -> dict[str, dict[str, Any]]:
    """The nodes the control store lists alive, by node id (``ray.nodes()``)."""
    import ray

    return {node["NodeID"]: node for node in ray.nodes() if node.get("Alive") and node.get("NodeID")}


def raylet_answers(node: dict[str, Any]) -> bool:
    """Whether the node's raylet accepts a TCP connection (a dead pod's address refuses or times out)."""
    address, port = node.get("NodeManagerAddress"), node.get("NodeManagerPort")
    if not address or not port:
        return True  # nothing to probe: take it as healthy
    try:
        with socket.create_connection((address, int(port)), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def wait_for_lost_nodes(wait_s: float = WAIT_S, poll_s: float = POLL_S) -> list[str]:
    """Block until Ray lists as dead every node it still lists alive whose raylet does not answer.

    Returns those nodes' ids (empty: nothing to wait for). Gives up after ``wait_s``; the restart then goes
    ahead as Ray Tune would have done it."""
    lost = [node_id for node_id, node in _alive_nodes().items() if not raylet_answers(node)]
    if not lost:
        return []
    names = ", ".join(node_id[:12] for node_id in lost)
    logger.warning(
        "Ray node %s does not answer: waiting up to %.0f s for Ray to mark it dead before restarting a trial",
        names,
        wait_s,
    )
    start = time.monotonic()
    while time.monotonic() - start < wait_s:
        time.sleep(poll_s)
        if not set(lost) & set(_alive_nodes()):
            logger.warning("Ray node %s marked dead after %.0f s", names, time.monotonic() - start)
            return lost
    logger.warning("Ray node %s still listed alive after %.0f s: restarting the trial anyway", names, wait_s)
    return lost


class NodeLossWait(Callback):
    """Driver side: before a failed trial is restarted, wait out lost nodes (see the module docstring).

    Every listed node is probed, not only the one the trial last reported from: a paused member whose new
    actor was placed on the dead node fails too, and its last result names a healthy node."""

    def __init__(self, wait_s: float = WAIT_S) -> None:
        self.wait_s = wait_s

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        wait_for_lost_nodes(self.wait_s)


def install_reused_actor_fix() -> bool:
    """Make Ray Tune handle a reused trial process that died while it was kept for reuse as one failure.

    A failure of the reset call on such a process (``RayActorError``) is handled by Tune's controller first
    as the actor's failure, which requeues the trial (``PENDING``) and spends one of its ``max_failures``;
    the same event then reaches the call's own failure handler, which errors the now pending trial for
    good. This wraps that handler: a ``RayActorError`` for a trial that is already pending again has been
    handled, so it is ignored; and a failed trial is no longer "resetting" (Tune clears that mark only
    when a reset succeeds, and a trial so marked is never given a process again).

    Patches Ray Tune's private ``TuneController._trial_task_failure`` (Ray is pinned in the lock;
    ``tests/tune/test_node_loss.py`` reproduces the fault with real Ray and fails if the patch stops
    applying or stops working). Returns whether it is installed; where Ray's controller no longer has the
    method, it is not, and a warning says so once. Idempotent."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    original = getattr(TuneController, "_trial_task_failure", None)
    if original is None:
        logger.warning("this Ray Tune has no TuneController._trial_task_failure: the reused-actor fix is off")
        return False
    if getattr(original, "autolfads_reused_actor_fix", False):
        return True

    def _trial_task_failure(self: Any, trial: Any, exception: Exception) -> None:
        resetting = getattr(self, "_resetting_trials", None)
        if isinstance(resetting, set):
            resetting.discard(trial)
        if isinstance(exception, RayActorError) and trial.status == Trial.PENDING:
            logger.debug("trial %s: second report of its lost process ignored (already requeued)", trial)
            return
        original(self, trial, exception)

    _trial_task_failure.autolfads_reused_actor_fix = True  # type: ignore[attr-defined]
    _trial_task_failure.__wrapped__ = original  # type: ignore[attr-defined]
    TuneController._trial_task_failure = _trial_task_failure
    return True


__all__ = ["NodeLossWait", "install_reused_actor_fix", "raylet_answers", "wait_for_lost_nodes"]
