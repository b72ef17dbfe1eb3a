"""Fashion-MNIST from its IDX files (gzipped or raw), with no download and no torchvision."""
import gzip
import os
import struct

import torch

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "CONVKIT_DATA"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Where other tools keep the same files under a data root (torchvision, the textbook's d2l.load_data_fashion_mnist).
SUBDIRS = ("", os.path.join("FashionMNIST", "raw"), "fashion-mnist")
TEXT_LABELS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
HOW_TO_GET = (f"install the Debian package (sudo apt-get install dataset-fashion-mnist, into {SYSTEM_DIR}) "
              f"or put the four IDX files (gzipped or not) in a directory and pass --data-dir DIR or set "
              f"{ENV_VAR}=DIR")

UBYTE = 0x08


class IDXError(ValueError):
    """An IDX file that is truncated, foreign or inconsistent with its partner."""


def _read_bytes(path):
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != b"\x1f\x8b":  # not gzip: raw IDX
            return f.read()
        try:
            return gzip.GzipFile(fileobj=f).read()
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            raise IDXError(f"{path}: corrupt or truncated gzip stream ({e})") from None


def read_idx(path, ndim, expect_shape=None):
    """Reads an unsigned-byte IDX file of ndim dimensions into a uint8 tensor.

    expect_shape, when given, fixes every dimension but the first (the count)."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise IDXError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != UBYTE or dims != ndim:
        kind = {1: "labels", 3: "images"}.get(ndim, f"{ndim}-D")
        raise IDXError(f"{path}: not an IDX {kind} file: magic number 0x{data[:4].hex()}, expected "
                       f"0x{UBYTE << 8 | ndim:08x} (unsigned bytes, {ndim} dimension(s))")
    if len(data) < header:
        raise IDXError(f"{path}: truncated: {len(data)} bytes, the header alone needs {header}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if expect_shape is not None and tuple(shape[1:]) != tuple(expect_shape):
        raise IDXError(f"{path}: items of size {'x'.join(map(str, shape[1:]))}, expected "
                       f"{'x'.join(map(str, expect_shape))}")
    size = 1
    for n in shape:
        size *= n
    if len(data) - header < size:
        raise IDXError(f"{path}: truncated: header promises {size} bytes of data for shape {tuple(shape)}, "
                       f"found {len(data) - header}")
    if len(data) - header > size:
        raise IDXError(f"{path}: {len(data) - header - size} bytes of trailing data after shape {tuple(shape)}")
    # bytearray: frombuffer wants a writable buffer, and the tensor then owns its memory.
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _candidates(data_dir):
    roots = []
    if data_dir is not None:
        roots.append((os.fspath(data_dir), "data_dir"))
    if os.environ.get(ENV_VAR):
        roots.append((os.environ[ENV_VAR], f"${ENV_VAR}"))
    roots.append((SYSTEM_DIR, "the system dataset"))
    for root, origin in roots:
        for sub in SUBDIRS:
            yield os.path.join(root, sub) if sub else root, origin


def find_fashion_mnist(data_dir=None):
    """The paths of the four files: the first directory, in the order data_dir, $CONVKIT_DATA,
    /usr/share/datasets/fashion-mnist, that holds any of them (it must then hold all four)."""
    looked = []
    for directory, origin in _candidates(data_dir):
        looked.append(directory)
        paths = {key: _find(directory, stem) for key, stem in FILES.items()}
        found = [p for p in paths.values() if p]
        if not found:
            continue
        missing = [FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
        if missing:
            raise FileNotFoundError(f"Fashion-MNIST in {directory} ({origin}) is incomplete: missing "
                                    f"{', '.join(missing)}. To get the data, {HOW_TO_GET}.")
        return paths
    raise FileNotFoundError(f"Fashion-MNIST not found (looked in {', '.join(looked)}). To get it, {HOW_TO_GET}.")


def _load_split(images_path, labels_path):
    images = read_idx(images_path, 3, expect_shape=(28, 28))
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise IDXError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                       f"{labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) >= len(TEXT_LABELS):
        raise IDXError(f"{labels_path}: label {int(labels.max())} out of range 0..{len(TEXT_LABELS) - 1}")
    return images.unsqueeze(1).float().div_(255), labels.long()


def load_fashion_mnist(data_dir=None):
    """(train_images, train_labels, test_images, test_labels): images float32 in [0, 1] of
    shape N x 1 x 28 x 28, labels int64 in 0..9. See find_fashion_mnist for where it looks."""
    paths = find_fashion_mnist(data_dir)
    train = _load_split(paths["train_images"], paths["train_labels"])
    test = _load_split(paths["test_images"], paths["test_labels"])
    return train + test


def write_idx(path, array, compress=None):
    """Writes a uint8 tensor (or array-like) as an IDX file; gzipped when compress is True, or by
    default when path ends in .gz. The inverse of read_idx, for subsets and tests."""
    t = torch.as_tensor(array)
    if t.dtype != torch.uint8:
        raise TypeError(f"write_idx: expected uint8 data, got {t.dtype}")
    blob = struct.pack(f">HBB{t.dim()}I", 0, UBYTE, t.dim(), *t.shape) + t.contiguous().numpy().tobytes()
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(blob, compresslevel=1) if compress else blob)


def get_fashion_mnist_labels(labels):
    """Text labels, as the textbook's d2l.get_fashion_mnist_labels."""
    return [TEXT_LABELS[int(i)] for i in labels]
