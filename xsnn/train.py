"""Surrogate-gradient training of integer BSNNs (the only xsnn module that imports torch).

The trained network is exactly the contract's network (see :mod:`xsnn.model`)::

    V_j(t) = R(V_j(t-1), s_j(t-1)) + sum_i Wq_ji s_i(t)        V_j(-1) = 0
    s_j(t) = [V_j(t) >= theta_j]
    score_c = sum_t sum_j Rq_cj s^L_j(t),   prediction = argmax_c score_c (ties: lowest c)

Every quantity in the torch forward is an integer held in float32 (spikes,
quantized weights ``Wq``, rounded thresholds, potentials ``|V| <= n_in * T``
far below ``2**24``), so float32 arithmetic is exact and the forward *is*
the integer forward. :func:`export` writes the same integers into a frozen
:class:`xsnn.model.BSNN`, and :func:`train` checks it: the torch model and the
exported model (run by the independent int64 reference
:func:`xsnn.model.forward`) must give the same scores and predictions on every
test image.

Learned parameters (latent floats) and their straight-through quantization:

- binary weights:  ``Wq = +1 if w >= 0 else -1``; latent ``w`` clipped to ``[-1, 1]``
  (BinaryConnect); the gradient passes straight through.
- ternary weights: ``Wq = sign(w) * [|w| > delta]`` where ``delta`` is the
  ``sparsity`` quantile of ``|w|`` over the layer (``sparsity_scope="layer"``)
  or over each neuron's row (``"neuron"``: every neuron gets the same fan-in).
  So a fraction ``sparsity`` of the weights is zero. The target sparsity is
  reached gradually (cubic ramp over the first ``sparsity_warmup`` fraction of
  training); latent weights start small and decay (``weight_decay``), so inputs
  that never spike (pixels that are 0 in every training image) get no gradient,
  shrink, and end up disconnected (weight 0).
- thresholds: ``theta_q = max(1, round(theta))``, straight-through; latent
  ``theta`` kept ``>= 0.5``. An optional penalty ``threshold_penalty *
  mean(theta_q)`` keeps thresholds low.

Spikes use a surrogate gradient (Neftci, Mostafa, Zenke 2019; as in snnTorch).
With ``u = V - theta + 1/2`` (the spike condition ``V >= theta`` is ``u > 0``
for integers) and width ``w`` (potential units)::

    fast_sigmoid:  ds/dV = 1 / (1 + |u| / w)^2
    arctan:        ds/dV = 1 / (1 + (pi u / (2 w))^2)

The loss is the cross-entropy of ``scores * exp(log_scale)`` (a learned
positive scale, which never changes the argmax) plus the threshold penalty.
The reset's gradient is detached (``detach_reset``), a common choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xsnn.coding import LatencyCoding, StaticCoding, coding_from_spec
from xsnn.data import DataError, filter_classes, load_mnist
from xsnn.model import BSNN, forward, save_model

__all__ = [
    "TrainConfig",
    "TrainResult",
    "EpochStats",
    "Agreement",
    "SpikingNet",
    "train",
    "export",
    "build_network",
    "fit",
    "torch_scores",
    "check_agreement",
    "weight_stats",
    "model_card",
    "save_trained",
    "add_train_arguments",
    "run_train",
    "config_from_args",
]

log = logging.getLogger("xsnn.train")  # also when run as python -m xsnn.train

SURROGATES = ("fast_sigmoid", "arctan")
SPARSITY_SCOPES = ("layer", "neuron")
DEVICES = ("auto", "cpu", "cuda")


# --------------------------------------------------------------------------- configuration

# Per weight kind, the values taken by options left at ``None`` (measured on full MNIST, see
# docs/training.md): binary latent weights start at +-0.1 and never decay (decay hurt: 95.4% vs
# 96.2% at H=128); ternary ones start tiny and decay, so inputs that never spike get disconnected.
_RECIPES = {
    "binary": {"sparsity": 0.0, "readout_sparsity": 0.0, "init_scale": 0.1, "weight_decay": 0.0},
    "ternary": {"sparsity": 0.9, "readout_sparsity": 0.5, "init_scale": 0.01, "weight_decay": 0.3},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (with the data and the seed, it fixes the model).

    Attributes:
        hidden: sizes of the spiking layers, e.g. ``(128,)``.
        weight_kind: ``"binary"`` or ``"ternary"``.
        sparsity: ternary only: target fraction of zero weights in each spiking layer.
        readout_sparsity: ternary only: target fraction of zero readout weights.
        sparsity_scope: ``"neuron"`` (quantile per row: every neuron has the same fan-in) or
            ``"layer"`` (one quantile per layer).
        sparsity_warmup: fraction of training over which sparsity ramps (cubically) from 0 to target.
        n_steps: time steps ``T``.
        reset: ``"zero"`` or ``"subtract"``.
        coding: ``"static"`` or ``"latency"``; ``tau`` its pixel threshold.
        classes: digits to keep (class index ``k`` is digit ``classes[k]``); ``None``: all ten.
        epochs, batch_size, lr: Adam on latent weights with cosine decay to 0.
        threshold_lr: Adam learning rate of the latent thresholds (potential units).
        weight_decay: decoupled decay of latent weights (per step ``w -= lr * weight_decay * w``).
        init_scale: latent weights start uniform in ``[-init_scale, init_scale]``.
        Options given as ``None`` (sparsity, readout_sparsity, weight_decay, init_scale) take the
        weight kind's recipe value (binary: 0, 0, 0, 0.1; ternary: 0.9, 0.5, 0.3, 0.01).
        threshold_init: initial threshold of every neuron.
        threshold_penalty: weight of ``mean(theta_q)`` in the loss (keeps thresholds low).
        surrogate, surrogate_width: the surrogate gradient and its width ``w`` (potential units).
        detach_reset: do not backpropagate through the reset.
        augment_shift: training images are shifted by a random offset in ``-k..k`` pixels
            along each axis (a fresh offset per image and epoch; 0: no augmentation).
        train_limit: use only the first ``train_limit`` training images (``None``: all).
        seed: seeds initialisation and batch order (same seed, same data, CPU: same model).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    hidden: tuple[int, ...] = (128,)
    weight_kind: str = "binary"
    sparsity: float | None = None
    readout_sparsity: float | None = None
    sparsity_scope: str = "neuron"
    sparsity_warmup: float = 0.3
    n_steps: int = 2
    reset: str = "zero"
    coding: str = "static"
    tau: int = 128
    classes: tuple[int, ...] | None = None
    epochs: int = 15
    batch_size: int = 128
    lr: float = 5e-3
    threshold_lr: float = 0.05
    weight_decay: float | None = None
    init_scale: float | None = None
    threshold_init: float = 4.0
    threshold_penalty: float = 0.0
    surrogate: str = "fast_sigmoid"
    surrogate_width: float = 2.0
    detach_reset: bool = True
    augment_shift: int = 0
    train_limit: int | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "hidden", tuple(int(h) for h in self.hidden))
        recipe = _RECIPES.get(self.weight_kind, {})
        for name, value in recipe.items():  # options left at None take the weight kind's recipe value
            if getattr(self, name) is None:
                set_(self, name, value)
        if self.classes is not None:
            set_(self, "classes", tuple(int(c) for c in self.classes))
        problems = []
        if not self.hidden or min(self.hidden) < 1:
            problems.append(f"hidden sizes must be positive integers, got {self.hidden}")
        if self.weight_kind not in ("binary", "ternary"):
            problems.append(f"weight_kind must be 'binary' or 'ternary', got {self.weight_kind!r}")
        if problems:  # an unknown weight kind leaves recipe options unresolved
            raise ValueError("invalid training configuration: " + "; ".join(problems))
        for name in ("sparsity", "readout_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                problems.append(f"{name} must be in [0, 1), got {value}")
            elif value > 0 and self.weight_kind == "binary":
                problems.append(f"{name} > 0 needs ternary weights (binary weights are never zero)")
        if self.sparsity_scope not in SPARSITY_SCOPES:
            problems.append(f"sparsity_scope must be one of {SPARSITY_SCOPES}, got {self.sparsity_scope!r}")
        if not 0.0 <= self.sparsity_warmup <= 1.0:
            problems.append(f"sparsity_warmup must be in [0, 1], got {self.sparsity_warmup}")
        if not 1 <= self.n_steps <= 64:
            problems.append(f"n_steps must be in 1..64, got {self.n_steps}")
        if self.reset not in ("zero", "subtract"):
            problems.append(f"reset must be 'zero' or 'subtract', got {self.reset!r}")
        if self.coding not in ("static", "latency"):
            problems.append(f"coding must be 'static' or 'latency', got {self.coding!r}")
        if not 1 <= self.tau <= 255:
            problems.append(f"tau must be in 1..255, got {self.tau}")
        if self.classes is not None and (
            len(self.classes) < 2
            or len(set(self.classes)) != len(self.classes)
            or not set(self.classes) <= set(range(10))
        ):
            problems.append(f"classes must be at least two distinct digits 0..9, got {self.classes}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "threshold_lr", "init_scale", "surrogate_width", "threshold_init"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "threshold_penalty"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.surrogate not in SURROGATES:
            problems.append(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if not 0 <= self.augment_shift <= 8:
            problems.append(f"augment_shift must be in 0..8, got {self.augment_shift}")
        if self.train_limit is not None and self.train_limit < 1:
            problems.append(f"train_limit must be >= 1, got {self.train_limit}")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES}, got {self.device!r}")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    @property
    def labels(self) -> tuple[int, ...]:
        return self.classes if self.classes is not None else tuple(range(10))

    def make_coding(self) -> StaticCoding | LatencyCoding:
        return coding_from_spec({"name": self.coding, "threshold": self.tau})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["classes"] = None if self.classes is None else list(self.classes)
        return d

    def command(self, out: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
        """The ``xsnn train`` command line that reproduces this run (every option spelled out)."""
        parts = ["xsnn", "train", "--out", str(out)]
        if data_dir is not None:
            parts += ["--data-dir", str(data_dir)]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.name == "hidden":
                parts += [flag, ",".join(map(str, value))]
            elif f.name == "classes":
                if value is not None:
                    parts += [flag, ",".join(map(str, value))]
            elif f.name == "detach_reset":
                parts.append("--detach-reset" if value else "--no-detach-reset")
            elif f.name == "train_limit":
                if value is not None:
                    parts += [flag, str(value)]
            else:
                parts += [flag, str(value)]
        return shlex.join(parts)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, training accuracy (of the quantized net, during the epoch),
    test accuracy after the epoch (``None`` when not evaluated), seconds, effective sparsity."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    sparsity: float


@dataclass(frozen=True)
class Agreement:
    """Torch model vs exported frozen model on ``n_images`` inputs."""

    n_images: int
    same_prediction: int
    same_scores: int

    @property
    def exact(self) -> bool:
        return self.same_prediction == self.n_images and self.same_scores == self.n_images

    def to_dict(self) -> dict:
        return {
            "n_images": self.n_images,
            "same_prediction": self.same_prediction,
            "same_scores": self.same_scores,
            "exact": self.exact,
        }


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the frozen model and how it was obtained and how well it does."""

    model: BSNN
    config: TrainConfig
    history: tuple[EpochStats, ...]
    test_accuracy: float
    n_test: int
    agreement: Agreement
    train_seconds: float
    n_train: int
    stats: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- torch pieces


