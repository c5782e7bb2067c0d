"""Deep fully-connected kernel renormalisation (equilibrium/deep.py).

References: deepbays 0.1.11 ``rkgp.FC_deep`` on the same arrays (equal widths; imported through
tests/deepbays_stub.py), the one-hidden-layer theory of ``equilibrium.temperature_curve`` (L = 1),
a derivative-free minimisation of the action, finite differences of the action, and the exact
scaling of homogeneous (ReLU) kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from gdeq import equilibrium as eq
from gdeq import geometry
from gdeq.equilibrium import deep

TEMPS = np.array([1e-2, 0.1, 1.0])


@pytest.fixture(scope="module")
def task():
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=60, n_test=50, seed=0)


def _relu_torch_nan_safe(cxx, cxy, cyy):
    """deepbays' kernel_relu_torch with u clamped below 1: the same values to ~1e-18, but a finite
    gradient on the diagonal (u = 1), where deepbays' own version gives d/du √(1−u²) = −∞ → NaN."""
    u = (cxy / torch.sqrt(cxx * cyy)).clamp(-1.0, 1.0 - 1e-12)
    return torch.sqrt(cxx * cyy) * (u * (torch.pi - torch.arccos(u)) + torch.sqrt(1 - u**2)) / (2 * torch.pi)


def _deepbays_fc_deep(db, task, L, N, priors, act, temps, *, safe_relu=False):
    Q, err = [], []
    for T in temps:
        model = db.rkgp.FC_deep(L, N, T, priors=priors, act=act)
        model.preprocess(task.x_train, torch.tensor(task.y_train))
        if safe_relu:
            model.kernelTorch = _relu_torch_nan_safe
        model.optimize()
        assert model.converged
        model.predict(task.x_test)
        Q.append(model.optQ)
        err.append(model.averageLoss(task.y_test)[0])
    return np.array(Q), np.array(err)


@pytest.mark.parametrize("L, activation", [(2, "erf"), (3, "erf"), (2, "relu")])
def test_parity_with_deepbays_fc_deep(deepbays, task, L, activation):
    N = 30
    priors = [1.0, 2.0, 0.5, 1.5][: L + 1]
    ours = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, width=[N] * L, activation=activation,
                                       prior_w=priors[0], prior_v=priors[1:], x_test=task.x_test,
                                       y_test=task.y_test, geometry_measures=False)
    Q, err = _deepbays_fc_deep(deepbays, task, L, N, priors, activation, TEMPS, safe_relu=activation == "relu")
    assert ours.converged.all()
    np.testing.assert_allclose(ours.Q, Q, rtol=1e-6)
    np.testing.assert_allclose(ours.test_error, err, rtol=1e-6)


def test_deepbays_relu_gradient_is_nan_on_the_inner_layer(deepbays, task):
    """The bug worked around above: deepbays' deep ReLU action has a NaN gradient for Q_1 (L ≥ 2),
    so its fsolve never leaves the prior Q = 1; our exact one-eigendecomposition path is finite."""
    model = deepbays.rkgp.FC_deep(2, 30, 0.1, priors=[1.0, 1.0, 1.0], act="relu")
    model.preprocess(task.x_train, torch.tensor(task.y_train))
    g = model.computeActionGrad(np.ones(2))
    assert np.isnan(g[0]) and np.isfinite(g[1])
    model.optimize()
    pb = deep.deep_problem(task.x_train, task.y_train, width=[30, 30], activation="relu")
    ours = deep.solve_deep_saddle(pb, [0.1]).Q[0]
    assert np.isfinite(ours).all()
    # deepbays stays at the prior value and says so; the true saddle is > 5 % away
    assert not model.converged
    np.testing.assert_allclose(model.optQ, 1.0)
    assert np.abs(ours - 1.0).max() > 0.05


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_one_layer_is_the_one_hidden_layer_theory(task, activation):
    ours = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, width=[40], activation=activation,
                                       prior_w=1.5, prior_v=0.7, x_test=task.x_test, y_test=task.y_test)
    ref = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=40, activation=activation, prior_w=1.5,
                               prior_v=0.7, x_test=task.x_test, y_test=task.y_test)
    np.testing.assert_allclose(ours.Q[:, 0], ref.Q, rtol=1e-9)
    np.testing.assert_allclose(ours.test_error, ref.test_error, rtol=1e-9)
    np.testing.assert_allclose(ours.train_error, ref.train_error, rtol=1e-8)
    np.testing.assert_allclose(ours.train_variance, ref.train_variance, rtol=1e-8)
    # the layer Gram at the kernel-renormalisation level is the NNGP kernel (no O(1/N1) tilt)
    nngp = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=40, activation=activation, prior_w=1.5,
                                prior_v=0.7, level="nngp")
    np.testing.assert_allclose(ours.layer_geometry["centroid_distance"][:, 0], nngp.centroid_distance, rtol=1e-10)


