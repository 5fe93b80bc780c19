"""The rival SAT oracle's per-question state, each piece in numpy beside its C twin.

:class:`~xsnn.solvers.rivalsat.RivalSATOracle` (read its module docstring for the maths) keeps,
from question to question,

- the interval bounds of every rival's ``D_c'`` (:class:`RivalBounds`) and the newest UNSAT
  cores of every rival's solver (:class:`RivalCores`), brought to each new fixed set by
  :class:`RivalGate` (``advance``: in C when the extension is built, else
  ``advance_reference`` in numpy);
- the recent witnesses, repaired into counterexamples for a new question
  (:class:`WitnessRepair`: ``search_c`` in C, else ``search_reference`` in numpy).

The C twins live in ``_rivalstate.c`` (the extension ``xsnn.solvers._rivalstate``, built by
``setup.py`` and loaded like the forward kernel: optional, see :func:`load_extension`); they
compute the same integers as the numpy references, which the tests check on random networks.
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

from xsnn.encoders.rivals import Ladders
from xsnn.features import FeatureSet
from xsnn.model import BSNN

__all__ = ["load_extension", "RivalBounds", "RivalCores", "RivalGate", "WitnessRepair"]

log = logging.getLogger(__name__)


def load_extension() -> ModuleType | None:
    """The compiled helpers ``xsnn.solvers._rivalstate``, or ``None`` when they were not built
    (logged at debug level; the numpy references serve then). Never compiles."""
    try:
        from xsnn.solvers import _rivalstate
    except ImportError as exc:
        log.debug("xsnn rival helpers in C not available (%s); using numpy", exc)
        return None
    return _rivalstate


class RivalGate:
    """The fixed set the rival bounds and the kept cores' counts refer to, brought from one
    question's fixed set to the next (:meth:`advance`).

    Args:
        features: the feature groups; n_pixels: the number of pixels.
        bound, cores: the rival bounds and kept cores, updated in place.
        extension: :func:`load_extension`'s module, or ``None`` (numpy only).
    """

    max_changes_in_c = 32  # more changed features than this: recomputed in numpy

    def __init__(
        self, features: FeatureSet, n_pixels: int, bound: RivalBounds, cores: RivalCores, extension: ModuleType | None
    ) -> None:
        self.bound, self.cores = bound, cores
        self.n_features = len(features)
        self.fixed: frozenset[int] = frozenset()
        self.fixed_mask = np.zeros(len(features), bool)
        self.fixed_pixels = np.zeros(n_pixels, bool)  # the pixels of the fixed features
        self._owner = features.feature_of_pixel()  # -1: a pixel of no feature, never fixed
        self._group_pixels = [np.asarray(g, np.int64) for g in features.groups]
        # the same groups as one flat list (CSR), for the bookkeeping in C
        group_ptr = np.cumsum([0] + [len(g) for g in self._group_pixels]).astype(np.int64)
        group_pixel_list = np.concatenate(self._group_pixels + [np.zeros(0, np.int64)]).astype(np.int64)
        n_rivals = len(bound.base)
        self.ruled_out, self.has_core = np.zeros(n_rivals, bool), np.zeros(n_rivals, bool)
        self.in_c = extension is not None and hasattr(extension, "rival_gate")
        self._ext, self._gate = extension, None
        if self.in_c:  # holds these arrays: they are only ever updated in place
            self._gate = extension.make_rival_gate(
                len(features),
                len(bound.bounds),
                n_rivals,
                cores.missing.shape[1],
                len(bound.term_row),
                self.fixed_mask.view(np.uint8),
                self.fixed_pixels.view(np.uint8),
                group_ptr,
                group_pixel_list,
                bound.feature_columns,
                bound.bounds,
                cores.members.view(np.uint8),
                cores.missing,
                bound.term_row,
                bound.term_a,
                bound.term_e,
                bound.term_rival,
                bound.slack_base,
                self.ruled_out.view(np.uint8),
                self.has_core.view(np.uint8),
            )

    def advance(self, fixed: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
        """Bring the fixed-feature mask, the rival bounds and the kept cores' counts from the
        previous question's fixed set to ``fixed``: successive questions differ in a few
        features, whose contributions are added or taken away (many changes: recomputed).
        Returns per rival whether its bound rules it out and whether a kept core covers it
        (bool ``(n_rivals,)`` each). In C (``rival_gate``) when it is built, else in numpy
        (:meth:`advance_reference`)."""
        changed = fixed.symmetric_difference(self.fixed)
        if self.in_c and len(changed) <= self.max_changes_in_c:
            self.fixed = fixed
            self._ext.rival_gate(self._gate, changed)  # each changed feature flips between fixed and free
            return self.ruled_out, self.has_core
        self.advance_reference(fixed, changed)
        return self.bound.slack() < 0, self.cores.covered()

    def advance_reference(self, fixed: frozenset[int], changed: frozenset[int]) -> None:
        """:meth:`advance`'s bookkeeping in numpy, for the features ``changed`` since the last call."""
        if len(changed) > self.max_changes_in_c:  # in place: the C gate holds these arrays
            mask = np.zeros(self.n_features, bool)
            mask[np.fromiter(fixed, np.int64, len(fixed))] = True
            self.fixed_mask[:] = mask
            self.fixed_pixels[:] = np.append(mask, False)[self._owner]
            self.bound.reset(mask)
            self.cores.reset(mask)
        else:
            for k in changed:
                now_fixed = k in fixed
                self.fixed_mask[k] = now_fixed
                self.fixed_pixels[self._group_pixels[k]] = now_fixed
                self.bound.toggle(k, now_fixed)
                self.cores.toggle(k, now_fixed)
        self.fixed = fixed


