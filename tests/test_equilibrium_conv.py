"""One-hidden-layer CNN kernel renormalisation (equilibrium/conv.py).

References: deepbays 0.1.11 ``rkgp.CONV_1HL`` on the same arrays (through tests/deepbays_stub.py),
the one-hidden-layer FC theory (one patch covering the image), the NNGP of every patch from
``equilibrium.nngp_kernels`` (infinite channels), and finite differences of the action.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gdeq import equilibrium as eq
from gdeq import geometry
from gdeq.equilibrium import conv

TEMPS = np.array([0.05, 1.0])


@pytest.fixture(scope="module")
def mnist():
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=40, n_test=30, seed=0)


def _cifar_grey(n_train: int, n_test: int = 30):
    from gdeq.gd_dynamics.data import Preprocessing, load_task

    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    data_dir = here if (here / "cifar10_lossless_train4k.npz").is_file() else os.environ.get("GDEQ_DATA_DIR")
    try:
        return load_task("cifar10", (3, 5), n_train=n_train, n_test=n_test, seed=0, data_dir=data_dir,
                         preprocessing=Preprocessing(grayscale=True))
    except ValueError as err:
        pytest.skip(f"CIFAR-10 not available: {err}")


def _deepbays_conv(db, task, Nc, mask, temps, l0, l1, act="erf"):
    Q, err = [], []
    for T in temps:
        model = db.rkgp.CONV_1HL(Nc, T, mask, mask, l0=l0, l1=l1, act=act)
        model.preprocess(task.x_train, torch.tensor(task.y_train))
        model.Y = task.y_train  # numpy targets, so that its predictor and loss stay numpy
        model.optimize(minimizationTol=1e-12, gradTol=1e-8)
        assert model.converged
        model.predict(task.x_test)
        Q.append(model.optQ)
        err.append(model.averageLoss(task.y_test)[0])
    return np.array(Q), np.array(err)


def _parity(db, task, shape, mask, temps, act="erf"):
    Nc, l0, l1 = 20, 1.0, 1.5
    ours = conv.conv_temperature_curve(task.x_train, task.y_train, temps, width=Nc, patch_size=mask, image_shape=shape,
                                       activation=act, prior_w=l0, prior_v=l1, x_test=task.x_test, y_test=task.y_test,
                                       geometry_measures=False)
    Q, err = _deepbays_conv(db, task, Nc, mask, temps, l0, l1, act)
    assert ours.converged.all()
    scale = np.abs(ours.Q).max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_less(np.abs(ours.Q - Q) / scale, 1e-6)
    np.testing.assert_allclose(ours.test_error, err, rtol=1e-6)


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_parity_with_deepbays_conv_mnist_mask14(deepbays, mnist, act):
    _parity(deepbays, mnist, (1, 28, 28), 14, TEMPS, act)


def test_parity_with_deepbays_conv_cifar_grey_mask16(deepbays):
    _parity(deepbays, _cifar_grey(40), (1, 32, 32), 16, TEMPS)


@pytest.mark.slow
def test_parity_with_deepbays_conv_mnist_mask7(deepbays, mnist):
    """16 patches: deepbays' fsolve runs over 256 unknowns with a finite-difference Jacobian (minutes)."""
    _parity(deepbays, mnist, (1, 28, 28), 7, np.array([0.1]))


@pytest.mark.slow
def test_parity_with_deepbays_conv_cifar_grey_mask8(deepbays):
    _parity(deepbays, _cifar_grey(40), (1, 32, 32), 8, np.array([0.1]))


