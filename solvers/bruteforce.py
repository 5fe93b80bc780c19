"""Exhaustive entailment oracle: the ground truth for tests on tiny networks.

Enumerates every completion of the free features (each free pixel ranges over the
coding's free trains), runs them through the reference forward in batches, and
answers exactly. Exponential: refuses more than ``max_completions`` completions.
"""

from __future__ import annotations

import itertools

import numpy as np

from xsnn.model import forward

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["BruteForceOracle"]


class BruteForceOracle(EntailmentOracle):
    name = "bruteforce"
    max_completions = 1 << 16

    def completions(self, fixed: frozenset[int]) -> np.ndarray:
        """All inputs ``(m, T, n)`` agreeing with the instance on ``fixed`` (and within the distance bound)."""
        trains = self.model.coding.free_trains(self.model.n_steps)
        free_pixels = np.flatnonzero(~self.features.pixel_mask(sorted(fixed)))
        count = len(trains) ** len(free_pixels)
        if count > self.max_completions:
            raise ValueError(f"{count} completions is too many for brute force ({len(free_pixels)} free pixels)")
        choices = np.array(list(itertools.product(range(len(trains)), repeat=len(free_pixels))), dtype=np.int64)
        xs = np.repeat(self.instance[None], len(choices), axis=0)
        if len(free_pixels):
            xs[:, :, free_pixels] = trains[choices].transpose(0, 2, 1)
        if self.max_distance is not None:
            pixel_differs = np.any(xs != self.instance[None], axis=1)  # (m, n_inputs)
            changed = np.zeros(len(xs), dtype=np.int64)
            for group in self.features.groups:  # features changed per completion
                changed += pixel_differs[:, list(group)].any(axis=1)
            xs = xs[changed <= self.max_distance]
        return xs

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        xs = self.completions(fixed)
        flips = np.flatnonzero(forward(self.model, xs).prediction != self.target)
        if len(flips):
            return Check(Verdict.NOT_ENTAILED, fixed, witness=xs[flips[0]], path=self.name)
        return Check(Verdict.ENTAILED, fixed, core=fixed, path=self.name)
