"""Time -> temperature maps, turning points and compatibility checks on synthetic arrays with a
closed-form reference (GP regression: train error of the mean predictor (1/P) Σ_k ỹ_k² (T/(T+κ_k))²)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gdeq.bridge.compare import check_compatible, replica_turning_steps, turning_point
from gdeq.bridge.maps import invert_monotone, map_observable, mean_predictor_error


def _gp(P=60, seed=0):
    rng = np.random.default_rng(seed)
    kappa = np.sort(rng.uniform(0.01, 5.0, P))[::-1]
    U = np.linalg.qr(rng.normal(size=(P, P)))[0]
    y = np.sign(rng.normal(size=P))
    yt = U.T @ y

    def mean_at(T):
        return U @ (kappa / (T + kappa) * yt)  # f̄ = K(K + T)⁻¹ y

    def train_error(T):
        T = np.atleast_1d(T)[:, None]
        return ((T / (T + kappa)) ** 2 * yt**2).sum(1) / P

    return y, mean_at, train_error


def test_mean_predictor_error_is_unbiased_and_jackknife_se_is_honest():
    y, mean_at, train_error = _gp()
    rng = np.random.default_rng(1)
    T_true = 0.3
    R, sigma, trials = 6, 0.4, 300
    est, ses = [], []
    for _ in range(trials):
        preds = mean_at(T_true)[None, None] + sigma * rng.normal(size=(1, R, len(y)))
        v, se = mean_predictor_error(preds, y)
        naive, _ = mean_predictor_error(preds, y, bias_corrected=False)
        est.append(v[0])
        ses.append(se[0])
    est = np.array(est)
    exact = train_error(T_true)[0]
    # unbiased: the mean of many estimates is the ensemble-mean error (naive is off by σ²/R)
    assert abs(est.mean() - exact) < 4 * est.std() / np.sqrt(trials)
    assert naive[0] - v[0] == pytest.approx(((preds[0] - preds[0].mean(0)) ** 2).sum() / ((R - 1) * len(y)) / R)
    # the jackknife s.e. matches the spread of the estimates to within sampling error
    assert np.mean(ses) == pytest.approx(est.std(), rel=0.25)


def test_map_recovers_the_generating_temperatures_and_decreases_along_a_gd_like_run():
    y, mean_at, train_error = _gp()
    grid = np.logspace(-3, 2, 61)
    curve = train_error(grid)
    # a "run" whose mean predictor at step t is the GP mean at T(t) = 5/(1 + t): hot to cold
    steps = np.unique(np.round(np.logspace(0, 4, 40)))
    T_true = 5.0 / (1 + steps)
    rng = np.random.default_rng(2)
    preds = np.stack([mean_at(T) for T in T_true])[:, None] + 0.05 * rng.normal(size=(len(steps), 8, len(y)))
    value, se = mean_predictor_error(preds, y)
    m = map_observable(steps, value, grid, curve, run_value_se=se)
    ok = m.ok
    assert ok.sum() > 30 and m.theory_direction == 1 and m.run_monotone
    # T_eff decreases along the run: each value below the previous one, up to its error bar
    T_ok, hi = m.temperature[ok], m.temperature_high[ok]
    assert np.all(T_ok[1:] <= hi[:-1]) and np.all(np.diff(T_ok[:20]) < 0)
    # each mapped T within its own error bar (3σ in value, propagated) or 3 % of the truth
    rel = np.abs(m.temperature[ok] / T_true[ok] - 1)
    inside = (m.temperature_low[ok] * 0.9 <= T_true[ok]) & (T_true[ok] <= m.temperature_high[ok] * 1.1)
    assert np.all(inside | (rel < 0.03))
    # the coldest steps fall below the grid's T_min = 1e-3 and are flagged, not guessed
    assert set(m.status[~ok]) <= {"colder"}
    assert np.all(np.isnan(m.temperature[~ok]))
    assert m.at_step(steps[ok][3]) == pytest.approx(m.temperature[ok][3])


def test_map_flags_values_hotter_than_the_grid_and_non_monotone_theory():
    grid = np.logspace(-2, 1, 20)
    curve = grid / (1 + grid)  # increasing in T, range (0.0099, 0.909)
    m = map_observable(np.arange(4.0), np.array([0.95, 0.5, 0.001, np.nan]), grid, curve)
    assert list(m.status) == ["hotter", "ok", "colder", "undefined"]
    assert m.temperature[1] == pytest.approx(1.0, rel=1e-3)
    assert any("hotter" in n for n in m.notes) and any("colder" in n for n in m.notes)
    bumpy = np.sin(np.log(grid))
    m2 = map_observable(np.arange(3.0), np.array([0.1, 0.2, 0.3]), grid, bumpy)
    assert set(m2.status) == {"no-map"} and np.all(np.isnan(m2.temperature))
    assert "not monotone" in m2.notes[0]
    inv, reason = invert_monotone(grid, np.ones_like(grid))
    assert inv is None and "constant" in reason


def test_map_flags_a_run_whose_observable_turns_back():
    grid = np.logspace(-2, 1, 20)
    curve = np.log(grid)
    m = map_observable(np.arange(5.0), np.log([5.0, 2.0, 1.0, 2.0, 0.5]), grid, curve)
    assert not m.run_monotone and any("not monotone along the run" in n for n in m.notes)


def test_turning_points_peak_dip_monotone_and_per_replica():
    x = np.linspace(0, 1, 50)
    assert turning_point(x, np.sin(np.pi * x)).kind == "peak"
    assert turning_point(x, np.sin(np.pi * x)).location == pytest.approx(x[np.argmax(np.sin(np.pi * x))])
    assert turning_point(x, -np.sin(np.pi * x)).kind == "dip"
    assert turning_point(x, x**2).kind == "increasing"
    assert turning_point(x, 1 - x).kind == "decreasing"
    # a 1 % wiggle on a monotone curve is not a peak at the default 2 % tolerance
    assert turning_point(x, x + 0.01 * np.sin(8 * np.pi * x) * (x > 0.9)).kind == "increasing"
    # a bump smaller than 2 s.e. is not significant
    bump = np.exp(-((x - 0.5) ** 2) / 0.01)
    assert turning_point(x, 0.1 * bump, se=np.full_like(x, 0.1)).kind == "flat"
    vals = np.stack([np.exp(-((x - c) ** 2) / 0.01) for c in (0.3, 0.5, 2.0)], axis=1)
    steps = replica_turning_steps(x, vals, "peak")
    assert steps[0] == pytest.approx(0.3, abs=0.02) and steps[1] == pytest.approx(0.5, abs=0.02)
    assert np.isnan(steps[2])


def _meta(config=None, **kw):
    """A run (or curve) with the facts check_compatible reads; ``config`` as gd_dynamics.train records it."""
    base = dict(data_fingerprint="abc", width=20, activation="erf", prior_w=1.0, prior_v=1.0)
    base.update(kw)
    run_config = dict(width=base["width"], architecture="fc", init="prior", bias=False, loss="mse", reduction="sum",
                      frozen_layers=[], optimizer="gd", batch_size=None, temperature=None)
    run_config.update(config or {})
    return SimpleNamespace(config=run_config, **base)


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(data_fingerprint="xyz"), "data_fingerprint"),
        (dict(width=400), "width"),
        (dict(activation="relu"), "activation"),
        (dict(prior_w=2.0), "prior_w"),
        (dict(prior_v=0.5), "prior_v"),
    ],
)
def test_mismatched_run_and_curve_are_rejected(change, word):
    check_compatible(_meta(width=[20]), _meta())  # a one-layer width list is fine
    with pytest.raises(ValueError, match=word):
        check_compatible(_meta(), _meta(**change))


@pytest.mark.parametrize(
    "config, words",
    [
        (dict(architecture="cnn"), ["architecture"]),  # width = channels: not the theory's N1
        (dict(init="pytorch", bias=True), ["init", "bias"]),
        (dict(optimizer="langevin", temperature=1.0, reduction="mean"), ["reduction", "temperature_convention"]),
        (dict(loss="cross_entropy"), ["loss"]),
        (dict(frozen_layers=[1]), ["frozen_layers"]),
        (dict(width=[20, 20]), ["hidden_layers"]),
    ],
)
def test_runs_of_another_model_or_posterior_are_refused_with_one_message_naming_it(config, words):
    good_curve = _meta()
    check_compatible(_meta(config=dict(optimizer="sgd", batch_size=5)), good_curve)  # SGD of the same model: fine
    check_compatible(_meta(config=dict(optimizer="langevin", temperature=0.5)), good_curve)
    run = _meta(config=config, width=config.get("width", 20))
    with pytest.raises(ValueError) as err:
        check_compatible(run, good_curve)
    message = str(err.value)
    assert message.count("run and theory curve do not match") == 1
    named = {part.split(":")[0].strip() for part in message.split("do not match: ")[1].split("; ")}
    assert named == set(words), message


def test_a_run_that_records_nothing_about_its_model_is_refused():
    run = _meta()
    del run.config
    with pytest.raises(ValueError, match="architecture: the run does not record it"):
        check_compatible(run, _meta())


def test_a_recorded_model_identity_takes_precedence_over_the_config():
    """gd_dynamics' Trajectory.model_identity (its MODEL_IDENTITY_KEYS) is read when the run has one."""
    identity = dict(architecture="fc", widths=[20], activation="erf", parameterisation="standard", init="prior",
                    bias=False, prior_precisions=[1.0, 1.0], loss="mse", reduction="sum", temperature_convention="none",
                    frozen_layers=[2], batch_size=None, kernel_size=None, image_shape=None)
    with pytest.raises(ValueError, match="frozen_layers: run \\(2,\\) vs curve \\(\\)"):
        check_compatible(_meta(model_identity=identity), _meta())
    check_compatible(_meta(model_identity=dict(identity, frozen_layers=[])), _meta())
    with pytest.raises(ValueError, match="hidden_layers: run 2 vs curve 1"):
        check_compatible(_meta(model_identity=dict(identity, frozen_layers=[], widths=[20, 20])), _meta())


