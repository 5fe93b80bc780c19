"""Distance-restricted entailment by exhaustive enumeration of the distance ball.

For a distance bound ``k``, the question of :mod:`xsnn.solvers.oracle` for a fixed set ``S``
(free features ``F`` = every feature outside ``S``) is decided over the *ball*

    B(F) = { x : x = v on the pixels of S;  every pixel of F, and every pixel of no feature,
                 carries a train of the coding's free domain D;
                 at most k features of F differ from the instance v },

"does some x in B(F) have prediction != target?". The ball is small at small ``k``: with one
feature per pixel and a two-train domain it has ``sum_{j<=k} C(|F|, j)`` inputs (307,721 at
``k = 2`` and 784 features), and :class:`BallOracle` evaluates them, in batches, exactly.

**Counting.** A free feature ``f`` with pixels ``g`` takes one of ``|D|^|g|`` tuples of trains;
``m_f`` of them differ from the instance (``|D|^|g| - 1``, or all ``|D|^|g|`` when the instance's
own tuple lies outside the domain: such a *forced* feature must change once freed). With
``U`` the pixels of no feature, ``P`` the forced features of ``F`` and ``e_j`` the elementary
symmetric polynomials,

    |B(F)| = |D|^|U| * prod_{f in P} m_f * sum_{j <= k - |P|} e_j(m_f : f in F \\ P)

(:func:`ball_size`; zero when ``|P| > k``).

**Enumeration as a tree.** An input of the ball is a *change set*: a choice of one changed
tuple (a *move*) for each feature of a set ``C``. Candidate features are put in an order; a
node is a change set, its children add one move of a later feature, so every change set is
reached once. Nodes are processed breadth-first by depth (iterative deepening: round ``d``
evaluates the change sets of size ``d``; the shallower nodes are only re-expanded, which costs
a fraction ``~ d / |F|`` of the round), so the smallest witnesses are found first. A node whose
interval bound proves that no descendant within the round can flip is not expanded (below).

**Incremental mode.** Suppose ``E`` was answered ENTAILED (no input of ``B(E)`` flips) and the
new question has ``F ⊇ E``. Then only the inputs of ``B(F)`` that change a feature of
``F \\ E`` need evaluation:

    x in B(F) changes no feature of F \\ E  =>  x in B(E).

Proof: ``x`` equals ``v`` on the pixels of ``S = all \\ F`` and of ``F \\ E``, so on every pixel
outside ``E`` and the unowned pixels; the pixels of ``E`` and the unowned ones carry free-domain
trains (``x in B(F)``); the features of ``E`` that ``x`` changes are all the features it changes,
at most ``k``. So ``x in B(E)``, where nothing flips. The oracle keeps the last few ENTAILED free
sets and uses the largest one contained in ``F``; when none is, it enumerates ``B(F)`` whole.
This holds for any sequence of questions (deletion, QuickXplain, CXps, enumeration), not only
for a deletion's growing free sets. The new-feature condition is enforced by ordering the new
features first: the root's children are moves of new features only, and every deeper node
then holds one. Two further memos are sound without any order: a free set ``F ⊆ E`` of a
remembered ENTAILED ``E`` is ENTAILED (``B(F) ⊆ B(E)``) and a remembered witness for free set
``N ⊆ F`` is a witness for ``F`` (``B(N) ⊆ B(F)``), both provided no feature of the difference
is forced (a forced feature left at the instance value is outside the ball).

**Features that cannot matter.** If changing feature ``f`` changes the prediction of no
input, an input ``x`` that changes ``f`` flips iff ``x'`` (``x`` with ``f`` back at the instance)
does, and ``x'`` lies in the ball with one change fewer (``f`` not forced). So such *null*
features are left out of the enumeration; if every new feature is null the answer is
ENTAILED at once (every ``x'`` is in ``B(E)``). A feature is null when every neuron it feeds in
the first layer has the same spike train on every input of the whole ball ``B(all features)``
(interval bounds, below), or, for the current engine, when it feeds no neuron that matters to a
rival that can win.

**Two engines** evaluate a batch of nodes:

* ``"currents"`` (one spiking layer, static-like coding: every free train and the instance
  constant over time; all shipped models): neuron ``j`` sees one integer input
  ``I_j(x) = I_j(v) + sum_{moves in x} delta_j(move)``, and on the range ``[lo_j, hi_j]`` that
  the whole ball reaches (:func:`~xsnn.encoders.rivals.distance_input_range`) the score
  difference to rival ``c'`` is ``D_c'(x) = B_c' + sum_{(j, a, e)} e [I_j(x) >= a]``
  (:func:`~xsnn.encoders.rivals.rival_terms`). The prediction leaves the target iff
  ``D_c' >= need_c'`` for some rival (``need = 1`` above the target, 0 below: ties go to the
  lowest index). Rivals with ``B + sum max(e, 0) < need`` cannot win in the ball and are
  dropped; only the neurons of the remaining terms are carried (on the shipped models 0-30%
  of the layer at ``k <= 3``). A node holds those inputs and the rival scores; a child's scores
  are its parent's, corrected at the terms whose indicator its move turns on or off (a move
  touches a few terms on a sparse model): :class:`~xsnn.solvers.ballscan.BallScan`, in C.
* ``"kernel"`` (every network the packed kernel runs: any number of layers, any coding):
  nodes are packed inputs (a move is an XOR of a few words), evaluated by
  :class:`~xsnn.kernel.PackedNetwork` (C kernel, numpy fallback).

**Interval bounds on a node.** A node with current ``I`` and remaining budget ``r``, whose
descendants add at most ``r`` moves of distinct features later in the order, reaches only
``I_j + [-down_j, up_j]`` where ``up_j`` is the sum of the ``r`` largest per-feature rises
``max(0, max_move delta_j)`` over those features (``down_j`` alike; by the layer-cake identity
``top_r = sum_{t >= 1} min(r, #{f : rise_f >= t})`` for integer rises, so suffix sums are
cumulative counts). Since ``[I >= a]`` is monotone, ``D_c' <= B_c' + sum_{e > 0} e [I_j + up_j >= a]
+ sum_{e < 0} e [I_j - down_j >= a]``; when this is below ``need_c'`` for every rival, no
descendant flips and the node is not expanded. The kernel engine bounds a node whose subtree
is large with :class:`~xsnn.solvers.bounds.BoundPropagator` (the node's input as the fixed
values, its later features free under budget ``r``).

Every NOT_ENTAILED answer comes with a witness that :meth:`EntailmentOracle.check` re-runs
through the reference forward. Tested against :class:`~xsnn.solvers.bruteforce.BruteForceOracle`
on random networks (``tests/test_ball.py``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from xsnn.encoders.rivals import distance_input_range, neuron_ladders, rival_split_applies, rival_terms
from xsnn.features import FeatureSet
from xsnn.kernel import PackedNetwork, pack_bits, unpack_bits
from xsnn.model import BSNN, check_spikes

from .ballscan import BallScan
from .bounds import BoundPropagator
from .certificate import AXpCertificate, VerificationReport, certificate_of, verify
from .oracle import Check, EntailmentOracle, Verdict

__all__ = [
    "BALL_INPUT_LIMIT",
    "ENGINES",
    "BallChoice",
    "BallOracle",
    "BallStats",
    "ball_choice",
    "ball_size",
    "enumeration_size",
    "verify_by_enumeration",
]

ENGINES = ("currents", "kernel")

# Largest ball (ball_size, effective_size or pruned_size) for which ball_choice picks enumeration.
# Measured with benchmarks/distance.py (docs/distance.md, benchmarks/results/distance-threshold-*.txt):
# a deletion dAXp took 3-6e-8 s per pruned input (0.5-2.5 s up to 3e7, 140-300 s at 2.6-5e9), so
# 1e9 is where enumeration reaches the 60 s that the solvers were given; no solver dAXp above 3e5
# inputs completed within 60 s except on predictions the interval bounds show robust, which
# enumeration decides in under 0.5 s (effective size 1).
BALL_INPUT_LIMIT = 1_000_000_000

_CHUNK = 1 << 15  # nodes per expanded batch
_LEAVES = 1 << 20  # leaves per evaluated batch (between two looks at the clock)
_MEMO = 8  # remembered ENTAILED free sets and witnesses
_KERNEL_BOUND_SUBTREE = 1 << 13  # kernel engine: bound a node when its subtree holds at least this many inputs
_MAX_MOVES = 1 << 18  # refuse features with more changed tuples than this in total
_MAX_ROOTS = 1 << 16  # refuse more assignments of the unowned pixels and forced features than this
_PRUNED_SIZE_NODES = 1 << 18  # pruned_size: deepest level it expands


# --------------------------------------------------------------------------- domain and counting


@dataclass(frozen=True)
class _Domain:
    """Per feature: its pixels' instance trains as domain indices, the number of changed tuples.

    Attributes:
        trains: ``(|D|, T)`` the coding's free trains.
        inst_index: ``(n_inputs,)`` index of each pixel's instance train in ``trains`` (``-1``: outside).
        moves: ``(n_features,)`` number of tuples that differ from the instance (``m_f``).
        forced: ``(n_features,)`` bool: the instance's tuple is outside the domain.
        unowned: pixels of no feature (always free, never counted).
    """

    trains: np.ndarray
    inst_index: np.ndarray
    moves: np.ndarray
    forced: np.ndarray
    unowned: np.ndarray

    @classmethod
    def of(cls, model: BSNN, instance: np.ndarray, features: FeatureSet) -> _Domain:
        trains = model.coding.free_trains(model.n_steps).astype(np.uint8)
        x = np.asarray(instance, dtype=np.uint8)
        match = np.all(x.T[:, None, :] == trains[None, :, :], axis=2)  # (n, |D|)
        inst_index = np.where(match.any(axis=1), np.argmax(match, axis=1), -1)
        owner = features.feature_of_pixel()
        forced = np.zeros(len(features), bool)
        owned = owner >= 0
        np.logical_or.at(forced, owner[owned], inst_index[owned] < 0)
        sizes = np.bincount(owner[owned], minlength=len(features))
        moves = np.array([len(trains) ** int(s) - (0 if f else 1) for s, f in zip(sizes, forced)], dtype=object)
        unowned = np.flatnonzero(features.feature_of_pixel() < 0)
        return cls(trains, inst_index, moves, forced, unowned)


def _elementary(values, k: int) -> list[int]:
    """``[e_0, ..., e_k]`` of the Python ints ``values`` (exact)."""
    e = [1] + [0] * k
    for m in values:
        for j in range(k, 0, -1):
            e[j] += e[j - 1] * m
    return e


def _count(domain: _Domain, free: np.ndarray, k: int) -> int:
    """``|B(F)|`` for the free features ``free`` (bool mask) and bound ``k`` (module docstring)."""
    forced = free & domain.forced
    budget = k - int(forced.sum())
    if budget < 0:
        return 0
    roots = len(domain.trains) ** len(domain.unowned) * math.prod(int(m) for m in domain.moves[forced])
    plain = domain.moves[free & ~domain.forced]
    if len(plain) and all(m == plain[0] for m in plain):  # one value: sum_j C(n, j) m^j
        n, m = len(plain), int(plain[0])
        return roots * sum(math.comb(n, j) * m**j for j in range(budget + 1))
    return roots * sum(_elementary(plain.tolist(), budget))


def ball_size(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet | None,
    max_distance: int,
    fixed: frozenset[int] = frozenset(),
) -> int:
    """The number of inputs in the ball ``B(F)``, ``F`` the features outside ``fixed`` (exact integer)."""
    if max_distance is None or max_distance < 0:
        raise ValueError(f"max_distance must be an integer >= 0, got {max_distance!r}")
    x = check_spikes(model, instance)[0]
    features = features if features is not None else FeatureSet.pixels(model.n_inputs, model.input_shape)
    free = np.ones(len(features), bool)
    free[list(fixed)] = False
    return _count(_Domain.of(model, x, features), free, int(max_distance))


# --------------------------------------------------------------------------- the choice


@dataclass(frozen=True)
class BallChoice:
    """Whether ball enumeration decides a distance-restricted question, and why.

    Attributes:
        use: enumerate the ball (else: use the solvers).
        reason: one line for the result's stats.
        size: inputs of the ball with the features outside ``fixed`` free (``0`` without a bound).
        effective_size: the part of it the oracle may evaluate (inputs changing only features
            that can move the prediction, :meth:`BallOracle.effective_size`), or ``None`` when
            ``size`` alone decided.
        pruned_size: the estimate of what is left after the node bounds
            (:meth:`BallOracle.pruned_size`), or ``None`` when an earlier measure decided.
        limit: the threshold compared with (:data:`BALL_INPUT_LIMIT`).
        engine: the evaluation engine the oracle uses (``"currents"`` or ``"kernel"``).
    """

    use: bool
    reason: str
    size: int
    effective_size: int | None
    pruned_size: int | None
    limit: int
    engine: str | None

    def as_dict(self) -> dict:
        return {
            "use": self.use,
            "reason": self.reason,
            "size": self.size,
            "effective_size": self.effective_size,
            "pruned_size": self.pruned_size,
            "limit": self.limit,
            "engine": self.engine,
        }


def _engine_for(model: BSNN, instance: np.ndarray) -> str:
    return "currents" if rival_split_applies(model, instance) else "kernel"


def ball_choice(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet | None,
    max_distance: int | None,
    fixed: frozenset[int] = frozenset(),
    target: int | None = None,
    limit: int = BALL_INPUT_LIMIT,
) -> BallChoice:
    """Decide whether to answer a distance-restricted question (or a whole explanation: ``fixed``
    empty) by ball enumeration, and say why.

    By the incremental mode, the inputs a deletion evaluates on its ENTAILED steps are those of
    ``B(F)`` for its final free set (each once), and a refuted step stops at its first witness,
    smallest change sets first; so the ball with every feature outside ``fixed`` free measures
    the work. Three measures of it, cheapest first, each compared with ``limit``
    (:data:`BALL_INPUT_LIMIT`, measured in docs/distance.md); the first at or below the limit
    picks enumeration, else the solvers:

    1. ``size``: every input of the ball (:func:`ball_size`);
    2. ``effective_size``: the inputs changing only features that can move the prediction
       (:meth:`BallOracle.effective_size`; the instance alone on a prediction the interval bounds
       show robust);
    3. ``pruned_size``: what the node bounds leave of them (:meth:`BallOracle.pruned_size`; tens
       of milliseconds to a second on the shipped models).

    Deterministic: the result depends only on the arguments.
    """
    if max_distance is None:
        return BallChoice(False, "no distance bound: the ball is the whole input space", 0, None, None, limit, None)
    x = check_spikes(model, instance)[0]
    size = ball_size(model, x, features, max_distance, fixed)
    engine = _engine_for(model, x)
    head = f"ball of {size:,} inputs (k={max_distance})"
    if size <= limit:
        return BallChoice(True, f"{head} <= {limit:,}: enumerate it", size, None, None, limit, engine)
    try:
        with BallOracle(model, x, features, target, max_distance) as oracle:
            effective = oracle.effective_size(fixed)
            pruned = oracle.pruned_size(fixed) if effective > limit else None
    except ValueError as exc:  # features with too many changed tuples
        return BallChoice(False, f"{head}: {exc}", size, None, None, limit, engine)
    if pruned is None:
        return BallChoice(
            True,
            f"{head}, {effective:,} changing only features that can move the prediction <= {limit:,}: enumerate it",
            size,
            effective,
            None,
            limit,
            engine,
        )
    use = pruned <= limit
    return BallChoice(
        use,
        f"{head}, {effective:,} changing only features that can move the prediction, about "
        f"{pruned:,} left by the node bounds: {'<=' if use else '>'} {limit:,}, "
        f"{'enumerate it' if use else 'use the solvers'}",
        size,
        effective,
        pruned,
        limit,
        engine,
    )


# --------------------------------------------------------------------------- moves


@dataclass(frozen=True)
class _Moves:
    """Every changed tuple of every feature, grouped by feature.

    ``feature[m]`` the feature of move ``m``; ``option[m]`` ``(max_pixels,)`` the domain index of
    the train each of the feature's pixels (in ``FeatureSet.groups`` order) takes; moves of
    feature ``f`` are ``start[f]:start[f + 1]``.
    """

    feature: np.ndarray
    option: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, domain: _Domain, features: FeatureSet) -> _Moves:
        total = int(sum(int(m) for m in domain.moves))
        if total > _MAX_MOVES:
            raise ValueError(
                f"the features have {total:,} changed tuples in all, too many to enumerate "
                f"(at most {_MAX_MOVES:,}); use smaller features or the solvers"
            )
        groups = _group_matrix(features)  # (n_features, width), -1 padded
        width = groups.shape[1]
        sizes = (groups >= 0).sum(axis=1)
        n_trains = len(domain.trains)
        counts = np.array([int(m) for m in domain.moves], np.int64)
        start = np.concatenate([[0], np.cumsum(counts)])
        feature = np.repeat(np.arange(len(features)), counts)
        option = np.full((total, width), -1, np.int64)
        for size in np.unique(sizes).tolist():  # the features of one size share their tuples
            which = np.flatnonzero(sizes == size)
            tuples = np.array(list(itertools.product(range(n_trains), repeat=size)), np.int64)  # (|D|^s, s)
            own = domain.inst_index[groups[which, :size]]  # (n_s, s), -1 outside the domain
            differs = ~np.all(tuples[None, :, :] == own[:, None, :], axis=2)  # (n_s, |D|^s)
            f_idx, t_idx = np.nonzero(differs)  # per feature in order, its tuples in order
            rows = start[which][f_idx] + (
                np.arange(len(f_idx)) - np.repeat(np.cumsum(counts[which]) - counts[which], counts[which])
            )
            option[rows, :size] = tuples[t_idx]
        return cls(feature, option, start)


def _group_matrix(features: FeatureSet) -> np.ndarray:
    """``(n_features, max pixels)`` pixel indices of each feature, ``-1`` padded."""
    width = max(len(g) for g in features.groups)
    out = np.full((len(features), width), -1, np.int64)
    for f, group in enumerate(features.groups):
        out[f, : len(group)] = group
    return out


def _root_options(domain: _Domain, features: FeatureSet, forced: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every assignment of the always-changing parts: ``(pixels, train indices (N, len(pixels)))`` blocks
    whose product is the set of roots (unowned pixels: every train; forced features: every tuple)."""
    blocks = []
    n_trains = len(domain.trains)
    if len(domain.unowned):
        blocks.append(
            (domain.unowned, np.array(list(itertools.product(range(n_trains), repeat=len(domain.unowned))), np.int64))
        )
    for f in forced:
        pixels = np.array(features.groups[f], np.int64)
        blocks.append((pixels, np.array(list(itertools.product(range(n_trains), repeat=len(pixels))), np.int64)))
    return blocks


