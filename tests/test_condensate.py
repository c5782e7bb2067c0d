"""Level ``condensate`` (equilibrium.condensate, docs/theory.md B.12) against independent references: exact
sampling where one unit condenses, the gaussian level where none can (identity activation, large width), and the
refusals."""

import numpy as np
import pytest

from gdeq.equilibrium import temperature_curve
from gdeq.equilibrium.condensate import CondensateSettings, condensate_curve
from gdeq.equilibrium.kernels import nngp_kernels
from gdeq.equilibrium.sampling import SamplerSettings, sample_temperatures
from gdeq.gd_dynamics.data import load_task

FAST = CondensateSettings(chains=8, burn_in=150, draws=100, seed=3)


@pytest.fixture(scope="module")
def small_task():
    return load_task("mnist", (3, 5), n_train=60, n_test=50, seed=0)


def test_condensed_unit_matches_exact_sampling(small_task):
    """α = 5 (P = 60, N1 = 12), T = 0.03: the sampled network puts its readout on one unit; the level reproduces
    the sampled predictor and λ1⟨v²⟩ within 4 %, where the gaussian level is off by more than 20 % (errors) and 5 %
    (λ1⟨v²⟩)."""
    t, T = small_task, [0.03]
    ref = sample_temperatures(t.x_train, t.y_train, T, width=12, x_test=t.x_test, y_test=t.y_test,
                              settings=SamplerSettings(replicas=8, max_trajectories=3200, max_seconds=120, seed=1))[0]
    assert ref.diagnostics.converged
    r = condensate_curve(t.x_train, t.y_train, T, width=12, x_test=t.x_test, y_test=t.y_test, settings=FAST)
    g = temperature_curve(t.x_train, t.y_train, T, width=12, x_test=t.x_test, y_test=t.y_test, level="gaussian")
    assert r.condensate_alignment[0] > 0.9  # condensed: φ_c ∥ y
    assert r.rhat[0] < 1.05
    assert FAST.burn_in <= r.burn_in[0] <= FAST.max_burn_in
    for name, ours, gauss, apart in (("test_error", r.test_error, g.test_error, 0.2),
                                     ("train_error", r.train_error, g.train_error, 0.2),
                                     ("readout_second_moment", r.readout_second_moment, g.readout_second_moment, 0.05)):
        sampled = float(getattr(ref, name).mean)
        assert abs(ours[0] / sampled - 1) < 0.04, (name, ours[0], sampled)
        assert abs(gauss[0] / sampled - 1) > apart, (name, gauss[0], sampled)  # the test can tell the levels apart
    # N1·shift = N1·(cᵀ⟨K_W⟩c − cᵀKc) with the level's own Monte-Carlo error: within 3 combined s.e. + 3 %
    from gdeq import geometry
    base = geometry.centroid_distance(nngp_kernels(t.x_train, None).train.numpy(), t.y_train)
    ours = 12 * (geometry.centroid_distance(r.hidden_gram[0], t.y_train) - base)
    sampled, se = 12 * (float(ref.centroid_distance.mean) - base), 12 * float(ref.centroid_distance.se)
    assert 0 < r.centroid_shift_se[0] < 0.05 * abs(ours)
    assert abs(ours - sampled) < 3 * np.hypot(se, r.centroid_shift_se[0]) + 0.03 * abs(sampled), (ours, sampled, se)


@pytest.mark.parametrize("activation,width", [("identity", 400), ("erf", 20000)])
def test_no_condensation_gives_the_gaussian_level(small_task, activation, width):
    """Where no unit condenses — Gaussian features (identity, exact linear theory) or a width so large that a
    condensed readout costs N1/2 nats — the singled-out unit stays typical and the level is the gaussian level
    to O(1/N1) on the predictor and λ1⟨v²⟩."""
    t, T = small_task, [1.0, 0.1]
    r = condensate_curve(t.x_train, t.y_train, T, width=width, activation=activation, x_test=t.x_test,
                         y_test=t.y_test, settings=FAST)
    g = temperature_curve(t.x_train, t.y_train, T, width=width, activation=activation, x_test=t.x_test,
                          y_test=t.y_test, level="gaussian")
    assert np.all(r.condensate_alignment < 0.6)
    for ours, gauss in ((r.test_error, g.test_error), (r.train_error, g.train_error),
                        (r.readout_second_moment, g.readout_second_moment), (r.train_variance, g.train_variance)):
        np.testing.assert_allclose(ours, gauss, rtol=0.02)
    # the bulk takes the whole readout: its Q is the saddle point's
    np.testing.assert_allclose(r.bulk_Q, g.Q, rtol=0.02)


