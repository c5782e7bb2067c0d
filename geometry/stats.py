"""Statistics over independent replicas (chains, networks), defined once for every part of gdeq.

Replicas are independent, so the standard error of a mean is the replica-to-replica standard
deviation / √R, and a non-linear function of replica averages gets a leave-one-replica-out
jackknife standard error (Efron & Stein 1981). Both return NaN for the error where there are too few
replicas to estimate it, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Estimate", "mean_se", "jackknife", "jackknife_se", "leave_one_out"]


@dataclass(frozen=True)
class Estimate:
    """A value and its standard error (arrays of one shape, or floats)."""

    mean: np.ndarray | float
    se: np.ndarray | float

    def __repr__(self) -> str:  # compact for scalars
        if np.ndim(self.mean) == 0:
            return f"{float(self.mean):.6g} ± {float(self.se):.2g}"
        return f"Estimate(shape={np.shape(self.mean)})"


def mean_se(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean over independent replicas along ``axis`` and its standard error std(ddof=1)/√R (NaN for R < 2)."""
    v = np.asarray(values, dtype=np.float64)
    R = v.shape[axis]
    mean = v.mean(axis)
    se = v.std(axis, ddof=1) / np.sqrt(R) if R > 1 else np.full(np.shape(mean), np.nan)
    return mean, se


def leave_one_out(statistic: Callable[..., np.ndarray], *samples, axis: int = 0) -> np.ndarray:
    """``statistic`` with each replica removed in turn: (R, ...) leave-one-out replicates (the samples carry
    the replica axis at ``axis``). Use this when the replicates themselves are needed (e.g. for a derived
    quantity's error); :func:`jackknife_se` turns them into a standard error."""
    arrays = [np.asarray(s) for s in samples]
    R = arrays[0].shape[axis]
    return np.stack([np.asarray(statistic(*[np.delete(a, r, axis=axis) for a in arrays]), dtype=np.float64)
                     for r in range(R)])


def jackknife_se(replicates) -> np.ndarray:
    """Jackknife standard error from leave-one-out replicates (R, ...): √((R − 1)/R Σ_r (θ_(r) − θ̄_(·))²)."""
    loo = np.asarray(replicates, dtype=np.float64)
    R = loo.shape[0]
    return np.sqrt((R - 1) / R * ((loo - loo.mean(0)) ** 2).sum(0))


def jackknife(statistic: Callable[..., np.ndarray], *samples, axis: int = 0,
              min_replicas: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``statistic(*samples)`` and its leave-one-out jackknife standard error over ``axis``.

    Every array in ``samples`` carries the replica axis at ``axis``; ``statistic`` receives them with
    one replica removed (still with that axis). se² = (R − 1)/R Σ_r (θ_(r) − θ̄_(·))². NaN for
    R < ``min_replicas``.
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    R = arrays[0].shape[axis]
    value = np.asarray(statistic(*arrays), dtype=np.float64)
    if R < max(2, min_replicas):
        return value, np.full(value.shape, np.nan)
    return value, jackknife_se(leave_one_out(statistic, *arrays, axis=axis))
