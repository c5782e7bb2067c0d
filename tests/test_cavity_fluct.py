"""Closure ``"fluct"`` of the cavity level (level ``cavity_fluct``, docs/theory.md B.10).

- identity activation (tested in test_cavity.py beside `cavity`): φ is Gaussian, K_post = Q*K up to a
  rank-one O(1/N1) part, so the level must be the exact linear (Q*) theory;
- large width (tested in test_cavity.py beside `cavity`): every observable tends to the gaussian level's;
- width-2 brute-force quadrature of the exact posterior: the second-moment identity of the cavity mean that the
  closure is derived from, and the identity Cov f(X) = T − T²·(E[A⁻¹] − Cov(A⁻¹y)) that turns a sampled train
  variance into the trace of the cavity covariance (the measurement of B.10).
"""

from __future__ import annotations

import numpy as np
import pytest

from test_cavity import _width_two_posterior


@pytest.mark.parametrize("T", [0.5, 0.1, 0.02])
def test_second_moment_identity_at_width_two_by_quadrature(T):
    """Exact (any width): T·E[r rᵀ] + (1/√(λ1N1)) Σ_j E[g_jφ_j r_∖jᵀ/(1 + a_j)] − (1/λ1N1) Σ_j E[g_j²φ_jφ_jᵀA_∖j⁻¹/(1 + a_j)²]
    = y E[r]ᵀ with r = A_W⁻¹y, r_∖j = A_∖j⁻¹y (A r rᵀ = y rᵀ and Sherman–Morrison on unit j): the identity that,
    averaged over a Gaussian cavity mean, gives Σ_t = (T + c·K_post/λ1)⁻¹ (B.10). And the train posterior
    covariance Cov f(X) = T − T²·Cov(t), Cov(t) = E[A_W⁻¹] − Cov(A_W⁻¹y), computed from v | W directly."""
    lam1, n1 = 1.0, 2
    p, y, phi, A, A_cav = _width_two_posterior(T)
    E = lambda a: np.tensordot(p, a, axes=(0, 0))  # noqa: E731
    Ai, Aci = np.linalg.inv(A), np.linalg.inv(A_cav)
    f0 = phi[:, :, 0]
    a = np.einsum("gp,gpq,gq->g", f0, Aci, f0) / (lam1 * n1)
    rc = Aci @ y
    g = np.einsum("gp,gp->g", f0, rc) / np.sqrt(lam1 * n1)
    r = Ai @ y
    lhs = (T * E(np.einsum("gp,gq->gpq", r, r))
           + n1 * E(np.einsum("g,gp,gq->gpq", g / (1 + a), f0, rc)) / np.sqrt(lam1 * n1)
           - n1 * E(np.einsum("g,gp,gq,gqs->gps", g**2 / (1 + a) ** 2, f0, f0, Aci)) / (lam1 * n1))
    np.testing.assert_allclose(lhs, np.outer(y, E(r)), atol=1e-9)
    # train posterior covariance from v | W (Bayesian linear regression on the features) against T − T²·Cov(t)
    prec = lam1 * np.eye(n1) + np.einsum("gpi,gpj->gij", phi, phi) / (T * n1)
    cov = np.linalg.inv(prec)
    vbar = np.einsum("gij,gpj,p->gi", cov, phi, y) / (T * np.sqrt(n1))
    fbar = np.einsum("gpi,gi->gp", phi, vbar) / np.sqrt(n1)
    cov_f = (E(np.einsum("gpi,gij,gqj->gpq", phi, cov, phi) / n1) + E(np.einsum("gp,gq->gpq", fbar, fbar))
             - np.outer(E(fbar), E(fbar)))
    cov_t = E(Ai) - (E(np.einsum("gp,gq->gpq", r, r)) - np.outer(E(r), E(r)))
    np.testing.assert_allclose(cov_f, T * np.eye(len(y)) - T**2 * cov_t, atol=1e-9)


def test_fluct_algebra_cancels_the_mean_inverse():
    """The closure's algebra (B.10) on an arbitrary weighted sample of features: with a_t = a_a − s² per sample,
    Σ_a = (T + c·K_a/λ1)⁻¹ and C_m = (T + c·K_post/λ1)⁻¹ c·V Σ_a/λ1 give Σ_a − C_m = (T + c·K_post/λ1)⁻¹ for ANY
    Σ_a-side and C_m-side quadratic forms (pointwise K_post − V = K_a)."""
    rng = np.random.default_rng(0)
    P, S, T, lam1, c = 7, 500, 0.05, 1.3, 0.9
    phi = np.tanh(rng.standard_normal((P, S)) * 2)
    w = rng.random(S)
    w /= w.sum()
    a_a = rng.random(S) * 3
    s2 = rng.random(S) * a_a * 0.9  # a_t = a_a − s² > 0
    a_t = a_a - s2
    gbar = rng.standard_normal(S)
    K = lambda f: (phi * (w * f)) @ phi.T  # noqa: E731
    K_a = K(1 / (1 + a_a))
    K_post = K(1 / (1 + a_t) + gbar**2 / (1 + a_t) ** 2)
    V = K(gbar**2 / (1 + a_t) ** 2 + s2 / ((1 + a_a) * (1 + a_t)))
    I = np.eye(P)
    sig_a = np.linalg.inv(T * I + c * K_a / lam1)
    C_m = np.linalg.solve(T * I + c * K_post / lam1, c * V @ sig_a / lam1)
    np.testing.assert_allclose(sig_a - C_m, np.linalg.inv(T * I + c * K_post / lam1), rtol=1e-9, atol=1e-9)
