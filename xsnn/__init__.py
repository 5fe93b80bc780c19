"""xsnn: formal explanations of binary spiking neural networks.

Quick start::

    import xsnn
    model = xsnn.load_model()                       # the default shipped model
    images, labels = xsnn.load_sample()             # 200 MNIST test images shipped with xsnn
    xsnn.predict(model, images[:5])
    e = xsnn.explain(model, images[0])              # a certified subset-minimal AXp
    print(e.summary()); print(e.render())

The functions below are imported on first use (``import xsnn`` itself does no work).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "load_model": "xsnn.model",
    "BSNN": "xsnn.model",
    "load_sample": "xsnn.data",
    "explain": "xsnn.api",
    "enumerate": "xsnn.api",
    "attribution": "xsnn.api",
    "verify": "xsnn.api",
    "explain_many": "xsnn.api",
    "predict": "xsnn.api",
    "Enumeration": "xsnn.api",
    "Explanation": "xsnn.explanation",
    "FeatureSet": "xsnn.features",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'xsnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
