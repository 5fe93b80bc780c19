"""A BSNN as a binary structural causal model, with interventions and counterfactuals.

Variables (small frozen dataclasses, hashable and ordered):

- exogenous ``Input(pixel, step)``: the input spike ``x[i, t]``;
- endogenous ``Spike(layer, neuron, step)``: ``s^l_j(t)``;
- endogenous ``Score(cls)``: ``score_c``;
- endogenous ``Prediction()``: the predicted class index.

Structural equations (the contract's integrate-and-fire neuron with reset)::

    s^l_j(t) = [ V^l_j(t) >= theta_j ]
    V^l_j(t) = R(V^l_j(t-1), s^l_j(t-1)) + sum_i W_ji s^{l-1}_i(t),   V^l_j(-1) = 0
    score_c  = sum_t sum_j W^out_cj s^L_j(t)
    prediction = argmax_c score_c   (ties to the lowest index)

The potential ``V`` is not a variable: it is a latent quantity computed inside the
equation of ``s^l_j(t)`` from its parents, which are the previous layer's spikes
at steps ``<= t`` (through non-zero weights) and the neuron's own spikes at steps
``< t`` (through the reset). An intervention ``do(v = c)`` replaces the equation of
``v`` by the constant ``c``; the equations of its children read the constant, so
for instance forcing ``s^l_j(t) = 1`` also resets the neuron at ``t + 1``.

``Pixel(i)`` (every ``Input(i, t)``) and ``Neuron(l, j)`` (every ``Spike(l, j, t)``)
are shorthands accepted by :meth:`CausalModel.do`.

The forward pass (:meth:`CausalModel.evaluate`), the CNF encoder and the SMT
encoders all read the same :class:`CausalModel`, its equations and its interventions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from xsnn.model import BSNN, check_spikes, integrate_and_fire

__all__ = [
    "Input",
    "Spike",
    "Score",
    "Prediction",
    "Pixel",
    "Neuron",
    "Variable",
    "CausalModel",
    "CausalValues",
    "BatchValues",
    "Counterfactual",
    "Equation",
    "ConstantEquation",
    "SpikeEquation",
    "ScoreEquation",
    "PredictionEquation",
    "NeuronDynamics",
]


# --------------------------------------------------------------------------- variables


@dataclass(frozen=True, order=True)
class Input:
    """Exogenous input spike ``x[pixel, step]``."""

    pixel: int
    step: int


@dataclass(frozen=True, order=True)
class Spike:
    """Endogenous spike ``s^layer_neuron(step)`` (layer 0 is the first spiking layer)."""

    layer: int
    neuron: int
    step: int


@dataclass(frozen=True, order=True)
class Score:
    """Endogenous readout score of class index ``cls``."""

    cls: int


@dataclass(frozen=True, order=True)
class Prediction:
    """Endogenous predicted class index."""


@dataclass(frozen=True, order=True)
class Pixel:
    """Shorthand for the whole input train of a pixel: every ``Input(pixel, t)``."""

    pixel: int


@dataclass(frozen=True, order=True)
class Neuron:
    """Shorthand for every spike of a neuron: every ``Spike(layer, neuron, t)``."""

    layer: int
    neuron: int


Variable = Input | Spike | Score | Prediction
InterventionKey = Input | Spike | Score | Prediction | Pixel | Neuron


# --------------------------------------------------------------------------- neuron dynamics


@dataclass(frozen=True, eq=False)
class NeuronDynamics:
    """All structural equations of one neuron (every step), as one object.

    ``weights`` are the neuron's incoming weights ``W_j`` (over the previous layer),
    ``fixed[t]`` the intervened value of ``s_j(t)`` or ``None``. :meth:`run` maps
    input currents to spikes; the encoders use it to tabulate a neuron whose
    input current is the same integer at every step.
    """

    layer: int
    neuron: int
    weights: np.ndarray
    threshold: int
    reset: str
    fixed: tuple[int | None, ...]

    def run(self, drive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input currents ``(m, T)`` -> spikes ``(m, T)`` uint8 and potentials ``(m, T)`` int64."""
        drive = np.asarray(drive, dtype=np.int64)
        mask = np.array([[f is not None] for f in self.fixed], dtype=bool)
        values = np.array([[0 if f is None else f] for f in self.fixed], dtype=np.uint8)
        spikes, potentials = integrate_and_fire(drive[:, :, None], np.array([self.threshold]), self.reset, mask, values)
        return spikes[:, :, 0], potentials[:, :, 0]