class _Spike(torch.autograd.Function):
    """Heaviside ``[u >= 0]`` forward; surrogate derivative in ``u + 1/2`` backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, width: float, kind: str) -> torch.Tensor:  # noqa: D401
        ctx.save_for_backward(u)
        ctx.width, ctx.kind = width, kind
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        z = (u + 0.5) / ctx.width
        if ctx.kind == "fast_sigmoid":
            local = 1.0 / (1.0 + z.abs()) ** 2
        else:  # arctan
            local = 1.0 / (1.0 + (math.pi / 2 * z) ** 2)
        return grad * local, None, None


def _ste(latent: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Value of ``quantized``, gradient of ``latent`` (straight-through estimator)."""
    return latent + (quantized - latent).detach()


def quantize_weights(latent: torch.Tensor, kind: str, sparsity: float, scope: str) -> torch.Tensor:
    """Integer-valued weights (float tensor, no gradient) from latent weights; see the module docstring."""
    if kind == "binary":
        return torch.where(latent >= 0, 1.0, -1.0).to(latent.dtype)
    magnitude = latent.detach().abs()
    if sparsity <= 0:
        delta = torch.zeros((), dtype=latent.dtype, device=latent.device)
    elif scope == "layer":
        k = max(1, int(round(sparsity * magnitude.numel())))
        delta = magnitude.flatten().kthvalue(k).values
    else:
        k = max(1, int(round(sparsity * magnitude.shape[1])))
        delta = magnitude.kthvalue(k, dim=1, keepdim=True).values
    return (torch.sign(latent) * (magnitude > delta)).to(latent.dtype)