def test_gradient_matches_finite_differences(task):
    pb = deep.deep_problem(task.x_train, task.y_train, width=[20, 50, 35], activation="erf", prior_v=[1.0, 2.0, 0.5])
    Q = np.array([1.3, 0.8, 1.6])
    g = deep.deep_action_gradient(pb, 0.05, Q)
    h = 1e-6
    fd = [(deep.deep_effective_action(pb, 0.05, Q + h * e) - deep.deep_effective_action(pb, 0.05, Q - h * e)) / (2 * h)
          for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_unequal_widths_saddle_is_the_minimum_of_the_action(task):
    """deepbays has one width for all layers; with N_ℓ different the saddle is checked against a
    derivative-free minimisation of S (Nelder–Mead on log Q)."""
    pb = deep.deep_problem(task.x_train, task.y_train, width=[20, 60], activation="erf", prior_v=[1.0, 0.5])
    sad = deep.solve_deep_saddle(pb, [0.02, 0.3])
    for i, T in enumerate([0.02, 0.3]):
        r = minimize(lambda u: deep.deep_effective_action(pb, T, np.exp(u)), np.zeros(2), method="Nelder-Mead",
                     options=dict(xatol=1e-11, fatol=1e-15, maxiter=4000))
        np.testing.assert_allclose(sad.Q[i], np.exp(r.x), rtol=1e-6)
        assert sad.action[i] <= r.fun + 1e-12


def test_homogeneous_path_matches_newton(task):
    """Identity activation: the one-eigendecomposition path (N_ℓ(Q_ℓ − 1) equal across layers)
    and the general Newton continuation find the same saddle."""
    pb = deep.deep_problem(task.x_train, task.y_train, width=[25, 70, 40], activation="identity",
                           prior_v=[1.0, 2.0, 0.5])
    T = np.logspace(-2, 0, 4)
    a = deep.solve_deep_saddle(pb, T)
    b = deep.solve_deep_saddle(pb, T, method="newton")
    np.testing.assert_allclose(a.Q, b.Q, rtol=1e-8)
    c = (a.Q - 1.0) * np.array([25, 70, 40])
    np.testing.assert_allclose(c, c[:, :1].repeat(3, 1), rtol=1e-10, atol=1e-10)


def test_relu_layer_geometry_scales_exactly(task):
    """ReLU is homogeneous: G_2 = (Q_1/λ_1) κ(G_1), so layer 2's squared centroid distance is
    Q_1 × its NNGP value and its unit-sphere measures do not move with T."""
    cur = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, width=[30, 50], activation="relu",
                                      prior_v=[2.0, 1.0])
    cd = cur.layer_geometry["centroid_distance"]
    np.testing.assert_allclose(cd[:, 1], cur.Q[:, 0] * cur.reference["centroid_distance"][1], rtol=1e-10)
    np.testing.assert_allclose(cur.layer_geometry["unit_centroid_distance"][:, 1],
                               np.full(len(TEMPS), cur.reference["unit_centroid_distance"][1]), rtol=1e-9)
    # layer 1 is the NNGP Gram, measured by the shared geometry code
    K = eq.nngp_kernels(task.x_train, activation="relu").train
    assert cd[0, 0] == pytest.approx(float(geometry.centroid_distance(K, task.y_train)), rel=1e-12)


def test_high_temperature_is_the_prior(task):
    cur = deep.deep_temperature_curve(task.x_train, task.y_train, [1e4], width=[30, 30], activation="erf")
    np.testing.assert_allclose(cur.Q, 1.0, atol=1e-4)
    np.testing.assert_allclose(cur.layer_geometry["centroid_distance"][0], cur.reference["centroid_distance"],
                               rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=[30, 0]), "width"),
    (dict(width=[30, 30], prior_v=[1.0]), "prior_v"),
    (dict(width=[30, 30], prior_v=[1.0, -1.0]), "prior_v"),
    (dict(width=[30, 30], activation="tanh"), "activation"),
    (dict(width=[30, 30], prior_w=0.0), "prior_w"),
])
def test_bad_input_names_the_parameter(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, **kwargs)


