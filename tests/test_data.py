"""The real-data layer: sources, task construction, preprocessing invariants and bad input."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from gdeq import gd_dynamics
from gdeq.gd_dynamics import Preprocessing, load_task

RAW = Preprocessing(flatten=False, scale_to_unit=False, center=False, normalize="none")


def test_mnist_from_shared_data_shapes_counts_and_pixel_mean(shared_data_dir):
    task = load_task("mnist", tuple(range(10)), 60000, 10000, selection="first",
                     data_dir=shared_data_dir, preprocessing=RAW)
    assert task.x_train.shape == (60000, 28, 28) and task.y_train.shape == (60000, 10)
    assert task.x_train.mean() == pytest.approx(33.318, abs=0.01)  # SOURCES.md: 33.318
    assert task.x_test.mean() == pytest.approx(33.791, abs=0.01)
    np.testing.assert_array_equal(np.bincount(task.labels_train),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert task.source.startswith(str(shared_data_dir))


def test_cifar10_channel_means_and_grayscale(shared_data_dir):
    task = load_task("cifar10", tuple(range(10)), 4000, 1000, selection="first",
                     data_dir=shared_data_dir, preprocessing=RAW)
    assert task.x_train.shape == (4000, 32, 32, 3)
    np.testing.assert_allclose(task.x_train.mean((0, 1, 2)), [125.36, 122.85, 113.39], atol=0.02)
    gray = load_task("cifar10", (3, 5), 50, 50, data_dir=shared_data_dir,
                     preprocessing=Preprocessing(grayscale=True, center=False, normalize="none", scale_to_unit=False))
    assert gray.x_train.shape == (50, 1024)
    assert 0 <= gray.x_train.min() and gray.x_train.max() <= 255


@pytest.fixture(scope="session")
def mnist_dir():
    """``../shared/data`` when it is there, else None: the embedded MNIST subset does for these tests."""
    from conftest import SHARED_DATA

    return SHARED_DATA if (SHARED_DATA / "mnist_train.npz").is_file() else None


def _train_labels(data_dir) -> np.ndarray:
    if data_dir is None:
        return np.load(gd_dynamics.data._embedded_path())["train_labels"]
    return np.load(data_dir / "mnist_train.npz")["labels"]


def test_binary_task_balanced_deterministic_and_disjoint(mnist_dir):
    shared_data_dir = mnist_dir
    a = load_task("mnist", (3, 5), 200, 100, seed=7, data_dir=shared_data_dir)
    b = load_task("mnist", (3, 5), 200, 100, seed=7, data_dir=shared_data_dir)
    c = load_task("mnist", (3, 5), 200, 100, seed=8, data_dir=shared_data_dir)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.indices_train, c.indices_train)
    assert set(np.unique(a.y_train)) == {-1.0, 1.0}
    assert (a.y_train == 1).sum() == 100 and (a.y_test == 1).sum() == 50
    raw = load_task("mnist", (3, 5), 200, 100, seed=7, data_dir=shared_data_dir, preprocessing=RAW)
    # first class is +1: digit 3
    assert set(_train_labels(shared_data_dir)[raw.indices_train[raw.y_train == 1]]) == {3}
    # no training image appears in the test set
    train_rows = {r.tobytes() for r in raw.x_train.reshape(200, -1)}
    assert not any(r.tobytes() in train_rows for r in raw.x_test.reshape(100, -1))


def test_preprocessing_invariants(mnist_dir):
    shared_data_dir = mnist_dir
    task = load_task("mnist", (4, 9), 300, 100, data_dir=shared_data_dir)
    n0 = task.input_dim
    np.testing.assert_allclose((task.x_train**2).sum(1), n0, rtol=1e-12)
    np.testing.assert_allclose((task.x_test**2).sum(1), n0, rtol=1e-12)
    centred_only = load_task("mnist", (4, 9), 300, 100, data_dir=shared_data_dir,
                             preprocessing=Preprocessing(normalize="none"))
    np.testing.assert_allclose(centred_only.x_train.mean(0), 0.0, atol=1e-12)
    std = load_task("mnist", (4, 9), 300, 100, data_dir=shared_data_dir, preprocessing=Preprocessing.inversion_paper())
    moving = std.x_train.std(0) > 0
    np.testing.assert_allclose(std.x_train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.x_train.std(0)[moving], 1.0, rtol=1e-10)
    pca = load_task("mnist", (4, 9), 300, 100, data_dir=shared_data_dir,
                    preprocessing=Preprocessing(pca_components=20, normalize="none"))
    assert pca.x_train.shape == (300, 20)
    cov = pca.x_train.T @ pca.x_train / 300
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-10)  # principal axes
    assert np.all(np.diff(np.diag(cov)) <= 1e-12)  # sorted by variance


def test_groups_parity_and_first_n_in_source_order():
    task = load_task("mnist", "parity", 8192, 100, selection="first", preprocessing=RAW)
    assert task.source == "embedded MNIST subset"
    np.testing.assert_array_equal(task.indices_train, np.arange(8192))
    digits = np.load(gd_dynamics.data._embedded_path())["train_labels"][:8192]
    np.testing.assert_array_equal(task.y_train, np.where(digits % 2 == 0, 1.0, -1.0))
    assert task.classes == ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))


def test_one_hot_for_many_classes_and_per_class_counts():
    task = load_task("mnist", (0, 1, 2), 40, 10, per_class=True)
    assert task.y_train.shape == (120, 3)
    np.testing.assert_array_equal(task.y_train.sum(0), [40, 40, 40])
    np.testing.assert_array_equal(task.y_train.argmax(1), task.labels_train)


def test_teacher_task_is_balanced_gaussian_and_reproducible():
    a = load_task("teacher", (0, 1), 400, 200, seed=3, teacher_dim=50,
                  preprocessing=Preprocessing(center=False, normalize="none"))
    b = load_task("teacher", (0, 1), 400, 200, seed=3, teacher_dim=50,
                  preprocessing=Preprocessing(center=False, normalize="none"))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (400, 50) and a.y_train.sum() == 0
    assert a.x_train.var() == pytest.approx(1.0, abs=0.05)
    assert not np.any(np.isin(a.x_test[:, 0], a.x_train[:, 0]))


def test_embedded_default_works_offline(monkeypatch):
    """No data dir, no network: the embedded MNIST subset is used."""
    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    monkeypatch.setenv("GDEQ_OFFLINE", "0")  # let it *try* torchvision's download ...

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(socket, "create_connection", no_network)  # ... and fail like offline
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("GDEQ_TORCHVISION_ROOT", "/nonexistent-gdeq-test-root")
    task = load_task("mnist", (3, 5), 400, 200)
    assert task.source == "embedded MNIST subset"
    assert task.x_train.shape == (400, 784)
    counts = np.bincount(np.load(gd_dynamics.data._embedded_path())["train_labels"], minlength=10)
    assert counts.sum() >= 2000 and np.all(counts > 0)


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_torchvision_layout_in_data_dir(tmp_path, shared_data_dir):
    """A data dir in torchvision's MNIST layout is read through torchvision."""
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    src_train, src_test = np.load(shared_data_dir / "mnist_train.npz"), np.load(shared_data_dir / "mnist_test.npz")
    for split, src in (("train", src_train), ("t10k", src_test)):
        _write_idx(raw_dir / f"{split}-images-idx3-ubyte", src["images"][:300])
        _write_idx(raw_dir / f"{split}-labels-idx1-ubyte", src["labels"][:300])
    task = load_task("mnist", (0, 1), 20, 20, data_dir=tmp_path, preprocessing=RAW)
    assert task.source.startswith("torchvision MNIST")
    np.testing.assert_array_equal(task.x_train, src_train["images"][:300][task.indices_train])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="imagenet"), "dataset: must be one of"),
        (dict(classes=(3, 10)), r"classes: mnist has classes 0..9, got \[10\]"),
        (dict(classes=(3, 3)), "classes: each class may appear once"),
        (dict(classes=(3,)), "classes: need at least two"),
        (dict(n_train=0), "n_train: must be a positive integer"),
        (dict(n_test=-5), "n_test: must be a positive integer"),
        (dict(classes=(5, 3), n_train=2000), "n_train: not enough mnist train examples.*Sources tried"),
        (dict(dataset="fashion-mnist"), "n_train: not enough fashion-mnist.*fashion-mnist_train.npz"),
        (dict(selection="random"), "selection: must be"),
    ],
)
def test_bad_input_raises_clear_message(kwargs, message, monkeypatch, tmp_path):
    monkeypatch.setenv("GDEQ_TORCHVISION_ROOT", str(tmp_path))
    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match=message):
        load_task(**kwargs)
