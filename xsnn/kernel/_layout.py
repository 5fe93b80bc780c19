"""Bit packing shared by both implementations, and the flat layout the C kernel reads.

Bit order: bit ``i`` of a packed row is bit ``i % 64`` of 64-bit word ``i // 64``
(little-endian bit order); unused bits of the last word are zero.

The C kernel reads one network as two arrays (built once, by :func:`build_layout`):

- ``header``: int64 fields, positions given by the ``H_*`` / ``L_*`` constants
  below (the C source mirrors them);
- ``blob``: uint64 words holding, per layer ``l`` with ``n_in`` inputs and
  ``n_out`` neurons in ``nb = ceil(n_out / 256)`` lane blocks of 256 neurons:

  * ``cols[b][s][i]``: 4 words (256 lanes) per block ``b``, sign ``s`` and input
    ``i``; lane ``j`` set iff ``W[256 b + j, i]`` is ``+1`` (``s = 0``) or ``-1``
    (``s = 1``, ternary only). Column ``i = n_in`` is all zero (padding).
  * ``start[b][p]``: the bit planes ``p < P`` (two's complement, ``P`` planes) of
    ``U(-1) = -theta_eff`` for each lane, where ``theta_eff = min(theta, T n_in + 1)``
    (no potential can exceed ``T n_in``, so the clamp changes no spike). Padding
    lanes get the largest ``theta_eff``, so they never spike.
  * ``bounds[k][b][p]`` (``k < T``): planes of per-neuron bounds ``B_k`` for the
    step-invariant closed form (see :func:`static_bounds`), offset binary in
    ``PI`` planes.
  * ``rows[s][j][w]``: the same signs in neuron-major rows of ``ceil(n_in / 64)``
    words (read by the C reference loop).
  * ``theta[j]``: thresholds as int64 (reference loop).

  and the readout ``ro[s][c][w]``: rows of ``4 ceil(n_last / 256)`` words (whole lane blocks),
  followed by one all-ones row (valid lanes of the last layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsnn.model import BSNN

__all__ = ["pack_bits", "unpack_bits", "n_words", "build_layout", "Layout", "static_bounds", "LANES", "c_kernel_limits"]

LANES = 256  # neurons per lane block of the bit-sliced C kernel
LANE_WORDS = LANES // 64
MAGIC = 0x78736E6E  # "xsnn"
LAYOUT_VERSION = 3
MAX_LAYERS = 32
MAX_PLANES = 62
MAX_WIDTH = 65535  # inputs and neurons per layer (the C kernel lists active inputs as uint16)

# header fields (mirrored in _ckernel.c)
(H_MAGIC, H_VERSION, H_LAYERS, H_STEPS, H_RESET, H_TERNARY, H_CLASSES, H_RO_OFF, H_W_LAST, H_BLOB_WORDS, H_PAIRS) = (
    range(11)
)
H_LAYER0 = 16
H_LAYER_FIELDS = 16
# per-layer fields, at H_LAYER0 + H_LAYER_FIELDS * l + field
(
    L_N_IN,
    L_N_OUT,
    L_BLOCKS,
    L_P,
    L_PI,
    L_COLS_OFF,
    L_START_OFF,
    L_ROWS_OFF,
    L_THETA_OFF,
    L_W_IN,
    L_W_OUT,
    L_BOUNDS_OFF,
) = range(12)


def n_words(n_bits: int) -> int:
    """Number of 64-bit words that hold ``n_bits`` bits (at least one)."""
    return max(1, -(-int(n_bits) // 64))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array into little-endian uint64 words: ``(..., m) -> (..., ceil(m/64))``."""
    bits = np.asarray(bits)
    m = bits.shape[-1]
    n_bytes = n_words(m) * 8
    packed = np.packbits(bits, axis=-1, bitorder="little")
    if packed.shape[-1] != n_bytes:
        padded = np.zeros(bits.shape[:-1] + (n_bytes,), np.uint8)
        padded[..., : packed.shape[-1]] = packed
        packed = padded
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, m: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: uint64 words ``(..., w)`` -> uint8 bits ``(..., m)``."""
    words = np.ascontiguousarray(np.asarray(words, dtype=np.uint64).astype("<u8", copy=False))
    as_bytes = words.view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, count=m, bitorder="little")


def _bit_planes(values: np.ndarray, n_planes: int) -> np.ndarray:
    """Two's complement bit planes ``(n_planes, *values.shape)`` uint8 of int64 values (mod ``2**n_planes``)."""
    v = np.asarray(values, dtype=np.int64)
    shifts = np.arange(n_planes, dtype=np.int64).reshape((n_planes,) + (1,) * v.ndim)
    return ((v[None] >> shifts) & 1).astype(np.uint8)