class RivalBounds:
    """Interval upper bounds of every rival's ``D_c'`` for a fixed set (module docstring).

    With pixel values ``v`` and ``F`` the fixed pixels, ``I_j`` lies in ``[lo_j, hi_j]`` with

        lo_j = sum_i min(0, W_ji) + sum_{i in F} (W_ji v_i - min(0, W_ji)),
        hi_j = sum_i max(0, W_ji) + sum_{i in F} (W_ji v_i - max(0, W_ji)),

    kept from question to question: the changed features' columns added or taken away
    (:meth:`toggle`), or a matrix-vector product when many changed (:meth:`reset`); small
    integers, so the float64 sums are exact.
    A term ``(j, a, e)`` adds ``e`` to the bound when ``hi_j >= a`` (``e > 0``) or ``lo_j >= a``
    (``e < 0``).
    """

    def __init__(
        self,
        w: np.ndarray,
        value: np.ndarray,
        features: FeatureSet,
        rivals: list[tuple[int, int, list[tuple[int, int, int]]]],
    ) -> None:
        n_neurons = len(w)
        wv = w * value[None, :].astype(np.int64)
        self._start = np.concatenate([np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1)]).astype(np.float64)
        step = np.concatenate([wv - np.minimum(w, 0), wv - np.maximum(w, 0)]).astype(np.float64)  # (2n_0, n)
        self.base = np.array([b for b, _, _ in rivals], np.int64)
        self.need = np.array([need for _, need, _ in rivals], np.int64)
        self._rival = np.concatenate(
            [np.full(len(t), r, np.int64) for r, (_, _, t) in enumerate(rivals)] or [np.zeros(0, np.int64)]
        )
        terms = np.array([term for _, _, t in rivals for term in t], np.int64).reshape(-1, 3)
        j, a, e = terms[:, 0], terms[:, 1], terms[:, 2]
        self._a = a.astype(np.float64)  # compared with the float64 bounds (small integers: exact)
        # a gain is read from hi_j (row n_0 + j), a loss from lo_j (row j)
        self._row = np.where(e > 0, n_neurons + j, j)
        # gains[r, t]: the gain e of term t if it belongs to rival r, else 0 (upper = base + gains @ reached)
        self._gains = np.zeros((len(rivals), len(terms)))
        self._gains[self._rival, np.arange(len(terms))] = e
        # wired[r, k]: feature k has a pixel with a nonzero weight into a neuron of rival r's terms
        pixel_wired = np.zeros((len(rivals), w.shape[1]), bool)
        for r, (_, _, t) in enumerate(rivals):
            neurons = np.unique(np.array([jj for jj, _, _ in t], np.int64))
            pixel_wired[r] = (w[neurons] != 0).any(axis=0)
        owner = features.feature_of_pixel()
        wired = np.zeros((len(rivals), len(features) + 1), bool)
        for r in range(len(rivals)):
            np.logical_or.at(wired[r], owner, pixel_wired[r])
        self.wired = wired[:, :-1]
        # the change of (lo, hi) when feature k goes from free to fixed: row k
        feature_step = np.zeros((len(features) + 1, len(step)))  # last row: unowned pixels
        np.add.at(feature_step, owner, step.T)
        self.feature_columns = np.ascontiguousarray(feature_step[:-1])
        self.bounds = self._start.copy()  # nothing fixed
        # the terms one by one, for the C rival_gate: row of (lo, hi), break, gain, rival
        self.term_row, self.term_a = self._row.astype(np.int64), self._a
        self.term_e, self.term_rival = e.astype(np.int64), self._rival.astype(np.int64)
        self.slack_base = (self.base - self.need).astype(np.int64)

    def reset(self, fixed_mask: np.ndarray) -> None:
        """Compute ``(lo, hi)`` afresh for the fixed features ``fixed_mask`` (bool per feature)."""
        self.bounds[:] = self._start + fixed_mask.astype(np.float64) @ self.feature_columns

    def toggle(self, feature: int, fixed: bool) -> None:
        """Feature ``feature`` became fixed (``fixed``) or free: add or take away its column
        (integers of small magnitude: the float64 sums are exact)."""
        if fixed:
            self.bounds += self.feature_columns[feature]
        else:
            self.bounds -= self.feature_columns[feature]

    def slack(self) -> np.ndarray:
        """Per rival: its interval upper bound of ``D_c'`` minus ``need`` for the current fixed
        set; the solver must decide the rivals with slack ``>= 0``, the others cannot win."""
        reached = (self.bounds[self._row] >= self._a).astype(np.float64)
        return (self.base - self.need) + self._gains @ reached


