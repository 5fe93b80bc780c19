"""Certificates: the verdicts that justify an explanation, and their independent re-check.

An **AXp certificate** for a set ``S`` records

* *sufficiency*: an ENTAILED verdict (which backend, on which fixed set, with which core)
  whose justified set — the core if one was given, else the fixed set — is a subset of ``S``
  (fixing a superset of a sufficient set is sufficient);
* *minimality*: for each ``i`` in ``S`` a witness input that agrees with the instance on
  ``S \\ {i}``, respects the free domain and the distance bound, and is predicted ``!= target``
  (a witness found for a fixed set ``A ⊇ S \\ {i}`` is one: it agrees with the instance on all
  of ``A``); features whose necessity was not decided are listed as ``unproven``.

A **CXp certificate** for a freed set ``X`` records

* *change*: a witness input that agrees with the instance on ``F \\ X``;
* *minimality*: for each ``i`` in ``X`` an ENTAILED verdict on a fixed set contained in
  ``(F \\ X) ∪ {i}`` (so freeing ``X \\ {i}`` cannot change the prediction).

:func:`verify` re-checks a certificate: every ENTAILED claim is re-decided by an oracle built
from a caller-supplied factory (use a *different* exact backend than the one that produced
it: SAT-found claims checked by z3 and vice versa), and every witness is re-run through the
reference forward (:func:`~xsnn.solvers.oracle.verify_witness`).

``as_dict()`` gives a JSON-serialisable form (witnesses as nested 0/1 lists, the model by its
content hash).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN
from .oracle import Check, EntailmentOracle, Verdict, WitnessError, verify_witness

__all__ = ["Question", "VerdictRecord", "AXpCertificate", "CXpCertificate", "VerificationReport", "verify",
           "OracleFactory"]

OracleFactory = Callable[..., EntailmentOracle]


@dataclass(frozen=True, eq=False)
class Question:
    """What an explanation is about: the network, the instance, the features, the target, ``k``."""

    model: BSNN
    instance: np.ndarray
    features: FeatureSet
    target: int
    max_distance: int | None

    @classmethod
    def from_oracle(cls, oracle: EntailmentOracle) -> "Question":
        instance = np.array(oracle.instance, dtype=np.uint8, copy=True)
        instance.setflags(write=False)
        return cls(oracle.model, instance, oracle.features, oracle.target, oracle.max_distance)

    def as_dict(self) -> dict:
        return {"model_hash": self.model.content_hash(), "instance": self.instance.tolist(),
                "n_features": len(self.features), "target": self.target, "max_distance": self.max_distance}


@dataclass(frozen=True)
class VerdictRecord:
    """One oracle verdict, without its witness: what was asked, what was answered, by whom."""

    fixed: frozenset[int]
    verdict: Verdict
    backend: str
    core: frozenset[int] | None = None
    seconds: float = 0.0

    @classmethod
    def from_check(cls, check: Check) -> "VerdictRecord":
        return cls(check.fixed, check.verdict, check.backend, check.core, check.seconds)

    @property
    def justified(self) -> frozenset[int]:
        """For ENTAILED: the set this verdict proves sufficient (the core if any, else the fixed set)."""
        return self.core if self.core is not None else self.fixed

    def as_dict(self) -> dict:
        return {"fixed": sorted(self.fixed), "verdict": self.verdict.value, "backend": self.backend,
                "core": None if self.core is None else sorted(self.core), "seconds": round(self.seconds, 6)}


def _frozen(witness: np.ndarray) -> np.ndarray:
    x = np.array(witness, dtype=np.uint8, copy=True)
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class AXpCertificate:
    """Proof that ``features`` is sufficient and (for the proven features) subset-minimal.

    Attributes:
        question: what it explains.
        features: the AXp.
        sufficiency: the ENTAILED verdict whose justified set is ``⊆ features``, or ``None``
            when sufficiency follows from the algorithm's invariant but the budget left no
            direct check (rare; :func:`verify` re-checks it either way).
        witnesses: feature -> witness input for ``features \\ {feature}``.
        unproven: features kept without a decided necessity (UNKNOWN verdict or timeout).
    """

    question: Question
    features: frozenset[int]
    sufficiency: VerdictRecord | None
    witnesses: Mapping[int, np.ndarray]
    unproven: frozenset[int] = frozenset()
    kind: str = field(default="axp", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", {int(k): _frozen(w) for k, w in self.witnesses.items()})

    def as_dict(self) -> dict:
        return {"kind": self.kind, "question": self.question.as_dict(), "features": sorted(self.features),
                "sufficiency": None if self.sufficiency is None else self.sufficiency.as_dict(),
                "witnesses": {str(k): w.tolist() for k, w in sorted(self.witnesses.items())},
                "unproven": sorted(self.unproven)}


@dataclass(frozen=True, eq=False)
class CXpCertificate:
    """Proof that freeing ``features`` can change the prediction, and that no proven feature can go.

    Attributes:
        question: what it explains.
        features: the CXp (the freed features).
        witness: an input agreeing with the instance outside ``features`` and predicted ``!= target``.
        witness_backend: which path found it.
        necessity: feature -> ENTAILED verdict on a fixed set ``⊆ (F \\ features) ∪ {feature}``.
        unproven: features kept without a decided necessity.
    """

    question: Question
    features: frozenset[int]
    witness: np.ndarray
    witness_backend: str
    necessity: Mapping[int, VerdictRecord]
    unproven: frozenset[int] = frozenset()
    kind: str = field(default="cxp", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "witness", _frozen(self.witness))
        object.__setattr__(self, "necessity", dict(self.necessity))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "question": self.question.as_dict(), "features": sorted(self.features),
                "witness": self.witness.tolist(), "witness_backend": self.witness_backend,
                "necessity": {str(k): r.as_dict() for k, r in sorted(self.necessity.items())},
                "unproven": sorted(self.unproven)}


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of :func:`verify`.

    Attributes:
        ok: no problem found (sufficiency / change confirmed, every recorded proof valid).
        problems: human-readable descriptions of what failed.
        minimal: every feature's necessity is proven and confirmed.
        verifier: backend names of the verifying oracle's answers.
        independent: every ENTAILED claim was re-decided by a backend other than its producer.
        checks: verdicts re-decided plus witnesses re-run.
    """

    ok: bool
    problems: tuple[str, ...]
    minimal: bool
    verifier: tuple[str, ...]
    independent: bool
    checks: int