def _lane_blocks(bits: np.ndarray, n_blocks: int, pairs: bool = False) -> np.ndarray:
    """``(..., n_out)`` 0/1 -> ``(..., n_blocks, 4)`` uint64: lanes of 256 neurons per block.

    With ``pairs`` (``n_out <= 128``, one block) neuron ``j`` sits in lane ``j`` and again in lane
    ``128 + j``, so that one block can hold two images.
    """
    n = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (n_blocks * LANES,), np.uint8)
    padded[..., :n] = bits
    if pairs:
        padded[..., LANES // 2 : LANES // 2 + n] = bits
    return pack_bits(padded).reshape(bits.shape[:-1] + (n_blocks, LANE_WORDS))


def effective_thresholds(theta: np.ndarray, n_in: int, n_steps: int) -> np.ndarray:
    """``min(theta, T n_in + 1)``: a potential never exceeds ``T n_in``, so spikes are unchanged."""
    return np.minimum(np.asarray(theta, np.int64), n_steps * n_in + 1)


def static_bounds(theta: np.ndarray, n_in: int, n_steps: int, reset: str) -> np.ndarray:
    """Bounds ``B[k, j]`` (``k < T``) of the closed form for a step-invariant current ``I_j``.

    With the same current ``I`` at every step and threshold ``theta``:

    - reset ``zero``: the neuron spikes every ``m = ceil(theta / I)`` steps
      (``I > 0``), at ``t = m-1, 2m-1, ...``; so ``m <= M`` iff ``I >= ceil(theta / M)``.
      Row ``k`` holds ``ceil(theta / (k+1))``: ``H_M = [I >= B[M-1]]`` is ``[m <= M]``,
      spikes at step ``t`` are ``OR_{M | t+1} H_M & ~H_{M-1}``.
    - reset ``subtract``: the spike count up to step ``t`` is
      ``clamp(floor((t+1) I / theta), 0, t+1)``, so the total count is at least
      ``k+1`` iff ``I >= ceil((k+1) theta / T)``: row ``k`` holds that bound
      (used only for the readout of a one-layer network, where counts suffice).

    Bounds are clamped to ``n_in + 1`` (a current never exceeds ``n_in``).
    """
    theta = np.asarray(theta, np.int64)
    k = np.arange(1, n_steps + 1, dtype=np.int64)[:, None]
    if reset == "zero":
        bounds = -(-theta[None, :] // k)
    else:
        bounds = -(-(k * theta[None, :]) // n_steps)
    return np.minimum(bounds, n_in + 1)


def c_kernel_limits(model: BSNN) -> str | None:
    """Why the C kernel cannot run ``model`` (a sentence), or ``None`` when it can."""
    if len(model.weights) > MAX_LAYERS:
        return f"the C kernel handles at most {MAX_LAYERS} layers, the model has {len(model.weights)}"
    widths = (model.n_inputs, *model.layer_sizes)
    if max(widths) > MAX_WIDTH:
        return f"the C kernel handles layers of at most {MAX_WIDTH} inputs and neurons, the model has {max(widths)}"
    return None


@dataclass(frozen=True)
class Layout:
    """The flat network description read by the C kernel (see the module docstring)."""

    header: np.ndarray  # int64
    blob: np.ndarray  # uint64, 64-byte aligned


def _aligned_words(n: int) -> np.ndarray:
    raw = np.zeros(n + 8, np.uint64)
    shift = (-raw.ctypes.data % 64) // 8
    return raw[shift : shift + n]


def build_layout(model: BSNN) -> Layout:
    """Pack every layer of ``model`` into the header and blob the C kernel reads."""
    T = int(model.n_steps)
    ternary = model.weight_kind == "ternary"
    signs = (1, -1) if ternary else (1,)
    n_layers = len(model.weights)
    problem = c_kernel_limits(model)
    if problem:
        raise ValueError(problem)
    pairs = max(model.layer_sizes) <= LANES // 2  # two images per lane block (see _ckernel.c)
    header = np.zeros(H_LAYER0 + H_LAYER_FIELDS * n_layers, np.int64)
    pieces: list[np.ndarray] = []
    offset = 0

    def put(words: np.ndarray) -> int:
        nonlocal offset
        flat = np.ascontiguousarray(words, dtype=np.uint64).ravel()
        start = offset
        pieces.append(flat)
        offset += flat.size
        pad = (-offset) % 8  # keep every piece 64-byte aligned
        if pad:
            pieces.append(np.zeros(pad, np.uint64))
            offset += pad
        return start

    for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        n_out, n_in = (int(d) for d in w.shape)
        n_blocks = -(-n_out // LANES)
        theta_eff = effective_thresholds(theta, n_in, T)
        top = T * n_in + 1
        n_planes = int(2 * top).bit_length() + 1  # U = V - theta_eff in [-(2 T n_in + 1), T n_in]
        n_planes_i = int(n_in + 1).bit_length() + 1  # currents and bounds in [-(n_in + 1), n_in + 1]
        if n_planes > MAX_PLANES:
            raise ValueError(f"layer {l} is too large for the C kernel ({n_planes} bit planes)")
        cols = np.zeros((n_blocks, len(signs), n_in + 1, LANE_WORDS), np.uint64)
        for s, sign in enumerate(signs):
            cols[:, s, :n_in, :] = _lane_blocks((w.T == sign).astype(np.uint8), n_blocks).transpose(1, 0, 2)
        lane_theta = np.full(n_blocks * LANES, top, np.int64)  # padding lanes never spike
        lane_theta[:n_out] = theta_eff
        if pairs:
            lane_theta[LANES // 2 : LANES // 2 + n_out] = theta_eff
        start = _lane_blocks(_bit_planes(-lane_theta, n_planes), n_blocks).transpose(1, 0, 2)
        bounds = static_bounds(lane_theta, n_in, T, model.reset)  # (T, lanes)
        offset_binary = bounds + (1 << (n_planes_i - 1))  # unsigned compare
        bound_planes = _bit_planes(offset_binary, n_planes_i).transpose(1, 0, 2)  # (T, PI, lanes)
        bound_blocks = _lane_blocks(bound_planes, n_blocks).transpose(0, 2, 1, 3)  # (T, nb, PI, 4)
        rows = np.stack([pack_bits((w == sign).astype(np.uint8)) for sign in signs])
        base = H_LAYER0 + H_LAYER_FIELDS * l
        header[base + L_N_IN] = n_in
        header[base + L_N_OUT] = n_out
        header[base + L_BLOCKS] = n_blocks
        header[base + L_P] = n_planes
        header[base + L_PI] = n_planes_i
        header[base + L_COLS_OFF] = put(cols)
        header[base + L_START_OFF] = put(start)
        header[base + L_BOUNDS_OFF] = put(bound_blocks)
        header[base + L_ROWS_OFF] = put(rows)
        header[base + L_THETA_OFF] = put(np.asarray(theta, np.int64).view(np.uint64))
        header[base + L_W_IN] = n_words(n_in)
        header[base + L_W_OUT] = n_words(n_out)
    last_blocks = -(-model.readout.shape[1] // LANES)
    ro = np.concatenate(
        [_lane_blocks((model.readout == sign).astype(np.uint8), last_blocks, pairs) for sign in signs]
        + [_lane_blocks(np.ones((1, model.readout.shape[1]), np.uint8), last_blocks, pairs)]
    )
    header[H_RO_OFF] = put(ro)
    header[H_W_LAST] = last_blocks * LANE_WORDS
    header[H_MAGIC] = MAGIC
    header[H_VERSION] = LAYOUT_VERSION
    header[H_LAYERS] = n_layers
    header[H_STEPS] = T
    header[H_RESET] = 0 if model.reset == "zero" else 1
    header[H_TERNARY] = int(ternary)
    header[H_CLASSES] = model.readout.shape[0]
    header[H_BLOB_WORDS] = offset
    header[H_PAIRS] = int(pairs)
    blob = _aligned_words(offset)
    blob[:] = np.concatenate(pieces) if pieces else np.zeros(0, np.uint64)
    blob.setflags(write=False)
    header.setflags(write=False)
    return Layout(header=header, blob=blob)
