"""The ``single_neuron`` theory level: its importance-sampling numerics against 2-d quadrature, its
large-width limit against the closed-form ``gaussian`` level, and its contract with temperature_curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from gdeq import geometry
from gdeq.equilibrium import factorise, nngp_kernels, solve_saddle, temperature_curve
from gdeq.equilibrium.single_neuron import posterior_kernel, single_neuron_curve


def _quadrature_measure(x, y, T, Q, n1, lam0=1.0, lam1=1.0, grid=401, lim=7.0):
    """E_p[φφᵀ] and λ1⟨v²⟩ of the single-unit measure (★) by brute-force quadrature over w ∈ R² (N0 = 2)."""
    K = nngp_kernels(x, activation="erf", prior_w=lam0).train.numpy()
    A = T * np.eye(len(y)) + Q * K / lam1
    Ainv = np.linalg.inv(A)
    m = Ainv @ y
    w = np.linspace(-lim, lim, grid)
    W = np.stack(np.meshgrid(w, w, indexing="ij"), -1).reshape(-1, 2)
    phi = erf(W @ x.T / math.sqrt(2))  # (G, P)
    a = np.einsum("gp,pq,gq->g", phi, Ainv, phi) / (lam1 * n1)
    g2 = (phi @ m) ** 2 / (lam1 * n1)
    logp = -0.5 * lam0 * (W**2).sum(1) - 0.5 * np.log1p(a) + 0.5 * g2 / (1 + a)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    KW = np.einsum("g,gp,gq->pq", p, phi, phi)
    v2 = float(p @ (1 / (1 + a) + g2 / (1 + a) ** 2)) / lam1
    return K, KW, v2


def test_importance_sampling_matches_quadrature():
    x = np.array([[1.2, 0.3], [-0.4, 1.1], [0.9, -1.3]])
    y = np.array([1.0, -1.0, 1.0])
    T, Q, n1 = 0.1, 1.3, 2  # strong tilt: a, g² = O(1) with few units
    K, KW, v2 = _quadrature_measure(x, y, T, Q, n1)
    r = single_neuron_curve(x, y, [T], [Q], width=n1, samples=2**17, seed=3, self_consistent=False)
    assert np.abs(KW - K).max() > 0.05  # the tilt is not negligible here
    np.testing.assert_allclose(r.hidden_gram[0], KW, atol=4e-3)
    assert abs(r.readout_second_moment[0] - v2) < 4e-3
    assert r.ess[0] > 1000


def test_large_width_identity_matches_gaussian_level():
    """Identity activation: φ is Gaussian, so as N1 → ∞ the exact-φ measure's O(1/N1) shift must equal the
    closed-form (linear-response) gaussian level's."""
    rng = np.random.default_rng(0)
    P, n0 = 24, 40
    x = rng.normal(size=(P, n0))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=P))
    temps = [0.05, 0.5]
    n1 = 1e6
    curve = temperature_curve(x, y, temps, width=n1, activation="identity", level="gaussian")
    r = single_neuron_curve(x, y, temps, curve.Q, width=n1, activation="identity", samples=2**16,
                            self_consistent=False)
    sc = single_neuron_curve(x, y, temps, curve.Q, width=n1, activation="identity", samples=2**14)
    assert sc.converged.all()
    np.testing.assert_allclose(sc.readout_second_moment, curve.Q, rtol=1e-3)  # the Q* theory is its fixed point
    c = geometry.centroid_vector(y)
    K = nngp_kernels(x, activation="identity").train.numpy()
    shift = n1 * (np.einsum("i,tij,j->t", c, r.hidden_gram, c) - c @ K @ c)
    np.testing.assert_allclose(shift, curve.centroid_shift, rtol=0.03)
    np.testing.assert_allclose(r.readout_second_moment, curve.Q, rtol=1e-3)


