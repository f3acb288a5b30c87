"""An exclusive lease on an output location, held for a whole ``autolfads train``/``run``.

Two runs writing into one OUT would mix their trials and outputs; the second one is refused in one line
naming the holder. ``OUT/.autolfads-lease.json`` holds the holder's description (JSON: ``holder``,
``command``, ``pid``, ``host``, ``user``, ``started_at``, ``token``, and for object storage ``ttl_s`` and
``renewed_at``).

- **Local OUT**: an exclusive ``flock`` on that file. The kernel drops it when the holder exits, however
  it exits (Ctrl-C, ``kill -9``, a crash), so a stale lock never blocks the next run. On release the file
  is unlinked while still locked; a contender that opened the old file re-checks the inode after locking.
- **``s3://`` OUT**: a conditional write. The lease object is created with ``If-None-Match: *`` (only
  one creator succeeds; AWS S3, MinIO and moto honour it), renewed every ``ttl/3`` with
  ``If-Match: <its ETag>`` by a background thread, and deleted on release. A holder that dies stops
  renewing: after ``ttl_s`` (by the server's clock: ``Last-Modified`` against the ``Date`` of a HEAD) the
  next run takes the lease over with ``If-Match`` on the stale ETag (one taker wins). A run asked to wait
  (``wait_for_stale``: ``--resume``, which is how a KubeRay retry starts after its driver died) waits for a
  lease that is not renewed to expire instead of being refused at once, and is refused as soon as the lease
  is renewed (its holder is alive). ``ttl_s`` defaults to ``$AUTOLFADS_LEASE_TTL_S`` or 120 s. A holder that
  finds its lease taken (it could not renew for longer than the TTL) interrupts its own run. A store that
  ignores conditional writes is detected at acquisition (a second create must be refused) and the run
  goes on with a warning that it cannot be protected from a concurrent one.
"""

from __future__ import annotations

import _thread
import contextlib
import email.utils
import fcntl
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from autolfads.errors import StorageError
from autolfads.rundir.layout import LEASE_NAME
from autolfads.storage import describe_error, endpoint_url, filesystem, is_remote, join_uri

log = logging.getLogger("autolfads.rundir")

DEFAULT_TTL_S = 120.0
TTL_ENV = "AUTOLFADS_LEASE_TTL_S"
MIN_TTL_S = 6.0  # renewals every ttl/3: shorter would be renewal traffic, not protection


class LeaseHeld(StorageError):
    """Another run holds OUT's lease."""


class Lease:
    """A held lease; ``release()`` (or leaving the ``with`` block) gives it up."""

    def __init__(self, out: str, info: dict[str, Any]) -> None:
        self.out = out
        self.info = info
        self.lost = False

    @property
    def token(self) -> str:
        return str(self.info["token"])

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def acquire_lease(
    out: str, command: str, ttl_s: float | None = None, wait_for_stale: bool = False
) -> Lease:
    """Take OUT's lease for ``command`` or raise :class:`LeaseHeld`, naming the holder.

    ``wait_for_stale``: an object-storage lease that is not being renewed is waited for until it expires
    (at most its TTL) rather than refused at once (module docstring)."""
    info = _holder_info(command)
    if is_remote(out):
        return ObjectLease.acquire(out, info, default_ttl() if ttl_s is None else ttl_s, wait_for_stale)
    return FileLease.acquire(out, info)


def default_ttl() -> float:
    """``$AUTOLFADS_LEASE_TTL_S`` (seconds, at least 6), else 120."""
    value = os.environ.get(TTL_ENV)
    if not value:
        return DEFAULT_TTL_S
    try:
        ttl = float(value)
    except ValueError:
        raise StorageError(f"{TTL_ENV}={value!r}: expected a number of seconds") from None
    if not ttl >= MIN_TTL_S:
        raise StorageError(f"{TTL_ENV}={value!r}: expected at least {MIN_TTL_S:g} seconds")
    return ttl


def describe_holder(info: dict[str, Any] | None) -> str:
    """``autolfads run (pid 123 on host, user ana) since 2026-05-01T10:00:00Z``."""
    if not info:
        return "another autolfads process (it has not written its details yet)"
    who = f"{info.get('command', 'autolfads')} (pid {info.get('pid', '?')} on {info.get('host', '?')}"
    who += f", user {info['user']})" if info.get("user") else ")"
    return f"{who} since {info.get('started_at', '?')}"


