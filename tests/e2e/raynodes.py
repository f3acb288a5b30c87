"""Ray nodes as the stand-in's "pods": one ``ray start --block`` process group per node.

A pod's Ray container runs ``ray start`` with the flags KubeRay derives from the group's ``rayStartParams``
and the container's resource limits. Here each node is that command in its own session (process group),
with its own HOME, TMPDIR and ``--temp-dir``, and the environment the pod's container would get. Killing
the process group is what a pod's death does to the node: every process it started (raylet, agents,
workers and the trials in them) goes with it. Nothing here touches a Ray process this module did not
start (no ``ray stop``, which stops every Ray on the machine).

Ports: every port a node opens is chosen free on 127.0.0.1 (several "pods" share this machine's network
namespace, which pods on a real cluster do not); the dashboard binds to 127.0.0.1 whatever
``dashboard-host`` says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import free_port

# ``rayStartParams`` the stand-in sets itself (ports, addresses: one machine, many "pods").
OWN_PARAMS = {
    "port",
    "address",
    "dashboard-port",
    "dashboard-host",
    "temp-dir",
    "block",
    "head",
    "node-ip-address",
}
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # small stores: many nodes share this machine's /dev/shm and memory


def ray_bin() -> str:
    """``ray`` of this interpreter's environment (the image's, in the stand-in's model)."""
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


@dataclass
class RayNode:
    """One running ``ray start --block`` (a "pod"); ``name`` is its pod name and Ray node name."""

    name: str
    kind: str  # "head" or "worker"
    group: str
    process: subprocess.Popen[bytes]
    root: Path  # the pod's own directory: HOME, TMPDIR, Ray's temp dir, the log
    gcs_port: int
    dashboard_port: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.root / "ray-start.log"

    def alive(self) -> bool:
        return self.process.poll() is None

    def pids(self) -> list[int]:
        """Every process of this node's session (the node's "pod")."""
        out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=False).stdout
        return [
            int(p)
            for p, s in (line.split() for line in out.splitlines() if line.strip())
            if int(s) == self.process.pid
        ]

    def kill(self) -> None:
        """The pod dies at once (SIGKILL to every process of the node)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._reap_session()

    def terminate(self) -> None:
        """The pod is being deleted: SIGTERM to the node's processes (``kill`` follows after a grace)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, grace_s: float = 5.0) -> None:
        """The pod is deleted: SIGTERM to the node's processes, SIGKILL after ``grace_s``."""
        stop_nodes([self], grace_s)

    def _reap_session(self) -> None:
        # A process that left the group (none should) but kept the session still goes.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop_nodes(nodes: list[RayNode], grace_s: float = 5.0) -> None:
    """Delete several pods at once: SIGTERM to all, then SIGKILL to what is left after ``grace_s``."""
    for node in nodes:
        node.terminate()
    deadline = time.monotonic() + grace_s
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for node in nodes:
        node.kill()


def node_command(
    kind: str,
    params: dict[str, str],
    resources: dict[str, Any],
    root: Path,
    gcs_port: int,
    dashboard_port: int | None,
) -> list[str]:
    """``ray start --block …`` for a node: its ``rayStartParams`` (``--key=value``, as KubeRay passes them),
    the resources KubeRay derives from the container limits unless a param sets them, and the stand-in's
    own ports and directories."""
    cmd = [ray_bin(), "start", "--block", f"--temp-dir={root / 'ray'}", "--disable-usage-stats"]
    cmd += [f"--object-store-memory={OBJECT_STORE_BYTES}", "--node-ip-address=127.0.0.1"]
    for flag in (
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
        "node-manager-port",
        "object-manager-port",
    ):
        cmd.append(f"--{flag}={free_port()}")
    if kind == "head":
        cmd += ["--head", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}"]
        cmd += [
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}",
        ]
    else:
        cmd.append(f"--address=127.0.0.1:{gcs_port}")
    # KubeRay writes `--key=value` into the container's shell command line, so a value is shell-quoted
    # text (the chart's `resources: '{"autolfads_driver": 4}'`): split it as bash would.
    given = " ".join(f"--{k}={v}" for k, v in params.items() if k not in OWN_PARAMS | {"object-store-memory"})
    cmd += shlex.split(given)
    for key in ("num-cpus", "num-gpus", "memory"):
        if key not in params and key in resources:
            cmd.append(f"--{key}={resources[key]}")
    return cmd


def start_node(
    name: str,
    kind: str,
    group: str,
    params: dict[str, str],
    resources: dict[str, Any],
    env: dict[str, str],
    root: Path,
    gcs_port: int,
    dashboard_port: int | None = None,
) -> RayNode:
    """Start a node's ``ray start --block`` in its own session; ``env`` is the container's environment."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("home", "tmp", "ray"):
        (root / sub).mkdir(exist_ok=True)
    # The pod's /tmp is its own (TMPDIR says so to this machine); HOME only where the container sets none.
    tmp = {"TMPDIR": str(root / "tmp"), "RAY_TMPDIR": str(root / "tmp")}
    cmd = node_command(kind, params, resources, root, gcs_port, dashboard_port)
    with (root / "ray-start.log").open("ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd,
            env={"HOME": str(root / "home"), **env, **tmp},
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RayNode(name, kind, group, process, root, gcs_port, dashboard_port, resources)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def dashboard_get(port: int, path: str, token: str | None, timeout: float = 5.0) -> Any:
    """GET a dashboard endpoint (JSON), with the cluster's token when it has one."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def dashboard_post(port: int, path: str, token: str | None, timeout: float = 10.0) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=b"", headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode() or "null")


def alive_nodes(port: int, token: str | None) -> list[dict[str, Any]]:
    """The cluster's alive nodes from the dashboard's state API (``node_id``, ``node_name``, ``is_head_node``,
    ``resources_total``); empty while the dashboard cannot answer."""
    try:
        data = dashboard_get(port, "/api/v0/nodes?limit=100&detail=true", token)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return []
    rows = (((data or {}).get("data") or {}).get("result") or {}).get("result") or []
    return [row for row in rows if row.get("state") == "ALIVE"]


def alive_actors(port: int, token: str | None) -> list[dict[str, Any]]:
    """The cluster's alive actors (``class_name``, ``node_id``, ``pid``) from the dashboard's state API
    (which asks every raylet: slow on a busy machine). Raises what the request raised."""
    data = dashboard_get(port, "/api/v0/actors?limit=1000", token, timeout=20)
    rows = (((data or {}).get("data") or {}).get("result") or {}).get("result") or []
    return [row for row in rows if row.get("state") == "ALIVE"]


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
