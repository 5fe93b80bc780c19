"""The linear formulation of the question: integer linear constraints, interval bounds, big-M rows.

Shared by the HiGHS oracle (:mod:`xsnn.solvers.milp`), the CP-SAT oracle (:mod:`xsnn.solvers.cpsat`)
and the one-sided rival terms (:mod:`xsnn.encoders.rivals`).

The question "can the prediction leave class ``c`` with the features in ``S`` fixed?"
(see :mod:`xsnn.solvers.oracle`) is written as a system of integer linear constraints
over 0/1 and integer variables; it is feasible iff the answer is NOT_ENTAILED.

Variables (``theta`` a threshold, all data integers):

- inputs: for every free pixel ``i`` and every non-silent train ``r`` of the coding's
  free domain, a binary ``u[i,r]`` ("pixel i takes train r"), with
  ``sum_r u[i,r] <= 1`` (``= 1`` if the silent train is not allowed). The input spikes
  are ``x[i,t] = sum_r train[r,t] u[i,r]``: static coding -> one binary per pixel shared
  by all steps; latency coding -> ``T`` binaries per pixel with sum <= 1. Fixed pixels
  are constants (the instance's spikes).
- per spiking layer ``l``, neuron ``j``, step ``t``: the integer potential ``V`` (before
  reset), the spike ``s`` (binary) and, for reset-to-zero with ``t > 0``, the carried
  potential ``P = V(t-1) (1 - s(t-1))``.
- per rival class ``c'``: a binary selector ``g[c']``; per multi-pixel feature (only with a
  distance bound): a binary "feature differs" indicator.

Constraints:

- ``V(t) = I(t) + P(t)`` (zero) or ``V(t) = I(t) + V(t-1) - theta s(t-1)`` (subtract), with
  ``I(t) = sum_i W_ji x_i(t)`` (the previous layer's spikes for ``l > 0``);
- ``s = 1 -> V >= theta`` and ``s = 0 -> V <= theta - 1``;
- ``s(t-1) = 1 -> P(t) = 0`` and ``s(t-1) = 0 -> P(t) = V(t-1)`` (the product, exactly);
- goal (ties go to the lowest class index): ``sum g >= 1`` and
  ``g[c'] = 1 -> D[c'] >= [c' > c]`` with ``D[c'] = score_c' - score_c
  = sum_t sum_j (R_c'j - R_cj) s^L_j(t)``;
- optional distance bound: ``sum_k differs_k <= max_distance``.

Every variable gets interval bounds valid for *every* completion of the free pixels
(:func:`potential_bounds`: interval propagation through layers and steps, and an exact
sweep over the single integer input of a first-layer neuron when the coding is static).
Neurons whose spike is decided by the bounds become constants, rival classes that cannot
win are dropped, and when no rival can win the answer is ENTAILED without a solver call.
"If-then" constraints are kept as indicator constraints in the shared
:class:`Formulation`; HiGHS gets them (:func:`big_m_rows`) as big-M rows whose ``M`` is computed from those
bounds (the tightest valid ``M``), CP-SAT as ``OnlyEnforceIf`` constraints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, integrate_and_fire

__all__ = [
    "NeuronBounds",
    "potential_bounds",
    "input_ladders",
    "LinearRow",
    "Indicator",
    "Formulation",
    "Builder",
    "is_static_like",
    "build_formulation",
    "input_columns",
    "distance_rows",
    "big_m_rows",
    "disconnected_features",
    "input_domain",
    "instance_selectors",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- bounds


@dataclass(frozen=True)
class NeuronBounds:
    """Sound integer bounds ``lower <= V^l_j(t) <= upper`` (each ``(T, n_l)`` int64) for every layer."""

    lower: tuple[np.ndarray, ...]
    upper: tuple[np.ndarray, ...]
    first_input: tuple[np.ndarray, np.ndarray]  # bounds of the first layer's input I_j(t), (T, n_0) each
    constant_input: bool  # static-like coding: I_j(t) is the same integer at every step

    def spike_bounds(self, model: BSNN, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """``(s_lo, s_hi)`` 0/1 arrays ``(T, n_l)``: ``s_lo = 1`` where the neuron surely spikes,
        ``s_hi = 0`` where it surely does not."""
        theta = model.thresholds[layer][None, :]
        return ((self.lower[layer] >= theta).astype(np.int64), (self.upper[layer] >= theta).astype(np.int64))


def _simulate(inputs: np.ndarray, theta: np.ndarray, n_steps: int, reset: str) -> np.ndarray:
    """Potentials ``(T, m)`` of ``m`` independent neurons fed the constant input ``inputs`` at every step."""
    _, potentials = integrate_and_fire(np.broadcast_to(inputs, (n_steps, len(inputs))), theta, reset)
    return potentials


def _propagate(i_lo: np.ndarray, i_hi: np.ndarray, theta: np.ndarray, reset: str) -> tuple[np.ndarray, np.ndarray]:
    """Interval propagation of ``V(t)`` from input bounds ``i_lo, i_hi`` ``(T, n)``."""
    n_steps = i_lo.shape[0]
    lo = np.empty_like(i_lo)
    hi = np.empty_like(i_hi)
    for t in range(n_steps):
        if t == 0:
            r_lo = np.zeros_like(theta)
            r_hi = np.zeros_like(theta)
        else:
            p_lo, p_hi = lo[t - 1], hi[t - 1]
            spikes = p_lo >= theta
            silent = p_hi < theta
            if reset == "zero":
                # spike: carried 0; no spike: carried V(t-1) in [p_lo, min(p_hi, theta-1)]
                r_lo = np.where(spikes, 0, np.where(silent, p_lo, np.minimum(p_lo, 0)))
                r_hi = np.where(spikes, 0, np.where(silent, p_hi, np.maximum(theta - 1, 0)))
            else:
                # spike: carried V(t-1) - theta in [max(p_lo, theta) - theta, p_hi - theta]
                r_lo = np.where(spikes, p_lo - theta, np.where(silent, p_lo, np.minimum(p_lo, 0)))
                r_hi = np.where(spikes, p_hi - theta, np.where(silent, p_hi, np.maximum(theta - 1, p_hi - theta)))
        lo[t] = r_lo + i_lo[t]
        hi[t] = r_hi + i_hi[t]
    return lo, hi


def is_static_like(trains: np.ndarray, instance: np.ndarray) -> bool:
    """True if every free train and every instance train is constant over time."""
    return bool(np.all(trains == trains[:, :1]) and np.all(instance == instance[:1]))


def potential_bounds(model: BSNN, instance: np.ndarray, free_pixels: np.ndarray) -> NeuronBounds:
    """Bounds on every potential over all inputs that agree with ``instance`` (``(T, n)``) off
    ``free_pixels`` (boolean ``(n,)``) and give free pixels any train of the coding's free domain.

    First layer: the input ``I_j(t)`` lies in ``[const + sum_free min, const + sum_free max]``. If
    the coding is static-like (every train constant over time) ``I_j`` is one integer for all
    steps, and the neuron is simulated for every integer in its range (exact per-step
    extremes of ``V``, a superset of the reachable values); otherwise, and for later layers
    (whose inputs are spikes with bounds ``s_lo <= s <= s_hi``), bounds are propagated step by
    step, the reset taken as the hull of its spike and no-spike cases.
    """
    trains = model.coding.free_trains(model.n_steps).astype(np.int64)
    x = np.asarray(instance, dtype=np.int64)
    free = np.asarray(free_pixels, dtype=bool)
    w0 = model.weights[0].astype(np.int64)
    const = x[:, ~free] @ w0[:, ~free].T  # (T, n_0)
    w_free = w0[:, free]
    pos = np.clip(w_free, 0, None).sum(axis=1)
    neg = np.clip(w_free, None, 0).sum(axis=1)
    x_min = trains.min(axis=0)[:, None]  # (T, 1): smallest x[i,t] a free pixel may take
    x_max = trains.max(axis=0)[:, None]
    i_lo = const + x_min * pos + x_max * neg
    i_hi = const + x_max * pos + x_min * neg
    constant = is_static_like(trains, x)
    first = (i_lo, i_hi)
    lowers, uppers = [], []
    for layer, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        if layer == 0 and constant:
            v = _simulate_ranges(i_lo[0], i_hi[0], theta, model.n_steps, model.reset)[0]
            starts = np.cumsum(i_hi[0] - i_lo[0] + 1) - (i_hi[0] - i_lo[0] + 1)
            lo, hi = np.minimum.reduceat(v, starts, axis=1), np.maximum.reduceat(v, starts, axis=1)
        else:
            if layer > 0:
                w = w.astype(np.int64)
                s_lo = (lowers[-1] >= model.thresholds[layer - 1]).astype(np.int64)
                s_hi = (uppers[-1] >= model.thresholds[layer - 1]).astype(np.int64)
                w_pos, w_neg = np.clip(w, 0, None), np.clip(w, None, 0)
                i_lo = s_lo @ w_pos.T + s_hi @ w_neg.T
                i_hi = s_hi @ w_pos.T + s_lo @ w_neg.T
            lo, hi = _propagate(i_lo, i_hi, theta, model.reset)
        lowers.append(lo)
        uppers.append(hi)
    return NeuronBounds(tuple(lowers), tuple(uppers), first, constant)


def _simulate_ranges(
    i_lo: np.ndarray, i_hi: np.ndarray, theta: np.ndarray, n_steps: int, reset: str
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate neuron ``j`` for every constant integer input in ``[i_lo_j, i_hi_j]``.

    Returns ``(V, inputs)``: potentials ``(T, m)`` and the input of each of the ``m`` runs,
    neuron by neuron in increasing input order.
    """
    counts = i_hi - i_lo + 1
    starts = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(counts)), counts)
    inputs = i_lo[owner] + (np.arange(int(counts.sum())) - starts[owner])
    return _simulate(inputs, theta[owner], n_steps, reset), inputs


