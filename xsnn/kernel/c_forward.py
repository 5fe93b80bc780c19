"""Loader of the compiled kernel ``xsnn.kernel._ckernel`` (built from ``_ckernel.c`` by ``setup.py``).

Importing this module only tries to import the extension; it never compiles.
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

from xsnn.kernel._layout import Layout, build_layout, n_words
from xsnn.model import BSNN

__all__ = ["load_extension", "CNetwork", "ALGORITHMS", "ISAS"]

log = logging.getLogger(__name__)

ALGORITHMS = {"sliced": 0, "reference": 1, "sliced-single": 2}
ISAS = {"auto": 0, "generic": 1}


def load_extension() -> ModuleType | None:
    """The compiled extension module, or ``None`` when it was not built (logged at debug level)."""
    try:
        from xsnn.kernel import _ckernel
    except ImportError as exc:
        log.debug("xsnn C kernel not available (%s); using numpy", exc)
        return None
    return _ckernel


class CNetwork:
    """One model in the C kernel's flat layout.

    Args:
        model: the network.
        extension: the loaded extension module (:func:`load_extension`).
        algorithm: ``"sliced"`` (bit-sliced, fast; two images per 256-lane block when no layer has more
            than 128 neurons), ``"sliced-single"`` (bit-sliced, one image at a time) or ``"reference"``
            (a plain per-neuron popcount loop).
        isa: ``"auto"`` (AVX2 + POPCNT when the CPU has both) or ``"generic"`` (baseline instructions).
    """

    def __init__(self, model: BSNN, extension: ModuleType, algorithm: str = "sliced", isa: str = "auto") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
        if isa not in ISAS:
            raise ValueError(f"isa must be one of {sorted(ISAS)}, got {isa!r}")
        self.model = model
        self.layout: Layout = build_layout(model)
        self._ext = extension
        self._algo = ALGORITHMS[algorithm]
        self._isa = ISAS[isa]
        self.spike_words = tuple(model.n_steps * n_words(n) for n in model.layer_sizes)

    def run(self, x: np.ndarray, packed: bool, want_spikes: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores ``(n, C)`` int64 and, if asked, packed spikes ``(n, sum_l T w_l)`` uint64.

        ``x`` is C-contiguous: uint8/bool ``(n, T, n_inputs)`` or uint64 ``(n, T, words)`` when ``packed``.
        """
        n = x.shape[0]
        scores = np.empty((n, self.model.n_classes), np.int64)
        spikes = np.empty((n, sum(self.spike_words)), np.uint64) if want_spikes else None
        if n:
            self._ext.forward(self.layout.header, self.layout.blob, x, packed, scores, spikes, self._algo, self._isa)
        return scores, spikes