def test_a_minibatch_langevin_run_is_refused_it_does_not_sample_the_posterior():
    run = _meta(config=dict(optimizer="langevin", temperature=0.5, batch_size=5), optimizer="langevin",
                task=dict(n_train=40))
    with pytest.raises(ValueError, match="batch_size: run 5 \\(minibatch Langevin"):
        check_compatible(run, _meta())
    check_compatible(_meta(config=dict(optimizer="sgd", batch_size=5), optimizer="sgd"), _meta())  # SGD: fine


def test_real_runs_of_other_models_are_refused(tmp_path):
    """The identity is read from what gd_dynamics.train records, for a CNN and a PyTorch-init run with biases."""
    from gdeq import equilibrium
    from gdeq.gd_dynamics import load_task, train

    task = load_task("mnist", (3, 5), 20, 10, 0)
    curve = equilibrium.temperature_curve(task.x_train, task.y_train, np.logspace(-2, 1, 4), width=4, level="nngp")
    common = dict(lr=1e-3, steps=1, replicas=1, log_points=2, output_dir=tmp_path, wandb=None, progress_bar=False,
                  clustering_indices=False, layer_geometry=False)
    check_compatible(train(task, width=4, run_name="fc", **common), curve)
    with pytest.raises(ValueError, match="run and theory curve do not match: init: run 'pytorch' vs curve 'prior'"):
        check_compatible(train(task, width=4, init="pytorch", bias=True, run_name="pt", **common), curve)
    with pytest.raises(ValueError, match="architecture: run 'cnn' vs curve 'fc'"):
        check_compatible(train(task, width=4, architecture="cnn", image_shape=(1, 28, 28), run_name="cnn", **common),
                         curve)