def test_level_in_temperature_curve_returns_every_observable(small_task):
    t = small_task
    c = temperature_curve(t.x_train, t.y_train, [0.03], width=12, x_test=t.x_test, y_test=t.y_test, level="condensate")
    for name in ("train_error", "train_variance", "test_error", "test_bias2", "test_variance", "readout_second_moment",
                 "centroid_shift", "centroid_distance", "unit_centroid_distance", "weight_label_moment"):
        assert np.all(np.isfinite(getattr(c, name))), name
    assert c.weight_moments.shape[1:] == (c.weight_directions.shape[0],) * 2
    # validated down to N1 = 5 (unlike the proportional-limit levels): N1 = 12 is in regime, N1 = 4 is not
    assert c.in_regime[0], c.regime_reason[0]
    narrow = condensate_curve(t.x_train, t.y_train, [1.0], width=4, settings=FAST)
    assert not narrow.in_regime[0] and "width" in narrow.regime_reason[0]


def test_refusals_before_any_work(small_task):
    import torch

    t = small_task
    with pytest.raises(ValueError, match="activation"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=10, activation="relu")
    with pytest.raises(ValueError, match="activation"):
        temperature_curve(t.x_train, t.y_train, [1.0], width=10, activation="relu", level="condensate")
    with pytest.raises(ValueError, match="width"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=1)
    with pytest.raises(ValueError, match="temperatures"):
        condensate_curve(t.x_train, t.y_train, [1.0, -0.1], width=10)
    with pytest.raises(ValueError, match="y_train"):
        condensate_curve(t.x_train, np.zeros(len(t.y_train)), [1.0], width=10)
    with pytest.raises(ValueError, match="x_test, y_test"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=10, x_test=t.x_test)
    with pytest.raises(ValueError, match="chains"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=10, settings=CondensateSettings(chains=7))
    with pytest.raises(ValueError, match="rhat_max"):
        CondensateSettings(rhat_max=1.0).check()
    # kernels or a spectrum of other inputs (here: the rows reversed) are refused, not used
    from gdeq.equilibrium.action import factorise
    from gdeq.equilibrium.kernels import nngp_kernels
    x = np.asarray(t.x_train, dtype=np.float64)
    other = nngp_kernels(x[::-1].copy(), None)
    with pytest.raises(ValueError, match="kernels"):
        condensate_curve(x, t.y_train, [1.0], width=10, kernels=other)
    wrong = factorise(2.0 * nngp_kernels(x, None).train, torch.as_tensor(np.asarray(t.y_train, dtype=np.float64)),
                      prior_v=1.0)
    with pytest.raises(ValueError, match="spectrum"):
        condensate_curve(x, t.y_train, [1.0], width=10, spectrum=wrong)
    with pytest.raises(ValueError, match="max_burn_in"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=10, settings=CondensateSettings(burn_in=200, max_burn_in=100))
    with pytest.raises(ValueError, match="response_samples"):
        condensate_curve(t.x_train, t.y_train, [1.0], width=10, settings=CondensateSettings(response_samples=-1))


