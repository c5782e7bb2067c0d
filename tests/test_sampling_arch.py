"""The deep-FC / CNN posterior sampler (equilibrium.sampling_arch) against independent references:
quadrature of tiny networks (readout integrated in closed form, inner weights on a grid), the
one-hidden-layer sampler (a CNN with one patch and a one-layer "deep" network are that model), the
prior limit (identity activation: exact layer Grams at any width), and the temperature_curve dispatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from gdeq import geometry
from gdeq.equilibrium import SamplerSettings, temperature_curve
from gdeq.equilibrium.conv import conv_temperature_curve
from gdeq.equilibrium.deep import deep_temperature_curve
from gdeq.equilibrium.sampling import _Problem, sample_posterior
from gdeq.equilibrium.sampling_arch import _ConvTarget, _DeepTarget, sample_architecture

# fixed-length runs: their R̂ is reported, and the comparisons use the spread over independent chains
pytestmark = pytest.mark.filterwarnings("ignore::gdeq.equilibrium.sampling.SamplingConvergenceWarning")

X4 = np.array([[-1.6], [-0.5], [0.4], [1.3]])
Y4 = np.array([-1.0, 1.0, -1.0, 1.0])


def _within(est, ref, k=4.0, floor=2e-3):
    diff = np.abs(np.asarray(est.mean) - ref)
    return bool(np.all(diff <= k * np.asarray(est.se) + floor)), diff, est.se


def _evidence_weights(logp):
    p = np.exp(logp - logp.max())
    return p / p.sum()


def test_tiny_deep_network_matches_quadrature():
    """Widths [1, 1], N0 = 1: the two inner weights on a 2-d grid, the readout in closed form."""
    T, lam0, lam1, lam2 = 0.3, 1.0, 1.5, 0.8
    w = np.linspace(-7, 7, 281)
    w1, w2 = (a.ravel() for a in np.meshgrid(w, w, indexing="ij"))
    phi1 = erf(w1[:, None] * X4[None, :, 0])  # (G, P)
    phi2 = erf(w2[:, None] * phi1)
    prec = lam2 + (phi2**2).sum(1) / T  # v | W, N_L = 1
    vbar = (phi2 @ Y4) / (T * prec)
    logp = -0.5 * lam0 * w1**2 - 0.5 * lam1 * w2**2 - 0.5 * np.log(prec) + 0.5 * prec * vbar**2
    p = _evidence_weights(logp)
    ref = dict(f=p @ (phi2 * vbar[:, None]), Q1=p @ (lam1 * w2**2), Q2=p @ (lam2 * (vbar**2 + 1 / prec)),
               c1=geometry.centroid_distance(np.einsum("g,gp,gq->pq", p, phi1, phi1), Y4),
               c2=geometry.centroid_distance(np.einsum("g,gp,gq->pq", p, phi2, phi2), Y4))
    assert abs(ref["Q2"] - 1) > 0.1 and abs(ref["Q1"] - 1) > 0.02  # the posterior is not the prior
    s = sample_architecture(X4, Y4, [T], width=[1, 1], prior_w=lam0, prior_v=[lam1, lam2],
                            settings=SamplerSettings(replicas=64, burn_in=10, sampling_time=60, seed=3))[0]
    checks = (("f", s["train_mean"]), ("Q1", Estimate1(s["Q"], 0)), ("Q2", Estimate1(s["Q"], 1)),
              ("c1", s["layer1_centroid_distance"]), ("c2", s["layer2_centroid_distance"]))
    for name, est in checks:
        ok, diff, se = _within(est, ref[name])
        assert ok, f"{name}: |sample − quadrature| = {diff} vs s.e. {se}"
    assert s.acceptance > 0.5


def Estimate1(e, i):
    return geometry.Estimate(np.asarray(e.mean)[i], np.asarray(e.se)[i])


def test_tiny_cnn_matches_quadrature():
    """One channel, two 1-pixel patches (image 1 × 1 × 2): one filter weight on a grid, v in closed form."""
    T, lam0, lam1 = 0.4, 1.2, 0.7
    x = np.array([[-1.5, 0.3], [-0.4, 1.1], [0.6, -1.2], [1.4, 0.5]])
    y = np.array([-1.0, 1.0, -1.0, 1.0])
    w = np.linspace(-8, 8, 4001)
    phi = erf(w[:, None, None] * x[None] / math.sqrt(1.0))  # (G, P, Np); C m² = 1
    N = 2  # Nc·Np
    prec = lam1 * np.eye(2) + np.einsum("gpi,gpj->gij", phi, phi) / (N * T)
    cov = np.linalg.inv(prec)
    vbar = np.einsum("gij,gpj,p->gi", cov, phi, y) / (T * math.sqrt(N))
    logp = -0.5 * lam0 * w**2 - 0.5 * np.linalg.slogdet(prec)[1] + 0.5 * np.einsum("gi,gij,gj->g", vbar, prec, vbar)
    p = _evidence_weights(logp)
    vv = vbar[:, :, None] * vbar[:, None, :] + cov  # E[v_i v_j | w]
    Kv = np.einsum("gpi,gij,gqj->gpq", phi, vv, phi) / N
    ref = dict(f=p @ (np.einsum("gpi,gi->gp", phi, vbar) / math.sqrt(N)), Q=lam1 * np.tensordot(p, vv, 1),
               cK=geometry.centroid_distance(np.tensordot(p, Kv, 1), y),
               cH=geometry.centroid_distance(np.tensordot(p, np.einsum("gpi,gqi->gpq", phi, phi) / N, 1), y))
    assert abs(ref["Q"][0, 1]) > 0.05  # off-diagonal patch-patch order parameter is real
    s = sample_architecture(x, y, [T], width=1, architecture="cnn", patch_size=1, image_shape=(1, 1, 2),
                            prior_w=lam0, prior_v=lam1,
                            settings=SamplerSettings(replicas=64, burn_in=10, sampling_time=60, seed=5))[0]
    for name, est in (("f", s["train_mean"]), ("Q", s["Q"]), ("cK", s["centroid_distance"]),
                      ("cH", s["hidden_centroid_distance"])):
        ok, diff, se = _within(est, ref[name])
        assert ok, f"{name}: |sample − quadrature| = {diff} vs s.e. {se}"
    # the readout scale is tr Q/Np, measured two ways
    assert np.isclose(np.trace(s["Q"].mean) / 2, s["readout_second_moment"].mean * lam1, rtol=1e-10)


def _small_task(seed=0, P=12, side=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(P, side * side))
    y = np.where(np.arange(P) % 2 == 0, 1.0, -1.0)
    return x, y


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_collapsed_energies_reduce_to_the_one_hidden_layer_target(activation):
    """A CNN with one patch covering the image and a deep network with one layer are the
    one-hidden-layer model: same collapsed energy and gradient as equilibrium.sampling's target."""
    x, y = _small_task()
    T = torch.tensor([0.7, 0.05, 0.7], dtype=torch.float64)
    lam0, lam1, N1 = 1.3, 0.9, 5
    kw = dict(dtype=torch.float64, device=torch.device("cpu"))
    fc = _Problem(x, y, None, N1, T, activation, lam0, lam1, False, torch.device("cpu"), torch.float64)
    W = torch.randn(3, x.shape[1], N1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / math.sqrt(lam0)
    W[2] *= 3.0  # a state far from the prior bulk
    U_ref, g_ref = fc.collapsed(W)
    u = (W * math.sqrt(lam0)).reshape(3, 1, -1)
    cnn = _ConvTarget(x, y, None, N1, 4, (1, 4, 4), activation, lam0, lam1, T.numpy(), kw)
    deep = _DeepTarget(x, y, None, [N1], activation, lam0, [lam1], T.numpy(), False, kw)
    for tgt in (cnn, deep):
        U, g = tgt.collapsed(u)
        assert torch.allclose(U, U_ref, rtol=1e-11, atol=1e-9), (U, U_ref)
        # u = √λ0 W: ∂U/∂u = ∂U/∂W / √λ0
        assert torch.allclose(g.reshape(3, -1), (g_ref / math.sqrt(lam0)).reshape(3, -1), rtol=1e-9, atol=1e-9)


def test_cnn_with_one_patch_samples_the_one_hidden_layer_posterior():
    """Same posterior through two samplers: the CNN with one patch and sampling.sample_posterior."""
    x, y = _small_task(1, P=10, side=3)
    T, N1 = 0.2, 4
    s = SamplerSettings(replicas=32, burn_in=10, sampling_time=50, seed=2)
    cnn = sample_architecture(x, y, [T], width=N1, architecture="cnn", patch_size=3, image_shape=(1, 3, 3),
                              settings=s)[0]
    fc = sample_posterior(x, y, width=N1, temperature=T, settings=SamplerSettings(replicas=32, burn_in=10,
                                                                                  sampling_time=50, seed=7))
    pairs = ((cnn["train_mean"], fc.train_mean), (cnn["readout_second_moment"], fc.readout_second_moment),
             (cnn["hidden_centroid_distance"], fc.centroid_distance), (cnn["train_error"], fc.train_error))
    for a, b in pairs:
        z = np.abs(np.asarray(a.mean) - np.asarray(b.mean)) / np.sqrt(np.asarray(a.se) ** 2 + np.asarray(b.se) ** 2)
        assert np.all(z < 4.5), z
    assert abs(fc.readout_second_moment.mean - 1) > 0.1  # far from the prior


def test_prior_limit_identity_deep_layers_and_cnn_kernels():
    """T → ∞: every order parameter → 1, and the layer Grams → the theory's prior kernels (for the
    identity activation exact at any width; for the CNN the local NNGP Σ_i K_ii/Np exactly)."""
    x, y = _small_task(2, P=10)
    T = 1e5
    s = SamplerSettings(replicas=32, burn_in=5, sampling_time=30, seed=1)
    deep = sample_architecture(x, y, [T], width=[6, 4, 3], activation="identity", prior_w=1.5,
                               prior_v=[0.8, 1.2, 1.0], settings=s)[0]
    theory = deep_temperature_curve(x, y, [T], width=[6, 4, 3], activation="identity", prior_w=1.5,
                                    prior_v=[0.8, 1.2, 1.0])
    assert _within(deep["Q"], np.ones(3), floor=1e-3)[0], deep["Q"]
    for l in range(3):
        ok, diff, se = _within(deep[f"layer{l + 1}_centroid_distance"], theory.reference["centroid_distance"][l],
                               floor=1e-4)
        assert ok, (l, diff, se)
    cnn = sample_architecture(x, y, [T], width=3, architecture="cnn", patch_size=2, image_shape=(1, 4, 4),
                              prior_w=0.9, prior_v=1.3, settings=s)[0]
    ctheory = conv_temperature_curve(x, y, [T], width=3, patch_size=2, image_shape=(1, 4, 4), prior_w=0.9,
                                     prior_v=1.3)
    assert _within(cnn["Q"], np.eye(4), floor=1e-3)[0]
    # the theory's reference is the geometry of Σ_i K_ii/(λ1 Np); the hidden Gram has no 1/λ1
    ok, diff, se = _within(cnn["hidden_centroid_distance"], 1.3 * ctheory.reference["centroid_distance"], floor=1e-4)
    assert ok, (diff, se)
    assert _within(cnn["centroid_distance"], ctheory.reference["centroid_distance"], floor=1e-4)[0]


def test_temperature_curve_dispatches_the_sampled_level():
    x, y = _small_task(3, P=10)
    xt, yt = _small_task(4, P=6)
    s = SamplerSettings(replicas=4, burn_in=2, sampling_time=4, seed=0)
    with pytest.warns(RuntimeWarning):  # far too short to converge: said so
        deep = temperature_curve(x, y, [1.0, 0.1], width=[5, 4], level="sampled", sampler=s, x_test=xt, y_test=yt)
    assert deep.architecture == "fc" and deep.level == "sampled"
    assert deep.layer_fields["Q"].shape == (2, 2) and deep.layer_fields["centroid_distance"].shape == (2, 2)
    assert deep.sem("centroid_distance").shape == (2,) and np.all(deep.sem("test_error") > 0)
    assert len(deep.diagnostics) == 2 and not deep.converged.any()
    assert np.allclose(deep.centroid_distance, deep.layer_fields["centroid_distance"][:, -1])
    with pytest.warns(RuntimeWarning):
        cnn = temperature_curve(x, y, [0.5], width=3, architecture="cnn", patch_size=2, image_shape=(1, 4, 4),
                                level="sampled", sampler=s)
    assert cnn.layer_fields["Q"].shape == (1, 4, 4) and cnn.width == 3.0
    assert "hidden_centroid_distance" in cnn.layer_fields


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=[5, 0]), "width"),
    (dict(width=[5, 5], prior_v=[1.0]), "prior_v"),
    (dict(width=5, architecture="cnn", patch_size=3, image_shape=(1, 4, 4)), "patch_size"),
    (dict(width=[5, 5], activation="gelu"), "activation"),
    (dict(width=[5, 5], settings=SamplerSettings(method="langevin")), "method"),
])
def test_bad_input_is_refused_before_sampling(kwargs, match):
    x, y = _small_task()
    with pytest.raises(ValueError, match=match):
        sample_architecture(x, y, [1.0], **kwargs)


