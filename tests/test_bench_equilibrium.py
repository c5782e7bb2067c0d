"""benchmarks/bench_equilibrium.py helpers (regression: ``--data mnist`` crashed in its warm-up because the
first 64 rows of the parity task hold one class)."""

from __future__ import annotations

import numpy as np

from gdeq import equilibrium as eq


def test_warm_up_subset_is_balanced_on_the_mnist_parity_task(benchmark_script):
    bench = benchmark_script("bench_equilibrium")
    x, y, _, _ = bench._data(300, 784, "mnist", 0)
    assert len(np.unique(y[:64])) == 1  # what made the old warm-up (x[:64], y[:64]) fail
    idx = bench._balanced_subset(y, 64)
    assert len(idx) == 64 and len(set(idx.tolist())) == 64
    assert np.unique(y[idx], return_counts=True)[1].tolist() == [32, 32]
    curve = eq.temperature_curve(x[idx], y[idx], [0.1, 1.0], width=32)  # the warm-up itself
    assert curve.converged.all()
    one_hot = np.eye(3)[np.repeat([0, 1, 2], [10, 2, 5])]
    assert np.bincount(one_hot[bench._balanced_subset(one_hot, 6)].argmax(1)).tolist() == [2, 2, 2]
