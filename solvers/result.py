"""Result types of the explanation algorithms: objects with a status, never sentinels.

Statuses:

* ``complete`` — the algorithm ran to its end with definite verdicts: an AXp/CXp is proven
  subset-minimal, a minimum is proven minimum, an enumeration is exhaustive;
* ``timeout`` — the overall ``time_limit`` ran out; the result is still *sound* (an AXp is
  sufficient, a CXp changes the prediction) but not proven minimal / complete;
* ``undecided`` — some oracle call returned UNKNOWN (per-call budget); sound as above, the
  features whose necessity was not decided are listed as unproven;
* ``interrupted`` — stopped on request (Ctrl-C, :meth:`~xsnn.solvers.axp.OracleAlgorithm.stop`);
  sound as for ``timeout``;
* ``limit`` — an enumeration stopped at its count limit;
* ``running`` — an anytime snapshot taken while the computation goes on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .certificate import AXpCertificate, CXpCertificate

__all__ = [
    "Status",
    "NoExplanationError",
    "FormalExplanation",
    "MinimumResult",
    "EnumerationResult",
    "RelevanceAnswer",
    "RelevanceResult",
    "AttributionResult",
]


class Status(str, enum.Enum):
    COMPLETE = "complete"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    UNDECIDED = "undecided"
    LIMIT = "limit"
    RUNNING = "running"


class NoExplanationError(ValueError):
    """The question has no explanation of the asked kind (e.g. the instance is not predicted as the
    target, so no set of features entails it; or the prediction can never change, so no CXp exists)."""


@dataclass(frozen=True)
class FormalExplanation:
    """One abductive (``kind="axp"``) or contrastive (``kind="cxp"``) explanation.

    Attributes:
        kind: ``"axp"`` (fixing ``features`` entails the target) or ``"cxp"`` (freeing
            ``features``, the rest fixed, can change the prediction).
        features: sorted feature indices.
        status: see the module docstring.
        minimal: ``True`` when every feature's necessity is proven (recorded in the certificate).
        certificate: the verdicts and witnesses that justify it (:mod:`xsnn.solvers.certificate`).
        stats: oracle calls and seconds by answering backend, for this computation.
        seconds: wall time of this computation.
    """

    kind: str
    features: tuple[int, ...]
    status: Status
    minimal: bool
    certificate: AXpCertificate | CXpCertificate
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.features)

    def __contains__(self, feature: object) -> bool:
        return feature in self.features

    @property
    def feature_set(self) -> frozenset[int]:
        return frozenset(self.features)

    def mask(self, n_features: int) -> np.ndarray:
        """Boolean ``(n_features,)`` membership mask."""
        out = np.zeros(n_features, bool)
        out[list(self.features)] = True
        return out


@dataclass(frozen=True)
class MinimumResult:
    """A minimum-size AXp search.

    Attributes:
        explanation: the minimum AXp when ``status`` is complete; otherwise the smallest
            sufficient set found (sound, not proven minimum; its own status says whether it
            is at least subset-minimal).
        lower_bound: a proven lower bound on the size of every AXp (the size of the last
            minimum hitting set); equals ``len(explanation)`` when complete.
        status: complete (proven minimum), timeout or undecided.
        n_cxps: contrastive sets collected as hitting-set constraints.
        stats, seconds: as for :class:`FormalExplanation`.
    """

    explanation: FormalExplanation
    lower_bound: int
    status: Status
    n_cxps: int
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def optimal(self) -> bool:
        return self.status is Status.COMPLETE


@dataclass(frozen=True)
class EnumerationResult:
    """AXps and CXps enumerated (MARCO-style).

    Attributes:
        axps, cxps: what was found, in order of discovery.
        status: complete (every AXp and CXp found, all proven minimal), timeout, limit or undecided.
        stats, seconds: as for :class:`FormalExplanation`.
    """

    axps: tuple[FormalExplanation, ...]
    cxps: tuple[FormalExplanation, ...]
    status: Status
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.status is Status.COMPLETE


class RelevanceAnswer(str, enum.Enum):
    RELEVANT = "relevant"  # the feature occurs in some AXp (one is attached as proof)
    IRRELEVANT = "irrelevant"  # the feature occurs in no AXp (the search space was exhausted)
    UNKNOWN = "unknown"  # budget ran out first


@dataclass(frozen=True)
class RelevanceResult:
    """Is ``feature`` in some AXp?

    Attributes:
        feature: the feature asked about.
        answer: relevant, irrelevant or unknown.
        axp: for a relevant feature, an AXp containing it (the proof); ``None`` otherwise.
        status: complete, timeout or undecided.
        stats, seconds: as for :class:`FormalExplanation`.
    """

    feature: int
    answer: RelevanceAnswer
    axp: FormalExplanation | None
    status: Status
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class AttributionResult:
    """Formal feature attribution: the share of AXps that contain each feature.

    Attributes:
        scores: ``(n_features,)`` float, ``counts / n_axps`` (zeros when no AXp was found).
        counts: ``(n_features,)`` int, the number of enumerated AXps containing each feature.
        n_axps: how many AXps the attribution is based on.
        status: complete (all AXps enumerated: exact FFA); timeout, limit or undecided (an
            approximation from the AXps found); running (an anytime snapshot).
        axps: the feature sets of the enumerated AXps.
        stats, seconds: as for :class:`FormalExplanation`.
    """

    scores: np.ndarray
    counts: np.ndarray
    n_axps: int
    status: Status
    axps: tuple[tuple[int, ...], ...]
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.status is Status.COMPLETE
