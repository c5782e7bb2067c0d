"""Inversion detectors and straggler statistics against closed forms and constructed trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from gdeq.gd_dynamics import Trajectory, drop_train_points, load_task, train
from gdeq.gd_dynamics.inversion import (
    Inversion,
    bootstrap_turning,
    find_inversions,
    hypergeometric_overlap_z,
    paper_rule,
    retrain_without_stragglers,
    stragglers,
    turning_point,
)


def test_paper_rule_and_turning_point_on_known_curves():
    steps = np.arange(200)
    valley = (steps - 80.0) ** 2 / 80.0**2  # falls to a minimum at step 80, then rises
    assert paper_rule(valley, steps, burn_in=20) == 80
    assert paper_rule(np.exp(-steps / 30.0), steps, burn_in=20) is None  # monotone: no inversion
    assert turning_point(valley, steps, "min", burn_in=20) == 80
    assert turning_point(-valley, steps, "max") == 80
    rng = np.random.default_rng(0)
    noisy_monotone = np.exp(-steps / 30.0) + 1e-4 * rng.standard_normal(200)
    assert paper_rule(noisy_monotone, steps, burn_in=20) is not None  # the paper's rule trips on noise ...
    assert turning_point(noisy_monotone, steps, "min", burn_in=20) is None  # ... the smoothed detector does not
    noisy_valley = valley + 0.01 * rng.standard_normal(200)
    assert abs(turning_point(noisy_valley, steps, "min", burn_in=20) - 80) <= 6


def _curves_as_trajectory(steps: np.ndarray, values: np.ndarray, optimizer: str = "sgd") -> Trajectory:
    """A Trajectory holding (n, R) curves as the measure "r0" (the other arrays are placeholders)."""
    n, R = values.shape
    zeros, empty = np.zeros((n, R)), np.zeros(0)
    arrays = {name: zeros for name in ("train_loss", "test_loss", "train_error", "test_error", "centroid_distance",
                                       "unit_centroid_distance", "distance_ratio", "readout_second_moment")}
    return Trajectory(step=steps, train_accuracy=np.ones((n, R)), test_accuracy=np.ones((n, R)),
                      class_radius=zeros[..., None], unit_class_radius=zeros[..., None],
                      weight_displacement=zeros[..., None], train_predictions=np.zeros((n, R, 1)),
                      test_predictions=np.zeros((n, R, 1)), y_train=empty, labels_train=empty, y_test=empty,
                      labels_test=empty, measures={"r0": values}, width=10, activation="erf", prior_w=1.0,
                      prior_v=1.0, temperature=None, optimizer=optimizer, lr=0.1, replicas=R, seeds=list(range(R)),
                      data_fingerprint="", task={}, run_dir="", **arrays)


STEPS = np.arange(0.0, 600.0, 3.0)
MONOTONE = 0.79 + 0.2 * np.exp(-STEPS / 60.0)  # the curve: falls, never rises


@pytest.mark.parametrize("sigma", [1e-6, 1e-4, 1e-3, 5e-3])
def test_default_detector_has_a_false_positive_rate_below_5_percent_on_a_noisy_monotone_curve(sigma):
    replicas = 100
    rng = np.random.default_rng(int(-np.log10(sigma) * 10))
    values = MONOTONE[:, None] + sigma * rng.standard_normal((len(STEPS), replicas))
    traj = _curves_as_trajectory(STEPS, values)
    inv = find_inversions(traj, "r0")  # default rule
    assert inv.rule == "bootstrap"
    assert inv.found.mean() <= 0.05, inv.describe()
    assert inv.summary()["replica_p_value"] > 0.01  # and the replicas together do not claim one either
    # the paper's rule, kept for noise-free curves, fires on every one of these
    assert find_inversions(traj, "r0", rule="paper").found.mean() == 1.0
    # the noise-free curve: no inversion with any rule
    clean = _curves_as_trajectory(STEPS, MONOTONE[:, None])
    assert not find_inversions(clean, "r0").found.any() and not find_inversions(clean, "r0", rule="paper").found.any()


def test_default_detector_finds_a_real_dip_with_its_effect_size():
    rng = np.random.default_rng(5)
    rise = 0.01 * np.maximum(0.0, STEPS - 300.0) / 300.0  # falls until step 300, then rises
    dip = MONOTONE + rise
    true_effect = dip[-1] - dip.min()  # 0.00856
    sigma, replicas = 1e-3, 24
    traj = _curves_as_trajectory(STEPS, dip[:, None] + sigma * rng.standard_normal((len(STEPS), replicas)))
    inv = find_inversions(traj, "r0")
    s = inv.summary()
    assert s["found"] >= 22 and s["replica_p_value"] < 1e-20
    assert abs(s["step_mean"] - 300.0) < 3 * s["step_sem"] + 10.0, s
    # the effect size: the rise of the 5-point running mean (noise lifts it by ~σ)
    assert abs(s["effect_mean"] - true_effect) < 2 * sigma, s
    assert s["relative_effect_mean"] == pytest.approx(s["effect_mean"] / 0.7913, rel=0.01)
    assert "% of the value" in inv.describe() and "p = " in inv.describe()
    # a rise-then-fall is the same test on the negated curve
    mirrored = bootstrap_turning(-(dip + sigma * rng.standard_normal(len(STEPS))), STEPS, "max", burn_in=20)
    assert mirrored.index is not None and mirrored.p_value <= 0.01


def test_hypergeometric_overlap_z_matches_scipy():
    N, a, b = 100, np.arange(0, 30), np.arange(20, 45)  # |a| = 30, |b| = 25, overlap 10
    dist = hypergeom(N, len(a), len(b))
    assert hypergeometric_overlap_z(a, b, N) == pytest.approx((10 - dist.mean()) / dist.std(), rel=1e-12)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    task = load_task("mnist", (3, 5), n_train=80, n_test=40, seed=2)
    traj = train(task, width=10, lr=0.01, steps=40, replicas=3, output_dir=tmp_path_factory.mktemp("inv"),
                 run_name="inv", wandb=None, progress_bar=False)
    return task, traj


def test_stragglers_are_the_misclassified_points_at_the_inversion(run):
    task, traj = run
    found = find_inversions(traj, "train/L1/unit_class_radius_0", rule="paper", burn_in=0)
    assert found.found.any()
    for r in np.flatnonzero(found.found):  # the detector's bookkeeping at the indices it chose
        i = found.index[r]
        assert found.step[r] == traj.step[i]
        assert found.train_error[r] == pytest.approx(1.0 - traj.train_accuracy[i, r])
        assert found.train_mse[r] == pytest.approx(traj.train_error[i, r])
    # fixed indices: an independent check of the straggler bookkeeping
    inv = Inversion("train/L1/unit_class_radius_0", "fixed", np.array([5, 10, -1]),
                    np.array([traj.step[5], traj.step[10], np.nan]), np.full(3, np.nan), np.full(3, np.nan))
    rep = stragglers(traj, inv)
    for r, i in ((0, 5), (1, 10)):
        wrong = np.flatnonzero(np.sign(traj.train_predictions[i, r]) != task.y_train)
        np.testing.assert_array_equal(rep.sets[r], wrong)
    assert len(rep.sets[2]) == 0 and len(rep.overlap_z_pairs) == 1
    # last wrong→right step: at that logged step the point is right, at the previous one wrong
    right = np.sign(traj.train_predictions) == task.y_train  # (n, R, P)
    for r in range(3):
        for mu in np.flatnonzero(rep.last_fix_step[r] >= 0):
            i = int(np.flatnonzero(traj.step == rep.last_fix_step[r, mu])[0])
            assert right[i, r, mu] and not right[i - 1, r, mu]
            assert not np.any(right[:-1, r, mu][i:] & ~right[1:, r, mu][i:])  # no later fix


def test_drop_train_points_keeps_the_rest(run):
    task, _ = run
    dropped = drop_train_points(task, [0, 5, 79])
    assert dropped.n_train == 77
    np.testing.assert_array_equal(dropped.x_train[4], task.x_train[6])
    np.testing.assert_array_equal(dropped.indices_train, np.delete(task.indices_train, [0, 5, 79]))


def test_retrain_without_stragglers_starts_from_the_same_weights(run, tmp_path):
    task, traj = run
    inv = Inversion("train/L1/unit_class_radius_0", "fixed", np.array([3, 3, 3]), np.full(3, float(traj.step[3])),
                    np.full(3, np.nan), np.full(3, np.nan))
    rep = stragglers(traj, inv)
    assert len(rep.sets[1]) > 0
    again = retrain_without_stragglers(task, traj, rep, 1, steps=3, output_dir=tmp_path, run_name="re",
                                       wandb=None, progress_bar=False)
    keep = np.setdiff1d(np.arange(task.n_train), rep.sets[1])
    np.testing.assert_allclose(again.train_predictions[0, 0], traj.train_predictions[0, 1][keep], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(again.test_predictions[0, 0], traj.test_predictions[0, 1], rtol=1e-9, atol=1e-13)
