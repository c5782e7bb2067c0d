"""`gdeq demo`'s sampled level: only converged temperatures become the report's sampled points; the others
are flagged in the report and the printout."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

from gdeq.cli.demo import _flag_unconverged, sampled_points
from gdeq.equilibrium import SamplerSettings, SamplingConvergenceWarning


def _task():
    from gdeq.gd_dynamics import load_task

    return load_task("mnist", (3, 5), n_train=12, n_test=6, seed=0)


def test_converged_temperatures_become_points_with_the_curves_values(tmp_path):
    task = _task()
    settings = SamplerSettings(replicas=8, seed=0)
    points, curve, seconds = sampled_points(task, SimpleNamespace(width=3), [10000.0], settings, "erf")
    assert curve.converged.all() and len(points) == 1 and seconds > 0
    p = points[0]
    assert p.temperature == 10000.0 and p.width == 3 and p.replicas == 8
    assert p.values["centroid_distance"] == (curve.centroid_distance[0], curve.sem("centroid_distance")[0])
    assert p.values["unit_class_radius_1"] == (curve.unit_class_radius[0, 1], curve.sem("unit_class_radius")[0, 1])
    assert p.values["mean_predictor_train_error"][0] == curve.train_error[0]
    # at the prior the readout second moment is its prior value 1/λ1 = 1 (within error bars)
    mean, se = p.values["readout_second_moment"]
    assert abs(mean - 1.0) < 4 * se + 1e-3
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    lines = _flag_unconverged(curve, report)
    assert lines == ["sampled level (N1 = 3): 1/1 temperatures converged"]
    assert "| 1e+04 | yes |" in report.read_text()


def test_unconverged_temperatures_are_not_points_and_are_flagged(tmp_path):
    task = _task()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingConvergenceWarning)  # the starved run warns; asserted below instead
        points, curve, _ = sampled_points(task, SimpleNamespace(width=3), [0.05],
                                          SamplerSettings(replicas=8, seed=0, max_trajectories=44), "erf")
    assert not curve.converged.any() and points == []
    report = tmp_path / "report.md"
    report.write_text("")
    lines = _flag_unconverged(curve, report)
    assert "NOT CONVERGED (not shown as results): T = 0.05" in lines[0]
    assert "| 0.05 | **NO** |" in report.read_text()
    assert np.isfinite(curve.centroid_distance).all()  # the values exist; they are just not shown as results