def quantize_thresholds(latent: torch.Tensor) -> torch.Tensor:
    """Integer thresholds ``max(1, round(theta))`` as a float tensor (no gradient)."""
    return torch.clamp(torch.round(latent.detach()), min=1.0)


class SpikingNet(torch.nn.Module):
    """The trainable network; its forward is the contract's integer forward (float32, exact).

    Input: spikes ``(B, T, n_inputs)`` float, or ``(B, n_inputs)`` for static coding
    (the same spikes at every step). Output: integer-valued scores ``(B, n_classes)``.
    """

    def __init__(
        self, config: TrainConfig, n_inputs: int, input_shape: tuple[int, ...], generator: torch.Generator
    ) -> None:
        super().__init__()
        self.config = config
        self.input_shape = tuple(input_shape)
        sizes = [n_inputs, *config.hidden]
        scale = config.init_scale

        def uniform(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * scale)

        self.latent = torch.nn.ParameterList([uniform(n_out, n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:])])
        self.theta = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.full((n,), float(config.threshold_init))) for n in config.hidden]
        )
        self.latent_readout = uniform(len(config.labels), sizes[-1])
        self.log_scale = torch.nn.Parameter(torch.tensor(-0.5 * math.log(config.n_steps * sizes[-1])))
        self.sparsity_now = config.sparsity
        self.readout_sparsity_now = config.readout_sparsity

    # quantized values (no gradient): what export writes and what forward computes with
    def weights_q(self, layer: int) -> torch.Tensor:
        c = self.config
        return quantize_weights(self.latent[layer], c.weight_kind, self.sparsity_now, c.sparsity_scope)

    def readout_q(self) -> torch.Tensor:
        c = self.config
        return quantize_weights(self.latent_readout, c.weight_kind, self.readout_sparsity_now, c.sparsity_scope)

    def thresholds_q(self, layer: int) -> torch.Tensor:
        return quantize_thresholds(self.theta[layer])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        n_steps = c.n_steps
        layer_in = x
        static = x.dim() == 2
        for layer in range(len(c.hidden)):
            w = _ste(self.latent[layer], self.weights_q(layer))
            theta = _ste(self.theta[layer], self.thresholds_q(layer))
            if static:
                current = layer_in @ w.T
                currents = [current] * n_steps
            else:
                all_currents = layer_in @ w.T  # (B, T, H)
                currents = [all_currents[:, t] for t in range(n_steps)]
            v = torch.zeros_like(currents[0])
            s = torch.zeros_like(currents[0])
            out = []
            for t in range(n_steps):
                s_reset = s.detach() if c.detach_reset else s
                if c.reset == "zero":
                    v = v * (1.0 - s_reset)
                else:
                    v = v - theta * s_reset
                v = v + currents[t]
                s = _Spike.apply(v - theta, c.surrogate_width, c.surrogate)
                out.append(s)
            layer_in = torch.stack(out, dim=1)
            static = False
        counts = layer_in.sum(dim=1)
        readout = _ste(self.latent_readout, self.readout_q())
        return counts @ readout.T

    def clamp_(self) -> None:
        """Keep latent parameters in range after an optimizer step."""
        with torch.no_grad():
            for w in [*self.latent, self.latent_readout]:
                w.clamp_(-1.0, 1.0)
            for theta in self.theta:
                theta.clamp_(min=0.5)


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def build_network(config: TrainConfig, n_inputs: int = 784, input_shape: tuple[int, ...] = (28, 28)) -> SpikingNet:
    """A fresh network, initialised from ``config.seed``."""
    generator = torch.Generator().manual_seed(config.seed)
    return SpikingNet(config, n_inputs, input_shape, generator)


