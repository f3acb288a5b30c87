"""Compiled recurrent loops: the encoder, controller and generator loops through ``torch.compile``.

Shapes: B trials. The loops (``gru.lockstep_loop``, ``decoder.decoder_loop``) are pure functions of tensors:
weights, dropout masks and sampling noise come in as arguments, so the compiled and the eager version
compute the same thing from the same random draws, and nothing is compiled that is part of a module's state
(state-dict keys and checkpoints stay as they are: no ``_orig_mod.`` prefixes).

When a loop is compiled, per device type, is set by ``AUTOLFADS_COMPILE``:

- ``auto`` (default): on CUDA, compiled with CUDA graphs (``mode="reduce-overhead"``): a 400 k-parameter
  model cannot fill a GPU one small kernel at a time, so replaying each loop as one captured graph is what
  makes a step fast there (needs triton and a C compiler; without one, e.g. in the project's image, which
  ships no compilers, the loops run eager and this is logged at INFO, not as a warning). On CPU, eager:
  measured on the 2-core development machine, the compiled step is 5-16 % faster (1-2 threads) but its
  first compile costs about 80 CPU-seconds per model shape and thread count, and 4-7 s per process even
  from a warm cache — more than it saves in anything but runs of thousands of steps (docs/model.md,
  "Speed").
- ``1``/``on``: compiled on every device where a compiler works (CPU: inductor's C++ backend, which
  needs a C++ compiler).
- ``0``/``off``: eager everywhere.

A compiler that is missing or fails (no C++ compiler, no triton, an unsupported Python or platform, a
compile error) never stops training: the loop runs eager from then on, and the choice per device is
logged once (logger ``autolfads.model``). Compiled code is cached on disk by inductor
(``TORCHINDUCTOR_CACHE_DIR``, default ``<tempdir>/torchinductor_<user>``, triton's cache inside it), so a
second process with the same shapes skips most of the work; a PBT trial process compiles once and keeps
its compiled loops across generations (trial processes are reused).

The batch dimension is marked dynamic, so the last, smaller batch of an epoch, validation batches and
posterior-sampling passes reuse one compiled graph per mode (training, no-grad).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from typing import Any

import torch

logger = logging.getLogger("autolfads.model")

ENV_VAR = "AUTOLFADS_COMPILE"
_ON, _OFF, _AUTO = ("1", "on", "true", "yes"), ("0", "off", "false", "no"), ("", "auto")

# Device types compiled when AUTOLFADS_COMPILE is auto (see the module docstring for why CPU is not).
AUTO_DEVICES = ("cuda",)
# torch.compile mode per device type: CUDA graphs where kernel launches are the cost.
COMPILE_MODES = {"cuda": "reduce-overhead"}
BACKEND: Any = "inductor"  # torch.compile's backend (tests swap in others)


_override: str | None = None  # set_compile_setting(): wins over the environment


def set_compile_setting(setting: str | None) -> None:
    """Override ``AUTOLFADS_COMPILE`` in this process (None: read it again); loops choose anew."""
    global _override
    if setting is not None and setting not in ("auto", "on", "off"):
        raise ValueError(f"compile setting {setting!r}: expected auto, on or off")
    _override = setting
    reset_loops()


def compile_setting() -> str:
    """``auto``, ``on`` or ``off`` from ``AUTOLFADS_COMPILE`` (unknown values are refused by name)."""
    if _override is not None:
        return _override
    raw = os.environ.get(ENV_VAR, "auto").strip().lower()
    if raw in _AUTO:
        return "auto"
    if raw in _ON:
        return "on"
    if raw in _OFF:
        return "off"
    raise ValueError(f"{ENV_VAR}={raw!r}: expected auto, 1 (on) or 0 (off)")


def compiler_problem(device_type: str) -> str | None:
    """Why ``torch.compile`` cannot work for this device type here, or None when it should."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python or platform"
    if device_type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as error:  # each torch version words (and types) a missing compiler differently
            return f"no C++ compiler for inductor ({_first_line(error)})"
        return None
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "triton is not installed or finds no usable GPU"
        if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
            return "no C compiler for triton's launcher (set CC or install gcc)"
        return None
    return f"loops are not compiled on {device_type}"


def wants_compiled(device_type: str) -> bool:
    """Whether the setting asks for compiled loops on this device type (before trying a compiler)."""
    setting = compile_setting()
    return setting == "on" or (setting == "auto" and device_type in AUTO_DEVICES)


