"""Pieces shared by the CNF and SMT encoders: argument checks, free domains, drive tables."""

from __future__ import annotations

import numpy as np

from xsnn.causal import CausalModel, NeuronDynamics
from xsnn.features import FeatureSet
from xsnn.model import BSNN
from xsnn.question import Question

__all__ = ["GOALS", "domain_kind", "prepare_query", "drive_table"]

GOALS = ("differs", "equals")


def domain_kind(trains: np.ndarray) -> str:
    """How a free pixel's domain is encoded: ``shared`` (all-0 / all-1: one Boolean for every
    step), ``at_most_one`` (silent or one spike), or ``choice`` (one-hot over the trains)."""
    n_steps = trains.shape[1]
    rows = {tuple(r) for r in np.asarray(trains).tolist()}
    if rows == {(0,) * n_steps, (1,) * n_steps}:
        return "shared"
    if rows == {(0,) * n_steps} | {tuple(int(t == s) for t in range(n_steps)) for s in range(n_steps)}:
        return "at_most_one"
    return "choice"


def prepare_query(
    causal: CausalModel | BSNN,
    instance: np.ndarray,
    target: int,
    goal: str,
    features: FeatureSet | None,
    max_distance: int | None,
) -> tuple[CausalModel, np.ndarray, FeatureSet]:
    """Validate an encoder's arguments; returns (causal model, instance (T, n) uint8, feature set)."""
    if isinstance(causal, BSNN):
        causal = CausalModel(causal)
    if not isinstance(causal, CausalModel):
        raise ValueError(f"an encoder needs a CausalModel or BSNN, got {type(causal).__name__}")
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
    model = causal.model
    if target is None:
        raise ValueError(f"an encoder needs the target class index (0..{model.n_classes - 1}), got None")
    question = Question.build(model, instance, features, target, max_distance)
    instance, features = question.instance, question.features
    rows = {tuple(r) for r in causal.coding.free_trains(causal.n_steps).tolist()}
    for i in np.flatnonzero(features.pixel_mask(range(len(features)))):
        if tuple(instance[:, i].tolist()) not in rows:
            raise ValueError(
                f"the instance gives pixel {i} the train {instance[:, i].tolist()}, which is not in the "
                f"{causal.coding.name} coding's free domain; encode images with the model's coding"
            )
    return causal, instance, features


def drive_table(dyn: NeuronDynamics, n_literals: int, offset: int, n_steps: int) -> tuple[list[int], np.ndarray]:
    """Tabulate a neuron whose input current is ``u = C + offset`` at every step, ``C in 0..n``.

    Returns ``(breaks, values)``: ``breaks`` are the counts ``C`` at which the spike train
    changes (sorted, in ``1..n``), and ``values[k]`` is the train ``(T,)`` for every ``C``
    in bucket ``k`` (``[0, breaks[0])``, ``[breaks[0], breaks[1])``, ..., ``[breaks[-1], n]``).
    The table comes from the neuron's structural equations (:meth:`NeuronDynamics.run`).
    """
    drive = (np.arange(n_literals + 1, dtype=np.int64) + offset)[:, None].repeat(n_steps, axis=1)
    table, _ = dyn.run(drive)
    breaks = (np.flatnonzero(np.any(table[1:] != table[:-1], axis=1)) + 1).tolist()
    return breaks, table[[0] + breaks]
