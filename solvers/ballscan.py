"""Inner loops of ball enumeration (:mod:`xsnn.solvers.ball`): rival scores of changed inputs, and
interval bounds of enumeration nodes, in C (``_ballscan.c``, the optional extension
``xsnn.solvers._ballscan``) with this numpy reference beside it.

A node is an input of a one-layer network with constant input currents: the integer inputs
``cur[j]`` of ``L`` neurons, and the scores of ``R`` rivals

    scores[r] = base[r] + sum_u gains[u, r] [cur[unit_col[u]] >= unit_at[u]]

over ``U`` *units* (a neuron and one break of its spike-count ladder). A *move* ``m`` adds
``move_delta[e]`` to the input at unit ``move_unit[e]`` (its neuron's column) for ``e`` in
``move_ptr[m]:move_ptr[m + 1]``; the units of a neuron that a move touches all get that neuron's
change. A node *reaches* when ``scores[r] >= need[r]`` for some rival ``r``.

* :meth:`BallScan.children`: the scores of child ``n`` (parent ``parent_idx[n]`` with move
  ``moves[n]``) are the parent's, plus ``gains[u]`` for each touched unit whose indicator turns
  on, minus it for each that turns off. Returns the first child that reaches (or -1); with
  ``scores_out`` every child's scores are written.
* :meth:`BallScan.leaves`: the children of parent ``n`` are its changes by the moves
  ``move_ids[lo[n]:hi[n]]``, numbered parent by parent; returns the number of the first child
  that reaches (or -1), without storing any scores.
* :meth:`BallScan.bounds`: whether a node whose inputs may still rise by ``rise[row]`` and fall
  by ``fall[row]`` (per neuron) may reach: the indicator of unit ``u`` can turn on when
  ``c < a <= c + up`` (gain ``gain_pos = max(gains, 0)``) and off when ``c - down < a <= c``
  (gain ``-gain_neg``, ``gain_neg = min(gains, 0)``); the upper bound of each score adds those.

All integers are int32 (scores are at most ``T * sum |readout|`` in magnitude).
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

__all__ = ["BallScan", "load_extension", "available_implementations"]

log = logging.getLogger(__name__)


def load_extension() -> ModuleType | None:
    """The compiled inner loops ``xsnn.solvers._ballscan``, or ``None`` when they were not built
    (logged at debug level; the numpy reference serves then). Never compiles."""
    try:
        from xsnn.solvers import _ballscan
    except ImportError as exc:
        log.debug("xsnn ball scan in C not available (%s); using numpy", exc)
        return None
    return _ballscan


def available_implementations() -> tuple[str, ...]:
    """The implementations of :class:`BallScan` usable in this installation, best first."""
    return ("c", "numpy") if load_extension() is not None else ("numpy",)


def _int32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def _int64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


class BallScan:
    """The static arrays of one enumeration (moves, units, gains, need), checked once.

    Args:
        n_neurons: ``L``, the width of a node's ``cur`` (at least 1).
        move_ptr, move_unit, move_delta: the moves in CSR form over the units (module docstring).
        unit_col, unit_at: each unit's neuron column and break.
        gains: ``(U, R)`` each unit's gain per rival.
        need: ``(R,)`` the least score with which each rival wins.
        implementation: ``"c"``, ``"numpy"`` or ``None`` (C when built).
    """

    def __init__(
        self,
        n_neurons: int,
        move_ptr,
        move_unit,
        move_delta,
        unit_col,
        unit_at,
        gains,
        need,
        implementation: str | None = None,
    ) -> None:
        if implementation not in (None, "c", "numpy"):
            raise ValueError(f"implementation must be 'c', 'numpy' or None, got {implementation!r}")
        extension = load_extension()
        if implementation == "c" and extension is None:
            raise RuntimeError("the ball scan in C (xsnn.solvers._ballscan) is not built in this installation")
        self.n_neurons = int(n_neurons)
        if self.n_neurons < 1:
            raise ValueError("a node needs at least one neuron column")
        self.move_ptr = _int64(move_ptr)
        self.move_unit = _int32(move_unit)
        self.move_delta = _int32(move_delta)
        self.unit_col = _int32(unit_col)
        self.unit_at = _int32(unit_at)
        self.need = _int32(need)
        self.gains = _int32(np.asarray(gains).reshape(len(self.unit_col), len(self.need)))
        self.gain_pos = _int32(np.maximum(self.gains, 0))
        self.gain_neg = _int32(np.minimum(self.gains, 0))
        self.n_rivals = len(self.need)
        n_moves = len(self.move_ptr) - 1
        if (
            n_moves < 0
            or self.move_ptr[0] != 0
            or np.any(np.diff(self.move_ptr) < 0)
            or self.move_ptr[-1] != len(self.move_unit)
            or len(self.move_delta) != len(self.move_unit)
        ):
            raise ValueError("move_ptr must start at 0, never decrease and end at len(move_unit)")
        if len(self.move_unit) and (self.move_unit.min() < 0 or self.move_unit.max() >= len(self.unit_col)):
            raise ValueError("move_unit out of range")
        if len(self.unit_col) and (self.unit_col.min() < 0 or self.unit_col.max() >= self.n_neurons):
            raise ValueError("unit_col out of range")
        if self.gains.shape != (len(self.unit_col), self.n_rivals):
            raise ValueError(f"gains must be (U, R) = ({len(self.unit_col)}, {self.n_rivals}), got {self.gains.shape}")
        # the unit and the column of each CSR entry, for the numpy reference
        self._entry_col = self.unit_col[self.move_unit].astype(np.int64)
        self.implementation = implementation or ("c" if extension is not None else "numpy")
        self._ext, self._c = extension, None
        if self.implementation == "c":
            self._c = extension.make_ball_scan(
                self.n_neurons,
                self.n_rivals,
                len(self.unit_col),
                n_moves,
                self.move_ptr,
                self.move_unit,
                self.move_delta,
                self.unit_col,
                self.unit_at,
                self.gains,
                self.gain_pos,
                self.gain_neg,
                self.need,
            )

    # ------------------------------------------------------------------ scores of nodes

    def scores(self, cur: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Scores ``(N, R)`` int32 of nodes ``cur`` ``(N, L)`` from scratch (few nodes: roots)."""
        on = (np.asarray(cur)[:, self.unit_col] >= self.unit_at).astype(np.int64)  # (N, U)
        # an integer product: exact, and no BLAS threads for a tiny product
        return (_int32(base)[None, :] + on @ self.gains.astype(np.int64)).astype(np.int32)

    # ------------------------------------------------------------------ children

    def children(
        self,
        parent_cur: np.ndarray,
        parent_scores: np.ndarray,
        parent_idx: np.ndarray,
        moves: np.ndarray,
        scores_out: np.ndarray | None = None,
    ) -> int:
        """The first child that reaches, or -1 (module docstring); fills ``scores_out`` ``(N, R)`` if given."""
        parent_cur, parent_scores = _int32(parent_cur), _int32(parent_scores)
        parent_idx, moves = _int64(parent_idx), _int64(moves)
        if self._c is None:
            return self.children_reference(parent_cur, parent_scores, parent_idx, moves, scores_out)
        if scores_out is not None and (scores_out.dtype != np.int32 or not scores_out.flags.c_contiguous):
            raise ValueError("scores_out must be a C-contiguous int32 array")
        return int(self._ext.ball_children(self._c, parent_cur, parent_scores, parent_idx, moves, scores_out))

    def children_reference(
        self,
        parent_cur: np.ndarray,
        parent_scores: np.ndarray,
        parent_idx: np.ndarray,
        moves: np.ndarray,
        scores_out: np.ndarray | None = None,
    ) -> int:
        """:meth:`children` in numpy (the same integers)."""
        parent_idx, moves = np.asarray(parent_idx, np.int64), np.asarray(moves, np.int64)
        n = len(moves)
        if n and (
            parent_idx.min() < 0
            or parent_idx.max() >= len(parent_cur)
            or moves.min() < 0
            or moves.max() >= len(self.move_ptr) - 1
        ):
            raise ValueError("ball_children: parent_idx or moves out of range")
        scores = np.array(parent_scores, dtype=np.int64)[parent_idx].reshape(n, self.n_rivals)
        lo, hi = self.move_ptr[moves], self.move_ptr[moves + 1]
        counts = hi - lo
        child = np.repeat(np.arange(n), counts)
        entry = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        c = np.asarray(parent_cur)[parent_idx[child], self._entry_col[entry]]
        at = self.unit_at[self.move_unit[entry]]
        sign = (c + self.move_delta[entry] >= at).astype(np.int64) - (c >= at)
        turned = np.flatnonzero(sign)
        np.add.at(scores, child[turned], sign[turned, None] * self.gains[self.move_unit[entry[turned]]])
        if scores_out is not None:
            scores_out[...] = scores
        hits = np.flatnonzero((scores >= self.need).any(axis=1))
        return int(hits[0]) if len(hits) else -1

    def leaves(
        self, parent_cur: np.ndarray, parent_scores: np.ndarray, lo: np.ndarray, hi: np.ndarray, move_ids: np.ndarray
    ) -> int:
        """The number of the first child that reaches, or -1 (module docstring)."""
        parent_cur, parent_scores = _int32(parent_cur), _int32(parent_scores)
        lo, hi, move_ids = _int64(lo), _int64(hi), _int64(move_ids)
        if self._c is None:
            return self.leaves_reference(parent_cur, parent_scores, lo, hi, move_ids)
        if len(lo) != len(hi) or len(parent_cur) != len(lo) or len(parent_scores) != len(lo):
            raise ValueError("ball_leaves: parent_cur, parent_scores, lo and hi need one row per parent")
        return int(self._ext.ball_leaves(self._c, parent_cur, parent_scores, lo, hi, move_ids))

    def leaves_reference(
        self, parent_cur: np.ndarray, parent_scores: np.ndarray, lo: np.ndarray, hi: np.ndarray, move_ids: np.ndarray
    ) -> int:
        """:meth:`leaves` in numpy (the same integers)."""
        lo, hi, move_ids = np.asarray(lo, np.int64), np.asarray(hi, np.int64), np.asarray(move_ids, np.int64)
        if len(lo) and (lo.min() < 0 or hi.min() < 0 or hi.max() > len(move_ids)):
            raise ValueError("ball_leaves: lo/hi out of range")
        counts = np.maximum(hi - lo, 0)
        parent = np.repeat(np.arange(len(lo)), counts)
        index = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return self.children_reference(parent_cur, parent_scores, parent, move_ids[index])

    # ------------------------------------------------------------------ bounds

    def bounds(
        self, cur: np.ndarray, scores: np.ndarray, rows: np.ndarray, rise: np.ndarray, fall: np.ndarray
    ) -> np.ndarray:
        """Bool per node: its interval bound may reach (module docstring)."""
        cur, scores, rows = _int32(cur), _int32(scores), _int64(rows)
        rise, fall = _int32(rise), _int32(fall)
        if self._c is None:
            return self.bounds_reference(cur, scores, rows, rise, fall)
        if rise.shape != fall.shape:
            raise ValueError("rise and fall must have the same shape")
        out = np.empty(len(rows), np.uint8)
        self._ext.ball_bounds(self._c, cur, scores, rows, rise, fall, out)
        return out.astype(bool)

    def bounds_reference(
        self, cur: np.ndarray, scores: np.ndarray, rows: np.ndarray, rise: np.ndarray, fall: np.ndarray
    ) -> np.ndarray:
        """:meth:`bounds` in numpy (the same integers)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(rise)):
            raise ValueError("ball_bounds: rows out of range")
        c = np.asarray(cur, np.int64)[:, self.unit_col]  # (N, U)
        up = np.asarray(rise, np.int64)[rows][:, self.unit_col]
        down = np.asarray(fall, np.int64)[rows][:, self.unit_col]
        at = self.unit_at.astype(np.int64)
        turn_on = (c < at) & (c + up >= at)
        turn_off = (c >= at) & (c - down < at)
        best = np.array(scores, dtype=np.int64)
        for u in range(c.shape[1]):
            best[turn_on[:, u]] += self.gain_pos[u]
            best[turn_off[:, u]] -= self.gain_neg[u]
        return (best >= self.need).any(axis=1)
