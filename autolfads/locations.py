"""Where data and outputs may live: one scheme list, and keys and paths checked before any byte moves.

One list, shared by the CLI (through ``autolfads.storage``), the AutoLFADSJob CRD's ``dataURI`` and
``outputURI`` patterns (``CRD_URI_PATTERN``; a test keeps both CRD copies equal to it) and the Kubernetes
operator (``operators.validation`` and its ``progress.json`` reads):

- ``s3://bucket/key`` and ``s3a://bucket/key`` (object storage; the Hadoop spelling is the same store);
- ``file:///absolute/path`` (a volume mounted into every pod; tests use it);
- a plain local path (the CLI only: a job on a cluster names a scheme).

Keys and paths that come from a URI, a listing of a bucket or a resume file are untrusted: an object key
holding ``..`` or starting with ``/`` would be written outside the local cache or a run's mirror when it
is turned into a local path. :func:`check_object_key` refuses such keys and :func:`local_path_under`
resolves a path and refuses it unless it stays under its root — both *before* anything is written.

PURE on purpose: standard library only (the operator imports it and never imports torch).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from autolfads.errors import StorageError, clipped

REMOTE_SCHEMES = ("s3", "s3a")
SCHEMES = (*REMOTE_SCHEMES, "file")
CRD_URI_PATTERN = rf"^({'|'.join(SCHEMES)})://\S+$"
SUPPORTED = "s3://bucket/key, s3a://bucket/key, file:///path or a local path"
SUPPORTED_URIS = "s3://bucket/key, s3a://bucket/key or file:///path"
_FORBIDDEN_PARTS = ("..", ".")


def scheme_of(uri: str | os.PathLike[str]) -> str:
    """The URI's scheme in lower case; ``""`` for a plain local path."""
    text = os.fspath(uri)
    return urlparse(text).scheme.lower() if "://" in text else ""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for object-storage URIs (``s3://``, ``s3a://``)."""
    return scheme_of(uri) in REMOTE_SCHEMES


def uri_problem(
    uri: object, field: str, *, local_paths: bool = True, segments: bool = True
) -> str | None:
    """One line naming ``field``, the value and what is accepted; None when ``uri`` is acceptable.

    ``local_paths=False`` (a job spec) requires a scheme. Object keys and ``file://`` paths may not hold
    ``..`` or ``.`` segments (a plain local path may: the CLI resolves it as the user typed it).
    ``segments=False`` checks the scheme and the URI's shape only: the operator's spec check, where the
    lab's storage rule (``operators.admission``, stricter: empty segments, ``?``, ``#`` too) refuses such
    paths as ``StorageOutsideLab`` right after, before anything is created.
    """
    if not isinstance(uri, str) or not uri.strip():
        return f"{field}: expected {SUPPORTED}, found {uri!r}"
    scheme = scheme_of(uri)
    if not scheme:
        if local_paths and ":" not in uri.split("/", 1)[0]:
            return None
        return f"{field}: expected {_accepted(local_paths)}, found {clipped(uri)!r}"
    if scheme not in SCHEMES:
        return f"{field}: the scheme {scheme}:// is not supported; expected {_accepted(local_paths)}"
    parsed = urlparse(uri)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return f"{field}: a file:// URI names no host (file:///path), found {clipped(uri)!r}"
        return _segments_problem(parsed.path, field, uri) if segments else None
    bucket = parsed.netloc
    if not bucket or bucket in _FORBIDDEN_PARTS or any(c in bucket for c in "\\@"):
        return f"{field}: expected {scheme}://bucket/key with a bucket name, found {clipped(uri)!r}"
    if not segments:
        return None
    return _key_problem(parsed.path[1:] if parsed.path.startswith("/") else parsed.path, field, uri)


def check_uri(uri: object, field: str, *, local_paths: bool = True) -> str:
    """``uri`` itself when acceptable (see :func:`uri_problem`); else one StorageError line."""
    problem = uri_problem(uri, field, local_paths=local_paths)
    if problem is not None:
        raise StorageError(problem)
    return str(uri)


def check_object_key(key: str, where: str) -> str:
    """``key`` itself when it is a plain relative key (no ``..``/``.`` segments, no leading ``/``)."""
    problem = _key_problem(key, where, key)
    if problem is not None:
        raise StorageError(problem)
    return key


def local_path_under(root: str | os.PathLike[str], relative: str, where: str) -> Path:
    """``root/relative``, resolved; a StorageError (one line) unless it stays under ``root``.

    For names that come from elsewhere (an object listing, a resume file): checked before anything is
    created, so a crafted name writes nothing outside ``root``.
    """
    check_object_key(relative, where)
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and not target.is_relative_to(base):
        raise StorageError(f"{where}: '{clipped(relative)}' leads outside {base}; refused")
    return target


def _key_problem(key: str, field: str, shown: str) -> str | None:
    if key.startswith("/"):
        return f"{field}: the key of {clipped(shown)!r} starts with '/' (an absolute path); refused"
    return _segments_problem(key, field, shown)


def _segments_problem(path: str, field: str, shown: str) -> str | None:
    parts = PurePosixPath(path.replace("\\", "/")).parts if path else ()
    raw_parts = path.replace("\\", "/").split("/")
    if "\x00" in path or any(p in _FORBIDDEN_PARTS for p in (*parts, *raw_parts)):
        return f"{field}: {clipped(shown)!r} holds a '..' or '.' path segment; refused"
    return None


def _accepted(local_paths: bool) -> str:
    return SUPPORTED if local_paths else SUPPORTED_URIS


__all__ = [
    "CRD_URI_PATTERN",
    "REMOTE_SCHEMES",
    "SCHEMES",
    "check_object_key",
    "check_uri",
    "is_remote",
    "local_path_under",
    "scheme_of",
    "uri_problem",
]