def input_ladders(
    i_lo: np.ndarray, i_hi: np.ndarray, theta: np.ndarray, n_steps: int, reset: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For neurons fed one constant integer ``I_j in [i_lo_j, i_hi_j]`` at every step: the spike
    train as a step function of ``I_j``.

    Returns per neuron ``(breaks, trains)``: ``breaks`` (``M``,) the increasing inputs ``a_m``
    at which the train changes, ``trains`` (``M + 1``, T) the train on ``[i_lo, a_1)``,
    ``[a_1, a_2)``, ..., ``[a_M, i_hi]``. Then, with ``z_m = [I_j >= a_m]`` (so
    ``z_1 >= z_2 >= ...``), ``s_j(t) = trains[0, t] + sum_m (trains[m, t] - trains[m-1, t]) z_m``
    exactly.
    """
    v, inputs = _simulate_ranges(i_lo, i_hi, theta, n_steps, reset)
    counts = i_hi - i_lo + 1
    starts = np.cumsum(counts) - counts
    spikes = (v >= np.repeat(theta, counts)[None, :]).astype(np.int64)  # (T, m)
    changed = np.zeros(spikes.shape[1], dtype=bool)
    changed[1:] = np.any(spikes[:, 1:] != spikes[:, :-1], axis=0)
    changed[starts] = False
    out = []
    for a, n in zip(starts.tolist(), counts.tolist()):
        where = a + np.flatnonzero(changed[a : a + n])
        out.append((inputs[where], spikes[:, np.concatenate([[a], where])].T))
    return out


# --------------------------------------------------------------------------- formulation


@dataclass(frozen=True)
class LinearRow:
    """``lower <= sum_k coefs[k] * column[cols[k]] <= upper`` (all integers)."""

    cols: np.ndarray
    coefs: np.ndarray
    lower: int
    upper: int


@dataclass(frozen=True)
class Indicator:
    """``column[col] == value  ->  row`` (an "if-then" linear constraint)."""

    col: int
    value: int
    row: LinearRow


@dataclass
class Formulation:
    """An integer feasibility problem equivalent to "prediction != target" for one fixed pixel set.

    Attributes:
        lower, upper: integer column bounds (``(n_cols,)`` int64).
        boolean: which columns are 0/1 decision variables (the rest are integer expressions
            of them: potentials, carried potentials).
        rows: linear constraints; indicators: if-then constraints.
        input_cols: ``(n_inputs, k)`` column of ``u[i, r]`` for each pixel and non-silent free
            train ``r`` (``-1`` for fixed pixels, which are constants).
        trains: ``(k, T)`` the non-silent free trains, in column order.
        rivals: class index -> column of its selector ``g``.
        no_rival: True when the bounds alone prove that no class can beat the target
            (the answer is ENTAILED; the rows are then not needed).
        spike_cols: per layer, ``(T, n_l)`` columns of the spikes.
        potential_cols: per layer, the columns of the potentials ``(T, n_l)`` or, for a ladder
            (constant-input first) layer, of the inputs ``I_j`` ``(n_0,)``.
    """

    lower: np.ndarray
    upper: np.ndarray
    boolean: np.ndarray
    rows: list[LinearRow]
    indicators: list[Indicator]
    input_cols: np.ndarray
    trains: np.ndarray
    rivals: dict[int, int]
    no_rival: bool
    spike_cols: list[np.ndarray] = field(default_factory=list)
    potential_cols: list[np.ndarray] = field(default_factory=list)

    @property
    def n_cols(self) -> int:
        return len(self.lower)

    def expression_range(self, cols: np.ndarray, coefs: np.ndarray) -> tuple[int, int]:
        """Smallest and largest value of ``sum coefs * column[cols]`` within the column bounds."""
        lo = np.where(coefs > 0, self.lower[cols], self.upper[cols])
        hi = np.where(coefs > 0, self.upper[cols], self.lower[cols])
        return int(coefs @ lo), int(coefs @ hi)

    def witness(self, instance: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Input spikes ``(T, n)``: the instance, with each free pixel given the train its
        (rounded) input binaries select (the silent train if none)."""
        x = np.array(instance, dtype=np.uint8, copy=True)
        free = np.flatnonzero(self.input_cols[:, 0] >= 0)
        if len(free) == 0:
            return x
        chosen = np.rint(values[self.input_cols[free]]).astype(np.int64)  # (n_free, k)
        x[:, free] = 0
        on = chosen.any(axis=1)
        x[:, free[on]] = self.trains[np.argmax(chosen[on], axis=1)].T
        return x


class Builder:
    """Accumulates columns and constraints (integers only)."""

    def __init__(self) -> None:
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.boolean: list[np.ndarray] = []
        self.n = 0

    def add_cols(self, lower, upper, boolean: bool) -> np.ndarray:
        lower = np.asarray(lower, dtype=np.int64)
        upper = np.broadcast_to(np.asarray(upper, dtype=np.int64), lower.shape)
        if np.any(lower > upper):
            raise AssertionError("empty column domain: the bounds are inconsistent (a bug)")
        idx = np.arange(self.n, self.n + lower.size, dtype=np.int64).reshape(lower.shape)
        self.n += lower.size
        self.lower.append(lower.ravel())
        self.upper.append(upper.ravel().copy())
        self.boolean.append(np.full(lower.size, boolean))
        return idx

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(0, np.int64)
        return np.concatenate(self.lower or [empty]), np.concatenate(self.upper or [empty])

    def formulation(self, pending_rows: list[tuple], pending_ind: list[tuple], **fields) -> Formulation:
        """The :class:`Formulation` of every column so far, with ``pending_rows`` ``(cols, coefs,
        lower, upper)`` and ``pending_ind`` ``(col, value, cols, coefs, lower, upper)`` made into
        rows (a missing side filled from the column bounds); ``fields`` are the remaining ones."""
        lower, upper = self.bounds()
        rows = [self.row(cols, coefs, lo, hi, lower, upper) for cols, coefs, lo, hi in pending_rows]
        indicators = [
            Indicator(int(col), int(val), self.row(cols, coefs, lo, hi, lower, upper))
            for col, val, cols, coefs, lo, hi in pending_ind
        ]
        return Formulation(
            lower=lower,
            upper=upper,
            boolean=np.concatenate(self.boolean or [np.zeros(0, bool)]),
            rows=rows,
            indicators=indicators,
            **fields,
        )

    def row(self, cols, coefs, lower: int | None, upper: int | None, lo_b: np.ndarray, hi_b: np.ndarray) -> LinearRow:
        """A row; a missing side is filled with the expression's extreme over the column bounds."""
        cols = np.asarray(cols, dtype=np.int64)
        coefs = np.asarray(coefs, dtype=np.int64)
        if len(coefs) > 8:
            keep = coefs != 0
            cols, coefs = cols[keep], coefs[keep]
        if lower is None:
            lower = int(coefs @ np.where(coefs > 0, lo_b[cols], hi_b[cols]))
        if upper is None:
            upper = int(coefs @ np.where(coefs > 0, hi_b[cols], lo_b[cols]))
        return LinearRow(cols, coefs, int(lower), int(upper))


def input_domain(model: BSNN) -> tuple[np.ndarray, bool]:
    """The non-silent trains of the coding's free domain ``(k, T)`` and whether the silent train is allowed."""
    trains = model.coding.free_trains(model.n_steps).astype(np.uint8)
    silent = ~trains.any(axis=1)
    return trains[~silent], bool(silent.any())


def instance_selectors(model: BSNN, instance: np.ndarray) -> np.ndarray:
    """For each pixel, the index of its instance train among the non-silent free trains (``-1``: silent).

    Raises ``ValueError`` if a pixel's instance train lies outside the coding's free domain
    (then "fixed" and "free" would not be expressible over the same selector binaries).
    """
    trains, silent_ok = input_domain(model)
    x = np.asarray(instance, dtype=np.uint8)
    match = np.all(x.T[:, None, :] == trains[None, :, :], axis=2)  # (n, k)
    sel = np.where(match.any(axis=1), np.argmax(match, axis=1), -1)
    bad = (sel < 0) & (x.any(axis=0) | (not silent_ok))
    if bad.any():
        raise ValueError(
            f"the instance gives pixel {int(np.flatnonzero(bad)[0])} a spike train outside the "
            f"{model.coding.name} coding's free domain; the linear oracles need it inside"
        )
    return sel.astype(np.int64)


def _ladder_layer(
    b: Builder,
    rows: list,
    indicators: list,
    s: np.ndarray,
    const: np.ndarray,
    in_cols: np.ndarray,
    in_coefs: np.ndarray,
    bounds: NeuronBounds,
    theta: np.ndarray,
    model: BSNN,
) -> np.ndarray:
    """First layer with a constant integer input ``I_j`` (static coding): spikes from a ladder on ``I_j``.

    Columns ``I_j`` (``I_j = const_j + in_coefs_j @ in_cols``) and ``z_jm = [I_j >= a_jm]`` with
    ``z_j1 >= z_j2 >= ...``; ``z = 1 -> I_j >= a``, ``z = 0 -> I_j <= a - 1``; the spikes are linear
    in ``z`` (see :func:`input_ladders`). No potential or reset variables are needed.
    """
    i_lo, i_hi = bounds.first_input[0][0], bounds.first_input[1][0]
    total = b.add_cols(i_lo, i_hi, boolean=False)
    for j, (breaks, trains) in enumerate(input_ladders(i_lo, i_hi, theta, model.n_steps, model.reset)):
        if len(breaks) == 0:
            continue  # one train over the whole range: the spike columns are fixed by their bounds
        rows.append(
            (np.concatenate([[total[j]], in_cols]), np.concatenate([[1], -in_coefs[j]]), int(const[j]), int(const[j]))
        )
        z = b.add_cols(np.zeros(len(breaks), np.int64), 1, boolean=True)
        for m in range(len(breaks) - 1):
            rows.append((z[m : m + 2], np.array([1, -1]), 0, None))
        for m, a in enumerate(breaks.tolist()):
            indicators.append((z[m], 1, [total[j]], [1], a, None))
            indicators.append((z[m], 0, [total[j]], [1], None, a - 1))
        steps = np.diff(trains, axis=0)  # (M, T): change of the train at each break
        for t in range(model.n_steps):
            rows.append(
                (
                    np.concatenate([[s[t, j]], z]),
                    np.concatenate([[1], -steps[:, t]]),
                    int(trains[0, t]),
                    int(trains[0, t]),
                )
            )
    return total


def _step_layer(
    b: Builder,
    rows: list,
    indicators: list,
    s: np.ndarray,
    consts: np.ndarray,
    in_cols: list,
    in_coefs: list,
    bounds: NeuronBounds,
    layer: int,
    theta: np.ndarray,
    model: BSNN,
) -> np.ndarray:
    """A layer step by step: potentials ``V``, spikes by indicators, the reset exactly."""
    n_steps = model.n_steps
    lo, hi = bounds.lower[layer], bounds.upper[layer]
    s_lo, s_hi = bounds.spike_bounds(model, layer)
    v = b.add_cols(lo, hi, boolean=False)
    if model.reset == "zero" and n_steps > 1:
        # carried potential P(t) = V(t-1) (1 - s(t-1)), t >= 1
        p_lo = np.where(s_lo[:-1] == 1, 0, np.where(s_hi[:-1] == 0, lo[:-1], np.minimum(lo[:-1], 0)))
        p_hi = np.where(s_lo[:-1] == 1, 0, np.where(s_hi[:-1] == 0, hi[:-1], np.maximum(theta - 1, 0)))
        carried = b.add_cols(p_lo, p_hi, boolean=False)
    for t in range(n_steps):
        for j in range(v.shape[1]):
            cols = [np.array([v[t, j]]), in_cols[t]]
            coefs = [np.array([1]), -in_coefs[t][j]]
            if t > 0 and model.reset == "zero":
                cols.append(np.array([carried[t - 1, j]]))
                coefs.append(np.array([-1]))
            elif t > 0:
                cols.append(np.array([v[t - 1, j], s[t - 1, j]]))
                coefs.append(np.array([-1, int(theta[j])]))
            rows.append((np.concatenate(cols), np.concatenate(coefs), int(consts[t, j]), int(consts[t, j])))
            if s_lo[t, j] != s_hi[t, j]:  # undecided spike
                indicators.append((s[t, j], 1, [v[t, j]], [1], int(theta[j]), None))
                indicators.append((s[t, j], 0, [v[t, j]], [1], None, int(theta[j]) - 1))
            if t > 0 and model.reset == "zero":
                c_col, pv, ps = carried[t - 1, j], v[t - 1, j], s[t - 1, j]
                if s_lo[t - 1, j] == 1:
                    pass  # carried fixed to 0 by its bounds
                elif s_hi[t - 1, j] == 0:
                    rows.append((np.array([c_col, pv]), np.array([1, -1]), 0, 0))
                else:
                    indicators.append((ps, 1, [c_col], [1], 0, 0))
                    indicators.append((ps, 0, [c_col, pv], [1, -1], 0, 0))
    return v


def input_columns(
    b: Builder, n_inputs: int, free_idx: np.ndarray, k: int, silent_ok: bool
) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """The input selector binaries ``u[p, r]`` (free pixel ``free_idx[p]`` takes non-silent train
    ``r``): ``(u, input_cols, rows)`` with ``input_cols`` ``(n_inputs, k)`` (``-1`` for fixed
    pixels) and the pending rows ``sum_r u[p, r] <= 1`` (``= 1`` without a silent train)."""
    input_cols = np.full((n_inputs, max(k, 1)), -1, dtype=np.int64)
    u = b.add_cols(np.zeros((len(free_idx), k), np.int64), 1, boolean=True)
    if k:
        input_cols[free_idx] = u
    rows: list[tuple] = []
    if k > 1 or not silent_ok:
        for p in range(len(free_idx)):
            rows.append((u[p], np.ones(k, np.int64), 0 if silent_ok else 1, 1))
    return u, input_cols, rows


def distance_rows(
    b: Builder,
    rows: list,
    features: FeatureSet,
    fixed: frozenset[int],
    free_idx: np.ndarray,
    selectors: np.ndarray,
    u: np.ndarray,
    max_distance: int,
) -> None:
    """Append the rows of "at most ``max_distance`` free features differ from the instance".

    A single-pixel feature differs iff its pixel's selectors leave the instance's train; a
    multi-pixel feature gets a binary ``d_k >= differs_i`` for each of its pixels.
    """
    k = u.shape[1]
    terms_cols, terms_coefs, offset = [], [], 0
    where = {int(i): p for p, i in enumerate(free_idx)}
    for f, group in enumerate(features.groups):
        if f in fixed:
            continue
        differs = []  # per pixel: (cols, coefs, const) with differs_i = const + coefs @ cols
        for i in group:
            p = where[int(i)]
            if selectors[i] < 0:
                differs.append((u[p], np.ones(k, np.int64), 0))
            else:
                differs.append((u[p, selectors[i] : selectors[i] + 1], np.array([-1]), 1))
        if len(differs) == 1:
            cols, coefs, const = differs[0]
            terms_cols.append(cols)
            terms_coefs.append(coefs)
            offset += const
        else:
            dk = int(b.add_cols(np.zeros(1, np.int64), 1, boolean=True)[0])
            for cols, coefs, const in differs:  # d_k >= differs_i
                rows.append((np.concatenate([[dk], cols]), np.concatenate([[1], -coefs]), const, None))
            terms_cols.append(np.array([dk]))
            terms_coefs.append(np.array([1]))
    if terms_cols:
        rows.append((np.concatenate(terms_cols), np.concatenate(terms_coefs), None, int(max_distance) - offset))
    elif offset > max_distance:  # cannot happen (offset counts nothing without free features)
        raise AssertionError("distance bound violated by constants")


def disconnected_features(model: BSNN, features: FeatureSet) -> frozenset[int]:
    """Features whose pixels all have zero weight into every first-layer neuron.

    They never influence the network, so for an ENTAILED fixed set ``S`` the set
    ``S - disconnected`` is sufficient as well: the (cheap) core the rebuild oracles return.
    """
    dead = ~np.any(model.weights[0] != 0, axis=0)
    return frozenset(k for k, group in enumerate(features.groups) if dead[list(group)].all())


def build_formulation(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet,
    fixed: frozenset[int],
    target: int,
    max_distance: int | None = None,
) -> Formulation:
    """The integer feasibility problem for fixed feature set ``fixed`` (see the module docstring).

    With ``fixed`` empty the problem is valid for every fixed set once the input binaries of
    the fixed pixels are fixed to the instance (that is how the incremental oracles use it).
    """
    x = np.asarray(instance, dtype=np.int64)
    n_steps = model.n_steps
    trains, silent_ok = input_domain(model)
    k = len(trains)
    selectors = instance_selectors(model, instance)
    free = ~features.pixel_mask(sorted(fixed))
    free_idx = np.flatnonzero(free)
    bounds = potential_bounds(model, x, free)
    b = Builder()

    # inputs; rows are built once every column exists (their ranges need bounds)
    u, input_cols, pending_rows = input_columns(b, model.n_inputs, free_idx, k, silent_ok)

    # spiking layers
    spike_cols, potential_cols = [], []
    pending_ind: list[tuple] = []
    prev_s = None
    for layer, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        w = w.astype(np.int64)
        s_lo, s_hi = bounds.spike_bounds(model, layer)
        s = b.add_cols(s_lo, s_hi, boolean=True)
        spike_cols.append(s)
        if layer == 0:
            # I_j(t) = const_j(t) + sum_{i free, r} W_ji train[r, t] u[i, r]
            consts = x[:, ~free] @ w[:, ~free].T  # (T, n_0)
            in_coefs = [
                (w[:, free][:, :, None] * trains[:, t].astype(np.int64)[None, None, :]).reshape(len(w), -1)
                for t in range(n_steps)
            ]
            in_cols = [u.ravel()] * n_steps
        else:
            consts = np.zeros((n_steps, len(w)), np.int64)
            in_coefs = [w] * n_steps
            in_cols = [prev_s[t] for t in range(n_steps)]
        if layer == 0 and bounds.constant_input:
            potential_cols.append(
                _ladder_layer(b, pending_rows, pending_ind, s, consts[0], in_cols[0], in_coefs[0], bounds, theta, model)
            )
        else:
            potential_cols.append(
                _step_layer(b, pending_rows, pending_ind, s, consts, in_cols, in_coefs, bounds, layer, theta, model)
            )
        prev_s = s

    # goal: some rival class beats the target (ties to the lowest index)
    last = prev_s
    last_lo, last_hi = bounds.spike_bounds(model, len(model.weights) - 1)
    readout = model.readout.astype(np.int64)
    rivals: dict[int, int] = {}
    for c in range(model.n_classes):
        if c == target:
            continue
        d = np.broadcast_to(readout[c] - readout[target], last.shape)
        need = 1 if c > target else 0
        d_hi = int(np.sum(np.where(d > 0, d * last_hi, d * last_lo)))
        if d_hi < need:
            continue
        g = int(b.add_cols(np.zeros(1, np.int64), 1, boolean=True)[0])
        rivals[c] = g
        pending_ind.append((g, 1, last.ravel(), d.ravel(), need, None))
    if rivals:
        g_cols = np.array(list(rivals.values()), dtype=np.int64)
        pending_rows.append((g_cols, np.ones(len(g_cols), np.int64), 1, len(g_cols)))

    if max_distance is not None and k:
        distance_rows(b, pending_rows, features, fixed, free_idx, selectors, u, max_distance)

    return b.formulation(
        pending_rows,
        pending_ind,
        input_cols=input_cols,
        trains=trains,
        rivals=rivals,
        no_rival=not rivals,
        spike_cols=spike_cols,
        potential_cols=potential_cols,
    )


def big_m_rows(form: Formulation) -> list[LinearRow]:
    """The indicator constraints as linear rows, each with the smallest valid ``M``.

    For ``b = 1 -> lo <= e <= hi`` with ``e`` ranging over ``[e_min, e_max]`` (column bounds):
    ``e - (lo - e_min) b >= e_min`` and ``e + (e_max - hi) b <= e_max``; for ``b = 0 -> ...``:
    ``e + (lo - e_min) b >= lo`` and ``e - (e_max - hi) b <= hi``. A side that already
    holds for every value of ``e`` is left out.
    """
    out = []
    for ind in form.indicators:
        row, b = ind.row, ind.col
        e_min, e_max = form.expression_range(row.cols, row.coefs)
        cols = np.concatenate([row.cols, [b]])
        if row.lower > e_min:
            m = row.lower - e_min
            if ind.value == 1:
                out.append(LinearRow(cols, np.concatenate([row.coefs, [-m]]), e_min, e_max))
            else:
                out.append(LinearRow(cols, np.concatenate([row.coefs, [m]]), row.lower, e_max + m))
        if row.upper < e_max:
            m = e_max - row.upper
            if ind.value == 1:
                out.append(LinearRow(cols, np.concatenate([row.coefs, [m]]), e_min, e_max))
            else:
                out.append(LinearRow(cols, np.concatenate([row.coefs, [-m]]), e_min - m, row.upper))
    return out
