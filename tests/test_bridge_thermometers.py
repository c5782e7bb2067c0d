"""Thermometers against exactly solvable chains (plain torch, independent of gd_dynamics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdeq.bridge.thermometers import (
    fluctuation_dissipation_temperature,
    gradient_noise_temperature,
    gradient_noise_temperature_from_moments,
    one_hidden_layer_gradient_moments,
    potential_gradient_terms,
)


def _langevin_quadratic(h: torch.Tensor, T: float, lr: float, replicas: int, burn: int, samples: int, seed: int = 0):
    """Discrete Langevin θ ← θ − η Hθ + √(2ηT) ξ on V = ½ Σ h_k θ_k² (diagonal H)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.zeros(replicas, len(h), dtype=torch.float64)
    a, b = [], []
    for k in range(burn + samples):
        grad = h * theta
        if k >= burn:
            a.append((theta * grad).sum(1))
            b.append((grad * grad).sum(1))
        theta = theta - lr * grad + math.sqrt(2 * lr * T) * torch.randn(theta.shape, generator=g, dtype=torch.float64)
    return torch.stack(a).numpy(), torch.stack(b).numpy()


def test_fdt_thermometer_is_exact_for_discrete_langevin_on_a_quadratic():
    # η h_max = 0.8: the stationary law is far from exp(−V/T) (variance T/(h(1 − ηh/2))), yet the
    # thermometer with the η/2 term is exact for the discrete chain; the naive virial is biased.
    h = torch.linspace(0.2, 4.0, 12, dtype=torch.float64)
    T, lr = 0.7, 0.2
    a, b = _langevin_quadratic(h, T, lr, replicas=256, burn=200, samples=400)
    reading = fluctuation_dissipation_temperature(a, b, lr=lr, n_params=len(h))
    assert reading.replicas == 256 and reading.se > 0
    assert abs(reading.temperature - T) < 4 * reading.se
    # closed form of the naive estimate: (1/d) Σ h s_k = (T/d) Σ 1/(1 − η h_k/2)
    naive_exact = T * float((1.0 / (1.0 - lr * h / 2)).mean())
    assert abs(reading.naive - naive_exact) < 4 * reading.se * 3
    assert reading.naive - T > 10 * reading.se  # the η-correction matters here


def test_fdt_thermometer_on_bayesian_linear_regression_sum_convention():
    # docs/conventions.md §6 form: GD on ½|y − Xθ|² + (Tλ/2)|θ|² plus √(2ηT) noise; T̂ must return T.
    g = torch.Generator().manual_seed(1)
    P, d, T, lam = 40, 10, 0.3, 1.0
    X = torch.randn(P, d, generator=g, dtype=torch.float64)
    y = torch.sign(torch.randn(P, generator=g, dtype=torch.float64))
    H = X.T @ X + T * lam * torch.eye(d, dtype=torch.float64)
    lr = 0.5 / float(torch.linalg.eigvalsh(H).max())
    R = 128
    theta = torch.zeros(R, d, dtype=torch.float64)
    a, b = [], []
    for k in range(3000):
        grad = (theta @ X.T - y) @ X + T * lam * theta
        if k >= 1000 and k % 5 == 0:
            a.append((theta * grad).sum(1))
            b.append((grad**2).sum(1))
        theta = theta - lr * grad + math.sqrt(2 * lr * T) * torch.randn(theta.shape, generator=g, dtype=torch.float64)
    reading = fluctuation_dissipation_temperature(torch.stack(a).numpy(), torch.stack(b).numpy(), lr=lr, n_params=d)
    assert abs(reading.temperature - T) < 4 * reading.se
    # and the sampled mean is the exact posterior mean H⁻¹Xᵀy
    mean_exact = torch.linalg.solve(H, X.T @ y)
    assert torch.allclose(theta.mean(0), mean_exact, atol=5 * float(math.sqrt(T / float(torch.linalg.eigvalsh(H).min()) / R)))


def test_sgd_gradient_noise_temperature_matches_empirical_minibatch_covariance():
    g = torch.Generator().manual_seed(2)
    P, d, b, lr = 30, 5, 7, 0.01
    grads = torch.randn(P, d, generator=g, dtype=torch.float64) + 0.5
    T = gradient_noise_temperature(grads, lr=lr, batch_size=b, loss="sum")
    # empirical: draw minibatches without replacement, ĝ = (P/b) Σ_B g_μ
    draws = torch.stack([grads[torch.randperm(P, generator=g)[:b]].sum(0) * (P / b) for _ in range(20000)])
    T_emp = lr * float(draws.var(0, unbiased=True).sum()) / (2 * d)
    assert T == pytest.approx(T_emp, rel=0.05)
    # full batch: no noise; the mean convention is the sum one divided by P at the same dynamics
    assert gradient_noise_temperature(grads, lr=lr, batch_size=P) == pytest.approx(0.0, abs=1e-15)
    T_mean = gradient_noise_temperature(grads, lr=lr * P, batch_size=b, loss="mean")
    assert T_mean == pytest.approx(T / P, rel=1e-12)
    with pytest.raises(ValueError, match="batch_size"):
        gradient_noise_temperature(grads, lr=lr, batch_size=P + 1)