def test_unconverged_temperature_returns_nan_and_says_why(monkeypatch):
    """A temperature whose self-consistent fields do not converge is not a result (docs/theory.md B.6, as in
    ``cavity``): every observable and diagnostic NaN, ``converged`` and ``in_regime`` False, the reason the
    non-convergence only — in single_neuron_curve and through temperature_curve. Converged temperatures keep
    their values (pinned: measured with the code that returned last iterates), and a fixed point found on the
    last allowed iteration counts as converged (it did not: ``iterations < max_iter`` was the test)."""
    import gdeq.equilibrium.levels as levels

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 30))
    y = np.sign(X @ rng.standard_normal(30))
    x, y, xt = X[:40], y[:40], X[40:]
    temps = [1.0, 0.1, 0.01]
    g = temperature_curve(x, y, temps, width=20, level="gaussian")
    kw = dict(width=20, x_test=xt, samples=4096)
    r = single_neuron_curve(x, y, temps, g.Q, **kw)  # measured: 20, 24 and 40 (of 40) iterations
    assert r.converged.tolist() == [True, True, False] and r.iterations.tolist() == [20, 24, 40]
    np.testing.assert_allclose(r.readout_second_moment[:2], [0.936315563531, 1.524806674045], rtol=1e-8)
    np.testing.assert_allclose(r.weight_label_moment[:2], [1.308975238947, 1.905368233482], rtol=1e-8)
    for name in ("hidden_gram", "hidden_gram_test_train", "hidden_gram_test", "readout_second_moment",
                 "weight_moments", "weight_label_moment", "ess", "pareto_k"):
        v = getattr(r, name)
        assert np.isnan(v[2]).all() and np.isfinite(v[:2]).all(), name
    assert r.in_regime.tolist() == [True, True, False]
    assert r.regime_reason[2] == "self-consistent fields did not converge"
    # 20 iterations allowed: T = 1 converges on the 20th, with the same values; T = 0.1 needs 24
    r20 = single_neuron_curve(x, y, temps, g.Q, max_iter=20, **kw)
    assert r20.converged.tolist() == [True, False, False] and r20.iterations[0] == 20
    assert r20.readout_second_moment[0] == r.readout_second_moment[0]
    assert np.isnan(r20.readout_second_moment[1:]).all()
    # the curve: its converged flag is the fixed point's, and every result of the failed temperature is NaN
    real = levels.single_neuron_curve
    monkeypatch.setattr(levels, "single_neuron_curve", lambda *a, **k: real(*a, **{**k, "samples": 4096}))
    c = temperature_curve(x, y, temps, width=20, level="single_neuron", x_test=xt)
    assert c.converged.tolist() == [True, True, False]
    for name in ("train_error", "readout_second_moment", "centroid_distance", "centroid_shift", "class_radius",
                 "unit_centroid_distance", "weight_label_moment", "test_prediction"):
        v = np.asarray(getattr(c, name))
        assert np.isnan(v[2]).all() and np.isfinite(v[:2]).all(), name
    assert not c.in_regime[2] and c.regime_reason[2] == "self-consistent fields did not converge"
    # N1 = 20 < 50: outside the validated regime at every temperature, like every other level (B.6 item 4)
    assert not c.in_regime.any() and all("width N1 < 50" in r for r in c.regime_reason[:2]), c.regime_reason


def _mnist(n_train, n_test=0):
    from gdeq.gd_dynamics import load_task

    return load_task("mnist", (3, 5), n_train=n_train, n_test=max(n_test, 2), seed=0)


def test_high_temperature_is_the_prior():
    task = _mnist(30)
    K = nngp_kernels(task.x_train).train.numpy()
    T = 1e4
    sp = factorise(torch.as_tensor(K), torch.as_tensor(task.y_train), prior_v=1.0)
    Q = solve_saddle(sp, [T], width=20).Q
    r = single_neuron_curve(task.x_train, task.y_train, [T], Q, width=20, samples=4096)
    assert np.abs(r.hidden_gram[0] - K).max() < 1e-3
    assert abs(r.readout_second_moment[0] - 1.0) < 1e-3
    np.testing.assert_allclose(np.diagonal(r.weight_moments[0]), 1.0, atol=0.05)


