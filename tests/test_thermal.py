"""Two-thermometer consistency (bridge.thermal): the statistic on synthetic runs drawn at known
temperatures, and a Langevin run that must come out thermal at its own temperature on both
thermometers. (The lazy, very wide GD run that must come out non-thermal is in tests/test_lazy.py,
beside the wide run it shares.)"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gdeq.bridge.maps import interpolate_curve
from gdeq.bridge.thermal import control_variate_steps, thermometer_consistency

TEMPS = np.logspace(-3, 2, 41)


def _curve():
    """A toy theory: a monotone training error and a two-valued readout moment (dips at T = 1)."""
    T = TEMPS
    return SimpleNamespace(temperature=T, train_error=T / (1 + T), readout_second_moment=1 + 0.05 * np.log(T) ** 2,
                           level="toy")


def _run(T_a: np.ndarray, T_b: np.ndarray, R: int = 12, P: int = 30, noise: float = 0.01, seed: int = 0):
    """Replicas whose mean-predictor training error is the curve's at T_a(t) and whose readout moment
    is the curve's at T_b(t), each with independent replica noise."""
    rng = np.random.default_rng(seed)
    curve = _curve()
    err = interpolate_curve(curve.temperature, curve.train_error, T_a)
    y = np.ones(P)
    # predictions with (1/P)|y − f̄|² = err: f = y − √err + replica noise (the bias correction removes it)
    preds = y[None, None] - np.sqrt(err)[:, None, None] + noise * rng.standard_normal((len(T_a), R, P))
    readout = interpolate_curve(curve.temperature, curve.readout_second_moment, T_b)[:, None] \
        + noise * rng.standard_normal((len(T_a), R))
    return dict(step=np.arange(1, len(T_a) + 1),  # no step 0: not a prior start, no control variate
                train_predictions=preds, y_train=y, readout_second_moment=readout,
                prior_v=1.0, config=dict(init="prior")), curve


def test_thermal_run_is_thermal_and_maps_to_its_temperature_on_both_branches():
    T = np.array([0.05, 0.2, 0.5, 2.0, 8.0])  # both sides of the readout's turning point at T = 1
    run, curve = _run(T, T)
    chk = thermometer_consistency(run, curve, check=False)
    assert chk.thermal.all(), chk.statement()
    np.testing.assert_allclose(chk.maps[0].temperature, T, rtol=0.1)
    np.testing.assert_allclose(chk.maps[1].temperature, T, rtol=0.25)  # the branch nearest to T_a
    assert np.all(np.abs(chk.log_ratio) < 3 * chk.log_ratio_se)
    assert chk.stretches == ((1.0, 5.0),)
    assert any("branches" in n for n in chk.notes)


def test_run_whose_thermometers_disagree_is_not_thermal_exactly_there():
    T_a = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.5])
    T_b = np.array([0.05, 0.1, 0.02, 0.03, 0.5, 0.5])  # steps 2 and 3: the readout says ten times colder
    run, curve = _run(T_a, T_b, noise=0.003)
    chk = thermometer_consistency(run, curve, check=False)
    assert list(chk.status) == ["thermal", "thermal", "not thermal", "not thermal", "thermal", "thermal"]
    assert np.all(chk.log_ratio[2:4] > 3 * chk.log_ratio_se[2:4])  # T_a / T_b ≈ 10
    np.testing.assert_allclose(chk.ratio[2:4], 10.0, rtol=0.2)
    assert chk.stretches == ((1.0, 2.0), (5.0, 6.0))
    assert "2/6" not in chk.statement() and "4/6" in chk.statement()


def test_readout_beyond_every_equilibrium_value_is_not_thermal():
    run, curve = _run(np.array([0.2, 0.2]), np.array([0.2, 0.2]), noise=0.002)
    run["readout_second_moment"] = run["readout_second_moment"] * 0 + 0.9  # below the curve's minimum 1
    chk = thermometer_consistency(run, curve, check=False)
    assert np.isnan(chk.maps[1].temperature).all() and (chk.status == "not thermal").all()


def test_control_variate_only_where_it_pays():
    rng = np.random.default_rng(1)
    v0 = 1 + 0.05 * rng.standard_normal(16)
    lazy = np.stack([v0, v0 + 0.001, v0 + 0.002 + 0.001 * rng.standard_normal(16)])  # moves little
    mixed = np.stack([v0, 1 + 0.05 * rng.standard_normal(16)])  # forgot its start
    assert control_variate_steps(lazy).all()
    assert list(control_variate_steps(mixed)) == [True, False]


@pytest.mark.parametrize("kwargs, word", [
    (dict(observables=("train_error",)), "observables"), (dict(observables=("train_error", "train_error")), "observables"),
    (dict(observables=("train_error", "speed")), "observables"), (dict(n_se=0.0), "n_se"),
])
def test_bad_input_is_refused(kwargs, word):
    run, curve = _run(np.array([0.1, 0.2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=word):
        thermometer_consistency(run, curve, check=False, **kwargs)
    run2, _ = _run(np.array([0.1, 0.2]), np.array([0.1, 0.2]), R=2)
    with pytest.raises(ValueError, match="3 replicas"):
        thermometer_consistency(run2, curve, check=False)


def test_langevin_run_is_thermal_at_its_temperature_on_both_thermometers(tmp_path):
    """Langevin at T0 (docs/conventions.md §6) samples the posterior at T0: in its stationary half
    both thermometers read T0 — the training error through its map, λ1⟨v²⟩ through the theory's
    value at T0 (its map is two-valued and flat near T ~ 1) — and the two-thermometer test calls
    the steps thermal."""
    from gdeq.bridge.experiments import default_learning_rate, theory_curves
    from gdeq.bridge.compare import langevin_consistency
    from gdeq.gd_dynamics import load_task, train
    from gdeq.geometry import mean_se

    T0, width, R = LANGEVIN["T0"], LANGEVIN["width"], LANGEVIN["replicas"]
    task = load_task("mnist", (3, 5), LANGEVIN["P"], LANGEVIN["P"], 0)
    lr = 0.05 * default_learning_rate(task.x_train)
    traj = train(task, width=width, optimizer="langevin", temperature=T0, lr=lr,
                 steps=int(LANGEVIN["relaxation_times"] / (lr * T0)), replicas=R, seed=3, log_points=20,
                 log_spacing="linear", output_dir=tmp_path, wandb=None, progress_bar=False,
                 clustering_indices=False, layer_geometry=False)
    curve = theory_curves(task, width=width, temperatures=tuple(np.logspace(-4, 2, 31)), levels=("gaussian",))["gaussian"]
    chk = thermometer_consistency(traj, curve)
    half = slice(len(traj.step) // 2, None)
    assert (chk.status[half] == "thermal").mean() >= 0.8, chk.statement()
    # thermometer a: the stationary training error maps back to T0
    assert langevin_consistency(traj, curve, window=0.5).passed
    # thermometer b: the stationary readout moment is the theory's at T0
    per_replica = traj.readout_second_moment[half].mean(0)
    value, se = mean_se(per_replica)
    theory = float(interpolate_curve(curve.temperature, curve.readout_second_moment, np.array([T0]))[0])
    assert abs(value - theory) < 3 * se, (value, se, theory)


LANGEVIN = dict(T0=0.5, width=20, P=40, replicas=10, relaxation_times=4)
