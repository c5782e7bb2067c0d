"""temperature_curve dispatches deep FC (a list of widths) and the CNN (architecture="cnn")."""

from __future__ import annotations

import numpy as np
import pytest

from gdeq import equilibrium as eq
from gdeq.equilibrium import conv, deep

TEMPS = np.array([0.02, 0.5])


@pytest.fixture(scope="module")
def task():
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=40, n_test=30, seed=0)


def test_list_of_widths_is_the_deep_theory(task):
    cur = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=[30, 50], prior_v=[1.0, 0.5],
                               x_test=task.x_test, y_test=task.y_test)
    ref = deep.deep_temperature_curve(task.x_train, task.y_train, TEMPS, width=[30, 50], prior_v=[1.0, 0.5],
                                      x_test=task.x_test, y_test=task.y_test)
    assert cur.architecture == "fc" and cur.level == "renormalised"
    np.testing.assert_array_equal(cur.Q, ref.Q)
    np.testing.assert_array_equal(cur.layer_fields["Q"], ref.Q)
    np.testing.assert_array_equal(cur.test_error, ref.test_error)
    np.testing.assert_array_equal(cur.centroid_distance, ref.layer_geometry["centroid_distance"][:, 1])
    np.testing.assert_array_equal(cur.layer_fields["centroid_distance"], ref.layer_geometry["centroid_distance"])
    np.testing.assert_array_equal(cur.readout_second_moment, ref.Q[:, 1] / 0.5)
    assert cur.width == 50.0
    np.testing.assert_allclose(cur.shift("centroid_distance"),
                               50.0 * (cur.centroid_distance - ref.reference["centroid_distance"][1]))


def test_int_width_stays_one_hidden_layer(task):
    cur = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=30)
    assert cur.architecture == "fc" and cur.layer_fields == {} and cur.Q.shape == (2,)


def test_cnn_architecture_is_the_conv_theory(task):
    cur = eq.temperature_curve(task.x_train, task.y_train, TEMPS, width=20, architecture="cnn", patch_size=14,
                               image_shape=(1, 28, 28), x_test=task.x_test, y_test=task.y_test)
    ref = conv.conv_temperature_curve(task.x_train, task.y_train, TEMPS, width=20, patch_size=14,
                                      image_shape=(1, 28, 28), x_test=task.x_test, y_test=task.y_test)
    assert cur.architecture == "cnn"
    np.testing.assert_array_equal(cur.Q, ref.Q)
    np.testing.assert_array_equal(cur.test_error, ref.test_error)
    np.testing.assert_array_equal(cur.centroid_distance, ref.kernel_geometry["centroid_distance"])
    np.testing.assert_array_equal(cur.layer_fields["patch_centroid_distance"], ref.patch_geometry["centroid_distance"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=30, architecture="rnn"), "architecture"),
    (dict(width=30, architecture="cnn"), "patch_size"),
    (dict(width=[30, 30], patch_size=7), "patch_size"),
    (dict(width=[30, 30], level="nngp"), "level"),
    (dict(width=[20, 30], architecture="cnn", patch_size=7, image_shape=(1, 28, 28)), "width"),
])
def test_bad_architecture_arguments(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        eq.temperature_curve(task.x_train, task.y_train, TEMPS, **kwargs)


def test_deep_multi_output_through_temperature_curve(task):
    """One-hot targets with a list of widths: the deep D-output theory, Q_L in layer_fields."""
    Y = np.eye(3)[np.arange(len(task.y_train)) % 3]
    cur = eq.temperature_curve(task.x_train, Y, TEMPS, width=[20, 30])
    ref = deep.deep_temperature_curve(task.x_train, Y, TEMPS, width=[20, 30])
    assert cur.n_outputs == 3 and cur.layer_fields["Q_readout"].shape == (2, 3, 3)
    np.testing.assert_array_equal(cur.layer_fields["Q_readout"], ref.Q_readout)
    np.testing.assert_array_equal(cur.train_error, ref.train_error)
    # targets that are not one-hot: theory runs, class geometry is absent (NaN)
    cur2 = eq.temperature_curve(task.x_train, Y * 0.5 - 0.1, TEMPS, width=[20, 30])
    assert cur2.converged.all() and np.isnan(cur2.class_radius).all()