def test_level_contract_and_multi_output():
    task = _mnist(24, 10)
    temps = [0.5, 2.0]
    curve = temperature_curve(task.x_train, task.y_train, temps, width=20, x_test=task.x_test,
                              y_test=task.y_test, level="single_neuron")
    assert curve.centroid_shift.shape == (2,) and np.all(np.isfinite(curve.centroid_shift))
    train, test = posterior_kernel(task.x_train, task.y_train, task.x_test, temps, curve.Q, width=20)
    # the level's kernel is what temperature_curve measured
    c = geometry.centroid_vector(task.y_train)
    np.testing.assert_allclose(np.einsum("i,tij,j->t", c, train, c), curve.centroid_distance, rtol=1e-10)
    assert train.shape == (2, 24, 24) and test.shape == (2, 10, 10)
    np.testing.assert_allclose(train, np.swapaxes(train, 1, 2), atol=1e-12)
    from gdeq.gd_dynamics import load_task

    t3 = load_task("mnist", (1, 3, 5), n_train=30, n_test=3, seed=0)
    c3 = temperature_curve(t3.x_train, t3.y_train, [0.3], width=20, level="gaussian")
    r3 = single_neuron_curve(t3.x_train, t3.y_train, [0.3], c3.Q, width=20, samples=4096)
    assert r3.hidden_gram.shape == (1, 30, 30) and np.isfinite(r3.readout_second_moment).all()
    with pytest.raises(ValueError, match="Q"):
        single_neuron_curve(task.x_train, task.y_train, temps, [1.0], width=20)
    with pytest.raises(ValueError, match="temperatures"):
        single_neuron_curve(task.x_train, task.y_train, [0.0], [1.0], width=20)


@pytest.mark.slow
def test_against_sampling_small_case():
    """P = 60, N1 = 30 (α = 2), T = 0.1: the level's centroid shift within 12 % (+ 3 s.e.) of exact sampling."""
    from gdeq.equilibrium.sampling import sample_posterior

    task = _mnist(60)
    n1, T = 30, 0.1
    curve = temperature_curve(task.x_train, task.y_train, [T], width=n1, level="single_neuron")
    s = sample_posterior(task.x_train, task.y_train, width=n1, temperature=T, replicas=48, burn_in=5,
                         sampling_time=15, progress=False)
    K = nngp_kernels(task.x_train).train.numpy()
    c = geometry.centroid_vector(task.y_train)
    shift, se = n1 * (s.centroid_distance.mean - c @ K @ c), n1 * s.centroid_distance.se
    assert abs(curve.centroid_shift[0] - shift) < 0.12 * abs(shift) + 3 * se, (curve.centroid_shift, shift, se)


def test_curve_reports_the_measures_weight_moments_identity_limit():
    """temperature_curve(level="single_neuron") reports the first-layer weight moments of its measure (prior part
    exact, control variate), and for the identity activation their O(1/N1) shift is the gaussian level's closed
    form (exact to O(1/N1) for a linear network, docs/theory.md §5)."""
    rng = np.random.default_rng(0)
    P, n0, n1 = 24, 40, 1e4
    x = rng.normal(size=(P, n0))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=P))
    temps = [0.05, 0.5]
    g = temperature_curve(x, y, temps, width=n1, activation="identity", level="gaussian")
    s = temperature_curve(x, y, temps, width=n1, activation="identity", level="single_neuron")
    # measured: N1·(⟨(e_y·w)²⟩ − 1/λ0) = 22.6 / 8.87 against 22.2 / 8.75
    np.testing.assert_allclose(n1 * (s.weight_label_moment - 1), n1 * (g.weight_label_moment - 1), rtol=0.04)
    diag = lambda c: n1 * (np.diagonal(c.weight_moments, axis1=1, axis2=2) - 1)  # noqa: E731
    np.testing.assert_allclose(diag(s), diag(g), atol=0.3)