def _as_net_input(config: TrainConfig, images: np.ndarray) -> torch.Tensor:
    """Raw uint8 images -> network input (uint8 tensor): ``(n, n_pixels)`` static, ``(n, T, n_pixels)`` latency."""
    coding = config.make_coding()
    if config.coding == "static":
        return torch.from_numpy(coding.encode(images, 1)[:, 0, :])
    return torch.from_numpy(coding.encode(images, config.n_steps))


def export(net: SpikingNet, info: dict | None = None) -> BSNN:
    """The frozen integer model with exactly the quantized weights and thresholds ``net`` computes with."""
    c = net.config
    with torch.no_grad():
        weights = tuple(net.weights_q(l).cpu().numpy().astype(np.int8) for l in range(len(c.hidden)))
        thresholds = tuple(net.thresholds_q(l).cpu().numpy().astype(np.int64) for l in range(len(c.hidden)))
        readout = net.readout_q().cpu().numpy().astype(np.int8)
    return BSNN(
        weights=weights,
        thresholds=thresholds,
        readout=readout,
        weight_kind=c.weight_kind,
        reset=c.reset,
        n_steps=c.n_steps,
        coding=c.make_coding(),
        labels=c.labels,
        input_shape=net.input_shape,
        info=info or {},
    )


def torch_scores(net: SpikingNet, images: np.ndarray, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(n, n_classes)`` int64 and predictions ``(n,)`` int64 (``torch.argmax``: first maximum)."""
    device = next(net.parameters()).device
    x_all = _as_net_input(net.config, images)
    scores, preds = [], []
    with torch.no_grad():
        for start in range(0, len(x_all), batch_size):
            s = net(x_all[start : start + batch_size].to(device=device, dtype=torch.float32))
            scores.append(s.cpu().numpy().astype(np.int64))
            preds.append(torch.argmax(s, dim=1).cpu().numpy().astype(np.int64))
    n_classes = len(net.config.labels)
    if not scores:
        return np.zeros((0, n_classes), np.int64), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(preds)


def check_agreement(net: SpikingNet, model: BSNN, images: np.ndarray, batch_size: int = 1000) -> Agreement:
    """Compare the torch model with the frozen model's int64 reference forward on ``images``."""
    t_scores, t_pred = torch_scores(net, images)
    same_pred = same_scores = 0
    for start in range(0, len(images), batch_size):
        ref = forward(model, model.encode(images[start : start + batch_size]))
        stop = start + len(ref.prediction)
        same_pred += int(np.sum(ref.prediction == t_pred[start:stop]))
        same_scores += int(np.sum(np.all(ref.scores == t_scores[start:stop], axis=1)))
    return Agreement(len(images), same_pred, same_scores)


# --------------------------------------------------------------------------- training loop


def random_shift(x: torch.Tensor, input_shape: tuple[int, ...], k: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each coded image of ``x`` (``(B, P)`` or ``(B, T, P)``) by a random offset in ``-k..k`` per axis.

    Pixels shifted in from outside the image are 0 (no spike). Needs a 2-D ``input_shape``.
    """
    if k == 0:
        return x
    if len(input_shape) != 2:
        raise ValueError(f"shift augmentation needs 2-D images, got input shape {input_shape}")
    height, width = input_shape
    batch = x.shape[0]
    spatial = x.reshape(batch, -1, height, width).permute(0, 2, 3, 1)  # (B, H, W, C)
    padded = torch.nn.functional.pad(spatial, (0, 0, k, k, k, k))
    dy = torch.randint(0, 2 * k + 1, (batch,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * k + 1, (batch,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(height, device=x.device)
    cols = dx[:, None] + torch.arange(width, device=x.device)
    b = torch.arange(batch, device=x.device)[:, None, None]
    shifted = padded[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2).reshape(x.shape)


class _Progress:
    """A minimal progress bar on stderr (one line, rewritten in place)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.done, self.start = 0, time.perf_counter()

    def update(self, n: int, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * 30)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac:4.0%} {elapsed:5.1f}s {note}")
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        if self.enabled:
            self.update(0, note)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _ramp(target: float, progress: float, warmup: float) -> float:
    """Cubic sparsity ramp (Zhu & Gupta 2017): 0 at the start, ``target`` from ``warmup`` on."""
    if target <= 0 or warmup <= 0 or progress >= warmup:
        return target
    return target * (1.0 - (1.0 - progress / warmup) ** 3)


def fit(
    net: SpikingNet,
    train_images: np.ndarray,
    train_targets: np.ndarray,
    *,
    test_images: np.ndarray | None = None,
    test_targets: np.ndarray | None = None,
    progress: bool = False,
) -> list[EpochStats]:
    """Train ``net`` in place on raw images and class indices; returns the per-epoch history."""
    c = net.config
    device = next(net.parameters()).device
    x_all = _as_net_input(c, train_images)
    y_all = torch.from_numpy(np.asarray(train_targets, dtype=np.int64))
    n = len(x_all)
    steps_per_epoch = math.ceil(n / c.batch_size)
    total_steps = steps_per_epoch * c.epochs
    weights = [*net.latent, net.latent_readout]
    optimizer = torch.optim.Adam(
        [
            {"params": weights, "lr": c.lr},
            {"params": list(net.theta), "lr": c.threshold_lr},
            {"params": [net.log_scale], "lr": c.lr},
        ]
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    generator = torch.Generator().manual_seed(c.seed + 1)
    history: list[EpochStats] = []
    step = 0
    for epoch in range(c.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        bar = _Progress(n, f"epoch {epoch + 1}/{c.epochs}", progress)
        loss_sum = correct = 0.0
        net.train()
        for b in range(steps_per_epoch):
            idx = order[b * c.batch_size : (b + 1) * c.batch_size]
            done = step / total_steps
            net.sparsity_now = _ramp(c.sparsity, done, c.sparsity_warmup)
            net.readout_sparsity_now = _ramp(c.readout_sparsity, done, c.sparsity_warmup)
            factor = 0.5 * (1.0 + math.cos(math.pi * done))
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            x = random_shift(x_all[idx], net.input_shape, c.augment_shift, generator)
            x = x.to(device=device, dtype=torch.float32)
            y = y_all[idx].to(device)
            scores = net(x)
            loss = torch.nn.functional.cross_entropy(scores * net.log_scale.exp(), y)
            if c.threshold_penalty > 0:
                thetas = torch.cat([_ste(t, quantize_thresholds(t)) for t in net.theta])
                loss = loss + c.threshold_penalty * thetas.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if c.weight_decay > 0:
                with torch.no_grad():
                    for w in weights:
                        w.mul_(1.0 - optimizer.param_groups[0]["lr"] * c.weight_decay)
            net.clamp_()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((torch.argmax(scores.detach(), dim=1) == y).sum())
            bar.update(len(idx), f"loss {loss_sum / ((b * c.batch_size) + len(idx)):.4f}")
        net.sparsity_now, net.readout_sparsity_now = c.sparsity, c.readout_sparsity
        test_acc = None
        if test_images is not None and test_targets is not None and len(test_images):
            net.eval()
            _, pred = torch_scores(net, test_images)
            test_acc = float(np.mean(pred == np.asarray(test_targets)))
        seconds = time.perf_counter() - start
        zero = float(np.mean([float((net.weights_q(l) == 0).float().mean()) for l in range(len(c.hidden))]))
        stats = EpochStats(epoch + 1, loss_sum / n, correct / n, test_acc, seconds, zero)
        history.append(stats)
        bar.close(
            f"loss {stats.loss:.4f} train {stats.train_accuracy:.4f}"
            + (f" test {test_acc:.4f}" if test_acc is not None else "")
        )
        log.info(
            "epoch %d/%d: loss %.4f, train accuracy %.4f, test accuracy %s, %.1f s",
            epoch + 1,
            c.epochs,
            stats.loss,
            stats.train_accuracy,
            "-" if test_acc is None else f"{test_acc:.4f}",
            seconds,
        )
    net.eval()
    return history


# --------------------------------------------------------------------------- statistics and cards


def weight_stats(model: BSNN, train_images: np.ndarray | None = None) -> dict:
    """Sparsity, fan-in and threshold statistics of a frozen model (for cards and benchmarks).

    With ``train_images``, also counts connected inputs that never spike in the training
    set (``dead_inputs_connected``), e.g. border pixels that are 0 in every image.
    """
    layers = []
    for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        fan_in = (w != 0).sum(axis=1)
        layers.append(
            {
                "layer": l,
                "shape": list(w.shape),
                "zero_fraction": round(float(np.mean(w == 0)), 6),
                "fan_in_mean": round(float(fan_in.mean()), 3),
                "fan_in_min": int(fan_in.min()),
                "fan_in_max": int(fan_in.max()),
                "inputs_connected": int(np.sum((w != 0).any(axis=0))),
                "threshold_min": int(theta.min()),
                "threshold_median": float(np.median(theta)),
                "threshold_max": int(theta.max()),
            }
        )
    stats = {
        "layers": layers,
        "readout_zero_fraction": round(float(np.mean(model.readout == 0)), 6),
        "readout_fan_in_mean": round(float((model.readout != 0).sum(axis=1).mean()), 3),
    }
    if train_images is not None:
        spikes_ever = model.encode(train_images).max(axis=(0, 1)).astype(bool)
        connected = (model.weights[0] != 0).any(axis=0)
        stats["dead_inputs"] = int(np.sum(~spikes_ever))
        stats["dead_inputs_connected"] = int(np.sum(connected & ~spikes_ever))
    return stats


def model_card(result: TrainResult, name: str, command: str) -> dict:
    """The JSON card of a trained model."""
    m, c = result.model, result.config
    arch = "-".join(str(n) for n in (m.n_inputs, *m.layer_sizes, m.n_classes))
    return {
        "name": name,
        "file": f"{name}.npz",
        "content_hash": m.content_hash(),
        "description": m.describe(),
        "architecture": arch,
        "layer_sizes": list(m.layer_sizes),
        "weight_kind": m.weight_kind,
        "reset": m.reset,
        "n_steps": m.n_steps,
        "coding": m.coding.spec(),
        "labels": list(m.labels),
        "weight_stats": result.stats,
        "test_accuracy": round(result.test_accuracy, 6),
        "n_test_images": result.n_test,
        "test_set": (
            "MNIST test set (10,000 images)"
            if c.classes is None
            else f"MNIST test images of digits {list(c.classes)} ({result.n_test} images)"
        ),
        "n_train_images": result.n_train,
        "torch_frozen_agreement": {
            **result.agreement.to_dict(),
            "statement": (
                f"torch model and exported frozen BSNN (int64 reference forward) "
                f"agree on the predictions of {result.agreement.same_prediction} "
                f"and the scores of {result.agreement.same_scores} of "
                f"{result.agreement.n_images} test images"
            ),
        },
        "seed": c.seed,
        "train_seconds": round(result.train_seconds, 1),
        "training_command": command,
        "config": c.to_dict(),
        "history": [dataclasses.asdict(h) for h in result.history],
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "device": str(_device(c)),
            "threads": torch.get_num_threads(),
        },
    }


def save_trained(
    result: TrainResult, path: str | os.PathLike, name: str | None = None, command: str | None = None
) -> tuple[Path, Path]:
    """Write ``NAME.npz`` (the model, its info naming it) and ``NAME.json`` (its card) side by side."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"the model file name must end in .npz, got {path}")
    name = name or path.stem
    command = command or result.config.command(path)
    model = dataclasses.replace(
        result.model,
        info={
            **result.model.info,
            "name": name,
            "training_command": command,
            "test_accuracy": f"{result.test_accuracy:.4f}",
            "n_test_images": str(result.n_test),
        },
    )
    result = dataclasses.replace(result, model=model)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps(model_card(result, name, command), indent=2) + "\n")
    return path, card_path


# --------------------------------------------------------------------------- the whole run


def train(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    train_data: tuple[np.ndarray, np.ndarray] | None = None,
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    eval_every_epoch: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train, export, and check the export on the test images.

    ``train_data`` / ``test_data``: ``(uint8 images (n, 28, 28), digit labels (n,))``;
    when ``None`` they are read from MNIST (``data_dir`` or ``$XSNN_DATA``). Images
    whose digit is not in ``config.classes`` are dropped. The returned model is the
    one after the last epoch (no selection on the test set).
    """
    if train_data is None:
        train_data = load_mnist("train", data_dir)
    if test_data is None:
        test_data = load_mnist("test", data_dir)
    train_images, train_targets = filter_classes(*train_data, config.classes)
    test_images, test_targets = filter_classes(*test_data, config.classes)
    if config.train_limit is not None:
        train_images, train_targets = train_images[: config.train_limit], train_targets[: config.train_limit]
    if len(train_images) == 0:
        raise DataError("no training images left after selecting classes")
    input_shape = tuple(train_images.shape[1:])
    n_inputs = int(np.prod(input_shape))
    device = _device(config)
    log.info(
        "training %s on %d images (%s, %d torch threads)", config, len(train_images), device, torch.get_num_threads()
    )
    net = build_network(config, n_inputs, input_shape).to(device)
    start = time.perf_counter()
    history = fit(
        net,
        train_images,
        train_targets,
        test_images=test_images if eval_every_epoch else None,
        test_targets=test_targets if eval_every_epoch else None,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    model = export(net)
    agreement = check_agreement(net, model, test_images)
    if not agreement.exact:
        log.error("torch and frozen models disagree: %s", agreement)
    _, pred = torch_scores(net, test_images)
    accuracy = float(np.mean(pred == test_targets)) if len(test_images) else float("nan")
    stats = weight_stats(model, train_images)
    log.info("test accuracy %.4f on %d images; agreement %s; %.1f s", accuracy, len(test_images), agreement, seconds)
    return TrainResult(
        model=model,
        config=config,
        history=tuple(history),
        test_accuracy=accuracy,
        n_test=len(test_images),
        agreement=agreement,
        train_seconds=seconds,
        n_train=len(train_images),
        stats=stats,
    )


# --------------------------------------------------------------------------- command line


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``xsnn train`` options to ``parser`` (defaults are :class:`TrainConfig`'s)."""
    d = TrainConfig()
    p = parser
    p.add_argument(
        "--out", "-o", required=True, help="model file to write (NAME.npz; the card NAME.json goes beside it)"
    )
    p.add_argument("--name", default=None, help="model name recorded in the file and card (default: file stem)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $XSNN_DATA)")
    p.add_argument("--hidden", type=_int_list, default=d.hidden, help="hidden layer sizes, e.g. 128 or 256,64")
    p.add_argument(
        "--weight-kind",
        "--weights",
        dest="weight_kind",
        choices=("binary", "ternary"),
        default=d.weight_kind,
        help="weight values: binary {-1,+1} or ternary {-1,0,+1}",
    )
    p.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="ternary: target fraction of zero weights in each hidden layer (default 0.9)",
    )
    p.add_argument(
        "--readout-sparsity",
        type=float,
        default=None,
        help="ternary: target fraction of zero readout weights (default 0.5)",
    )
    p.add_argument(
        "--sparsity-scope",
        choices=SPARSITY_SCOPES,
        default=d.sparsity_scope,
        help="quantile per layer, or per neuron (equal fan-in)",
    )
    p.add_argument(
        "--sparsity-warmup",
        type=float,
        default=d.sparsity_warmup,
        help="fraction of training over which sparsity ramps up to its target",
    )
    p.add_argument("--n-steps", "--steps", "-T", dest="n_steps", type=int, default=d.n_steps, help="time steps T")
    p.add_argument("--reset", choices=("zero", "subtract"), default=d.reset)
    p.add_argument("--coding", choices=("static", "latency"), default=d.coding)
    p.add_argument("--tau", type=int, default=d.tau, help="pixel threshold of the coding (1..255)")
    p.add_argument("--classes", type=_int_list, default=None, help="digits to keep, e.g. 1,5,9 (default: all)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of latent weights")
    p.add_argument("--threshold-lr", type=float, default=d.threshold_lr)
    p.add_argument(
        "--weight-decay", type=float, default=None, help="decay of latent weights (default: binary 0, ternary 0.3)"
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="latent weights start uniform in [-s, s] (default: binary 0.1, ternary 0.01)",
    )
    p.add_argument("--threshold-init", type=float, default=d.threshold_init)
    p.add_argument(
        "--threshold-penalty",
        type=float,
        default=d.threshold_penalty,
        help="loss weight of the mean threshold (keeps thresholds low)",
    )
    p.add_argument("--surrogate", choices=SURROGATES, default=d.surrogate)
    p.add_argument("--surrogate-width", type=float, default=d.surrogate_width)
    p.add_argument("--detach-reset", action=argparse.BooleanOptionalAction, default=d.detach_reset)
    p.add_argument(
        "--augment-shift",
        type=int,
        default=d.augment_shift,
        help="random shifts of training images by up to K pixels (augmentation)",
    )
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=DEVICES, default=d.device)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--eval-every-epoch", action="store_true", help="report test accuracy after every epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` named by parsed ``xsnn train`` options."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def run_train(args: argparse.Namespace) -> int:
    """``xsnn train``: train, write NAME.npz and NAME.json, print a summary; 0 on success, 2 on bad input."""
    try:
        config = config_from_args(args)
        out = Path(args.out)
        if out.suffix != ".npz":
            raise ValueError(f"--out must name a .npz file, got {out}")
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        result = train(config, args.data_dir, eval_every_epoch=args.eval_every_epoch, progress=not args.no_progress)
    except ValueError as exc:  # includes DataError
        print(f"xsnn train: error: {exc}", file=sys.stderr)
        return 2
    command = config.command(out, args.data_dir)
    if args.threads is not None:
        command += f" --threads {args.threads}"
    model_path, card_path = save_trained(result, out, args.name, command)
    print(f"{model_path}: {result.model.describe()}")
    print(
        f"test accuracy {result.test_accuracy:.4f} on {result.n_test} images; torch/frozen agreement "
        f"{result.agreement.same_prediction}/{result.agreement.n_images} predictions, "
        f"{result.agreement.same_scores}/{result.agreement.n_images} scores; {result.train_seconds:.1f} s"
    )
    print(f"card: {card_path}")
    return 0 if result.agreement.exact else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m xsnn.train``), same options as ``xsnn train``."""
    parser = argparse.ArgumentParser(prog="xsnn train", description="Train a BSNN with surrogate gradients.")
    add_train_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
