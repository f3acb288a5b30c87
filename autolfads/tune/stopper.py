"""The experiment-wide improvement-ratio stop rule (lfads-spec §5.8), with its state as plain data.

The state (records of the current window and the per-generation bests) is a JSON-able dict, so the
driver can save it beside the run and a resumed run continues the same window (STYLE rule 6).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImprovementRatioRule:
    """Stop all trials when the population's best metric has stopped improving.

    On each result: e = cur_epoch + 1 − burn_in; when e ≥ 0 and e is a multiple of the interval, the
    trial's metric is recorded. When all ``num_trials`` have recorded, the minimum joins a window of the
    last ``patience`` generation bests; once the window is full, ratio = (oldest − min(window)) /
    mean(|window|), and the run stops when ratio ≤ ``min_improvement_ratio``.

    A member that fails for good (``member_left``) is no longer waited for: the reference counted it forever
    and never stopped again once a trial had died.
    """

    num_trials: int
    perturbation_interval: int
    burn_in_period: int
    patience: int = 4
    min_improvement_ratio: float = 5e-4
    records: dict[str, float] = field(default_factory=dict)
    bests: list[float] = field(default_factory=list)
    stopped: bool = False
    left: list[str] = field(default_factory=list)

    def update(self, trial_id: str, cur_epoch: int, value: float) -> bool:
        """Feed one result; returns whether the whole experiment should stop now."""
        if self.stopped:
            return True
        e = cur_epoch + 1 - self.burn_in_period
        if e < 0 or e % self.perturbation_interval != 0:
            return False
        self.records[trial_id] = float(value)
        return self._close_generation_if_complete()

    def member_left(self, trial_id: str) -> bool:
        """A member failed for good; returns whether the whole experiment should stop now."""
        if trial_id not in self.left:
            self.left.append(trial_id)
            self.records.pop(trial_id, None)
        return self.stopped or self._close_generation_if_complete()

    def _close_generation_if_complete(self) -> bool:
        if not self.records or len(self.records) < self.num_trials - len(self.left):
            return False
        finite = [v for v in self.records.values() if math.isfinite(v)]
        self.records = {}
        self.bests = list(deque([*self.bests, min(finite) if finite else math.inf], maxlen=self.patience))
        self.stopped = self.should_stop(self.bests, self.patience, self.min_improvement_ratio)
        return self.stopped

    @staticmethod
    def should_stop(bests: list[float], patience: int, min_improvement_ratio: float) -> bool:
        """The rule on a window of generation bests (oldest first)."""
        if len(bests) < patience or not all(math.isfinite(b) for b in bests):
            return False
        scale = sum(abs(b) for b in bests) / len(bests)
        if scale == 0:
            return True
        return (bests[0] - min(bests)) / scale <= min_improvement_ratio

    def state(self) -> dict[str, Any]:
        """Plain data that ``from_state`` turns back into an equal rule."""
        return {
            "num_trials": self.num_trials,
            "perturbation_interval": self.perturbation_interval,
            "burn_in_period": self.burn_in_period,
            "patience": self.patience,
            "min_improvement_ratio": self.min_improvement_ratio,
            "records": dict(self.records),
            "bests": list(self.bests),
            "stopped": self.stopped,
            "left": list(self.left),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImprovementRatioRule:
        lists = {"records": dict(state["records"]), "bests": list(state["bests"])}
        return cls(**{**state, **lists, "left": list(state.get("left", []))})


__all__ = ["ImprovementRatioRule"]
