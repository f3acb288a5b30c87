"""Where data and outputs live: a local path or an ``s3://bucket/key`` URI (DESIGN.md §3).

Object storage goes through fsspec/s3fs. Credentials come from the standard AWS chain (environment,
profiles, instance roles); ``AWS_ENDPOINT_URL`` points everything at MinIO or another S3-compatible
server. Three rules shape this module:

- **Fail before training, in one line.** ``check_readable``/``check_writable`` turn a missing bucket,
  refused credentials or an unreachable endpoint into one :class:`~autolfads.errors.StorageError` naming
  the URI and the endpoint, so a run never dies an hour in on its first upload.
- **Atomic writes.** ``atomic_upload`` writes to a temporary key next to the target and only then copies it
  to the final key, so a crash leaves no complete-looking ``autolfads.zip``, only a ``.tmp-*`` object.
- **h5py reads local files.** ``download_to_local`` stages an ``s3://`` data file in a local cache.

``ray_storage`` gives Ray Tune a ``storage_path``/``storage_filesystem`` pair that honours the endpoint
override (pyarrow's S3 filesystem with ``endpoint_override``; k8s-notes §6.3).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from autolfads.errors import StorageError
from autolfads.locations import REMOTE_SCHEMES, check_object_key, check_uri, local_path_under

if TYPE_CHECKING:
    import fsspec
    import pyarrow.fs

TMP_PREFIX = ".tmp-"
# Short timeouts and few retries: an unreachable endpoint must fail in seconds, not minutes.
_BOTO_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}}


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for ``s3://…``/``s3a://…`` URIs, False for local paths (with or without ``file://``)."""
    return urlparse(str(uri)).scheme.lower() in REMOTE_SCHEMES


def join_uri(base: str | os.PathLike[str], *parts: str) -> str:
    """``join_uri("s3://b/run", "a.zip") == "s3://b/run/a.zip"``; local paths join as paths.

    Each part is a relative name: ``..``, ``.`` or an absolute part is refused (one StorageError line)."""
    for part in parts:
        check_object_key(part.strip("/") if is_remote(base) else part, f"{base}: the name '{part}'")
    if not is_remote(base):
        return str(Path(_local_path(base), *parts))
    return "/".join([check_uri(str(base), "location").rstrip("/"), *(p.strip("/") for p in parts)])


def endpoint_url() -> str | None:
    """The S3 endpoint override (``AWS_ENDPOINT_URL``, or the older ``S3_ENDPOINT_URL``), if any."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL") or None


def local_path(uri: str | os.PathLike[str]) -> Path:
    """The local path a ``file://`` URI or a plain path names (a StorageError for another scheme)."""
    return _local_path(uri)


def _local_path(uri: str | os.PathLike[str]) -> Path:
    text = check_uri(str(uri), "location")  # one scheme list (autolfads.locations), checked at every use
    if text.startswith("file://"):
        text = urlparse(text).path
    return Path(text).expanduser()


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(check_uri(uri, "location"))
    return parsed.netloc, parsed.path[1:] if parsed.path.startswith("/") else parsed.path


def filesystem(uri: str | os.PathLike[str]) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem for ``uri`` and the path inside it.

    The S3 filesystem is built fresh each time (no instance or listing cache), so a change of credentials
    or endpoint in the environment is seen at once and ``exists`` never answers from a stale listing.
    """
    import fsspec

    if not is_remote(uri):
        return fsspec.filesystem("file"), str(_local_path(uri).absolute())
    import s3fs

    client_kwargs: dict[str, Any] = {}
    if endpoint := endpoint_url():
        client_kwargs["endpoint_url"] = endpoint
    if region := os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"):
        client_kwargs["region_name"] = region
    fs = s3fs.S3FileSystem(
        client_kwargs=client_kwargs,
        config_kwargs=dict(_BOTO_CONFIG),
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    bucket, key = _split_s3(str(uri))
    return fs, f"{bucket}/{key}" if key else bucket


def describe_error(uri: str, exc: BaseException, action: str) -> StorageError:
    """One line that says which URI, which endpoint, and what is wrong in words a user can act on."""
    where = f" at endpoint {endpoint_url()}" if is_remote(uri) and endpoint_url() else ""
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    bucket = _split_s3(uri)[0] if is_remote(uri) else ""
    if any(s in lowered for s in ("nosuchbucket", "bucket does not exist", "specified bucket does not")):
        reason = f"bucket '{bucket}' does not exist"
    elif any(
        s in lowered
        for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "forbidden", "403")
    ) or isinstance(exc, PermissionError):
        reason = "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) for it"
    elif any(
        s in lowered
        for s in ("could not connect", "connect timeout", "endpointconnectionerror", "connection refused")
    ) or isinstance(exc, ConnectionError | TimeoutError):
        reason = "the storage endpoint cannot be reached (check AWS_ENDPOINT_URL and the network)"
    elif isinstance(exc, FileNotFoundError) or "nosuchkey" in lowered or "not found" in lowered:
        reason = "no such file or object"
    elif "nocredentials" in lowered or "unable to locate credentials" in lowered:
        reason = "no credentials found: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    else:
        reason = text.splitlines()[0] if text else type(exc).__name__
    return StorageError(f"cannot {action} {uri}{where}: {reason}")


@contextlib.contextmanager
def _storage_errors(uri: str, action: str) -> Iterator[None]:
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # s3fs/botocore raise many types; all become one clear line
        raise describe_error(uri, exc, action) from exc


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a file or object (or a directory/prefix) exists at ``uri``."""
    fs, path = filesystem(uri)
    with _storage_errors(str(uri), "check"):
        return bool(fs.exists(path))


