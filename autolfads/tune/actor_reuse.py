"""Keep the processes of members that wait for their generation's tournament.

With ``reuse_actors`` Ray Tune keeps the process of a pausing trial only for a trial already staged to take
it, and once every trial exists (the search is over) it ends the process of a trial that pauses with none
staged. In synchronous PBT each member that ends its generation before the others pauses to wait for the
tournament, and then no trial can be staged: the others are still training or waiting too. So Ray ended
that process, and the next generation started a new one, which imports torch and Lightning again (≈ 20 s
of CPU each on the 2-core development machine; on a GPU also a new CUDA context). Measured before this
module: the demo's 4 members at 2 at a time started a new process at most boundaries, 4 members all at
once 2 per boundary, and a population as large as its slots (the default: 16 members, 2 per GPU) would
replace all but one of its processes at every generation.

:func:`install_keep_waiting_members` wraps Ray Tune's private ``TuneController._maybe_cache_trial_actor``:
the process of a trial that the scheduler says waits for a tournament (``waits_for_tournament``) is cached,
and one more cached process of its resource shape is allowed until the first result past that boundary,
when the next generation has taken its processes (``hold_cache_slot``). A process nobody takes by then is
ended by Ray as before. This comes before Ray's own rule, which would cache some of these processes
against a staged trial's slot: a winner whose boundary checkpoint is still being saved pauses only after
the tournament has staged trials, the staged trial may take another cached process (its own), and Ray
ended the one over its count — one member per generation then waited for a process instead of training
(seen under load in tests/tune/test_population.py, about one run in four; none in 14 after the change).

Ray is pinned in the lock; ``tests/tune/test_population.py`` fails if the processes stop being kept, and
``tests/test_private_apis.py`` if the names used here change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class KeepsWaitingMembers(Protocol):
    """What the scheduler tells the wrapped controller (``BinaryTournamentPBT`` implements it)."""

    def waits_for_tournament(self, trial: Any) -> int | None:
        """The boundary (epochs done) this paused trial waits at for its tournament, or None."""

    def hold_cache_slot(self, boundary: int, release: Callable[[], None]) -> None:
        """Call ``release`` once a trial has reported past ``boundary``."""


def install_keep_waiting_members() -> bool:
    """Wrap ``TuneController._maybe_cache_trial_actor`` (once per process); whether it is installed.

    Where Ray's controller no longer has the method, nothing is wrapped and a warning says so once: the
    run still works, and pays a new process per waiting member and generation.
    """
    from ray.tune.execution.tune_controller import TuneController

    original = getattr(TuneController, "_maybe_cache_trial_actor", None)
    if original is None:
        logger.warning(
            "this Ray Tune has no TuneController._maybe_cache_trial_actor: members waiting for a tournament "
            "get new processes"
        )
        return False
    if getattr(original, "autolfads_keeps_waiting_members", False):
        return True

    def _maybe_cache_trial_actor(self: Any, trial: Any) -> bool:
        # A waiting member's process gets a slot of its own even where Ray would cache it anyway: Ray caches
        # a pausing trial's process against a staged trial's slot, but that trial may take another cached
        # process (its own), and Ray then ends the one over its count before the next generation starts.
        scheduler = self._scheduler_alg
        waits = getattr(scheduler, "waits_for_tournament", None)
        boundary = waits(trial) if waits is not None and self._reuse_actors else None
        if boundary is not None and _cache_for_next_generation(self, trial, scheduler, boundary):
            return True
        return original(self, trial)

    _maybe_cache_trial_actor.autolfads_keeps_waiting_members = True  # type: ignore[attr-defined]
    _maybe_cache_trial_actor.__wrapped__ = original  # type: ignore[attr-defined]
    TuneController._maybe_cache_trial_actor = _maybe_cache_trial_actor
    return True


def _cache_for_next_generation(
    controller: Any, trial: Any, scheduler: KeepsWaitingMembers, boundary: int
) -> bool:
    """Cache the trial's process with a slot of its own, as Ray caches one for a staged trial."""
    actor = controller._trial_to_actor.get(trial)
    manager = controller._actor_manager
    if (
        actor is None
        or actor not in controller._started_actors
        or not manager.is_actor_started(actor)
        or manager.is_actor_failed(actor)
    ):
        return False
    cache = controller._actor_cache
    shape = trial.placement_group_factory
    cache.increase_max(shape)
    if not cache.cache_object(shape, actor):
        cache.decrease_max(shape)
        return False
    scheduler.hold_cache_slot(boundary, lambda: cache.decrease_max(shape))
    controller._trial_to_actor.pop(trial)
    controller._actor_to_trial.pop(actor)
    trial.set_ray_actor(None)
    logger.debug("trial %s waits for the tournament after %d epochs: its process is kept", trial, boundary)
    return True


__all__ = ["KeepsWaitingMembers", "install_keep_waiting_members"]
