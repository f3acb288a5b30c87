"""A storage endpoint that answers badly on purpose, on 127.0.0.1, for the operator's progress reads.

It speaks just enough S3 (a GET of ``/BUCKET/KEY``, path-style, as a presigned URL) for ``read_progress``;
the bucket name chooses the misbehaviour:

- ``huge``: 50 MB of JSON-looking bytes, ignoring the Range header, no Content-Length (chunk after chunk);
- ``declared``: the same, announcing ``Content-Length: 52428800``;
- ``slow``: a valid status line and headers (no length), then one byte of body every 0.2 s, forever;
- ``slowheaders``: the status line one byte every 0.1 s, forever;
- ``junk``: 200 with bytes that are not JSON; ``array``: a JSON array;
- ``liar``: a JSON object whose fields have the wrong types or absurd sizes;
- ``good``: a well-formed progress.json.

Every request is counted (``hits``), so a test can also prove that no request was made at all.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = 50 * 1024 * 1024
GOOD = {"generation": 2, "best_metric": 0.5, "trials_running": 1, "trials_total": 2, "best_trial": 1}
LIAR = {
    "generation": "2",
    "epoch": 10**12,
    "best_metric": "0.1",
    "best_trial": {"nested": ["x"] * 100},
    "trials_running": True,
    "trials_total": -4,
    "exploits": 1.5,
    "updated_at": "x" * 100_000,
    "mlflow_run_id": "r1'; DROP TABLE runs; --",
    "surprise": "y" * 100_000,
    # the fields the operator's status and job series read since progress.json grew (issue 12)
    "phase": "pwned",
    "phase_done": -1,
    "phase_total": "all",
    "phase_unit": "z" * 1000,
    "generations_total": 1e300,
    "epochs_done": [1],
    "epochs_total": None,
    "epoch_seconds": float("nan"),
    "checkpoint_bytes": 10**30,
    "elapsed_s": float("inf"),
    "eta_s": -5,
    "started_at": "yesterday",
    "trials_paused": 2**70,
    "trials_errored": "1",
    "trials_done": False,
}


@dataclass
class Hostile:
    url: str
    hits: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def hostile_endpoint(own_process: bool = False) -> Iterator[Hostile]:
    """The endpoint in a thread of this process (``hits`` recorded), or in a process of its own (so that
    a test measuring this process's memory does not count the server's)."""
    if own_process:
        with _in_a_process() as url:
            yield Hostile(url=url)
        return
    with _serving() as state:
        yield state


@contextlib.contextmanager
def _in_a_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.operator.hostile"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def _serving() -> Iterator[Hostile]:
    state = Hostile(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            bucket = self.path.lstrip("/").split("/", 1)[0]
            state.hits.append(bucket)
            with contextlib.suppress(OSError):
                getattr(self, f"_{bucket}", self._missing)()

        def _send(self, body: bytes, length: int | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _good(self) -> None:
            self._send(json.dumps(GOOD).encode())

        def _liar(self) -> None:
            self._send(json.dumps(LIAR).encode())

        def _junk(self) -> None:
            self._send(b"\x80\x81 this is not JSON {{{")

        def _array(self) -> None:
            self._send(b"[1, 2, 3]")

        def _stream(self, declare: bool) -> None:
            self.send_response(200)
            if declare:
                self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b'{"generation": 1, "pad": "' + b"x" * (64 * 1024)
            sent = 0
            while sent < BIG and not state.stop.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)

        def _huge(self) -> None:
            self.close_connection = True
            self._stream(declare=False)

        def _declared(self) -> None:
            self._stream(declare=True)

        def _slow(self) -> None:
            self.close_connection = True  # no length: the body ends when the connection does
            self.send_response(200)
            self.end_headers()
            self._trickle()

        def _slowheaders(self) -> None:
            head = b"HTTP/1.1 200 OK\r\nX-Slow: "
            for i in itertools.count():
                if state.stop.is_set():
                    return
                self.wfile.write(head[i : i + 1] or b"z")
                self.wfile.flush()
                time.sleep(0.1)

        def _trickle(self) -> None:
            while not state.stop.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":  # the separate-process form: print the URL, serve until killed
    with _serving() as served:
        print(served.url, flush=True)
        served.stop.wait()