def test_gradient_and_hessian_match_finite_differences(mnist):
    pb = conv.conv_problem(mnist.x_train, mnist.y_train, channels=10, patch_size=14, image_shape=(1, 28, 28),
                           prior_v=0.8)
    rng = np.random.default_rng(0)
    M = rng.normal(size=(4, 4)) * 0.2
    Q = np.eye(4) * 1.3 + M @ M.T
    T = 0.05
    G = conv.conv_action_gradient(pb, T, Q)
    H = conv.conv_action_hessian(pb, T, Q)
    h = 1e-6
    i, j = pb.pairs
    for p in range(pb.n_vars):
        E = np.zeros((4, 4))
        E[i[p], j[p]] = E[j[p], i[p]] = 1.0
        fd = (conv.conv_effective_action(pb, T, Q + h * E) - conv.conv_effective_action(pb, T, Q - h * E)) / (2 * h)
        assert np.sum(G * E) == pytest.approx(fd, rel=1e-6, abs=1e-8)
        gp = pb.q_vector(conv.conv_action_gradient(pb, T, Q + h * E) * (2.0 - np.eye(4)))
        gm = pb.q_vector(conv.conv_action_gradient(pb, T, Q - h * E) * (2.0 - np.eye(4)))
        np.testing.assert_allclose(H[:, p], (gp - gm) / (2 * h), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("channels_in", [1, 3])
def test_one_patch_is_the_fully_connected_theory(channels_in):
    """patch_size = image side: one patch, Q is 1×1 and the CNN is the FC network of width Nc."""
    rng = np.random.default_rng(1)
    P, side = 30, 6
    x = rng.normal(size=(P, channels_in * side * side))
    y = np.where(np.arange(P) % 2 == 0, 1.0, -1.0)
    xt = rng.normal(size=(20, channels_in * side * side))
    yt = np.where(np.arange(20) % 2 == 0, 1.0, -1.0)
    temps = np.array([0.01, 0.3, 3.0])
    ours = conv.conv_temperature_curve(x, y, temps, width=15, patch_size=side, image_shape=(channels_in, side, side),
                                       prior_w=1.3, prior_v=0.6, x_test=xt, y_test=yt)
    ref = eq.temperature_curve(x, y, temps, width=15, prior_w=1.3, prior_v=0.6, x_test=xt, y_test=yt)
    np.testing.assert_allclose(ours.Q[:, 0, 0], ref.Q, rtol=1e-9)
    np.testing.assert_allclose(ours.test_error, ref.test_error, rtol=1e-9)
    np.testing.assert_allclose(ours.train_error, ref.train_error, rtol=1e-8)


def test_infinite_channels_is_the_local_nngp(mnist):
    """Nc → ∞: Q → I and the kernel is the local NNGP (1/(λ1 Np)) Σ_i K(x_i, x'_i), each K_ii
    computed by equilibrium.nngp_kernels on that patch's pixels."""
    m, lw, lv = 14, 1.2, 0.7
    cur = conv.conv_temperature_curve(mnist.x_train, mnist.y_train, [0.1], width=1e9, patch_size=m,
                                      image_shape=(1, 28, 28), prior_w=lw, prior_v=lv)
    np.testing.assert_allclose(cur.Q[0], np.eye(4), atol=1e-6)
    imgs = mnist.x_train.reshape(-1, 28, 28)
    Ks = [eq.nngp_kernels(imgs[:, r:r + m, c:c + m].reshape(len(imgs), -1), prior_w=lw).train
          for r in (0, 14) for c in (0, 14)]
    K = sum(Ks) / (lv * 4)
    np.testing.assert_allclose(cur.kernel_geometry["centroid_distance"][0],
                               float(geometry.centroid_distance(K, mnist.y_train)), rtol=1e-6)
    assert cur.reference["centroid_distance"] == pytest.approx(float(geometry.centroid_distance(K, mnist.y_train)),
                                                               rel=1e-12)
    np.testing.assert_allclose(cur.patch_geometry["centroid_distance"],
                               [float(geometry.centroid_distance(k, mnist.y_train)) for k in Ks], rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_size=5, image_shape=(1, 28, 28)), "patch_size"),
    (dict(patch_size=7, image_shape=(1, 32, 32)), "image_shape"),
    (dict(patch_size=7, image_shape=(28, 28)), "image_shape"),
    (dict(patch_size=7, image_shape=(1, 28, 28), width=0), "width"),
    (dict(patch_size=7, image_shape=(1, 28, 28), activation="tanh"), "activation"),
])
def test_bad_input_names_the_parameter(mnist, kwargs, match):
    kw = dict(width=10)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv.conv_temperature_curve(mnist.x_train, mnist.y_train, TEMPS, **kw)


def test_colour_patches_are_channels_last():
    """load_task flattens colour images as (H, W, C): each patch holds all C channels of its m × m
    pixels. The local NNGP reference is rebuilt patch by patch from the (H, W, C) images."""
    rng = np.random.default_rng(2)
    P, H, C, m = 24, 8, 3, 4
    imgs = rng.normal(size=(P, H, H, C))
    y = np.where(np.arange(P) % 2 == 0, 1.0, -1.0)
    cur = conv.conv_temperature_curve(imgs.reshape(P, -1), y, [0.1], width=10, patch_size=m, image_shape=(C, H, H))
    Ks = [eq.nngp_kernels(imgs[:, r:r + m, c:c + m, :].reshape(P, -1)).train for r in (0, m) for c in (0, m)]
    np.testing.assert_allclose(cur.patch_geometry["centroid_distance"],
                               [float(geometry.centroid_distance(k, y)) for k in Ks], rtol=1e-12)
