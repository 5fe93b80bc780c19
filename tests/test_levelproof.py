"""The level search's proofs (solvers/levelproof.py): every ENTAILED answer's proof checks, and
broken proofs, or proofs of another question, are rejected (brute force decides the truth)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_levels import dense_case, random_features

from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.levelproof import CheckedLevelOracle, ProofError, check_level_proof
from xsnn.solvers.levels import LevelOracle
from xsnn.solvers.oracle import Verdict


def _questions(rng, n):
    order = rng.permutation(n).tolist()
    return [frozenset(order[k:]) for k in range(n + 1)] + [
        frozenset(np.flatnonzero(rng.random(n) < p).tolist()) for p in (0.3, 0.6, 0.8)
    ]


def _rejected(oracle, fixed, proof) -> bool:
    try:
        check_level_proof(oracle.model, oracle.instance, oracle.features, fixed, oracle.target, proof)
    except ProofError:
        return True
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_steps=st.integers(1, 3), lp_cuts=st.booleans(), pair_cuts=st.booleans())
def test_checked_level_oracle_equals_brute_force_and_its_proofs_check(seed, n_steps, lp_cuts, pair_cuts):
    """Questions in a deletion sequence and at random: the checked oracle's verdicts are brute
    force's, so every ENTAILED proof was accepted (a rejected one would give UNKNOWN). Without
    the pair test before the search, its proofs hold LP certificates (or, without the LP, CP-SAT
    cores)."""
    model, instance, rng = dense_case(seed, "zero", n_steps, max_inputs=14)
    features = random_features(rng, model.n_inputs)
    truth = BruteForceOracle(model, instance, features)
    with CheckedLevelOracle(model, instance, features, lp_cuts=lp_cuts, pair_cuts=pair_cuts) as oracle:
        for fixed in _questions(rng, len(features)):
            assert oracle.check(fixed).verdict is truth.check(fixed).verdict


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_steps=st.integers(1, 3), lp_cuts=st.booleans())
def test_broken_or_borrowed_proofs_are_rejected(seed, n_steps, lp_cuts):
    """(1) a certificate with its multipliers zeroed, (2) a feasible claim set passed off as a
    core, (3) the proof of an ENTAILED question offered for a NOT_ENTAILED one: all rejected."""
    model, instance, rng = dense_case(seed, "zero", n_steps, max_inputs=14)
    features = random_features(rng, model.n_inputs)
    truth = BruteForceOracle(model, instance, features)
    with LevelOracle(model, instance, features, reuse_cuts=False, pair_cuts=False, lp_cuts=lp_cuts) as oracle:
        questions = _questions(rng, len(features))
        verdicts = {fixed: truth.check(fixed).verdict for fixed in questions}
        for fixed in questions:
            answer = oracle.check(fixed)
            if answer.verdict is not Verdict.ENTAILED or not oracle.last_proof:
                continue
            proof = oracle.last_proof
            assert not _rejected(oracle, fixed, proof)
            for rival, cuts in proof.items():
                for k, (cut, reason) in enumerate(cuts):
                    if reason is not None:  # (1)
                        broken = dict(
                            reason,
                            multipliers=np.zeros_like(reason["multipliers"]),
                            pair_multipliers=np.zeros_like(reason["pair_multipliers"]),
                        )
                        assert _rejected(oracle, fixed, {**proof, rival: cuts[:k] + [(cut, broken)] + cuts[k + 1 :]})
            for other in questions:  # (3): a proof certifies nothing false
                if verdicts[other] is Verdict.NOT_ENTAILED:
                    assert _rejected(oracle, other, proof)


def test_a_feasible_claim_set_is_not_accepted_as_a_core():
    """(2): on a question with proof, a single claim that some completion satisfies (found by
    brute force over the free pixels) is refused as a core."""
    for seed in range(200):
        model, instance, rng = dense_case(seed, "zero", 2, max_inputs=10)
        with LevelOracle(model, instance) as oracle:
            fixed = frozenset(range(model.n_inputs // 2))
            if oracle.check(fixed).verdict is not Verdict.ENTAILED or not oracle.last_proof:
                continue
            rival, cuts = next(iter(oracle.last_proof.items()))
            r = next(x for x in oracle._rivals if x.rival == rival)
            free = np.ones(model.n_inputs, bool)
            free[list(fixed)] = False
            w, v = model.weights[0].astype(np.int64), instance[0].astype(np.int64)
            idx = np.flatnonzero(free)
            xs = np.repeat(v[None], 2 ** len(idx), axis=0)
            xs[:, idx] = (np.arange(2 ** len(idx))[:, None] >> np.arange(len(idx))) & 1
            drive = xs @ w.T
            for t in range(len(r.neuron)):
                holds = r.sign[t] * drive[:, r.neuron[t]] >= r.sign[t] * r.bound[t]
                if holds.any() and not holds.all():  # an open, satisfiable claim
                    bogus = {**oracle.last_proof, rival: cuts + [(np.array([t]), None)]}
                    assert _rejected(oracle, fixed, bogus)
                    return
    raise AssertionError("no case with an open claim found in 200 seeds")
