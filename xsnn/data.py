"""MNIST access: an IDX reader with integrity checks, and the sample shipped with xsnn.

MNIST is distributed as four IDX files (optionally gzipped)::

    train-images-idx3-ubyte[.gz]   magic 2051, dims (60000, 28, 28), uint8
    train-labels-idx1-ubyte[.gz]   magic 2049, dims (60000,),        uint8
    t10k-images-idx3-ubyte[.gz]    magic 2051, dims (10000, 28, 28), uint8
    t10k-labels-idx1-ubyte[.gz]    magic 2049, dims (10000,),        uint8

An IDX file starts with a 4-byte big-endian magic number ``0x0000TTDD``
(``TT = 0x08``: unsigned bytes; ``DD``: number of dimensions), then ``DD``
big-endian uint32 sizes, then the data in row-major order.
:func:`read_idx` checks the magic number, the type code, the dimensions and
the data length; :func:`load_mnist` also checks the file against ``MD5SUMS``
(lines ``<md5>  <file name>``) when the folder has one, and checks that images
and labels agree. Every problem raises :class:`DataError` naming the file.

The folder is taken from the ``data_dir`` argument, else from the environment
variable ``XSNN_DATA``. xsnn never downloads anything.

:func:`load_sample` needs no download: the first 200 images of the MNIST test
set ship inside the package (``xsnn/sample``, see ``ATTRIBUTION.md`` there).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "read_idx",
    "load_mnist",
    "load_sample",
    "load_images",
    "filter_classes",
    "load_image_file",
    "load_image_set",
    "mnist_dir",
    "DATA_ENV",
    "SPLITS",
    "SAMPLE_FILE",
]

log = logging.getLogger(__name__)

DATA_ENV = "XSNN_DATA"
SPLITS = ("train", "test")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension
_UBYTE = 0x08
SAMPLE_FILE = "mnist_test_first200.npz"


class DataError(ValueError):
    """A data file or folder is missing, corrupt, truncated or not what it claims to be."""


# --------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of ``path`` (gzip if its name ends in ``.gz``)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {exc} (the file is corrupt or truncated)") from None


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (raw or ``.gz``) as a uint8 array of its dimensions.

    ``magic``: the expected magic number (e.g. 2051 for images); ``None`` accepts any
    unsigned-byte IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    (found,) = struct.unpack(">I", raw[:4])
    zero, type_code, n_dims = found >> 16, (found >> 8) & 0xFF, found & 0xFF
    if zero != 0 or type_code != _UBYTE or n_dims == 0:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic number {found:#010x})")
    if magic is not None and found != magic:
        raise DataError(
            f"{path} has magic number {found} but {magic} was expected "
            f"(images: {_IMAGES_MAGIC}, labels: {_LABELS_MAGIC})"
        )
    header_end = 4 + 4 * n_dims
    if len(raw) < header_end:
        raise DataError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{n_dims}I", raw[4:header_end])
    expected = int(np.prod(dims, dtype=np.int64))
    found_len = len(raw) - header_end
    if found_len != expected:
        what = "truncated" if found_len < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: dimensions {dims} need {expected} bytes of data, found {found_len}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(dims).copy()


# --------------------------------------------------------------------------- MNIST


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The MNIST folder: ``data_dir`` if given, else ``$XSNN_DATA``; it must exist."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
        if data_dir is None:
            raise DataError(
                f"no MNIST folder given: pass data_dir=... (or --data-dir) or set the environment variable "
                f"{DATA_ENV} to a folder holding the MNIST IDX files (train-images-idx3-ubyte.gz, ...); "
                f"the 200-image sample needs no download: xsnn.data.load_sample()"
            )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"MNIST folder {folder} does not exist or is not a folder")
    return folder


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file {stem}.gz (or {stem}) not found in {folder}")


def _md5sums(folder: Path) -> dict[str, str]:
    """``file name -> md5`` from ``folder/MD5SUMS`` (empty when there is none)."""
    path = folder / "MD5SUMS"
    if not path.is_file():
        return {}
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DataError(f"{path} line {number} is not '<md5>  <file name>': {line!r}")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def _check_md5(path: Path, sums: dict[str, str]) -> None:
    expected = sums.get(path.name)
    if expected is None:
        if sums:
            log.warning("%s is not listed in MD5SUMS; its checksum is not checked", path)
        return
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != expected:
        raise DataError(
            f"{path} fails its MD5 check (expected {expected} from MD5SUMS, got {digest}): "
            f"the file is corrupt or is not the MNIST file"
        )


def load_mnist(split: str = "test", data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` (``"train"`` or ``"test"``): uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    folder = mnist_dir(data_dir)
    sums = _md5sums(folder)
    image_path, label_path = (_find(folder, stem) for stem in _FILES[split])
    for path in (image_path, label_path):
        _check_md5(path, sums)
    images = read_idx(image_path, _IMAGES_MAGIC)
    labels = read_idx(label_path, _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{image_path} holds images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path} has labels outside 0..9 (max {labels.max()})")
    log.info("loaded MNIST %s: %d images from %s", split, len(images), folder)
    return images, labels


# --------------------------------------------------------------------------- sample


def sample_path() -> Path:
    """The shipped sample file (the first 200 MNIST test images)."""
    return Path(__file__).resolve().parent / "sample" / SAMPLE_FILE


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """The first 200 MNIST test images shipped with xsnn: uint8 ``(200, 28, 28)`` and uint8 ``(200,)``."""
    path = sample_path()
    if not path.is_file():
        raise DataError(f"the shipped MNIST sample {path} is missing (broken installation?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"the shipped MNIST sample {path} is unreadable ({exc})") from None
    if (
        images.dtype != np.uint8
        or labels.dtype != np.uint8
        or images.shape[1:] != (28, 28)
        or len(images) != len(labels)
    ):
        raise DataError(f"the shipped MNIST sample {path} has unexpected arrays")
    return images, labels


def load_image_set(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and, if the file has them, labels from an ``.npz`` file (read with ``allow_pickle=False``).

    The file holds an array ``images`` of intensities 0..255, shape ``(n, *input_shape)``, and
    optionally ``labels``, ``n`` non-negative integers. Returns uint8 images and int64 labels
    (``None`` when the file has none).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            arrays = {name: archive[name] for name in ("images", "labels") if name in names}
    except (OSError, ValueError, EOFError) as exc:  # not a zip, object arrays, truncated members
        raise DataError(f"{path} is not a readable .npz file of images ({exc})") from None
    if "images" not in arrays:
        raise DataError(f"{path} has no array 'images' (found: {', '.join(names) or 'none'})")
    images, labels = arrays["images"], arrays.get("labels")
    if (
        not np.issubdtype(images.dtype, np.integer)
        or images.ndim < 2
        or len(images) == 0
        or images.min() < 0
        or images.max() > 255
    ):
        raise DataError(
            f"{path}: 'images' must be a non-empty integer array (n, ...) of intensities 0..255, "
            f"got dtype {images.dtype} and shape {images.shape}"
        )
    if labels is not None:
        if (
            labels.shape != (len(images),)
            or not np.issubdtype(labels.dtype, np.integer)
            or (labels.size and labels.min() < 0)
        ):
            raise DataError(
                f"{path}: 'labels' must hold {len(images)} non-negative integers, "
                f"got dtype {labels.dtype} and shape {labels.shape}"
            )
        labels = labels.astype(np.int64)
    return images.astype(np.uint8), labels


def load_images(
    source: str = "sample", split: str = "test", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from ``source``: ``"sample"`` (shipped; ``split`` must be ``"test"``) or ``"mnist"``."""
    if source == "sample":
        if split != "test":
            raise DataError(f"the shipped sample holds test images only, not split {split!r}")
        return load_sample()
    if source == "mnist":
        return load_mnist(split, data_dir)
    raise DataError(f"image source must be 'sample' or 'mnist', got {source!r}")


