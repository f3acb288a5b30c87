"""What a run was started with, so that ``--resume`` continues only that run.

``OUT/fingerprint.json`` (written when a run starts)::

    {"version": 1,
     "data": [{"uri": "/abs/data.h5", "size": 123456, "sha256": "…"}],   # one per session, sorted
     "config": {…},            # the fully resolved config (data paths left out: "data" covers them)
     "config_sha256": "…",     # of that config's canonical JSON
     "config_file": "/abs/cfg.yaml" or null,
     "overrides": ["model.gen_dim=64", …]}

``--resume`` recomputes it from the command line it is given and refuses any difference in the data's
content, the resolved config (which covers ``--config``'s content, the overrides and the population size)
in one line that lists what differs: ``population 4 → 8``, ``model.gen_dim 64 → 128 (override
model.gen_dim=128)``, ``data /x.h5: content changed``. The same data at another path is not a difference
(a moved file), and overrides that only restate the config's values are not either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FINGERPRINT_VERSION = 1
_HASH_BLOCK = 8 * 2**20
_SHOWN = 4
_IGNORED_KEYS = ("datamodule.data_paths", "datamodule.datafile_pattern")


def file_digest(path: str | Path) -> tuple[int, str]:
    """``(size, sha256)`` of a local file, read in 8 MB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def compute_fingerprint(
    data: Sequence[tuple[str, str | Path]],
    config: Mapping[str, Any],
    *,
    config_file: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The fingerprint of a run: ``data`` as ``(uri as given, local copy)`` pairs, ``config`` resolved."""
    files = []
    for uri, local in sorted(data, key=lambda pair: str(pair[0])):
        size, sha = file_digest(local)
        files.append({"uri": str(uri), "size": size, "sha256": sha})
    plain = _without_data_paths(config)
    return {
        "version": FINGERPRINT_VERSION,
        "data": files,
        "config": plain,
        "config_sha256": _sha(plain),
        "config_file": config_file,
        "overrides": list(overrides),
    }


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a saved run's fingerprint and this command line's, one phrase per item."""
    found: list[str] = []
    old_data, new_data = list(saved.get("data") or []), list(current.get("data") or [])
    if len(old_data) != len(new_data):
        found.append(f"data {len(old_data)} → {len(new_data)} files")
    else:
        for old, new in zip(old_data, new_data, strict=True):
            if (old.get("sha256"), old.get("size")) != (new.get("sha256"), new.get("size")):
                what = (
                    f"{old.get('uri')}"
                    if old.get("uri") == new.get("uri")
                    else f"{old.get('uri')} → {new.get('uri')}"
                )
                found.append(f"data {what}: content changed (size {old.get('size')} → {new.get('size')})")
    if saved.get("config_sha256") != current.get("config_sha256"):
        found += _config_differences(saved.get("config") or {}, current.get("config") or {}, current)
    return found


def describe(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The differences as one clause: ``population 4 → 8; model.gen_dim 64 → 128 (and 2 more)``."""
    found = differences(saved, current)
    shown = "; ".join(found[:_SHOWN])
    return shown + (f" (and {len(found) - _SHOWN} more)" if len(found) > _SHOWN else "")


def _config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    flat_old, flat_new = _flatten(old), _flatten(new)
    set_by = {item.partition("=")[0].lstrip("+"): item for item in current.get("overrides") or []}
    found = []
    for key in sorted(set(flat_old) | set(flat_new), key=lambda k: (k != "pbt.num_samples", k)):
        before, after = flat_old.get(key, "(absent)"), flat_new.get(key, "(absent)")
        if before == after:
            continue
        name = "population" if key == "pbt.num_samples" else key
        origin = f" (override {set_by[key]})" if key in set_by else ""
        found.append(f"{name} {_short(before)} → {_short(after)}{origin}")
    if not found:  # equal values in another order or type: still not the same config
        found.append("config: the resolved config differs")
    return found


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(node, list) and any(isinstance(v, Mapping | list) for v in node):
        out = {}
        for i, value in enumerate(node):
            out.update(_flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): node}


def _without_data_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    plain = json.loads(json.dumps(config, default=str))
    for dotted in _IGNORED_KEYS:
        block, _, key = dotted.partition(".")
        if isinstance(plain.get(block), dict):
            plain[block].pop(key, None)
    return plain


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["FINGERPRINT_VERSION", "compute_fingerprint", "describe", "differences", "file_digest"]
