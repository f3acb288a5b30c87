"""Binary tournament pairing for synchronous PBT (lfads-spec §5.7), as a pure function.

Lower scores are better (the PBT metric ``valid/recon_smth`` is a cost). The reference rule: shuffle the
members, pair the first half with the last half (with an odd count the middle one sits out), the better
of each pair wins and **a tie goes to the second**. One addition, on purpose: a non-finite score (NaN,
±Inf: a diverged model) always loses. When both members of a pair are non-finite, or the one sitting out
is, each of them is handed a finite winner drawn at random, so a diverged trial is always replaced when
the population has any healthy member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Match:
    """One exploit to perform: ``loser`` clones ``winner``'s checkpoint and explores its config."""

    winner: int
    loser: int


@dataclass(frozen=True)
class Tournament:
    """Result of one generation's tournament; indices refer to the ``scores`` sequence."""

    matches: tuple[Match, ...]
    bye: int | None  # the member that sat out (odd count) and kept its state

    @property
    def winners(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(m.winner for m in self.matches))

    @property
    def losers(self) -> tuple[int, ...]:
        return tuple(m.loser for m in self.matches)


def _finite(score: float) -> bool:
    return score is not None and math.isfinite(score)


def tournament_pairs(scores: Sequence[float], rng: np.random.Generator) -> Tournament:
    """Pair the members by ``rng``'s shuffle and decide each match (lower score wins)."""
    order = [int(i) for i in rng.permutation(len(scores))]
    half = len(order) // 2
    firsts, seconds = order[:half], order[len(order) - half :]
    bye = order[half] if len(order) % 2 else None

    matches: list[Match] = []
    orphans: list[int] = []  # non-finite members left without a healthy opponent to clone
    for a, b in zip(firsts, seconds, strict=True):
        fa, fb = _finite(scores[a]), _finite(scores[b])
        if fa and fb:
            matches.append(Match(winner=a, loser=b) if scores[a] < scores[b] else Match(winner=b, loser=a))
        elif fa or fb:
            matches.append(Match(winner=a, loser=b) if fa else Match(winner=b, loser=a))
        else:
            orphans.extend((a, b))
    if bye is not None and not _finite(scores[bye]):
        orphans.append(bye)
        bye = None
    healthy = [m.winner for m in matches] + ([bye] if bye is not None else [])
    if healthy:
        for orphan in orphans:
            matches.append(Match(winner=healthy[int(rng.integers(len(healthy)))], loser=orphan))
    return Tournament(matches=tuple(matches), bye=bye)


__all__ = ["Match", "Tournament", "tournament_pairs"]
