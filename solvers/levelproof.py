"""Independent check of the level search's ENTAILED answers: a second solver re-checks the proof.

On dense binary networks no other exact backend decides the sufficiency claim of a complete AXp
in useful time (CP-SAT and SAT on the causal model time out after 300 s on ``mnist159-binary16``,
``docs/binary.md``), so the level search's answer is re-checked from its *proof* instead.

**What the level search proves** (:mod:`xsnn.solvers.levels`). For each rival ``c'`` the claims
``t`` (``sigma_t I_{j_t} >= sigma_t b_t``, weight ``|e_t|``) come from the rival terms; ``c'``
can win only if the claims that hold at some completion ``x`` reach the goal
``sum_{t holds} |e_t| >= R``. The search ends with a set of *cuts*, claim sets that no completion
satisfies together, such that no claim set reaching the goal avoids them all.

**What this module checks**, for the question's fixed pixels (every step recomputed here from the
model, never taken from the search):

1. each claim's status over the free pixels (always true, never true, open) from the interval
   ``[lo_j, hi_j]`` of ``I_j``, and the rivals that the interval bound rules out;
2. each cut the search used, on *this* question's free pixels:

   - an LP certificate (rows, integer multipliers ``lambda >= 0``, row pairs with multipliers
     ``mu >= 0``): the combined row ``G . z >= H``, ``G = sum lambda_k a_k + sum mu (a_x + a_y)/2``,
     ``H = sum lambda_k t_k + sum mu ceil((t_x + t_y)/2)`` (each half-sum must be integral), is
     valid for every binary completion, and ``sum_i max(0, G_i) < H`` shows that none satisfies
     it (exact integer arithmetic); the cut must contain every row the certificate uses;
   - a core (no certificate): CP-SAT decides the cut's rows infeasible;

3. the *master*: CP-SAT (not the search's Minicard) shows that no set of open claims reaches the
   goal while respecting every checked cut, the implications and contradictions between claims
   of one neuron (derived here) and the infeasible pairs of :func:`~xsnn.solvers.levels.pair_feasible`
   (tested against enumeration in ``tests/test_levels.py``).

Trusted: the rival terms (:func:`~xsnn.encoders.rivals.rival_terms` and the ladders; tested
against the reference forward and brute force) and the pair test (:func:`~xsnn.solvers.levels.sign_class_counts`
and :func:`~xsnn.solvers.levels.pair_feasible`, tested against enumeration). Everything else is re-derived.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from xsnn.encoders.rivals import neuron_ladders, rival_terms
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .levels import LevelOracle, pair_feasible, sign_class_counts
from .oracle import Check, Verdict

__all__ = ["ProofError", "rival_claims", "check_level_proof", "CheckedLevelOracle"]

log = logging.getLogger(__name__)


class ProofError(Exception):
    """A proof of the level search that does not check (names the rival and the failing step)."""


def rival_claims(model: BSNN, target: int) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per rival that can win at all, its claims ``(neuron, sign, bound, weight)`` and goal ``R``
    (from the rival terms over the all-free ranges; the order of the terms is the search's)."""
    w = model.weights[0].astype(np.int64)
    ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))
    out = {}
    for rival in range(model.n_classes):
        if rival == target:
            continue
        base, terms = rival_terms(model, ladders, target, rival)
        need = 1 if rival > target else 0
        e = np.array([term[2] for term in terms], np.int64)
        if base + int(e[e > 0].sum()) < need:
            continue  # cannot win whatever the input
        a = np.array([term[1] for term in terms], np.int64)
        neuron = np.array([term[0] for term in terms], np.int64)
        sign = np.where(e > 0, 1, -1)
        out[rival] = (neuron, sign, np.where(e > 0, a, a - 1), np.abs(e), int(need - base - e[e < 0].sum()))
    return out


