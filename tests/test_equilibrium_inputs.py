"""Every equilibrium entry point refuses the same bad input with the same message (equilibrium/inputs.py),
before any work."""

from __future__ import annotations

import numpy as np
import pytest

from gdeq.equilibrium import inputs, temperature_curve
from gdeq.equilibrium.conv import conv_problem
from gdeq.equilibrium.sampling import sample_temperatures
from gdeq.equilibrium.sampling_arch import sample_architecture
from gdeq.equilibrium.single_neuron import single_neuron_curve

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4))
Y = np.array([1.0, -1, 1, -1, 1, -1])

ENTRY_POINTS = {
    "temperature_curve": lambda x, y, T: temperature_curve(x, y, T, width=10),
    "sample_temperatures": lambda x, y, T: sample_temperatures(x, y, T, width=3),
    "sample_architecture": lambda x, y, T: sample_architecture(x, y, T, width=[3, 3]),
    "single_neuron_curve": lambda x, y, T: single_neuron_curve(x, y, T, np.ones(len(np.atleast_1d(T))), width=10),
    "conv_problem": lambda x, y, T: conv_problem(x, y, channels=2, patch_size=1, image_shape=(1, 2, 2)),
}
BAD = {
    "nan_inputs": (np.where(np.eye(6, 4) > 0, np.nan, X), Y, [1.0], "x_train: contains non-finite values"),
    "one_class": (X, np.ones(6), [1.0], "y_train: needs at least two classes"),
    "short_labels": (X, Y[:5], [1.0], "y_train: has shape (5,) but x_train has 6 rows"),
    "one_row": (X[:1], Y[:1], [1.0], "x_train: must have shape (P, N0) with P ≥ 2"),
    "negative_temperature": (X, Y, [1.0, -0.5], "temperature"),
}


@pytest.mark.parametrize("entry, case", [(e, c) for e in ENTRY_POINTS for c in BAD
                                          if (e, c) != ("conv_problem", "negative_temperature")])  # no T there
def test_every_entry_point_refuses_bad_input_with_one_message(entry, case):
    x, y, T, message = BAD[case]
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ENTRY_POINTS[entry](x, y, T)


@pytest.mark.parametrize("value, message", [(True, "must be a finite number"), (float("nan"), "must be a finite number"),
                                            (0.0, "must be > 0"), (-1, "must be > 0")])
def test_number_names_the_parameter_and_its_range(value, message):
    with pytest.raises(ValueError, match=f"^prior_w: {message}"):
        inputs.number("prior_w", value)
    assert inputs.number("width", 1, at_least=1.0) == 1.0


def test_labels_layouts():
    """±1 → D = 1; one-hot → D; real targets only where allowed; class labels by sign / argmax."""
    onehot = np.eye(3)[[0, 1, 2, 0]]
    assert inputs.outputs(Y, "y", 6, "x") == 1
    assert inputs.outputs(onehot, "y", 4, "x") == 3
    with pytest.raises(ValueError, match="^y: must be ±1 of shape"):
        inputs.outputs(onehot * 2, "y", 4, "x")
    with pytest.raises(ValueError, match=r"^y: this model takes ±1 labels of shape \(4,\)"):
        inputs.outputs(onehot, "y", 4, "x", labels="pm1")
    assert inputs.outputs(onehot * 2.5, "y", 4, "x", labels="real") == 3
    np.testing.assert_array_equal(inputs.class_labels(onehot), [0, 1, 2, 0])
    np.testing.assert_array_equal(inputs.class_labels(np.array([0.3, -2.0])), [1, 0])
