"""Features: named groups of input pixels that an explanation fixes or frees together.

Feature ``k`` is a set of pixel indices ``G_k``. Fixing it sets ``x[i, t]`` for
all ``i in G_k`` and all ``t`` to the instance's values; freeing it lets each
pixel of ``G_k`` take any spike train of the coding's free domain.
The default is one feature per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FeatureSet"]


@dataclass(frozen=True)
class FeatureSet:
    """``groups[k]`` holds the pixel indices of feature ``k``; ``names[k]`` its name."""

    groups: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]
    n_inputs: int

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.names):
            raise ValueError("need one name per feature group")
        seen: set[int] = set()
        for k, group in enumerate(self.groups):
            if not group:
                raise ValueError(f"feature {k} ({self.names[k]}) is empty")
            for i in group:
                if not 0 <= i < self.n_inputs:
                    raise ValueError(f"feature {self.names[k]} names pixel {i}, outside 0..{self.n_inputs - 1}")
                if i in seen:
                    raise ValueError(f"pixel {i} belongs to more than one feature")
                seen.add(i)
        owner = np.full(self.n_inputs, -1, dtype=np.int64)
        for k, group in enumerate(self.groups):
            owner[list(group)] = k
        owner.setflags(write=False)
        object.__setattr__(self, "_owner", owner)

    def __len__(self) -> int:
        return len(self.groups)

    @classmethod
    def pixels(cls, n_inputs: int, shape: Sequence[int] | None = None) -> FeatureSet:
        """One feature per pixel, named ``(row, col)`` for 2-D images, else ``x{i}``."""
        if shape is not None and len(shape) == 2:
            width = shape[1]
            names = tuple(f"({i // width},{i % width})" for i in range(n_inputs))
        else:
            names = tuple(f"x{i}" for i in range(n_inputs))
        return cls(tuple((i,) for i in range(n_inputs)), names, n_inputs)

    @classmethod
    def patches(cls, shape: Sequence[int], size: int) -> FeatureSet:
        """Square ``size x size`` patches of a 2-D image (edge patches may be smaller)."""
        rows, cols = shape
        if size < 1:
            raise ValueError(f"patch size must be >= 1, got {size}")
        groups, names = [], []
        for r0 in range(0, rows, size):
            for c0 in range(0, cols, size):
                groups.append(
                    tuple(
                        r * cols + c for r in range(r0, min(r0 + size, rows)) for c in range(c0, min(c0 + size, cols))
                    )
                )
                names.append(f"patch({r0},{c0})")
        return cls(tuple(groups), tuple(names), rows * cols)

    def pixel_mask(self, features: Sequence[int]) -> np.ndarray:
        """Boolean ``(n_inputs,)`` mask of the pixels covered by ``features``."""
        chosen = np.zeros(len(self.groups) + 1, dtype=bool)  # last slot: pixels of no feature
        chosen[np.asarray(list(features), dtype=np.int64)] = True
        return chosen[self._owner]

    def feature_of_pixel(self) -> np.ndarray:
        """``(n_inputs,)`` int array: the feature of each pixel, ``-1`` if none."""
        return self._owner.copy()