def test_bulk_response_identity_is_wick_exactly(small_task):
    """Identity activation: φ is its own linear part, so the Monte-Carlo terms of the exact-activation response
    cancel and ⟨K_W⟩ and the weight moments equal the Wick (``response_samples=0``) values to round-off — float32
    round-off for ⟨K_W⟩, whose (samples × P × P) products run in float32 (a wrong term would be off by the response
    itself, ~10⁻², or by its Monte-Carlo error, ~10⁻⁴)."""
    t = small_task
    kw = dict(width=400, activation="identity", x_test=t.x_test, y_test=t.y_test)
    on = condensate_curve(t.x_train, t.y_train, [0.1], settings=FAST, **kw)
    off = condensate_curve(t.x_train, t.y_train, [0.1], settings=CondensateSettings(
        chains=8, burn_in=150, draws=100, seed=3, response_samples=0), **kw)
    scale = np.abs(off.hidden_gram - np.eye(off.hidden_gram.shape[-1])).max()
    np.testing.assert_allclose(on.hidden_gram, off.hidden_gram, atol=1e-6 * scale)
    np.testing.assert_allclose(on.hidden_gram_test, off.hidden_gram_test, atol=1e-6 * scale)
    w_scale = np.abs(off.weight_moments - np.eye(off.weight_moments.shape[-1])).max()  # the tilt's part (λ0 = 1)
    np.testing.assert_allclose(on.weight_moments, off.weight_moments, atol=1e-4 * w_scale)


def test_bulk_response_matches_brute_force_erf_response(small_task):
    """erf at N1 = 20000 (no condensation, bulk J = the gaussian level's to O(1/N1)): the level's N1·(cᵀ⟨K_W⟩c − cᵀKc)
    against an independent estimate of the exact-activation response N1·Cov_p0((cᵀφ)², ½φᵀJφ) — plain Monte Carlo in
    the full input space, 10 batches for its s.e. — within 3 s.e. (+1 % for the level's own sampling); the Wick value
    (the gaussian level) lies more than 4 s.e. away, so the test tells the two apart."""
    import math
    import torch

    from gdeq import geometry
    from gdeq.equilibrium.kernels import nngp_kernels

    t, T, N1 = small_task, 0.1, 20000.0
    x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
    r = condensate_curve(x, y, [T], width=N1, settings=CondensateSettings(
        chains=8, burn_in=150, draws=100, seed=3, response_samples=262144))
    g = temperature_curve(x, y, [T], width=N1, level="gaussian")
    K = nngp_kernels(x, None, activation="erf", prior_w=1.0).train
    kappa, U = torch.linalg.eigh(K)
    Q = float(g.Q[0])
    z = 1.0 / (T + Q * kappa.clamp_min(0.0))
    m = U @ (z * (U.T @ torch.as_tensor(y)))
    J = (Q / N1) * (torch.outer(m, m) - U @ torch.diag(z) @ U.T)
    c = torch.as_tensor(geometry.centroid_vector(y)).reshape(-1)
    Xs = torch.as_tensor(x) / math.sqrt(x.shape[1])
    gen = torch.Generator().manual_seed(11)
    batches = []
    for _ in range(10):
        phi = torch.erf(torch.randn(50000, x.shape[1], generator=gen, dtype=torch.float64) @ Xs.T)
        q = 0.5 * ((phi @ J) * phi).sum(1)
        batches.append(N1 * float(((phi @ c) ** 2 * (q - q.mean())).mean()))
    ref, se = float(np.mean(batches)), float(np.std(batches) / math.sqrt(len(batches)))
    ours = N1 * (geometry.centroid_distance(r.hidden_gram[0], y) - geometry.centroid_distance(K.numpy(), y))
    wick = float(g.centroid_shift[0])
    assert abs(ours - ref) < 3 * se + 0.01 * abs(ref), (ours, ref, se)
    assert abs(wick - ref) > 4 * se, (wick, ref, se)


