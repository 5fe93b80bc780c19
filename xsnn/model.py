"""The frozen integer BSNN of the contract, its reference forward pass, and its file format.

A network has ``L >= 1`` spiking layers and an integer readout. Layer ``l`` has
weights ``W^l`` in ``{-1, +1}`` (binary) or ``{-1, 0, +1}`` (ternary), of shape
``(n_l, n_{l-1})``, and integer thresholds ``theta^l_j >= 1``. With input
spikes ``s^0 = x`` and ``V^l_j(-1) = 0``, for ``t = 0 .. T-1``::

    V^l_j(t) = R(V^l_j(t-1), s^l_j(t-1)) + sum_i W^l_ji s^{l-1}_i(t)
    s^l_j(t) = [V^l_j(t) >= theta^l_j]
    R = zero:     V (1 - s)
        subtract: V - theta_j s

The readout ``W^out`` (same value set) accumulates
``score_c = sum_t sum_j W^out_cj s^L_j(t)`` and the prediction is the class
index ``argmax_c score_c`` with ties to the lowest index. ``labels[c]`` is the
label (e.g. the digit) of class index ``c``.

Files are ``.npz`` archives holding integer arrays only (loaded with
``allow_pickle=False``), a JSON header stored as uint8 bytes, a format
version and a SHA-256 content hash; :func:`load_model` validates all of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xsnn.coding import Coding, as_pixel_matrix, coding_from_spec

__all__ = [
    "BSNN",
    "ForwardResult",
    "forward",
    "integrate_and_fire",
    "save_model",
    "load_model",
    "ModelFileError",
    "FORMAT_VERSION",
    "WEIGHT_KINDS",
    "RESETS",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FORMAT_NAME = "xsnn-bsnn"
WEIGHT_KINDS = ("binary", "ternary")
RESETS = ("zero", "subtract")
_WEIGHT_VALUES = {"binary": {-1, 1}, "ternary": {-1, 0, 1}}
_MAX_STEPS = 64


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign or fails validation."""


@dataclass(frozen=True, eq=False)
class BSNN:
    """An integer binary spiking network (see the module docstring for the maths).

    Attributes:
        weights: one ``(n_out, n_in)`` int8 matrix per spiking layer.
        thresholds: one ``(n_out,)`` int64 vector per spiking layer, values ``>= 1``.
        readout: ``(n_classes, n_last)`` int8 readout weights.
        weight_kind: ``"binary"`` or ``"ternary"`` (the value set of every matrix).
        reset: ``"zero"`` or ``"subtract"``.
        n_steps: the number of time steps ``T``.
        coding: the input coding (maps images to spike trains, states free domains).
        labels: the label of each class index (e.g. ``(1, 5, 9)``).
        input_shape: the shape of one raw image (e.g. ``(28, 28)``).
        info: free-form string metadata (name, training command, ...).
    """

    weights: tuple[np.ndarray, ...]
    thresholds: tuple[np.ndarray, ...]
    readout: np.ndarray
    weight_kind: str
    reset: str
    n_steps: int
    coding: Coding
    labels: tuple[int, ...]
    input_shape: tuple[int, ...] = (28, 28)
    info: dict = field(default_factory=dict)
    # W as float32, one per layer, for the reference forward's input sums (built once, read-only)
    _input_sum_weights: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "weights", tuple(np.asarray(w) for w in self.weights))
        set_(self, "thresholds", tuple(np.asarray(t) for t in self.thresholds))
        set_(self, "readout", np.asarray(self.readout))
        set_(self, "labels", tuple(int(c) for c in self.labels))
        set_(self, "input_shape", tuple(int(d) for d in self.input_shape))
        set_(self, "info", {str(k): str(v) for k, v in dict(self.info).items()})
        _validate(self)
        set_(self, "weights", tuple(w.astype(np.int8) for w in self.weights))
        set_(self, "thresholds", tuple(t.astype(np.int64) for t in self.thresholds))
        set_(self, "readout", self.readout.astype(np.int8))
        set_(self, "_input_sum_weights", tuple(np.ascontiguousarray(w, dtype=np.float32) for w in self.weights))
        for array in (*self.weights, *self.thresholds, self.readout, *self._input_sum_weights):
            array.setflags(write=False)

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Sizes of the spiking layers (not the input, not the readout)."""
        return tuple(int(w.shape[0]) for w in self.weights)

    @property
    def n_classes(self) -> int:
        return int(self.readout.shape[0])

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(n, *input_shape)`` -> input spikes ``(n, T, n_inputs)``."""
        return self.coding.encode(as_pixel_matrix(images, self.n_inputs), self.n_steps)

    def describe(self) -> str:
        arch = "-".join(str(n) for n in (self.n_inputs, *self.layer_sizes, self.n_classes))
        return (
            f"{arch} {self.weight_kind} BSNN, T={self.n_steps}, reset={self.reset}, "
            f"coding={self.coding.name}(tau={self.coding.threshold}), labels={list(self.labels)}"
        )

    def content_hash(self) -> str:
        """SHA-256 over the header and every array (the identity of the network)."""
        return _content_hash(_header(self), _arrays(self))


