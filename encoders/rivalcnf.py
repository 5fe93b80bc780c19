"""The one-sided rival terms (:mod:`xsnn.encoders.rivals`) as CNF with native AtMost constraints.

Setting: one spiking layer and the static coding (one Boolean per pixel). Every rival's formula
is over the same variables, with *every* pixel free (a question only changes assumptions):

- pixel ``i`` is the variable ``x_i = i + 1``; feature ``k`` has a selector ``s_k = n + 1 + k``
  with ``s_k -> (x_i = v_i)`` for each of its pixels (fixing ``S`` assumes ``s_k`` for ``k in S``);
  then come the ``y`` of the terms and the distance indicators;
- neuron ``j``'s input is ``I_j = C_j - n_j^-`` with ``C_j`` the number of true literals among
  ``x_i`` (``W_ji = +1``) and ``~x_i`` (``W_ji = -1``), ``n_j^-`` the number of the latter;
- a term ``(j, a, e)`` of ``D_c'``: ``e > 0``: ``y -> C_j >= a + n_j^-``;
  ``e < 0``: ``~y -> C_j <= a - 1 + n_j^-``;
- goal: ``B + sum e y >= need`` as one cardinality constraint over a multiset of ``y`` / ``~y``
  literals (a literal repeated ``|e|`` times);
- with a distance bound ``d``: "feature ``k`` differs" literals (the pixel's own literal for a
  one-pixel feature, else ``d_k`` with ``d_k >=`` each pixel's "differs") and
  ``sum_k differs_k <= d``.

Cardinality constraints are AtMost constraints as python-sat's Minicard / Gluecard take them
(a repeated literal counts as often as it occurs): ``guard -> sum(L) >= b`` is
``sum(~L) + b [guard] <= |L|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN

__all__ = ["RivalCNF", "RivalFormula"]


@dataclass(frozen=True)
class RivalFormula:
    """One rival's formula: ``clauses`` and AtMost constraints ``(literals, bound)``."""

    clauses: list[list[int]]
    atmosts: list[tuple[list[int], int]]


class RivalCNF:
    """The variables and shared clauses of every rival's formula (module docstring).

    Args:
        model: a network with one spiking layer (static coding).
        instance: the instance's spikes ``(T, n)``; its first step gives the pixel values.
        features: the feature groups.
        max_distance: the distance bound, or ``None``.
    """

    def __init__(self, model: BSNN, instance: np.ndarray, features: FeatureSet, max_distance: int | None) -> None:
        n = model.n_inputs
        w = model.weights[0].astype(np.int64)
        value = np.asarray(instance[0], dtype=bool)
        x = np.arange(1, n + 1, dtype=np.int64)
        selectors = np.arange(n + 1, n + 1 + len(features), dtype=np.int64)
        self.n_pixels, self.n_features = n, len(features)
        self.max_distance = max_distance
        self.fixing = [
            [-int(selectors[k]), int(x[i]) if value[i] else -int(x[i])]
            for k, group in enumerate(features.groups)
            for i in group
        ]
        # per neuron: the literals L_j (x_i where W_ji = +1, ~x_i where W_ji = -1) and n_j^-
        self.literals = [np.concatenate([x[w[j] > 0], -x[w[j] < 0]]).tolist() for j in range(len(w))]
        self.n_neg = (w < 0).sum(axis=1).tolist()
        self.differs = [[-int(x[i]) if value[i] else int(x[i]) for i in group] for group in features.groups]

    def selector(self, feature: int) -> int:
        """The selector variable of ``feature`` (assumed true to fix it)."""
        return self.n_pixels + 1 + feature

    def formula(self, base: int, need: int, terms: list[tuple[int, int, int]]) -> RivalFormula:
        """The formula of one rival with terms ``(j, a, e)``: satisfiable under the selectors of a
        fixed set iff the rival can reach ``B + sum e [I_j >= a] >= need`` (module docstring)."""
        literals, n_neg = self.literals, self.n_neg
        top = self.n_pixels + self.n_features
        clauses, atmosts, goal = list(self.fixing), [], []

        def at_least(lits: list[int], bound: int, guard: int | None) -> None:
            """``guard -> sum(lits) >= bound`` as ``sum(~lits) + bound * [guard] <= |lits|``."""
            if bound <= 0:
                return
            if bound > len(lits):
                clauses.append([] if guard is None else [-guard])
            elif guard is None:
                atmosts.append(([-l for l in lits], len(lits) - bound))
            else:
                atmosts.append(([-l for l in lits] + [guard] * bound, len(lits)))

        for j, a, e in terms:
            top += 1
            y = top
            if e > 0:  # y -> C_j >= a + n^-
                at_least(literals[j], a + n_neg[j], y)
                goal.extend([y] * e)
            else:  # ~y -> C_j <= a - 1 + n^-: the complements count >= |L_j| - (a - 1 + n^-)
                at_least([-l for l in literals[j]], len(literals[j]) - (a - 1 + n_neg[j]), -y)
                goal.extend([-y] * -e)
        # B + sum e y >= need  <=>  sum_{e>0} e y + sum_{e<0} |e| ~y >= need - B + sum_{e<0} |e|
        at_least(goal, need - base + sum(-e for _, _, e in terms if e < 0), None)
        if self.max_distance is not None:
            indicators = []
            for lits in self.differs:
                if len(lits) == 1:
                    indicators.append(lits[0])
                else:  # d_k >= each pixel's "differs"
                    top += 1
                    clauses.extend([-l, top] for l in lits)
                    indicators.append(top)
            if self.max_distance < len(indicators):
                atmosts.append((indicators, int(self.max_distance)))
        return RivalFormula(clauses, atmosts)
