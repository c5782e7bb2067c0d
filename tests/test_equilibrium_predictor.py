"""GP predictor against brute-force dense formulas, and the identity-activation network against
its exact posterior (a one-dimensional integral over the readout norm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import equilibrium as eq
import geometry
from equilibrium.action import factorise, factorise_multi, solve_saddle
from equilibrium.kernels import nngp_kernels
from equilibrium.predictor import gp_predictor, gp_predictor_multi

TEMPS = np.array([1e-3, 0.03, 0.3, 3.0])


@pytest.fixture(scope="module")
def task():
    from gd_dynamics.data import load_task

    return load_task("mnist", (4, 9), n_train=100, n_test=50, seed=2)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_predictor_matches_dense_gp_formulas(task, activation):
    kb = nngp_kernels(task.x_train, task.x_test, activation=activation, prior_w=1.2)
    y, yt = torch.as_tensor(task.y_train), torch.as_tensor(task.y_test)
    lv = 0.6
    sp = factorise(kb.train, y, prior_v=lv, mean=kb.mean_train)
    Q = np.array([1.7, 1.2, 0.9, 0.95])
    pred = gp_predictor(sp, kb.test_train, kb.test_diagonal, kb.mean_test, yt, kb.mean_train)(TEMPS, Q)
    mu, mu0 = kb.mean_train, kb.mean_test
    for i, (T, q) in enumerate(zip(TEMPS, Q)):
        # kernel of the output GP: (Q/λ1) K_c + μμᵀ/λ1 (= (Q/λ1) K for odd activations)
        Kf = q / lv * (kb.train - torch.outer(mu, mu)) + torch.outer(mu, mu) / lv
        K0 = q / lv * (kb.test_train - torch.outer(mu0, mu)) + torch.outer(mu0, mu) / lv
        k00 = q / lv * (kb.test_diagonal - mu0**2) + mu0**2 / lv
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
    from gd_dynamics.data import load_task

    t = load_task("mnist", (0, 1, 7), n_train=60, n_test=20, seed=1)
    kb = nngp_kernels(t.x_train, t.x_test, activation="erf")
    Y, Yt = torch.as_tensor(t.y_train), torch.as_tensor(t.y_test)
    lv = 1.3
    sp = factorise_multi(kb.train, Y, prior_v=lv)
    Q = np.array([[[1.2, 0.3, 0.1], [0.3, 0.9, -0.2], [0.1, -0.2, 1.1]]])
    T = 0.05
    pred = gp_predictor_multi(sp, kb.test_train, kb.test_diagonal, Yt)([T], Q)
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
    single = gp_predictor(factorise(kb.train, y, prior_v=1.0), kb.test_train, kb.test_diagonal, None, yt)(TEMPS, Q)
    multi = gp_predictor_multi(factorise_multi(kb.train, y[:, None], prior_v=1.0), kb.test_train, kb.test_diagonal,
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
    from gd_dynamics.data import load_task

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
