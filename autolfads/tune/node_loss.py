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

This does not cure every loss: a second call still in flight on the dead actor can fail after Ray Tune has
requeued the trial, and Tune then errors the pending trial for good (the open fault in docs/pbt.md, for
which the worker-lost scenario is marked xfail). The wait blocks Tune's event loop for its duration, which
is acceptable only because it happens on a node loss, not on the normal path.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

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


__all__ = ["NodeLossWait", "raylet_answers", "wait_for_lost_nodes"]
