"""Input codings: how an image becomes input spike trains, and what a free feature may be.

An image is a vector of ``n`` pixel intensities ``p_i`` in ``0..255``. A coding
maps it to spike trains ``x[i, t] in {0, 1}`` for ``t < T`` and states the
*free domain* of a pixel: the set of spike trains a solver may give a pixel
whose feature is not fixed.

- ``static``:  ``x[i, t] = [p_i >= tau]`` for every ``t``.
  Free domain: the all-zeros train and the all-ones train.
- ``latency``: at most one spike per pixel, earlier for brighter pixels.
  A pixel with ``p_i >= tau`` spikes once, at
  ``t_i = floor((255 - p_i) * T / (256 - tau))`` (so ``0 <= t_i < T``);
  a pixel below ``tau`` never spikes.
  Free domain: every train with at most one spike (``T + 1`` trains).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["StaticCoding", "LatencyCoding", "Coding", "coding_from_spec", "as_pixel_matrix"]


def as_pixel_matrix(images: np.ndarray, n_inputs: int | None = None) -> np.ndarray:
    """Return ``images`` as a ``(n, n_pixels)`` uint8 matrix, checking values and shape.

    Accepts one image ``(28, 28)`` or ``(784,)`` too (it becomes ``n = 1``).
    """
    arr = np.asarray(images)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"images must be integer pixel intensities 0..255, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("images must hold pixel intensities in 0..255")
    if n_inputs is not None and arr.ndim >= 1 and int(np.prod(arr.shape)) == n_inputs:
        return arr.reshape(1, n_inputs).astype(np.uint8)
    if arr.ndim < 2:
        raise ValueError(f"images must have shape (n, ...pixels), got {arr.shape}")
    flat = arr.reshape(arr.shape[0], -1)
    if n_inputs is not None and flat.shape[1] != n_inputs:
        raise ValueError(f"images have {flat.shape[1]} pixels each (shape {arr.shape}), the model expects {n_inputs}")
    return flat.astype(np.uint8)


def _check_threshold(threshold: int) -> None:
    if not isinstance(threshold, (int, np.integer)) or not 1 <= int(threshold) <= 255:
        raise ValueError(f"coding threshold tau must be an integer in 1..255, got {threshold!r}")


@dataclass(frozen=True)
class StaticCoding:
    """``x[i, t] = [p_i >= threshold]`` at every step; a free pixel is all-0 or all-1."""

    threshold: int = 128
    name: ClassVar[str] = "static"

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def encode(self, images: np.ndarray, n_steps: int) -> np.ndarray:
        """Spike trains ``(n, T, n_pixels)`` uint8 of images ``(n, ...)`` with values 0..255."""
        pixels = as_pixel_matrix(images)
        on = (pixels >= self.threshold).astype(np.uint8)
        return np.repeat(on[:, None, :], n_steps, axis=1)

    def free_trains(self, n_steps: int) -> np.ndarray:
        """Every spike train a free pixel may take, as rows of a ``(k, T)`` uint8 array."""
        return np.array([[0] * n_steps, [1] * n_steps], dtype=np.uint8)

    def spec(self) -> dict:
        return {"name": self.name, "threshold": int(self.threshold)}


@dataclass(frozen=True)
class LatencyCoding:
    """One spike at ``floor((255 - p) T / (256 - tau))`` if ``p >= tau``; free: at most one spike."""

    threshold: int = 128
    name: ClassVar[str] = "latency"

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def spike_times(self, images: np.ndarray, n_steps: int) -> np.ndarray:
        """Spike step of each pixel ``(n, n_pixels)`` int64, ``-1`` where it never spikes."""
        pixels = as_pixel_matrix(images).astype(np.int64)
        times = (255 - pixels) * n_steps // (256 - self.threshold)
        return np.where(pixels >= self.threshold, times, -1)

    def encode(self, images: np.ndarray, n_steps: int) -> np.ndarray:
        times = self.spike_times(images, n_steps)
        steps = np.arange(n_steps)[None, :, None]
        return (times[:, None, :] == steps).astype(np.uint8)

    def free_trains(self, n_steps: int) -> np.ndarray:
        """The silent train and the ``T`` single-spike trains: ``(T + 1, T)`` uint8."""
        return np.vstack([np.zeros((1, n_steps), np.uint8), np.eye(n_steps, dtype=np.uint8)])

    def spec(self) -> dict:
        return {"name": self.name, "threshold": int(self.threshold)}


Coding = StaticCoding | LatencyCoding
_CODINGS = {"static": StaticCoding, "latency": LatencyCoding}


def coding_from_spec(spec: dict | str) -> Coding:
    """Build a coding from ``{"name": ..., "threshold": ...}`` or a bare name."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a coding spec needs a 'name', got {spec!r}")
    name = spec["name"]
    if name not in _CODINGS:
        raise ValueError(f"unknown coding {name!r}; known codings: {', '.join(sorted(_CODINGS))}")
    unknown = set(spec) - {"name", "threshold"}
    if unknown:
        raise ValueError(f"unknown option(s) for coding {name!r}: {', '.join(sorted(unknown))}")
    return _CODINGS[name](**{k: int(v) for k, v in spec.items() if k != "name"})