def _holder_info(command: str) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {
        "holder": f"{command} (pid {os.getpid()} on {socket.gethostname()})",
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": user,
        "started_at": _now(),
        "token": uuid.uuid4().hex,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refusal(out: str, info: dict[str, Any] | None, extra: str = "") -> LeaseHeld:
    return LeaseHeld(
        f"--out {out} is in use by {describe_holder(info)}; wait for that run to end or choose another "
        f"--out{extra}"
    )


# ------------------------------------------------------------------------------------------ local
class FileLease(Lease):
    """``flock`` on ``OUT/.autolfads-lease.json`` (see the module docstring)."""

    def __init__(self, out: str, info: dict[str, Any], path: Path, fd: int) -> None:
        super().__init__(out, info)
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, out: str, info: dict[str, Any]) -> FileLease:
        directory = Path(filesystem(out)[1])
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot write to {out}: {exc.strerror or exc}") from exc
        path = directory / LEASE_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_json_fd(fd)
                os.close(fd)
                raise _refusal(out, holder) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder unlinked it between our open and our lock: start again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info, indent=1).encode())
            os.fsync(fd)
            return cls(out, info, path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: nobody can lock this inode and think it is current
        os.close(self._fd)
        self._fd = None


def _read_json_fd(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode()
        value = json.loads(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------------ s3
def _error_code(exc: BaseException) -> str | None:
    """The S3 error code (``PreconditionFailed``, ``NoSuchKey``, ``404``, ...) inside s3fs's translation."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            if code:
                return str(code)
        current = current.__cause__ or current.__context__
        seen += 1
    return None


class ObjectLease(Lease):
    """A lease object written with conditional PUTs, renewed in the background (module docstring)."""

    def __init__(
        self, out: str, info: dict[str, Any], etag: str, fs: Any, bucket: str, key: str, conditional: bool
    ) -> None:
        super().__init__(out, info)
        self.etag = etag
        self.conditional = conditional
        self._fs = fs
        self._bucket, self._key = bucket, key
        self._stop = threading.Event()
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="autolfads-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(
        cls, out: str, info: dict[str, Any], ttl_s: float, wait_for_stale: bool = False
    ) -> ObjectLease:
        info = {**info, "ttl_s": ttl_s, "renewed_at": info["started_at"]}
        uri = join_uri(out, LEASE_NAME)
        fs, path = filesystem(uri)
        bucket, _, key = path.partition("/")
        body = json.dumps(info, indent=1).encode()

        def put(**condition: str) -> str:
            response = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **condition)
            return str(response.get("ETag", ""))

        conditional = True
        try:
            etag = put(IfNoneMatch="*")
        except Exception as exc:
            code = _error_code(exc)
            if code == "NotImplemented":  # a store without conditional writes: the best it allows
                etag, conditional = cls._unconditional(out, uri, fs, path, put), False
            elif code in ("PreconditionFailed", "ConditionalRequestConflict"):
                etag = cls._take_over_if_expired(out, uri, fs, bucket, key, put, wait_for_stale)
            else:
                raise describe_error(uri, exc, "take the lease") from exc
        else:
            conditional = cls._check_conditions_honoured(uri, put)
        return cls(out, info, etag, fs, bucket, key, conditional)

    @staticmethod
    def _unconditional(out: str, uri: str, fs: Any, path: str, put: Any) -> str:
        """Look, then write: two runs starting within the same second can both get through."""
        if fs.exists(path):
            try:
                holder = json.loads(fs.cat_file(path))
            except Exception:
                holder = None
            raise _refusal(out, holder if isinstance(holder, dict) else None, " (or remove its lease object)")
        log.warning(
            "the object store%s does not support conditional writes: %s is protected only against runs "
            "that start while this one holds it",
            f" at {endpoint_url()}" if endpoint_url() else "",
            out,
        )
        return str(put())

    @staticmethod
    def _check_conditions_honoured(uri: str, put: Any) -> bool:
        """A second create of the same key must be refused; a store that accepts it ignores conditions."""
        try:
            put(IfNoneMatch="*")
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return True
            raise describe_error(uri, exc, "take the lease") from exc
        log.warning(
            "the object store%s ignores conditional writes (If-None-Match): two runs into %s cannot be "
            "kept apart; make sure only one runs",
            f" at {endpoint_url()}" if endpoint_url() else "",
            uri.rsplit("/", 1)[0],
        )
        return False

    @staticmethod
    def _take_over_if_expired(
        out: str, uri: str, fs: Any, bucket: str, key: str, put: Any, wait: bool = False
    ) -> str:
        try:
            head = fs.call_s3("head_object", Bucket=bucket, Key=key)
            holder = json.loads(fs.cat_file(f"{bucket}/{key}"))
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey") or isinstance(exc, FileNotFoundError):
                try:  # released between our create and our look: try once more
                    return str(put(IfNoneMatch="*"))
                except Exception:
                    raise _refusal(out, None) from None
            raise describe_error(uri, exc, "read the lease") from exc
        holder = holder if isinstance(holder, dict) else {}
        ttl = float(holder.get("ttl_s", DEFAULT_TTL_S))
        age = _age(head)
        if age <= ttl and wait:
            head, age = ObjectLease._wait_until_stale(out, uri, fs, bucket, key, head, holder, ttl, age)
        if age <= ttl:
            left = int(ttl - age) + 1
            raise _refusal(out, holder, f" (its lease expires {left} s after the holder stops renewing it)")
        try:
            etag = str(put(IfMatch=head["ETag"]))
        except Exception:
            raise _refusal(out, None) from None  # another run took it over first
        log.warning(
            "took over the lease of %s from %s (not renewed for %.0f s)", out, describe_holder(holder), age
        )
        return etag

    @staticmethod
    def _wait_until_stale(
        out: str, uri: str, fs: Any, bucket: str, key: str, head: dict[str, Any], holder: dict[str, Any],
        ttl: float, age: float,
    ) -> tuple[dict[str, Any], float]:
        """Watch a lease until it expires; a renewal (a new ETag) means its holder runs: refuse at once."""
        log.warning(
            "--out %s is held by %s, last renewed %.0f s ago; waiting up to %.0f s for the lease to expire "
            "(an earlier attempt that stopped without releasing it)",
            out, describe_holder(holder), age, ttl - age + 1,
        )  # fmt: skip
        deadline = time.monotonic() + ttl - age + 10  # one missed renewal's worth of clock slack
        while age <= ttl and time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.5, ttl - age + 0.5)))
            try:
                now = fs.call_s3("head_object", Bucket=bucket, Key=key)
            except Exception as exc:
                if _error_code(exc) in ("404", "NoSuchKey") or isinstance(exc, FileNotFoundError):
                    return head, ttl + 1  # released meanwhile: the conditional take-over below decides
                raise describe_error(uri, exc, "read the lease") from exc
            if now.get("ETag") != head.get("ETag"):
                raise _refusal(out, holder, " (it renewed its lease while this run waited: it is running)")
            age = _age(now)
        return head, age

    def _renew_loop(self) -> None:
        ttl = float(self.info["ttl_s"])
        while not self._stop.wait(ttl / 3):
            self.info["renewed_at"] = _now()
            body = json.dumps(self.info, indent=1).encode()
            condition = {"IfMatch": self.etag} if self.conditional else {}
            try:
                response = self._fs.call_s3(
                    "put_object", Bucket=self._bucket, Key=self._key, Body=body, **condition
                )
            except Exception as exc:
                code = _error_code(exc)
                if (
                    code in ("PreconditionFailed", "NoSuchKey", "404")
                    or time.monotonic() - self._renewed > ttl
                ):
                    self._lose(f"{code or type(exc).__name__}")
                    return
                continue  # a network hiccup: try again at the next tick, while the lease is still valid
            self.etag = str(response.get("ETag", self.etag))
            self._renewed = time.monotonic()

    def _lose(self, why: str) -> None:
        self.lost = True
        log.error(
            "lost the lease on %s (%s): another run may be writing there; stopping this one", self.out, why
        )
        _thread.interrupt_main()

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        if self.lost:
            return
        condition = {"IfMatch": self.etag} if self.conditional else {}
        with contextlib.suppress(Exception):
            self._fs.call_s3("delete_object", Bucket=self._bucket, Key=self._key, **condition)


def _age(head: dict[str, Any]) -> float:
    """Seconds since the lease object was last written, by the server's clock."""
    server_now = _server_time(head)
    modified = head.get("LastModified")
    return (server_now - modified).total_seconds() if server_now and modified else 0.0


def _server_time(response: dict[str, Any]) -> datetime | None:
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    date = headers.get("date")
    if not date:
        return datetime.now(UTC)
    try:
        return email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return datetime.now(UTC)


__all__ = [
    "DEFAULT_TTL_S",
    "FileLease",
    "Lease",
    "LeaseHeld",
    "ObjectLease",
    "acquire_lease",
    "default_ttl",
    "describe_holder",
]