def _one_hot(task, D=3):
    """D classes from the MNIST 3-vs-5 pixels: class = (label > 0) + (mean intensity above its median)
    (any fixed assignment serves; one-hot targets as the one-hidden-layer D-output theory takes them)."""
    def enc(x, y):
        c = (np.asarray(y) > 0).astype(int) + (np.asarray(x).mean(1) > np.median(np.asarray(task.x_train).mean(1)))
        return np.eye(D)[np.minimum(c, D - 1)]
    return enc(task.x_train, task.y_train), enc(task.x_test, task.y_test)


def test_multi_output_one_layer_is_the_one_hidden_layer_theory(task):
    """L = 1 with one-hot targets: the D×D Q and the summed errors of the one-hidden-layer D-output
    theory (equilibrium.action §2.4, an independent eigenbasis implementation)."""
    Y, Yt = _one_hot(task)
    T = np.array([0.01, 0.2, 2.0])
    ours = deep.deep_temperature_curve(task.x_train, Y, T, width=[40], activation="erf", prior_w=1.5, prior_v=0.7,
                                       x_test=task.x_test, y_test=Yt)
    ref = eq.temperature_curve(task.x_train, Y, T, width=40, activation="erf", prior_w=1.5, prior_v=0.7,
                               x_test=task.x_test, y_test=Yt)
    assert ours.converged.all() and ours.Q_readout.shape == (3, 3, 3)
    np.testing.assert_allclose(ours.Q_readout, ref.Q, rtol=1e-7, atol=1e-9)
    for k in ("test_error", "train_error", "train_variance", "test_bias2", "test_variance"):
        np.testing.assert_allclose(getattr(ours, k), getattr(ref, k), rtol=1e-7, err_msg=k)
    np.testing.assert_allclose(ours.test_prediction, ref.test_prediction, rtol=1e-6, atol=1e-9)


def test_multi_output_evaluator_reduces_to_one_output_and_to_the_dense_kronecker_action(task):
    """(i) the D-output evaluator run on (P, 1) targets is the scalar action and gradient; (ii) for
    D = 3 its S equals log det and quadratic form of the dense (P·D)² matrix T + Q_L ⊗ G_L/λ_L;
    (iii) its gradient matches finite differences."""
    from dataclasses import replace

    pb = deep.deep_problem(task.x_train, task.y_train, width=[20, 35], activation="erf", prior_v=[1.3, 0.8])
    u = np.array([0.2, -0.3])
    pb1 = replace(pb, y=pb.y[:, None])
    S1, g1, _, _ = deep._evaluate_multi(pb1, 0.05, u)
    S0, g0, _, _ = deep._evaluate(pb, 0.05, u)
    assert S1 == pytest.approx(S0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-10)
    Y, _ = _one_hot(task)
    pbD = deep.deep_problem(task.x_train, Y, width=[20, 35], activation="erf", prior_v=[1.3, 0.8])
    uD = np.array([0.2, 0.1, 0.05, -0.1, -0.2, 0.03, 0.3])  # log Q1, Σ upper triangle (3×3)
    S, g, _, _ = deep._evaluate_multi(pbD, 0.05, uD)
    _, _, _, QL = deep._readout(pbD, uD)
    GL = deep.deep_kernels(pbD.C, [np.exp(0.2), 1.0], pbD.priors, "erf")[0][1]
    A = 0.05 * torch.eye(3 * pbD.P, dtype=torch.float64) + torch.kron(torch.as_tensor(QL), GL) / 0.8
    yv = pbD.y.T.reshape(-1)  # output-major, as kron(Q_L, G_L)
    dense = (20 / 20) * (np.exp(0.2) - 0.2) + (35 / 20) * (np.trace(QL) - np.log(np.linalg.det(QL))) \
        + (float(torch.logdet(A)) + float(yv @ torch.linalg.solve(A, yv))) / 20
    assert S == pytest.approx(dense, rel=1e-11)
    h = 1e-6
    fd = [(deep._evaluate_multi(pbD, 0.05, uD + h * e, gradient=False)[0]
           - deep._evaluate_multi(pbD, 0.05, uD - h * e, gradient=False)[0]) / (2 * h) for e in np.eye(len(uD))]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_multi_output_two_layers_saddle(task):
    """L = 2, D = 3: converged minimum (the Newton certificate: round-off gradient, positive Hessian),
    symmetric positive-definite Q_L, and S there below S on a ring of nearby points."""
    Y, Yt = _one_hot(task)
    cur = deep.deep_temperature_curve(task.x_train, Y, [0.02, 0.5], width=[25, 30], activation="erf",
                                      x_test=task.x_test, y_test=Yt)
    sad = cur.saddle
    assert cur.converged.all() and sad.method == "newton"
    assert np.all(np.linalg.eigvalsh(cur.Q_readout) > 0)
    np.testing.assert_allclose(cur.Q[:, 1], np.trace(cur.Q_readout, axis1=1, axis2=2) / 3, rtol=1e-12)
    pb = deep.deep_problem(task.x_train, Y, width=[25, 30], activation="erf")
    rng = np.random.default_rng(0)
    for i, T in enumerate([0.02, 0.5]):
        u = deep._params(pb, cur.Q[i], cur.Q_readout[i])
        S0 = deep._evaluate(pb, T, u, gradient=False)[0]
        assert S0 == pytest.approx(sad.action[i], rel=1e-12)
        for _ in range(6):
            d = rng.normal(size=u.size)
            assert deep._evaluate(pb, T, u + 1e-3 * d / np.linalg.norm(d), gradient=False)[0] > S0
    assert np.all(np.isfinite(cur.test_error)) and cur.test_prediction.shape == (2, len(Yt), 3)
    assert cur.layer_geometry["centroid_distance_matrix"].shape == (2, 2, 3, 3)