def check_level_proof(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet,
    fixed: frozenset[int],
    target: int,
    proof: dict[int, list[tuple[np.ndarray, dict | None]]],
    time_limit: float | None = None,
) -> None:
    """Check that fixing ``fixed`` entails ``target`` by the level search's ``proof`` (module docstring).

    Args:
        model, instance, features, fixed, target: the question (one spiking layer, static coding).
        proof: per rival, the cuts the search gave its master: ``(claim indices, reason)``,
            reason an LP certificate ``{"rows", "multipliers", "pairs", "pair_multipliers"}`` or
            ``None`` (a core).
        time_limit: seconds for the CP-SAT calls together.

    Raises :class:`ProofError` when a step does not check (or CP-SAT runs out of time).
    """
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    w = model.weights[0].astype(np.int64)
    v = np.asarray(instance[0], dtype=np.int64)
    fixed_pixels = features.pixel_mask(sorted(fixed)) if fixed else np.zeros(model.n_inputs, bool)
    free = np.flatnonzero(~fixed_pixels)
    w_free = w[:, free]
    const = w[:, fixed_pixels] @ v[fixed_pixels]
    lo = const + np.minimum(w_free, 0).sum(axis=1)
    hi = const + np.maximum(w_free, 0).sum(axis=1)
    counts = None  # the pair test's pixel counts, built at the first rival that needs them
    for rival, (neuron, sign, bound, weight, goal) in rival_claims(model, target).items():
        always = np.where(sign > 0, lo[neuron] >= bound, hi[neuron] <= bound)
        never = np.where(sign > 0, hi[neuron] < bound, lo[neuron] > bound)
        open_ = ~always & ~never
        rest = goal - int(weight[always].sum())
        if int(weight[open_].sum()) < rest:
            continue  # the interval bound rules this rival out
        if rest <= 0:
            raise ProofError(f"rival {rival}: the claims that always hold already win; no proof can exclude it")
        if rival not in proof:
            raise ProofError(f"rival {rival}: not ruled out by the interval bound and no cuts given")

        def rows(claims: np.ndarray, neuron=neuron, sign=sign, bound=bound) -> tuple[np.ndarray, np.ndarray]:
            """The claims as rows ``a z >= t`` over the free pixels."""
            j, s = neuron[claims], sign[claims]
            return s[:, None] * w_free[j], s * (bound[claims] - const[j])

        claims = np.flatnonzero(open_)
        var = {int(t): k for k, t in enumerate(claims.tolist())}
        clauses: list[list[int]] = []  # each: master variables of which not all may hold
        for cut, reason in proof[rival]:
            cut = np.asarray(cut, dtype=np.int64)
            if never[cut].any():
                continue  # a claim that never holds: the clause is satisfied anyway
            if reason is None:
                _check_core(*rows(cut), deadline, rival)
            else:
                _check_certificate(cut, reason, rows, rival)
            clause = [var[int(t)] for t in cut if not always[t]]
            if not clause:
                raise ProofError(f"rival {rival}: a cut refutes claims that always hold")
            clauses.append(clause)
        counts = sign_class_counts(w_free) if counts is None else counts
        _check_master(claims, neuron, sign, bound, weight, rest, clauses, counts, const, deadline, rival)