def _condensate_measure_by_quadrature(x, y, xt, yt, T, N1, lim=8.0, n=121):
    """The level's own measure p(w_c) ∝ exp(−|w_c|²/2 − min_Q S_b(Q; u(w_c))) (λ0 = λ1 = 1) for N0 = 2 inputs, where
    w_c ∈ R² and the measure is a 2-d integral: brute-force quadrature on an n × n grid, min_Q by a grid in log Q
    and golden section, the GP given w_c with dense (P × P) inverses — none of the level's code (its eigenbasis
    forms, Newton solve, HMC). Returns the level's observables and the probability on the grid's edge."""
    from scipy.special import erf

    def kernel(a, b):  # the erf NNGP kernel (docs/theory.md §1)
        da, db = 1 + (a * a).sum(1), 1 + (b * b).sum(1)  # 1 + 2|x|²/N0, N0 = 2
        return (2 / np.pi) * np.arcsin((a @ b.T) / np.sqrt(np.outer(da, db)))

    P = len(y)
    K, Kt, Ktt = kernel(x, x), kernel(xt, x), kernel(xt, xt)
    kap, U = np.linalg.eigh(K)
    Nb, c = N1 - 1.0, (N1 - 1.0) / N1
    axis = np.linspace(-lim, lim, n)
    W = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    u, ut = erf(W @ x.T / np.sqrt(2)) / np.sqrt(N1), erf(W @ xt.T / np.sqrt(2)) / np.sqrt(N1)
    ur, yr = u @ U, U.T @ y

    def S(logQ):
        Q = np.exp(logQ)
        z = 1 / (T + c * Q[:, None] * kap[None])
        a, g = (z * ur * ur).sum(1), (z * ur * yr).sum(1)
        return 0.5 * Nb * (Q - logQ) - 0.5 * np.log(z).sum(1) + 0.5 * (z * yr * yr).sum(1) + 0.5 * np.log1p(a) \
            - 0.5 * g * g / (1 + a)

    grid = np.linspace(np.log(1e-4), np.log(1e2), 120)
    i = np.stack([S(np.full(len(W), q)) for q in grid], 1).argmin(1).clip(1, len(grid) - 2)
    lo, hi, gr = grid[i - 1], grid[i + 1], (np.sqrt(5) - 1) / 2
    for _ in range(50):
        m1, m2 = hi - gr * (hi - lo), lo + gr * (hi - lo)
        left = S(m1) < S(m2)
        hi, lo = np.where(left, m2, hi), np.where(left, lo, m1)
    logQ = 0.5 * (lo + hi)
    logp = -0.5 * (W * W).sum(1) - S(logQ)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    Q = np.exp(logQ)
    eye = np.eye(P)[None]
    AQi = np.linalg.inv(T * eye + (c * Q)[:, None, None] * K[None])
    Ai = np.linalg.inv(T * eye + (c * Q)[:, None, None] * K[None] + np.einsum("gp,gq->gpq", u, u))
    a, g = np.einsum("gp,gpq,gq->g", u, AQi, u), np.einsum("gp,gpq,q->g", u, AQi, y)
    omega = 1 / (1 + a) + g * g / (1 + a) ** 2
    r = Ai @ y
    f, var = y[None] - T * r, T - T * T * np.einsum("gpp->gp", Ai)
    kt = np.einsum("gt,gp->gtp", ut, u) + (c * Q)[:, None, None] * Kt[None]
    ft = np.einsum("gtp,gp->gt", kt, r)
    vt = ut * ut + (c * Q)[:, None] * np.diag(Ktt)[None] - np.einsum("gtp,gpq,gtq->gt", kt, Ai, kt)
    E = lambda v: np.tensordot(p, v, axes=(0, 0))  # noqa: E731
    fm, ftm = E(f), E(ft)
    edge = p.reshape(n, n)[[0, -1], :].sum() + p.reshape(n, n)[:, [0, -1]].sum()
    return dict(readout_second_moment=E((omega + Nb * Q) / N1), condensate_readout=E(omega), bulk_Q=E(Q),
                train_error=np.mean((y - fm) ** 2), train_variance=np.mean(E(var) + E(f * f) - fm * fm),
                test_error=np.mean((yt - ftm) ** 2) + np.mean(E(vt) + E(ft * ft) - ftm * ftm)), edge