def _validate(model: BSNN) -> None:
    if model.weight_kind not in WEIGHT_KINDS:
        raise ValueError(f"weight_kind must be one of {WEIGHT_KINDS}, got {model.weight_kind!r}")
    if model.reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {model.reset!r}")
    if not isinstance(model.n_steps, (int, np.integer)) or not 1 <= model.n_steps <= _MAX_STEPS:
        raise ValueError(f"n_steps must be an integer in 1..{_MAX_STEPS}, got {model.n_steps!r}")
    if not hasattr(model.coding, "encode") or not hasattr(model.coding, "free_trains"):
        raise ValueError(f"coding must be an xsnn coding, got {model.coding!r}")
    if len(model.weights) == 0 or len(model.weights) != len(model.thresholds):
        raise ValueError("need one weight matrix and one threshold vector per spiking layer (at least one)")
    allowed = _WEIGHT_VALUES[model.weight_kind]
    n_prev = None
    matrices = [(f"layer {l} weights", w) for l, w in enumerate(model.weights)] + [("readout", model.readout)]
    for name, w in matrices:
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {w.shape}")
        if not np.issubdtype(w.dtype, np.integer) and not _is_integral_float(w):
            raise ValueError(f"{name} must hold integers, got dtype {w.dtype}")
        bad = set(np.unique(w).astype(int).tolist()) - allowed
        if bad:
            raise ValueError(f"{name} has values {sorted(bad)} outside the {model.weight_kind} set {sorted(allowed)}")
        if n_prev is not None and w.shape[1] != n_prev:
            raise ValueError(f"{name} expects {w.shape[1]} inputs but the previous layer has {n_prev} neurons")
        n_prev = w.shape[0]
        if w.shape[1] > 2**24:
            raise ValueError(f"{name} has {w.shape[1]} inputs; at most 2**24 are supported (exact float32 sums)")
    for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        if theta.shape != (w.shape[0],):
            raise ValueError(f"layer {l} thresholds must have shape ({w.shape[0]},), got {theta.shape}")
        if not np.issubdtype(theta.dtype, np.integer) and not _is_integral_float(theta):
            raise ValueError(f"layer {l} thresholds must be integers, got dtype {theta.dtype}")
        if theta.min() < 1:
            raise ValueError(f"layer {l} thresholds must be >= 1, got minimum {theta.min()}")
        if theta.max() > 2**31:
            raise ValueError(f"layer {l} thresholds are absurdly large ({theta.max()})")
    if len(model.labels) != model.readout.shape[0]:
        raise ValueError(f"{len(model.labels)} labels for {model.readout.shape[0]} readout classes")
    if len(set(model.labels)) != len(model.labels):
        raise ValueError(f"labels must be distinct, got {model.labels}")
    if int(np.prod(model.input_shape)) != model.weights[0].shape[1]:
        raise ValueError(f"input_shape {model.input_shape} does not match {model.weights[0].shape[1]} inputs")


def _is_integral_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))


# --------------------------------------------------------------------------- forward


@dataclass(frozen=True)
class ForwardResult:
    """Everything the reference forward computes for a batch of ``n`` inputs.

    Attributes:
        layer_spikes: per spiking layer, ``(n, T, n_l)`` uint8 spikes ``s^l_j(t)``.
        potentials: per spiking layer, ``(n, T, n_l)`` int64 potentials ``V^l_j(t)`` before reset.
        scores: ``(n, n_classes)`` int64 readout scores.
        prediction: ``(n,)`` int64 class indices (argmax, ties to the lowest index).
    """

    layer_spikes: tuple[np.ndarray, ...]
    potentials: tuple[np.ndarray, ...]
    scores: np.ndarray
    prediction: np.ndarray