def verify(certified, oracle_factory: OracleFactory, *, require_independent: bool = True,
           time_limit: float | None = None) -> VerificationReport:
    """Re-check a certificate (or anything with a ``.certificate``, e.g. a FormalExplanation).

    Args:
        certified: an :class:`AXpCertificate`, a :class:`CXpCertificate`, or an object holding one
            in ``.certificate`` (or ``.explanation.certificate``).
        oracle_factory: ``oracle_factory(model, instance, features=, target=, max_distance=)`` ->
            an exact :class:`EntailmentOracle` (e.g. ``BruteForceOracle``, a z3 oracle class).
        require_independent: report a problem when the verifier's backend equals the backend
            that produced an ENTAILED claim.
        time_limit: per re-decided verdict; an UNKNOWN re-check is a problem.
    """
    cert = _certificate_of(certified)
    q = cert.question
    problems: list[str] = []
    names: set[str] = set()
    independent = True
    checks = 0
    oracle = oracle_factory(q.model, q.instance, features=q.features, target=q.target, max_distance=q.max_distance)
    try:
        def confirm_entailed(fixed: frozenset[int], producer: str, what: str) -> None:
            nonlocal independent, checks
            answer = oracle.check(fixed, time_limit=time_limit)
            checks += 1
            names.add(answer.backend)
            if answer.backend == producer:
                independent = False
                if require_independent:
                    problems.append(f"{what}: re-checked by the same backend that produced it ({producer})")
            if answer.verdict is Verdict.NOT_ENTAILED:
                problems.append(f"{what}: REFUTED by {answer.backend} (a counterexample exists)")
            elif answer.verdict is Verdict.UNKNOWN:
                problems.append(f"{what}: {answer.backend} could not decide it within the time limit")

        def confirm_witness(fixed: frozenset[int], witness: np.ndarray, what: str) -> None:
            nonlocal checks
            checks += 1
            try:
                verify_witness(q.model, q.instance, q.features, fixed, q.target, witness, q.max_distance)
            except (WitnessError, ValueError) as exc:
                problems.append(f"{what}: invalid witness ({exc})")

        everything = frozenset(range(len(q.features)))
        if isinstance(cert, AXpCertificate):
            s = cert.features
            producer = ""
            if cert.sufficiency is not None:
                producer = cert.sufficiency.backend
                if cert.sufficiency.verdict is not Verdict.ENTAILED:
                    problems.append(f"sufficiency record has verdict {cert.sufficiency.verdict.value}, not entailed")
                if not cert.sufficiency.justified <= s:
                    problems.append("sufficiency record justifies a set that is not inside the explanation")
            confirm_entailed(s, producer, "sufficiency")
            for i in sorted(s - cert.unproven):
                if i not in cert.witnesses:
                    problems.append(f"feature {i}: no minimality witness recorded")
                    continue
                confirm_witness(s - {i}, cert.witnesses[i], f"minimality of feature {i}")
            minimal = not cert.unproven
        elif isinstance(cert, CXpCertificate):
            x = cert.features
            confirm_witness(everything - x, cert.witness, "change witness")
            for i in sorted(x - cert.unproven):
                record = cert.necessity.get(i)
                if record is None:
                    problems.append(f"feature {i}: no necessity verdict recorded")
                    continue
                if record.verdict is not Verdict.ENTAILED:
                    problems.append(f"feature {i}: necessity record has verdict {record.verdict.value}")
                if not record.fixed <= (everything - x) | {i}:
                    problems.append(f"feature {i}: necessity record is about an unrelated fixed set")
                confirm_entailed((everything - x) | {i}, record.backend, f"necessity of feature {i}")
            minimal = not cert.unproven
        else:  # pragma: no cover - guarded by _certificate_of
            raise TypeError(type(cert).__name__)
    finally:
        oracle.close()
    return VerificationReport(not problems, tuple(problems), minimal and not problems, tuple(sorted(names)),
                              independent, checks)


def _certificate_of(obj):
    for candidate in (obj, getattr(obj, "certificate", None),
                      getattr(getattr(obj, "explanation", None), "certificate", None)):
        if isinstance(candidate, (AXpCertificate, CXpCertificate)):
            return candidate
    raise TypeError(f"expected a certificate or an explanation holding one, got {type(obj).__name__}")
