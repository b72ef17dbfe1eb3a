"""Fashion-MNIST IDX loading: formats, search order and every broken-file message."""
import gzip
import os
import struct

import pytest
import torch

from convkit import data


def make_split(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), dtype=torch.uint8, generator=g)
    return images, labels


def write_dataset(directory, n_train=12, n_test=5, compress=True):
    """Writes the four files; returns the uint8 tensors written."""
    os.makedirs(directory, exist_ok=True)
    ext = ".gz" if compress else ""
    splits = {"train": make_split(n_train, 1), "test": make_split(n_test, 2)}
    for split, (images, labels) in splits.items():
        prefix = "train" if split == "train" else "t10k"
        data.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{ext}"), images)
        data.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{ext}"), labels)
    return splits


@pytest.fixture
def no_system(monkeypatch, tmp_path):
    """No $CONVKIT_DATA and an empty system directory, so only what a test writes is found."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "system"))


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_round_trip(tmp_path, no_system, compress):
    written = write_dataset(tmp_path, compress=compress)
    train_x, train_y, test_x, test_y = data.load_fashion_mnist(tmp_path)
    assert train_x.shape == (12, 1, 28, 28) and test_x.shape == (5, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert 0 <= float(train_x.min()) and float(train_x.max()) <= 1
    torch.testing.assert_close(train_x[:, 0], written["train"][0].float() / 255)
    torch.testing.assert_close(test_y, written["test"][1].long())


def test_read_idx_detects_gzip_by_content(tmp_path):
    images, _ = make_split(3)
    path = tmp_path / "images"  # no .gz suffix, gzipped content
    data.write_idx(path, images, compress=True)
    assert torch.equal(data.read_idx(path, 3), images)


def test_search_order(tmp_path, monkeypatch):
    for name, n in (("arg", 3), ("env", 4), ("system", 6)):
        write_dataset(tmp_path / name, n_train=n)
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert len(data.load_fashion_mnist(tmp_path / "arg")[1]) == 3
    assert len(data.load_fashion_mnist()[1]) == 4
    assert len(data.load_fashion_mnist(tmp_path / "empty")[1]) == 4  # a data_dir without the files falls through
    monkeypatch.delenv(data.ENV_VAR)
    assert len(data.load_fashion_mnist()[1]) == 6


def test_torchvision_layout(tmp_path, no_system):
    write_dataset(tmp_path / "FashionMNIST" / "raw", n_train=7)
    assert len(data.load_fashion_mnist(tmp_path)[1]) == 7


def test_not_found_says_how_to_get_it(tmp_path, no_system):
    with pytest.raises(FileNotFoundError) as e:
        data.load_fashion_mnist(tmp_path)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and data.ENV_VAR in msg and str(tmp_path) in msg


def test_incomplete_directory_names_missing_file(tmp_path, no_system):
    write_dataset(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_fashion_mnist(tmp_path)


def header(ndim, *shape, dtype=data.UBYTE):
    return struct.pack(f">HBB{len(shape)}I", 0, dtype, ndim, *shape)


IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


@pytest.mark.parametrize("name,blob,message", [
    (IMAGES, header(3, 2, 28, 28) + bytes(28 * 28), "truncated: header promises 1568 bytes"),
    (IMAGES, header(3, 2, 28)[:10], "truncated: 10 bytes, the header alone needs 16"),
    (IMAGES, b"\x00\x08", "too short for an IDX header"),
    (IMAGES, header(1, 12) + bytes(12), "not an IDX images file: magic number 0x00000801"),
    (IMAGES, b"PK\x03\x04" + bytes(100), "not an IDX images file"),
    (IMAGES, header(3, 12, 28, 28, dtype=0x0D) + bytes(12 * 28 * 28 * 4), "not an IDX images file"),
    (IMAGES, header(3, 12, 32, 32) + bytes(12 * 32 * 32), "items of size 32x32, expected 28x28"),
    (IMAGES, header(3, 12, 28, 28) + bytes(12 * 28 * 28 + 3), "3 bytes of trailing data"),
    (IMAGES, header(3, 11, 28, 28) + bytes(11 * 28 * 28), "holds 11 images but .* holds 12 labels"),
    (LABELS, header(3, 12, 28, 28) + bytes(12 * 28 * 28), "not an IDX labels file"),
    (LABELS, header(1, 12) + bytes([11] * 12), "label 11 out of range"),
])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_broken_files(tmp_path, no_system, name, blob, message, compress):
    write_dataset(tmp_path, compress=compress)
    path = tmp_path / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(blob) if compress else blob)
    with pytest.raises(data.IDXError, match=message) as e:
        data.load_fashion_mnist(tmp_path)
    assert name in str(e.value)


def test_truncated_gzip_stream(tmp_path, no_system):
    write_dataset(tmp_path)
    path = tmp_path / (IMAGES + ".gz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.IDXError, match=f"{IMAGES}.gz: corrupt or truncated gzip"):
        data.load_fashion_mnist(tmp_path)


def test_write_idx_rejects_non_bytes(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        data.write_idx(tmp_path / "x", torch.zeros(3))


def test_text_labels():
    assert data.get_fashion_mnist_labels(torch.tensor([0, 9])) == ["t-shirt", "ankle boot"]


@pytest.mark.skipif(not os.path.isdir(data.SYSTEM_DIR), reason="dataset-fashion-mnist is not installed")
def test_installed_dataset():
    train_x, train_y, test_x, test_y = data.load_fashion_mnist(data.SYSTEM_DIR)
    assert train_x.shape == (60000, 1, 28, 28) and test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test_y), torch.full((10,), 1000))
