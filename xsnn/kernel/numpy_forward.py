"""The packed forward pass in numpy: AND + ``np.bitwise_count`` over uint64 words.

For a layer with sign masks ``P_j`` (``W_ji = +1``) and ``M_j`` (``W_ji = -1``)
and a packed input row ``x`` the current of neuron ``j`` is::

    binary:   I_j = 2 popcount(x & P_j) - popcount(x)       (W = 2 [W = +1] - 1)
    ternary:  I_j = popcount(x & P_j) - popcount(x & M_j)

followed by the integer integrate-and-fire loop of the contract (vectorised
over images and neurons). A current is recomputed only for the images whose
input row changed since the previous step, so a step-invariant (static) input
costs one popcount pass per layer.
"""

from __future__ import annotations

import numpy as np

from xsnn.kernel._layout import pack_bits
from xsnn.model import BSNN

__all__ = ["NumpyNetwork"]

_CHUNK_ELEMENTS = 1 << 22  # bound on the (images x neurons x words) temporaries


class NumpyNetwork:
    """Sign masks of one model, packed for :meth:`run`."""

    def __init__(self, model: BSNN) -> None:
        self.model = model
        self.ternary = model.weight_kind == "ternary"
        self.plus = tuple(pack_bits((w == 1).astype(np.uint8)) for w in model.weights)
        self.minus = tuple(pack_bits((w == -1).astype(np.uint8)) for w in model.weights)
        self.thresholds = model.thresholds
        self.readout = model.readout.astype(np.float64)  # exact: |scores| <= T n_last << 2**53

    def _currents(self, layer: int, x: np.ndarray) -> np.ndarray:
        """Currents ``(n, n_out)`` int64 of packed rows ``x`` ``(n, words)``."""
        plus, minus = self.plus[layer], self.minus[layer]
        n_out, words = plus.shape
        out = np.empty((x.shape[0], n_out), np.int64)
        step = max(1, _CHUNK_ELEMENTS // (n_out * words))
        for lo in range(0, x.shape[0], step):
            xs = x[lo : lo + step, None, :]
            pos = np.bitwise_count(xs & plus[None]).sum(axis=-1, dtype=np.int64)
            if self.ternary:
                neg = np.bitwise_count(xs & minus[None]).sum(axis=-1, dtype=np.int64)
            else:
                neg = np.bitwise_count(xs[:, 0, :]).sum(axis=-1, dtype=np.int64)[:, None] - pos
            out[lo : lo + step] = pos - neg
        return out

    def run(self, packed: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Packed inputs ``(n, T, words)`` -> (per-layer spikes ``(n, T, n_l)`` uint8, scores ``(n, C)`` int64)."""
        model = self.model
        n, T = packed.shape[0], model.n_steps
        x = packed
        all_spikes = []
        for layer, theta in enumerate(self.thresholds):
            n_out = theta.shape[0]
            v = np.zeros((n, n_out), np.int64)
            s = np.zeros((n, n_out), bool)
            spikes = np.zeros((n, T, n_out), np.uint8)
            current = self._currents(layer, x[:, 0])
            for t in range(T):
                if t:
                    changed = np.flatnonzero(np.any(x[:, t] != x[:, t - 1], axis=1))
                    if changed.size:
                        current[changed] = self._currents(layer, x[changed, t])
                    if model.reset == "zero":
                        v[s] = 0
                    else:
                        v -= theta * s
                v += current
                s = v >= theta
                spikes[:, t] = s
            all_spikes.append(spikes)
            x = pack_bits(spikes)
        counts = all_spikes[-1].sum(axis=1, dtype=np.int64).astype(np.float64)
        scores = np.rint(counts @ self.readout.T).astype(np.int64)
        return tuple(all_spikes), scores