# ---- the cached validation cells (benchmarks/validate_architectures.py) -------------------------
_REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
_CELLS = sorted((_REPO / "benchmarks" / "results" / "architectures_validation").glob("*.json"))


@pytest.mark.parametrize("path", _CELLS, ids=[p.stem for p in _CELLS])
def test_cached_validation_cell_carries_config_command_and_commit(path, benchmark_script):
    import json
    import shlex

    script = benchmark_script("validate_architectures")
    r = json.loads(path.read_text())
    assert r["cell"] == path.stem and len(r["commit"]) >= 40
    argv = shlex.split(r["command"])
    i = argv.index("benchmarks/validate_architectures.py")
    args = script.parser().parse_args(argv[i + 1:])
    assert path.stem in args.run
    c = r["config"]
    for field in ("P", "n_test", "seed", "replicas", "max_seconds", "max_trajectories"):
        assert getattr(args, field) == c[field], f"{path.stem}: the command gives {field} = {getattr(args, field)}"
    ds, arch, alpha = script._parse(path.stem)
    assert (c["dataset"], c["architecture"], c["alpha"]) == (ds, arch, alpha)
    assert c["width"] == round(c["P"] / alpha)
    # every temperature's convergence verdict is in the cache, and the table flags the failures
    rows = [line for line in script.table(path.parent).splitlines() if line.startswith(f"| {ds} |")]
    for d in r["diagnostics"]:
        assert d["converged"] == (d["max_rhat"] < c["rhat_max"] and d["min_ess"] >= c["ess_min"])
    assert sum("not converged" in line for line in rows) >= sum(not d["converged"] for d in r["diagnostics"])