# ------------------------------------------------------------------------------------------
# two hidden layers (erf): the profile solver over Q1
# ------------------------------------------------------------------------------------------
def test_profile_solver_matches_newton_continuation(task):
    """The profile path (one eigh per Q1 node, exact Newton polish) and the previous Newton
    continuation find the same saddle, unequal widths and priors, over four decades of T."""
    pb = deep.deep_problem(task.x_train, task.y_train, width=[20, 45], activation="erf", prior_w=1.3,
                           prior_v=[0.8, 1.7])
    T = np.logspace(-3, 1, 9)
    a = deep.solve_deep_saddle(pb, T)
    b = deep.solve_deep_saddle(pb, T, method="newton")
    assert a.method == "profile" and a.converged.all() and b.converged.all()
    np.testing.assert_allclose(a.Q, b.Q, rtol=1e-8)
    np.testing.assert_allclose(a.action, b.action, rtol=1e-10)
    # certified: the exact gradient at the returned point is at round-off level or the Newton step was
    assert np.all(np.abs(a.gradient) < 1e-7)
    assert a.n_eigendecompositions >= 2 and a.n_evaluations >= len(T)


def test_profile_hessian_matches_finite_differences(task):
    pb = deep.deep_problem(task.x_train, task.y_train, width=[25, 40], activation="erf", prior_v=[1.3, 0.7])
    G1 = deep.deep_kernels(pb.C, np.ones(2), pb.priors, "erf")[0][0]
    u, T, h = np.array([0.3, -0.2]), 0.05, 1e-5
    ev = deep._exact_l2(pb, G1, T, u)
    assert ev.S == pytest.approx(deep.deep_effective_action(pb, T, np.exp(u)), rel=1e-13)
    fd_g = [(deep._exact_l2(pb, G1, T, u + h * e).S - deep._exact_l2(pb, G1, T, u - h * e).S) / (2 * h)
            for e in np.eye(2)]
    fd_H = np.array([(deep._exact_l2(pb, G1, T, u + h * e).g - deep._exact_l2(pb, G1, T, u - h * e).g) / (2 * h)
                     for e in np.eye(2)])
    np.testing.assert_allclose(ev.g, fd_g, rtol=1e-7)
    np.testing.assert_allclose(deep._exact_l2_hessian(pb, G1, ev), fd_H, rtol=1e-6)


def test_profile_counts_the_minima_of_a_dense_profile(task):
    """n_minima against the exact profile S*(Q1) = min_Q2 S on a dense grid of 241 nodes (each one
    eigendecomposition; the grid's local minima are counted independently of the solver)."""
    pb = deep.deep_problem(task.x_train, task.y_train, width=[15, 15], activation="erf")
    T = np.array([2e-3, 0.03, 0.5, 5.0])
    sad = deep.solve_deep_saddle(pb, T)
    G1 = deep.deep_kernels(pb.C, np.ones(2), pb.priors, "erf")[0][0]
    grid = np.linspace(-0.6, 1.8, 241)
    S = np.array([deep._profile_node(pb, G1, float(u), T).S for u in grid])  # (241, nT)
    for i in range(len(T)):
        s = S[:, i]
        k = np.nonzero((s[1:-1] < s[:-2]) & (s[1:-1] < s[2:]))[0] + 1
        assert len(k) == sad.n_minima[i]
        best = k[np.argmin(s[k])]
        assert abs(np.log(sad.Q[i, 0]) - grid[best]) <= grid[1] - grid[0]
        assert sad.action[i] <= s[best] + 1e-12


