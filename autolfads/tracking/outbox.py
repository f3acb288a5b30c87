"""A queue of tracking calls that survives a down or slow server (issue 4: "must not kill training").

Every MLflow call goes through :class:`Outbox`. Calls run in order; when one fails with a transport error
(server down, timeout, 5xx) the outbox warns once, keeps that call and everything after it, and tries
again only after ``cooldown_s``, so a dead server costs one short timeout per cooldown instead of one per
metric. A call the server *refuses* (4xx: bad value, changed parameter) is dropped and counted, because
retrying cannot help. The queue is bounded: past ``max_pending`` the oldest droppable entries go first.
``close()`` makes one last attempt and returns what could not be logged, in words.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from autolfads.tracking.mlflow_auth import auth_status, describe_refusal, redact_text, redact_uri

log = logging.getLogger("autolfads.tracking")


@dataclass
class Call:
    """One pending tracking call: ``kind`` names it in the summary, ``size`` counts logged values."""

    kind: str
    fn: Callable[[], None]
    size: int = 1
    droppable: bool = True  # run creation is not: later calls need its run id


def is_refusal(exc: BaseException) -> bool:
    """True when the server answered and said no (4xx): the call is wrong, not the connection."""
    status = getattr(exc, "get_http_status_code", None)
    if callable(status):
        try:
            code = int(status())
        except (TypeError, ValueError):
            return False
        error_code = str(getattr(exc, "error_code", ""))
        # mlflow reports "cannot connect" as INTERNAL_ERROR (500); a RestException carries the real status.
        return 400 <= code < 500 and error_code not in ("", "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE")
    return False


class Outbox:
    """Ordered, bounded, retrying queue of calls to a tracking backend (thread-safe)."""

    def __init__(self, target: str, cooldown_s: float = 30.0, max_pending: int = 20_000) -> None:
        self.uri = target
        self.target = redact_uri(target)  # what messages show
        self.cooldown_s = cooldown_s
        self.max_pending = max_pending
        self._queue: deque[Call] = deque()
        self._lock = threading.RLock()
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._warned_down = False
        self._refused: Counter[str] = Counter()
        self._warned_auth = False
        self._dropped: Counter[str] = Counter()
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def submit(self, call: Call) -> None:
        """Queue ``call`` and run everything that can run now."""
        with self._lock:
            self._queue.append(call)
            self._trim()
            self.drain()

    def defer(self, call: Call, error: BaseException) -> None:
        """Queue ``call``, which just failed with a transport error when run directly: the backend is down."""
        with self._lock:
            self._mark_down(error)
            self._queue.append(call)
            self._trim()

    def record_refusal(self, call: Call, error: BaseException) -> None:
        """Count ``call``, which the server just refused when run directly, as the queue counts its own."""
        with self._lock:
            self._refused[call.kind] += call.size
            self._warn_refusal(call, error)

    def _trim(self) -> None:
        while len(self._queue) > self.max_pending:
            victim = next((c for c in self._queue if c.droppable), None)
            if victim is None:
                return
            self._queue.remove(victim)
            self._dropped[victim.kind] += victim.size

    def drain(self, force: bool = False) -> bool:
        """Run queued calls in order until one fails; True when the queue is empty afterwards."""
        with self._lock:
            if not force and self._queue and time.monotonic() < self._retry_at:
                return False
            while self._queue:
                call = self._queue[0]
                try:
                    call.fn()
                except Exception as exc:  # any client error: the tracking backend must not stop training
                    if is_refusal(exc):
                        self._queue.popleft()
                        self.record_refusal(call, exc)
                        continue
                    self._mark_down(exc)
                    return False
                self._queue.popleft()
            if self._down_since is not None:
                log.warning(
                    "MLflow at %s answers again after %.0f s; buffered entries were logged",
                    self.target,
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
            return True

    def _warn_refusal(self, call: Call, exc: BaseException) -> None:
        if auth_status(exc) is None:
            log.warning("MLflow at %s refused %s (%s); skipping it", self.target, call.kind, _one_line(exc))
        elif not self._warned_auth:
            self._warned_auth = True
            log.warning(
                "%s; training continues, and further calls it refuses are counted, not shown",
                describe_refusal(exc, self.uri, f"log {call.kind}"),
            )

    def _mark_down(self, exc: BaseException) -> None:
        self.last_error = _one_line(exc)
        self._retry_at = time.monotonic() + self.cooldown_s
        if self._down_since is None:
            self._down_since = time.monotonic()
        if not self._warned_down:
            self._warned_down = True
            log.warning(
                "MLflow at %s is not answering (%s); training continues, tracking is buffered and "
                "retried every %.0f s",
                self.target,
                self.last_error,
                self.cooldown_s,
            )

    def close(self) -> list[str]:
        """One last attempt; then lines describing everything that was not logged (empty when all was)."""
        with self._lock:
            self.drain(force=True)
            lost: Counter[str] = Counter(self._dropped)
            for call in self._queue:
                lost[call.kind] += call.size
            self._queue.clear()
            lines = [
                f"{count} {kind} not logged (MLflow at {self.target} unreachable)"
                for kind, count in sorted(lost.items())
            ]
            if lost and self.last_error:
                lines.append(f"last MLflow error: {self.last_error}")
            lines += [
                f"{count} {kind} refused by MLflow at {self.target}"
                for kind, count in sorted(self._refused.items())
            ]
            return lines


def _one_line(exc: BaseException) -> str:
    text = redact_text(str(exc)).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 300 else first[:297] + "..."