def test_cached_validation_table_is_the_cache(benchmark_script):
    if not _CELLS:
        pytest.skip("no cached cells")
    script = benchmark_script("validate_architectures")
    folder = _CELLS[0].parent
    table = script.table(folder)
    assert (folder / "table.md").read_text() == table
    assert table.strip() in (_REPO / "docs" / "validation.md").read_text()  # the docs show the cache


@pytest.mark.slow
def test_deep_linear_readout_order_parameter_matches_theory_inner_weight_norm_does_not():
    """Deep linear network, widths [32, 32], α = P/N = 0.5, T = 0.05: the sampled readout order
    parameter λ_L⟨|v|²⟩/N_L agrees with the theory's Q_L (to 2 %), while the inner layer's sampled
    λ_1⟨|W²|²⟩/(N1 N2) stays at its prior value 1 + O(1/N) although the theory's Q_1 = Q_2 ≈ 1.16:
    the inner order parameter renormalises the kernel, it is not the mean squared weight (which
    equilibrium.deep's ``weight_second_moment`` = Q_ℓ/λ_ℓ suggests for ℓ < L)."""
    rng = np.random.default_rng(0)
    P, N0, N, T = 16, 30, 32, 0.05
    x = rng.normal(size=(P, N0))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=P))
    s = sample_architecture(x, y, [T], width=[N, N], activation="identity",
                            settings=SamplerSettings(replicas=16, burn_in=20, sampling_time=100, seed=0))[0]
    th = deep_temperature_curve(x, y, [T], width=[N, N], activation="identity")
    assert th.Q[0, 0] > 1.12 and np.isclose(th.Q[0, 0], th.Q[0, 1])
    q, se = np.asarray(s["Q"].mean), np.asarray(s["Q"].se)
    assert abs(q[1] - th.Q[0, 1]) < 0.02 * th.Q[0, 1] + 3 * se[1], (q, se, th.Q)
    assert abs(q[0] - 1.0) < 0.03 and q[0] < th.Q[0, 0] - 0.1, (q, se, th.Q)
