"""The bridge on real runs and real theory curves: a CI-sized demo, the Langevin consistency check,
T_eff along GD, and mismatched run/curve pairs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gdeq.bridge import compare, effective_temperature, langevin_consistency
from gdeq.bridge.experiments import run_demo, theory_curves

TEMPS = tuple(float(t) for t in np.logspace(-4, 2, 31))


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report_dir, results, paths = run_demo(
        "ci", n_train=80, n_test=80, widths=(10, 40), steps=(300, 150), replicas=(4, 3), temperatures=TEMPS,
        output_dir=out, wandb="offline", progress=False,
    )
    return report_dir, results, paths


def test_demo_report_files_exist_and_numbers_match_the_runs(small_demo):
    report_dir, results, paths = small_demo
    for name in ("report.md", "metrics.csv", "curves.csv", "summary.csv", "metrics.json", "summary.png"):
        assert (report_dir / name).is_file(), name
    for res in results:
        for stem in ("measures_vs_step", "measures_vs_T", "weights"):
            assert (report_dir / f"{stem}_N{res.width}.png").stat().st_size > 1000
    with open(report_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    doc = json.loads((report_dir / "metrics.json").read_text())
    report = (report_dir / "report.md").read_text()
    assert doc["wandb"].get("dir"), doc["wandb"]  # an offline wandb run was written
    for res, wdoc in zip(results, doc["widths"]):
        traj, cmp = res.trajectory, res.comparison
        mine = [r for r in rows if int(r["width"]) == res.width]
        assert [int(r["step"]) for r in mine] == [int(s) for s in traj.step]
        # replica means of the run's own arrays, and T_eff from the map
        np.testing.assert_allclose([float(r["centroid_distance"]) for r in mine], traj.centroid_distance.mean(1),
                                   rtol=1e-12)
        np.testing.assert_allclose([float(r["unit_class_radius_0"]) for r in mine],
                                   traj.unit_class_radius[:, :, 0].mean(1), rtol=1e-12)
        T_csv = np.array([float(r["T_eff[gaussian]"]) for r in mine])
        np.testing.assert_allclose(T_csv, cmp.maps["gaussian"].temperature, rtol=1e-12, equal_nan=True)
        # the JSON's turning points are the comparison's, and every statement is in report.md
        for name, m in cmp.measures.items():
            j = wdoc["measures"][name]
            assert j["run_shape"] == m.run_turning.kind
            if np.isfinite(m.t_star):
                assert j["t_star"] == pytest.approx(m.t_star)
            for lv, tt in m.theory_turning.items():
                assert j["theory"][lv]["shape"] == tt.kind
            assert m.statement() in report
        assert wdoc["steps"] == int(traj.step[-1])


def test_T_eff_decreases_along_a_gd_run(small_demo):
    _, results, _ = small_demo
    for res in results:
        m = res.comparison.maps["gaussian"]
        ok = m.ok
        assert ok.sum() >= 10, m.summary()
        T, hi = m.temperature[ok], m.temperature_high[ok]
        assert T[-1] < T[0] / 10  # cools by more than a decade
        assert np.all(T[1:] <= hi[:-1] * (1 + 1e-9))  # never warms up beyond its error bar
        # GD starts at the prior's mean predictor (error ≈ 1): hotter than any finite grid point or mapped hot
        assert m.status[0] in ("hotter", "ok") and (m.status[0] == "hotter" or T[0] > 1.0)


def test_mismatched_run_and_curve_are_rejected(small_demo):
    from gdeq.gd_dynamics import load_task

    _, results, _ = small_demo
    res = results[0]
    traj = res.trajectory
    task = load_task("mnist", (3, 5), 80, 80, 0)
    good = theory_curves(task, width=res.width, temperatures=TEMPS[::3], levels=("gaussian",))["gaussian"]
    effective_temperature(traj, good)  # same setting: fine
    other_data = load_task("mnist", (3, 5), 80, 80, 1)
    cases = {
        "data_fingerprint": theory_curves(other_data, width=res.width, temperatures=TEMPS[::3], levels=("gaussian",)),
        "width": theory_curves(task, width=res.width + 1, temperatures=TEMPS[::3], levels=("gaussian",)),
        "activation": theory_curves(task, width=res.width, activation="relu", temperatures=TEMPS[::3],
                                    levels=("gaussian",)),
        "prior_w": theory_curves(task, width=res.width, prior_w=2.0, temperatures=TEMPS[::3], levels=("gaussian",)),
        "prior_v": theory_curves(task, width=res.width, prior_v=0.5, temperatures=TEMPS[::3], levels=("gaussian",)),
    }
    for word, curves in cases.items():
        with pytest.raises(ValueError, match=word):
            compare(traj, curves)
        with pytest.raises(ValueError, match=word):
            effective_temperature(traj, curves["gaussian"])


def test_langevin_run_maps_back_to_its_own_temperature(tmp_path):
    """GD + weight decay Tλ + noise √(2ηT) (docs/conventions.md §6) at T0: at stationarity the mean predictor's
    training error, inverted on the theory curve, must give T0 back within its error bars."""
    from gdeq.gd_dynamics import load_task, train

    from gdeq.bridge.experiments import default_learning_rate

    from gdeq.bridge.thermometers import fdt_monitor

    T0 = 0.5
    task = load_task("mnist", (3, 5), 60, 60, 0)
    lr = 0.05 * default_learning_rate(task.x_train)
    monitor = fdt_monitor(every=5, start_fraction=0.5)
    traj = train(task, width=60, optimizer="langevin", temperature=T0, lr=lr, steps=int(8 / (lr * T0)),
                 replicas=24, seed=3, log_points=40, log_spacing="linear", output_dir=tmp_path, wandb=None,
                 progress_bar=False, clustering_indices=False, layer_geometry=False, callbacks=[monitor])
    # the fluctuation–dissipation thermometer on the same chain (exact for discrete Langevin at stationarity)
    reading = monitor.reading()
    assert reading.replicas == 24 and reading.n_samples > 50
    assert abs(reading.temperature - T0) < 4 * reading.se + 0.02 * T0, reading
    curve = theory_curves(task, width=60, temperatures=TEMPS, levels=("gaussian",))["gaussian"]
    check = langevin_consistency(traj, curve, window=0.5)
    assert check.claimed_temperature == T0
    assert np.isfinite(check.temperature) and check.run_value_se > 0
    assert check.temperature_low <= T0 <= check.temperature_high, check.message
    assert check.passed
    # the check is reported with every Langevin comparison
    cmp = compare(traj, {"gaussian": curve})
    assert cmp.consistency["gaussian"].temperature == pytest.approx(check.temperature)
    # and a wrong claim is caught: the same run does not look like T0/4
    wrong = langevin_consistency(traj, curve, temperature=T0 / 4, rtol=0.1)
    assert not wrong.passed and "INCONSISTENT" in wrong.message


def test_report_states_the_runs_real_settings(tmp_path):
    """report.md used to print "λ0 = λ1 = 1; full-batch GD" and "2 %" whatever the run and compare() used."""
    import dataclasses

    from gdeq.bridge.experiments import run_width
    from gdeq.bridge.report import write_report
    from gdeq.gd_dynamics import load_task

    task = load_task("mnist", (3, 5), 40, 40, 0)
    res = run_width(task, width=10, optimizer="sgd", batch_size=10, prior_w=2.0, steps=40, replicas=3,
                    levels=("gaussian",), temperatures=TEMPS[::3], log_points=10, output_dir=tmp_path / "runs",
                    progress=False)
    res = dataclasses.replace(res, comparison=compare(res.trajectory, res.curves, rel_tol=0.05, n_se=3.0))
    write_report(tmp_path / "report", [res], config=dict(name="sgd", levels=["gaussian"], activation="erf"),
                 wandb_mode="disabled")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "SGD (minibatch 10)" in report and "λ0 = 2, λ1 = 1" in report
    assert f"lr = {res.trajectory.lr:.4g}" in report
    assert "more than 5 % of the curve's range (and 3 s.e." in report
    assert "full-batch GD" not in report and "λ0 = λ1 = 1" not in report and "2 %" not in report


def test_sampled_level_is_compared_and_plotted_like_any_level_with_error_bars(tmp_path):
    """Issue 8, item 2: bridge.compare and the reports accept level="sampled", with its standard errors."""
    import dataclasses

    from gdeq.bridge.compare import curve_measure_errors
    from gdeq.bridge.experiments import run_width
    from gdeq.bridge.report import write_report
    from gdeq.equilibrium import SamplerSettings
    from gdeq.gd_dynamics import load_task

    task = load_task("mnist", (3, 5), 30, 30, 0)
    temps = (0.1, 0.3, 1.0, 3.0)
    res = run_width(task, width=8, steps=40, replicas=3, levels=("gaussian",), temperatures=temps, log_points=10,
                    output_dir=tmp_path / "runs", progress=False)
    sampled = theory_curves(task, width=8, temperatures=temps, levels=("sampled",),
                            sampler=SamplerSettings(replicas=4, max_trajectories=120, seed=0, progress=False))
    curve = sampled["sampled"]
    errors = curve_measure_errors(curve)
    # the errors are the curve's own standard errors, positive, and the deterministic level has none
    np.testing.assert_array_equal(errors["centroid_distance"], curve.sem("centroid_distance"))
    assert np.all(errors["centroid_distance"] > 0) and curve_measure_errors(res.curves["gaussian"]) == {}
    cmp = compare(res.trajectory, {**res.curves, **sampled})
    m = cmp.measures["centroid_distance"]
    np.testing.assert_array_equal(m.theory_se["sampled"], curve.sem("centroid_distance"))
    np.testing.assert_array_equal(m.theory_values["sampled"], curve.centroid_distance)
    assert "gaussian" not in m.theory_se
    res = dataclasses.replace(res, curves={**res.curves, **sampled}, comparison=cmp)
    paths = write_report(tmp_path / "report", [res], config=dict(name="s", levels=["gaussian", "sampled"],
                                                                  activation="erf"), wandb_mode="disabled")
    assert (tmp_path / "report" / "report.md").is_file() and "sampled" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(ValueError, match="levels"):
        theory_curves(task, width=8, temperatures=temps, levels=("exact",))


def test_report_marks_levels_outside_their_regime():
    """Issue 11, item 3: reports mark the temperatures where a level is outside its validated regime."""
    import types

    from gdeq.bridge.report import _regime_lines

    inside = types.SimpleNamespace(temperature=np.array([0.1, 1.0]), in_regime=np.array([True, True]),
                                   regime_reason=("", ""))
    outside = types.SimpleNamespace(temperature=np.array([0.01, 0.1, 1.0]), in_regime=np.array([False, False, True]),
                                    regime_reason=("rank bound violated", "rank bound violated", ""))
    lines = _regime_lines({"gaussian": inside, "cavity": outside})
    assert len(lines) == 1 and "(cavity): 2 of 3 temperatures, T in [0.01, 0.1]" in lines[0]
    assert "rank bound violated" in lines[0]


def test_report_marks_a_real_narrow_network_curve_as_outside_its_regime():
    from gdeq.bridge.report import _regime_lines
    from gdeq.gd_dynamics import load_task

    task = load_task("mnist", (3, 5), 40, 40, 0)
    curves = theory_curves(task, width=10, temperatures=TEMPS[::6], levels=("gaussian",))
    assert not curves["gaussian"].in_regime.any()  # N1 = 10 < 50: a proportional-limit theory is not validated
    (line,) = _regime_lines(curves)
    assert f"{len(TEMPS[::6])} of {len(TEMPS[::6])} temperatures" in line


def test_validation_table_refuses_sampled_among_theory_levels():
    """'sampled' is the table's reference column; listing it as a level would silently overwrite it."""
    from gdeq.bridge.experiments import validation_table

    with pytest.raises(ValueError, match="levels: the sampled level"):
        validation_table(None, widths=[10], temperatures=[1.0], levels=("gaussian", "sampled"))  # before any work