def test_sgd_fdt_thermometer_equals_mean_gradient_noise_temperature_on_linear_regression():
    # Yaida's first relation: at stationarity of SGD, T̂ = ⟨T_SGD(θ)⟩ along the chain.
    g = torch.Generator().manual_seed(3)
    P, d, b, lam = 32, 6, 4, 0.5
    X = torch.randn(P, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(P, generator=g, dtype=torch.float64)
    lr = 0.2 / float(torch.linalg.eigvalsh(X.T @ X).max())
    R = 64
    theta = torch.zeros(R, d, dtype=torch.float64)
    a, bb, t_noise = [], [], []
    for k in range(4000):
        resid = theta @ X.T - y  # (R, P)
        per_sample = resid[:, :, None] * X[None]  # (R, P, d): ∇ ½ (x·θ − y)²
        full = per_sample.sum(1) + lam * theta
        if k >= 1000 and k % 10 == 0:
            a.append((theta * full).sum(1))
            bb.append((full**2).sum(1))
            sq = (per_sample**2).sum(-1).mean(-1)
            mean_sq = (per_sample.mean(1) ** 2).sum(-1)
            t_noise.append(gradient_noise_temperature_from_moments(
                sq.numpy(), mean_sq.numpy(), n_params=d, n_train=P, lr=lr, batch_size=b))
        idx = torch.stack([torch.randperm(P, generator=g)[:b] for _ in range(R)])  # (R, b)
        mb = torch.gather(per_sample, 1, idx[:, :, None].expand(R, b, d)).sum(1) * (P / b)
        theta = theta - lr * (mb + lam * theta)
    reading = fluctuation_dissipation_temperature(np.stack(a), np.stack(bb), lr=lr, n_params=d)
    T_sgd = float(np.mean(t_noise))
    assert T_sgd > 0
    assert abs(reading.temperature - T_sgd) < 4 * reading.se + 0.02 * T_sgd


def _net(W, v, x, act):
    h = x @ W.T / math.sqrt(W.shape[1])
    return {"erf": torch.erf, "tanh": torch.tanh, "relu": torch.relu}[act](h) @ v / math.sqrt(W.shape[0])


@pytest.mark.parametrize("activation", ["erf", "tanh", "relu"])
def test_one_hidden_layer_moments_match_autograd_per_sample_gradients(activation):
    g = torch.Generator().manual_seed(4)
    P, N0, N1 = 9, 7, 5
    x = torch.randn(P, N0, generator=g, dtype=torch.float64)
    y = torch.sign(torch.randn(P, generator=g, dtype=torch.float64))
    W = torch.randn(N1, N0, generator=g, dtype=torch.float64)
    v = torch.randn(N1, generator=g, dtype=torch.float64)
    rows = []
    for mu in range(P):
        Wp, vp = W.clone().requires_grad_(True), v.clone().requires_grad_(True)
        loss = 0.5 * (y[mu] - _net(Wp, vp, x[mu : mu + 1], activation)[0]) ** 2
        gW, gv = torch.autograd.grad(loss, (Wp, vp))
        rows.append(torch.cat([gW.flatten(), gv]))
    G = torch.stack(rows)
    m = one_hidden_layer_gradient_moments(W, v, x, y, activation)
    assert m["n_params"] == G.shape[1]
    assert m["mean_sq_norm"][0] == pytest.approx(float((G**2).sum(1).mean()), rel=1e-10)
    assert m["mean_grad_sq_norm"][0] == pytest.approx(float((G.mean(0) ** 2).sum()), rel=1e-10)
    # and the potential terms: θ·∇V, |∇V|² with weight decay, against autograd on the flat vector
    Wp, vp = W.clone().requires_grad_(True), v.clone().requires_grad_(True)
    V = 0.5 * ((y - _net(Wp, vp, x, activation)) ** 2).sum() + 0.15 * (Wp**2).sum() + 0.35 * (vp**2).sum()
    gW, gv = torch.autograd.grad(V, (Wp, vp))
    a, b, d = potential_gradient_terms(W, v, x, y, activation=activation, weight_decay_w=0.3, weight_decay_v=0.7)
    assert d == N1 * N0 + N1
    assert a[0] == pytest.approx(float((W * gW).sum() + (v * gv).sum()), rel=1e-10)
    assert b[0] == pytest.approx(float((gW**2).sum() + (gv**2).sum()), rel=1e-10)


def test_unknown_activation_is_refused_not_treated_as_the_identity():
    """Used to fall back to σ(h) = h for any unknown name (a silently wrong temperature)."""
    from gdeq.bridge.experiments import default_learning_rate

    rng = np.random.default_rng(0)
    W, v, x, y = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3)), rng.normal(size=(4, 5)), rng.normal(size=4)
    for fn in (one_hidden_layer_gradient_moments, lambda *a, activation: potential_gradient_terms(*a, activation=activation)):
        with pytest.raises(ValueError, match="activation: must be one of"):
            fn(W, v, x, y, activation="softsign")
    with pytest.raises(ValueError, match="activation: must be one of"):
        default_learning_rate(x, activation="softsign")
    # a known name gives the closed form: erf's moments differ from the identity's
    erf = one_hidden_layer_gradient_moments(W, v, x, y, activation="erf")["mean_sq_norm"]
    ident = one_hidden_layer_gradient_moments(W, v, x, y, activation="identity")["mean_sq_norm"]
    assert not np.allclose(erf, ident)
