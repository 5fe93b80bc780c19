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

``as_dict()`` gives a JSON-serialisable form and ``from_dict(d, model)`` rebuilds the certificate
exactly: the model is named by its content hash (``from_dict`` checks it), the instance is a
nested 0/1 list, and each witness is stored as the ``[t, i]`` positions where it differs from the
instance (a witness changes a few features, so this is much smaller than the whole input).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from xsnn.model import BSNN
from xsnn.question import Question

from .oracle import Check, EntailmentOracle, Verdict, WitnessError, WitnessVerifier

__all__ = [
    "VerdictRecord",
    "AXpCertificate",
    "CXpCertificate",
    "VerificationReport",
    "verify",
    "OracleFactory",
    "certificate_from_dict",
    "certificate_of",
]

OracleFactory = Callable[..., EntailmentOracle]


@dataclass(frozen=True)
class VerdictRecord:
    """One oracle verdict, without its witness: what was asked, what was answered, by whom."""

    fixed: frozenset[int]
    verdict: Verdict
    path: str
    core: frozenset[int] | None = None
    seconds: float = 0.0

    @classmethod
    def from_check(cls, check: Check) -> VerdictRecord:
        return cls(check.fixed, check.verdict, check.path, check.core, check.seconds)

    @property
    def justified(self) -> frozenset[int]:
        """For ENTAILED: the set this verdict proves sufficient (the core if any, else the fixed set)."""
        return self.core if self.core is not None else self.fixed

    def as_dict(self) -> dict:
        return {
            "fixed": sorted(self.fixed),
            "verdict": self.verdict.value,
            "path": self.path,
            "core": None if self.core is None else sorted(self.core),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> VerdictRecord:
        path = d["path"] if "path" in d else d["backend"]  # "backend": the key before 2026-12-03
        return cls(
            frozenset(int(k) for k in d["fixed"]),
            Verdict(d["verdict"]),
            str(path),
            None if d["core"] is None else frozenset(int(k) for k in d["core"]),
            float(d["seconds"]),
        )


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
        return {
            "kind": self.kind,
            "question": self.question.as_dict(),
            "features": sorted(self.features),
            "sufficiency": None if self.sufficiency is None else self.sufficiency.as_dict(),
            "witnesses": {str(k): self.question.witness_as_dict(w) for k, w in sorted(self.witnesses.items())},
            "unproven": sorted(self.unproven),
        }

    @classmethod
    def from_dict(cls, d: Mapping, model: BSNN) -> AXpCertificate:
        """Inverse of :meth:`as_dict` (``model``: the network the certificate is about)."""
        if d.get("kind") != "axp":
            raise ValueError(f"not an AXp certificate (kind {d.get('kind')!r})")
        q = Question.from_dict(d["question"], model)
        return cls(
            q,
            frozenset(int(k) for k in d["features"]),
            None if d["sufficiency"] is None else VerdictRecord.from_dict(d["sufficiency"]),
            {int(k): q.witness_from_dict(w) for k, w in d["witnesses"].items()},
            frozenset(int(k) for k in d["unproven"]),
        )


@dataclass(frozen=True, eq=False)
class CXpCertificate:
    """Proof that freeing ``features`` can change the prediction, and that no proven feature can go.

    Attributes:
        question: what it explains.
        features: the CXp (the freed features).
        witness: an input agreeing with the instance outside ``features`` and predicted ``!= target``.
        witness_path: which path found it.
        necessity: feature -> ENTAILED verdict on a fixed set ``⊆ (F \\ features) ∪ {feature}``.
        unproven: features kept without a decided necessity.
    """

    question: Question
    features: frozenset[int]
    witness: np.ndarray
    witness_path: str
    necessity: Mapping[int, VerdictRecord]
    unproven: frozenset[int] = frozenset()
    kind: str = field(default="cxp", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "witness", _frozen(self.witness))
        object.__setattr__(self, "necessity", dict(self.necessity))

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "question": self.question.as_dict(),
            "features": sorted(self.features),
            "witness": self.question.witness_as_dict(self.witness),
            "witness_path": self.witness_path,
            "necessity": {str(k): r.as_dict() for k, r in sorted(self.necessity.items())},
            "unproven": sorted(self.unproven),
        }

    @classmethod
    def from_dict(cls, d: Mapping, model: BSNN) -> CXpCertificate:
        """Inverse of :meth:`as_dict` (``model``: the network the certificate is about)."""
        if d.get("kind") != "cxp":
            raise ValueError(f"not a CXp certificate (kind {d.get('kind')!r})")
        q = Question.from_dict(d["question"], model)
        return cls(
            q,
            frozenset(int(k) for k in d["features"]),
            q.witness_from_dict(d["witness"]),
            str(d["witness_path"] if "witness_path" in d else d["witness_backend"]),  # the older key
            {int(k): VerdictRecord.from_dict(r) for k, r in d["necessity"].items()},
            frozenset(int(k) for k in d["unproven"]),
        )


