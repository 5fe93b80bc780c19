"""MNIST IDX reader, integrity checks, data folder resolution and the shipped sample."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from xsnn import data
from xsnn.data import DataError, filter_classes, load_images, load_mnist, load_sample, read_idx

MNIST = os.environ.get("XSNN_DATA")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file (independent of the reader under test)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (0x0800 | array.ndim)
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(
    folder: Path, split: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = True, md5: bool = True
) -> None:
    stems = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }[split]
    lines = []
    for stem, array in zip(stems, (images, labels)):
        content = idx_bytes(array)
        name = stem + (".gz" if gz else "")
        if gz:
            content = gzip.compress(content)
        (folder / name).write_bytes(content)
        lines.append(f"{hashlib.md5(content).hexdigest()}  {name}")
    if md5:
        with open(folder / "MD5SUMS", "a") as handle:
            handle.write("\n".join(lines) + "\n")


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=7, dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_roundtrip_gz_and_raw(tmp_path, tiny, gz):
    images, labels = tiny
    write_mnist(tmp_path, "test", images, labels, gz=gz)
    got_images, got_labels = load_mnist("test", tmp_path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    assert got_images.shape == (7, 28, 28) and got_labels.shape == (7,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_without_md5sums(tmp_path, tiny):
    write_mnist(tmp_path, "train", *tiny, md5=False)
    np.testing.assert_array_equal(load_mnist("train", tmp_path)[1], tiny[1])


def test_env_variable(tmp_path, tiny, monkeypatch):
    write_mnist(tmp_path, "test", *tiny)
    monkeypatch.setenv("XSNN_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_mnist("test")[0], tiny[0])
    monkeypatch.delenv("XSNN_DATA")
    with pytest.raises(DataError, match="XSNN_DATA"):
        load_mnist("test")


def test_missing_folder_and_files(tmp_path, tiny):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("test", tmp_path / "nowhere")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz .* not found"):
        load_mnist("test", tmp_path)
    with pytest.raises(DataError, match="split"):
        load_mnist("validation", tmp_path)


def test_md5_mismatch(tmp_path, tiny):
    write_mnist(tmp_path, "test", *tiny)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DataError, match="MD5"):
        load_mnist("test", tmp_path)


def test_wrong_magic(tmp_path, tiny):
    images, labels = tiny
    write_mnist(tmp_path, "test", images, labels, gz=False, md5=False)
    # labels written where images belong: a valid IDX file with the wrong magic number
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match="magic number 2049 but 2051"):
        load_mnist("test", tmp_path)
    (tmp_path / "junk").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "junk")


def test_truncated_and_too_long(tmp_path, tiny):
    images, _ = tiny
    content = idx_bytes(images)
    (tmp_path / "cut").write_bytes(content[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "head").write_bytes(content[:9])
    with pytest.raises(DataError, match="truncated inside its header"):
        read_idx(tmp_path / "head")
    (tmp_path / "long").write_bytes(content + b"\0")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(tmp_path / "long")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(content)[:-20])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "notgz.gz").write_bytes(content)
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "notgz.gz")


def test_images_labels_mismatch(tmp_path, tiny):
    images, labels = tiny
    write_mnist(tmp_path, "test", images, labels[:5], md5=False)
    with pytest.raises(DataError, match="7 images but .* 5 labels"):
        load_mnist("test", tmp_path)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_sample():
    images, labels = load_sample()
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (200,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert (data.sample_path().parent / "ATTRIBUTION.md").is_file()
    got = load_images("sample")
    np.testing.assert_array_equal(got[0], images)
    with pytest.raises(DataError, match="test images only"):
        load_images("sample", "train")
    with pytest.raises(DataError, match="source"):
        load_images("web")


@pytest.mark.skipif(MNIST is None, reason="MNIST not available (set XSNN_DATA)")
def test_real_mnist_and_sample_match():
    images, labels = load_mnist("test", MNIST)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    sample_images, sample_labels = load_sample()
    np.testing.assert_array_equal(sample_images, images[:200])
    np.testing.assert_array_equal(sample_labels, labels[:200])


def test_filter_classes():
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    labels = np.array([1, 5, 9, 0, 5, 3], np.uint8)
    kept, idx = filter_classes(images, labels, (1, 5, 9))
    np.testing.assert_array_equal(idx, [0, 1, 2, 1])
    np.testing.assert_array_equal(kept, images[[0, 1, 2, 4]])
    _, all_idx = filter_classes(images, labels, None)
    np.testing.assert_array_equal(all_idx, labels)
    with pytest.raises(ValueError, match="distinct"):
        filter_classes(images, labels, (1, 1))
    with pytest.raises(ValueError, match="labels"):
        filter_classes(images, labels[:3], (1,))