@contextlib.contextmanager
def open_uri(uri: str | os.PathLike[str], mode: str = "rb") -> Iterator[IO[Any]]:
    """Open a local file or an object for reading or (non-atomic) writing."""
    fs, path = filesystem(uri)
    action = "read" if "r" in mode else "write"
    with _storage_errors(str(uri), action):
        if "w" in mode and not is_remote(uri):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        handle = fs.open(path, mode)
    with handle:
        yield handle


def copy_local_to_uri(local: str | os.PathLike[str], uri: str | os.PathLike[str]) -> None:
    """Copy a local file or directory tree to ``uri`` (files one by one through ``atomic_upload``)."""
    source = Path(local)
    if source.is_dir():
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            atomic_upload(file, join_uri(uri, *file.relative_to(source).parts))
    else:
        atomic_upload(source, uri)


def _tmp_sibling(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    parent = uri.rstrip("/")[: -len(name)]
    return f"{parent}{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}"


def atomic_upload(local: str | os.PathLike[str], uri: str | os.PathLike[str]) -> None:
    """Put a local file at ``uri`` so that a reader sees either the old object or the whole new one.

    S3 has no rename: the bytes go to ``…/.tmp-<id>-<name>`` first, then a server-side copy makes the
    final key (one request that either happens completely or not at all), then the temporary key is
    deleted. Locally, the same with ``os.replace`` in the target directory.
    """
    source = Path(local)
    target = str(uri)
    if not source.is_file():
        raise StorageError(f"cannot upload {source} to {target}: no such local file")
    if not is_remote(target):
        final = _local_path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return
    fs, path = filesystem(target)
    tmp_path = _tmp_sibling(path)
    with _storage_errors(target, "write"):
        try:
            fs.put_file(str(source), tmp_path)
            fs.copy(tmp_path, path)
        finally:
            with contextlib.suppress(Exception):
                fs.rm_file(tmp_path)


def atomic_write_bytes(data: bytes, uri: str | os.PathLike[str]) -> None:
    """Write ``data`` to a local path or an object atomically (see ``atomic_upload``)."""
    with tempfile.TemporaryDirectory(prefix="autolfads-") as tmp:
        staged = Path(tmp) / "data"
        staged.write_bytes(data)
        atomic_upload(staged, uri)


def cache_dir() -> Path:
    """Where ``s3://`` data files are staged: ``$AUTOLFADS_CACHE_DIR``, else ``~/.cache/autolfads``."""
    base = os.environ.get("AUTOLFADS_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "autolfads"


def download_to_local(uri: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """A local path holding the file at ``uri`` (the path itself when ``uri`` is local).

    Objects are cached by bucket/key and re-downloaded only when their ETag or size changed; the download
    goes to a temporary file renamed into place, so two trials staging the same file never see half of it.
    """
    if not is_remote(uri):
        path = _local_path(uri)
        if not path.exists():
            raise StorageError(f"cannot read {uri}: no such file")
        return path
    fs, path = filesystem(uri)
    with _storage_errors(str(uri), "read"):
        info = fs.info(path)
        if info.get("type") == "directory":
            raise StorageError(f"cannot read {uri}: it is a prefix (directory), not an object")
        stamp = f"{info.get('ETag', '')}:{info.get('size', '')}"
        bucket, key = _split_s3(str(uri))
        endpoint_tag = hashlib.sha1((endpoint_url() or "aws").encode()).hexdigest()[:8]
        root = Path(cache or cache_dir()) / "s3" / endpoint_tag
        local = local_path_under(root, f"{bucket}/{key}", f"cannot stage {uri} in the cache")
        marker = local.with_name(local.name + ".etag")
        if local.exists() and marker.exists() and marker.read_text() == stamp:
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{local.name}")
        try:
            fs.get_file(path, str(tmp))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        marker.write_text(stamp)
    return local


def check_readable(uri: str | os.PathLike[str]) -> None:
    """Raise one clear StorageError unless ``uri`` names an existing, readable file or object."""
    text = str(uri)
    if not is_remote(text):
        path = _local_path(text)
        if not path.exists():
            raise StorageError(f"cannot read {text}: no such file or directory")
        if not os.access(path, os.R_OK):
            raise StorageError(f"cannot read {text}: permission denied")
        return
    fs, path = filesystem(text)
    with _storage_errors(text, "read"):
        if not fs.exists(path):
            bucket = _split_s3(text)[0]
            if not fs.exists(bucket):
                raise StorageError(
                    f"cannot read {text}{_where()}: bucket '{bucket}' does not exist or is not visible"
                )
            raise StorageError(f"cannot read {text}{_where()}: no such object")
        with fs.open(path, "rb") as handle:
            handle.read(1)


def _where() -> str:
    return f" at endpoint {endpoint_url()}" if endpoint_url() else ""


def check_writable(uri: str | os.PathLike[str]) -> None:
    """Raise one clear StorageError unless a file can be created under the directory/prefix ``uri``.

    Writes and deletes a small probe object, because listing can succeed where writing is denied.
    """
    text = str(uri)
    if not is_remote(text):
        path = _local_path(text)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=TMP_PREFIX):
                pass
        except OSError as exc:
            raise StorageError(f"cannot write to {text}: {exc.strerror or exc}") from exc
        return
    fs, path = filesystem(text)
    probe = f"{path.rstrip('/')}/{TMP_PREFIX}write-check-{uuid.uuid4().hex[:12]}"
    with _storage_errors(text, "write to"):
        fs.pipe_file(probe, b"autolfads write check\n")
        fs.rm_file(probe)


def check_run_locations(
    data: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], resume: bool
) -> None:
    """Before a run starts: every DATA readable, OUT writable, and an ``s3://`` OUT that already holds a
    run refused unless resuming (a local OUT is checked by the driver, which writes there). One line each;
    a scheme outside the list of ``autolfads.locations`` (or a ``..`` in a key) is named first."""
    for uri in data:
        check_uri(str(uri), "DATA")
    check_uri(str(out), "--out")
    for uri in data:
        check_readable(uri)
    check_writable(out)
    if is_remote(out):
        refuse_existing_run(out, resume)


def refuse_existing_run(out: str | os.PathLike[str], resume: bool) -> None:
    """An OUT (local or ``s3://``) that already holds a run is refused unless resuming: one line."""
    if not resume and any(exists(join_uri(out, name)) for name in ("trials", "autolfads.zip")):
        raise StorageError(
            f"--out {out} already holds a run; pass --resume to continue it or choose another --out"
        )


def ray_storage(uri: str | os.PathLike[str]) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for ``ray.tune.RunConfig``.

    Local: the absolute path and None. ``s3://``: ``bucket/prefix`` and a pyarrow ``S3FileSystem`` with the
    endpoint override (pyarrow needs ``scheme='http'`` for a plain-HTTP MinIO). Credentials are not put in
    the filesystem object (it is pickled to every worker): each node reads them from its own environment.
    """
    text = str(uri)
    if not is_remote(text):
        return str(_local_path(text).absolute()), None
    from pyarrow import fs as pafs

    kwargs: dict[str, Any] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    }
    if endpoint := endpoint_url():
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme or "https"
    bucket, key = _split_s3(text)
    return f"{bucket}/{key}".rstrip("/"), pafs.S3FileSystem(**kwargs)


class RunMirror:
    """A local working copy of a run directory that lives in object storage (``--out s3://…``).

    The driver writes its files (``progress.json``, ``config.yaml``, PBT state, at the end the zip, the
    outputs and plots) to ``local_dir`` as usual; ``push`` uploads what changed since the last push,
    each file atomically; ``pull`` brings a previous attempt's files back before ``--resume``. Trial
    checkpoints do not pass through here: Ray Tune writes them to ``OUT/trials`` directly
    (``ray_storage``). Called with a progress record (a progress listener), it pushes at most every
    ``min_interval_s`` and never raises: a storage hiccup mid-run costs a warning, not the run.
    """

    SKIP_DIRS = ("trials",)
    # The resume point goes last in every push: whenever the bucket holds a generation's resume state, it
    # also holds every result recorded before it (a driver killed mid-push loses no fitlog rows).
    LAST = ("stopper_state.json", "pbt_state.json")

    def __init__(
        self,
        uri: str,
        local_dir: str | os.PathLike[str] | None = None,
        min_interval_s: float = 10.0,
    ) -> None:
        if not is_remote(uri):
            raise StorageError(f"RunMirror needs an object-storage URI, got {uri}")
        self.uri = uri.rstrip("/")
        digest = hashlib.sha1(f"{endpoint_url() or 'aws'}|{self.uri}".encode()).hexdigest()[:12]
        self.local_dir = Path(local_dir) if local_dir else cache_dir() / "runs" / digest
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.min_interval_s = min_interval_s
        self._pushed: dict[str, tuple[int, int]] = {}
        self._last_push = 0.0
        self._warned = False

    def _files(self) -> list[Path]:
        files = []
        for path in sorted(self.local_dir.rglob("*")):
            rel = path.relative_to(self.local_dir)
            if not path.is_file() or rel.parts[0] in self.SKIP_DIRS:
                continue
            if any(part.startswith((".", TMP_PREFIX)) for part in rel.parts):
                continue  # temporaries and hidden working files
            files.append(path)
        return sorted(files, key=lambda p: (self.LAST.index(p.name) + 1 if p.name in self.LAST else 0, p))

    def push(self, force: bool = False) -> list[str]:
        """Upload new or changed files (every file with ``force``); returns the URIs written."""
        import time

        if not force and time.monotonic() - self._last_push < self.min_interval_s:
            return []
        self._last_push = time.monotonic()
        written = []
        for path in self._files():
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            rel = path.relative_to(self.local_dir).as_posix()
            if not force and self._pushed.get(rel) == stamp:
                continue
            target = join_uri(self.uri, rel)
            atomic_upload(path, target)
            self._pushed[rel] = stamp
            written.append(target)
        return written

    def pull(self) -> list[Path]:
        """Download the run's files (not ``trials/``) into ``local_dir``; returns the local paths."""
        fs, root = filesystem(self.uri)
        with _storage_errors(self.uri, "read"):
            if not fs.exists(root):
                return []
            found = fs.find(root)
        # Listed keys are untrusted: every one is checked before the first byte is written, so a key
        # holding '..' (which would land outside the mirror) stops the pull with nothing written.
        wanted = []
        for key in found:
            rel = key[len(root) :].lstrip("/")
            parts = rel.split("/")
            if not rel or parts[0] in self.SKIP_DIRS or any(p.startswith(TMP_PREFIX) for p in parts):
                continue
            wanted.append((key, rel, local_path_under(self.local_dir, rel, f"cannot pull {self.uri}/{rel}")))
        local = []
        with _storage_errors(self.uri, "read"):
            for key, rel, target in wanted:
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(key, str(target))
                stat = target.stat()
                self._pushed[rel] = (stat.st_size, stat.st_mtime_ns)
                local.append(target)
        return local

    def __call__(self, progress: object = None) -> None:
        """Progress-listener form: push (rate-limited), warn once on failure, never raise."""
        import logging

        try:
            self.push()
        except StorageError as exc:
            if not self._warned:
                self._warned = True
                logging.getLogger("autolfads.storage").warning(
                    "%s (the run goes on; retrying on the next progress update)", exc
                )


__all__ = [
    "RunMirror",
    "atomic_upload",
    "atomic_write_bytes",
    "cache_dir",
    "check_readable",
    "check_run_locations",
    "check_writable",
    "copy_local_to_uri",
    "download_to_local",
    "endpoint_url",
    "exists",
    "filesystem",
    "is_remote",
    "join_uri",
    "local_path",
    "open_uri",
    "ray_storage",
    "refuse_existing_run",
]
