"""Bit-packed forward kernel: the reference forward's exact integers, fast.

Inputs and weights are packed into uint64 words (bit ``i`` of a row is bit
``i % 64`` of word ``i // 64``). The current of neuron ``j`` on an input row
``x`` is computed with AND + popcount::

    binary  (W in {-1,+1}):   I_j = 2 popcount(x & P_j) - popcount(x)
    ternary (W in {-1,0,+1}): I_j = popcount(x & P_j) - popcount(x & M_j)

where ``P_j`` / ``M_j`` mask the ``+1`` / ``-1`` weights of neuron ``j``; then
the integrate-and-fire loop of :mod:`xsnn.model` runs in integers (resets
``zero`` / ``subtract``), the readout accumulates
``score_c = sum_t sum_j W_cj s_j(t)`` and the prediction is the argmax with
ties to the lowest class index. Results are identical to
:func:`xsnn.model.forward` for ANY 0/1 input (the test suite checks it); a
step-invariant input (static coding) is detected per image and per layer and
its currents are computed once.

Two implementations:

- ``"c"``: the compiled extension ``_ckernel`` (see ``_ckernel.c``: bit-sliced
  across neurons, AVX2 + POPCNT when the CPU has them, single-threaded);
- ``"numpy"``: :mod:`xsnn.kernel.numpy_forward` (``np.bitwise_count``).

:data:`IMPLEMENTATION` is the best one available, decided at import by trying to
import the extension (nothing is compiled at import).

Usage::

    net = PackedNetwork(model)          # pack once, evaluate many batches
    net.predict(spikes)                 # spikes: uint8 (n, T, n_inputs)
    packed = net.pack(spikes)           # or pack inputs once ...
    net.predict_packed(packed)          # ... and reuse them
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsnn.kernel._layout import c_kernel_limits, n_words, pack_bits, unpack_bits
from xsnn.kernel.c_forward import CNetwork, load_extension
from xsnn.kernel.numpy_forward import NumpyNetwork
from xsnn.model import BSNN

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "PackedNetwork",
    "KernelResult",
    "KernelUnavailable",
    "scores",
    "predict",
    "available_implementations",
    "c_isa",
    "pack_bits",
    "unpack_bits",
]

IMPLEMENTATIONS = ("c", "numpy")
_EXTENSION = load_extension()
IMPLEMENTATION: str = "c" if _EXTENSION is not None else "numpy"


class KernelUnavailable(RuntimeError):
    """The requested implementation is not available here (e.g. the C extension was not built)."""


def available_implementations() -> tuple[str, ...]:
    """The implementations usable in this installation, best first."""
    return ("c", "numpy") if _EXTENSION is not None else ("numpy",)


def c_isa() -> str | None:
    """The instruction set the C kernel uses on this CPU (``"avx2"`` or ``"generic"``), ``None`` without it."""
    return None if _EXTENSION is None else str(_EXTENSION.isa())


@dataclass(frozen=True)
class KernelResult:
    """Spikes and readout of a batch (same values as :class:`xsnn.model.ForwardResult`, without potentials).

    Attributes:
        layer_spikes: per spiking layer, ``(n, T, n_l)`` uint8 spikes.
        scores: ``(n, n_classes)`` int64 readout scores.
        prediction: ``(n,)`` int64 class indices (argmax, ties to the lowest index).
    """

    layer_spikes: tuple[np.ndarray, ...]
    scores: np.ndarray
    prediction: np.ndarray


class PackedNetwork:
    """A :class:`~xsnn.model.BSNN` with its weights packed into uint64 words, for fast exact inference.

    Args:
        model: the network.
        implementation: ``"c"``, ``"numpy"`` or ``None`` for :data:`IMPLEMENTATION`.
        algorithm: C implementation only: ``"sliced"`` (fast), ``"sliced-single"`` (the same without processing
            two images per lane block) or ``"reference"`` (a plain per-neuron popcount loop).
        isa: C implementation only: ``"auto"`` or ``"generic"`` (forces the baseline-instruction build).

    With ``implementation=None`` a model too large for the C kernel (more than 65,535
    inputs or neurons in a layer, more than 32 layers) runs on numpy.

    Raises:
        KernelUnavailable: ``implementation="c"`` but the extension is not built or cannot run this model.
        ValueError: unknown implementation, algorithm or isa.
    """

    def __init__(
        self, model: BSNN, implementation: str | None = None, *, algorithm: str = "sliced", isa: str = "auto"
    ) -> None:
        if not isinstance(model, BSNN):
            raise ValueError(f"model must be an xsnn BSNN, got {type(model).__name__}")
        if implementation is not None and implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}")
        limits = c_kernel_limits(model)
        if implementation is None:
            implementation = IMPLEMENTATION if limits is None else "numpy"
        elif implementation == "c" and _EXTENSION is None:
            raise KernelUnavailable(
                "the C kernel is not built in this installation (reinstall with a C compiler, "
                "or use implementation='numpy')"
            )
        elif implementation == "c" and limits is not None:
            raise KernelUnavailable(limits)
        self.model = model
        self.implementation = implementation
        self.n_steps = int(model.n_steps)
        self.n_inputs = int(model.n_inputs)
        self.n_words = n_words(self.n_inputs)
        self._c = CNetwork(model, _EXTENSION, algorithm, isa) if implementation == "c" else None
        self._np = NumpyNetwork(model) if implementation == "numpy" else None

    def __repr__(self) -> str:
        return f"PackedNetwork({self.model.describe()}, implementation={self.implementation!r})"

    # ------------------------------------------------------------------ inputs

    def _spikes(self, spikes: np.ndarray) -> np.ndarray:
        """Validated C-contiguous uint8/bool ``(n, T, n_inputs)`` (values are checked by the implementation)."""
        x = np.asarray(spikes)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.n_steps, self.n_inputs):
            raise ValueError(
                f"input spikes must have shape (n, T={self.n_steps}, n_inputs={self.n_inputs}), got {np.shape(spikes)}"
            )
        if x.dtype != np.uint8 and x.dtype != np.bool_:
            if not np.issubdtype(x.dtype, np.integer):
                raise ValueError(f"input spikes must be 0/1 integers, got dtype {x.dtype}")
            if x.size and (x.min() < 0 or x.max() > 1):
                raise ValueError("input spikes must be 0 or 1")
            x = x.astype(np.uint8)
        return np.ascontiguousarray(x)

    def _packed(self, packed: np.ndarray) -> np.ndarray:
        x = np.asarray(packed)
        if x.ndim != 3 or x.shape[1:] != (self.n_steps, self.n_words) or x.dtype != np.uint64:
            raise ValueError(
                f"packed inputs must be uint64 of shape (n, T={self.n_steps}, words={self.n_words}), "
                f"got {x.dtype} {x.shape}"
            )
        return np.ascontiguousarray(x)

    def pack(self, spikes: np.ndarray) -> np.ndarray:
        """Pack input spikes ``(n, T, n_inputs)`` into uint64 words ``(n, T, ceil(n_inputs / 64))``."""
        x = self._spikes(spikes)
        if x.dtype == np.uint8 and x.size and x.max() > 1:
            raise ValueError("input spikes must be 0 or 1")
        return pack_bits(x)

    # ------------------------------------------------------------------ evaluation

    def _run(self, x: np.ndarray, packed: bool, want_spikes: bool) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        if self._c is not None:
            scores, words = self._c.run(x, packed, want_spikes)
            layer_spikes: tuple[np.ndarray, ...] = ()
            if want_spikes:
                layer_spikes = self._unpack_spikes(words)
            return layer_spikes, scores
        if packed:
            tail = self.n_inputs % 64
            if tail and x.size and np.any(x[..., -1] >> np.uint64(tail)):
                raise ValueError("packed inputs have bits set beyond n_inputs")
        else:
            if x.dtype == np.uint8 and x.size and x.max() > 1:
                raise ValueError("input spikes must be 0 or 1")
            x = pack_bits(x)
        layer_spikes, scores = self._np.run(x)
        return (layer_spikes if want_spikes else ()), scores

    def _unpack_spikes(self, words: np.ndarray) -> tuple[np.ndarray, ...]:
        out, start = [], 0
        for n_out, width in zip(self.model.layer_sizes, self._c.spike_words):
            block = words[:, start : start + width].reshape(words.shape[0], self.n_steps, n_words(n_out))
            out.append(unpack_bits(block, n_out))
            start += width
        return tuple(out)

    def scores(self, spikes: np.ndarray) -> np.ndarray:
        """Readout scores ``(n, n_classes)`` int64 of input spikes ``(n, T, n_inputs)``."""
        return self._run(self._spikes(spikes), packed=False, want_spikes=False)[1]

    def predict(self, spikes: np.ndarray) -> np.ndarray:
        """Class indices ``(n,)`` int64 (argmax of the scores, ties to the lowest index)."""
        return _argmax(self.scores(spikes))

    def forward(self, spikes: np.ndarray) -> KernelResult:
        """Spikes of every layer, scores and prediction."""
        layer_spikes, s = self._run(self._spikes(spikes), packed=False, want_spikes=True)
        return KernelResult(layer_spikes, s, _argmax(s))

    def scores_packed(self, packed: np.ndarray) -> np.ndarray:
        """Like :meth:`scores` for inputs already packed by :meth:`pack`."""
        return self._run(self._packed(packed), packed=True, want_spikes=False)[1]

    def predict_packed(self, packed: np.ndarray) -> np.ndarray:
        """Like :meth:`predict` for inputs already packed by :meth:`pack`."""
        return _argmax(self.scores_packed(packed))


def _argmax(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores, axis=1).astype(np.int64) if scores.shape[0] else np.zeros(0, np.int64)


def scores(model: BSNN, spikes: np.ndarray) -> np.ndarray:
    """Scores ``(n, n_classes)`` int64 with the best implementation (packs the model on every call)."""
    return PackedNetwork(model).scores(spikes)


def predict(model: BSNN, spikes: np.ndarray) -> np.ndarray:
    """Class indices ``(n,)`` int64 with the best implementation (packs the model on every call)."""
    return PackedNetwork(model).predict(spikes)
