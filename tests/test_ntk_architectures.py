"""Infinite-width NTK of the deep FC network and of the one-hidden-layer CNN (equilibrium/ntk.py)
against autograd tangent kernels Σ_θ ∂f/∂θ ∂f'/∂θ of single wide networks in gdeq's parameterisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdeq.equilibrium import tangent_kernels
from gdeq.equilibrium.conv import extract_patches
from gdeq.geometry import activation as sigma


def _gram(f: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    rows = []
    for mu in range(len(f)):
        grads = torch.autograd.grad(f[mu], params, retain_graph=True)
        rows.append(torch.cat([g.flatten() for g in grads]))
    G = torch.stack(rows)
    return G @ G.T


def _empirical_fc(X: torch.Tensor, widths, lam0: float, lams, activation: str, seed: int) -> torch.Tensor:
    """h¹ = W¹x/√N0, h^{ℓ+1} = W^{ℓ+1}σ(h^ℓ)/√N_ℓ, f = v·σ(h^L)/√N_L; W¹ ~ N(0, 1/λ0), W^{ℓ+1} ~ N(0, 1/λ_ℓ),
    v ~ N(0, 1/λ_L) (the model of equilibrium.deep / gd_dynamics ReplicaFC)."""
    gen, s = torch.Generator().manual_seed(seed), sigma(activation)
    fan_in, Ws = X.shape[1], []
    for N, lam in zip(widths, [lam0, *lams[:-1]]):
        Ws.append((torch.randn(N, fan_in, generator=gen, dtype=torch.float64) / math.sqrt(lam)).requires_grad_())
        fan_in = N
    v = (torch.randn(fan_in, generator=gen, dtype=torch.float64) / math.sqrt(lams[-1])).requires_grad_()
    h = X @ Ws[0].T / math.sqrt(X.shape[1])
    for W in Ws[1:]:
        h = s(h) @ W.T / math.sqrt(W.shape[1])
    return _gram(s(h) @ v / math.sqrt(fan_in), [*Ws, v])


def _empirical_cnn(X: torch.Tensor, shape, m: int, Nc: int, lam0: float, lam1: float, activation: str,
                   seed: int) -> torch.Tensor:
    """f = Σ_c Σ_i v_ci σ(w_c·x_i/√(C m²))/√(Nc Np), w_c ~ N(0, I/λ0), v_ci ~ N(0, 1/λ1) (equilibrium.conv)."""
    gen, s = torch.Generator().manual_seed(seed), sigma(activation)
    Xp = extract_patches(X, shape, m)
    _, Np, d = Xp.shape
    w = (torch.randn(Nc, d, generator=gen, dtype=torch.float64) / math.sqrt(lam0)).requires_grad_()
    v = (torch.randn(Nc, Np, generator=gen, dtype=torch.float64) / math.sqrt(lam1)).requires_grad_()
    f = (s(torch.einsum("pid,cd->pci", Xp, w) / math.sqrt(d)) * v).sum((1, 2)) / math.sqrt(Nc * Np)
    return _gram(f, [w, v])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_deep_fc_ntk_is_the_tangent_kernel_of_a_wide_two_layer_network(activation):
    """Two hidden layers, λ0 ≠ λ1 ≠ λ2 so every prior factor of Θ_ℓ = G_ℓ + Ġ_ℓΘ_{ℓ−1}/λ_ℓ is exercised;
    the empirical kernel approaches Θ as 1/√N (width 500 → 4000, mean over two seeds)."""
    X = torch.as_tensor(np.random.default_rng(0).standard_normal((8, 5)))
    lam0, lams = 2.0, [0.5, 1.5]
    theory = tangent_kernels(X, width=[10, 10], activation=activation, prior_w=lam0, prior_v=lams).ntk_train
    err = {N: np.mean([_rel(_empirical_fc(X, [N, N], lam0, lams, activation, s), theory) for s in range(2)])
           for N in (500, 4000)}
    assert err[4000] < 0.08
    assert err[4000] < 0.7 * err[500]
    # and not the one-hidden-layer kernel (the test can tell depth apart)
    one = tangent_kernels(X, activation=activation, prior_w=lam0, prior_v=lams[0]).ntk_train
    assert _rel(one, theory) > 0.2


def test_deep_fc_kernels_reduce_to_one_layer_and_follow_the_nngp_recursion():
    """width=[N] (or an int) reproduces the one-hidden-layer kernels bit for bit; a deep NNGP equals
    equilibrium.deep's prior recursion K_ℓ = κ(K_{ℓ−1})/λ_ℓ; for the deep linear network (σ = identity)
    Θ_L = Σ_k Π_{j≠k} λ_j⁻¹ · x·x'/N0 (each layer's weights contribute the product of the others' priors)."""
    from gdeq.equilibrium.deep import deep_kernels
    from gdeq.equilibrium.kernels import input_covariance

    rng = np.random.default_rng(3)
    x, xt = rng.standard_normal((6, 4)), rng.standard_normal((3, 4))
    base = tangent_kernels(x, xt, activation="tanh", prior_w=1.7, prior_v=0.6)
    for width in (50, [50]):
        tk = tangent_kernels(x, xt, activation="tanh", prior_w=1.7, prior_v=0.6, width=width)
        for name in ("nngp_train", "ntk_train", "nngp_test_train", "ntk_test", "hidden_train"):
            assert torch.equal(getattr(tk, name), getattr(base, name))
    tk = tangent_kernels(x, xt, activation="erf", prior_w=1.7, prior_v=[0.6, 2.0, 1.1], width=[5, 5, 5])
    C = input_covariance(torch.as_tensor(x), torch.as_tensor(x), 1.7)
    _, K = deep_kernels(C, np.ones(3), (0.6, 2.0, 1.1), "erf")
    torch.testing.assert_close(tk.nngp_train, K[-1], rtol=1e-10, atol=1e-12)
    lam = [1.7, 0.6, 2.0, 1.1]
    lin = tangent_kernels(x, activation="identity", prior_w=lam[0], prior_v=lam[1:], width=[5, 5, 5])
    xx = torch.as_tensor(x @ x.T / 4)
    expected = sum(math.prod(1 / lam[j] for j in range(4) if j != k) for k in range(4)) * xx
    torch.testing.assert_close(lin.ntk_train, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_cnn_ntk_is_the_tangent_kernel_of_a_wide_cnn(activation):
    """Non-overlapping 2×2 patches of (2, 4, 4) images, Nc channels; the cross-patch terms vanish:
    Θ = (1/Np) Σ_i [K_ii + (λ0/λ1) C_ii K̇_ii]; error ∝ 1/√Nc (1000 → 20000 channels)."""
    X = torch.as_tensor(np.random.default_rng(0).standard_normal((8, 32)))
    shape, lam0, lam1 = (2, 4, 4), 2.0, 0.5
    tk = tangent_kernels(X, width=20000, architecture="cnn", patch_size=2, image_shape=shape,
                         activation=activation, prior_w=lam0, prior_v=lam1)
    err = {N: np.mean([_rel(_empirical_cnn(X, shape, 2, N, lam0, lam1, activation, s), tk.ntk_train)
                       for s in range(2)]) for N in (1000, 20000)}
    assert err[20000] < 0.03
    assert err[20000] < 0.5 * err[1000]
    # the prior output covariance of the CNN: (1/(λ1 Np)) Σ_i K_ii, sampled over 4000 networks of 200 channels
    gen, s = torch.Generator().manual_seed(5), sigma(activation)
    Xp = extract_patches(X, shape, 2)
    Nc, R = 200, 4000
    w = torch.randn(R, Nc, 8, generator=gen, dtype=torch.float64) / math.sqrt(lam0)
    v = torch.randn(R, Nc, 4, generator=gen, dtype=torch.float64) / math.sqrt(lam1)
    f = (s(torch.einsum("pid,rcd->rpci", Xp, w) / math.sqrt(8)) * v[:, None]).sum((2, 3)) / math.sqrt(Nc * 4)
    sampled = f.T @ f / R
    assert torch.abs(sampled - tk.nngp_train).max() < 5 * float(torch.diagonal(tk.nngp_train).max()) * math.sqrt(2 / R)


@pytest.mark.parametrize(("kwargs", "word"), [
    (dict(width=[10, 0]), "width"), (dict(width="wide"), "width"), (dict(width=[5, 5], prior_v=[1.0]), "prior_v"),
    (dict(architecture="rnn"), "architecture"), (dict(architecture="cnn", patch_size=3, image_shape=(1, 2, 2)), "patch_size"),
    (dict(architecture="cnn", patch_size=1, image_shape=(1, 3, 3)), "image_shape"),
    (dict(architecture="cnn", width=[4, 4], patch_size=1, image_shape=(1, 2, 2)), "width"),
])
def test_bad_architecture_input_is_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        tangent_kernels(np.ones((3, 4)), **kwargs)


def test_deep_lazy_trajectory_is_the_mean_of_wide_two_layer_gd(tmp_path):
    """gd_dynamics.train with width=[1024, 1024] (prior init, full batch, ½Σ(y − f)²), 8 replicas, P = 16
    PCA-8 MNIST inputs: the mean-predictor training error, the mean prediction's overlap with the labels
    and the expected single-network error agree with the deep lazy theory within 3 s.e. at every logged
    step, while the one-hidden-layer theory is off by more than 3 s.e. late in training. lazy_baseline
    reads the run's widths and per-layer priors and gives the same deep theory."""
    from gdeq.bridge import lazy_dynamics, lazy_trajectory
    from gdeq.bridge.lazy import lazy_baseline
    from gdeq.bridge.maps import mean_predictor_error
    from gdeq.gd_dynamics import load_task, train
    from gdeq.gd_dynamics.data import Preprocessing
    from gdeq.geometry import mean_se

    task = load_task("mnist", (3, 5), 16, 8, 0, preprocessing=Preprocessing(pca_components=8))
    N = 1024
    lr = 1.0 / float(lazy_dynamics(task.x_train, task.y_train, lr=1.0, width=[N, N]).eigenvalues.max())
    traj = train(task, width=[N, N], lr=lr, steps=60, replicas=8, seed=7, log_points=10, output_dir=tmp_path,
                 wandb=None, progress_bar=False, layer_geometry=False, clustering_indices=False, probe_size=None)
    lt = lazy_trajectory(task.x_train, task.y_train, steps=traj.step, lr=lr, width=[N, N], x_test=task.x_test,
                         y_test=task.y_test)
    base = lazy_baseline(traj, task.x_train, task.y_train, task.x_test, task.y_test)
    np.testing.assert_allclose(base.train_error, lt.train_error, rtol=1e-12)
    assert base.width == (N, N)
    err, se = mean_predictor_error(traj.train_predictions, task.y_train)
    assert np.all(np.abs(err - lt.train_error) < 3 * se), (err, lt.train_error, se)
    overlap, ose = mean_se((traj.train_predictions * task.y_train).mean(2), axis=1)
    assert np.all(np.abs(overlap - (lt.train_mean * task.y_train).mean(1)) < 3 * ose)
    g, gse = mean_se(traj.train_error, axis=1)
    assert np.all(np.abs(g - lt.train_gibbs_error) < 3 * gse)
    assert lt.train_error[-1] < 0.01 * lt.train_error[0]
    one = lazy_trajectory(task.x_train, task.y_train, steps=traj.step, lr=lr, width=N)
    assert np.abs(err[-1] - one.train_error[-1]) > 3 * se[-1]


def test_cnn_lazy_trajectory_with_one_patch_is_the_fully_connected_one():
    """A 1-channel image cut into one patch (m = H = W) is the one-hidden-layer network on the flattened
    input: the CNN lazy trajectory equals the FC one; with 2 × 2 patches it differs; a CNN run with
    overlapping patches has no lazy kernel."""
    from gdeq.bridge import lazy_trajectory
    from gdeq.bridge.lazy import lazy_not_covered

    rng = np.random.default_rng(4)
    x, xt = rng.standard_normal((12, 16)), rng.standard_normal((4, 16))
    y, yt = np.sign(x[:, 0]), np.sign(xt[:, 0])
    common = dict(steps=[0, 3, 30], lr=0.1, activation="relu", prior_w=1.5, prior_v=0.7, x_test=xt, y_test=yt)
    fc = lazy_trajectory(x, y, width=64, **common)
    one = lazy_trajectory(x, y, width=64, architecture="cnn", patch_size=4, image_shape=(1, 4, 4), **common)
    four = lazy_trajectory(x, y, width=64, architecture="cnn", patch_size=2, image_shape=(1, 4, 4), **common)
    assert one.architecture == "cnn"
    np.testing.assert_allclose(one.test_mean, fc.test_mean, atol=1e-12)
    np.testing.assert_allclose(one.train_variance, fc.train_variance, atol=1e-12)
    assert np.abs(four.test_mean - fc.test_mean).max() > 1e-2
    run = dict(model_identity=dict(architecture="cnn", kernel_size=2, image_shape=[1, 4, 4]), config={})
    assert "non-overlapping" in lazy_not_covered(run)
    assert lazy_not_covered(dict(model_identity=dict(architecture="cnn", kernel_size=2), config=dict(stride=2))) is None


def test_lazy_theory_refuses_a_padded_or_pooled_cnn():
    from gdeq.bridge.lazy import lazy_not_covered

    run = dict(model_identity=dict(architecture="cnn", kernel_size=2, stride=2, padding=1, pooling="none"), config={})
    assert "padding=1" in lazy_not_covered(run)
    run = dict(model_identity=dict(architecture="cnn", kernel_size=2, stride=2, padding=0, pooling="avg"), config={})
    assert "pooling='avg'" in lazy_not_covered(run)
    assert lazy_not_covered(dict(model_identity=dict(architecture="cnn", kernel_size=2, stride=2, padding=0,
                                                     pooling="none"), config={})) is None