def test_turning_points_are_data_a_weaker_dip_at_step_1234_comes_back_exactly():
    steps = np.arange(0.0, 3000.0)
    bump = lambda c, w: np.exp(-(((steps - c) / w) ** 2))  # noqa: E731
    values = 1.0 - 0.3 * bump(1234.0, 150.0) + 0.8 * bump(2500.0, 100.0)  # main: peak at 2500; weaker: dip at 1234
    t = turning_point(steps, values)
    assert t.kind == "peak" and t.location == 2500.0
    assert t.other is not None and t.other.kind == "dip" and t.other.location == 1234.0 and t.other.index == 1234
    assert t.other.excursion == pytest.approx(0.3, rel=1e-6)
    np.testing.assert_array_equal(replica_turning_steps(steps, values[:, None], "dip"), [1234.0])  # not 1230.0


def test_turning_point_reports_effect_size_and_significance():
    x = np.linspace(0, 1, 51)
    y = 0.5 + 0.001 * x + 0.01 * np.exp(-(((x - 0.5) / 0.1) ** 2))  # a 2 % bump on a slow rise
    se = np.full_like(x, 1e-3)
    t = turning_point(x, y, se, rel_tol=0.0)
    assert t.kind == "peak" and t.index == 25
    exc = y[25] - y[-1]  # the higher end limits the excursion
    assert t.excursion == pytest.approx(exc, rel=1e-12)
    assert t.relative_excursion == pytest.approx(exc / y[25], rel=1e-12)
    assert t.significance == pytest.approx(exc / np.hypot(1e-3, 1e-3), rel=1e-12)
    assert "% of the value" in t.describe() and "s.e." in t.describe()
    assert np.isnan(turning_point(x, y, rel_tol=0.0).significance)  # no s.e. given: no significance claimed


def test_invert_monotone_treats_a_reversal_within_its_tolerance_as_flat():
    T = np.logspace(-2, 1, 6)
    g = np.array([0.0, 0.5, 0.5 - 5e-10, 0.5 - 4e-10, 0.8, 1.0])  # a reversal of 5e-10 of the range
    inverse, reason = invert_monotone(T, g)  # used to raise "x must be strictly increasing"
    assert inverse is not None, reason
    out = inverse(np.array([0.0, 0.25, 0.5, 0.65, 0.8, 1.0]))
    assert out[0] == pytest.approx(T[0]) and out[2] == pytest.approx(T[1]) and out[4] == pytest.approx(T[4])
    assert np.all(np.diff(out) > 0)  # a monotone inverse
    worse = g.copy()
    worse[2] = 0.5 - 1e-6  # a reversal beyond the tolerance: no map, with the reason
    inverse, reason = invert_monotone(T, worse)
    assert inverse is None and "not monotone" in reason
    down, _ = invert_monotone(T, -g)  # the same for a decreasing observable
    assert down is not None and np.all(np.diff(down(-np.array([0.0, 0.25, 0.65, 1.0]))) > 0)
