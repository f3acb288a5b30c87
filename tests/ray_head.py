"""A real Ray cluster for tests: ``ray start --head --block`` in its own process group, on free ports.

Like a lab's Ray head pod on the cluster, several drivers (``autolfads run --address …``) can share it.
Its temp dir (short: Ray's socket paths are limited) and HOME are the test's own (nothing under
``/tmp/ray`` or ``~/.ray``), every port is one the OS just handed out, and stopping it signals only its
own process group: the head and every process it started (GCS, raylet, workers), never another
engineer's Ray.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_PORT_FLAGS = (
    "--port",
    "--object-manager-port",
    "--node-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--min-worker-port",
)
_WORKER_PORTS = 60


@dataclass(frozen=True)
class RayHead:
    address: str  # host:port of the GCS, for ``ray.init(address=…)`` / ``--address``
    env: dict[str, str]  # what a driver process needs (HOME, auth mode)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_range(width: int) -> int:
    """The start of ``width`` consecutive ports that are free right now (for Ray's worker ports)."""
    for _ in range(50):
        start = _free_ports(1)[0]
        if start + width >= 65535:
            continue
        try:
            held = []
            for port in range(start, start + width):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {width} consecutive free ports found")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the raylet's children may outlive the head by a moment
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def ray_head(workdir: Path, num_cpus: int = 2, timeout_s: float = 90) -> Iterator[RayHead]:
    """A Ray head on 127.0.0.1 with ``num_cpus`` CPUs; stopped (its process group only) on exit."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))},
        "HOME": str(home),
        "RAY_AUTH_MODE": "disabled",  # a test cluster on loopback; token auth is checked elsewhere
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    ports = _free_ports(len(_PORT_FLAGS) - 1)
    first_worker = _free_range(_WORKER_PORTS)
    flags = [f"{flag}={port}" for flag, port in zip(_PORT_FLAGS, [*ports, first_worker], strict=True)]
    # Ray's sockets live under --temp-dir, and a socket path may not exceed 107 bytes: a short dir.
    temp = Path(tempfile.mkdtemp(prefix="rayh-", dir="/tmp"))
    log = workdir / "ray-head.log"
    ray = str(Path(sys.executable).with_name("ray"))
    command = [
        ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
        f"--max-worker-port={first_worker + _WORKER_PORTS - 1}", *flags,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    address = f"127.0.0.1:{ports[0]}"
    try:
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed ({proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield RayHead(address=address, env=env)
    finally:
        _stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)