def check_spikes(model: BSNN, spikes: np.ndarray) -> np.ndarray:
    """Validate input spikes ``(n, T, n_inputs)`` (or one ``(T, n_inputs)``) and return them as uint8 ``(n, T, n)``."""
    x = np.asarray(spikes)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (model.n_steps, model.n_inputs):
        raise ValueError(
            f"input spikes must have shape (n, T={model.n_steps}, n_inputs={model.n_inputs}), got {np.shape(spikes)}"
        )
    if x.dtype != np.uint8 and x.dtype != bool:
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"input spikes must be 0/1 integers, got dtype {x.dtype}")
    if x.size and ((x.dtype != np.uint8 and x.min() < 0) or x.max() > 1):  # uint8 and bool are >= 0
        raise ValueError("input spikes must be 0 or 1")
    return x.astype(np.uint8)


def _input_sums(spikes: np.ndarray, w_float: np.ndarray) -> np.ndarray:
    """``sum_i W_ji s_i`` for each row of 0/1 ``spikes`` ``(m, n_in)``, as int64 ``(m, n_out)``.

    0/1 spikes times weights in ``{-1, 0, 1}``: every partial sum is an integer of magnitude
    ``<= n_in <= 2**24`` (checked at load), which float32 holds exactly, so the BLAS product is
    exact whatever its summation order. A few rows go through matrix-vector products (measured
    about 4x faster than a small matrix product here), a row equal to the one before it reuses
    its sums (static coding repeats one row over the T steps); many rows go through one matrix
    product.
    """
    out = np.empty((len(spikes), len(w_float)), np.int64)
    if len(spikes) <= 8:
        for r, row in enumerate(spikes):
            if r and np.array_equal(row, spikes[r - 1]):
                out[r] = out[r - 1]
            else:
                out[r] = w_float @ row.astype(np.float32)
        return out
    for start in range(0, len(spikes), 4096):  # bounded float32 temporaries
        out[start : start + 4096] = spikes[start : start + 4096].astype(np.float32) @ w_float.T
    return out


