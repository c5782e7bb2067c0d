"""Inversion detectors and straggler statistics against closed forms and constructed trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from gdeq.gd_dynamics import drop_train_points, load_task, train
from gdeq.gd_dynamics.inversion import (
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
    inv = find_inversions(traj, "train/L1/unit_class_radius_0", rule="turning_point", kind="min", burn_in=0,
                          min_amplitude=0.0, patience=1, window=1)
    inv = type(inv)(inv.observable, inv.rule, np.array([5, 10, -1]), np.array([traj.step[5], traj.step[10], np.nan]),
                    inv.train_error, inv.train_mse)  # fixed indices: an independent check of the bookkeeping
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
    inv = find_inversions(traj, "train/L1/unit_class_radius_0", rule="paper", burn_in=0)
    inv = type(inv)(inv.observable, inv.rule, np.array([3, 3, 3]), np.full(3, float(traj.step[3])),
                    inv.train_error, inv.train_mse)
    rep = stragglers(traj, inv)
    assert len(rep.sets[1]) > 0
    again = retrain_without_stragglers(task, traj, rep, 1, steps=3, output_dir=tmp_path, run_name="re",
                                       wandb=None, progress_bar=False)
    keep = np.setdiff1d(np.arange(task.n_train), rep.sets[1])
    np.testing.assert_allclose(again.train_predictions[0, 0], traj.train_predictions[0, 1][keep], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(again.test_predictions[0, 0], traj.test_predictions[0, 1], rtol=1e-9, atol=1e-13)