def test_plots_dash_a_theory_curve_outside_its_regime():
    """Issue 11: an out-of-regime stretch of a theory curve is drawn dashed (and says so in the legend); the
    in-regime stretch solid; a curve entirely in regime is one solid line; NaN (no result) stays a gap."""
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gdeq.bridge.report import _plot_theory

    T = np.array([0.01, 0.1, 1.0, 10.0])
    v = np.array([np.nan, 2.0, 3.0, 4.0])
    res = types.SimpleNamespace(curves={
        "cavity": types.SimpleNamespace(in_regime=np.array([False, False, True, True])),
        "gaussian": types.SimpleNamespace(in_regime=np.array([True, True, True, True]))})
    fig, ax = plt.subplots()
    _plot_theory(ax, res, "cavity", T, v, "C0", 1.5, "theory (cavity)")
    dashed, solid = ax.lines
    assert dashed.get_linestyle() == "--" and "outside its regime" in dashed.get_label()
    assert solid.get_linestyle() == "-" and solid.get_label().startswith("_")  # not a second legend entry
    np.testing.assert_array_equal(np.isnan(solid.get_ydata()), [True, True, False, False])
    assert np.isnan(dashed.get_ydata()[0])
    _plot_theory(ax, res, "gaussian", T, v, "C1", 1.5, "theory (gaussian)")
    assert ax.lines[-1].get_linestyle() == "-" and ax.lines[-1].get_label() == "theory (gaussian)"
    plt.close(fig)