def integrate_and_fire(
    currents: np.ndarray,
    theta: np.ndarray,
    reset: str,
    fixed_mask: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The integrate-and-fire neuron of the contract, in int64: the one implementation of it.

    With input currents ``I(t)`` (steps on the second-to-last axis) and thresholds ``theta``::

        V(0) = I(0),
        V(t) = I(t) + V(t-1) (1 - s(t-1))          (reset "zero"),
        V(t) = I(t) + V(t-1) - theta s(t-1)         (reset "subtract"),
        s(t) = [V(t) >= theta].

    Args:
        currents: integer currents ``(..., T, k)``.
        theta: thresholds, broadcastable to ``(..., k)``.
        reset: ``"zero"`` or ``"subtract"``.
        fixed_mask, fixed_values: ``(T, k)``; where the mask is set, the spike is the intervened
            value instead of ``[V >= theta]`` (and the reset reads it): the causal model's ``do``.

    Returns:
        ``(spikes, potentials)``: spikes uint8 and potentials int64 (before the reset of the
        next step), both ``(..., T, k)``.
    """
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    currents = np.asarray(currents, dtype=np.int64)
    theta = np.asarray(theta, dtype=np.int64)
    n_steps = currents.shape[-2]
    shape = currents.shape[:-2] + currents.shape[-1:]
    v = np.zeros(shape, np.int64)
    s = np.zeros(shape, np.int64)
    spikes = np.zeros(currents.shape, np.uint8)
    potentials = np.zeros(currents.shape, np.int64)
    for t in range(n_steps):
        if t:
            v = v * (1 - s) if reset == "zero" else v - theta * s
        v = v + currents[..., t, :]
        s = (v >= theta).astype(np.int64)
        if fixed_mask is not None and fixed_mask[t].any():
            s = np.where(fixed_mask[t], np.asarray(fixed_values[t], np.int64), s)
        potentials[..., t, :] = v
        spikes[..., t, :] = s
    return spikes, potentials


def forward(model: BSNN, spikes: np.ndarray) -> ForwardResult:
    """Reference forward pass: the contract's equations, step by step, in int64 (the input sums
    are exact float32 products, see :func:`_input_sums`).

    ``spikes``: ``(n, T, n_inputs)`` (or ``(T, n_inputs)``) array of 0/1 input spikes.
    """
    x = check_spikes(model, spikes)
    n = x.shape[0]
    layer_in = x
    all_spikes, all_potentials = [], []
    for w_float, theta in zip(model._input_sum_weights, model.thresholds):  # W as float32
        n_out, n_in = w_float.shape
        currents = _input_sums(layer_in.reshape(n * model.n_steps, n_in), w_float).reshape(n, model.n_steps, n_out)
        out_s, out_v = integrate_and_fire(currents, theta, model.reset)
        all_spikes.append(out_s)
        all_potentials.append(out_v)
        layer_in = out_s
    counts = layer_in.sum(axis=1, dtype=np.int64)  # (n, n_last): sum over t of s^L_j(t)
    scores = counts @ model.readout.astype(np.int64).T
    prediction = np.argmax(scores, axis=1).astype(np.int64)
    return ForwardResult(tuple(all_spikes), tuple(all_potentials), scores, prediction)


# --------------------------------------------------------------------------- files


def _header(model: BSNN) -> dict:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "weight_kind": model.weight_kind,
        "reset": model.reset,
        "n_steps": int(model.n_steps),
        "coding": model.coding.spec(),
        "labels": list(model.labels),
        "input_shape": list(model.input_shape),
        "n_layers": len(model.weights),
        "info": dict(model.info),
    }


def _arrays(model: BSNN) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        arrays[f"weights_{l}"] = w.astype(np.int8)
        arrays[f"thresholds_{l}"] = theta.astype(np.int64)
    arrays["readout"] = model.readout.astype(np.int8)
    return arrays


def _content_hash(header: dict, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_model(model: BSNN, path: str | os.PathLike) -> Path:
    """Write ``model`` to an ``.npz`` file (integers and a JSON header only; no pickle)."""
    path = Path(path)
    header = _header(model)
    arrays = _arrays(model)
    header["content_hash"] = _content_hash(header, arrays)
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, header=blob, **arrays)
    return path


def load_model_file(path: str | os.PathLike) -> BSNN:
    """Read and validate a model file written by :func:`save_model`.

    Raises :class:`ModelFileError` naming the problem for a missing, corrupt,
    foreign, tampered or invalid file. Never unpickles anything.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a folder, not a model file (expected a .npz written by xsnn train or "
            f"save_model, or a shipped model name)"
        )
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a readable .npz model file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is not a readable .npz model file ({exc})") from None
    except ValueError as exc:  # object arrays refused by allow_pickle=False, bad headers
        raise ModelFileError(f"{path} holds data xsnn will not load ({exc})") from None
    if "header" not in contents:
        raise ModelFileError(f"{path} is not an xsnn model file (no header)")
    for name, value in contents.items():
        if not isinstance(value, np.ndarray):
            raise ModelFileError(f"{path}: member {name!r} is not a numpy array")
    blob = contents.pop("header")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ModelFileError(f"{path}: the header must be uint8 JSON bytes")
    try:
        header = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{path} is not an xsnn model file (format {header.get('format') if isinstance(header, dict) else None!r})"
        )
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {header.get('format_version')!r}; this xsnn reads version {FORMAT_VERSION}"
        )
    try:
        n_layers = int(header["n_layers"])
        expected = (
            {f"weights_{l}" for l in range(n_layers)} | {f"thresholds_{l}" for l in range(n_layers)} | {"readout"}
        )
        if set(contents) != expected:
            raise ModelFileError(
                f"{path}: arrays {sorted(contents)} do not match the header's {n_layers} layer(s) ({sorted(expected)})"
            )
        for name, a in contents.items():
            if not np.issubdtype(a.dtype, np.integer):
                raise ModelFileError(f"{path}: array {name} has dtype {a.dtype}, expected integers")
        stored_hash = header.pop("content_hash", None)
        if stored_hash != _content_hash(header, contents):
            raise ModelFileError(f"{path}: content hash mismatch (the file is corrupt or was edited)")
        return BSNN(
            weights=tuple(contents[f"weights_{l}"] for l in range(n_layers)),
            thresholds=tuple(contents[f"thresholds_{l}"] for l in range(n_layers)),
            readout=contents["readout"],
            weight_kind=header["weight_kind"],
            reset=header["reset"],
            n_steps=int(header["n_steps"]),
            coding=coding_from_spec(header["coding"]),
            labels=tuple(header["labels"]),
            input_shape=tuple(header["input_shape"]),
            info=header.get("info", {}),
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model ({exc})") from None


def shipped_model_dir() -> Path:
    """Folder of the reference models shipped inside the package."""
    return Path(__file__).resolve().parent / "models"


def shipped_model_names() -> list[str]:
    return sorted(p.stem for p in shipped_model_dir().glob("*.npz"))


DEFAULT_MODEL = "mnist10-sparse192"  # the solver-friendly 10-class model (docs/benchmark-explain.md)


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL) -> BSNN:
    """Load a shipped model by name (e.g. ``"mnist10-sparse192"``, the default) or a model file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".npz" or candidate.exists() or os.sep in str(name_or_path):
        return load_model_file(candidate)
    shipped = shipped_model_dir() / f"{name_or_path}.npz"
    if shipped.is_file():
        return load_model_file(shipped)
    names = ", ".join(shipped_model_names()) or "none"
    raise ModelFileError(f"no shipped model named {name_or_path!r} and no such file; shipped models: {names}")


def model_card(name: str) -> dict:
    """The JSON card of a shipped model (architecture, coding, training command, accuracy)."""
    path = shipped_model_dir() / f"{name}.json"
    if not path.is_file():
        raise ModelFileError(f"no model card for {name!r}")
    return json.loads(path.read_text())


def contrastive_model(model: BSNN, keep: int, foil: int) -> BSNN:
    """The network restricted to the readout rows of class indices ``keep`` and ``foil``.

    It predicts ``keep`` exactly when ``keep`` beats ``foil`` in ``model`` (``score_keep >
    score_foil``, or equal scores and ``keep < foil``): the rows stay in their original order, so
    the tie rule (lowest index wins) is the same. "Why ``keep`` and not ``foil``?" is therefore the
    ordinary entailment question on this network, for every backend.
    """
    keep, foil = int(keep), int(foil)
    for name, c in (("keep", keep), ("foil", foil)):
        if not 0 <= c < model.n_classes:
            raise ValueError(f"{name} class index {c} outside 0..{model.n_classes - 1}")
    if keep == foil:
        raise ValueError(f"a contrastive question needs two different classes, got {keep} twice")
    rows = sorted((keep, foil))
    info = dict(model.info)
    info["contrastive_of"] = model.content_hash()
    return BSNN(
        weights=model.weights,
        thresholds=model.thresholds,
        readout=model.readout[rows],
        weight_kind=model.weight_kind,
        reset=model.reset,
        n_steps=model.n_steps,
        coding=model.coding,
        labels=tuple(model.labels[r] for r in rows),
        input_shape=model.input_shape,
        info=info,
    )


def random_model(
    rng: np.random.Generator,
    layer_sizes: Sequence[int],
    n_inputs: int,
    n_classes: int,
    *,
    weight_kind: str = "binary",
    reset: str = "zero",
    n_steps: int = 2,
    coding: Coding | None = None,
    max_threshold: int | None = None,
) -> BSNN:
    """A random network for tests: uniform weights in the value set, thresholds in ``1..max_threshold``."""
    from xsnn.coding import StaticCoding

    values = np.array(sorted(_WEIGHT_VALUES[weight_kind]))
    sizes = [n_inputs, *layer_sizes]
    weights, thresholds = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(rng.choice(values, size=(n_out, n_in)))
        top = max_threshold or max(1, n_in // 3)
        thresholds.append(rng.integers(1, top + 1, size=n_out))
    readout = rng.choice(values, size=(n_classes, sizes[-1]))
    return BSNN(
        weights=tuple(weights),
        thresholds=tuple(thresholds),
        readout=readout,
        weight_kind=weight_kind,
        reset=reset,
        n_steps=n_steps,
        coding=coding or StaticCoding(),
        labels=tuple(range(n_classes)),
        input_shape=(n_inputs,),
    )
