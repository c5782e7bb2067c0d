"""The shared replica statistics (geometry.stats) against closed forms."""

from __future__ import annotations

import numpy as np

from gdeq.geometry import jackknife, jackknife_se, leave_one_out, mean_se


def test_jackknife_of_the_mean_is_the_standard_error_of_the_mean():
    # for a linear statistic the jackknife s.e. equals std(ddof=1)/√R exactly
    x = np.random.default_rng(0).normal(size=(12, 3))
    value, se = jackknife(lambda a: a.mean(0), x)
    m, s = mean_se(x)
    np.testing.assert_allclose(value, m, rtol=1e-14)
    np.testing.assert_allclose(se, s, rtol=1e-12)
    np.testing.assert_allclose(jackknife_se(leave_one_out(lambda a: a.mean(0), x)), s, rtol=1e-12)


def test_leave_one_out_replicates_drop_each_replica_once():
    x = np.arange(5.0)
    loo = leave_one_out(lambda a: a.sum(), x)
    np.testing.assert_array_equal(loo, x.sum() - x)
    assert np.isnan(mean_se(np.ones((1, 2)))[1]).all() and np.isnan(jackknife(np.mean, np.ones(1))[1])
