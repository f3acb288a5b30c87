"""The wait before a trial lost with its node restarts (whole scenario: tests/e2e/test_worker_lost.py)."""

from __future__ import annotations

import socket
import time

import pytest

from autolfads.tune import node_loss


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connecting is refused


def test_a_raylet_port_that_refuses_is_a_lost_node_and_a_listening_one_is_not() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = {"NodeManagerAddress": "127.0.0.1", "NodeManagerPort": server.getsockname()[1]}
        assert node_loss.raylet_answers(listening)
    assert not node_loss.raylet_answers(
        {"NodeManagerAddress": "127.0.0.1", "NodeManagerPort": _closed_port()}
    )


def test_on_a_healthy_local_ray_a_restart_does_not_wait(ray_session: None) -> None:
    start = time.monotonic()
    assert node_loss.wait_for_lost_nodes(wait_s=30) == []
    assert time.monotonic() - start < 10


def test_waits_until_the_silent_node_is_listed_dead(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    dead = {
        "NodeID": "ab" * 28,
        "Alive": True,
        "NodeManagerAddress": "127.0.0.1",
        "NodeManagerPort": _closed_port(),
    }
    listings = iter([[dead], [dead], [dead], [{**dead, "Alive": False}]])
    monkeypatch.setattr("ray.nodes", lambda: next(listings))
    assert node_loss.wait_for_lost_nodes(wait_s=30, poll_s=0.01) == [dead["NodeID"]]
    assert "does not answer" in caplog.text and "marked dead" in caplog.text
