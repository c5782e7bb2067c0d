"""NNGP kernels against Monte Carlo averages over random first-layer weights, and quadrature
against the closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdeq.equilibrium.kernels import nngp_kernels
from gdeq.geometry import activation as activation_function


N0, P, PT, SAMPLES = 12, 5, 3, 400_000


def _data(seed=0, normalise=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P + PT, N0)) * rng.uniform(0.5, 1.5, (P + PT, 1))
    if normalise:
        X *= math.sqrt(N0) / np.linalg.norm(X, axis=1, keepdims=True)
    return X[:P], X[P:]


def _monte_carlo(X, activation, prior_w, seed=1):
    """E_w[σ(h)σ(h')] over w ~ N(0, I/λ0): estimates and standard errors (float64 torch)."""
    g = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(X)
    sigma = activation_function(activation)
    W = torch.randn(SAMPLES, N0, generator=g, dtype=torch.float64) / math.sqrt(prior_w)
    H = W @ Xt.T / math.sqrt(N0)
    F = sigma(H)
    m2 = F.T @ F / SAMPLES  # E[φ_a φ_b]
    m4 = (F * F).T @ (F * F) / SAMPLES  # E[(φ_a φ_b)²] for the standard error
    return m2, ((m4 - m2**2) / SAMPLES).sqrt(), F.mean(0), F.std(0) / math.sqrt(SAMPLES), H


@pytest.mark.parametrize("activation", ["erf", "relu", "identity", "tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("normalise", [False, True])
def test_kernel_blocks_match_monte_carlo(activation, normalise):
    x, xt = _data(normalise=normalise)
    prior_w = 1.7
    kb = nngp_kernels(x, xt, activation=activation, prior_w=prior_w)
    X = np.concatenate([x, xt])
    mc, se, mean, mean_se, H = _monte_carlo(X, activation, prior_w)
    full = torch.cat([torch.cat([kb.train, kb.test_train.T], 1), torch.cat([kb.test_train, kb.test], 1)], 0)
    z = ((full - mc) / se).abs().max().item()
    assert z < 5.0, f"{activation}: kernel deviates from Monte Carlo by {z:.1f} standard errors"
    means = torch.cat([kb.mean_train, kb.mean_test])
    assert ((means - mean).abs() / mean_se).max().item() < 5.0
    # Stein: E[σ'(h)] = E[h σ(h)]/Var(h)
    sigma = activation_function(activation)
    hs = H * sigma(H)
    slope_mc = hs.mean(0) / H.var(0)
    slopes = torch.cat([kb.slope_train, kb.slope_test])
    assert torch.allclose(slopes, slope_mc, rtol=0, atol=6 * (hs.std(0) / math.sqrt(SAMPLES) / H.var(0)).max())


def test_odd_activations_have_exactly_zero_mean():
    x, xt = _data()
    for act in ("erf", "identity", "tanh"):
        kb = nngp_kernels(x, xt, activation=act)
        assert not kb.has_mean and float(kb.mean_test.abs().max()) == 0.0
    assert nngp_kernels(x, activation="relu").has_mean


@pytest.mark.parametrize("normalise", [False, True])
def test_quadrature_reproduces_erf_closed_form(normalise):
    # torch.erf passed as a callable goes through Gauss–Hermite (direct 2-d rule, or the
    # tabulated ρ-rule when all variances are equal)
    x, xt = _data(normalise=normalise)
    exact = nngp_kernels(x, xt, activation="erf", prior_w=0.8)
    quad = nngp_kernels(x, xt, activation=torch.erf, prior_w=0.8)
    for a, b in ((exact.train, quad.train), (exact.test_train, quad.test_train), (exact.test, quad.test)):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)
    assert torch.allclose(exact.slope_train, quad.slope_train, atol=1e-10)


def test_identity_kernel_is_input_covariance_and_relu_diagonal_is_half():
    x, xt = _data()
    kb = nngp_kernels(x, xt, activation="identity", prior_w=2.0)
    C = torch.as_tensor(x @ x.T / (N0 * 2.0))
    assert torch.allclose(kb.train, C, atol=1e-15)
    kr = nngp_kernels(x, activation="relu", prior_w=2.0)
    assert torch.allclose(torch.diagonal(kr.train), torch.diagonal(C) / 2, atol=1e-15)


def test_unknown_activation_raises():
    x, _ = _data()
    with pytest.raises(ValueError, match="activation"):
        nngp_kernels(x, activation="swish")
