"""The question every explanation answers: network, instance, features, target class, distance bound.

One object, validated once (:meth:`Question.build`), from which the oracles, the bound
propagation, the searches and the encoders take their question, and which a certificate records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes, forward

__all__ = ["Question"]


@dataclass(frozen=True, eq=False)
class Question:
    """What an explanation is about: the network, the instance, the features, the target, ``k``.

    :meth:`build` validates the five parts once; every oracle, bound propagator, search and
    encoder takes its question from it (the certificate records it with :meth:`as_dict`).
    """

    model: BSNN
    instance: np.ndarray
    features: FeatureSet
    target: int
    max_distance: int | None

    @classmethod
    def build(
        cls,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
    ) -> Question:
        """The validated question: ``instance`` becomes uint8 ``(T, n)`` (:func:`~xsnn.model.check_spikes`),
        ``features`` defaults to one feature per pixel, ``target`` to the model's prediction of the
        instance; a wrong part raises ``ValueError`` naming what was given and what was expected."""
        spikes = check_spikes(model, instance)
        if len(spikes) != 1:
            raise ValueError(
                f"a question is about one instance of shape {(model.n_steps, model.n_inputs)}, "
                f"got {len(spikes)} instances"
            )
        instance = spikes[0]
        features = features if features is not None else FeatureSet.pixels(model.n_inputs, model.input_shape)
        if features.n_inputs != model.n_inputs:
            raise ValueError(f"feature set covers {features.n_inputs} inputs, the model has {model.n_inputs}")
        if target is None:
            target = int(forward(model, instance).prediction[0])
        elif isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise ValueError(f"target class index must be an integer, got {target!r}")
        if not 0 <= int(target) < model.n_classes:
            raise ValueError(f"target class index {int(target)} outside 0..{model.n_classes - 1}")
        if max_distance is not None:
            if isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)):
                raise ValueError(f"max_distance must be a whole number >= 0 or None, got {max_distance!r}")
            if max_distance < 0:
                raise ValueError(f"max_distance must be >= 0, got {max_distance}")
            max_distance = int(max_distance)
        return cls(model, instance, features, int(target), max_distance)

    @classmethod
    def from_oracle(cls, oracle) -> Question:
        """The question an oracle (anything with the five attributes) answers, its instance a read-only copy."""
        instance = np.array(oracle.instance, dtype=np.uint8, copy=True)
        instance.setflags(write=False)
        return cls(oracle.model, instance, oracle.features, oracle.target, oracle.max_distance)

    def as_dict(self) -> dict:
        out = {
            "model_hash": self.model.content_hash(),
            "instance": self.instance.tolist(),
            "n_features": len(self.features),
            "target": self.target,
            "max_distance": self.max_distance,
        }
        if self.features != FeatureSet.pixels(self.model.n_inputs, self.model.input_shape):
            out["feature_groups"] = [list(g) for g in self.features.groups]
            out["feature_names"] = list(self.features.names)
        return out

    @classmethod
    def from_dict(cls, d: Mapping, model: BSNN) -> Question:
        """Inverse of :meth:`as_dict`; ``model`` must be the network the dict names by its hash."""
        if d["model_hash"] != model.content_hash():
            raise ValueError(
                f"the certificate is about the model with hash {d['model_hash'][:12]}..., "
                f"not this one ({model.content_hash()[:12]}...)"
            )
        if "feature_groups" in d:
            features = FeatureSet(
                tuple(tuple(int(i) for i in g) for g in d["feature_groups"]),
                tuple(str(n) for n in d["feature_names"]),
                model.n_inputs,
            )
        else:
            features = FeatureSet.pixels(model.n_inputs, model.input_shape)
        if len(features) != d["n_features"]:
            raise ValueError(f"the certificate names {d['n_features']} features, its groups give {len(features)}")
        instance = np.array(d["instance"], dtype=np.uint8)
        if instance.shape != (model.n_steps, model.n_inputs):
            raise ValueError(
                f"the certificate's instance has shape {instance.shape}, expected {(model.n_steps, model.n_inputs)}"
            )
        instance.setflags(write=False)
        return cls(
            model, instance, features, int(d["target"]), None if d["max_distance"] is None else int(d["max_distance"])
        )

    def witness_as_dict(self, witness: np.ndarray) -> list[list[int]]:
        """The ``[t, i]`` positions where ``witness`` differs from the instance."""
        return np.argwhere(np.asarray(witness) != self.instance).tolist()

    def witness_from_dict(self, changes: list) -> np.ndarray:
        """Inverse of :meth:`witness_as_dict`: the instance with the listed positions flipped."""
        witness = np.array(self.instance, dtype=np.uint8, copy=True)
        if len(changes):
            t, i = np.asarray(changes, dtype=np.int64).T
            witness[t, i] ^= 1
        return witness
