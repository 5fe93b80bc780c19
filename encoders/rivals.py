"""The entailment question split by rival class, each part a one-sided (monotone) integer problem.

Applies to a network with one spiking layer fed by a static-like coding (every free train and
every instance train constant over time), which covers every shipped model. There neuron ``j``
sees one integer input at every step,

    I_j(x) = const_j + sum_{i free} W_ji x_i,

and its spike count over the ``T`` steps is a step function of ``I_j``
(:func:`~xsnn.encoders.linear.input_ladders`): with breaks ``a_j1 < a_j2 < ...`` inside the
input's range ``[lo_j, hi_j]``,

    count_j(I) = count_j(lo_j) + sum_m delta_jm [I >= a_jm].

For the target ``c`` and a rival ``c'`` the score difference is linear in those indicators:

    D_c'(x) = score_c' - score_c = B + sum_{j,m} e_jm [I_j >= a_jm],
    B = sum_j d_j count_j(lo_j),  e_jm = d_j delta_jm,  d_j = R_c'j - R_cj,

and the prediction leaves ``c`` through ``c'`` iff ``D_c'(x) >= need`` (``need = 1`` if
``c' > c``, else 0: ties go to the lowest index). The question "NOT_ENTAILED?" is the
disjunction over rivals; solving one rival at a time removes the disjunction, and each part
may be written **one-sided**: a binary ``y_jm`` per term with

    e_jm > 0:  y_jm = 1  ->  I_j >= a_jm        (the rival may only claim a gain it gets)
    e_jm < 0:  y_jm = 0  ->  I_j <= a_jm - 1    (the rival may only dodge a loss it dodges)
    goal:      B + sum e_jm y_jm >= need.

Exactness: the true indicators ``z_jm = [I_j(x) >= a_jm]`` satisfy the one-sided rows, so every
counterexample is a solution; conversely in any solution ``y_jm <= z_jm`` where ``e_jm > 0``
and ``y_jm >= z_jm`` where ``e_jm < 0``, so ``D_c'(x) >= B + sum e_jm y_jm >= need``: the
solution's input ``x`` is a counterexample. Half of the if-then rows and every ordering row
of the two-sided ladder disappear, neurons with ``d_j = 0`` drop out, and the solver gets a
monotone problem. Measured on ``mnist10-ternary`` (``docs/solvers.md``): the same hard ENTAILED
questions are decided an order of magnitude faster than with the combined formulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .linear import (
    Builder,
    Formulation,
    distance_rows,
    input_columns,
    input_domain,
    input_ladders,
    instance_selectors,
    is_static_like,
    potential_bounds,
)

__all__ = [
    "rival_split_applies",
    "Ladders",
    "neuron_ladders",
    "distance_input_range",
    "rival_terms",
    "RivalProblem",
    "build_rival_problems",
]


def rival_split_applies(model: BSNN, instance: np.ndarray) -> bool:
    """True when the one-sided rival split is exact for this model and instance: one spiking
    layer, and a static-like coding (every free train and the instance constant over time)."""
    return len(model.layer_sizes) == 1 and is_static_like(model.coding.free_trains(model.n_steps), instance)


@dataclass(frozen=True)
class RivalProblem:
    """One rival's part of the question: feasible iff some completion makes ``rival`` win.

    Attributes:
        rival: the rival class ``c'``.
        upper: the largest ``D_c'`` the interval bounds allow (``>= need``, else the rival is
            not built); rivals are tried in decreasing ``upper - need``.
        need: the least ``D_c'`` with which ``c'`` wins (1 if ``c' > c``, else 0: ties go to the lowest index).
        formulation: the one-sided problem (:class:`~xsnn.encoders.linear.Formulation`; its
            ``rivals`` is empty, the goal is a plain row).
    """

    rival: int
    upper: int
    need: int
    formulation: Formulation


@dataclass(frozen=True)
class Ladders:
    """Spike counts of every first-layer neuron as step functions of its input on ``[lo_j, hi_j]``:
    ``count_j(I) = base_counts[j] + sum_m deltas[j][m] [I >= breaks[j][m]]``."""

    breaks: tuple[np.ndarray, ...]
    deltas: tuple[np.ndarray, ...]
    base_counts: np.ndarray


def neuron_ladders(model: BSNN, i_lo: np.ndarray, i_hi: np.ndarray) -> Ladders:
    """The :class:`Ladders` of the first layer for inputs ``I_j`` in ``[i_lo_j, i_hi_j]``."""
    breaks, deltas, base_counts = [], [], np.zeros(len(i_lo), np.int64)
    for j, (a, spike_trains) in enumerate(input_ladders(i_lo, i_hi, model.thresholds[0], model.n_steps, model.reset)):
        counts = spike_trains.sum(axis=1).astype(np.int64)
        base_counts[j] = counts[0]
        breaks.append(a.astype(np.int64))
        deltas.append(np.diff(counts))
    return Ladders(tuple(breaks), tuple(deltas), base_counts)


def distance_input_range(
    model: BSNN, instance: np.ndarray, features: FeatureSet, free_features: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray]:
    """Range ``[lo_j, hi_j]`` of every first-layer input ``I_j`` (static-like coding) over the
    inputs that agree with ``instance`` on the fixed features, give the pixels of the free
    features (``free_features``, bool per feature) and the pixels of no feature any value of the
    free domain, and change at most ``max_distance`` features.

    With ``v`` the instance's pixel values and ``D`` the free domain's values, changing pixel
    ``i`` moves ``I_j`` by ``W_ji (x_i - v_i)``; a free feature ``f`` can raise ``I_j`` by at most
    ``up_jf = sum_{i in f} max(0, max_{x in D} W_ji (x - v_i))`` (``down_jf`` alike), and with at
    most ``k`` features changed

        hi_j = I_j(v) + U_j + (sum of the k largest up_jf over the free features),
        lo_j = I_j(v) - L_j - (sum of the k largest down_jf),

    ``U_j``, ``L_j`` the same extremes over the pixels of no feature (free, never counted). The
    interval is exact for one-pixel features (each extreme is reached by changing the ``k``
    pixels that move ``I_j`` the most) and contains every reachable ``I_j`` otherwise; it lies
    inside the interval without the distance bound. Ladders over it
    (:func:`neuron_ladders`) hold every input of the distance ball, so the rival terms built
    from them are exact there and drop the steps no such input reaches.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    trains, silent_ok = input_domain(model)
    domain = np.concatenate([trains[:, 0].astype(np.int64), [0] if silent_ok else []]).astype(np.int64)
    v = np.asarray(instance, dtype=np.int64)[0]
    w = model.weights[0].astype(np.int64)
    # W_ji (x - v_i) is largest at the domain's largest x where W_ji > 0, at its smallest otherwise
    to_max, to_min = domain.max() - v, domain.min() - v  # (n,)
    positive = w > 0
    up_pixel = np.maximum(np.where(positive, w * to_max, w * to_min), 0)  # (n_0, n)
    down_pixel = np.maximum(-np.where(positive, w * to_min, w * to_max), 0)
    owner = features.feature_of_pixel()
    n_features = len(features)
    up, down = _per_feature_sums(np.where(owner >= 0, owner, n_features), n_features + 1, up_pixel, down_pixel)
    free = np.asarray(free_features, dtype=bool)
    centre = w @ v
    return (
        centre - down[:, -1] - _largest_sum(down[:, :-1][:, free], max_distance),
        centre + up[:, -1] + _largest_sum(up[:, :-1][:, free], max_distance),
    )


def _per_feature_sums(column: np.ndarray, n_columns: int, *per_pixel: np.ndarray) -> list[np.ndarray]:
    """For each ``(rows, n_pixels)`` array, the sums of its pixel columns by ``column`` (the column
    of each pixel): ``(rows, n_columns)``, zero where no pixel goes."""
    order = np.argsort(column, kind="stable")
    ordered = column[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    out = []
    for values in per_pixel:
        sums = np.zeros((len(values), n_columns), np.int64)
        sums[:, ordered[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
        out.append(sums)
    return out


def _largest_sum(values: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``values`` (non-negative), the sum of its ``k`` largest entries."""
    if k >= values.shape[1]:
        return values.sum(axis=1)
    if k == 0:
        return np.zeros(len(values), np.int64)
    if values.max() <= 1:  # 0/1 entries (one-pixel features, weights in {-1, 0, 1}): k ones at most
        return np.minimum(values.sum(axis=1), k)
    return np.partition(values, values.shape[1] - k, axis=1)[:, values.shape[1] - k :].sum(axis=1)


def rival_terms(model: BSNN, ladders: Ladders, target: int, rival: int) -> tuple[int, list[tuple[int, int, int]]]:
    """``(B, terms)`` with ``D_rival = B + sum_{(j, a, e) in terms} e [I_j >= a]`` (module docstring)."""
    d = model.readout[rival].astype(np.int64) - model.readout[target].astype(np.int64)
    base = int(d @ ladders.base_counts)
    terms = [
        (j, int(a), int(d[j] * delta))
        for j in np.flatnonzero(d).tolist()
        for a, delta in zip(ladders.breaks[j].tolist(), ladders.deltas[j].tolist())
        if delta != 0
    ]
    return base, terms


def build_rival_problems(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet,
    fixed: frozenset[int],
    target: int,
    max_distance: int | None = None,
) -> list[RivalProblem]:
    """The rivals that the interval bounds cannot rule out, each as a one-sided problem,
    most dangerous first (see the module docstring). An empty list proves ENTAILED.

    Raises ``ValueError`` where :func:`rival_split_applies` is false.
    """
    if not rival_split_applies(model, instance):
        raise ValueError("the rival split needs one spiking layer and a static-like coding")
    x = np.asarray(instance, dtype=np.int64)
    trains, silent_ok = input_domain(model)
    k = len(trains)
    selectors = instance_selectors(model, instance)
    free = ~features.pixel_mask(sorted(fixed))
    free_idx = np.flatnonzero(free)
    bounds = potential_bounds(model, x, free)
    i_lo, i_hi = bounds.first_input[0][0], bounds.first_input[1][0]
    w = model.weights[0].astype(np.int64)
    const = x[0, ~free] @ w[:, ~free].T  # (n_0,)
    values = trains[:, 0].astype(np.int64)  # x_i = sum_r values[r] u[i, r] (static-like trains)
    coefs = (w[:, free][:, :, None] * values[None, None, :]).reshape(len(w), -1)  # (n_0, n_free * k)

    if max_distance is not None:  # only the inputs of the distance ball (inside [i_lo, i_hi]): fewer steps
        free_features = np.ones(len(features), bool)
        free_features[list(fixed)] = False
        i_lo, i_hi = distance_input_range(model, instance, features, free_features, max_distance)
    ladder = neuron_ladders(model, i_lo, i_hi)
    problems = []
    for rival in range(model.n_classes):
        if rival == target:
            continue
        need = 1 if rival > target else 0
        base, terms = rival_terms(model, ladder, target, rival)
        upper = base + sum(e for _, _, e in terms if e > 0)
        if upper < need:
            continue
        problems.append(
            RivalProblem(
                rival,
                upper,
                need,
                _one_sided(
                    terms,
                    base,
                    need,
                    const,
                    coefs,
                    free_idx,
                    k,
                    silent_ok,
                    trains,
                    model.n_inputs,
                    features,
                    fixed,
                    selectors,
                    max_distance,
                ),
            )
        )
    problems.sort(key=lambda p: (p.need - p.upper, p.rival))
    return problems


def _one_sided(
    terms: list[tuple[int, int, int]],
    base: int,
    need: int,
    const: np.ndarray,
    coefs: np.ndarray,
    free_idx: np.ndarray,
    k: int,
    silent_ok: bool,
    trains: np.ndarray,
    n_inputs: int,
    features: FeatureSet,
    fixed: frozenset[int],
    selectors: np.ndarray,
    max_distance: int | None,
) -> Formulation:
    b = Builder()
    u, input_cols, pending_rows = input_columns(b, n_inputs, free_idx, k, silent_ok)
    flat_u = u.ravel()
    y = b.add_cols(np.zeros(len(terms), np.int64), 1, boolean=True)
    pending_ind = []
    for col, (j, a, e) in zip(y.tolist(), terms):
        nz = np.flatnonzero(coefs[j])
        if e > 0:  # y = 1 -> I_j >= a
            pending_ind.append((col, 1, flat_u[nz], coefs[j, nz], a - int(const[j]), None))
        else:  # y = 0 -> I_j <= a - 1
            pending_ind.append((col, 0, flat_u[nz], coefs[j, nz], None, a - 1 - int(const[j])))
    gains = np.array([e for _, _, e in terms], np.int64)
    pending_rows.append((y, gains, need - base, None))
    if max_distance is not None and k:
        distance_rows(b, pending_rows, features, fixed, free_idx, selectors, u, max_distance)
    return b.formulation(pending_rows, pending_ind, input_cols=input_cols, trains=trains, rivals={}, no_rival=False)