def _root_product(blocks: list[tuple[np.ndarray, np.ndarray]], n_trains: int) -> tuple[np.ndarray, np.ndarray]:
    """All roots: ``(pixels (P,), train indices (N_root, P))``; one empty root without blocks."""
    count = math.prod(len(b[1]) for b in blocks) if blocks else 1
    if count > _MAX_ROOTS:
        raise ValueError(f"{count:,} assignments of the unowned pixels and forced features: too many to enumerate")
    if not blocks:
        return np.zeros(0, np.int64), np.zeros((1, 0), np.int64)
    pixels = np.concatenate([b[0] for b in blocks])
    grids = np.meshgrid(*[np.arange(len(b[1])) for b in blocks], indexing="ij")
    rows = [b[1][g.ravel()] for b, g in zip(blocks, grids)]
    return pixels, np.concatenate(rows, axis=1)


# --------------------------------------------------------------------------- engines


class _Engine:
    """Evaluates batches of nodes. A state holds one row per node; a child's state is its parent's
    changed by one move."""

    name = ""

    def null_features(self) -> np.ndarray:
        """Bool per feature: changing it changes no prediction anywhere in the whole ball."""
        raise NotImplementedError

    def roots(self, pixels: np.ndarray, assign: np.ndarray):
        """States of the roots: the instance with ``pixels`` given the trains ``assign`` ``(N, P)``."""
        raise NotImplementedError

    def take(self, state, rows: np.ndarray):
        raise NotImplementedError

    def flips(self, state) -> np.ndarray:
        """Bool per node: its prediction is not the target."""
        raise NotImplementedError

    def leaves(self, state, lo: np.ndarray, hi: np.ndarray, move_ids: np.ndarray) -> int:
        """The children of node ``n`` are its changes by the moves ``move_ids[lo[n]:hi[n]]``, numbered
        node by node: the number of the first that flips, or -1."""
        raise NotImplementedError

    def expand(self, state, parent: np.ndarray, moves: np.ndarray):
        """The children's states."""
        raise NotImplementedError

    def begin(self, question: _Question) -> None:
        """Per-question preparation."""

    def may_flip(self, question: _Question, state, after: np.ndarray, budget: int) -> np.ndarray:
        """Bool per node: some descendant adding at most ``budget`` moves of the features at positions
        ``>= after[n]`` of the question's order may flip (sound: False is a proof)."""
        return np.ones(len(after), bool)

    def worth_bounding(self, question: _Question, leaves: float, nodes: int) -> bool:
        """Whether bounding ``nodes`` nodes is cheaper than evaluating their ``leaves`` descendants."""
        return False


