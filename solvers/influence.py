"""A removal order for AXps that frees the least influential features first (one spiking layer,
static coding).

Deletion returns a different AXp for each order, and on dense networks the order decides how
hard its ENTAILED questions are: each one asks whether the prediction survives with the freed
features and one more free. The interval bound of :mod:`xsnn.solvers.rivalsat` measures how
close a free set comes to letting a rival win: with ``I_j`` in ``[lo_j, hi_j]`` over the
completions,

    slack_c'(F) = B + sum_{e > 0} e [hi_j >= a] + sum_{e < 0} e [lo_j >= a] - need,

and ``slack_c'(F) < 0`` for every rival proves that freeing ``F`` keeps the prediction.
:func:`influence_order` builds the order greedily: starting from "every feature fixed", it frees
next the feature that leaves the largest slack over the rivals smallest (ties: the smaller sum of
the rivals' slacks, then the lower index). As long as the greedy free set keeps every slack
negative, deletion in this order answers each of its questions by the bound; after that, the
features it meets first are those that move the rivals' bounds least.

Any order gives an AXp (a subset-minimal sufficient set); this one is a heuristic for *speed*
and the AXp it yields is the one deletion finds in this order (the same for every exact
oracle), not the index-order one.
"""

from __future__ import annotations

import numpy as np

from xsnn.encoders.rivals import neuron_ladders, rival_terms
from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes, forward

from .rivalsat import rival_sat_applies
from .rivalstate import RivalBounds

__all__ = ["influence_order"]


def influence_order(
    model: BSNN, instance: np.ndarray, features: FeatureSet | None = None, target: int | None = None
) -> np.ndarray:
    """One score per feature for the ``order`` of the AXp algorithms (lowest tried first): the
    position of the feature in the greedy least-influence order (module docstring).

    Raises ``ValueError`` where the network has several spiking layers or a coding other than
    the static one.
    """
    spikes = check_spikes(model, instance)[0]
    if not rival_sat_applies(model, spikes):
        raise ValueError("the influence order needs one spiking layer and the static coding")
    features = features if features is not None else FeatureSet.pixels(model.n_inputs, model.input_shape)
    target = int(forward(model, spikes).prediction[0]) if target is None else int(target)
    w = model.weights[0].astype(np.int64)
    ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))
    rivals = []
    for rival in range(model.n_classes):
        if rival != target:
            base, terms = rival_terms(model, ladders, target, rival)
            rivals.append((base, 1 if rival > target else 0, terms))
    n = len(features)
    scores = np.arange(n, dtype=np.float64)
    if not rivals or not any(terms for _, _, terms in rivals):
        return scores  # nothing can move any rival: the index order
    bound = RivalBounds(w, np.asarray(spikes[0], bool), features, rivals)
    fixed = np.ones(n, bool)
    bound.reset(fixed)
    row, breaks, gains = bound.term_row, bound.term_a, bound._gains
    for position in range(n):
        candidates = np.flatnonzero(fixed)
        after = bound.bounds[None, :] - bound.feature_columns[candidates]  # (lo, hi) with one more freed
        slack = bound.slack_base[None, :] + (after[:, row] >= breaks[None, :]).astype(np.float64) @ gains.T
        best = np.lexsort((candidates, slack.sum(axis=1), slack.max(axis=1)))[0]
        chosen = int(candidates[best])
        scores[chosen] = position
        fixed[chosen] = False
        bound.toggle(chosen, False)
    return scores