# --------------------------------------------------------------------------- equations


class Equation:
    """The structural equation of one endogenous variable: ``variable = f(parents)``."""

    variable: Variable
    parents: tuple[Variable, ...]

    def __call__(self, values: Mapping[Variable, int]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantEquation(Equation):
    """``variable = value`` (an intervention); no parents."""

    variable: Variable
    value: int

    @property
    def parents(self) -> tuple[Variable, ...]:
        return ()

    def __call__(self, values: Mapping[Variable, int]) -> int:
        return int(self.value)


@dataclass(frozen=True)
class SpikeEquation(Equation):
    """``s_j(t) = [V_j(t) >= theta]`` with ``V_j`` recomputed from the parents' values.

    ``inputs[t']`` lists ``(parent, weight)`` for the previous layer at step ``t'``
    (non-zero weights only); ``own[t']`` is the neuron's own spike at ``t' < t``.
    """

    variable: Spike
    inputs: tuple[tuple[tuple[Variable, int], ...], ...]
    own: tuple[Spike, ...]
    threshold: int
    reset: str

    @property
    def parents(self) -> tuple[Variable, ...]:
        return tuple(p for step in self.inputs for p, _ in step) + self.own

    def __call__(self, values: Mapping[Variable, int]) -> int:
        # the neuron's own earlier spikes are parents: they enter as intervened values
        n = len(self.inputs)
        drive = np.array([[sum(w * int(values[p]) for p, w in step)] for step in self.inputs], np.int64)
        mask = (np.arange(n) < n - 1)[:, None]
        own = np.array([[int(values[self.own[t]]) if t < n - 1 else 0] for t in range(n)], np.int64)
        spikes, _ = integrate_and_fire(drive, np.array([self.threshold]), self.reset, mask, own)
        return int(spikes[-1, 0])


@dataclass(frozen=True)
class ScoreEquation(Equation):
    """``score_c = sum (weight * spike)`` over ``terms``."""

    variable: Score
    terms: tuple[tuple[Spike, int], ...]

    @property
    def parents(self) -> tuple[Variable, ...]:
        return tuple(s for s, _ in self.terms)

    def __call__(self, values: Mapping[Variable, int]) -> int:
        return int(sum(w * int(values[s]) for s, w in self.terms))


@dataclass(frozen=True)
class PredictionEquation(Equation):
    """``prediction = argmax_c score_c``, ties to the lowest class index."""

    variable: Prediction
    n_classes: int

    @property
    def parents(self) -> tuple[Variable, ...]:
        return tuple(Score(c) for c in range(self.n_classes))

    def __call__(self, values: Mapping[Variable, int]) -> int:
        return int(np.argmax([int(values[Score(c)]) for c in range(self.n_classes)]))


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class CausalValues:
    """The value of every variable for one input.

    Attributes:
        inputs: ``(T, n_inputs)`` uint8 input spikes as the network sees them (interventions applied).
        layer_spikes: per layer ``(T, n_l)`` uint8 spikes.
        potentials: per layer ``(T, n_l)`` int64 potentials before reset (latent, not variables).
        scores: ``(n_classes,)`` int64.
        prediction: class index.
    """

    inputs: np.ndarray
    layer_spikes: tuple[np.ndarray, ...]
    potentials: tuple[np.ndarray, ...]
    scores: np.ndarray
    prediction: int

    def __getitem__(self, variable: Variable) -> int:
        """The value of one variable."""
        if isinstance(variable, Input):
            return int(self.inputs[variable.step, variable.pixel])
        if isinstance(variable, Spike):
            return int(self.layer_spikes[variable.layer][variable.step, variable.neuron])
        if isinstance(variable, Score):
            return int(self.scores[variable.cls])
        if isinstance(variable, Prediction):
            return int(self.prediction)
        raise TypeError(f"not a causal variable: {variable!r}")


@dataclass(frozen=True)
class BatchValues:
    """:class:`CausalValues` for ``m`` inputs at once (every array has a leading axis ``m``)."""

    inputs: np.ndarray
    layer_spikes: tuple[np.ndarray, ...]
    potentials: tuple[np.ndarray, ...]
    scores: np.ndarray
    prediction: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index: int) -> CausalValues:
        return CausalValues(
            self.inputs[index],
            tuple(s[index] for s in self.layer_spikes),
            tuple(v[index] for v in self.potentials),
            self.scores[index],
            int(self.prediction[index]),
        )