@dataclass
class _CurState:
    cur: np.ndarray  # (N, L) int32 inputs of the neurons that matter
    scores: np.ndarray  # (N, R) int32 rival scores

    def __len__(self) -> int:
        return len(self.cur)


class _CurrentEngine(_Engine):
    """One spiking layer, constant input: a node is the integer inputs ``I_j`` of the neurons that
    matter and the rival scores ``D_c'``; a flip is ``D_c' >= need`` for some rival (module
    docstring). The inner loops are :class:`~xsnn.solvers.ballscan.BallScan` (C, numpy fallback)."""

    name = "currents"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet,
        target: int,
        k: int,
        domain: _Domain,
        moves: _Moves,
        implementation: str | None = None,
    ) -> None:
        values = domain.trains[:, 0].astype(np.int64)  # each free train is constant: its value
        v = instance[0].astype(np.int64)
        lo, hi = distance_input_range(model, instance, features, np.ones(len(features), bool), k)
        ladders = neuron_ladders(model, lo, hi)
        bases, needs, terms_of = [], [], []
        for rival in range(model.n_classes):
            if rival == target:
                continue
            need = 1 if rival > target else 0
            base, terms = rival_terms(model, ladders, target, rival)
            if base + sum(e for _, _, e in terms if e > 0) < need:
                continue  # cannot win anywhere in the ball
            bases.append(base)
            needs.append(need)
            terms_of.append(terms)
        units = sorted({(j, a) for terms in terms_of for j, a, _ in terms})
        unit_index = {u: n for n, u in enumerate(units)}
        live = sorted({j for j, _ in units})
        column = {j: n for n, j in enumerate(live)}
        gains = np.zeros((len(units), len(bases)), np.int64)
        for r, terms in enumerate(terms_of):
            for j, a, e in terms:
                gains[unit_index[(j, a)], r] += e
        # a node has at least one column (a silent one when no neuron matters)
        w = model.weights[0][live].astype(np.int64) if live else np.zeros((1, model.n_inputs), np.int64)
        self.w, self.v, self.values = w, v, values
        self.centre = w @ v
        self.base = np.array(bases, np.int64)
        self.n_rivals = len(bases)
        n_moves = len(moves.feature)
        delta = np.zeros((n_moves, len(w)), np.int64)
        slots = _group_matrix(features)  # (n_features, width) pixels, -1 padded
        for p in range(moves.option.shape[1]):
            used = moves.option[:, p] >= 0
            pixel = np.maximum(slots[moves.feature, p], 0)
            change = np.where(used, values[np.maximum(moves.option[:, p], 0)] - v[pixel], 0)
            delta += w[:, pixel].T * change[:, None]
        self.delta = delta.astype(np.int32)
        unit_col = np.array([column[j] for j, _ in units], np.int64)
        unit_at = np.array([a for _, a in units], np.int64)
        touched = delta[:, unit_col] != 0 if len(units) else np.zeros((n_moves, 0), bool)  # (M, U)
        move_of, unit_of = np.nonzero(touched)
        move_ptr = np.concatenate([[0], np.cumsum(np.bincount(move_of, minlength=n_moves))])
        self.scan = BallScan(
            len(w),
            move_ptr,
            unit_of,
            delta[move_of, unit_col[unit_of]],
            unit_col,
            unit_at,
            gains,
            needs,
            implementation,
        )
        owner = np.repeat(np.arange(len(features)), np.diff(moves.start))
        touches = np.zeros(len(features), bool)
        np.logical_or.at(touches, owner, touched.any(axis=1))
        self._null = ~touches & ~domain.forced
        # per feature, the largest rise and fall of each input over its moves
        rise = np.zeros((len(features), len(w)), np.int64)
        fall = np.zeros((len(features), len(w)), np.int64)
        if n_moves:
            np.maximum.at(rise, owner, np.maximum(delta, 0))
            np.maximum.at(fall, owner, np.maximum(-delta, 0))
        self.levels = int(max(rise.max(initial=0), fall.max(initial=0)))
        small = np.int16 if self.levels < 2**15 else np.int32
        self.feature_rise, self.feature_fall = rise.astype(small), fall.astype(small)
        self._order = np.zeros(0, np.int64)
        self._suffix: dict[tuple[str, int], np.ndarray] = {}

    def null_features(self) -> np.ndarray:
        return self._null

    def roots(self, pixels: np.ndarray, assign: np.ndarray) -> _CurState:
        change = self.values[assign] - self.v[pixels][None, :]  # (N, P)
        cur = (self.centre[None, :] + change @ self.w[:, pixels].T).astype(np.int32)
        return _CurState(cur, self.scan.scores(cur, self.base))

    def take(self, state: _CurState, rows: np.ndarray) -> _CurState:
        return _CurState(state.cur[rows], state.scores[rows])

    def flips(self, state: _CurState) -> np.ndarray:
        return (state.scores >= self.scan.need).any(axis=1)

    def leaves(self, state: _CurState, lo: np.ndarray, hi: np.ndarray, move_ids: np.ndarray) -> int:
        return self.scan.leaves(state.cur, state.scores, lo, hi, move_ids)

    def expand(self, state: _CurState, parent: np.ndarray, moves: np.ndarray) -> _CurState:
        scores = np.empty((len(moves), self.n_rivals), np.int32)
        self.scan.children(state.cur, state.scores, parent, moves, scores)
        return _CurState(state.cur[parent] + self.delta[moves], scores)

    def begin(self, question: _Question) -> None:
        self._order = question.order
        self._suffix = {}

    def _top(self, kind: str, budget: int, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), L)``: per position ``q``, the sum of the ``budget`` largest per-feature
        rises (or falls) over the features at positions ``>= q`` of the question's order, by the
        layer cake ``top_r = sum_{t >= 1} min(r, #{f : rise_f >= t})`` (for ``r = 1``: the maximum)."""
        per_feature = self.feature_rise if kind == "rise" else self.feature_fall
        key = (kind, budget)
        full = self._suffix.get(key)
        if full is None and len(positions) <= 4:  # a few rows: reduce directly
            out = np.zeros((len(positions), per_feature.shape[1]), np.int32)
            for n, q in enumerate(positions.tolist()):
                rows = per_feature[self._order[q:]]
                if budget == 1:
                    out[n] = rows.max(axis=0, initial=0)
                    continue
                for level in range(1, self.levels + 1):
                    out[n] += np.minimum((rows >= level).sum(axis=0, dtype=np.int32), budget)
            return out
        if full is None:
            rows = per_feature[self._order]
            full = np.zeros((len(rows) + 1, rows.shape[1]), np.int32)
            if budget == 1:
                full[:-1] = np.maximum.accumulate(rows[::-1], axis=0)[::-1]
            else:
                for level in range(1, self.levels + 1):
                    counts = np.cumsum((rows >= level)[::-1], axis=0, dtype=np.int32)[::-1]  # positions >= q
                    full[:-1] += np.minimum(counts, budget)
            self._suffix[key] = full
        return full[positions]

    def may_flip(self, question: _Question, state: _CurState, after: np.ndarray, budget: int) -> np.ndarray:
        if not self.n_rivals:
            return np.zeros(len(after), bool)
        positions, rows = np.unique(after, return_inverse=True)
        rise = self._top("rise", budget, positions)
        fall = self._top("fall", budget, positions)
        return self.scan.bounds(state.cur, state.scores, rows.reshape(-1), rise, fall)

    def worth_bounding(self, question: _Question, leaves: float, nodes: int) -> bool:
        # a bound costs about a leaf per node plus the suffix sums (~ P x L / U leaves)
        return leaves > 4 * (nodes + len(question.order))


class _KernelEngine(_Engine):
    """Any network: states are packed inputs ``(N, T * words)``, predicted by the packed kernel."""

    name = "kernel"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet,
        target: int,
        k: int,
        domain: _Domain,
        moves: _Moves,
        implementation: str | None = None,
    ) -> None:
        self.net = PackedNetwork(model, implementation)
        self.model, self.features, self.target = model, features, target
        self.instance = instance
        self.trains = domain.trains
        n_words = self.net.n_words
        # a move XORs a few words of the packed input: entries merged by word, padded with (0, 0)
        entries: list[dict[int, int]] = [{} for _ in range(len(moves.feature))]
        for m, (f, option) in enumerate(zip(moves.feature.tolist(), moves.option.tolist())):
            for pixel, r in zip(features.groups[f], option):
                for t in np.flatnonzero(domain.trains[r] != instance[:, pixel]).tolist():
                    word = t * n_words + pixel // 64
                    entries[m][word] = entries[m].get(word, 0) | (1 << (pixel % 64))
        depth = max([len(e) for e in entries] + [1])
        self.word = np.zeros((len(entries), depth), np.int64)
        self.bits = np.zeros((len(entries), depth), np.uint64)
        for m, e in enumerate(entries):
            for c, (word, bits) in enumerate(sorted(e.items())):
                self.word[m, c], self.bits[m, c] = word, np.uint64(bits)
        self.propagator = BoundPropagator(model, instance, features, target, k)
        first = self.propagator.propagate(frozenset()).layers[0]  # every feature free
        varying = ~np.all(first.known_one == first.maybe_one, axis=0)  # first-layer neurons not constant
        feeds = (model.weights[0][varying] != 0).any(axis=0)  # per pixel
        self._null = np.array([not feeds[list(g)].any() for g in features.groups], bool) & ~domain.forced
        if domain.forced.any():
            # a fixed forced feature keeps its instance train, outside the free domain and so outside
            # the all-free bounds above: a neuron constant there may vary once it is fixed
            self._null[:] = False
        self._all = frozenset(range(len(features)))
        self.min_subtree = _KERNEL_BOUND_SUBTREE  # bound only the nodes with at least this many descendants

    def null_features(self) -> np.ndarray:
        return self._null

    def roots(self, pixels: np.ndarray, assign: np.ndarray) -> np.ndarray:
        xs = np.repeat(self.instance[None], len(assign), axis=0)
        if len(pixels):
            xs[:, :, pixels] = self.trains[assign].transpose(0, 2, 1)
        return pack_bits(xs).reshape(len(assign), -1)

    def take(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[rows]

    def flips(self, state: np.ndarray) -> np.ndarray:
        return self.net.predict_packed(state.reshape(len(state), self.model.n_steps, -1)) != self.target

    def expand(self, state: np.ndarray, parent: np.ndarray, moves: np.ndarray) -> np.ndarray:
        out = state[parent]
        rows = np.arange(len(out))
        for c in range(self.word.shape[1]):  # one word per row in each column: no repeated index
            out[rows, self.word[moves, c]] ^= self.bits[moves, c]
        return out

    def leaves(self, state: np.ndarray, lo: np.ndarray, hi: np.ndarray, move_ids: np.ndarray) -> int:
        done = 0
        for parent, child in _child_blocks(lo, hi, _CHUNK):
            hits = np.flatnonzero(self.flips(self.expand(state, parent, move_ids[child])))
            if len(hits):
                return done + int(hits[0])
            done += len(child)
        return -1

    def may_flip(self, question: _Question, state: np.ndarray, after: np.ndarray, budget: int) -> np.ndarray:
        out = np.ones(len(after), bool)
        for n, q in enumerate(after.tolist()):
            if math.comb(len(question.order) - q, budget) < self.min_subtree:
                continue  # cheaper to evaluate than to bound
            fixed = self._all.difference(question.order[q:].tolist())
            values = unpack_bits(state[n].reshape(self.model.n_steps, -1), self.model.n_inputs)
            out[n] = not self.propagator.propagate(fixed, values, budget).entailed
        return out

    def worth_bounding(self, question: _Question, leaves: float, nodes: int) -> bool:
        return leaves >= _KERNEL_BOUND_SUBTREE


# --------------------------------------------------------------------------- the search


@dataclass
class _Question:
    """One enumeration: candidate features in order (new ones first), their moves, the roots."""

    order: np.ndarray  # (P,) candidate features; positions 0..n_new-1 are new
    n_new_moves: int  # with need_new, the root's children are the first n_new_moves moves
    need_new: bool
    move_ids: np.ndarray  # (M_q,) global move indices, grouped by position
    move_pos: np.ndarray  # (M_q,) position of each
    pos_start: np.ndarray  # (P + 1,) first local move of each position
    budget: int  # k minus the forced features (changed in every root)
    root_pixels: np.ndarray
    root_assign: np.ndarray  # (N_root, len(root_pixels)) train indices
    root_state: object  # the engine's states of the roots

    @property
    def moves_per_feature(self) -> float:
        return len(self.move_ids) / max(1, len(self.order))


@dataclass
class BallStats:
    """Work counters of a :class:`BallOracle` (all questions together)."""

    questions: int = 0
    inputs: int = 0
    bounded: int = 0
    pruned: int = 0
    memo: int = 0
    null_skips: int = 0
    incremental: int = 0
    full: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "questions": self.questions,
            "inputs_evaluated": self.inputs,
            "nodes_bounded": self.bounded,
            "nodes_pruned": self.pruned,
            "memo_answers": self.memo,
            "null_answers": self.null_skips,
            "incremental": self.incremental,
            "full": self.full,
            "seconds": round(self.seconds, 6),
        }