def filter_classes(
    images: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the images whose label is in ``classes``; return them with class *indices*.

    The class index of label ``classes[k]`` is ``k`` (e.g. classes ``(1, 5, 9)``
    map digit 5 to index 1). ``classes=None`` keeps everything, labels unchanged
    (as int64 indices).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if classes is None:
        return images, labels.astype(np.int64)
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or min(classes) < 0:
        raise ValueError(f"classes must be distinct non-negative labels (at least one), got {classes}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    index = np.full(max(max(classes), int(labels.max(initial=0))) + 1, -1, np.int64)
    index[classes] = np.arange(len(classes))
    mapped = index[labels.astype(np.int64)]
    keep = mapped >= 0
    return images[keep], mapped[keep]


# --------------------------------------------------------------------------- one image from a file


def load_image_file(path: str | os.PathLike) -> np.ndarray:
    """One image from a ``.npy`` file (read with ``allow_pickle=False``) or a picture file (PNG,
    JPEG, ...: read with Pillow and converted to 8-bit grey levels). The array is returned as
    stored: shape and intensity checks belong to the model that reads it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist" if not path.exists() else f"{path} is not a file")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not a readable .npy array ({exc})") from None
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise DataError(f"reading {path} needs Pillow (pip install pillow), or give a .npy file") from None
    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path} is not a readable picture or .npy file ({exc})") from None