class RivalCores:
    """The newest UNSAT cores of each rival's solver, ``size`` per rival (module docstring).

    Rival ``r`` cannot win when the fixed set contains one of its kept cores: its one-sided
    question is monotone in the fixed set. To tell that quickly, each kept core's count of
    features that are *not* fixed (``missing``) is kept up to date as features are fixed and
    freed (:meth:`toggle`); a core lies inside the fixed set iff its count is 0. An empty slot
    counts ``n_features + 1``.
    """

    def __init__(self, n_rivals: int, n_features: int, size: int = 8) -> None:
        self.members = np.zeros((n_features, n_rivals, size), bool)  # [k, r, slot]: feature k in the core
        self._occupied = np.zeros((n_rivals, size), bool)
        self.missing = np.full((n_rivals, size), n_features + 1, np.int64)
        self._oldest = np.zeros(n_rivals, np.int64)  # per rival: the slot the next core replaces

    def reset(self, fixed_mask: np.ndarray) -> None:
        """Count every kept core's free features afresh for ``fixed_mask`` (bool per feature)."""
        counts = np.count_nonzero(self.members & ~fixed_mask[:, None, None], axis=0)
        self.missing[:] = np.where(self._occupied, counts, len(self.members) + 1)

    def toggle(self, feature: int, fixed: bool) -> None:
        """Feature ``feature`` became fixed (``fixed``) or free."""
        if fixed:
            self.missing -= self.members[feature]
        else:
            self.missing += self.members[feature]

    def covered(self) -> np.ndarray:
        """Per rival: True when one of its kept cores lies inside the fixed set (bool ``(n_rivals,)``)."""
        return (self.missing == 0).any(axis=1)

    def add(self, rival: int, core: np.ndarray) -> None:
        """Keep ``core`` (feature indices, all fixed now) in the place of rival ``rival``'s oldest
        kept core (the slots are used in turn)."""
        slot = self._oldest[rival]
        self._oldest[rival] = (slot + 1) % self.missing.shape[1]
        self.members[:, rival, slot] = False
        self.members[core, rival, slot] = True
        self._occupied[rival, slot] = True
        self.missing[rival, slot] = 0

    def union(self, rivals: np.ndarray) -> np.ndarray:
        """The union (bool ``(n_features,)``) of one kept core inside the fixed set per rival in
        the mask ``rivals`` (each must be :meth:`covered`)."""
        chosen = np.flatnonzero(rivals)
        slots = np.argmax(self.missing[chosen] == 0, axis=1)
        return self.members[:, chosen, slots].any(axis=1)