class _Timeout(Exception):
    pass


class BallOracle(EntailmentOracle):
    """Exact distance-restricted oracle: enumerates the ball (module docstring).

    Args:
        model, instance, features, target: as for every oracle.
        max_distance: the distance bound ``k`` (required).
        engine: ``"currents"`` (one spiking layer, static-like coding), ``"kernel"`` (any network) or
            ``None`` for the first that applies.
        implementation: ``"c"``, ``"numpy"`` or ``None`` (C when built) for the engine's inner loops.
        bounds: ``"auto"`` (bound a node when its subtree is large enough to pay for it),
            ``"always"`` or ``"never"``; the verdicts are the same, only the work differs.

    Raises:
        ValueError: ``max_distance`` is None, the engine does not apply, or the features have too
            many changed tuples to enumerate.
    """

    name = "ball"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        *,
        engine: str | None = None,
        implementation: str | None = None,
        bounds: str = "auto",
    ) -> None:
        if max_distance is None:
            raise ValueError("ball enumeration needs a distance bound (max_distance), got None")
        if bounds not in ("auto", "always", "never"):
            raise ValueError(f"bounds must be 'auto', 'always' or 'never', got {bounds!r}")
        self.bounds = bounds
        super().__init__(model, instance, features, target, max_distance)
        applies = rival_split_applies(model, self.instance)
        if engine is None:
            engine = "currents" if applies else "kernel"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES} or None, got {engine!r}")
        if engine == "currents" and not applies:
            raise ValueError("the currents engine needs one spiking layer and a static-like coding; use 'kernel'")
        self.k = int(max_distance)
        self.domain = _Domain.of(model, self.instance, self.features)
        self.moves = _Moves.of(self.domain, self.features)
        engine_class = _CurrentEngine if engine == "currents" else _KernelEngine
        self.engine = engine_class(
            model, self.instance, self.features, self.target, self.k, self.domain, self.moves, implementation
        )
        if bounds == "always" and isinstance(self.engine, _KernelEngine):
            self.engine.min_subtree = 0
        n = len(self.features)
        self._plain = ~self.domain.forced
        self._candidate = self._plain & ~self.engine.null_features()
        self._one_move = bool(np.all(np.diff(self.moves.start) == 1))
        # Without forced features or features that can move the prediction, every B(F) acts as its
        # roots (the instance with each assignment of the unowned pixels): one answer for every
        # question, True (ENTAILED) or the witness
        self._constant: bool | np.ndarray | None = None
        self.ball_stats = BallStats()
        self._entailed: deque[np.ndarray] = deque(maxlen=_MEMO)  # free masks answered ENTAILED
        self._refuted: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=_MEMO)  # (free mask, witness)
        self._roots: dict[tuple[int, ...], tuple] = {}  # forced features -> root pixels, assignments, states
        if len(self.domain.trains) ** len(self.domain.unowned) > _MAX_ROOTS:
            raise ValueError(
                f"{len(self.domain.unowned)} pixels belong to no feature: their "
                f"{len(self.domain.trains) ** len(self.domain.unowned):,} assignments are too many to enumerate"
            )
        if not self._candidate.any() and not self.domain.forced.any():
            q = self._question(np.zeros(n, bool), None)
            hit = np.flatnonzero(self.engine.flips(q.root_state))
            self._constant = True if not len(hit) else self._witness(q, int(hit[0]), np.zeros(0, np.int64))
        self._n = n

    def effective_size(self, fixed: frozenset[int] = frozenset()) -> int:
        """The inputs of ``B(F)`` (``F`` the features outside ``fixed``) that change no null feature:
        the most the oracle evaluates for this question (exact integer)."""
        free = np.ones(self._n, bool)
        free[list(fixed)] = False
        return _count(self.domain, free & (self._candidate | self.domain.forced), self.k)

    def pruned_size(self, fixed: frozenset[int] = frozenset(), depth: int = 2) -> int:
        """An estimate of the inputs of ``B(F)`` left after the node bounds: the nodes of the
        enumeration tree down to ``depth`` (fewer when a level would exceed 262,144 nodes), each
        bounded with the whole remaining budget, are counted exactly, and each surviving node of
        the last level adds its whole subtree. For the currents engine (where a bound costs about
        one leaf); other engines give :meth:`effective_size`."""
        if not isinstance(self.engine, _CurrentEngine):
            return self.effective_size(fixed)
        free = np.ones(self._n, bool)
        free[list(fixed)] = False
        q = self._question(free, None)
        if q is None:
            return 0
        self.engine.begin(q)
        per = max(1, round(q.moves_per_feature))
        total = len(q.root_assign)
        level = [(q.root_state, np.zeros((len(q.root_assign), 0), np.int64))]
        for d in range(q.budget + 1):
            budget = q.budget - d
            survivors = []
            for state, path in level:
                after = q.move_pos[path[:, -1]] + 1 if d else np.zeros(len(path), np.int64)
                if budget:
                    rows = np.flatnonzero(self.engine.may_flip(q, state, after, budget))
                    survivors.append((self.engine.take(state, rows), path[rows], after[rows]))
            n_children = sum(int((len(q.move_ids) - q.pos_start[a]).sum()) for _, _, a in survivors)
            if d >= depth or n_children > _PRUNED_SIZE_NODES:  # count the survivors' subtrees whole
                for _, _, after in survivors:
                    total += sum(
                        sum(math.comb(r, j) * per**j for j in range(1, budget + 1))
                        for r in (len(q.order) - after).tolist()
                    )
                break
            level = []
            for state, path, after in survivors:
                lo = q.pos_start[after]
                for parent, child in _child_blocks(lo, np.full(len(path), len(q.move_ids)), _CHUNK):
                    total += len(child)
                    level.append(
                        (
                            self.engine.expand(state, parent, q.move_ids[child]),
                            np.concatenate([path[parent], child[:, None]], axis=1),
                        )
                    )
        return int(total)

    # ------------------------------------------------------------------ answering

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        start = time.perf_counter()
        deadline = None if time_limit is None else start + time_limit
        stats = self.ball_stats
        stats.questions += 1
        if self._constant is not None:  # no feature can move the prediction: the roots decide every question
            stats.null_skips += 1
            stats.seconds += time.perf_counter() - start
            if self._constant is True:
                return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)
            return Check(Verdict.NOT_ENTAILED, fixed, witness=self._constant, path=self.name)
        free = np.ones(self._n, bool)
        if fixed:
            free[np.fromiter(fixed, np.int64, len(fixed))] = False
        try:
            for known in self._entailed:  # B(free) ⊆ B(known) when no forced feature is left out
                if not (free & ~known).any() and not (known & ~free & self.domain.forced).any():
                    stats.memo += 1
                    return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)
            for known, witness in self._refuted:  # B(known) ⊆ B(free) likewise
                if not (known & ~free).any() and not (free & ~known & self.domain.forced).any():
                    stats.memo += 1
                    return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path=self.name)
            bases = [e for e in self._entailed if not (e & ~free).any()]
            base = max(bases, key=lambda e: int(e.sum())) if bases else None
            witness = self._search(free, base, deadline)
        except _Timeout:
            return Check(Verdict.UNKNOWN, fixed, path=self.name)
        finally:
            stats.seconds += time.perf_counter() - start
        if witness is None:
            self._entailed.appendleft(free)
            return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)
        self._refuted.appendleft((free, witness))
        return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path=self.name)

    def _question(self, free: np.ndarray, base: np.ndarray | None) -> _Question | None:
        """The enumeration of ``B(free)`` (only the inputs changing a feature outside ``base``, an
        ENTAILED free set ``⊆ free``, when given); ``None`` when nothing needs evaluating (ENTAILED)."""
        forced = np.flatnonzero(free & self.domain.forced)
        budget = self.k - len(forced)
        if budget < 0:
            return None  # more forced features than the bound: the ball is empty
        candidate = free & self._candidate
        need_new = base is not None and bool(base[forced].all())  # a forced new feature: every input is new
        if need_new:
            new = np.flatnonzero(candidate & ~base)
            if not len(new):
                return None  # every new feature is null: each new input acts as one of B(base)
            order = np.concatenate([new, np.flatnonzero(candidate & base)])
        else:
            new = order = np.flatnonzero(candidate)
        if self._one_move:
            move_ids = self.moves.start[order]
            move_pos = np.arange(len(order))
            pos_start = np.arange(len(order) + 1)
        else:
            counts = self.moves.start[order + 1] - self.moves.start[order]
            pos_start = np.concatenate([[0], np.cumsum(counts)])
            move_pos = np.repeat(np.arange(len(order)), counts)
            move_ids = self.moves.start[order][move_pos] + np.arange(int(pos_start[-1])) - pos_start[move_pos]
        key = tuple(forced.tolist())
        if key not in self._roots:
            pixels, assign = _root_product(
                _root_options(self.domain, self.features, list(key)), len(self.domain.trains)
            )
            self._roots[key] = (pixels, assign, self.engine.roots(pixels, assign))
        pixels, assign, state = self._roots[key]
        return _Question(
            order, int(pos_start[len(new)]), need_new, move_ids, move_pos, pos_start, budget, pixels, assign, state
        )

    def _search(self, free: np.ndarray, base: np.ndarray | None, deadline: float | None) -> np.ndarray | None:
        """A witness in ``B(free)`` (changing a feature outside ``base``), or None."""
        q = self._question(free, base)
        stats = self.ball_stats
        if q is None:
            stats.null_skips += 1
            return None
        stats.incremental += q.need_new
        stats.full += not q.need_new
        self.engine.begin(q)
        state = q.root_state
        roots = np.zeros((len(q.root_assign), 0), np.int64)
        root_index = np.arange(len(q.root_assign))
        for depth in range(1 if q.need_new else 0, q.budget + 1):
            found = self._visit(q, state, root_index, roots, 0, depth, deadline)
            if found is not None:
                return found
        return None

    def _visit(
        self, q: _Question, state, root: np.ndarray, path: np.ndarray, depth: int, target: int, deadline: float | None
    ) -> np.ndarray | None:
        """Evaluate the nodes at depth ``target`` below the nodes ``path`` (local moves ``(N, depth)``,
        roots ``root``) at ``depth``; a witness or None."""
        stats, engine = self.ball_stats, self.engine
        if depth == target:  # only the roots (round 0)
            stats.inputs += len(root)
            hit = np.flatnonzero(engine.flips(state))
            return self._witness(q, int(root[hit[0]]), path[hit[0]]) if len(hit) else None
        if self._interrupted or (deadline is not None and time.perf_counter() > deadline):
            raise _Timeout
        budget = target - depth
        after = q.move_pos[path[:, -1]] + 1 if depth else np.zeros(len(root), np.int64)
        restricted = depth == 0 and q.need_new
        if self.bounds == "always" or (
            self.bounds == "auto" and engine.worth_bounding(q, self._leaves(q, after, budget, restricted), len(root))
        ):
            stats.bounded += len(root)
            keep = engine.may_flip(q, state, after, budget)
            stats.pruned += int(len(keep) - keep.sum())
            if not keep.any():
                return None
            if not keep.all():
                rows = np.flatnonzero(keep)
                state, root, path, after = engine.take(state, rows), root[rows], path[rows], after[rows]
        lo = q.pos_start[after]
        hi = np.full(len(root), q.n_new_moves if restricted else len(q.move_ids))
        if depth + 1 == target:
            counts = np.maximum(hi - lo, 0)
            ends = np.cumsum(counts)
            first = 0
            while first < len(root):  # slices of parents with about _LEAVES children
                if self._interrupted or (deadline is not None and time.perf_counter() > deadline):
                    raise _Timeout
                before = int(ends[first - 1]) if first else 0
                last = max(first + 1, int(np.searchsorted(ends, before + _LEAVES, side="right")))
                hit = engine.leaves(engine.take(state, slice(first, last)), lo[first:last], hi[first:last], q.move_ids)
                if hit >= 0:
                    stats.inputs += hit + 1
                    n = first + int(np.searchsorted(ends[first:last] - before, hit, side="right"))
                    child = int(lo[n] + hit - (ends[n] - before - counts[n]))
                    return self._witness(q, int(root[n]), np.append(path[n], child))
                stats.inputs += int(ends[last - 1]) - before
                first = last
            return None
        for parent, child in _child_blocks(lo, hi, _CHUNK):
            if self._interrupted or (deadline is not None and time.perf_counter() > deadline):
                raise _Timeout
            moves = q.move_ids[child]
            kids = engine.expand(state, parent, moves)
            found = self._visit(
                q,
                kids,
                root[parent],
                np.concatenate([path[parent], child[:, None]], axis=1),
                depth + 1,
                target,
                deadline,
            )
            if found is not None:
                return found
        return None

    @staticmethod
    def _leaves(q: _Question, after: np.ndarray, budget: int, restricted: bool) -> float:
        """About how many inputs the nodes' subtrees hold within ``budget`` more moves."""
        remaining = (len(q.order) - after).astype(np.float64)
        per = q.moves_per_feature
        if restricted:  # the root's children are the new moves only
            return q.n_new_moves * float(remaining.max(initial=0) * per) ** (budget - 1) / math.factorial(budget - 1)
        return float(np.sum((remaining * per) ** budget)) / math.factorial(budget)

    def _witness(self, q: _Question, root: int, path: np.ndarray) -> np.ndarray:
        """The input of a node: the instance, its root assignment, its moves."""
        x = self.instance.copy()
        trains = self.domain.trains
        if len(q.root_pixels):
            x[:, q.root_pixels] = trains[q.root_assign[root]].T
        for local in np.asarray(path).tolist():
            m = int(q.move_ids[local])
            group = list(self.features.groups[int(self.moves.feature[m])])
            x[:, group] = trains[self.moves.option[m, : len(group)]].T
        return x


