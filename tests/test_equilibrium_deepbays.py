"""Parity with deepbays 0.1.11 (``FC_1HL``, same conventions, docs/conventions.md §1) on the same arrays.

deepbays is imported through tests/deepbays_stub.py (stand-in for its import-time cupy names).
Its identity activation is named ``id`` and ``kernel_id`` is not exported from
``deepbays.kernels``, so ``FC_1HL(act="id")`` fails at construction; the test builds the model with
``act="erf"`` and swaps in deepbays' own ``deepbays.kernels.kernels.kernel_id``.
"""

from __future__ import annotations

import numpy as np
import pytest

from gdeq import equilibrium as eq


TEMPS = np.logspace(-3, 1, 9)
QUICK_TEMPS = np.array([1e-3, 0.1, 10.0])


def _task(n_train):
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=n_train, n_test=100, seed=0)


def _deepbays_curve(db, task, activation, width, temps=TEMPS):
    Q, err = [], []
    for T in temps:
        model = db.rkgp.FC_1HL(width, T, act="erf")
        if activation == "identity":
            model.kernel = db.kernels.kernels.kernel_id
        model.preprocess(task.x_train, task.y_train)
        model.optimize()
        model.predict(task.x_test)
        Q.append(model.optQ)
        err.append(model.averageLoss(task.y_test)[0])
    return np.array(Q), np.array(err)


def _compare(db, task, activation, width, temps):
    ours = eq.temperature_curve(task.x_train, task.y_train, temps, width=width, activation=activation,
                                x_test=task.x_test, y_test=task.y_test)
    Q, err = _deepbays_curve(db, task, activation, width, temps)
    # deepbays minimises S by L-BFGS-B with finite-difference gradients (tol 1e-12): ~1e-8 accurate
    np.testing.assert_allclose(ours.Q, Q, rtol=1e-6)
    np.testing.assert_allclose(ours.test_error, err, rtol=1e-6)


@pytest.mark.parametrize("activation", ["erf", "identity"])
def test_saddle_point_and_test_error_match_deepbays(deepbays, activation):
    _compare(deepbays, _task(80), activation, 40, QUICK_TEMPS)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["erf", "identity"])
@pytest.mark.parametrize("width", [100, 400])
def test_parity_with_deepbays_full_grid(deepbays, activation, width):
    _compare(deepbays, _task(200), activation, width, TEMPS)