def _check_certificate(cut: np.ndarray, reason: dict, rows, rival: int) -> None:
    """The exact Farkas test of one LP certificate on this question (module docstring, step 2)."""
    claim_rows = np.asarray(reason["rows"], dtype=np.int64)
    lam = np.asarray(reason["multipliers"], dtype=np.int64)
    pairs = np.asarray(reason["pairs"], dtype=np.int64).reshape(-1, 2)
    mu = np.asarray(reason["pair_multipliers"], dtype=np.int64)
    if (lam < 0).any() or (mu < 0).any() or len(lam) != len(claim_rows) or len(mu) != len(pairs):
        raise ProofError(f"rival {rival}: malformed certificate")
    used = lam > 0
    used[pairs.ravel()] = True
    if not set(claim_rows[used].tolist()) <= set(cut.tolist()):
        raise ProofError(f"rival {rival}: the certificate uses rows outside its cut")
    a, t = rows(claim_rows)
    g = lam @ a
    h = int(lam @ t)
    for (x, y), m in zip(pairs.tolist(), mu.tolist()):
        twice = a[x] + a[y]
        if np.any(twice % 2):
            raise ProofError(f"rival {rival}: a rounded pair of rows is not integral")
        g = g + m * (twice // 2)
        h += m * -((-(int(t[x]) + int(t[y]))) // 2)
    if not int(np.maximum(g, 0).sum()) < h:
        raise ProofError(f"rival {rival}: a certificate does not refute its claims on this question")


def _infeasible(model, deadline: float | None) -> tuple[bool, int]:
    """Whether CP-SAT (one worker, within ``deadline``) proves ``model`` infeasible; its status."""
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    if deadline is not None:
        solver.parameters.max_time_in_seconds = max(deadline - time.perf_counter(), 0.0)
    status = solver.solve(model)
    return status == cp_model.INFEASIBLE, status


def _check_core(a: np.ndarray, t: np.ndarray, deadline: float | None, rival: int) -> None:
    """CP-SAT: no binary completion satisfies the rows ``a z >= t``."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    z = [m.new_bool_var(f"z{i}") for i in range(a.shape[1])]
    for row, rhs in zip(a.tolist(), t.tolist()):
        m.add(cp_model.LinearExpr.weighted_sum(z, row) >= int(rhs))
    infeasible, status = _infeasible(m, deadline)
    if not infeasible:
        raise ProofError(f"rival {rival}: a core's rows are not shown infeasible (CP-SAT status {status})")


def _check_master(
    claims: np.ndarray,
    neuron: np.ndarray,
    sign: np.ndarray,
    bound: np.ndarray,
    weight: np.ndarray,
    goal: int,
    clauses: list[list[int]],
    counts: np.ndarray,
    const: np.ndarray,
    deadline: float | None,
    rival: int,
) -> None:
    """CP-SAT: no choice of holding open claims reaches ``goal`` within the checked constraints."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    q = [m.new_bool_var(f"q{k}") for k in range(len(claims))]
    m.add(cp_model.LinearExpr.weighted_sum(q, weight[claims].tolist()) >= goal)
    j, s, b = neuron[claims], sign[claims], bound[claims]
    for x in range(len(claims)):
        for y in range(x + 1, len(claims)):
            if j[x] != j[y]:
                continue
            if s[x] == s[y]:  # the stronger claim implies the weaker
                stronger, weaker = (x, y) if s[x] * b[x] >= s[y] * b[y] else (y, x)
                m.add_implication(q[stronger], q[weaker])
            else:  # I >= b_up and I <= b_down leave no value when b_up > b_down
                up, down = (x, y) if s[x] > 0 else (y, x)
                if b[up] > b[down]:
                    m.add_bool_or([q[x].Not(), q[y].Not()])
    x_idx, y_idx = np.triu_indices(len(claims), k=1)
    other = j[x_idx] != j[y_idx]
    x_idx, y_idx = x_idx[other], y_idx[other]
    if len(x_idx):
        pair_counts = counts[:, j[x_idx], j[y_idx]]  # pixels by the signs of their weights into the two neurons
        ok = pair_feasible(pair_counts, b[x_idx] - const[j[x_idx]], s[x_idx], b[y_idx] - const[j[y_idx]], s[y_idx])
        for x, y in zip(x_idx[~ok].tolist(), y_idx[~ok].tolist()):
            m.add_bool_or([q[x].Not(), q[y].Not()])
    for clause in clauses:
        m.add_bool_or([q[k].Not() for k in clause])
    infeasible, status = _infeasible(m, deadline)
    if not infeasible:
        raise ProofError(f"rival {rival}: a set of claims reaching the goal avoids every cut (CP-SAT status {status})")


class CheckedLevelOracle(LevelOracle):
    """The level search whose every ENTAILED answer is re-checked by :func:`check_level_proof`
    (CP-SAT and exact arithmetic) before it is returned; a proof that does not check gives
    UNKNOWN (logged). A verifier backend for dense networks (``levels-checked``)."""

    name = "levels-checked"

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        start = time.perf_counter()
        answer = super()._check(fixed, time_limit)
        if answer.verdict is not Verdict.ENTAILED:
            return answer
        left = None if time_limit is None else max(float(time_limit) - (time.perf_counter() - start), 0.0)
        try:
            check_level_proof(
                self.model, self.instance, self.features, fixed, self.target, self.last_proof or {}, time_limit=left
            )
        except ProofError as exc:
            log.error("level-search proof rejected: %s", exc)
            return Check(Verdict.UNKNOWN, fixed, path=self.name + ":rejected")
        return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)