def _child_blocks(lo: np.ndarray, hi: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The children ``(parent index, local move)`` of parents whose children are moves ``lo[i]:hi[i]``,
    in blocks of at most ``chunk`` (a parent with more children is split)."""
    counts = np.maximum(hi - lo, 0)
    ends = np.cumsum(counts)
    n = len(counts)
    first = 0
    while first < n:
        before = int(ends[first - 1]) if first else 0
        last = int(np.searchsorted(ends, before + chunk, side="right"))
        if last <= first:  # one parent with more than chunk children
            for a in range(int(lo[first]), int(hi[first]), chunk):
                b = min(a + chunk, int(hi[first]))
                yield np.full(b - a, first, np.int64), np.arange(a, b, dtype=np.int64)
            first += 1
            continue
        sizes = counts[first:last]
        total = int(sizes.sum())
        if total:
            parent = np.repeat(np.arange(first, last), sizes)
            offset = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            yield parent, lo[parent] + offset
        first = last


# --------------------------------------------------------------------------- verification


def _claims(cert) -> list[frozenset[int]]:
    """The fixed sets of the ENTAILED claims that verification re-decides."""
    if isinstance(cert, AXpCertificate):
        return [cert.features]
    everything = frozenset(range(len(cert.question.features)))
    return [(everything - cert.features) | {i} for i in sorted(cert.features - cert.unproven)]


def _question_oracle(cert) -> BallOracle:
    q = cert.question
    if q.max_distance is None:
        raise ValueError("the certificate has no distance bound: its claims are not about a ball")
    return BallOracle(q.model, q.instance, q.features, q.target, q.max_distance)


def enumeration_size(certified) -> int:
    """The most inputs :func:`verify_by_enumeration` evaluates for one ENTAILED claim (the largest
    :meth:`BallOracle.effective_size` among them)."""
    cert = certificate_of(certified)
    with _question_oracle(cert) as oracle:
        return max((oracle.effective_size(fixed) for fixed in _claims(cert)), default=0)


def verify_by_enumeration(
    certified,
    *,
    limit: int = BALL_INPUT_LIMIT,
    time_limit: float | None = None,
    require_independent: bool = True,
    stop: threading.Event | None = None,
) -> VerificationReport:
    """Re-check a distance-restricted certificate (AXp or CXp) by enumeration.

    This is :func:`~xsnn.solvers.certificate.verify` with a :class:`BallOracle` as the verifying
    oracle: every ENTAILED claim (an AXp's sufficiency, a CXp's necessity steps) is re-decided by
    evaluating the inputs of its ball, and every witness (an AXp's minimality steps, a CXp's
    change) is re-run through the reference forward. Neither shares an encoding with a solver.
    The report's ``verifier`` is ``("ball",)``; with ``require_independent`` a claim that a ball
    oracle itself produced is reported as not independently checked. ``time_limit`` (seconds for
    the whole verification) and ``stop`` are passed on to ``verify``.

    Raises:
        ValueError: the certificate has no distance bound, or a claim's ball holds more than
            ``limit`` inputs that the oracle would evaluate (:func:`enumeration_size`): verify
            with the solvers instead.
    """
    cert = certificate_of(certified)
    oracle = _question_oracle(cert)
    size = max((oracle.effective_size(fixed) for fixed in _claims(cert)), default=0)
    if size > limit:
        oracle.close()
        raise ValueError(
            f"a claim's ball holds {size:,} inputs to enumerate, more than the limit {limit:,}; "
            "verify with the solvers instead"
        )
    return verify(
        cert, lambda *args, **kwargs: oracle, require_independent=require_independent, time_limit=time_limit, stop=stop
    )
