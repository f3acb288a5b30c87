"""How much memory a run may plan to use, decided before anything is read or built.

A data file only *declares* its array shapes; a 2 KB HDF5 file can declare a 150 GB array, and reading it
(or building a model with ``gen_dim: 1000000``) would be an out-of-memory kill on a shared machine instead
of an error. So the data contract and the config check compare what the declared shapes and the model's
sizes would need against this budget first, and refuse with one line naming the key and both sizes.

The budget is ``AUTOLFADS_MEMORY_BUDGET`` when set (bytes, or with a unit: ``8G``, ``512M``, ``2TiB``),
else half of this machine's memory, or of the container's limit when that is smaller (a Kubernetes pod
sees the node's memory in ``/proc/meminfo`` but is killed at its cgroup limit). Standard library only:
the Kubernetes operator and ``autolfads validate`` import it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from autolfads.errors import ConfigError

BUDGET_ENV = "AUTOLFADS_MEMORY_BUDGET"
FLOAT32_BYTES = 4  # the datamodule holds every array as float32
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "p": 10**15,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
    "pi": 2**50,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def parse_size(text: str, where: str = BUDGET_ENV) -> int:
    """``"8G"`` → 8·10⁹, ``"512MiB"`` → 512·2²⁰, ``"1000"`` → 1000 bytes; anything else is a ConfigError."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{where}: expected a size in bytes such as 8G, 512M or 2TiB, found {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def machine_memory_bytes() -> int | None:
    """Physical memory, or the container's cgroup limit when that is smaller; None when unknown."""
    sizes: list[int] = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in _CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number mean no limit
            sizes.append(int(text))
    return min(sizes) if sizes else None


def memory_budget_bytes() -> int | None:
    """The budget (see the module docstring); None when it cannot be told (then nothing is refused)."""
    configured = os.environ.get(BUDGET_ENV)
    if configured:
        return parse_size(configured)
    memory = machine_memory_bytes()
    return memory // 2 if memory else None


def budget_source() -> str:
    """How the budget was chosen, for the refusal message."""
    if os.environ.get(BUDGET_ENV):
        return f"{BUDGET_ENV}={os.environ[BUDGET_ENV]}"
    memory = machine_memory_bytes()
    shown = format_bytes(memory) if memory else "unknown"
    return f"half of this machine's {shown} of memory; set {BUDGET_ENV} to change it"


def format_bytes(n: float) -> str:
    """``format_bytes(3 * 2**30) == "3.0 GiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB" if value < 1024 else f"{value:.3g} PiB"


__all__ = [
    "BUDGET_ENV",
    "FLOAT32_BYTES",
    "budget_source",
    "format_bytes",
    "machine_memory_bytes",
    "memory_budget_bytes",
    "parse_size",
]