def test_profile_failure_is_reported(task):
    pb = deep.deep_problem(task.x_train, task.y_train, width=[20, 20], activation="erf")
    with pytest.raises(ValueError, match="did not converge at T"):
        deep.solve_deep_saddle(pb, [1e-3, 0.5], max_iter=0)
    sad = deep.solve_deep_saddle(pb, [1e-3, 0.5], max_iter=0, raise_on_failure=False)
    assert not sad.converged.any() and np.all(sad.n_minima == 0)
    assert np.all(np.isfinite(sad.Q)) and np.all(np.abs(sad.gradient) > 1e-9)  # the unconverged point, shown
    cur = deep.deep_temperature_curve(task.x_train, task.y_train, [1e-3, 0.5], width=[20, 20], max_iter=0,
                                      raise_on_failure=False, x_test=task.x_test, y_test=task.y_test)
    assert not cur.converged.any() and np.all(np.isfinite(cur.test_error))
    with pytest.raises(ValueError, match="method"):
        deep.solve_deep_saddle(deep.deep_problem(task.x_train, task.y_train, width=[20, 20, 20]), [0.1],
                               method="profile")


def test_profile_curve_reuses_the_factorisation_exactly(task):
    """The curve takes the predictor from the polish's last Cholesky/inverse; the general path
    refactorises at Q*: same numbers."""
    kw = dict(width=[30, 40], activation="erf", prior_v=[1.2, 0.9], x_test=task.x_test, y_test=task.y_test)
    a = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, **kw)
    b = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, method="newton", **kw)
    for k in ("Q", "train_error", "train_variance", "test_error", "test_prediction", "test_prediction_variance"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-7, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(a.layer_geometry["centroid_distance"], b.layer_geometry["centroid_distance"],
                               rtol=1e-7)


def test_homogeneous_curve_predictor_is_the_dense_gp(task):
    """ReLU, L = 3: the predictor from the one eigendecomposition of K̂ (K_L = Π Q_ℓ K̂) equals the
    dense GP with kernel K_L(Q*) and noise T (Cholesky at every temperature)."""
    cur = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, width=[30, 50, 40], activation="relu",
                                      prior_v=[1.2, 0.9, 1.5], x_test=task.x_test, y_test=task.y_test,
                                      geometry_measures=False)
    X = torch.as_tensor(np.asarray(task.x_train, dtype=np.float64))
    Xt = torch.as_tensor(np.asarray(task.x_test, dtype=np.float64))
    Xa = torch.cat([X, Xt])
    y = torch.as_tensor(np.asarray(task.y_train, dtype=np.float64))
    P = X.shape[0]
    for i, T in enumerate(TEMPS):
        _, K = deep.deep_kernels(eq.kernels.input_covariance(Xa, Xa, 1.0), cur.Q[i], [1.2, 0.9, 1.5], "relu")
        K = K[-1]
        A = K[:P, :P] + T * torch.eye(P, dtype=torch.float64)
        mean = K[P:, :P] @ torch.linalg.solve(A, y)
        var = torch.diagonal(K[P:, P:]) - (K[P:, :P] * torch.linalg.solve(A, K[:P, P:]).T).sum(1)
        np.testing.assert_allclose(cur.test_prediction[i], mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(cur.test_prediction_variance[i], var.numpy(), rtol=1e-8, atol=1e-12)
        r = y - K[:P, :P] @ torch.linalg.solve(A, y)
        assert cur.train_error[i] == pytest.approx(float((r**2).mean()), rel=1e-9)
        tv = T - T**2 * float(torch.linalg.inv(A).diagonal().mean())
        assert cur.train_variance[i] == pytest.approx(tv, rel=1e-9)


def test_hermite_candidates_find_both_wells_of_a_double_well():
    """The candidate step of the profile solver on a known profile S(u) = (u² − 1)² + 0.1u (two
    minima near u = ±1, the left one lower): every local minimum of the interpolant is a candidate,
    within the interpolation error of the true minima."""
    us = np.linspace(-2.0, 2.0, 17)
    S = lambda u: (u * u - 1.0) ** 2 + 0.1 * u  # noqa: E731
    g = lambda u: 4.0 * u * (u * u - 1.0) + 0.1  # noqa: E731
    nodes = [deep._Node(u1=float(u), S=np.array([S(u)]), g=np.array([g(u)]), u2=np.zeros(1),
                        n_inner=np.ones(1, np.int64)) for u in us]
    cands = [c[0] for j in range(len(us) - 1) for c in deep._hermite_minima(nodes[j], nodes[j + 1], 0)]
    true = np.sort([r.real for r in np.roots([4.0, 0.0, -4.0, 0.1]) if 4 * 3 * r.real**2 - 4 > 0])
    assert len(cands) == 2
    np.testing.assert_allclose(np.sort(cands), true, atol=2e-3)
