"""Formal explanations versus SHAP: SHAP values through the packed kernel, and exact metrics.

**What SHAP explains.** For an instance ``v`` predicted as class ``c`` and features ``F``
(pixels by default, or any :class:`~xsnn.features.FeatureSet`, e.g. square patches), SHAP
explains the *score margin* of ``c``::

    m(x) = min_{c' != c} ( score_c(x) - score_c'(x) - [c' < c] )

an integer with ``m(x) >= 0`` exactly when ``x`` is predicted ``c`` (ties go to the lowest class
index, as in the readout). A coalition ``z in {0,1}^F`` keeps the features with ``z_k = 1`` at
the instance's values and gives the others the values of a background input ``b``; the value
of the coalition is the weighted mean over the background set ``B``::

    f(z) = sum_b w_b m( mix(v, b, z) ),     mix(v, b, z)_i = v_i if z_{g(i)} = 1 else b_i

(``g(i)`` the feature of pixel ``i``; a pixel of no feature always takes ``b``), which is shap's
interventional ("independent masker") value function. shap's own explainers (``permutation``,
``kernel``, ``partition``, ``exact``) estimate the Shapley values ``phi_k`` of ``f`` with
``sum_k phi_k = f(1) - f(0)``. Mixing happens on packed input spike words and ``f`` is
evaluated by the bit-packed C kernel (:class:`~xsnn.kernel.PackedNetwork`) in large batches;
:class:`MarginModel` has the reference forward (:func:`xsnn.model.forward`) beside it with the
same signature, and the test suite checks that both give shap's values on the raw pixels.

**Metrics** (:func:`compare`), each decided by the entailment oracles, with a status where a
budget ran out (``None`` then, never a guess). ``top(k)`` is the set of the ``k`` features of
largest ``|phi|`` (ties to the lower index); ``S`` an AXp found by deletion in index order:

* ``topk_sufficient``: is ``top(|S|)`` sufficient (fixing it entails ``c``)?
* ``smallest_sufficient_k``: the least ``k`` with ``top(k)`` sufficient (sufficiency is monotone
  in ``k``, so a binary search asks about ``log2 |F|`` questions), against ``|S|``, against the
  AXp found by deletion in SHAP order (lowest ``|phi|`` tried first) and the minimum AXp size
  where the minimum search finishes;
* ``precision`` / ``recall`` / ``jaccard`` of ``top(|S|)`` against ``S``;
* irrelevant features (in no AXp; Huang & Marques-Silva): a feature none of whose pixels any
  first-layer neuron reads (all its weights are 0) is irrelevant by structure (the network
  ignores it, so dropping it from a sufficient set keeps it sufficient); every feature of an
  AXp found on the way is relevant; when the AXp enumeration of the attribution step completes,
  every other feature is irrelevant; the rest are asked of
  :class:`~xsnn.solvers.enumerate.Relevance` within a budget, highest ``|phi|`` first, and stay
  *unknown* (counted apart) when it runs out. ``irrelevant_mass`` is the share of ``sum |phi|``
  on proven-irrelevant features, ``irrelevant_above_relevant`` the share of (irrelevant,
  relevant) pairs that SHAP orders wrongly (``|phi_irr| > |phi_rel|``);
* agreement with formal feature attribution (Yu, Ignatiev & Stuckey: ``FFA(i)`` = share of
  AXps containing ``i``, from a budgeted enumeration whose status and AXp count are reported):
  Kendall's tau-b between ``|phi|`` and FFA, rank-biased overlap (extrapolated RBO, Webber et
  al. 2010, persistence ``p``) of the two orders, and the error
  ``sum_i | |phi_i| / sum|phi| - FFA_i / sum FFA |`` (in ``[0, 2]``);
* the contrastive side: a CXp ``X`` (deletion in SHAP order); does freeing ``top(|X|)`` (the
  rest fixed) let the prediction change, as freeing ``X`` does (``topk_cxp_changes``); the
  least ``k`` for which freeing ``top(k)`` can change it (``smallest_changing_k``).

shap is imported in this module only, and only when SHAP values are computed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes, forward
from xsnn.solvers.backends import DEFAULT_BACKEND, make_oracle

if TYPE_CHECKING:  # pragma: no cover
    from xsnn.batch import Instance

__all__ = [
    "EXPLAINERS",
    "BACKGROUNDS",
    "Background",
    "make_background",
    "MarginModel",
    "margins",
    "ShapValues",
    "shap_values",
    "Budgets",
    "Comparison",
    "compare",
    "compare_image",
    "METRICS",
    "rank_features",
    "rbo",
    "kendall_tau",
    "attribution_error",
    "summarise",
    "format_summary",
    "read_rows",
    "TABLE_COLUMNS",
    "CompareSetup",
    "run_compare",
    "add_compare_command",
]

log = logging.getLogger(__name__)

EXPLAINERS = ("permutation", "kernel", "partition", "exact")
BACKGROUNDS = ("blank", "sample", "kmeans")
EXACT_MAX_FEATURES = 20  # 2^20 coalitions: beyond that the exact explainer is refused
ZERO = 1e-9  # |phi| at most this counts as 0: floating-point residue of sums that cancel exactly
_BATCH_ROWS = 1 << 15  # kernel rows (coalitions x background inputs) per call


# --------------------------------------------------------------------------- background


@dataclass(frozen=True, eq=False)
class Background:
    """The inputs that replace absent features, with their weights (summing to 1).

    Attributes:
        kind: ``blank`` (one all-zero image), ``sample`` (images drawn uniformly) or ``kmeans``
            (cluster centres of images, weighted by cluster size, rounded to integers).
        images: ``(B, n_inputs)`` uint8 raw intensities.
        weights: ``(B,)`` float64, summing to 1.
        seed: the seed of the draw (``None`` for blank).
    """

    kind: str
    images: np.ndarray
    weights: np.ndarray
    seed: int | None = None

    def describe(self) -> dict:
        return {"kind": self.kind, "size": int(len(self.images)), "seed": self.seed}


def make_background(
    kind: str = "blank", images: np.ndarray | None = None, *, size: int = 10, seed: int = 0, n_inputs: int | None = None
) -> Background:
    """A background set: ``blank``, a uniform ``sample`` of ``size`` images, or ``kmeans`` centres.

    ``images`` (raw uint8, ``(n, *shape)``) are needed for ``sample`` and ``kmeans``;
    ``n_inputs`` for ``blank`` when no images are given. k-means uses :func:`scipy.cluster.vq.kmeans2`
    (k-means++ initialisation) with ``seed``; centres are rounded to uint8 intensities and
    weighted by the share of images in their cluster.
    """
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background {kind!r}; use one of {', '.join(BACKGROUNDS)}")
    if kind == "blank":
        width = n_inputs if images is None else int(np.prod(np.asarray(images).shape[1:]))
        if width is None:
            raise ValueError("a blank background needs n_inputs or example images")
        return Background("blank", np.zeros((1, width), np.uint8), np.ones(1), None)
    if images is None or len(images) == 0:
        raise ValueError(f"a {kind} background needs images to draw from")
    if int(size) < 1:
        raise ValueError(f"background size must be >= 1, got {size}")
    flat = np.asarray(images).reshape(len(images), -1)
    rng = np.random.default_rng(seed)
    if kind == "sample":
        chosen = rng.choice(len(flat), size=min(int(size), len(flat)), replace=False)
        return Background(
            "sample", flat[np.sort(chosen)].astype(np.uint8), np.full(len(chosen), 1 / len(chosen)), int(seed)
        )
    from scipy.cluster.vq import kmeans2

    k = min(int(size), len(flat))
    centres, assigned = kmeans2(flat.astype(np.float64), k, minit="++", seed=rng)
    counts = np.bincount(assigned, minlength=k).astype(np.float64)
    keep = counts > 0
    centres = np.clip(np.rint(centres[keep]), 0, 255).astype(np.uint8)
    return Background("kmeans", centres, counts[keep] / counts[keep].sum(), int(seed))


# --------------------------------------------------------------------------- the value function


def margins(scores: np.ndarray, target: int) -> np.ndarray:
    """``m = min_{c' != c} (score_c - score_c' - [c' < c])`` per row; ``m >= 0`` iff the row is predicted ``c``."""
    scores = np.asarray(scores, dtype=np.int64)
    n_classes = scores.shape[1]
    if n_classes == 1:
        return np.zeros(len(scores), np.int64)
    penalty = (np.arange(n_classes) < target).astype(np.int64)
    diff = scores[:, [target]] - scores - penalty[None]
    diff[:, target] = np.iinfo(np.int64).max
    return diff.min(axis=1)


class MarginModel:
    """The coalition value function ``f(z)`` of the module docstring, for one instance.

    Args:
        model: the network.
        spikes: the instance's input spikes ``(T, n_inputs)``.
        features: the feature groups.
        background: the background set.
        target: the class index whose margin is explained (default: the prediction).
        backend: ``"kernel"`` (the bit-packed kernel, C where built) or ``"reference"``
            (:func:`xsnn.model.forward` on unpacked inputs); same values.

    Calling it on ``z`` of shape ``(m, n_features)`` (0/1, any numeric dtype) returns ``(m,)``
    float64 values; :attr:`evaluations` counts the network inputs evaluated so far.
    """

    def __init__(
        self,
        model: BSNN,
        spikes: np.ndarray,
        features: FeatureSet,
        background: Background,
        target: int | None = None,
        backend: str = "kernel",
    ) -> None:
        if backend not in ("kernel", "reference"):
            raise ValueError(f"backend must be 'kernel' or 'reference', got {backend!r}")
        self.model, self.features, self.backend = model, features, backend
        self.spikes = check_spikes(model, spikes)[0]
        bg = np.asarray(background.images)
        if bg.ndim != 2 or bg.shape[1] != model.n_inputs:
            raise ValueError(f"background images must be (B, {model.n_inputs}), got {bg.shape}")
        self.background_spikes = model.encode(bg)  # (B, T, n)
        self.weights = np.asarray(background.weights, np.float64)
        self.target = int(forward(model, self.spikes).prediction[0]) if target is None else int(target)
        owner = features.feature_of_pixel()
        self._owner = np.where(owner < 0, len(features), owner)  # last column: always absent
        self.evaluations = 0
        if backend == "kernel":
            from xsnn.kernel import PackedNetwork, pack_bits

            self._net = PackedNetwork(model)
            self._pack = pack_bits
            self._x_words = pack_bits(self.spikes)  # (T, W)
            self._b_words = pack_bits(self.background_spikes)  # (B, T, W)

    def pixel_masks(self, z: np.ndarray) -> np.ndarray:
        """``(m, n_inputs)`` bool: pixels kept at the instance's values under coalitions ``z``."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != len(self.features):
            raise ValueError(f"coalitions must have shape (m, {len(self.features)}), got {z.shape}")
        present = np.concatenate([z != 0, np.zeros((len(z), 1), bool)], axis=1)
        return present[:, self._owner]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        out = np.empty(len(z), np.float64)
        n_bg = len(self.weights)
        step = max(1, _BATCH_ROWS // n_bg)
        for lo in range(0, len(z), step):
            out[lo : lo + step] = self._values(z[lo : lo + step])
        return out

    def _values(self, z: np.ndarray) -> np.ndarray:
        keep = self.pixel_masks(z)  # (m, n)
        m, n_bg = len(keep), len(self.weights)
        self.evaluations += m * n_bg
        if self.backend == "kernel":
            mask = self._pack(keep)[:, None, None, :]  # (m, 1, 1, W)
            mixed = (self._x_words[None, None] & mask) | (self._b_words[None] & ~mask)  # (m, B, T, W)
            scores = self._net.scores_packed(mixed.reshape(m * n_bg, *self._x_words.shape))
        else:
            mixed = np.where(keep[:, None, None, :], self.spikes[None, None], self.background_spikes[None])
            scores = forward(self.model, mixed.reshape(m * n_bg, *self.spikes.shape).astype(np.uint8)).scores
        values = margins(scores, self.target).reshape(m, n_bg).astype(np.float64)
        return values @ self.weights


# --------------------------------------------------------------------------- SHAP values


@dataclass(frozen=True, eq=False)
class ShapValues:
    """SHAP values of one prediction's score margin, one per feature (shap-style parallel arrays).

    Attributes:
        values: ``(n_features,)`` Shapley value estimates ``phi_k``.
        base_value: ``f(0)``, the background's mean margin; ``full_value``: ``f(1)``, the instance's margin.
        data: the image (``input_shape``) or ``None`` when spikes were given; ``spikes`` ``(T, n_inputs)``.
        features: the feature groups; ``input_shape``: the image shape.
        target: the explained class index; ``target_label`` its label.
        explainer: ``permutation``, ``kernel``, ``partition`` or ``exact``.
        max_evals: the sampling budget given to shap (coalitions); ``evaluations`` the network
            inputs evaluated (coalitions x background inputs).
        seed: the random seed; ``background``: :meth:`Background.describe`; ``seconds``: wall time.
    """

    values: np.ndarray
    base_value: float
    full_value: float
    data: np.ndarray | None
    spikes: np.ndarray
    features: FeatureSet
    input_shape: tuple[int, ...]
    target: int
    target_label: int
    explainer: str
    max_evals: int | None
    seed: int
    background: dict
    evaluations: int = 0
    seconds: float = 0.0

    @property
    def additivity_error(self) -> float:
        """``|sum phi - (f(1) - f(0))|``: 0 up to rounding (the four explainers are all additive)."""
        return float(abs(self.values.sum() - (self.full_value - self.base_value)))

    @property
    def magnitude(self) -> np.ndarray:
        """``|phi|``, with values at most :data:`ZERO` set to 0 (a feature the margin does not depend on
        can come out as 1e-16 instead of 0 after shap sums its differences)."""
        magnitude = np.abs(self.values)
        return np.where(magnitude > ZERO, magnitude, 0.0)

    def ranking(self) -> np.ndarray:
        """Feature indices by decreasing :attr:`magnitude`, ties to the lower index."""
        return rank_features(self.magnitude)

    def top(self, k: int) -> frozenset[int]:
        """The ``k`` features of largest ``|phi|``."""
        return frozenset(int(i) for i in self.ranking()[: max(0, int(k))])

    def pixel_values(self) -> np.ndarray:
        """``input_shape`` float array: each pixel carries its feature's value (0 for pixels of no feature)."""
        owner = self.features.feature_of_pixel()
        out = np.where(owner >= 0, np.append(self.values, 0.0)[owner], 0.0)
        return out.reshape(self.input_shape)

    def settings(self) -> dict:
        return {
            "explainer": self.explainer,
            "max_evals": self.max_evals,
            "seed": self.seed,
            "background": dict(self.background),
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 4),
            "target": self.target_label,
        }

    def to_shap(self):
        """A ``shap.Explanation`` for shap's plots: values per feature, ``data`` the features' mean intensities."""
        import shap

        flat = (self.spikes.max(axis=0) if self.data is None else np.asarray(self.data).reshape(-1)).astype(float)
        data = np.array([flat[list(g)].mean() for g in self.features.groups])
        return shap.Explanation(
            values=self.values.copy(),
            base_values=self.base_value,
            data=data,
            feature_names=list(self.features.names),
            compute_time=self.seconds,
        )

    @classmethod
    def from_shap(
        cls,
        explanation,
        *,
        model: BSNN,
        image: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        explainer: str = "external",
        max_evals: int | None = None,
        seed: int = 0,
        background: dict | None = None,
    ) -> ShapValues:
        """Read a ``shap.Explanation`` of one instance (values per feature, or per pixel for pixel features)."""
        values = np.asarray(explanation.values, dtype=np.float64)
        data, spikes = _instance(model, image)
        features = _features(model, features)
        values = values.reshape(-1)
        if values.shape != (len(features),):
            raise ValueError(f"the explanation has {values.size} values, the feature set {len(features)} features")
        base = np.asarray(explanation.base_values, dtype=np.float64).reshape(-1)
        target = int(forward(model, spikes).prediction[0]) if target is None else int(target)
        full = float(margins(forward(model, spikes).scores, target)[0])
        return cls(
            values,
            float(base[0]),
            full,
            data,
            spikes,
            features,
            model.input_shape,
            target,
            model.labels[target],
            explainer,
            max_evals,
            int(seed),
            dict(background or {}),
            0,
            float(getattr(explanation, "compute_time", 0.0) or 0.0),
        )

    def to_dict(self) -> dict:
        return {
            "values": self.values.tolist(),
            "base_value": self.base_value,
            "full_value": self.full_value,
            "feature_names": list(self.features.names),
            **self.settings(),
        }


def _instance(model: BSNN, image: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """``(data or None, spikes (T, n))`` for a raw image or the instance's spikes (:func:`xsnn.api.check_image`)."""
    from xsnn.api import check_image

    return check_image(model, image)


def _features(model: BSNN, features: FeatureSet | str | None) -> FeatureSet:
    """``None`` / ``"pixels"``, ``"patches:K"`` or a FeatureSet, as for :func:`xsnn.explain`."""
    from xsnn.api import feature_set

    return feature_set(model, features)


def _feature_clustering(features: FeatureSet, input_shape: Sequence[int]) -> np.ndarray:
    """A scipy linkage matrix over the features' centres (Ward), for shap's Partition explainer."""
    from scipy.cluster.hierarchy import linkage

    shape = tuple(input_shape) if len(input_shape) == 2 else (1, int(np.prod(input_shape)))
    rows, cols = np.divmod(np.arange(int(np.prod(shape))), shape[1])
    centres = np.array([[rows[list(g)].mean(), cols[list(g)].mean()] for g in features.groups])
    if len(centres) < 2:
        raise ValueError("the partition explainer needs at least two features")
    return linkage(centres, method="ward")


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """shap's kernel explainer draws from numpy's global generator: seed it, then restore its state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def default_max_evals(explainer: str, n_features: int) -> int:
    """10 permutations (``10 (2 |F| + 1)``) for ``permutation``; ``2 |F| + 2048`` for ``kernel``,
    ``500`` for ``partition`` (shap's default), ``2^|F|`` for ``exact``."""
    if explainer == "permutation":
        return 10 * (2 * n_features + 1)
    if explainer == "kernel":
        return 2 * n_features + 2048
    if explainer == "partition":
        return 500
    return 2**n_features


def shap_values(
    model: BSNN,
    image: np.ndarray,
    *,
    explainer: str = "permutation",
    max_evals: int | None = None,
    background: Background | None = None,
    features: FeatureSet | str | None = None,
    seed: int = 0,
    target: int | None = None,
    backend: str = "kernel",
) -> ShapValues:
    """SHAP values of the score margin of ``target`` (default: the prediction) with shap's ``explainer``.

    Args:
        image: a raw image (``input_shape`` or flat) or the instance's spikes ``(T, n_inputs)``.
        explainer: ``permutation`` (antithetic permutation sampling; exact additivity),
            ``kernel`` (Kernel SHAP, ``l1_reg=False`` so every feature gets a value), ``partition``
            (Owen values over a Ward hierarchy of the features' centres: superpixels) or ``exact``
            (all ``2^|F|`` coalitions; at most :data:`EXACT_MAX_FEATURES` features, e.g. patches).
        max_evals: coalitions shap may evaluate (default :func:`default_max_evals`).
        background: the background set (default: blank).
        features: ``"pixels"`` (default), ``"patches:K"`` or a :class:`~xsnn.features.FeatureSet`.
        seed: random seed of the sampling explainers.
        backend: ``kernel`` or ``reference`` (see :class:`MarginModel`).
    """
    if explainer not in EXPLAINERS:
        raise ValueError(f"unknown SHAP explainer {explainer!r}; use one of {', '.join(EXPLAINERS)}")
    import shap

    data, spikes = _instance(model, image)
    features = _features(model, features)
    background = background or make_background("blank", n_inputs=model.n_inputs)
    n = len(features)
    if explainer == "exact" and n > EXACT_MAX_FEATURES:
        raise ValueError(
            f"the exact explainer needs 2^{n} coalitions; use at most {EXACT_MAX_FEATURES} features "
            "(e.g. square patches) or a sampling explainer"
        )
    budget = default_max_evals(explainer, n) if max_evals is None else int(max_evals)
    if explainer == "permutation" and budget < 2 * n + 1:
        raise ValueError(f"the permutation explainer needs max_evals >= 2 * {n} + 1 = {2 * n + 1}, got {budget}")
    if budget < 1:
        raise ValueError(f"max_evals must be positive, got {budget}")
    f = MarginModel(model, spikes, features, background, target, backend)
    start = time.perf_counter()
    zeros, ones = np.zeros((1, n)), np.ones((1, n))
    base_value, full_value = (float(v) for v in f(np.concatenate([zeros, ones])))
    if explainer == "kernel":
        with _seeded_global_rng(seed):
            kernel = shap.KernelExplainer(f, zeros)
            values = np.asarray(kernel.shap_values(ones, nsamples=budget, l1_reg=False, silent=True)).reshape(-1)
    else:
        if explainer == "partition":
            masker = shap.maskers.Partition(zeros, clustering=_feature_clustering(features, model.input_shape))
            run = shap.explainers.Partition(f, masker)
        elif explainer == "exact":
            run = shap.explainers.Exact(f, shap.maskers.Independent(zeros))
        else:
            run = shap.explainers.Permutation(f, shap.maskers.Independent(zeros), seed=seed)
        out = run(ones, max_evals=budget, batch_size=max(budget, 2 * n + 1), silent=True)
        values = np.asarray(out.values, dtype=np.float64).reshape(-1)
    seconds = time.perf_counter() - start
    target = f.target
    return ShapValues(
        values.astype(np.float64),
        base_value,
        full_value,
        data,
        spikes,
        features,
        model.input_shape,
        target,
        model.labels[target],
        explainer,
        budget,
        int(seed),
        background.describe(),
        f.evaluations,
        seconds,
    )


# --------------------------------------------------------------------------- rank metrics


def rank_features(scores: np.ndarray) -> np.ndarray:
    """Indices by decreasing score, ties to the lower index."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(len(scores)), -scores))


def _prefix_probabilities(scores: np.ndarray) -> np.ndarray:
    """``P[d-1, i]``: the probability that item ``i`` is among the first ``d`` of the order by
    decreasing score when ties are broken uniformly at random (``d = 1..n``)."""
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    ordered = np.sort(scores)[::-1]
    start = n - np.searchsorted(ordered[::-1], scores, side="right")  # items strictly greater
    size = n - np.searchsorted(ordered[::-1], scores, side="left") - start  # the item's tie group
    depth = np.arange(1, n + 1)[:, None]
    return np.clip((depth - start[None]) / size[None], 0.0, 1.0)


def rbo(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap of the orders of two score vectors over the same items.

    With ``X_d`` the overlap of the two top-``d`` prefixes (orders by decreasing score) and
    ``n`` items (Webber, Moffat & Zobel 2010, eq. 32 at depth ``n``)::

        RBO = X_n / n * p^n + (1 - p) / p * sum_{d=1}^{n} X_d / d * p^d

    1 for identical orders, near 0 for disjoint heads. Tied scores have no order: ``X_d`` is its
    expectation when each vector's ties are broken uniformly at random (independently), so that
    a tie is neither rewarded nor punished by an arbitrary choice; without ties this is the
    plain definition.
    """
    if not 0 < p < 1:
        raise ValueError(f"RBO persistence p must be in (0, 1), got {p}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("RBO needs two score vectors of the same length")
    n = len(a)
    if n == 0:
        return 1.0
    overlap = (_prefix_probabilities(a) * _prefix_probabilities(b)).sum(axis=1)  # E[X_d], d = 1..n
    depth = np.arange(1, n + 1)
    return float(overlap[-1] / n * p**n + (1 - p) / p * np.sum(overlap / depth * p**depth))


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's tau-b (ties handled) of two score vectors; ``None`` when either is constant."""
    from scipy.stats import kendalltau

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    tau = kendalltau(a, b).statistic
    return None if not np.isfinite(tau) else float(tau)


def attribution_error(a: np.ndarray, b: np.ndarray) -> float | None:
    """``sum_i |a_i / sum a - b_i / sum b|`` for non-negative attributions; ``None`` if a sum is 0."""
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.sum() == 0 or b.sum() == 0:
        return None
    return float(np.abs(a / a.sum() - b / b.sum()).sum())


# --------------------------------------------------------------------------- budgets and the comparison


@dataclass(frozen=True)
class Budgets:
    """Seconds for each formal step of one comparison (``question``: cap per single oracle question;
    ``questions``: for the top-k questions of the abductive side, and again for the contrastive side).

    The default totals 11 s per image at most; :meth:`scaled` spreads a total in the
    same proportions. ``ffa_max_axps`` caps the AXps the attribution enumerates.
    """

    axp: float = 4.0
    shap_order_axp: float = 2.0
    questions: float = 1.0
    question: float = 0.5
    minimum: float = 0.25
    relevance: float = 0.75
    relevance_question: float = 0.25
    ffa: float = 1.0
    ffa_max_axps: int | None = None
    cxp: float = 1.0

    @classmethod
    def scaled(cls, total: float, ffa_max_axps: int | None = None) -> Budgets:
        if not total > 0:
            raise ValueError(f"the time limit must be positive seconds, got {total}")
        base = cls()
        factor = total / base.total()
        return cls(
            **{k: (v * factor if isinstance(v, float) else v) for k, v in base.__dict__.items() if k != "ffa_max_axps"},
            ffa_max_axps=ffa_max_axps,
        )

    def total(self) -> float:
        return self.axp + self.shap_order_axp + 2 * self.questions + self.minimum + self.relevance + self.ffa + self.cxp


# The row of one comparison: every column, in order (None where undecided or undefined).
METRICS = (
    "index",
    "label",
    "prediction",
    "n_features",
    "seconds",
    "shap_explainer",
    "shap_max_evals",
    "shap_seed",
    "shap_background",
    "shap_evaluations",
    "shap_seconds",
    "shap_additivity_error",
    "shap_nonzero",
    "axp_size",
    "axp_status",
    "axp_seconds",
    "topk_sufficient",
    "smallest_sufficient_k",
    "smallest_sufficient_k_low",
    "smallest_sufficient_k_high",
    "shap_order_axp_size",
    "shap_order_axp_status",
    "min_axp_size",
    "min_axp_lower_bound",
    "min_axp_status",
    "precision",
    "recall",
    "jaccard",
    "n_relevant",
    "n_irrelevant",
    "n_irrelevant_structural",
    "n_relevance_unknown",
    "irrelevant_mass",
    "unknown_mass",
    "irrelevant_nonzero",
    "irrelevant_above_relevant",
    "irrelevant_top_rank",
    "ffa_status",
    "ffa_n_axps",
    "ffa_seconds",
    "kendall_tau",
    "rbo",
    "ffa_error",
    "cxp_size",
    "cxp_status",
    "topk_cxp_changes",
    "smallest_changing_k",
    "max_distance",
    "budget_seconds",
)

RELEVANT, IRRELEVANT, UNKNOWN = 1, 0, -1


@dataclass(frozen=True, eq=False)
class Comparison:
    """One image's comparison: the explanations, SHAP, the relevance labels and the metric row.

    Attributes:
        shap: the SHAP values.
        axp: features of the AXp by deletion in index order; ``axp_status`` its status.
        shap_order_axp: the AXp by deletion in SHAP order.
        cxp: features of the CXp (deletion in SHAP order, witness-guided); ``()`` if there is none.
        relevance: ``(n_features,)`` int8: 1 relevant (in a found AXp), 0 irrelevant (proven), -1 unknown.
        ffa: ``(n_features,)`` formal feature attribution from the budgeted enumeration.
        metrics: the row (keys :data:`METRICS`).
    """

    shap: ShapValues
    axp: tuple[int, ...]
    shap_order_axp: tuple[int, ...]
    cxp: tuple[int, ...]
    relevance: np.ndarray
    ffa: np.ndarray
    metrics: dict = field(default_factory=dict)

    @property
    def features(self) -> FeatureSet:
        return self.shap.features

    def pixel_mask(self, features: Sequence[int]) -> np.ndarray:
        """Bool ``input_shape`` mask of the pixels of ``features``."""
        return self.features.pixel_mask(list(features)).reshape(self.shap.input_shape)

    def irrelevant_pixels(self) -> np.ndarray:
        return self.pixel_mask(np.flatnonzero(self.relevance == IRRELEVANT))


class _Clock:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def structurally_irrelevant(model: BSNN, features: FeatureSet) -> np.ndarray:
    """``(n_features,)`` bool: features none of whose pixels any first-layer neuron reads (all weights 0)."""
    read = np.any(model.weights[0] != 0, axis=0)
    return np.array([not read[list(g)].any() for g in features.groups])


def _status(value) -> str:
    return getattr(value, "value", str(value))


def _binary_search(decide: Callable[[int], bool | None], n: int, known: dict[int, bool]) -> tuple[int, int]:
    """Least ``k`` in ``0..n`` with ``decide(k)`` (monotone; ``decide(n)`` assumed true): ``(low, high)``
    bounds, equal when decided; ``decide`` returns ``None`` when undecided (the search stops)."""
    low, high = 0, n  # the answer lies in [low, high]
    for k, v in known.items():
        if v:
            high = min(high, k)
        else:
            low = max(low, k + 1)
    while low < high:
        mid = (low + high) // 2
        verdict = decide(mid)
        if verdict is None:
            break
        if verdict:
            high = mid
        else:
            low = mid + 1
    return low, high


def compare(
    model: BSNN,
    image: np.ndarray,
    *,
    shap: ShapValues | None = None,
    explainer: str = "permutation",
    max_evals: int | None = None,
    background: Background | None = None,
    seed: int = 0,
    features: FeatureSet | str | None = None,
    budgets: Budgets | None = None,
    backend: str = DEFAULT_BACKEND,
    max_distance: int | None = None,
    rbo_p: float = 0.9,
    index: int | None = None,
    label: int | None = None,
) -> Comparison:
    """Compare SHAP with formal explanations on one image (metrics in the module docstring).

    Args:
        image: a raw image or the instance's spikes.
        shap: precomputed SHAP values (else computed with ``explainer``, ``max_evals``,
            ``background``, ``seed``, ``features``).
        budgets: seconds per formal step (default :class:`Budgets`).
        backend: the exact oracle (:func:`xsnn.solvers.backends.make_oracle`; ``bruteforce`` for tiny nets).
        max_distance: distance-restricted explanations (valid within this many changed features).
        rbo_p: RBO persistence.
        index, label: copied into the row (where the image came from, its true label).
    """
    from xsnn.solvers.axp import DeletionAXp
    from xsnn.solvers.cxp import DeletionCXp
    from xsnn.solvers.enumerate import Enumerator, Relevance
    from xsnn.solvers.minimum import MinimumAXp
    from xsnn.solvers.oracle import Verdict
    from xsnn.solvers.result import NoExplanationError, RelevanceAnswer, Status

    start = time.perf_counter()
    budgets = budgets or Budgets()
    data, spikes = _instance(model, image)
    features = shap.features if shap is not None and features is None else _features(model, features)
    outside = 0.0 if shap is None else shap.seconds  # SHAP time spent before this call
    if shap is None:
        shap = shap_values(
            model,
            spikes if data is None else data,
            explainer=explainer,
            max_evals=max_evals,
            background=background,
            features=features,
            seed=seed,
        )
    elif len(shap.features) != len(features):
        raise ValueError("the SHAP values and the feature set disagree on the number of features")
    n = len(features)
    magnitude = shap.magnitude
    order_scores = magnitude  # deletion tries the lowest |phi| first, so high |phi| tend to stay
    ranking = shap.ranking()
    top = lambda k: frozenset(int(i) for i in ranking[:k])  # noqa: E731

    row: dict = dict.fromkeys(METRICS)
    prediction = int(forward(model, spikes).prediction[0])
    row.update(
        index=index,
        label=label,
        prediction=model.labels[prediction],
        n_features=n,
        shap_explainer=shap.explainer,
        shap_max_evals=shap.max_evals,
        shap_seed=shap.seed,
        shap_background=f"{shap.background.get('kind')}:{shap.background.get('size')}",
        shap_evaluations=shap.evaluations,
        shap_seconds=round(shap.seconds, 4),
        shap_additivity_error=round(shap.additivity_error, 6),
        shap_nonzero=int((magnitude > 0).sum()),
        max_distance=max_distance,
        budget_seconds=round(budgets.total(), 3),
    )
    oracle = make_oracle(model, spikes, backend=backend, features=features, max_distance=max_distance)
    relevance = np.full(n, UNKNOWN, np.int8)
    ffa = np.zeros(n)
    axp: tuple[int, ...] = ()
    shap_axp: tuple[int, ...] = ()
    cxp: tuple[int, ...] = ()
    try:

        def ask(fixed: frozenset[int], clock: _Clock) -> bool | None:
            """Is fixing ``fixed`` sufficient? ``None`` when undecided within the budget."""
            left = min(budgets.question, clock.left())
            if left <= 0:
                return None
            verdict = oracle.check(fixed, time_limit=left).verdict
            return None if verdict is Verdict.UNKNOWN else verdict is Verdict.ENTAILED

        # -- the AXp (deletion, index order) and the AXp in SHAP order
        found = DeletionAXp(oracle, order="index", time_limit=budgets.axp).compute()
        axp = found.features
        row.update(axp_size=len(axp), axp_status=_status(found.status), axp_seconds=round(found.seconds, 4))
        relevant_sets = [axp] if found.minimal else []
        by_shap = DeletionAXp(oracle, order=order_scores, time_limit=budgets.shap_order_axp).compute()
        shap_axp = by_shap.features
        row.update(shap_order_axp_size=len(shap_axp), shap_order_axp_status=_status(by_shap.status))
        if by_shap.minimal:
            relevant_sets.append(shap_axp)

        # -- top-|AXp| SHAP features: sufficiency, overlap; smallest sufficient k
        k_axp = len(axp)
        chosen = top(k_axp)
        if k_axp:
            hit = len(chosen & set(axp))
            row.update(precision=hit / k_axp, recall=hit / k_axp, jaccard=hit / len(chosen | set(axp)))
        clock = _Clock(budgets.questions)
        sufficient = ask(chosen, clock)
        row["topk_sufficient"] = sufficient
        known = {} if sufficient is None else {k_axp: sufficient}
        low, high = _binary_search(lambda k: ask(top(k), clock), n, known)
        row.update(
            smallest_sufficient_k_low=low,
            smallest_sufficient_k_high=high,
            smallest_sufficient_k=low if low == high else None,
        )

        # -- minimum AXp
        smallest = MinimumAXp(oracle, upper_bound=False, time_limit=budgets.minimum).compute()
        row.update(
            min_axp_status=_status(smallest.status),
            min_axp_lower_bound=smallest.lower_bound,
            min_axp_size=len(smallest.explanation) if smallest.optimal else None,
        )
        if smallest.optimal:
            relevant_sets.append(smallest.explanation.features)

        # -- formal feature attribution: FFA(i) = share of the enumerated AXps that contain i
        enumerator = Enumerator(
            oracle, prefer="axp", max_axps=budgets.ffa_max_axps, order=order_scores, time_limit=budgets.ffa
        )
        began = time.perf_counter()
        axps = [item for item in enumerator.enumerate() if item.kind == "axp"]
        counts = np.zeros(n)
        for item in axps:
            counts[list(item.features)] += 1
        ffa = counts / len(axps) if axps else counts
        exhaustive = enumerator.status is Status.COMPLETE
        row.update(
            ffa_status=_status(enumerator.status),
            ffa_n_axps=len(axps),
            ffa_seconds=round(time.perf_counter() - began, 4),
        )
        relevant_sets.extend(item.features for item in axps if item.minimal)

        # -- relevance labels
        for s in relevant_sets:
            relevance[list(s)] = RELEVANT
        structural = structurally_irrelevant(model, features)
        relevance[structural] = IRRELEVANT
        if exhaustive:
            relevance[relevance == UNKNOWN] = IRRELEVANT  # every AXp is known: the rest occur in none
        else:
            clock = _Clock(budgets.relevance)
            asker = Relevance(oracle, order=order_scores)
            for i in ranking:
                if relevance[i] != UNKNOWN:
                    continue
                left = min(budgets.relevance_question, clock.left())
                if left <= 0.01:
                    break
                asker.time_limit = left
                answer = asker.compute(int(i))
                if answer.answer is RelevanceAnswer.RELEVANT:
                    relevance[i] = RELEVANT
                    if answer.axp is not None and answer.axp.minimal:
                        relevance[list(answer.axp.features)] = RELEVANT
                elif answer.answer is RelevanceAnswer.IRRELEVANT:
                    relevance[i] = IRRELEVANT
        row.update(_relevance_metrics(magnitude, relevance, structural))

        # -- rank agreement with FFA
        if axps:
            row.update(
                kendall_tau=kendall_tau(magnitude, ffa),
                rbo=rbo(magnitude, ffa, rbo_p),
                ffa_error=attribution_error(magnitude, ffa),
            )

        # -- contrastive side
        try:
            found_cxp = DeletionCXp(oracle, order=order_scores, use_witnesses=True, time_limit=budgets.cxp).compute()
        except NoExplanationError:
            found_cxp = None  # the prediction cannot change (or that could not be decided)
        if found_cxp is not None:
            cxp = found_cxp.features
            row.update(cxp_size=len(cxp), cxp_status=_status(found_cxp.status))
            everything = frozenset(range(n))
            clock = _Clock(budgets.questions)
            changes = ask(everything - top(len(cxp)), clock)
            row["topk_cxp_changes"] = None if changes is None else not changes
            known = {} if changes is None else {len(cxp): not changes}
            low, high = _binary_search(lambda k: _negate(ask(everything - top(k), clock)), n, known)
            row["smallest_changing_k"] = low if low == high else None
    except NoExplanationError as exc:  # e.g. fixing every feature does not entail the prediction (undecided)
        log.warning("no formal explanation for image %s: %s", index, exc)
    finally:
        oracle.close()
    row["seconds"] = round(time.perf_counter() - start + outside, 4)
    return Comparison(shap, tuple(axp), tuple(shap_axp), tuple(cxp), relevance, np.asarray(ffa, np.float64), row)


def _negate(v: bool | None) -> bool | None:
    return None if v is None else not v


def _relevance_metrics(magnitude: np.ndarray, relevance: np.ndarray, structural: np.ndarray) -> dict:
    irrelevant = relevance == IRRELEVANT
    relevant = relevance == RELEVANT
    unknown = relevance == UNKNOWN
    total = magnitude.sum()
    out = {
        "n_relevant": int(relevant.sum()),
        "n_irrelevant": int(irrelevant.sum()),
        "n_irrelevant_structural": int(structural.sum()),
        "n_relevance_unknown": int(unknown.sum()),
        "irrelevant_mass": float(magnitude[irrelevant].sum() / total) if total > 0 else None,
        "unknown_mass": float(magnitude[unknown].sum() / total) if total > 0 else None,
        "irrelevant_nonzero": int((magnitude[irrelevant] > 0).sum()),
    }
    if irrelevant.any() and relevant.any():
        rel = np.sort(magnitude[relevant])
        # pairs (irrelevant i, relevant r) with |phi_i| > |phi_r|: for each i, the relevant values below it
        above = np.searchsorted(rel, magnitude[irrelevant], side="left").sum()
        out["irrelevant_above_relevant"] = float(above / (irrelevant.sum() * relevant.sum()))
    if irrelevant.any() and magnitude[irrelevant].max() > 0:
        # 1 + the features SHAP puts strictly above the highest irrelevant one (ties give no rank)
        out["irrelevant_top_rank"] = int((magnitude > magnitude[irrelevant].max()).sum()) + 1
    return out


def compare_image(model: BSNN, image: np.ndarray, **options) -> dict:
    """The metric row of :func:`compare` (keys :data:`METRICS`): a pure function of its inputs."""
    return compare(model, image, **options).metrics


# --------------------------------------------------------------------------- summary


def summarise(rows: Sequence[dict], confidence: float = 0.95) -> list[dict]:
    """Per numeric or Boolean metric: count, mean with a ``confidence`` interval, median.

    Booleans: the share of True with a Wilson interval; numbers: the mean with a Student-t
    interval. Undecided values (``None``) are left out and counted in ``undecided``.
    """
    from scipy.stats import norm
    from scipy.stats import t as student

    out = []
    for name in METRICS:
        if name in ("index", "label", "prediction", "shap_seed", "max_distance"):
            continue
        raw = [r.get(name) for r in rows]
        values = [v for v in raw if v is not None and v != ""]
        if not values or isinstance(values[0], str) and values[0] not in ("True", "False"):
            continue
        if all(isinstance(v, bool) or v in ("True", "False") for v in values):
            x = np.array([v is True or v == "True" for v in values], float)
            m, z = len(x), norm.ppf(0.5 + confidence / 2)
            p = x.mean()
            centre = (p + z * z / (2 * m)) / (1 + z * z / m)
            half = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
            out.append(
                {
                    "metric": name,
                    "n": m,
                    "undecided": len(raw) - m,
                    "mean": p,
                    "low": centre - half,
                    "high": centre + half,
                    "median": None,
                    "kind": "share",
                }
            )
            continue
        try:
            x = np.array([float(v) for v in values])
        except (TypeError, ValueError):
            continue
        m = len(x)
        half = float(student.ppf(0.5 + confidence / 2, m - 1) * x.std(ddof=1) / math.sqrt(m)) if m > 1 else math.nan
        out.append(
            {
                "metric": name,
                "n": m,
                "undecided": len(raw) - m,
                "mean": float(x.mean()),
                "low": float(x.mean() - half),
                "high": float(x.mean() + half),
                "median": float(np.median(x)),
                "kind": "mean",
            }
        )
    return out


def format_summary(summary: Sequence[dict]) -> str:
    """A plain-text table of :func:`summarise`'s output."""
    lines = [f"{'metric':<28} {'n':>5} {'undec':>5} {'mean':>10} {'95% CI':>21} {'median':>9}"]
    for s in summary:
        median = "" if s["median"] is None else f"{s['median']:.4g}"
        ci = f"[{s['low']:.4g}, {s['high']:.4g}]"
        lines.append(f"{s['metric']:<28} {s['n']:>5} {s['undecided']:>5} {s['mean']:>10.4g} {ci:>21} {median:>9}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_indices(text: str, count: int) -> list[int]:
    """``"0:1000"``, ``"0:1000:10"``, ``"3,5,7"`` or ``"12"`` -> indices in ``0..count-1`` (slices
    clipped to the data; :func:`xsnn.batch.parse_indices`)."""
    from xsnn.batch import parse_indices as batch_indices

    if not text.strip():
        raise ValueError(f"--indices {text!r} is not a range like 0:1000 (or 0:1000:10) or a list like 3,5,7")
    return batch_indices(text, count, what="the data", clip=True)


def parse_features(text: str, model: BSNN) -> FeatureSet:
    """``pixels`` or ``patches:N`` (square N x N patches of a 2-D image), as for the other commands."""
    try:
        return _features(model, text)
    except ValueError:
        raise ValueError(f"--features {text!r}: use 'pixels' or 'patches:N' (N >= 1, for 2-D images)") from None


def add_compare_command(subparsers) -> None:
    """Register ``xsnn compare`` (formal explanations versus SHAP over a range of images)."""
    from xsnn.model import DEFAULT_MODEL

    p = subparsers.add_parser(
        "compare",
        help="compare SHAP with formal explanations over a range of images",
        description="One row of metrics per image (see docs/compare.md), written as it "
        "finishes; an existing --out file is resumed.",
    )
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"shipped model or .npz path (default {DEFAULT_MODEL})")
    p.add_argument(
        "--data",
        choices=("sample", "mnist"),
        default=None,
        help="images: MNIST (from --data-dir or $XSNN_DATA) or the 200-image test sample shipped "
        "with xsnn (default: MNIST when a folder is given, else the sample)",
    )
    p.add_argument("--data-dir", default=None, help="folder of the full MNIST IDX files (default $XSNN_DATA)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="MNIST split of the explained images")
    p.add_argument("--indices", default="0:10", help="images: 0:1000, 0:1000:10 or 3,5,7 (default 0:10)")
    p.add_argument(
        "--model-labels-only",
        action="store_true",
        help="skip images whose true label is not one of the model's classes (e.g. 1/5/9)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=11.0,
        help="seconds of formal reasoning per image at most, spread over the steps as in "
        "xsnn.compare.Budgets (default 11)",
    )
    p.add_argument("--ffa-max-axps", type=int, default=None, help="stop the FFA enumeration after this many AXps")
    p.add_argument("--backend", default=DEFAULT_BACKEND, help="exact oracle (as for 'xsnn explain')")
    p.add_argument("--distance", type=int, default=None, help="distance-restricted explanations")
    p.add_argument("--features", default="pixels", help="pixels (default) or patches:N")
    p.add_argument(
        "--explainer", choices=EXPLAINERS, default="permutation", help="shap explainer (default permutation)"
    )
    p.add_argument(
        "--max-evals",
        type=int,
        default=None,
        help="coalitions shap may evaluate (default: 10 permutations; 2^|F| for exact)",
    )
    p.add_argument("--background", choices=BACKGROUNDS, default="blank", help="values of absent features")
    p.add_argument("--background-size", type=int, default=10, help="images (sample) or centres (kmeans), default 10")
    p.add_argument("--seed", type=int, default=0, help="seed of the background draw and of shap's sampling")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", "-o", default=None, help="table.csv or table.jsonl (default: JSON lines on stdout)")
    p.add_argument("--summary", default=None, help="also write the summary (means with 95%% CIs) as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_compare)


TABLE_COLUMNS = (*METRICS, "status", "error")  # the columns of an ``xsnn compare`` table
_QUESTION = ("shap_explainer", "shap_background", "max_distance")  # rows of one table agree on these


@dataclass(frozen=True)
class CompareSetup:
    """The ``xsnn compare`` task of :func:`xsnn.batch.run_batch` (a :class:`xsnn.batch.BatchTask`):
    one row of :data:`TABLE_COLUMNS` per image, ``status`` ``complete``, ``error`` (the comparison
    raised; ``error`` says why) or ``failed`` (its workers kept dying)."""

    name: ClassVar[str] = "compare"
    id_field: ClassVar[str] = "index"
    columns: ClassVar[tuple[str, ...] | None] = TABLE_COLUMNS

    model: str
    model_hash: str
    background: Background
    background_source: str
    features: str
    explainer: str
    max_evals: int | None
    seed: int
    budgets: Budgets
    backend: str
    max_distance: int | None

    def question(self) -> dict:
        return {
            "shap_explainer": self.explainer,
            "shap_background": f"{self.background.kind}:{len(self.background.images)}@{self.background_source}",
            "max_distance": self.max_distance,
        }

    def _row(self, instance: Instance, status: str, error: str | None = None) -> dict:
        return {
            **dict.fromkeys(TABLE_COLUMNS),
            **self.question(),
            "index": instance.index,
            "label": instance.label,
            "status": status,
            "error": error,
        }

    def run(self, instance: Instance) -> dict:
        from xsnn.batch import BatchError, worker_model

        model, _ = worker_model(self)
        try:
            row = compare_image(
                model,
                instance.image,
                explainer=self.explainer,
                max_evals=self.max_evals,
                background=self.background,
                seed=self.seed,
                features=parse_features(self.features, model),
                budgets=self.budgets,
                backend=self.backend,
                max_distance=self.max_distance,
                index=instance.index,
                label=instance.label,
            )
        except BatchError:
            raise
        except Exception as exc:  # noqa: BLE001  (recorded in the row; the run goes on)
            log.warning("image %d: %s: %s", instance.index, type(exc).__name__, exc)
            return self._row(instance, "error", f"{type(exc).__name__}: {exc}")
        row["shap_background"] += f"@{self.background_source}"
        return {**row, "status": "complete", "error": None}

    def failed_row(self, instance: Instance, error: str, attempts: int) -> dict:
        return self._row(instance, "failed", error)

    @staticmethod
    def record(row: dict) -> dict:
        return {**row, "id": int(row["index"]), "question": {k: row.get(k) for k in _QUESTION}}


def read_rows(path) -> list[dict]:
    """The rows of an ``xsnn compare`` table (``.csv`` or ``.jsonl``), with numbers, Booleans and
    ``None`` (any columns: tables written before a column was added read too)."""
    import csv
    import json
    from pathlib import Path

    from xsnn.batch import csv_value

    path = Path(path)
    text = path.read_text()
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON-lines table ({exc})") from None
    return [{k: csv_value(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())]


def run_compare(args) -> int:
    """The ``xsnn compare`` command: :func:`xsnn.batch.run_batch` with the :class:`CompareSetup` task."""
    import json
    import os
    import sys
    from pathlib import Path

    from xsnn import data as xdata
    from xsnn.batch import TROUBLE, BatchData, BatchSettings, LocalEngine, Progress, run_batch
    from xsnn.model import load_model

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.distance is not None and args.distance < 0:
        raise ValueError(f"--distance must be >= 0, got {args.distance}")
    if args.background_size < 1:
        raise ValueError(f"--background-size must be >= 1, got {args.background_size}")
    if args.out is not None and Path(args.out).suffix not in (".csv", ".jsonl"):
        raise ValueError(f"--out {args.out!r}: the file name must end in .csv or .jsonl")
    budgets = Budgets.scaled(args.time_limit, args.ffa_max_axps)
    model = load_model(args.model)
    features = parse_features(args.features, model)
    if args.explainer == "exact" and len(features) > EXACT_MAX_FEATURES:
        raise ValueError(
            f"--explainer exact needs at most {EXACT_MAX_FEATURES} features (e.g. --features "
            f"patches:7), got {len(features)}"
        )
    if args.data is None:
        args.data = "mnist" if (args.data_dir or os.environ.get(xdata.DATA_ENV)) else "sample"
    if args.data == "sample":
        if args.split != "test":
            raise ValueError("the shipped sample holds test images only; use --data mnist for --split train")
        images, labels = xdata.load_sample()
    else:
        images, labels = xdata.load_mnist(args.split, args.data_dir)
    indices = parse_indices(args.indices, len(images))
    if args.model_labels_only:
        indices = [i for i in indices if int(labels[i]) in model.labels]
    if args.background == "blank":
        background, source = make_background("blank", n_inputs=model.n_inputs), "none"
    else:  # drawn from training images when MNIST is given, else from the shipped sample
        pool, source = (
            (xdata.load_mnist("train", args.data_dir)[0], "train") if args.data == "mnist" else (images, "sample")
        )
        background = make_background(args.background, pool, size=args.background_size, seed=args.seed)
    setup = CompareSetup(
        str(args.model),
        model.content_hash(),
        background,
        source,
        args.features,
        args.explainer,
        args.max_evals,
        args.seed,
        budgets,
        args.backend,
        args.distance,
    )
    settings = BatchSettings(
        setup,
        BatchData(args.data, images, np.asarray(labels, dtype=np.int64)),
        tuple(indices),
        None if args.out is None else Path(args.out),
        resume=args.out is not None,
    )
    progress: list[Progress] = []

    def on_start(to_do: int, already_done: int) -> None:
        if already_done:
            print(f"compare: {already_done} of {len(indices)} images already in {args.out}; resuming", file=sys.stderr)
        progress.append(Progress(to_do, sys.stderr, enabled=not args.no_progress, interval=30.0))

    try:
        outcome = run_batch(
            settings, LocalEngine(args.jobs), on_start=on_start, on_row=lambda row: progress[0].update(row)
        )
    finally:
        for bar in progress:
            bar.close()
    chosen = set(indices)
    rows = [r for r in outcome.records if r["id"] in chosen]
    summary = summarise([r for r in rows if r["status"] == "complete"])
    print(format_summary(summary), file=sys.stderr)
    if args.summary:
        with open(args.summary, "w") as handle:
            json.dump(
                {"images": len(chosen), "settings": _settings(args, budgets), "summary": summary}, handle, indent=1
            )
    return 1 if any(outcome.statuses[s] for s in TROUBLE) else 0


def _settings(args, budgets: Budgets) -> dict:
    return {
        "model": args.model,
        "data": args.data,
        "split": args.split,
        "indices": args.indices,
        "model_labels_only": args.model_labels_only,
        "time_limit": args.time_limit,
        "budgets": budgets.__dict__,
        "backend": args.backend,
        "distance": args.distance,
        "features": args.features,
        "explainer": args.explainer,
        "max_evals": args.max_evals,
        "background": args.background,
        "background_size": args.background_size,
        "seed": args.seed,
        "jobs": args.jobs,
    }
