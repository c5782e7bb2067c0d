"""Effective action and saddle point: dense formulas, stationarity, limits, multiple minima,
the D×D action at D = 1, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdeq.equilibrium.action import Spectrum, action_gradient, effective_action, factorise, solve_saddle
from gdeq.equilibrium.kernels import nngp_kernels


TEMPS = np.logspace(-3, 1, 13)


@pytest.fixture(scope="module")
def task():
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (3, 5), n_train=120, n_test=40, seed=0)
    return t.x_train, t.y_train


def _dense_action(K, y, T, Q, N1):
    A = T * torch.eye(len(y), dtype=torch.float64) + Q * K
    return Q - np.log(Q) + (torch.logdet(A) + y @ torch.linalg.solve(A, y)).item() / N1


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_action_in_eigenbasis_equals_dense_formula(task, activation):
    x, y = task
    kb = nngp_kernels(x, activation=activation)
    yt = torch.as_tensor(y)
    sp = factorise(kb.train, yt, prior_v=1.0)
    for T, Q in ((1e-3, 2.5), (0.1, 0.7), (3.0, 1.1)):
        dense = _dense_action(kb.train, yt, T, Q, 60)
        assert effective_action(sp, T, Q, width=60).item() == pytest.approx(dense, rel=1e-11)
        eps = 1e-6 * Q
        fd = (effective_action(sp, T, Q + eps, width=60) - effective_action(sp, T, Q - eps, width=60)) / (2 * eps)
        assert action_gradient(sp, T, Q, width=60).item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("activation", ["erf", "relu", "identity"])
@pytest.mark.parametrize("width", [30, 120, 600])
def test_stationarity_at_returned_saddle_point(task, activation, width):
    x, y = task
    kb = nngp_kernels(x, activation=activation, prior_w=1.3)
    sp = factorise(kb.train, torch.as_tensor(y), prior_v=0.7)
    sad = solve_saddle(sp, TEMPS, width=width)
    assert sad.converged.all() and (sad.Q > 0).all()
    # docs/conventions.md §2 stationarity, evaluated densely: 1/Q = 1 + (1/(λ1 N1)) [tr(A⁻¹K) − yᵀA⁻¹KA⁻¹y]
    yt = torch.as_tensor(y)
    K = kb.train
    for T, Q in zip(TEMPS[::3], sad.Q[::3]):
        A = T * torch.eye(len(y), dtype=torch.float64) + Q / 0.7 * K
        Ai = torch.linalg.inv(A)
        m = Ai @ yt
        rhs = 1 + (torch.trace(Ai @ K) - m @ K @ m).item() / (0.7 * width)
        assert 1 / Q == pytest.approx(rhs, rel=1e-10)
    # a minimum: S rises on both sides
    for T, Q in zip(TEMPS, sad.Q):
        S0 = effective_action(sp, T, Q, width=width).item()
        assert effective_action(sp, T, Q * (1 + 1e-4), width=width).item() > S0
        assert effective_action(sp, T, Q * (1 - 1e-4), width=width).item() > S0


def test_limits_give_infinite_width(task):
    x, y = task
    kb = nngp_kernels(x, activation="erf")
    sp = factorise(kb.train, torch.as_tensor(y), prior_v=1.0)
    # T → ∞: A ≈ T, the data terms vanish as 1/T
    hot = solve_saddle(sp, [1e4, 1e6], width=100).Q
    assert abs(hot[0] - 1) < 1e-3 and abs(hot[1] - 1) < 1e-5
    # N1 → ∞ at fixed P: Q − 1 = O(1/N1)
    dev = [abs(solve_saddle(sp, [0.01], width=w).Q[0] - 1) for w in (1e4, 1e6)]
    assert dev[1] < 1e-3 and dev[0] / dev[1] == pytest.approx(100, rel=0.05)


def test_several_minima_are_found_and_the_lowest_returned():
    # a three-mode spectrum whose action has two local minima at T = 1 (found by a random search)
    kappa = torch.tensor([0.020329280840042357, 33.03702439271507, 0.013254513903840496], dtype=torch.float64)
    y_t = torch.tensor([6.516157274392357, 0.3436899152393396, 4.096867759099019], dtype=torch.float64)
    sp = Spectrum(kappa=kappa, U=torch.eye(3, dtype=torch.float64), y_t=y_t, prior_v=1.0)
    N1 = 0.6513598165269565
    sad = solve_saddle(sp, [1.0], width=N1)
    assert sad.n_minima[0] == 2
    minima = sad.minima[0]
    assert np.all(np.abs(action_gradient(sp, 1.0, torch.as_tensor(minima), width=N1).numpy()) < 1e-9)
    # brute force: global minimum of S on a fine log grid
    grid = torch.logspace(-4, 3, 200001, dtype=torch.float64)
    S = effective_action(sp, 1.0, grid, width=N1)
    q_best = grid[torch.argmin(S)].item()
    assert sad.Q[0] == pytest.approx(q_best, rel=1e-3)
    other = minima[np.argmax(np.abs(minima - sad.Q[0]))]
    assert effective_action(sp, 1.0, other, width=N1).item() > sad.action[0]


def test_non_convergence_raises_with_the_temperature(task):
    x, y = task
    kb = nngp_kernels(x, activation="erf")
    sp = factorise(kb.train, torch.as_tensor(y), prior_v=1.0)
    with pytest.raises(ValueError, match=r"T = \[0\.05"):
        solve_saddle(sp, [0.05, 0.5], width=100, max_iter=1)
    flags = solve_saddle(sp, [0.05], width=100, max_iter=1, raise_on_failure=False)
    assert not flags.converged[0]


def test_multi_output_action_with_one_output_equals_single_output(task):
    """One API: a (P, 1) target column takes the D×D Newton path, a (P,) vector the scalar scan; both agree."""
    x, y = task
    kb = nngp_kernels(x, activation="erf")
    yt = torch.as_tensor(y)
    sp1 = factorise(kb.train, yt, prior_v=0.8)
    spD = factorise(kb.train, yt[:, None], prior_v=0.8)
    assert sp1.scalar and not spD.scalar and spD.D == 1
    for T, Q in ((0.01, 1.7), (1.0, 0.9)):
        assert effective_action(spD, T, torch.tensor([[Q]], dtype=torch.float64), width=50).item() == pytest.approx(
            effective_action(sp1, T, Q, width=50).item(), rel=1e-12)
        assert action_gradient(spD, T, torch.tensor([[Q]], dtype=torch.float64), width=50).item() == pytest.approx(
            action_gradient(sp1, T, Q, width=50).item(), rel=1e-9, abs=1e-12)
    single = solve_saddle(sp1, TEMPS, width=50)
    multi = solve_saddle(spD, TEMPS, width=50)
    assert multi.Q.shape == (len(TEMPS), 1, 1) and single.Q.shape == (len(TEMPS),)
    np.testing.assert_allclose(multi.Q[:, 0, 0], single.Q, rtol=1e-9)


def test_multi_output_saddle_is_stationary_and_symmetric():
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (0, 1, 7), n_train=90, n_test=10, seed=1)
    kb = nngp_kernels(t.x_train, activation="erf")
    sp = factorise(kb.train, torch.as_tensor(t.y_train), prior_v=1.0)
    sad = solve_saddle(sp, [0.01, 0.3, 3.0], width=45)
    assert sad.converged.all()
    for T, Q in zip(sad.temperature, sad.Q):
        np.testing.assert_allclose(Q, Q.T, atol=1e-14)
        assert np.linalg.eigvalsh(Q).min() > 0
        # dense check of the gradient: I − Q⁻¹ + (1/(λ1N1)) Σ_k κ_k (B⁻¹ − B⁻¹ỹỹᵀB⁻¹) summed blockwise
        P, D = t.y_train.shape
        A = T * np.eye(P * D) + np.kron(Q, kb.train.numpy())
        Ai = np.linalg.inv(A)
        yv = t.y_train.T.reshape(-1)  # output-major stacking, matching kron(Q, K)
        m = Ai @ yv
        G = np.eye(D) - np.linalg.inv(Q)
        for a in range(D):
            for b in range(D):
                blk = np.zeros((D, D))
                blk[a, b] = 1
                dA = np.kron(blk, kb.train.numpy())
                G[a, b] += (np.trace(Ai @ dA) - m @ dA @ m) / 45
        np.testing.assert_allclose(G, 0, atol=1e-9)


def test_one_api_over_output_dimensions():
    """Regression (issue 10, item 17): no `_multi` twins; the shape of the targets picks the order parameter."""
    import gdeq.equilibrium as eq

    twins = [n for n in eq.__all__ if n.endswith("_multi") or n.startswith("Multi")]
    assert not twins, twins
    K = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="y"):
        factorise(K, torch.ones(4, dtype=torch.float64), prior_v=1.0)
    sp = factorise(K, torch.eye(3, dtype=torch.float64)[:, :2], prior_v=1.0)
    with pytest.raises(ValueError, match="Q"):
        effective_action(sp, 0.1, torch.eye(3, dtype=torch.float64), width=10)