def certificate_from_dict(d: Mapping, model: BSNN) -> AXpCertificate | CXpCertificate:
    """An AXp or CXp certificate from its ``as_dict()`` form."""
    kinds = {"axp": AXpCertificate, "cxp": CXpCertificate}
    if d.get("kind") not in kinds:
        raise ValueError(f"unknown certificate kind {d.get('kind')!r}; expected 'axp' or 'cxp'")
    return kinds[d["kind"]].from_dict(d, model)


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of :func:`verify`.

    Attributes:
        ok: every check was made and none failed (sufficiency / change confirmed, every recorded
            proof valid).
        problems: human-readable descriptions of what failed or was not checked.
        minimal: every feature's necessity is proven and confirmed.
        verifier: backend names of the verifying oracle's answers.
        independent: every ENTAILED claim was re-decided by a backend other than its producer.
        checks: verdicts re-decided plus witnesses re-run.
        status: ``complete`` (every check made), ``timeout`` or ``interrupted`` (stopped early:
            ``ok`` is then False, since not everything was checked).
    """

    ok: bool
    problems: tuple[str, ...]
    minimal: bool
    verifier: tuple[str, ...]
    independent: bool
    checks: int
    status: str = "complete"


def verify(
    certified,
    oracle_factory: OracleFactory,
    *,
    require_independent: bool = True,
    time_limit: float | None = None,
    stop: threading.Event | None = None,
) -> VerificationReport:
    """Re-check a certificate (or anything with a ``.certificate``, e.g. a FormalExplanation).

    Witnesses are re-run first (cheap: one reference forward each), then the ENTAILED claims are
    re-decided.

    Args:
        certified: an :class:`AXpCertificate`, a :class:`CXpCertificate`, or an object holding one
            in ``.certificate``, ``.proof`` or ``.explanation.certificate``.
        oracle_factory: ``oracle_factory(model, instance, features=, target=, max_distance=)`` ->
            an exact :class:`EntailmentOracle` (e.g. ``BruteForceOracle``, a z3 oracle class).
        require_independent: report a problem when the verifier's backend equals the backend
            that produced an ENTAILED claim.
        time_limit: seconds for the whole verification; checks not made in time are reported
            (status ``timeout``), an UNKNOWN re-check is a problem.
        stop: an event that, once set (e.g. on Ctrl-C, from another thread), stops the
            verification soon (status ``interrupted``).
    """
    cert = certificate_of(certified)
    q = cert.question
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    problems: list[str] = []
    names: set[str] = set()
    independent = True
    checks = 0
    everything = frozenset(range(len(q.features)))
    witness_checks: list[tuple[frozenset[int], np.ndarray, str]] = []
    entailed_checks: list[tuple[frozenset[int], str, str]] = []
    if isinstance(cert, AXpCertificate):
        s = cert.features
        producer = ""
        if cert.sufficiency is not None:
            producer = cert.sufficiency.path
            if cert.sufficiency.verdict is not Verdict.ENTAILED:
                problems.append(f"sufficiency record has verdict {cert.sufficiency.verdict.value}, not entailed")
            if not cert.sufficiency.justified <= s:
                problems.append("sufficiency record justifies a set that is not inside the explanation")
        for i in sorted(s - cert.unproven):
            if i not in cert.witnesses:
                problems.append(f"feature {i}: no minimality witness recorded")
            else:
                witness_checks.append((s - {i}, cert.witnesses[i], f"minimality of feature {i}"))
        entailed_checks.append((s, producer, "sufficiency"))
        minimal = not cert.unproven
    elif isinstance(cert, CXpCertificate):
        x = cert.features
        witness_checks.append((everything - x, cert.witness, "change witness"))
        for i in sorted(x - cert.unproven):
            record = cert.necessity.get(i)
            if record is None:
                problems.append(f"feature {i}: no necessity verdict recorded")
                continue
            if record.verdict is not Verdict.ENTAILED:
                problems.append(f"feature {i}: necessity record has verdict {record.verdict.value}")
            if not record.fixed <= (everything - x) | {i}:
                problems.append(f"feature {i}: necessity record is about an unrelated fixed set")
            entailed_checks.append(((everything - x) | {i}, record.path, f"necessity of feature {i}"))
        minimal = not cert.unproven
    else:  # pragma: no cover - guarded by certificate_of
        raise TypeError(type(cert).__name__)

    def out_of_time() -> str | None:
        if stop is not None and stop.is_set():
            return "interrupted"
        if deadline is not None and time.perf_counter() >= deadline:
            return "timeout"
        return None

    status = "complete"
    verifier = (
        None if not witness_checks else WitnessVerifier(q.model, q.instance, q.features, q.target, q.max_distance)
    )
    for n_done, (fixed, witness, what) in enumerate(witness_checks):
        status = out_of_time() or status
        if status != "complete":
            problems.append(
                f"{len(witness_checks) - n_done} witness(es) and {len(entailed_checks)} verdict(s) "
                f"not re-checked ({status})"
            )
            break
        checks += 1
        try:
            verifier(fixed, witness)
        except (WitnessError, ValueError) as exc:
            problems.append(f"{what}: invalid witness ({exc})")
    if status == "complete" and entailed_checks:
        oracle = oracle_factory(q.model, q.instance, features=q.features, target=q.target, max_distance=q.max_distance)
        watcher = _interrupt_on(stop, oracle)
        try:
            for n_done, (fixed, producer, what) in enumerate(entailed_checks):
                status = out_of_time() or status
                if status != "complete":
                    problems.append(f"{len(entailed_checks) - n_done} verdict(s) not re-checked ({status})")
                    break
                left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
                answer = oracle.check(fixed, time_limit=left)
                checks += 1
                names.add(answer.path)
                if answer.path == producer:
                    independent = False
                    if require_independent:
                        problems.append(f"{what}: re-checked by the same backend that produced it ({producer})")
                if answer.verdict is Verdict.NOT_ENTAILED:
                    problems.append(f"{what}: REFUTED by {answer.path} (a counterexample exists)")
                elif answer.verdict is Verdict.UNKNOWN:
                    status = out_of_time() or status
                    problems.append(
                        f"{what}: {answer.path} could not decide it{'' if status == 'complete' else f' ({status})'}"
                    )
        finally:
            if watcher is not None:
                watcher.cancel()
            oracle.close()
    return VerificationReport(
        not problems, tuple(problems), minimal and not problems, tuple(sorted(names)), independent, checks, status
    )


def _interrupt_on(stop: threading.Event | None, oracle: EntailmentOracle) -> _StopWatcher | None:
    """Interrupt ``oracle`` as soon as ``stop`` is set (a watcher thread; ``None`` without ``stop``)."""
    return None if stop is None else _StopWatcher(stop, oracle)


class _StopWatcher:
    """A daemon thread that calls ``oracle.interrupt()`` when ``stop`` is set, until cancelled."""

    def __init__(self, stop: threading.Event, oracle: EntailmentOracle) -> None:
        self._stop, self._done, self._oracle = stop, threading.Event(), oracle
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._stop.wait(0.05):
                self._oracle.interrupt()
                return

    def cancel(self) -> None:
        self._done.set()


def certificate_of(obj) -> AXpCertificate | CXpCertificate:
    """The certificate ``obj`` is or holds (an explanation's ``certificate`` / ``proof``)."""
    for candidate in (
        obj,
        getattr(obj, "certificate", None),
        getattr(obj, "proof", None),
        getattr(getattr(obj, "explanation", None), "certificate", None),
    ):
        if isinstance(candidate, (AXpCertificate, CXpCertificate)):
            return candidate
    raise TypeError(f"expected a certificate or an explanation holding one, got {type(obj).__name__}")
