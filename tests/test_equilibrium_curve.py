"""temperature_curve: fields, levels, limits, spectral geometry against the geometry module, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdeq import equilibrium as eq
from gdeq import geometry
from gdeq.equilibrium.kernels import nngp_kernels


TEMPS = np.logspace(-2.5, 1, 8)


@pytest.fixture(scope="module")
def task():
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=120, n_test=60, seed=0)


@pytest.fixture(scope="module")
def curve(task):
    return eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=120, x_test=task.x_test, y_test=task.y_test)


def test_fields_and_metadata(task, curve):
    assert set(eq.LEVELS) >= {"nngp", "gaussian"}
    for name in ("temperature", "Q", "train_error", "test_error", "test_bias2", "test_variance", "centroid_distance",
                 "centroid_shift", "readout_second_moment", "inter_distance", "intra_distance", "distance_ratio",
                 "unit_centroid_distance", "weight_label_moment", "converged"):
        assert getattr(curve, name).shape == (len(TEMPS),), name
    assert curve.class_radius.shape == (len(TEMPS), 2) and curve.centroid_distance_matrix.shape == (len(TEMPS), 2, 2)
    assert curve.weight_moments.shape[1:] == (8, 8) and curve.weight_directions.shape == (8, task.x_train.shape[1])
    assert curve.data_fingerprint == geometry.data_fingerprint(task.x_train, task.y_train)
    assert (curve.width, curve.activation, curve.prior_w, curve.prior_v, curve.level) == (120.0, "erf", 1.0, 1.0,
                                                                                          "gaussian")
    np.testing.assert_allclose(curve.test_error, curve.test_bias2 + curve.test_variance, rtol=1e-12)
    np.testing.assert_allclose(curve.readout_second_moment, curve.Q, rtol=0)
    assert curve.converged.all() and (curve.n_minima == 1).all()
    # the training error of the mean predictor falls monotonically as T falls (docs/conventions.md §7 map)
    assert np.all(np.diff(curve.train_error) > 0)
    np.testing.assert_allclose(curve.shift("centroid_distance"), curve.centroid_shift, rtol=1e-12)
    assert set(curve.test_geometry) >= {"centroid_distance", "unit_class_radius"}


def test_centroid_distance_is_the_quadratic_form_of_the_mean_kernel(task, curve):
    # cᵀ⟨K_W⟩c with ⟨K_W⟩ = K + (Q/(λ1N1))[(Km)(Km)ᵀ − K A⁻¹ K] (docs/conventions.md §4), built densely
    kb = nngp_kernels(task.x_train, activation="erf")
    K, y = kb.train.numpy(), task.y_train
    c = geometry.centroid_vector(y)
    for T, Q, D in zip(TEMPS, curve.Q, curve.centroid_distance):
        A = T * np.eye(len(y)) + Q * K
        m = np.linalg.solve(A, y)
        KW = K + Q / 120 * (np.outer(K @ m, K @ m) - K @ np.linalg.solve(A, K))
        assert D == pytest.approx(c @ KW @ c, rel=1e-10)
        assert geometry.centroid_distance(KW, y) == pytest.approx(D, rel=1e-10)
    assert curve.reference["centroid_distance"] == pytest.approx(c @ K @ c, rel=1e-12)


def test_spectral_geometry_equals_geometry_module_on_materialised_kernels(task):
    # the cheap spectral path (equilibrium.posterior.class_measures) against geometry.class_geometry
    from gdeq.equilibrium.levels import available_levels, LevelContext
    from gdeq.equilibrium.posterior import class_measures, class_measures_dense

    for labels, x in ((task.y_train, task.x_train), (None, None)):
        if labels is None:
            from gdeq.gd_dynamics.data import load_task

            t3 = load_task("mnist", (0, 1, 7), n_train=60, n_test=6, seed=1)
            labels, x = t3.y_train, t3.x_train
        kb = nngp_kernels(x, activation="erf")
        Y = torch.as_tensor(labels)
        sp = eq.factorise(kb.train, Y, prior_v=1.0)  # ±1 labels: scalar Q; one-hot: D×D Q
        Q = eq.solve_saddle(sp, TEMPS[:3], width=40).Q
        ctx = LevelContext(x_train=torch.as_tensor(x), y_train=Y, x_test=None, kernels=kb, spectrum=sp,
                           temperatures=TEMPS[:3], Q=Q, width=40.0, activation="erf", prior_w=1.0, prior_v=1.0)
        post = available_levels()["gaussian"].posterior(ctx)
        fast = class_measures(post.train, labels)
        slow = class_measures_dense(post.train.dense(), labels)
        for k in fast:
            np.testing.assert_allclose(fast[k], slow[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_nngp_level_is_the_infinite_width_limit(task):
    nngp = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=50, level="nngp",
                                x_test=task.x_test, y_test=task.y_test)
    np.testing.assert_array_equal(nngp.Q, 1.0)
    np.testing.assert_allclose(nngp.centroid_shift, 0.0, atol=1e-10)
    np.testing.assert_allclose(nngp.weight_moments, np.broadcast_to(np.eye(8), nngp.weight_moments.shape), atol=1e-12)
    wide = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=1e7, x_test=task.x_test, y_test=task.y_test)
    np.testing.assert_allclose(wide.Q, 1.0, atol=1e-4)
    np.testing.assert_allclose(wide.test_error, nngp.test_error, rtol=1e-4)
    np.testing.assert_allclose(wide.centroid_distance, nngp.centroid_distance, rtol=1e-5)  # shift/N1 ≈ 4e-7
    # the scaled shift has a finite limit as N1 → ∞ at fixed P
    mid = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=1e5)
    np.testing.assert_allclose(wide.centroid_shift, mid.centroid_shift, rtol=5e-3)


def test_high_temperature_limit(task):
    hot = eq.temperature_curve(task.x_train, task.y_train, [1e4, 1e6], width=60, x_test=task.x_test,
                               y_test=task.y_test)
    ref = eq.temperature_curve(task.x_train, task.y_train, [1e4, 1e6], width=60, level="nngp",
                               x_test=task.x_test, y_test=task.y_test)
    assert abs(hot.Q[1] - 1) < 1e-5
    # the tilt J ∝ A⁻¹ vanishes as 1/T
    assert hot.centroid_shift[1] / hot.centroid_shift[0] == pytest.approx(1e-2, rel=0.02)
    np.testing.assert_allclose(hot.test_error[1], ref.test_error[1], rtol=1e-5)
    np.testing.assert_allclose(hot.weight_label_moment[1], 1.0, atol=1e-6)


def test_multi_class_curve(task):
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (0, 1, 7), n_train=60, n_test=30, seed=1)
    c = eq.temperature_curve(t.x_train, t.y_train, [0.01, 1.0], width=40, x_test=t.x_test, y_test=t.y_test)
    assert c.Q.shape == (2, 3, 3) and c.n_outputs == 3
    assert np.isnan(c.centroid_distance).all() and c.centroid_distance_matrix.shape == (2, 3, 3)
    np.testing.assert_allclose(c.readout_second_moment, np.trace(c.Q, axis1=1, axis2=2) / 3)


def test_relu_curve_runs_with_its_mean_mode(task):
    c = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=120, activation="relu",
                             x_test=task.x_test, y_test=task.y_test)
    assert c.converged.all() and np.isfinite(c.centroid_shift).all() and np.isfinite(c.test_error).all()


def _bad_cases(x, y, xt, yt):
    ok = dict(x_train=x, y_train=y, temperatures=[0.1], width=10)
    return [
        (dict(temperatures=[0.1, 0.0]), "temperatures"),
        (dict(temperatures=[np.nan]), "temperatures"),
        (dict(temperatures=[]), "temperatures"),
        (dict(width=0.5), "width"),
        (dict(width=np.inf), "width"),
        (dict(prior_w=0.0), "prior_w"),
        (dict(prior_v=-1.0), "prior_v"),
        (dict(y_train=y[:-1]), "y_train"),
        (dict(y_train=y * 2), "y_train"),
        (dict(y_train=np.ones_like(y)), "y_train"),
        (dict(x_train=np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x)), "x_train"),
        (dict(x_train=x[:, :, None]), "x_train"),
        (dict(x_test=xt[:, :-1]), "x_test"),
        (dict(x_test=xt, y_test=yt[:-1]), "y_test"),
        (dict(y_test=yt), "y_test"),
        (dict(activation="swish"), "activation"),
        (dict(level="exact"), "level"),
    ], ok


def test_bad_input_raises_one_clear_value_error(task, monkeypatch):
    import gdeq.equilibrium.curve as curve_mod

    called = []
    monkeypatch.setattr(curve_mod, "nngp_kernels", lambda *a, **k: called.append(1))
    cases, ok = _bad_cases(task.x_train, task.y_train, task.x_test, task.y_test)
    for change, name in cases:
        kwargs = {**ok, **change}
        with pytest.raises(ValueError, match=name):
            eq.temperature_curve(kwargs.pop("x_train"), kwargs.pop("y_train"), kwargs.pop("temperatures"), **kwargs)
    assert not called, "validation must happen before any kernel work"
