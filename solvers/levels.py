"""Exact entailment on dense networks by a search over the hidden neurons' levels (lazy cuts).

Setting (as for :mod:`xsnn.encoders.rivals`): one spiking layer, the static coding (one Boolean
``x_i`` per pixel). Neuron ``j`` sees ``I_j = W_j . x`` at every step and its spike count is a
step function of ``I_j``; for the target ``c`` and a rival ``c'``

    D_c'(x) = score_c' - score_c = B + sum_t e_t [I_{j_t} >= a_t],

and ``c'`` wins iff ``D_c'(x) >= need`` (``need = [c' > c]``: ties go to the lowest index).

**Claims.** Each term ``t = (j, a, e)`` gives one *claim* about one neuron: ``I_j >= a`` where
``e > 0`` (the rival collects the gain) and ``I_j <= a - 1`` where ``e < 0`` (the rival dodges
the loss). Every claim is one linear row ``sigma_t W_j . x >= sigma_t b_t`` (``sigma = +1,
b = a`` or ``sigma = -1, b = a - 1``). With ``q_t`` "claim ``t`` holds",

    D_c'(x) >= B + sum_{e < 0} e + sum_t |e_t| q_t,

with equality for the true indicators, so ``c'`` can win iff some claim set ``Q`` with
``sum_{t in Q} |e_t| >= R = need - B - sum_{e < 0} e`` (a *winning* set) is *feasible*: some
completion ``x`` of the free pixels satisfies all its rows (any such ``x`` is a counterexample;
conversely a counterexample's true claims form a winning feasible set). This is the one-sided
form of :mod:`xsnn.encoders.rivals`, read as a disjunction over claim sets.

**Search** (combinatorial Benders decomposition, or lazy clause generation over the claims).
A small SAT solver (the *master*) holds one Boolean per open claim, the goal ``sum |e_t| q_t >=
R`` (a native cardinality constraint over repeated literals, as in
:mod:`xsnn.solvers.rivalsat`) and *cuts*: clauses ``not all of C`` for claim sets ``C`` known to be
infeasible. Each round it proposes a winning set, which is shrunk to a minimal winning one
(claims dropped while the goal holds, those furthest from the instance first) and checked:

1. **LP with an exact certificate.** The linear relaxation (``x`` in ``[0, 1]``) is solved; if
   it is infeasible its dual gives multipliers ``lambda >= 0``, rounded to integers and checked
   in exact integer arithmetic: the combined row ``G . x >= H`` (``G = sum lambda_t sigma_t W_j``,
   ``H = sum lambda_t sigma_t b_t``) cannot hold when ``sum_fixed G_i v_i + sum_free max(0, G_i) <
   H``. Then the claims with ``lambda_t > 0`` are infeasible together: a cut. (A rounding that
   fails the exact check proves nothing; the exact step 2 decides instead.)
   (Before the LP: the *reference point*, the newest counterexample with the fixed pixels reset
   to the instance, is tried on the rows; the master's phases prefer the claims it satisfies.)
2. **Parity cuts.** Where the LP is feasible, the rank-one Chvatal-Gomory cut of every pair
   of rows whose sum is even in every entry (always so with +1/-1 weights) is added: the half-sum
   is an integer at every binary point, so its right side may be rounded up. The LP with these
   rows gives a certificate as in 1 (the rows' rounded right sides enter ``H``). Measured on
   ``mnist159-binary``: every LP-feasible but infeasible claim set met in a deletion step with 158
   free pixels was refuted this way.
3. **Exact check** otherwise: the LP point rounded, if it satisfies every row (a counterexample);
   else CP-SAT on the rows alone (a counterexample, or infeasible: the rows are then shrunk to
   an infeasible subset by deletion, one CP-SAT call per row, and that subset is the cut).

Only the strongest claim per neuron and direction becomes a row (``I_j >= a`` implies
``I_j >= a'`` for ``a' < a``).

When the master has no winning set left, rival ``c'`` cannot win; the question is ENTAILED when
no rival can, NOT_ENTAILED at the first counterexample (re-run through the reference forward by
:meth:`EntailmentOracle.check`). Every step is exact, so the verdict is the plain solver's.

**Cuts found before the search** and **kept from question to question**:

- *claims of one neuron*: ``I_j >= a`` implies ``I_j >= a'`` for ``a' < a``, two claims that
  leave ``I_j`` no value are infeasible together;
- *pairs* (:func:`pair_feasible`): two claims on neurons ``j`` and ``k`` are decided exactly from
  the counts of free pixels by the signs of ``(W_ji, W_ki)``: with ``u`` = (pixels on among the
  ``++`` ones) - (on among ``--``) and ``v`` = (on among ``+-``) - (on among ``-+``), which range
  independently over all integers of ``[-n_{--}, n_{++}]`` and ``[-n_{-+}, n_{+-}]``,
  ``I_j = c_j + u + v (+ r)`` and ``I_k = c_k + u - v (+ s)`` (``r``, ``s``: pixels wired to one of
  the two only); each one-sided pair of rows is loosest at one corner of that box, so one
  interval test per pair decides it;
- *certificates*: an LP certificate ``(G, H)`` of one question is re-checked on the next in
  ``O(n)``; it stays valid while ``sum_fixed G_i v_i + sum_free max(0, G_i) < H`` (fixing a pixel
  never raises the left side), so its cut is reused wherever it still holds. A CP-SAT core is
  reused where the free pixels are a subset of those it was found with.

Infeasibility is monotone in the free set (fewer free pixels, fewer completions), which is what
makes every reuse sound.

Measured in ``docs/binary.md``: on the dense ``mnist159-binary`` (784-32-3) the ENTAILED
questions that took CP-SAT 5-160 s with 33-79 free pixels are decided in 0.1-11 s.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pysat.solvers import Solver

from xsnn.encoders.rivals import neuron_ladders, rival_terms
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict
from .rivalsat import rival_sat_applies

__all__ = ["LevelOracle", "certifies", "level_portfolio", "level_search_applies", "pair_feasible", "sign_class_counts"]

log = logging.getLogger(__name__)


def level_search_applies(model: BSNN, instance: np.ndarray) -> bool:
    """True where :class:`LevelOracle` answers: one spiking layer and the static coding."""
    return rival_sat_applies(model, instance)


def sign_class_counts(w_free: np.ndarray) -> np.ndarray:
    """``(8, n_0, n_0)`` integers: for every two neurons ``j, k``, the free pixels by the signs of
    their weights into ``j`` and ``k`` (columns of ``w_free``), in the order of
    :func:`pair_feasible`: ``++, +-, -+, --, +0, -0, 0+, 0-``."""
    plus = (w_free > 0).astype(np.float64)
    minus = (w_free < 0).astype(np.float64)
    zero = (w_free == 0).astype(np.float64)
    pairs = ((plus, plus), (plus, minus), (minus, plus), (minus, minus), (plus, zero), (minus, zero), (zero, plus),
             (zero, minus))  # fmt: skip
    return np.rint(np.stack([a @ b.T for a, b in pairs])).astype(np.int64)


def pair_feasible(
    counts: np.ndarray, alpha: np.ndarray, sign_a: np.ndarray, beta: np.ndarray, sign_b: np.ndarray
) -> np.ndarray:
    """Can two one-sided rows on two neurons hold together? (elementwise over the last axis)

    ``counts`` (``(8, m)``): the free pixels by the signs of their weights into the two neurons,
    in the order ``(+,+), (+,-), (-,+), (-,-), (+,0), (-,0), (0,+), (0,-)``. The two neurons'
    free sums are ``p = u + v + r`` and ``q = u - v + s`` with ``u`` = (pixels on among ``(+,+)``)
    - (on among ``(-,-)``), ``v`` = (on among ``(+,-)``) - (on among ``(-,+)``), ``r`` and ``s``
    the sums of the pixels wired to one neuron only; every integer of ``u in [-n_--, n_++]``,
    ``v in [-n_-+, n_+-]``, ``r``, ``s`` (in theirs) is reached independently. The rows are
    ``sign_a p >= sign_a alpha`` and ``sign_b q >= sign_b beta``. ``r`` and ``s`` each appear in
    one row, so they take their best end; then both rows get looser in one direction of ``u``
    (``sign_a = sign_b``) or of ``v`` (otherwise), so that variable takes its end and the other
    must fit in an interval.
    """
    n_pp, n_pm, n_mp, n_mm, n_p0, n_m0, n_0p, n_0m = counts
    up_a, up_b = sign_a > 0, sign_b > 0
    alpha = alpha - np.where(up_a, n_p0, -n_m0)  # r at its best end
    beta = beta - np.where(up_b, n_0p, -n_0m)  # s at its best end
    u0, u1, v0, v1 = -n_mm, n_pp, -n_mp, n_pm
    # (+,+): u = u1, v in [alpha - u1, u1 - beta];  (-,-): u = u0, v in [u0 - beta, alpha - u0]
    # (+,-): v = v1, u in [alpha - v1, beta + v1];  (-,+): v = v0, u in [beta + v0, alpha - v0]
    same = up_a == up_b
    u = np.where(up_a, u1, u0)
    v = np.where(up_a, v1, v0)
    lo_same = np.maximum(v0, np.where(up_a, alpha - u, u - beta))
    hi_same = np.minimum(v1, np.where(up_a, u - beta, alpha - u))
    lo_mixed = np.maximum(u0, np.where(up_a, alpha - v, beta + v))
    hi_mixed = np.minimum(u1, np.where(up_a, beta + v, alpha - v))
    return np.where(same, lo_same <= hi_same, lo_mixed <= hi_mixed)


def level_portfolio(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet | None = None,
    target: int | None = None,
    max_distance: int | None = None,
    *,
    fast_paths: bool = True,
    sat_seconds: float = 0.0,
) -> EntailmentOracle:
    """The level search behind the fast paths of :class:`~xsnn.solvers.layered.LayeredOracle`,
    after the incremental per-rival SAT oracle within ``sat_seconds`` per question if that is
    positive (the default portfolio's first stage; measured in ``docs/binary.md``: on the dense
    binary models it answers almost nothing within 0.1 s, while the look-ahead answers most
    NOT_ENTAILED questions in milliseconds). Under a distance bound, where the level search does
    not apply, CP-SAT takes its place."""
    from .cpsat import CPSATOracle
    from .layered import LayeredOracle
    from .portfolio import PortfolioOracle
    from .rivalsat import RivalSATOracle

    def second() -> EntailmentOracle:
        if max_distance is not None:
            exact = CPSATOracle(model, instance, features, target, max_distance)
        else:
            exact = LevelOracle(model, instance, features, target)
        return LayeredOracle(exact) if fast_paths else exact

    if sat_seconds <= 0:
        return second()
    sat = RivalSATOracle(model, instance, features, target, max_distance)
    return PortfolioOracle([sat, second], [sat_seconds])


class _Rival:
    """The claims of one rival (from the all-free ladders) and the cuts kept for them."""

    def __init__(self, rival: int, need: int, base: int, terms: list[tuple[int, int, int]]) -> None:
        self.rival = rival
        terms_arr = np.array(terms, np.int64).reshape(-1, 3)
        self.neuron = terms_arr[:, 0]
        self.sign = np.where(terms_arr[:, 2] > 0, 1, -1)
        self.bound = np.where(terms_arr[:, 2] > 0, terms_arr[:, 1], terms_arr[:, 1] - 1)  # sigma I_j >= sigma b
        self.weight = np.abs(terms_arr[:, 2])
        # per claim: the weaker claims of its neuron and direction, weakest first
        strength = self.sign * self.bound  # sigma b: larger is stronger
        self.weaker = [
            np.array(
                sorted(
                    (
                        u
                        for u in range(len(terms_arr))
                        if self.neuron[u] == self.neuron[t]
                        and self.sign[u] == self.sign[t]
                        and strength[u] < strength[t]
                    ),
                    key=lambda u: strength[u],
                ),
                np.int64,
            )
            for t in range(len(terms_arr))
        ]
        self.goal = int(need - base - terms_arr[:, 2][terms_arr[:, 2] < 0].sum())  # R
        # cuts kept across questions: LP certificates (claims, G, H) and CP-SAT cores (claims, free pixels)
        self.cert_claims: list[np.ndarray] = []
        self.cert_g: list[np.ndarray] = []
        self.cert_h: list[int] = []
        self.cert_reason: list[dict] = []  # the rows and multipliers behind each (G, H), for proofs
        self.core_claims: list[np.ndarray] = []
        self.core_free: list[np.ndarray] = []
        self.feasible = 0  # how often this rival had a counterexample

    def __len__(self) -> int:
        return len(self.neuron)

    def holding_cuts(self, fixed_pixels: np.ndarray, value: np.ndarray) -> list[tuple[np.ndarray, dict | None]]:
        """The kept cuts that hold with the pixels ``fixed_pixels`` fixed to ``value`` and the
        others free, each as ``(claim indices, reason)``: an LP certificate ``(G, H)`` where
        ``sum_fixed G_i v_i + sum_free max(0, G_i) < H``, a CP-SAT core where every free pixel was
        free when it was found."""
        holding = []
        if self.cert_claims:
            g = np.array(self.cert_g)  # (m, n)
            best = g[:, fixed_pixels] @ value[fixed_pixels] + np.maximum(g[:, ~fixed_pixels], 0).sum(axis=1)
            holding += [
                (self.cert_claims[k], self.cert_reason[k]) for k in np.flatnonzero(best < np.array(self.cert_h))
            ]
        if self.core_claims:
            free_then = np.array(self.core_free)
            inside = ~(~fixed_pixels[None, :] & ~free_then).any(axis=1)
            holding += [(self.core_claims[k], None) for k in np.flatnonzero(inside)]
        return holding


class LevelOracle(EntailmentOracle):
    """Exact entailment by a search over claim sets with lazy cuts (module docstring).

    Args:
        model, instance, features, target: see :class:`EntailmentOracle` (no distance bound).
        pair_cuts: decide every pair of claims exactly before the search (:func:`pair_feasible`).
        lp_cuts: check each claim set by its linear relaxation first (an exact certificate, or
            a rounded point); off: CP-SAT decides every claim set.
        reuse_cuts: keep the cuts of each question for the next ones (module docstring).
        keep: the most cuts kept per rival and kind (the oldest go first).

    ``stats`` counts answers by path (``levels``); :attr:`counters` counts master rounds, LP
    calls, LP cuts, CP-SAT calls and reused cuts over the oracle's life; :attr:`last_rivals`
    lists the rivals the last question asked about (seconds, master rounds, outcome).
    """

    name = "levels"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        *,
        pair_cuts: bool = True,
        lp_cuts: bool = True,
        reuse_cuts: bool = True,
        keep: int = 20000,
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        if max_distance is not None:
            raise ValueError("the level search takes no distance bound; use the 'portfolio' or 'cpsat' backend")
        if not level_search_applies(model, self.instance):
            raise ValueError(
                "the level search needs one spiking layer and the static coding "
                "(one Boolean per pixel); use the 'portfolio' or 'cpsat' backend"
            )
        self.pair_cuts, self.lp_cuts, self.reuse_cuts = bool(pair_cuts), bool(lp_cuts), bool(reuse_cuts)
        self.keep = int(keep)
        self._w = model.weights[0].astype(np.int64)
        self._v = np.asarray(self.instance[0], dtype=np.int64)
        self._i0 = self._w @ self._v
        self._last_witness = self._v.copy()  # the newest counterexample's pixels (the instance at first)
        self.last_rivals: list[dict] = []
        self.last_proof: dict[int, list[tuple[np.ndarray, dict | None]]] | None = None
        w = self._w
        ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))
        self._rivals: list[_Rival] = []
        for rival in range(model.n_classes):
            if rival == self.target:
                continue
            base, terms = rival_terms(model, ladders, self.target, rival)
            need = 1 if rival > self.target else 0
            if base + sum(e for _, _, e in terms if e > 0) >= need:
                self._rivals.append(_Rival(rival, need, base, terms))
        self.counters = {
            "rounds": 0,
            "reference": 0,
            "lp": 0,
            "lp_cuts": 0,
            "rounded": 0,
            "cg_cuts": 0,
            "weakened": 0,
            "cpsat": 0,
            "cpsat_cuts": 0,
            "pair_cuts": 0,
            "reused_cuts": 0,
        }

    # ------------------------------------------------------------------ one question

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        fixed_pixels = self.features.pixel_mask(sorted(fixed)) if fixed else np.zeros(self.model.n_inputs, bool)
        free = np.flatnonzero(~fixed_pixels)
        w_free = self._w[:, free]
        const = self._w[:, fixed_pixels] @ self._v[fixed_pixels]
        lo = const + np.minimum(w_free, 0).sum(axis=1)
        hi = const + np.maximum(w_free, 0).sum(axis=1)
        # the reference point: the newest witness with the fixed pixels back at the instance
        reference = np.where(fixed_pixels, self._v, self._last_witness)
        question = _Question(self, fixed_pixels, free, w_free, const, lo, hi, deadline, reference)
        self.last_rivals, self.last_proof = [], None
        for rival in sorted(self._rivals, key=lambda r: -r.feasible):
            start, rounds = time.perf_counter(), self.counters["rounds"]
            answer = question.decide(rival)
            self.last_rivals.append(
                {
                    "rival": rival.rival,
                    "seconds": round(time.perf_counter() - start, 6),
                    "rounds": self.counters["rounds"] - rounds,
                    "outcome": "out" if answer is True else "unknown" if answer is None else "wins",
                }
            )
            if answer is None:
                return Check(Verdict.UNKNOWN, fixed, path=self.name)
            if answer is not True:
                rival.feasible += 1
                witness = self._v.copy()
                witness[free] = answer
                self._last_witness = witness
                return Check(
                    Verdict.NOT_ENTAILED,
                    fixed,
                    witness=np.repeat(witness[None].astype(np.uint8), self.model.n_steps, axis=0),
                    path=self.name,
                )
        self.last_proof = question.proof
        return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)


class _Question:
    """The work of one question: the claims' status, the master of each rival, the checks."""

    def __init__(
        self,
        oracle: LevelOracle,
        fixed_pixels: np.ndarray,
        free: np.ndarray,
        w_free: np.ndarray,
        const: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        deadline: float | None,
        reference: np.ndarray,
    ) -> None:
        self.o, self.fixed_pixels, self.free, self.w_free = oracle, fixed_pixels, free, w_free
        self.const, self.lo, self.hi, self.deadline = const, lo, hi, deadline
        self.reference = reference[free]  # a completion: the newest witness, fixed pixels reset
        self.reference_drive = oracle._w @ reference  # its I_j
        self._pairs = None
        self.proof: dict[int, list[tuple[np.ndarray, dict | None]]] = {}  # rival -> the cuts given to its master

    def _expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _pair_counts(self) -> np.ndarray:
        """``(8, n_0, n_0)``: :func:`sign_class_counts` of this question's free pixels (built once)."""
        if self._pairs is None:
            self._pairs = sign_class_counts(self.w_free)
        return self._pairs

    def decide(self, rival: _Rival):
        """``True``: ``rival`` cannot win; an array (the free pixels' values): a counterexample;
        ``None``: out of time."""
        o = self.o
        j, sign, bound = rival.neuron, rival.sign, rival.bound
        # status of each claim over I_j in [lo_j, hi_j]: always true, never true, or open
        always = np.where(sign > 0, self.lo[j] >= bound, self.hi[j] <= bound)
        never = np.where(sign > 0, self.hi[j] < bound, self.lo[j] > bound)
        open_ = ~always & ~never
        goal = rival.goal - int(rival.weight[always].sum())
        if int(rival.weight[open_].sum()) < goal:
            return True  # the interval bound: even every open claim together does not win
        claims = np.flatnonzero(open_)
        if goal <= 0 or len(claims) == 0:  # the claims that always hold already win
            return self._exact(rival, claims[:0])[0]
        var = {int(t): k + 1 for k, t in enumerate(claims.tolist())}  # claim -> master variable
        clauses = self._structural_cuts(rival, claims)
        recorded = self.proof.setdefault(rival.rival, [])
        if o.reuse_cuts:
            clauses += self._reused_cuts(rival, var, always, never, recorded)
        with Solver(name="minicard") as master:
            lits = [lit for k, t in enumerate(claims.tolist()) for lit in [-(k + 1)] * int(rival.weight[t])]
            master.add_atmost(lits, len(lits) - goal)  # sum |e| q >= goal
            for clause in clauses:
                master.add_clause(clause)
            # demand: how far claim t is from holding at the reference point; the master first tries
            # the claims that hold there, and a winning set sheds the furthest claims first
            demand = sign[claims] * (bound[claims] - self.reference_drive[j[claims]])
            by_demand = np.argsort(-demand, kind="stable")
            master.set_phases([k + 1 if demand[k] <= 0 else -(k + 1) for k in range(len(claims))])
            while True:
                if self._expired():
                    return None
                o.counters["rounds"] += 1
                if not master.solve():
                    return True
                model = master.get_model()
                chosen = self._minimal_winning(
                    rival, claims, np.array([model[k] > 0 for k in range(len(claims))]), by_demand, goal
                )
                answer, refuted = self._exact(rival, claims[chosen])
                if answer is None:
                    return None
                if answer is not True:
                    return answer
                cut, reason = refuted
                # a weakened claim may hold for every completion: it leaves the clause
                clause = [-var[int(t)] for t in cut if int(t) in var]
                if not clause:
                    raise RuntimeError("a cut refutes claims that hold for every completion: inconsistent cut")
                recorded.append((np.asarray(cut), reason))
                master.add_clause(clause)

    def _minimal_winning(
        self, rival: _Rival, claims: np.ndarray, held: np.ndarray, by_demand: np.ndarray, goal: int
    ) -> np.ndarray:
        """The master's winning set shrunk to a minimal winning one: claims dropped, those furthest
        from the instance first, while the rest still reach the goal (indices into ``claims``)."""
        keep = held.copy()
        total = int(rival.weight[claims[keep]].sum())
        for k in by_demand.tolist():
            if keep[k] and total - rival.weight[claims[k]] >= goal:
                keep[k] = False
                total -= int(rival.weight[claims[k]])
        return np.flatnonzero(keep)

    def _structural_cuts(self, rival: _Rival, claims: np.ndarray) -> list[list[int]]:
        """Clauses on the open claims (master variables ``1..len(claims)``): one neuron's claims
        (implications, contradictions) and, with ``pair_cuts``, the infeasible pairs."""
        j, sign, bound = rival.neuron[claims], rival.sign[claims], rival.bound[claims]
        n = len(claims)
        a, b = np.triu_indices(n, k=1)
        clauses = []
        same = j[a] == j[b]
        for x, y in zip(a[same].tolist(), b[same].tolist()):
            if sign[x] == sign[y]:  # the stronger claim implies the weaker one
                stronger_x = bound[x] >= bound[y] if sign[x] > 0 else bound[x] <= bound[y]
                clauses.append([-(x + 1), y + 1] if stronger_x else [-(y + 1), x + 1])
            else:  # I >= b_up and I <= b_down: no value when b_up > b_down
                up, down = (x, y) if sign[x] > 0 else (y, x)
                if bound[up] > bound[down]:
                    clauses.append([-(x + 1), -(y + 1)])
        if self.o.pair_cuts:
            a, b = a[~same], b[~same]
            ok = pair_feasible(
                self._pair_counts()[:, j[a], j[b]],
                bound[a] - self.const[j[a]],
                sign[a],
                bound[b] - self.const[j[b]],
                sign[b],
            )
            bad = np.flatnonzero(~ok)
            self.o.counters["pair_cuts"] += len(bad)
            clauses.extend([-(int(x) + 1), -(int(y) + 1)] for x, y in zip(a[bad], b[bad]))
        return clauses

    def _reused_cuts(
        self, rival: _Rival, var: dict[int, int], always: np.ndarray, never: np.ndarray, recorded: list
    ) -> list[list[int]]:
        """The kept cuts that still hold for this question, as clauses over its open claims
        (each also appended to ``recorded`` with its reason)."""
        clauses = []
        for cut, reason in rival.holding_cuts(self.fixed_pixels, self.o._v):
            if never[cut].any():
                continue  # a claim that cannot hold: the cut says nothing new
            clause = [-var[int(t)] for t in cut if not always[t]]
            if not clause:  # claims that hold for every completion cannot be infeasible together
                raise RuntimeError("a kept cut contradicts the claims that always hold: inconsistent cuts")
            clauses.append(clause)
            recorded.append((cut, reason))
        self.o.counters["reused_cuts"] += len(clauses)
        return clauses

    # ------------------------------------------------------------------ checking one claim set

    def _rows(self, rival: _Rival, claims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The claims as rows ``A x >= t`` over the free pixels (exact integers)."""
        j, sign = rival.neuron[claims], rival.sign[claims]
        return sign[:, None] * self.w_free[j], sign * (rival.bound[claims] - self.const[j])

    def _exact(self, rival: _Rival, claims: np.ndarray):
        """Decide the claim set ``claims``: ``(x, None)`` with a completion satisfying every row,
        ``(True, (cut, reason))`` with an infeasible subset ``cut`` and why (the certificate of
        :meth:`_keep_certificate`, or ``None`` for a CP-SAT core), ``(None, None)`` out of time.

        Only the strongest claim per neuron and direction becomes a row (it implies the others)."""
        o = self.o
        claims = _strongest(rival, claims)
        if len(claims) == 0:  # nothing to claim: every completion wins, the instance's among them
            return np.asarray(o._v[self.free]), None
        a, t = self._rows(rival, claims)
        if np.all(a @ self.reference >= t):  # the reference point satisfies every row
            o.counters["reference"] += 1
            return self.reference.copy(), None
        if o.lp_cuts:
            o.counters["lp"] += 1
            point, multipliers = _lp_check(a, t)
            if multipliers is not None:
                o.counters["lp_cuts"] += 1
                return True, self._keep_certificate(rival, claims, multipliers, np.zeros((0, 2), np.int64))
            if point is not None:
                rounded = (point > 0.5).astype(np.int64)
                if np.all(a @ rounded >= t):
                    o.counters["rounded"] += 1
                    return rounded, None
            # the LP with the rank-one Chvatal-Gomory cuts of every pair of rows
            pairs, cg_a, cg_t = _pair_rounding_cuts(a, t)
            if len(pairs):
                o.counters["lp"] += 1
                _, multipliers = _lp_check(a, t, (cg_a, cg_t))
                if multipliers is not None:
                    o.counters["cg_cuts"] += 1
                    m = len(claims)
                    used_pairs = multipliers[m:] > 0
                    combined = multipliers[:m].copy()
                    return True, self._keep_certificate(
                        rival, claims, combined, pairs[used_pairs], multipliers[m:][used_pairs]
                    )
        o.counters["cpsat"] += 1
        answer = self._cpsat(a, t)
        if answer is None or answer is not True:
            return answer, None
        # infeasible: shrink to an infeasible subset by deletion (each row left out once)
        keep = np.ones(len(claims), bool)
        for k in range(len(claims)):
            if self._expired():
                break
            keep[k] = False
            if self._cpsat(a[keep], t[keep]) is not True:
                keep[k] = True
        cut = claims[keep]
        o.counters["cpsat_cuts"] += 1
        if o.reuse_cuts:
            _push(rival.core_claims, cut, o.keep, rival.core_free, ~self.fixed_pixels)
        return True, (cut, None)

    def _keep_certificate(
        self,
        rival: _Rival,
        claims: np.ndarray,
        multipliers: np.ndarray,
        pairs: np.ndarray,
        pair_multipliers: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict]:
        """The cut of an exact certificate and the certificate itself (its rows' claims, their
        multipliers, the row pairs and theirs: what :mod:`xsnn.solvers.levelproof` re-checks).
        The cut: the claims of its rows (``multipliers`` on the claims'
        rows, ``pair_multipliers`` on the rounded half-sums of the row pairs ``pairs``, indices
        into ``claims``), each *weakened* where the certificate allows (below), and the
        certificate kept for reuse.

        In full-pixel form the certificate is ``G . z >= H(b)``: ``G`` the multiplied sum of the
        rows' ``sigma W_j`` (half-sums for the pairs), ``H`` the same sum of ``sigma b`` (pairs:
        ``ceil`` of the half-sum). It refutes its claims where ``max G . z < H`` over the
        question's completions. ``G`` depends on the claims' neurons and directions only, so a
        claim may be replaced by a weaker one of its neuron (a lower ``b`` for ``I_j >= b``, a
        higher one for ``I_j <= b``) while ``H`` stays above that maximum: the cut then forbids
        the weaker claim, hence every set holding it or the stronger one. Claims are weakened
        greedily, largest multiplier first, each to its weakest claim that keeps the
        certificate. The certificate is kept as ``(G, H)`` when every half-sum is integral on
        every pixel (then the ``ceil`` is valid whatever is fixed; always so with +1/-1 weights),
        else as a core valid where the free pixels are a subset of this question's (no
        weakening then)."""
        o = self.o
        pair_multipliers = np.zeros(0, np.int64) if pair_multipliers is None else pair_multipliers
        w_rows = rival.sign[claims][:, None] * o._w[rival.neuron[claims]]  # sigma W_j over all pixels
        g_full = multipliers @ w_rows
        integral = True
        for (x, y), mu in zip(pairs.tolist(), pair_multipliers.tolist()):
            twice = w_rows[x] + w_rows[y]
            integral &= bool(np.all(twice % 2 == 0))
            g_full = g_full + mu * (twice // 2)
        chosen = claims.copy()  # claim of each row, weakened below

        def rhs(bounds: np.ndarray) -> int:
            """``H`` for the rows' claims with these bounds (``sigma b`` per row)."""
            h = int(multipliers @ bounds)
            for (x, y), mu in zip(pairs.tolist(), pair_multipliers.tolist()):
                h += mu * -((-(int(bounds[x]) + int(bounds[y]))) // 2)
            return h

        signed = rival.sign[chosen] * rival.bound[chosen]
        if integral:
            best = int(
                g_full[self.fixed_pixels] @ o._v[self.fixed_pixels] + np.maximum(g_full[~self.fixed_pixels], 0).sum()
            )
            weight = multipliers.copy()
            for (x, y), mu in zip(pairs.tolist(), pair_multipliers.tolist()):
                weight[x] += mu
                weight[y] += mu
            for k in np.argsort(-weight, kind="stable").tolist():
                if weight[k] <= 0:
                    break
                for weaker in rival.weaker[chosen[k]].tolist():  # weakest first
                    trial = signed.copy()
                    trial[k] = rival.sign[weaker] * rival.bound[weaker]
                    if best < rhs(trial):
                        chosen[k], signed = weaker, trial
                        o.counters["weakened"] += 1
                        break
        used = multipliers > 0
        if len(pairs):
            used[pairs.ravel()] = True
        cut = np.unique(chosen[used])
        reason = {
            "rows": chosen.copy(),
            "multipliers": multipliers.copy(),
            "pairs": pairs.copy(),
            "pair_multipliers": np.asarray(pair_multipliers).copy(),
        }
        if o.reuse_cuts:
            if integral:
                _push(
                    rival.cert_claims,
                    cut,
                    o.keep,
                    rival.cert_g,
                    g_full,
                    rival.cert_h,
                    rhs(signed),
                    rival.cert_reason,
                    reason,
                )
            else:
                _push(rival.core_claims, cut, o.keep, rival.core_free, ~self.fixed_pixels)
        return cut, reason

    def _cpsat(self, a: np.ndarray, t: np.ndarray):
        """The rows ``a x >= t`` over the free pixels decided by CP-SAT: a completion, ``True``
        (infeasible) or ``None`` (out of time). The rows are plain constraints: enforcing them by
        assumption literals (for a core) was measured to make CP-SAT far slower (it then reasons
        without the rows in its presolve and LP), so cores come from deletion instead."""
        from ortools.sat.python import cp_model

        m = cp_model.CpModel()
        x = [m.new_bool_var(f"x{i}") for i in range(a.shape[1])]
        for row, rhs in zip(a.tolist(), t.tolist()):
            m.add(cp_model.LinearExpr.weighted_sum(x, row) >= int(rhs))
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.catch_sigint_signal = False  # else CP-SAT keeps its own SIGINT handler: Ctrl-C is lost
        if self.deadline is not None:
            solver.parameters.max_time_in_seconds = max(self.deadline - time.perf_counter(), 0.0)
        status = solver.solve(m)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return np.array([solver.value(v) for v in x], np.int64)
        return True if status == cp_model.INFEASIBLE else None


def _pair_rounding_cuts(a: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-one Chvatal-Gomory cuts of pairs of rows ``a x >= t`` over binary ``x``: where
    ``a_k + a_l`` is even in every entry, ``((a_k + a_l) / 2) x`` is an integer, so
    ``((a_k + a_l) / 2) x >= ceil((t_k + t_l) / 2)`` holds for every binary solution (the parity
    argument that the linear relaxation misses). Returns ``(pairs (p, 2), rows (p, n), right sides (p,))``."""
    k, l = np.triu_indices(len(a), k=1)
    twice = a[k] + a[l]
    even = np.all(twice % 2 == 0, axis=1)
    k, l = k[even], l[even]
    return np.stack([k, l], axis=1), (a[k] + a[l]) // 2, -((-(t[k] + t[l])) // 2)


def _strongest(rival: _Rival, claims: np.ndarray) -> np.ndarray:
    """The claims of ``claims`` not implied by another of them: per neuron, the highest lower
    bound and the lowest upper bound (sorted)."""
    if len(claims) < 2:
        return claims
    key = rival.neuron[claims] * 2 + (rival.sign[claims] > 0)
    strength = rival.sign[claims] * rival.bound[claims]  # larger: stronger
    order = np.lexsort((-strength, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    return np.sort(claims[order[first]])


def _push(claims_list: list, claims: np.ndarray, keep: int, *pairs) -> None:
    """Append one kept cut (its claims and its data, given as ``list, value`` pairs), dropping
    the oldest beyond ``keep``."""
    claims_list.append(claims)
    for k in range(0, len(pairs), 2):
        pairs[k].append(pairs[k + 1])
    if len(claims_list) > keep:
        del claims_list[0]
        for k in range(0, len(pairs), 2):
            del pairs[k][0]


_DENOMINATORS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 1024, 4096)


def _lp_check(
    a: np.ndarray, t: np.ndarray, cuts: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The linear relaxation of ``a x >= t``, ``x in [0, 1]^n`` (``a``, ``t`` integers), with the
    rows ``cuts = (a', t')`` added if given (valid for every binary solution, e.g.
    :func:`_pair_rounding_cuts`; multipliers then cover ``a`` and ``a'`` in this order).

    Returns ``(point, None)`` when the LP is feasible (its solution), ``(None, lambda)`` with
    integer multipliers ``lambda >= 0`` whose combined row ``(lambda a) x >= lambda t`` no point
    of the box satisfies (checked in exact integer arithmetic), or ``(None, None)`` when the LP
    says infeasible but no rounding of its multipliers passes the exact check.

    Phase one: ``min sum s`` subject to ``a x + s >= t``, ``s >= 0``; its optimum is positive iff
    the rows are infeasible, and its duals ``y`` (``0 <= y <= 1``) then satisfy
    ``max_box (y a) x < y t``, Farkas' certificate.
    """
    from scipy.optimize import linprog

    if cuts is not None:
        a, t = np.vstack([a, cuts[0]]), np.concatenate([t, cuts[1]])
    m, n = a.shape
    cost = np.r_[np.zeros(n), np.ones(m)]
    a_ub = np.hstack([-a.astype(np.float64), -np.eye(m)])
    res = linprog(cost, A_ub=a_ub, b_ub=-t.astype(np.float64), bounds=[(0, 1)] * n + [(0, None)] * m, method="highs")
    if res.status != 0:
        return None, None
    if res.fun < 1e-9:
        return res.x[:n], None
    duals = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=np.float64), 0.0)
    a_int = a.astype(np.int64)
    t_int = t.astype(np.int64)
    for den in _DENOMINATORS:
        lam = np.rint(duals * den).astype(np.int64)
        if lam.any() and certifies(lam, a_int, t_int):
            return None, lam
    return None, None


def certifies(multipliers: np.ndarray, a: np.ndarray, t: np.ndarray) -> bool:
    """Exact Farkas test: with integers ``multipliers >= 0``, no ``x in [0, 1]^n`` satisfies the
    combined row ``(lambda a) x >= lambda t``, i.e. ``sum_i max(0, (lambda a)_i) < lambda t``; then no
    ``x`` satisfies the rows ``a x >= t`` with ``lambda > 0`` either."""
    multipliers = np.asarray(multipliers, dtype=np.int64)
    if (multipliers < 0).any():
        return False
    return int(np.maximum(multipliers @ a, 0).sum()) < int(multipliers @ t)