@dataclass(frozen=True)
class Counterfactual:
    """The factual world and the world under an intervention, for one input."""

    factual: CausalValues
    counterfactual: CausalValues

    @property
    def changed(self) -> bool:
        """Whether the prediction differs between the two worlds."""
        return self.factual.prediction != self.counterfactual.prediction


# --------------------------------------------------------------------------- the model


class CausalModel:
    """The structural causal model of a :class:`~xsnn.model.BSNN`, possibly intervened.

    Immutable: :meth:`do` returns a new model. ``interventions`` maps atomic variables
    (``Input``, ``Spike``, ``Score``, ``Prediction``) to constants.
    """

    __slots__ = (
        "_model",
        "_interventions",
        "_input_mask",
        "_input_values",
        "_spike_mask",
        "_spike_values",
        "_score_mask",
        "_score_values",
        "_prediction_value",
    )

    def __init__(self, model: BSNN, interventions: Mapping[InterventionKey, object] | None = None) -> None:
        if not isinstance(model, BSNN):
            raise ValueError(f"a CausalModel is built from a BSNN, got {type(model).__name__}")
        set_ = object.__setattr__
        set_(self, "_model", model)
        atomic = _expand_interventions(model, interventions or {})
        set_(self, "_interventions", MappingProxyType(atomic))
        n_steps, n_inputs = model.n_steps, model.n_inputs
        input_mask = np.zeros((n_steps, n_inputs), bool)
        input_values = np.zeros((n_steps, n_inputs), np.uint8)
        spike_mask = [np.zeros((n_steps, n), bool) for n in model.layer_sizes]
        spike_values = [np.zeros((n_steps, n), np.uint8) for n in model.layer_sizes]
        score_mask = np.zeros(model.n_classes, bool)
        score_values = np.zeros(model.n_classes, np.int64)
        prediction_value = None
        for var, value in atomic.items():
            if isinstance(var, Input):
                input_mask[var.step, var.pixel], input_values[var.step, var.pixel] = True, value
            elif isinstance(var, Spike):
                spike_mask[var.layer][var.step, var.neuron] = True
                spike_values[var.layer][var.step, var.neuron] = value
            elif isinstance(var, Score):
                score_mask[var.cls], score_values[var.cls] = True, value
            else:
                prediction_value = int(value)
        for array in (input_mask, input_values, score_mask, score_values, *spike_mask, *spike_values):
            array.setflags(write=False)
        set_(self, "_input_mask", input_mask)
        set_(self, "_input_values", input_values)
        set_(self, "_spike_mask", tuple(spike_mask))
        set_(self, "_spike_values", tuple(spike_values))
        set_(self, "_score_mask", score_mask)
        set_(self, "_score_values", score_values)
        set_(self, "_prediction_value", prediction_value)

    def __setattr__(self, name, value):  # immutability
        raise AttributeError("CausalModel is immutable; use do(...) to get an intervened model")

    def __repr__(self) -> str:
        return f"CausalModel({self._model.describe()}, {len(self._interventions)} intervention(s))"

    # ------------------------------------------------------------------ structure

    @property
    def model(self) -> BSNN:
        """The underlying network (weights, thresholds, readout, coding)."""
        return self._model

    @property
    def interventions(self) -> Mapping[Variable, int]:
        """Atomic interventions ``{variable: constant}`` (read-only)."""
        return self._interventions

    @property
    def n_steps(self) -> int:
        return self._model.n_steps

    @property
    def n_inputs(self) -> int:
        return self._model.n_inputs

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self._model.layer_sizes

    @property
    def n_layers(self) -> int:
        return len(self._model.weights)

    @property
    def n_classes(self) -> int:
        return self._model.n_classes

    @property
    def reset(self) -> str:
        return self._model.reset

    @property
    def coding(self):
        return self._model.coding

    def input_interventions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, values)``, both ``(T, n_inputs)``: which inputs are intervened, and to what."""
        return self._input_mask, self._input_values

    def spike_interventions(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, values)``, both ``(T, n_l)``, for the spikes of ``layer``."""
        return self._spike_mask[layer], self._spike_values[layer]

    def score_interventions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, values)``, both ``(n_classes,)``."""
        return self._score_mask, self._score_values

    def prediction_intervention(self) -> int | None:
        """The intervened prediction, or ``None`` when the argmax equation is in place."""
        return self._prediction_value

    def layer_weights(self, layer: int) -> np.ndarray:
        """``(n_l, n_{l-1})`` int8 weights of the equations of layer ``layer``."""
        return self._model.weights[layer]

    def layer_thresholds(self, layer: int) -> np.ndarray:
        return self._model.thresholds[layer]

    def readout(self) -> np.ndarray:
        """``(n_classes, n_L)`` int8 readout weights of the score equations."""
        return self._model.readout

    def neuron(self, layer: int, neuron: int) -> NeuronDynamics:
        """The equations of every spike of one neuron, with its interventions."""
        self._check_spike(Spike(layer, neuron, 0))
        mask, values = self._spike_mask[layer], self._spike_values[layer]
        fixed = tuple(int(values[t, neuron]) if mask[t, neuron] else None for t in range(self.n_steps))
        return NeuronDynamics(
            layer,
            neuron,
            self._model.weights[layer][neuron].astype(np.int64),
            int(self._model.thresholds[layer][neuron]),
            self.reset,
            fixed,
        )

    def variables(self) -> Iterator[Variable]:
        """Every variable: inputs, spikes (layer by layer), scores, the prediction."""
        for t in range(self.n_steps):
            for i in range(self.n_inputs):
                yield Input(i, t)
        for l, n in enumerate(self.layer_sizes):
            for t in range(self.n_steps):
                for j in range(n):
                    yield Spike(l, j, t)
        for c in range(self.n_classes):
            yield Score(c)
        yield Prediction()

    def is_exogenous(self, variable: Variable) -> bool:
        self._check_variable(variable)
        return isinstance(variable, Input)

    def equation(self, variable: Variable) -> Equation:
        """The structural equation of an endogenous (or intervened) variable."""
        self._check_variable(variable)
        if variable in self._interventions:
            return ConstantEquation(variable, self._interventions[variable])
        if isinstance(variable, Input):
            raise ValueError(f"{variable} is exogenous: it has no equation (intervene on it with do())")
        if isinstance(variable, Spike):
            l, j, t = variable.layer, variable.neuron, variable.step
            w = self._model.weights[l][j]
            nz = np.flatnonzero(w)
            parent = (lambda i, s: Input(int(i), s)) if l == 0 else (lambda i, s: Spike(l - 1, int(i), s))
            inputs = tuple(tuple((parent(i, s), int(w[i])) for i in nz) for s in range(t + 1))
            own = tuple(Spike(l, j, s) for s in range(t))
            return SpikeEquation(variable, inputs, own, int(self._model.thresholds[l][j]), self.reset)
        if isinstance(variable, Score):
            row = self._model.readout[variable.cls]
            last = self.n_layers - 1
            terms = tuple(
                (Spike(last, int(j), t), int(row[j])) for t in range(self.n_steps) for j in np.flatnonzero(row)
            )
            return ScoreEquation(variable, terms)
        return PredictionEquation(variable, self.n_classes)

    def parents(self, variable: Variable) -> frozenset[Variable]:
        """The parents of ``variable`` (empty for inputs and intervened variables)."""
        self._check_variable(variable)
        if isinstance(variable, Input) or variable in self._interventions:
            return frozenset()
        return frozenset(self.equation(variable).parents)

    def ancestors(self, variable: Variable) -> frozenset[Variable]:
        """Every variable with a directed path to ``variable`` (not ``variable`` itself).

        Computed layer by layer: the ancestors of a non-intervened ``s_j(t)`` are its own
        spikes before ``t`` and the ancestors of the previous layer's spikes at steps
        ``<= t`` through non-zero weights; an intervened variable has no parents.
        """
        self._check_variable(variable)
        n_steps, sizes = self.n_steps, self.layer_sizes
        # marked[l]: (T, n_l) spikes that are ancestors (or the query itself)
        marked = [np.zeros((n_steps, n), bool) for n in sizes]
        marked_inputs = np.zeros((n_steps, self.n_inputs), bool)
        result: set[Variable] = set()
        if isinstance(variable, Input):
            return frozenset()
        if isinstance(variable, Prediction):
            if variable in self._interventions:
                return frozenset()
            classes = [c for c in range(self.n_classes)]
            result.update(Score(c) for c in classes)
        elif isinstance(variable, Score):
            classes = [variable.cls]
        else:
            classes = []
        last = self.n_layers - 1
        for c in classes:
            if Score(c) in self._interventions:
                continue
            neurons = np.flatnonzero(self._model.readout[c])
            marked[last][:, neurons] = True
        if isinstance(variable, Spike):
            marked[variable.layer][variable.step, variable.neuron] = True
        top = variable.layer if isinstance(variable, Spike) else last
        for l in range(top, -1, -1):
            live = marked[l] & ~self._spike_mask[l]  # marked spikes whose equation is in place
            steps = np.arange(n_steps)[:, None]
            last_live = np.where(live.any(axis=0), np.max(np.where(live, steps, -1), axis=0), -1)  # (n_l,)
            marked[l] |= steps < last_live[None, :]  # own earlier spikes
            # previous layer: (i, t') with W_ji != 0 and t' <= last_live_j, for some j
            w_nz = self._model.weights[l] != 0  # (n_l, n_{l-1})
            reach = np.full(w_nz.shape[1], -1)
            for j in np.flatnonzero(last_live >= 0):
                reach = np.where(w_nz[j], np.maximum(reach, last_live[j]), reach)
            prev = steps <= reach[None, :]
            if l == 0:
                marked_inputs |= prev
            else:
                marked[l - 1] |= prev
        for l in range(self.n_layers):
            result.update(Spike(l, int(j), int(t)) for t, j in zip(*np.nonzero(marked[l])))
        result.update(Input(int(i), int(t)) for t, i in zip(*np.nonzero(marked_inputs)))
        result.discard(variable)
        return frozenset(result)

    # ------------------------------------------------------------------ interventions

    def do(self, interventions: Mapping[InterventionKey, object]) -> CausalModel:
        """A new model with ``interventions`` added (they override earlier ones on the same variable).

        Keys: ``Input``, ``Spike`` (value 0/1), ``Pixel``, ``Neuron`` (0/1 for every step, or a
        length-``T`` sequence of 0/1), ``Score`` (an integer), ``Prediction`` (a class index).
        """
        merged: dict = dict(self._interventions)
        merged.update(_expand_interventions(self._model, interventions))
        return CausalModel(self._model, merged)

    # ------------------------------------------------------------------ evaluation

    def evaluate_batch(self, inputs: np.ndarray, interventions: Mapping | None = None) -> BatchValues:
        """Every variable for ``m`` inputs ``(m, T, n_inputs)`` (input interventions override them)."""
        if interventions:
            return self.do(interventions).evaluate_batch(inputs)
        model = self._model
        x = check_spikes(model, inputs)
        x = np.where(self._input_mask[None], self._input_values[None], x).astype(np.uint8)
        layer_in = x
        spikes_out, potentials_out = [], []
        for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
            drive = np.einsum("mti,ji->mtj", layer_in.astype(np.int64), w.astype(np.int64))
            s, v = integrate_and_fire(drive, theta, model.reset, self._spike_mask[l], self._spike_values[l])
            spikes_out.append(s)
            potentials_out.append(v)
            layer_in = s
        scores = layer_in.astype(np.int64).sum(axis=1) @ model.readout.astype(np.int64).T
        scores = np.where(self._score_mask[None], self._score_values[None], scores)
        prediction = np.argmax(scores, axis=1).astype(np.int64)
        if self._prediction_value is not None:
            prediction[:] = self._prediction_value
        return BatchValues(x, tuple(spikes_out), tuple(potentials_out), scores, prediction)

    def evaluate(self, inputs: np.ndarray, interventions: Mapping | None = None) -> CausalValues:
        """Every variable for one input ``(T, n_inputs)``; equals ``xsnn.model.forward`` when not intervened."""
        x = np.asarray(inputs)
        if x.ndim != 2:
            raise ValueError(f"evaluate takes one input (T, n_inputs); got shape {x.shape} (use evaluate_batch)")
        return self.evaluate_batch(x[None], interventions)[0]

    def counterfactual(self, inputs: np.ndarray, interventions: Mapping[InterventionKey, object]) -> Counterfactual:
        """The values for ``inputs`` in this model and in ``self.do(interventions)``."""
        return Counterfactual(self.evaluate(inputs), self.do(interventions).evaluate(inputs))

    def would_change(self, inputs: np.ndarray, interventions: Mapping[InterventionKey, object]) -> bool:
        """Would the prediction for ``inputs`` change under ``interventions``?

        E.g. ``would_change(x, {Pixel(3): 0})`` ("if pixel 3 never spiked") or
        ``would_change(x, {Neuron(0, 7): 0})`` ("if hidden neuron 7 never fired").
        """
        return self.counterfactual(inputs, interventions).changed

    # ------------------------------------------------------------------ checks

    def _check_spike(self, var: Spike) -> None:
        if not 0 <= var.layer < self.n_layers:
            raise ValueError(f"{var}: layer outside 0..{self.n_layers - 1}")
        if not 0 <= var.neuron < self.layer_sizes[var.layer]:
            raise ValueError(f"{var}: neuron outside 0..{self.layer_sizes[var.layer] - 1}")
        if not 0 <= var.step < self.n_steps:
            raise ValueError(f"{var}: step outside 0..{self.n_steps - 1}")

    def _check_variable(self, var: object) -> None:
        _check_atomic(self._model, var)


def _check_atomic(model: BSNN, var: object) -> None:
    n_steps = model.n_steps
    if isinstance(var, Input):
        if not 0 <= var.pixel < model.n_inputs or not 0 <= var.step < n_steps:
            raise ValueError(f"{var}: pixel outside 0..{model.n_inputs - 1} or step outside 0..{n_steps - 1}")
    elif isinstance(var, Spike):
        sizes = model.layer_sizes
        if not 0 <= var.layer < len(sizes):
            raise ValueError(f"{var}: layer outside 0..{len(sizes) - 1}")
        if not 0 <= var.neuron < sizes[var.layer] or not 0 <= var.step < n_steps:
            raise ValueError(f"{var}: neuron outside 0..{sizes[var.layer] - 1} or step outside 0..{n_steps - 1}")
    elif isinstance(var, Score):
        if not 0 <= var.cls < model.n_classes:
            raise ValueError(f"{var}: class outside 0..{model.n_classes - 1}")
    elif not isinstance(var, Prediction):
        raise ValueError(f"not a causal variable: {var!r} (use Input, Spike, Score, Prediction)")


def _binary(var: object, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and int(value) in (0, 1)):
        return int(value)
    raise ValueError(f"intervention on {var} needs a 0/1 value, got {value!r}")


def _train(var: object, value: object, n_steps: int) -> list[int]:
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return [_binary(var, value)] * n_steps
    values = list(np.asarray(value).reshape(-1).tolist())
    if len(values) != n_steps:
        raise ValueError(f"intervention on {var} needs 0/1 or a train of length T={n_steps}, got {value!r}")
    return [_binary(var, v) for v in values]


def _expand_interventions(model: BSNN, interventions: Mapping[InterventionKey, object]) -> dict[Variable, int]:
    """Validate interventions and expand ``Pixel``/``Neuron`` shorthands into atomic variables."""
    if not isinstance(interventions, Mapping):
        raise ValueError(f"interventions must be a mapping {{variable: value}}, got {type(interventions).__name__}")
    atomic: dict[Variable, int] = {}
    for var, value in interventions.items():
        if isinstance(var, Pixel):
            if not 0 <= var.pixel < model.n_inputs:
                raise ValueError(f"{var}: pixel outside 0..{model.n_inputs - 1}")
            for t, v in enumerate(_train(var, value, model.n_steps)):
                atomic[Input(var.pixel, t)] = v
        elif isinstance(var, Neuron):
            _check_atomic(model, Spike(var.layer, var.neuron, 0))
            for t, v in enumerate(_train(var, value, model.n_steps)):
                atomic[Spike(var.layer, var.neuron, t)] = v
        else:
            _check_atomic(model, var)
            if isinstance(var, (Input, Spike)):
                atomic[var] = _binary(var, value)
            elif isinstance(var, Score):
                if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                    raise ValueError(f"intervention on {var} needs an integer, got {value!r}")
                atomic[var] = int(value)
            else:
                if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < model.n_classes:
                    raise ValueError(f"intervention on the prediction needs a class index in 0..{model.n_classes - 1}")
                atomic[var] = int(value)
    return atomic
