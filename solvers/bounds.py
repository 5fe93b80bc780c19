"""Sound interval bound propagation: can fixing ``S`` be *proved* to entail the prediction, cheaply?

For the entailment question of :mod:`xsnn.solvers.oracle` (instance ``v``, target class ``c``,
fixed features ``S``, optional distance bound ``k``), this module computes intervals that
contain, for *every* admissible completion ``x``, the value of

* every first-layer input current over every time window,
  ``J_j(a, t) = sum_{u=a..t} sum_i W_ji x_i(u)``;
* every potential ``V^l_j(t)`` (before reset) and every spike ``s^l_j(t)``, as a three-valued
  status: *known 0* (``upper(V) < theta``), *known 1* (``lower(V) >= theta``) or *unknown*;
* every spike count ``N^l_j = sum_t s^l_j(t)`` and every score difference
  ``score_c - score_c'``.

The prediction provably stays ``c`` (ties go to the lowest index) when::

    lower(score_c - score_c') >= 1   for every c' < c
    lower(score_c - score_c') >= 0   for every c' > c

where ``score_c - score_c' = sum_j (W^out_cj - W^out_c'j) N^L_j`` is bounded per class pair,
term by term, from the count bounds (tighter than subtracting two independent score bounds).

How each quantity is bounded
----------------------------
*Input currents.* A fixed pixel contributes its instance value. A free pixel's train ``r``
ranges over the coding's free domain; its contribution to a window sum is ``W_ji * sum_{u in
window} r_u``, whose extremes are attained at the extremes of the window spike count over the
domain (linear in it). With a distance bound ``k`` smaller than the number of free features,
each free feature ``g`` contributes a *change* ``delta_g`` in ``[dmin_g, dmax_g]`` (``0`` is
always attainable by keeping the instance value) and at most ``k`` features change, so the
lower bound adds the ``k`` most negative ``dmin_g`` and the upper bound the ``k`` largest
``dmax_g``. Pixels that belong to no feature are always free and never count in the distance.

*First layer, time-constant input* (static coding: every free train and every instance train
is constant over time). The current ``I_j`` is then one integer in ``[lo_j, hi_j]`` for all
``t``, and the neuron's spike train is a function ``f_j(I_j)``: no spike if ``I_j <= 0``, a
spike at every step if ``I_j >= theta_j``. The spike statuses and the exact count range over
the integers of ``[clip(lo_j), clip(hi_j)]`` are read from a per-neuron table of ``f_j`` on
``0..theta_j`` (prefix sums make each query O(1)). This is exact per neuron.

*Every other layer* runs the integer dynamics on intervals. With ``Va(t)`` the post-reset
potential interval:

* zero reset: ``V(t) = J(r, t)`` where ``r`` is 0 or one step after the last spike; ``r`` is
  admissible when the spike at ``r - 1`` is not known 0 and no spike in ``[r, t-1]`` is
  known 1; ``V(t)`` lies in the hull of the admissible ``J(r, t)``;
* subtract reset: for every ``a <= t``,
  ``V(t) = Va(a-1) + J(a, t) - theta * N[a, t-1]`` with ``N[a, t-1]`` bounded by the known-1 and
  not-known-0 spike counts in the window; ``V(t)`` lies in the intersection over ``a``;
* both: intersected with the one-step recursion ``Va(t-1) + J(t, t)``;
* reset of an *unknown* spike: the hull of both branches, ``[min(lo, 0), theta - 1]`` (zero) or
  ``[min(lo, 0), max(theta - 1, hi - theta)]`` (subtract); known spikes reset exactly.

Input currents of deeper layers come from the statuses of the layer below
(``W+ @ known1 + W- @ maybe1`` and vice versa), summed over windows.

*Linear (chord) bound*, one spiking layer with time-constant input: each count
``N_j = g_j(I_j)`` lies between two parallel lines in ``I_j`` (the chord of ``g_j`` over
``[lo_j, hi_j]`` shifted by its largest deviations), so ``score_c - score_c'`` is bounded below
by a linear function of the input pixels, minimised exactly over the free pixels (and the
distance bound). It keeps the correlation between neurons that share inputs; the larger of
the two lower bounds is used.

Soundness is property-tested against :class:`~xsnn.solvers.bruteforce.BruteForceOracle`:
every interval contains the value of every completion, and ``entailed`` is never claimed when
a completion changes the prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, integrate_and_fire
from xsnn.question import Question

__all__ = ["BoundPropagator", "Bounds", "LayerBounds"]

# Above this many table entries (neurons x (max threshold + 2) x T) the exact constant-current
# table is not built and the first layer falls back to the interval dynamics.
_MAX_TABLE_ENTRIES = 20_000_000
# Window sums for every (a, t) pair are precomputed up to this many steps; beyond it only
# single-step windows are used (window sums are then sums of single-step bounds: still sound).
_MAX_WINDOW_STEPS = 8


@dataclass(frozen=True)
class LayerBounds:
    """Bounds for one spiking layer, valid for every admissible completion.

    Attributes:
        known_one: ``(T, n_l)`` bool, ``True`` where the spike is 1 in every completion.
        maybe_one: ``(T, n_l)`` bool, ``False`` where the spike is 0 in every completion.
        count_lo, count_hi: ``(n_l,)`` int64 bounds on the spike count over ``T`` steps.
        potential_lo, potential_hi: ``(T, n_l)`` int64 bounds on ``V(t)`` before reset, or
            ``None`` for a layer solved exactly from the constant-current table.
    """

    known_one: np.ndarray
    maybe_one: np.ndarray
    count_lo: np.ndarray
    count_hi: np.ndarray
    potential_lo: np.ndarray | None
    potential_hi: np.ndarray | None


@dataclass(frozen=True)
class Bounds:
    """The outcome of one propagation.

    Attributes:
        fixed: the fixed feature set.
        layers: per spiking layer, its :class:`LayerBounds`.
        score_lo, score_hi: ``(n_classes,)`` bounds on each score.
        margin_lo: ``(n_classes,)`` lower bounds on ``score_target - score_c`` (0 at the target).
        entailed: ``True`` when the bounds prove the prediction stays the target.
        sensitivity: ``(n_classes, n_inputs)`` slopes of the linear margin bound per input pixel
            (one spiking layer, time-constant input), else ``None``; used to branch in
            :class:`~xsnn.solvers.branchbound.BoundSearch`.
    """

    fixed: frozenset[int]
    layers: tuple[LayerBounds, ...]
    score_lo: np.ndarray
    score_hi: np.ndarray
    margin_lo: np.ndarray
    entailed: bool
    sensitivity: np.ndarray | None = None


@dataclass(frozen=True)
class _Currents:
    """First-layer window currents: bounds, the part from pixels at fixed values, the loosely free pixels."""

    lo: np.ndarray  # (n_windows, H)
    hi: np.ndarray
    base: np.ndarray  # current of the pixels held at the instance (fixed, or distance-bounded)
    loose: np.ndarray  # (n,) bool: free pixels not counted by the distance bound
    restricted_features: np.ndarray | None  # free features under the distance bound, if it binds


class BoundPropagator:
    """Interval bound propagation for one entailment question (model, instance, features, target, k).

    Build once per instance; :meth:`entailed` / :meth:`propagate` are then cheap (a few
    matrix-vector products and ``O(T^2)`` vector operations per layer).
    """

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
    ) -> None:
        question = Question.build(model, instance, features, target, max_distance)
        self.model, self.instance, self.features = model, question.instance, question.features
        self.target, self.max_distance = question.target, question.max_distance
        T = model.n_steps
        self._T = T
        self._owner = self.features.feature_of_pixel()
        self._unowned = self._owner < 0
        trains = model.coding.free_trains(T).astype(np.int64)  # (k, T)
        v = self.instance.astype(np.int64)  # (T, n)
        w1 = model.weights[0].astype(np.float64)
        self._w1 = w1
        self._w1_pos = np.maximum(w1, 0.0)
        self._w1_neg = np.minimum(w1, 0.0)
        self._constant_input = bool(np.all(trains == trains[:, :1]) and np.all(v == v[:1]))
        if self._constant_input:
            self._windows = [(0, 0)]
        elif T <= _MAX_WINDOW_STEPS:
            self._windows = [(a, t) for t in range(T) for a in range(t + 1)]
        else:
            self._windows = [(t, t) for t in range(T)]
        n_w = len(self._windows)
        # Window spike-count ranges of a free pixel, and the instance's window counts.
        self._free_lo = np.empty(n_w, np.float64)
        self._free_hi = np.empty(n_w, np.float64)
        self._inst = np.empty((n_w, model.n_inputs), np.float64)
        for w, (a, t) in enumerate(self._windows):
            counts = trains[:, a : t + 1].sum(axis=1)
            self._free_lo[w], self._free_hi[w] = counts.min(), counts.max()
            self._inst[w] = v[a : t + 1].sum(axis=0)
        # Current at the instance, per window: (n_w, H).
        self._inst_current = self._inst @ w1.T
        # Per-feature change ranges, per window: (n_w, H, n_features), for the distance bound.
        self._delta_lo = self._delta_hi = None
        if max_distance is not None:
            self._delta_lo, self._delta_hi = self._feature_deltas(w1)
        # Exact first-layer tables for time-constant input.
        self._table = None
        if self._constant_input:
            self._table = _ConstantCurrentTable.build(model.thresholds[0], T, model.reset)
        self._readout = model.readout.astype(np.int64)
        diff = self._readout[self.target][None, :] - self._readout  # (C, n_last)
        self._diff_pos = np.maximum(diff, 0)
        self._diff_neg = np.minimum(diff, 0)
        self._need = np.where(np.arange(model.n_classes) < self.target, 1, 0)
        self._need[self.target] = 0
        self._layer_pos = [np.maximum(w.astype(np.int64), 0) for w in model.weights]
        self._layer_neg = [np.minimum(w.astype(np.int64), 0) for w in model.weights]

    # ------------------------------------------------------------------ public

    def entailed(self, fixed: Iterable[int]) -> bool:
        """``True`` when the bounds prove that fixing ``fixed`` entails the target (sound, incomplete)."""
        return self.propagate(fixed).entailed

    def propagate(self, fixed: Iterable[int], values: np.ndarray | None = None, budget: int | None = None) -> Bounds:
        """Bounds on every spike, count and score difference with ``fixed`` fixed (see module doc).

        ``values`` (``(T, n)``, default the instance) gives the spikes of the fixed features'
        pixels (a branch-and-bound node assigns features to values other than the instance's);
        the free features still count their distance from the instance, against ``budget``
        (default ``max_distance``) changes.
        """
        fixed_set = fixed if isinstance(fixed, frozenset) else frozenset(int(k) for k in fixed)
        n_features = len(self.features)
        bad = (
            [k for k in fixed_set if not 0 <= k < n_features]
            if fixed_set and (min(fixed_set) < 0 or max(fixed_set) >= n_features)
            else []
        )
        if bad:
            raise ValueError(f"unknown feature index(es) {sorted(bad)[:5]}; there are {len(self.features)} features")
        if budget is None:
            budget = self.max_distance
        elif budget < 0:
            raise ValueError(f"distance budget must be >= 0, got {budget}")
        cur = self._first_layer_windows(fixed_set, values, budget)
        theta = self.model.thresholds[0]
        if self._table is not None:
            first = self._table.query(cur.lo[0], cur.hi[0])
        else:
            first = _interval_layer(self._window_matrix(cur.lo), self._window_matrix(cur.hi), theta, self.model.reset)
        layers = [first]
        for l in range(1, len(self.model.weights)):
            below = layers[-1]
            k1 = below.known_one.astype(np.int64)
            m1 = below.maybe_one.astype(np.int64)
            i_lo = k1 @ self._layer_pos[l].T + m1 @ self._layer_neg[l].T  # (T, H)
            i_hi = m1 @ self._layer_pos[l].T + k1 @ self._layer_neg[l].T
            layers.append(
                _interval_layer(_step_windows(i_lo), _step_windows(i_hi), self.model.thresholds[l], self.model.reset)
            )
        last = layers[-1]
        r_pos, r_neg = np.maximum(self._readout, 0), np.minimum(self._readout, 0)
        score_lo = r_pos @ last.count_lo + r_neg @ last.count_hi
        score_hi = r_pos @ last.count_hi + r_neg @ last.count_lo
        margin_lo = self._diff_pos @ last.count_lo + self._diff_neg @ last.count_hi
        sensitivity = None
        if self._table is not None and len(layers) == 1:
            margin_lo, sensitivity = self._linear_margin(cur, margin_lo, budget)
        margin_lo[self.target] = 0
        entailed = bool(np.all(margin_lo >= self._need))
        return Bounds(fixed_set, tuple(layers), score_lo, score_hi, margin_lo, entailed, sensitivity)

    # ------------------------------------------------------------------ first layer

    def _feature_deltas(self, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per window, neuron and feature: the range of the current change when that feature moves."""
        n_w, n_feat = len(self._windows), len(self.features)
        owned = np.flatnonzero(~self._unowned)
        order = owned[np.argsort(self._owner[owned], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(self._owner[order]) != 0])
        lo = np.zeros((n_w, w1.shape[0], n_feat))
        hi = np.zeros((n_w, w1.shape[0], n_feat))
        for w in range(n_w):
            # change of the window count of each pixel: [free_lo - inst, free_hi - inst]; times W, per pixel
            c_lo = self._free_lo[w] - self._inst[w][order]
            c_hi = self._free_hi[w] - self._inst[w][order]
            a = w1[:, order] * c_lo[None, :]
            b = w1[:, order] * c_hi[None, :]
            lo[w] = np.add.reduceat(np.minimum(a, b), starts, axis=1)
            hi[w] = np.add.reduceat(np.maximum(a, b), starts, axis=1)
        # a feature may always keep its instance value: change 0 is attainable (clip for instances outside the domain)
        return np.minimum(lo, 0.0), np.maximum(hi, 0.0)

    def _first_layer_windows(self, fixed: frozenset[int], values: np.ndarray | None, budget: int | None) -> _Currents:
        """Integer bounds ``(n_windows, H)`` on the first-layer window currents, and their parts."""
        feature_fixed = np.zeros(len(self.features), bool)
        if fixed:
            feature_fixed[np.fromiter(fixed, np.int64, len(fixed))] = True
        fixed_mask = np.where(self._unowned, False, feature_fixed[np.maximum(self._owner, 0)])
        free_feats = np.flatnonzero(~feature_fixed)
        restricted = budget is not None and budget < len(free_feats)
        if values is None:
            held = self._inst
        else:  # fixed pixels take ``values``; distance-bounded free pixels sit at the instance
            x = np.asarray(values, dtype=np.float64)
            held = np.where(fixed_mask[None, :], self._window_sums(x), self._inst)
        if restricted:
            # free pixels of features move under the distance bound; unowned pixels move freely
            loose = self._unowned & ~fixed_mask
        else:
            loose = ~fixed_mask
        keep = (~loose).astype(np.float64)
        loose_f = loose.astype(np.float64)
        base = (held * keep[None, :]) @ self._w1.T  # (n_w, H)
        pos_loose = loose_f @ self._w1_pos.T  # (H,)
        neg_loose = loose_f @ self._w1_neg.T
        lo = base + self._free_lo[:, None] * pos_loose[None, :] + self._free_hi[:, None] * neg_loose[None, :]
        hi = base + self._free_hi[:, None] * pos_loose[None, :] + self._free_lo[:, None] * neg_loose[None, :]
        if restricted:
            k = int(budget)
            if k > 0:
                d_lo = self._delta_lo[:, :, free_feats]
                d_hi = self._delta_hi[:, :, free_feats]
                lo = lo + np.partition(d_lo, k - 1, axis=2)[:, :, :k].sum(axis=2)
                hi = hi - np.partition(-d_hi, k - 1, axis=2)[:, :, :k].sum(axis=2)
        return _Currents(
            np.rint(lo).astype(np.int64),
            np.rint(hi).astype(np.int64),
            np.rint(base).astype(np.int64),
            loose,
            free_feats if restricted else None,
        )

    def _window_sums(self, x: np.ndarray) -> np.ndarray:
        """Per-window spike counts ``(n_windows, n)`` of an input ``(T, n)``."""
        return np.stack([x[a : t + 1].sum(axis=0) for a, t in self._windows])

    def _linear_margin(
        self, cur: _Currents, margin_lo: np.ndarray, budget: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tighter margin bounds for one spiking layer with time-constant input (chord relaxation).

        The count ``N_j = g_j(I_j)`` of neuron ``j`` is a function of its one integer current
        ``I_j in [lo_j, hi_j]``. With the chord slope ``s_j`` through the endpoints and the largest
        deviations ``d+_j, d-_j`` of ``g_j`` above / below the chord over the interval, ``g_j`` lies
        between the chord ``-d-_j`` and ``+d+_j``. So ``score_c - score_c' = sum_j D_j g_j(I_j)`` is
        bounded below by a constant plus a *linear* function of the input pixels, whose minimum
        over the free pixels (and the distance bound) is exact. Unlike the interval bound, this
        keeps the correlation between neurons that share inputs (one free pixel: exact).
        Also returns the slopes ``(C, n)`` of that linear function per input pixel (the
        sensitivity used to branch in :class:`~xsnn.solvers.branchbound.BoundSearch`).
        """
        tab = self._table
        lo, hi = cur.lo[0], cur.hi[0]
        rows = np.arange(tab.theta.size)
        c_lo, c_hi = np.clip(lo, 0, tab.theta), np.clip(hi, 0, tab.theta)
        g_lo = tab.counts[rows, c_lo].astype(np.float64)
        g_hi = tab.counts[rows, c_hi].astype(np.float64)
        width = (hi - lo).astype(np.float64)
        slope = np.divide(g_hi - g_lo, width, out=np.zeros_like(width), where=width > 0)
        grid = np.arange(tab.counts.shape[1])[None, :]
        inside = (grid >= c_lo[:, None]) & (grid <= c_hi[:, None])
        dev = tab.counts - (g_lo[:, None] + slope[:, None] * (grid - lo[:, None]))
        above = np.maximum(np.where(inside, dev, 0.0).max(axis=1), 0.0)  # g <= chord + above
        below = np.maximum(np.where(inside, -dev, 0.0).max(axis=1), 0.0)  # g >= chord - below
        diff = (self._diff_pos + self._diff_neg).astype(np.float64)  # (C, H): W_c - W_c'
        const = diff @ (g_lo + slope * (cur.base[0] - lo)) - self._diff_pos @ below + self._diff_neg @ above
        coef = (diff * slope[None, :]) @ self._w1  # (C, n): d margin / d x_i through the chords
        v0 = self._inst[0]
        f_lo, f_hi = self._free_lo[0], self._free_hi[0]
        loose = cur.loose
        total = const + np.minimum(coef[:, loose] * f_lo, coef[:, loose] * f_hi).sum(axis=1)
        if cur.restricted_features is not None and budget > 0:
            change = np.minimum(coef * (f_lo - v0)[None, :], coef * (f_hi - v0)[None, :])  # (C, n)
            owned = ~self._unowned
            per_feature = np.zeros((coef.shape[0], len(self.features)))
            np.add.at(per_feature.T, self._owner[owned], change[:, owned].T)
            per_feature = np.minimum(per_feature[:, cur.restricted_features], 0.0)
            k = min(int(budget), per_feature.shape[1])
            total = total + np.partition(per_feature, k - 1, axis=1)[:, :k].sum(axis=1)
        linear = np.ceil(total - 1e-6).astype(np.int64)
        return np.maximum(margin_lo, linear), coef

    def _window_matrix(self, values: np.ndarray) -> np.ndarray:
        """Arrange per-window values ``(n_w, H)`` as ``(T, T, H)`` indexed ``[a, t]``."""
        T = self._T
        if self._constant_input:
            return _step_windows(np.repeat(values[:1], T, axis=0))
        if len(self._windows) == T * (T + 1) // 2:
            out = np.zeros((T, T, values.shape[1]), np.int64)
            for w, (a, t) in enumerate(self._windows):
                out[a, t] = values[w]
            return out
        return _step_windows(values)


def _step_windows(step: np.ndarray) -> np.ndarray:
    """Window sums ``[a, t]`` (``a <= t``) of per-step values ``(T, H)``: ``(T, T, H)``."""
    T = step.shape[0]
    prefix = np.concatenate([np.zeros((1, step.shape[1]), np.int64), np.cumsum(step, axis=0)])
    out = np.zeros((T, T, step.shape[1]), np.int64)
    for t in range(T):
        out[: t + 1, t] = prefix[t + 1][None, :] - prefix[: t + 1]
    return out


def _interval_layer(j_lo: np.ndarray, j_hi: np.ndarray, theta: np.ndarray, reset: str) -> LayerBounds:
    """Interval dynamics of one layer from window-current bounds ``(T, T, H)`` (see module doc)."""
    T, _, H = j_lo.shape
    theta = theta.astype(np.int64)
    known1 = np.zeros((T, H), bool)
    maybe1 = np.zeros((T, H), bool)
    v_lo = np.zeros((T, H), np.int64)
    v_hi = np.zeros((T, H), np.int64)
    after_lo = np.zeros((T + 1, H), np.int64)  # after_lo[t + 1]: post-reset potential after step t
    after_hi = np.zeros((T + 1, H), np.int64)
    for t in range(T):
        lo = after_lo[t] + j_lo[t, t]
        hi = after_hi[t] + j_hi[t, t]
        if reset == "zero":
            w_lo = np.full(H, np.iinfo(np.int64).max)
            w_hi = np.full(H, np.iinfo(np.int64).min)
            for r in range(t + 1):
                ok = ~known1[r:t].any(axis=0)
                if r > 0:
                    ok &= maybe1[r - 1]
                w_lo = np.where(ok, np.minimum(w_lo, j_lo[r, t]), w_lo)
                w_hi = np.where(ok, np.maximum(w_hi, j_hi[r, t]), w_hi)
            lo, hi = np.maximum(lo, w_lo), np.minimum(hi, w_hi)
        else:
            for a in range(t):
                n_min = known1[a:t].sum(axis=0)
                n_max = maybe1[a:t].sum(axis=0)
                lo = np.maximum(lo, after_lo[a] + j_lo[a, t] - theta * n_max)
                hi = np.minimum(hi, after_hi[a] + j_hi[a, t] - theta * n_min)
        v_lo[t], v_hi[t] = lo, hi
        k1 = lo >= theta
        m1 = hi >= theta
        known1[t], maybe1[t] = k1, m1
        unknown = m1 & ~k1
        if reset == "zero":
            a_lo = np.where(k1, 0, np.where(unknown, np.minimum(lo, 0), lo))
            a_hi = np.where(k1, 0, np.where(unknown, theta - 1, hi))
        else:
            a_lo = np.where(k1, lo - theta, np.where(unknown, np.minimum(lo, 0), lo))
            a_hi = np.where(k1, hi - theta, np.where(unknown, np.maximum(theta - 1, hi - theta), hi))
        after_lo[t + 1], after_hi[t + 1] = a_lo, a_hi
    count_lo = known1.sum(axis=0).astype(np.int64)
    count_hi = maybe1.sum(axis=0).astype(np.int64)
    return LayerBounds(known1, maybe1, count_lo, count_hi, v_lo, v_hi)


@dataclass(frozen=True)
class _ConstantCurrentTable:
    """Response of every neuron of a layer to every constant current ``c`` in ``0..theta_j``.

    ``prefix[j, c, t]`` counts the currents ``c' < c`` for which neuron ``j`` spikes at ``t``;
    ``counts[j, c]`` is the spike count at current ``c``; ``monotone`` says whether the count is
    non-decreasing in ``c`` for every neuron (then range extremes are at the endpoints).
    """

    theta: np.ndarray
    prefix: np.ndarray
    counts: np.ndarray
    monotone: bool

    @classmethod
    def build(cls, theta: np.ndarray, n_steps: int, reset: str) -> _ConstantCurrentTable | None:
        theta = theta.astype(np.int64)
        top = int(theta.max())
        if theta.size * (top + 2) * n_steps > _MAX_TABLE_ENTRIES:
            return None
        c = np.arange(top + 1, dtype=np.int64)[None, :]  # (1, G)
        th = theta[:, None]
        # every neuron fed every constant current 0..top: spikes (theta.size, G, T)
        trains, _ = integrate_and_fire(np.broadcast_to(c[:, None, :], (theta.size, n_steps, top + 1)), th, reset)
        spikes = trains.transpose(0, 2, 1).astype(bool)
        valid = c <= th  # currents above theta_j are clipped to theta_j, never queried
        spikes &= valid[:, :, None]
        prefix = np.concatenate([np.zeros((theta.size, 1, n_steps), np.int64), np.cumsum(spikes, axis=1)], axis=1)
        counts = spikes.sum(axis=2)
        monotone = bool(np.all(np.where(valid[:, 1:], np.diff(counts, axis=1) >= 0, True)))
        return cls(theta, prefix, counts, monotone)

    def query(self, lo: np.ndarray, hi: np.ndarray) -> LayerBounds:
        """Exact statuses and count range for currents anywhere in ``[lo_j, hi_j]`` (integers)."""
        c_lo = np.clip(lo, 0, self.theta)
        c_hi = np.clip(hi, 0, self.theta)
        rows = np.arange(self.theta.size)
        n_on = self.prefix[rows, c_hi + 1] - self.prefix[rows, c_lo]  # (H, T)
        width = (c_hi - c_lo + 1)[:, None]
        known1 = (n_on == width).T
        maybe1 = (n_on > 0).T
        if self.monotone:
            count_lo = self.counts[rows, c_lo]
            count_hi = self.counts[rows, c_hi]
        else:  # general range min/max (not reached by the current dynamics; kept for safety)
            grid = np.arange(self.counts.shape[1])[None, :]
            inside = (grid >= c_lo[:, None]) & (grid <= c_hi[:, None])
            count_lo = np.where(inside, self.counts, np.iinfo(np.int64).max).min(axis=1)
            count_hi = np.where(inside, self.counts, -1).max(axis=1)
        return LayerBounds(known1, maybe1, count_lo.astype(np.int64), count_hi.astype(np.int64), None, None)