class WitnessRepair:
    """Counterexamples made from recent witnesses (module docstring), scored exactly.

    A witness is kept as its pixel values ``x`` (bool ``(n,)``), its inputs ``I = W x`` and the
    fixed pixels of its question. For a new question with fixed pixels ``P``, its candidate is

        x'_i = v_i       for i in P,
        x'_i = not v_i   for i fixed for x but free now (x agreed with the instance there),
        x'_i = x_i       otherwise,

    whose inputs are ``I' = I + sum_{i: x'_i != x_i} (x'_i - x_i) W_{:,i}`` (a few pixels in
    deletion). With static coding a neuron's spike count is its ladder over the all-free input
    range, ``count_j(I'_j) = base_j + sum_m delta_jm [I'_j >= a_jm]``, and ``x'`` is a
    counterexample iff some class ``c'`` reaches ``(R_c' - R_c) . count >= need`` (1 above the
    target, 0 below: ties go to the lowest index). All sums are of small integers in float32
    (``|I_j| <= n <= 2**24``): exact.
    """

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        ladders: Ladders,
        target: int,
        extension: ModuleType | None = None,
        keep: int = 4,
    ) -> None:
        n = model.n_inputs
        self._w = np.ascontiguousarray(model.weights[0], dtype=np.float32)  # (n_0, n)
        self._w_t = np.ascontiguousarray(self._w.T)  # (n, n_0): row i is W_{:,i}
        self._value = np.asarray(instance[0], bool)
        self._shape = instance.shape
        n_0 = len(ladders.base_counts)
        width = max((len(a) for a in ladders.breaks), default=0)
        self._breaks = np.full((width, n_0), np.inf, np.float32)  # row m: each neuron's m-th break
        self._deltas = np.zeros((width, n_0), np.float32)
        for j, (a, delta) in enumerate(zip(ladders.breaks, ladders.deltas)):
            self._breaks[: len(a), j], self._deltas[: len(delta), j] = a, delta
        self._base_counts = ladders.base_counts.astype(np.float32)
        others = [c for c in range(model.n_classes) if c != target]
        readout = model.readout.astype(np.float32)
        self._score_gap = (readout[others] - readout[target]).T  # (n_0, classes - 1)
        self._need = np.array([1.0 if c > target else 0.0 for c in others], np.float32)
        self._x = np.zeros((keep, n), bool)  # the kept witnesses, the newest first
        self._differs = np.zeros((keep, n), bool)  # x != v
        self._inputs = np.zeros((keep, n_0), np.float32)  # their I = W x
        self._fixed_pixels = np.zeros((keep, n), bool)  # the fixed pixels of their questions
        self._kept = 0
        # the same search in C (``extension``, :meth:`search_c`), built once: int32
        # ladders (absent breaks never reached), score gaps and needs, W by columns (pixel i: its
        # neurons and weight signs)
        self.in_c = extension is not None and hasattr(extension, "make_repair_search")
        self._ext, self._c_search = extension, None
        if self.in_c:
            breaks = np.full(self._breaks.shape, np.iinfo(np.int32).max, np.int32)
            finite = np.isfinite(self._breaks)
            breaks[finite] = self._breaks[finite]
            pixel, neuron = np.nonzero(self._w_t)  # by pixel, then neuron
            self._c_search = extension.make_repair_search(
                n_0,
                n,
                width,
                len(others),
                breaks,
                self._deltas.astype(np.int32),
                self._base_counts.astype(np.int32),
                np.ascontiguousarray(self._score_gap, dtype=np.int32),
                self._need.astype(np.int32),
                np.searchsorted(pixel, np.arange(n + 1)).astype(np.int64),
                neuron.astype(np.int32),
                self._w_t[pixel, neuron].astype(np.int8),
            )

    def add(self, x: np.ndarray, fixed_pixels: np.ndarray, inputs: np.ndarray | None = None) -> None:
        """Keep witness pixels ``x`` (bool ``(n,)``) found with the pixels ``fixed_pixels`` fixed
        (``inputs``: ``W x`` if known)."""
        for kept in (self._x, self._differs, self._inputs, self._fixed_pixels):
            kept[1:] = kept[:-1]
        self._x[0] = x
        np.not_equal(x, self._value, out=self._differs[0])
        self._inputs[0] = self._w @ x.astype(np.float32) if inputs is None else inputs
        self._fixed_pixels[0] = fixed_pixels
        self._kept = min(self._kept + 1, len(self._x))

    def changes_prediction(self, inputs: np.ndarray) -> np.ndarray:
        """Per row of first-layer inputs ``I`` (``(m, n_0)``, as ``W x``): does the prediction
        move away from the target? (bool ``(m,)``; class docstring)"""
        counts = np.empty(inputs.shape, np.float32)
        counts[:] = self._base_counts
        for a, delta in zip(self._breaks, self._deltas):
            counts += delta * (inputs >= a)
        return (counts @ self._score_gap >= self._need).any(axis=1)

    def find(self, fixed_pixels: np.ndarray) -> np.ndarray | None:
        """A counterexample ``(T, n)`` with the pixels ``fixed_pixels`` fixed, or ``None``: the
        first kept witness (newest first) whose candidate wins (class docstring), which is then
        kept as the newest witness."""
        found = self.search_c(fixed_pixels) if self.in_c else self.search_reference(fixed_pixels)
        if found is None:
            return None
        best, inputs = found
        # the candidate: v on the fixed pixels, x flipped where it was fixed and agreed with v
        candidate = np.where(
            fixed_pixels, self._value, self._x[best] ^ (self._fixed_pixels[best] & ~self._differs[best])
        )
        self.add(candidate, fixed_pixels, inputs)
        witness = np.empty(self._shape, np.uint8)
        witness[:] = candidate
        return witness

    def search_reference(self, fixed_pixels: np.ndarray) -> tuple[int, np.ndarray] | None:
        """The search of :meth:`find` in numpy: ``(b, I')`` for the first kept witness ``b``
        (newest first) whose candidate wins, with the candidate's inputs ``I' = W x'``
        (float32 ``(n_0,)``), or ``None``."""
        kept = self._kept
        if not kept:
            return None
        x, differs = self._x[:kept], self._differs[:kept]
        # x'_i != x_i: a fixed pixel where x differs from v (reset), or a free pixel that was
        # fixed for x and where x = v (flipped); a changed pixel flips: x'_i = not x_i
        changed = np.where(fixed_pixels, differs, self._fixed_pixels[:kept] & ~differs)
        rows, pixels = np.nonzero(changed)  # the changed pixels, candidate by candidate
        steps = np.zeros((kept, len(pixels)), np.float32)  # +1: a pixel turned on, -1: off
        steps[rows, np.arange(len(pixels))] = 1.0 - 2.0 * x[rows, pixels]
        inputs = self._inputs[:kept] + steps @ self._w_t[pixels]
        wins = self.changes_prediction(inputs)
        if not wins.any():
            return None
        best = int(np.argmax(wins))
        return best, inputs[best]

    def search_c(self, fixed_pixels: np.ndarray) -> tuple[int, np.ndarray] | None:
        """:meth:`search_reference` in C (``_rivalstate.c``: ``repair_search``, the same integers:
        sparse columns of ``W``, int32 ladders); needs :attr:`in_c`."""
        kept = self._kept
        if not kept:
            return None
        inputs = np.empty(self._inputs.shape[1], np.int32)
        best = self._ext.repair_search(
            self._c_search,
            kept,
            self._x[:kept].view(np.uint8),
            self._differs[:kept].view(np.uint8),
            self._inputs[:kept].astype(np.int32),
            self._fixed_pixels[:kept].view(np.uint8),
            np.ascontiguousarray(fixed_pixels, dtype=bool).view(np.uint8),
            inputs,
        )
        return None if best < 0 else (best, inputs.astype(np.float32))
