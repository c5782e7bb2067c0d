"""GP predictor against brute-force dense formulas, and the identity-activation network against
its exact posterior (a one-dimensional integral over the readout norm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdeq import equilibrium as eq
from gdeq import geometry
from gdeq.equilibrium.action import factorise
from gdeq.equilibrium.kernels import nngp_kernels
from gdeq.equilibrium.predictor import gp_predictor


TEMPS = np.array([1e-3, 0.03, 0.3, 3.0])


@pytest.fixture(scope="module")
def task():
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (4, 9), n_train=100, n_test=50, seed=2)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_predictor_matches_dense_gp_formulas(task, activation):
    kb = nngp_kernels(task.x_train, task.x_test, activation=activation, prior_w=1.2)
    y, yt = torch.as_tensor(task.y_train), torch.as_tensor(task.y_test)
    lv = 0.6
    sp = factorise(kb.train, y, prior_v=lv)
    Q = np.array([1.7, 1.2, 0.9, 0.95])
    pred = gp_predictor(sp, kb.test_train, kb.test_diagonal, yt)(TEMPS, Q)
    for i, (T, q) in enumerate(zip(TEMPS, Q)):
        # kernel of the output GP: (Q/λ1) K (ReLU: K includes its mean mode μμᵀ)
        Kf = q / lv * kb.train
        K0 = q / lv * kb.test_train
        k00 = q / lv * kb.test_diagonal
        A = Kf + T * torch.eye(len(y), dtype=torch.float64)
        Ai = torch.linalg.inv(A)
        mean = K0 @ Ai @ y
        var = k00 - ((K0 @ Ai) * K0).sum(1)
        np.testing.assert_allclose(pred.test_mean[i], mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(pred.test_variance[i], var.numpy(), rtol=1e-8, atol=1e-12)
        fbar = Kf @ Ai @ y
        assert pred.train_error[i] == pytest.approx(((y - fbar) ** 2).mean().item(), rel=1e-9)
        post_var = torch.diagonal(Kf - Kf @ Ai @ Kf)
        assert pred.train_variance[i] == pytest.approx(post_var.mean().item(), rel=1e-8, abs=1e-14)
        bias2 = ((yt - mean) ** 2).mean().item()
        assert pred.test_bias2[i] == pytest.approx(bias2, rel=1e-9)
        assert pred.test_error[i] == pytest.approx(bias2 + var.mean().item(), rel=1e-9)


def test_multi_output_predictor_matches_kronecker_formulas():
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (0, 1, 7), n_train=60, n_test=20, seed=1)
    kb = nngp_kernels(t.x_train, t.x_test, activation="erf")
    Y, Yt = torch.as_tensor(t.y_train), torch.as_tensor(t.y_test)
    lv = 1.3
    sp = factorise(kb.train, Y, prior_v=lv)
    Q = np.array([[[1.2, 0.3, 0.1], [0.3, 0.9, -0.2], [0.1, -0.2, 1.1]]])
    T = 0.05
    pred = gp_predictor(sp, kb.test_train, kb.test_diagonal, Yt)([T], Q)
    P, D = Y.shape
    Kf = np.kron(Q[0], kb.train.numpy()) / lv  # output-major stacking
    K0 = np.kron(Q[0], kb.test_train.numpy()) / lv
    A = Kf + T * np.eye(P * D)
    yv = t.y_train.T.reshape(-1)
    mean = (K0 @ np.linalg.solve(A, yv)).reshape(D, -1).T
    var = (np.kron(np.diag(Q[0]), kb.test_diagonal.numpy()) / lv
           - np.einsum("ij,ji->i", K0, np.linalg.solve(A, K0.T))).reshape(D, -1).T
    np.testing.assert_allclose(pred.test_mean[0], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pred.test_variance[0], var, rtol=1e-8, atol=1e-12)
    resid = yv - Kf @ np.linalg.solve(A, yv)
    assert pred.train_error[0] == pytest.approx((resid**2).sum() / P, rel=1e-9)
    err = (((t.y_test - mean) ** 2).sum(1) + var.sum(1)).mean()
    assert pred.test_error[0] == pytest.approx(err, rel=1e-9)


def test_multi_output_predictor_with_one_output_equals_single(task):
    kb = nngp_kernels(task.x_train, task.x_test, activation="erf")
    y, yt = torch.as_tensor(task.y_train), torch.as_tensor(task.y_test)
    Q = np.array([1.5, 1.1, 0.9, 0.97])
    single = gp_predictor(factorise(kb.train, y, prior_v=1.0), kb.test_train, kb.test_diagonal, yt)(TEMPS, Q)
    multi = gp_predictor(factorise(kb.train, y[:, None], prior_v=1.0), kb.test_train, kb.test_diagonal,
                         yt[:, None])(TEMPS, Q[:, None, None])
    for name in ("train_error", "train_variance", "test_bias2", "test_variance_mean", "test_error"):
        np.testing.assert_allclose(getattr(multi, name), getattr(single, name), rtol=1e-10)
    np.testing.assert_allclose(multi.test_mean[..., 0], single.test_mean, rtol=1e-9, atol=1e-13)


# ------------------------------------------------------------------------------------------
# identity activation: the exact posterior
# ------------------------------------------------------------------------------------------
def _exact_identity(x, y, x0, T, N1, lw, lv):
    """Exact posterior averages of the linear network f(x) = v·(W x)/√(N0 N1).

    Given the readout v, f(X) = a·h_v with a² = |v|²/N1 and h_v = X W ᵀ v̂/√N0 ~ N(0, C), so
    y | v ~ N(0, a² C + T). The readout norm r = |v|² has the posterior
    p(r) ∝ r^{N1/2 − 1} e^{−λ1 r/2} N(y; 0, (r/N1) C + T), and conditionally on v everything is
    Gaussian: mean a² C0X A_a⁻¹ y, and E[K_W | v] = C + (a²/N1)(C m mᵀ C − C A_a⁻¹ C),
    (1/N1) Σ_i E[w_i w_iᵀ | v] = I/λ0 + (a²/(λ0² N0 N1)) Xᵀ(m mᵀ − A_a⁻¹)X, m = A_a⁻¹ y.
    Integrated over r by quadrature on a log grid.
    """
    P, N0 = x.shape
    C = x @ x.T / (N0 * lw)
    C0 = x0 @ x.T / (N0 * lw)
    c, U = np.linalg.eigh(C)
    yt = U.T @ y
    u = np.linspace(-12, 8, 6001) + math.log(N1 / lv)
    r = np.exp(u)
    a2 = r / N1
    den = T + a2[:, None] * c[None, :]
    logp = (N1 / 2) * u - lv * r / 2 - 0.5 * np.log(den).sum(1) - 0.5 * (yt**2 / den).sum(1)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    m = (yt / den) @ U.T  # (grid, P)
    mean = a2[:, None] * (m @ C0.T)
    out = dict(mean=w @ mean, a2=w @ a2)
    coef = w * a2 / N1
    J = (m * coef[:, None]).T @ m - (U * (coef @ (1 / den))) @ U.T  # Σ_g coef_g (m mᵀ − A⁻¹)_g
    G = C @ J @ C
    Xm = x.T @ J @ x / (lw**2 * N0)
    out["dK"] = G
    out["dWW"] = Xm
    return out


@pytest.mark.parametrize("N1", [60, 600, 6000])
def test_identity_network_against_exact_posterior(N1):
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (3, 5), n_train=40, n_test=10, seed=3)
    x, y, x0 = t.x_train, t.y_train, t.x_test
    lw, lv, T = 1.3, 0.8, 0.05
    exact = _exact_identity(x, y, x0, T, N1, lw, lv)
    curve = eq.temperature_curve(x, y, [T], width=N1, activation="identity", prior_w=lw, prior_v=lv,
                                 x_test=x0, y_test=t.y_test)
    tol = 3.0 / N1  # the saddle point is exact up to O(1/N1) relative corrections
    # readout: λ1⟨|v|²⟩/N1 = Q*
    assert curve.Q[0] == pytest.approx(lv * exact["a2"], rel=tol)
    assert curve.readout_second_moment[0] == pytest.approx(exact["a2"], rel=tol)
    np.testing.assert_allclose(curve.test_prediction[0], exact["mean"], rtol=tol, atol=tol * np.abs(exact["mean"]).max())
    # collective: N1 × the finite-width shift of the class-centroid distance
    c = geometry.centroid_vector(y)
    shift_exact = N1 * c @ exact["dK"] @ c
    assert curve.centroid_shift[0] == pytest.approx(shift_exact, rel=tol)
    # microscopic: second moments of w along the principal directions of X
    E = curve.weight_directions
    wm_exact = np.eye(len(E)) / lw + E @ exact["dWW"] @ E.T
    np.testing.assert_allclose(N1 * (curve.weight_moments[0] - np.eye(len(E)) / lw),
                               N1 * (wm_exact - np.eye(len(E)) / lw), rtol=tol, atol=tol * N1 * np.abs(wm_exact - np.eye(len(E)) / lw).max())


# ------------------------------------------------------------------------------------------
# affine activation σ(h) = h + b: a non-zero mean with an exact posterior
# ------------------------------------------------------------------------------------------
def _exact_affine(x, y, x0, T, N1, lw, lv, b, q_guess):
    """Exact posterior averages of f(x) = Σ_i v_i (h_i(x) + b)/√N1.

    Split v into s = Σ_i v_i/√N1 ~ N(0, 1/λ1) and the orthogonal part with |v⊥|² = ρ
    (χ² with N1 − 1 degrees of freedom, scale 1/λ1). Given v, f(X) = b s 1 + a h_v,
    a² = (s² + ρ)/N1, h_v ~ N(0, C): y | v ~ N(b s 1, a²C + T). With m = A_a⁻¹(y − b s 1):
    E[f(x0) | v] = b s + a² C0X m,  E[K_W | v] = C + b² 11ᵀ + (a²/N1)(C m mᵀ C − C A_a⁻¹ C)
    + (b s/N1)(C m 1ᵀ + 1 mᵀ C). Integrated over (s, ρ) on a grid (s on a sinh grid: its
    posterior is narrow when the data pin the mean mode; log ρ within ±12 prior standard
    deviations of N1·q_guess/λ1 — the test checks that the edges carry no weight).
    """
    P, N0 = x.shape
    C = x @ x.T / (N0 * lw)
    C0 = x0 @ x.T / (N0 * lw)
    c, U = np.linalg.eigh(C)
    yt, ot = U.T @ y, U.T @ np.ones(P)
    us = np.linspace(-7, 7, 281)
    s_grid = 0.02 * np.sinh(us) / math.sqrt(lv)
    s_jac = np.cosh(us)  # ds/du up to a constant
    half = 12 * math.sqrt(2.0 / N1)
    u = np.linspace(-half, half, 481) + math.log(N1 * q_guess / lv)
    rho = np.exp(u)

    def fields(s):
        a2 = (s * s + rho) / N1
        den = T + a2[:, None] * c[None, :]
        res = yt[None, :] - b * s * ot[None, :]
        logp = (-lv * s * s / 2 + ((N1 - 1) / 2) * u - lv * rho / 2
                - 0.5 * np.log(den).sum(1) - 0.5 * (res**2 / den).sum(1))
        return a2, den, res / den, logp

    logps = np.array([fields(s)[3] for s in s_grid]) + np.log(s_jac)[:, None]
    wmax = logps.max()
    Z = np.exp(logps - wmax).sum()
    edge = np.exp(logps[:, [0, -1]] - wmax).sum() / Z
    assert edge < 1e-12 and np.exp(logps[[0, -1]] - wmax).sum() / Z < 1e-12, "quadrature grid too narrow"
    acc = dict(mean=np.zeros(len(x0)), a2=0.0, mm=np.zeros((P, P)), inv=np.zeros(P), cross=np.zeros(P))
    for s, lp in zip(s_grid, logps):
        a2, den, m, _ = fields(s)
        w = np.exp(lp - wmax) / Z
        acc["a2"] += w @ a2
        acc["mean"] += (w.sum() * b * s) + (w * a2) @ (m @ U.T @ C0.T)
        acc["mm"] += (m * (w * a2 / N1)[:, None]).T @ m
        acc["inv"] += (w * a2 / N1) @ (1 / den)
        acc["cross"] += (w * b * s / N1) @ m
    Cu = C @ U
    Cm_cross = Cu @ acc["cross"]
    dK = Cu @ (acc["mm"] - np.diag(acc["inv"])) @ Cu.T + np.outer(Cm_cross, np.ones(P)) + np.outer(np.ones(P), Cm_cross)
    return dict(mean=acc["mean"], a2=acc["a2"], dK=dK)


@pytest.mark.parametrize("N1", [40, 400, 4000])
def test_mean_mode_against_exact_affine_network(N1):
    from gdeq.equilibrium.levels import LevelContext, available_levels

    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (3, 5), n_train=30, n_test=10, seed=4)
    x, x0 = t.x_train, t.x_test
    y = np.where(np.arange(30) < 21, 1.0, -1.0)  # unbalanced: the mean mode carries signal
    lw, lv, T, b = 1.0, 1.0, 0.05, 0.7

    def affine(h):
        return h + b

    curve = eq.temperature_curve(x, y, [T], width=N1, activation=affine, prior_w=lw, prior_v=lv,
                                 x_test=x0, y_test=t.y_test)
    exact = _exact_affine(x, y, x0, T, N1, lw, lv, b, q_guess=curve.Q[0])
    tol = 4.0 / N1
    assert curve.Q[0] == pytest.approx(lv * exact["a2"], rel=tol)
    np.testing.assert_allclose(curve.test_prediction[0], exact["mean"], atol=tol * np.abs(exact["mean"]).max())
    # the full posterior hidden kernel, scaled finite-width part N1(⟨K_W⟩ − K)
    kb = nngp_kernels(x, activation=affine, prior_w=lw)
    sp = factorise(kb.train, torch.as_tensor(y), prior_v=lv)
    ctx = LevelContext(x_train=torch.as_tensor(x), y_train=torch.as_tensor(y), x_test=None, kernels=kb, spectrum=sp,
                       temperatures=np.array([T]), Q=curve.Q, width=float(N1), activation=affine, prior_w=lw,
                       prior_v=lv)
    G = available_levels()["gaussian"].posterior(ctx).train.dense()[0].numpy()
    scaled, scaled_exact = N1 * (G - kb.train.numpy()), N1 * exact["dK"]
    assert np.abs(scaled - scaled_exact).max() <= 2 * tol * np.abs(scaled_exact).max()
