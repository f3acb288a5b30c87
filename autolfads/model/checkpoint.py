"""Checkpoints are data: every load is weights-only, with an explicit allow-list of globals.

A checkpoint is a pickle. ``torch.load(weights_only=False)`` runs whatever callable the file names, so a
crafted ``model.ckpt`` (handed to ``autolfads infer``, left in a run's ``trials/`` for ``--resume``, or
copied from another lab) would run code as the process that loads it. Every load in autolfads goes through
here instead, or passes ``weights_only=True`` to Lightning inside :func:`weights_only_loading`:

- :func:`load_checkpoint` — the checkpoint as a plain dict (``autolfads infer`` reads the stored config);
- :func:`weights_only_loading` — a context for Lightning's own loads (``Trainer.fit(ckpt_path=…,
  weights_only=True)``, ``LFADS.load_from_checkpoint``), so the allow-list below applies to them too;
- ``LFADS.load_from_checkpoint(path)`` — always weights-only (``autolfads.model.lfads``).

What the weights-only unpickler still builds is tensors, numbers, strings and plain containers; the
model's ``hyper_parameters`` are plain data too, and the ``_target_`` mappings among them pass the config
allow-list before the model is built from them (``autolfads.model.parts``). Explicit
``weights_only=True`` matters: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only changes loads that left it unset.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from typing import Any

import torch

from autolfads.errors import CheckpointError

# Globals our checkpoints need beyond torch's weights-only defaults (tensors, plain containers, numbers,
# strings). None today: Lightning's hparams, loop and optimizer states, our callbacks' states and the
# stored config are plain data. Add a class here only if it is ours or torch's and carries no code;
# tests/model/test_checkpoint.py fails when a checkpoint we write needs one that is not listed.
CHECKPOINT_GLOBALS: tuple[Any, ...] = ()


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Within: ``torch.load(…, weights_only=True)`` accepts exactly :data:`CHECKPOINT_GLOBALS` besides
    torch's defaults (torch < 2.5 has no scoped allow-list; with an empty list nothing is lost)."""
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is None or not CHECKPOINT_GLOBALS:
        yield
        return
    with scoped(list(CHECKPOINT_GLOBALS)):
        yield


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` as a plain dict, loaded weights-only; a CheckpointError (one line) when
    the file is missing, corrupt, or names anything the weights-only unpickler refuses."""
    try:
        with weights_only_loading():
            data = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(refusal(path, error)) from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a model checkpoint ({_first_line(error)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a model checkpoint (it holds a {type(data).__name__})")
    return data


def refusal(path: str | os.PathLike[str], error: BaseException) -> str:
    """One line for a file the weights-only unpickler refused: one that names code to run (a global
    outside the allow-list) is said so, anything else is not a checkpoint."""
    for line in str(error).splitlines():
        if "global" in line.lower():
            detail = line.strip().removeprefix("WeightsUnpickler error: ")
            return (
                f"{path}: refused to load: it asks for more than plain data ({detail}); checkpoints are "
                "loaded weights-only (docs/security.md)"
            )
    return f"{path} is not a model checkpoint ({_first_line(error)})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["CHECKPOINT_GLOBALS", "load_checkpoint", "refusal", "weights_only_loading"]