class CompiledLoop:
    """A pure loop function and its compiled version per device type, chosen at the first call.

    ``batch_dims(*args)`` lists ``(tensor, dim)`` pairs whose ``dim`` is the batch: they are marked dynamic
    so one graph serves every batch size. A compiled call that raises is run again eagerly: if eager
    raises too, the inputs are at fault and eager's error propagates; otherwise the compiler is at fault,
    and this loop runs eager on that device type from then on (logged once).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        batch_dims: Callable[..., Iterable[tuple[torch.Tensor | None, int]]],
    ) -> None:
        self.fn = fn
        self.name = name
        self.batch_dims = batch_dims
        self._compiled: dict[str, Callable[..., Any] | None] = {}  # device type -> compiled fn or None

    def backend(self, device_type: str) -> str:
        """``compiled`` or ``eager`` for this device type (deciding, and logging, on first use)."""
        return "eager" if self._choose(device_type) is None else "compiled"

    def reset(self) -> None:
        """Forget the choices and compiled versions (tests, benchmarks that flip AUTOLFADS_COMPILE)."""
        self._compiled.clear()
        _reported.difference_update({key for key in _reported if key[0] == self.name})

    def __call__(self, *args: Any) -> Any:
        device_type = _device_type(args)
        compiled = self._choose(device_type)
        if compiled is None:
            return self.fn(*args)
        for tensor, dim in self.batch_dims(*args):
            if tensor is not None and tensor.shape[dim] > 1:
                torch._dynamo.maybe_mark_dynamic(tensor, dim)
        try:
            # a (re)compile builds the backward now too, so a failure shows here, not in loss.backward()
            with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                return compiled(*args)
        except Exception as error:
            result = self.fn(*args)  # raises itself when the inputs, not the compiler, are at fault
            self._compiled[device_type] = None
            why = f"eager (compiling failed: {_first_line(error)})"
            _report(self.name, device_type, why, logging.WARNING)
            return result

    def _choose(self, device_type: str) -> Callable[..., Any] | None:
        if device_type in self._compiled:
            return self._compiled[device_type]
        compiled = None
        if not wants_compiled(device_type):
            _report(self.name, device_type, f"eager ({ENV_VAR}={compile_setting()})")
        elif (problem := compiler_problem(device_type)) is not None:
            # asked for (on): a warning; the default (auto) on a machine without a compiler, e.g. the
            # image, which ships none: a plain note, as nothing is wrong
            level = logging.WARNING if compile_setting() == "on" else logging.INFO
            _report(self.name, device_type, f"eager ({problem})", level)
        else:
            mode = COMPILE_MODES.get(device_type)
            options = {"mode": mode} if BACKEND == "inductor" else {}
            compiled = torch.compile(self.fn, fullgraph=True, backend=BACKEND, **options)
            _report(self.name, device_type, f"compiled ({mode or 'default'} mode)")
        self._compiled[device_type] = compiled
        return compiled


def compiled_loop(
    fn: Callable[..., Any],
    name: str,
    batch_dims: Callable[..., Iterable[tuple[torch.Tensor | None, int]]],
) -> CompiledLoop:
    """Wrap a pure loop function; see :class:`CompiledLoop`."""
    loop = CompiledLoop(fn, name, batch_dims)
    LOOPS.append(loop)
    return loop


LOOPS: list[CompiledLoop] = []  # every wrapped loop, for reset_loops()


def reset_loops() -> None:
    """Forget every loop's choice, so the next call reads AUTOLFADS_COMPILE again."""
    for loop in LOOPS:
        loop.reset()


def mark_step_begin(device: torch.device) -> None:
    """Tell CUDA graphs that a new forward pass begins, so the previous pass's graph outputs may be reused.

    Called once per model forward, before the first loop; a no-op off CUDA or where nothing is compiled.
    """
    if device.type == "cuda" and any(loop._compiled.get("cuda") is not None for loop in LOOPS):
        torch.compiler.cudagraph_mark_step_begin()


_reported: set[tuple[str, str, int]] = set()  # (loop, device type, level): the first choice, a fallback


def _report(name: str, device_type: str, choice: str, level: int = logging.INFO) -> None:
    if (name, device_type, level) not in _reported:
        _reported.add((name, device_type, level))
        logger.log(level, "%s on %s: %s", name, device_type, choice)


def _device_type(args: Iterable[Any]) -> str:
    """The device type of the first tensor among ``args`` (tuples searched too)."""
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg.device.type
        if isinstance(arg, tuple) and any(isinstance(a, torch.Tensor) for a in arg):
            return _device_type(arg)
    return "cpu"


def _first_line(error: BaseException) -> str:
    """The root cause's type and first line (dynamo wraps a backend's error in BackendCompilerFailed)."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
        error = inner
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


__all__ = [
    "AUTO_DEVICES",
    "ENV_VAR",
    "CompiledLoop",
    "compile_setting",
    "compiled_loop",
    "compiler_problem",
    "mark_step_begin",
    "reset_loops",
    "set_compile_setting",
    "wants_compiled",
]
