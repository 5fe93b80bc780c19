"""xsnn: formal explanations of binary spiking neural networks.

Quick start::

    import xsnn
    model = xsnn.load_model("mnist10-sparse")
    images, labels = xsnn.data.load_sample()
    xsnn.predict(model, images[:5])
"""
from __future__ import annotations

import numpy as np

from xsnn.model import BSNN, load_model  # noqa: F401  (public API)

__version__ = "0.1.0"
__all__ = ["BSNN", "load_model", "predict", "__version__"]


def predict(model: BSNN, inputs: np.ndarray) -> np.ndarray:
    """Class labels (e.g. digits) for raw uint8 images ``(n, *input_shape)`` or coded spikes ``(n, T, n_inputs)``.

    Input spikes are recognised by their shape ``(n, T, n_inputs)``; anything else is
    treated as raw images with intensities 0..255.
    """
    from xsnn.model import predict_indices

    arr = np.asarray(inputs)
    if arr.ndim == 3 and arr.shape[1:] == (model.n_steps, model.n_inputs):
        spikes = arr
    else:
        spikes = model.encode(arr)
    return np.asarray(model.labels, dtype=np.int64)[predict_indices(model, spikes)]
