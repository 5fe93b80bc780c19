"""Witnesses of earlier NOT_ENTAILED answers, kept to refute later questions without a solver.

Used by the algorithms (:mod:`xsnn.solvers.axp`: a witness of an earlier question settles a later
one in progression) and by the fast paths of :class:`~xsnn.solvers.layered.LayeredOracle`
(``"cache"``).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .oracle import EntailmentOracle

__all__ = ["WitnessCache"]


class WitnessCache:
    """Witnesses of earlier NOT_ENTAILED answers, looked up by the fixed set they refute.

    A witness ``x`` refutes ``S`` iff ``x`` equals the instance on every pixel of ``S`` and every
    pixel outside ``S`` carries a train of the free domain (the distance bound is a property
    of ``x`` alone and held when it was found). Per witness we keep the feature mask
    ``agree[g] = x equals the instance on all pixels of g`` and the features that hold a pixel
    outside the free domain; ``x`` refutes ``S`` iff ``S ⊆ agree`` and those features ⊆ ``S``
    (a witness with an unowned pixel outside the free domain lies outside every ``S``'s domain: never a match).
    The masks of new witnesses are computed in one batch when the cache is next searched.
    The newest witnesses are tried first; the oldest are dropped beyond ``capacity``.
    """

    def __init__(self, oracle: EntailmentOracle, capacity: int = 512) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._n_features = len(oracle.features)
        self._instance = oracle.instance
        self._owner = oracle.features.feature_of_pixel()
        self._trains = oracle.model.coding.free_trains(oracle.model.n_steps)
        self._witnesses: deque[np.ndarray] = deque(maxlen=capacity)  # newest first
        self._pending = 0  # the newest witnesses not yet in the stacked masks
        # per witness (rows, newest first): features it changes, features it must keep fixed, and
        # whether it can refute any fixed set at all (not with an unowned pixel outside the domain)
        self._disagree = np.zeros((0, self._n_features), bool)
        self._must_fix = np.zeros((0, self._n_features), bool)
        self._usable = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self._witnesses)

    def add(self, witness: np.ndarray) -> None:
        """Keep ``witness`` (its masks are computed in one batch at the next :meth:`find`)."""
        self._witnesses.appendleft(np.asarray(witness, dtype=np.uint8))
        self._pending = min(self._pending + 1, self.capacity)

    def _stack_pending(self) -> None:
        """Compute the masks of the pending witnesses, all at once, and put them on top."""
        x = np.stack([self._witnesses[r] for r in range(self._pending)])  # (p, T, n), newest first
        owner = self._owner
        owned = owner >= 0
        differs = np.any(x != self._instance[None], axis=1)  # (p, n)
        in_domain = np.any(np.all(self._trains[None, :, :, None] == x[:, None, :, :], axis=2), axis=1)  # (p, n)
        rows = np.arange(len(x))[:, None]
        disagree = np.zeros((len(x), self._n_features + 1), bool)  # last column: unowned pixels
        disagree[rows, np.where(owned & differs, owner, -1)] = True
        must_fix = np.zeros((len(x), self._n_features + 1), bool)
        must_fix[rows, np.where(~in_domain, owner, -1)] = True
        usable = ~np.any(~in_domain & ~owned, axis=1)
        self._disagree = np.concatenate([disagree[:, :-1], self._disagree])[: self.capacity]
        self._must_fix = np.concatenate([must_fix[:, :-1], self._must_fix])[: self.capacity]
        self._usable = np.concatenate([usable, self._usable])[: self.capacity]
        self._pending = 0

    def find(self, fixed: frozenset[int]) -> np.ndarray | None:
        """The newest cached witness that refutes ``fixed``, or ``None`` (one vectorised test of all)."""
        if not self._witnesses:
            return None
        if self._pending:
            self._stack_pending()
        mask = np.zeros(self._n_features, bool)
        mask[list(fixed)] = True
        hits = np.flatnonzero(
            self._usable & ~self._disagree[:, mask].any(axis=1) & ~self._must_fix[:, ~mask].any(axis=1)
        )
        return self._witnesses[int(hits[0])] if len(hits) else None

    def recent(self, count: int | None = None) -> list[np.ndarray]:
        """The ``count`` newest witnesses (all when ``None``), newest first."""
        witnesses = list(self._witnesses)
        return witnesses if count is None else witnesses[:count]
