"""What a run leaves behind: ``lfads_output_sess*.h5``, ``fitlog.csv``, ``autolfads.zip``, atomic writes.

Attributes load on first use, so ``from autolfads.outputs import atomic_path`` does not import torch
(the operator and ``autolfads --help`` stay light).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "atomic_copy": "autolfads.outputs.atomic",
    "atomic_path": "autolfads.outputs.atomic",
    "atomic_write_bytes": "autolfads.outputs.atomic",
    "atomic_write_text": "autolfads.outputs.atomic",
    "fitlog_frame": "autolfads.outputs.fitlog",
    "read_fitlog": "autolfads.outputs.fitlog",
    "write_fitlog": "autolfads.outputs.fitlog",
    "OUTPUT_FIELDS": "autolfads.outputs.posterior",
    "output_filename": "autolfads.outputs.posterior",
    "run_posterior_sampling": "autolfads.outputs.posterior",
    "write_autolfads_zip": "autolfads.outputs.bundle",
    "r2_score": "autolfads.outputs.quality",
    "rate_r2": "autolfads.outputs.quality",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autolfads.outputs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