@pytest.mark.parametrize("T", [0.1, 0.02])
def test_level_samples_its_measure_against_brute_force_quadrature(T):
    """Two input dimensions make the condensed unit's weight w_c ∈ R², so the level's measure is a 2-d integral at
    any width: N1 = 6, P = 24 (α = 4), T = 0.1 (λ1⟨v_c²⟩ ≈ 2.8) and 0.02 (condensed: ≈ 7.4 ≈ N1). The HMC level's
    predictor, λ1⟨v²⟩, bulk Q and λ1⟨v_c²⟩ against quadrature of the same measure (independent code, above):
    within 1.5 % (measured ≤ 0.9 %), λ1⟨v_c²⟩ within 3 % (measured ≤ 1.0 %)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(44, 2)) * 1.5
    y = np.sign(x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=44))
    exact, edge = _condensate_measure_by_quadrature(x[:24], y[:24], x[24:], y[24:], T, 6)
    assert edge < 1e-8
    r = condensate_curve(x[:24], y[:24], [T], width=6, x_test=x[24:], y_test=y[24:],
                         settings=CondensateSettings(chains=8, burn_in=150, draws=300, seed=1, response_samples=0))
    for name, tol in (("readout_second_moment", 0.015), ("bulk_Q", 0.015), ("train_error", 0.015),
                      ("train_variance", 0.015), ("test_error", 0.015), ("condensate_readout", 0.03)):
        assert abs(float(getattr(r, name)[0]) / exact[name] - 1) < tol, (name, getattr(r, name)[0], exact[name])


@pytest.mark.parametrize("width", [12, 60])
def test_centroid_shift_standard_error_matches_the_spread_over_seeds(small_task, width):
    """The reported Monte-Carlo error of N1·shift and of the weight label moment (the condensed unit's chain means
    and the bulk response's prior draws, the latter (N1 − 1)-fold) against the spread of the value over six seeds, at T = 0.03 (α = 5:
    condensed; α = 1): their ratio within [0.4, 2.5] (a 6-seed standard deviation is uncertain by ~30 %; the s.e.
    without the (N1 − 1) factor would be 10–60x too small)."""
    t = small_task
    x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
    from gdeq import geometry
    base = geometry.centroid_distance(nngp_kernels(x, None).train.numpy(), y)
    vals, ses, labels, label_ses = [], [], [], []
    for seed in range(6):
        r = condensate_curve(x, y, [0.03], width=width, settings=CondensateSettings(
            chains=8, burn_in=100, draws=50, seed=seed, response_samples=4096))
        assert r.response_samples == 4096
        vals.append(width * (geometry.centroid_distance(r.hidden_gram[0], y) - base))
        ses.append(r.centroid_shift_se[0])
        labels.append(r.weight_label_moment[0])
        label_ses.append(r.weight_label_moment_se[0])
    for v, e in ((vals, ses), (labels, label_ses)):  # N1·shift, then the weight label moment
        ratio = np.std(v, ddof=1) / np.sqrt(np.mean(np.square(e)))
        assert 0.4 < ratio < 2.5, (v, e)


def test_float32_products_leave_energy_and_force_at_float64_accuracy():
    """The HMC's (walkers × P × r) products run in float32 (equilibrium.condensate, ``_energy_and_force``). At
    P = 1000 (the speed benchmark's size), for typical and condensed walkers from T = 1 to 0.003, the energy is
    within 10⁻² of the all-float64 one (a change of the sampled density by < 1 %, far below its Monte-Carlo error),
    the force within 10⁻⁴ relative and Q within 10⁻⁵; the energies themselves span O(10³)."""
    import math
    import torch

    from gdeq import geometry
    from gdeq.equilibrium.condensate import _Bulk, _energy_and_force
    from gdeq.equilibrium.kernels import nngp_kernels

    t = load_task("mnist", (3, 5), n_train=1000, n_test=10, seed=0)
    x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
    Z = torch.as_tensor(geometry.span_reduction(x, None).x_train) / math.sqrt(x.shape[1])
    kappa, U = torch.linalg.eigh(nngp_kernels(x, None, activation="erf").train)
    temps = torch.tensor([1.0, 0.1, 0.01, 0.003], dtype=torch.float64).repeat_interleave(8)
    bulk = _Bulk(kappa, U.T @ torch.as_tensor(y), temps, 50.0, 1.0)
    w = torch.randn(len(temps), Z.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = Z.T @ torch.as_tensor(y)
    e = e / e.norm()
    w[1::2] += (2.0 / float((Z @ e).pow(2).mean().sqrt()) - w[1::2] @ e)[:, None] * e  # condensed walkers
    args = (geometry.activation_and_derivative("erf"), 1.0 / math.sqrt(50.0), 1.0)
    E64, F64, Q64, _ = _energy_and_force(w, None, Z, U, bulk, *args)
    E32, F32, Q32, _ = _energy_and_force(w, None, Z.float(), U.float(), bulk, *args)
    assert float((E64 - E32).abs().max()) < 1e-2, (E64 - E32).abs().max()
    assert float(E64.abs().max()) > 100.0
    assert float(((F64 - F32).norm(dim=1) / F64.norm(dim=1)).max()) < 1e-4
    np.testing.assert_allclose(Q32.numpy(), Q64.numpy(), rtol=1e-5)


def test_bulk_solve_against_scalar_minimiser_and_autograd():
    """The bulk's min over Q (``_Bulk.solve``: Newton in log Q, last step to second order) against an independent
    minimiser of S_b(Q; u) per walker (scipy's bounded Brent on log Q) and ∂S_b/∂u against autograd of S_b at that Q,
    from a cold start and from warm starts 1 % and 30 % off: Q within 10⁻⁵, S_b within 10⁻⁷ (relative), the force
    within 10⁻⁵ relative; the condensed unit's ω_c = 1/(1 + a) + g²/(1 + a)² from its closed form within 10⁻³ (it is
    taken at the last evaluation, O(tol) off, and only tells the branches apart during burn-in)."""
    import math

    import torch
    from scipy.optimize import minimize_scalar

    from gdeq.equilibrium.condensate import _Bulk

    gen = torch.Generator().manual_seed(0)
    P, B = 200, 12
    kappa = torch.rand(P, generator=gen, dtype=torch.float64) ** 4 * 60.0
    y = torch.randn(P, generator=gen, dtype=torch.float64)
    T = torch.logspace(-2.5, 1.0, B, dtype=torch.float64)
    uk = 0.05 * torch.randn(B, P, generator=gen, dtype=torch.float64)
    uk[::2] += 1.5 * y / y.norm()  # condensed-like walkers: u along the labels
    for N1 in (50.0, 5.0):
        bulk = _Bulk(kappa, y, T, N1, 1.0)
        ref_Q = []
        for i in range(B):
            one = _Bulk(kappa, y, T[i:i + 1], N1, 1.0)
            f = lambda lq: float(one.action(torch.tensor([math.exp(lq)], dtype=torch.float64), uk[i:i + 1]))
            ref_Q.append(math.exp(minimize_scalar(f, bounds=(-12.0, 6.0), method="bounded",
                                                  options={"xatol": 1e-10}).x))
        ref_Q = torch.tensor(ref_Q, dtype=torch.float64)
        u = uk.clone().requires_grad_(True)
        S_ref = bulk.action(ref_Q, u)
        (dS_ref,) = torch.autograd.grad(S_ref.sum(), u)
        z = 1.0 / (T[:, None] + ref_Q[:, None] * bulk.b)
        a, g = (z * uk * uk).sum(1), (z * y * uk).sum(1)
        for start in (None, ref_Q * 1.01, ref_Q * 1.3):
            Q, S, dS, omega = bulk.solve(uk, start)
            np.testing.assert_allclose(Q.numpy(), ref_Q.numpy(), rtol=1e-5)
            np.testing.assert_allclose(S.numpy(), S_ref.detach().numpy(), rtol=1e-7)
            assert float(((dS - dS_ref).norm(dim=1) / dS_ref.norm(dim=1)).max()) < 1e-5
            np.testing.assert_allclose(omega.numpy(), (1 / (1 + a) + g * g / (1 + a) ** 2).numpy(), rtol=1e-3)
