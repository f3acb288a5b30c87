"""NWB files for the tests, built with pynwb by ``autolfads.data.synthetic_nwb`` (not a test module).

``write_session`` adds what only tests need: an ``edit`` hook that changes the NWBFile object before it is
written, to make the bad files of the bad-input table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autolfads.data.synthetic_nwb import SyntheticSession, synthetic_session

Session = SyntheticSession


def write_session(
    path: Path,
    *,
    duration_s: float = 20.0,
    n_units: int = 10,
    n_trials: int = 0,
    seed: int = 0,
    behaviour: bool = True,
    silent_units: Sequence[int] = (),
    edit: Callable[[Any], None] | None = None,
) -> SyntheticSession:
    """A session of units with known rates (ids 100, 101, ...); ``n_trials`` back-to-back trials (0: none)."""
    session = synthetic_session(
        duration_s=duration_s,
        n_units=n_units,
        n_trials=n_trials,
        seed=seed,
        behaviour=behaviour,
        silent_units=silent_units,
    )
    if edit is not None:
        edit(session.nwbfile)
    session.write(path)
    return session
