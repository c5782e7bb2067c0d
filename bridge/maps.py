"""Training time -> effective temperature by observable matching (docs/conventions.md §7).

A run (GD, SGD, Adam or Langevin) logs an observable g_run(t) at steps t; the equilibrium theory gives
the same observable g_eq(T) on a grid of temperatures, computed on the same data, width, activation
and priors. The effective temperature is the solution of

    g_eq(T_eff(t)) = g_run(t),

found by inverting g_eq monotonically in log T (a PCHIP interpolant of log T against g_eq, which
keeps the monotonicity of the data, Fritsch & Carlson 1980). Nothing is extrapolated: a run value
outside the theory's range gets T_eff = NaN with status ``"hotter"`` (beyond the value at the hottest
grid temperature) or ``"colder"`` (beyond the coldest), and a theory observable that is not monotone
in T makes the whole map NaN with the reason in ``notes``.

Default observable: the training error of the mean predictor, (1/P) Σ_μ |y^μ − f̄(x^μ)|², against the
theory's (1/P) T² |A⁻¹y|². On the run side f̄ is the average over independent replicas; with R
replicas the naive error of the R-average is biased upward by tr Σ / (P R) (Σ the replicas'
predictor covariance), so we subtract the unbiased estimate s²/R — the result estimates the error of
the R → ∞ ensemble mean, which is what the posterior mean is to a sampler. Error bars come from a
jackknife over replicas and are propagated through the (monotone) inverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.interpolate import PchipInterpolator

from gdeq.geometry import jackknife, mean_se

from .identity import check_compatible
from .identity import field_of as _get

__all__ = [
    "OBSERVABLES",
    "TemperatureMap",
    "invert_monotone",
    "interpolate_curve",
    "map_observable",
    "mean_predictor_error",
    "run_observable",
    "effective_temperature",
]

# run-side observable -> (theory-curve field, description). The run side is computed by
# ``run_observable``; the theory side is read from the TemperatureCurve.
OBSERVABLES: dict[str, tuple[str, str]] = {
    "train_error": ("train_error", "training error of the mean predictor, (1/P) Σ|y − f̄|²"),
    "test_error": ("test_bias2", "test error of the mean predictor (the theory's bias²)"),
    "gibbs_test_error": ("test_error", "replica-averaged test error of single networks (theory bias² + variance)"),
    "readout_second_moment": ("readout_second_moment", "readout second moment ⟨v²⟩ (theory Q*/λ1)"),
}


# ------------------------------------------------------------------------------------------------
# run-side observables
# ------------------------------------------------------------------------------------------------
def mean_predictor_error(
    predictions: np.ndarray, targets: np.ndarray, *, bias_corrected: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Error of the replica-mean predictor at every logged step, with a jackknife standard error.

    Args:
        predictions: (steps, R, P) or (steps, R, P, D) network outputs of R independent replicas.
        targets: (P,) or (P, D) labels.
        bias_corrected: subtract s²/R, the unbiased estimate of the excess error of an R-sample
            mean over the ensemble mean (s² = Σ_r |f_r − f̂|² / ((R − 1) P)). Needs R ≥ 2.

    Returns:
        (value, se), each of shape (steps,). ``value`` = (1/P) Σ_μ |y^μ − f̂^μ|² (summed over outputs)
        minus the correction; ``se`` is the leave-one-replica-out jackknife s.e. (NaN for R < 3).
    """
    f = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if f.ndim == y.ndim + 1:  # a single logged step
        f = f[None]
    if f.ndim != y.ndim + 2 or f.shape[2:] != y.shape:
        raise ValueError(f"predictions: expected shape (steps, R, {y.shape}), got {f.shape}")
    R, P = f.shape[1], y.shape[0]
    if bias_corrected and R < 2:
        raise ValueError("predictions: the bias-corrected mean-predictor error needs at least 2 replicas")
    if f.ndim == 3:  # scalar output: add a trailing axis of size 1
        f, y = f[..., None], y[..., None]

    def estimate(fr: np.ndarray) -> np.ndarray:
        r = fr.shape[1]
        mean = fr.mean(1)
        err = ((y - mean) ** 2).sum((-1, -2)) / P
        if bias_corrected:
            s2 = ((fr - mean[:, None]) ** 2).sum((-1, -2, -3)) / ((r - 1) * P)
            err = err - s2 / r
        return err

    return jackknife(estimate, f, axis=1, min_replicas=3)


def _over_replicas(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replica mean ± s.e. of (steps, R[, ...]) values (a 1-d array is one replica)."""
    v = np.asarray(values, dtype=np.float64)
    return mean_se(v[:, None] if v.ndim == 1 else v, axis=1)


def run_observable(
    trajectory: Any, observable: str, *, y_train: np.ndarray | None = None, y_test: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Replica-aggregated value and standard error of ``observable`` at every logged step of a run.

    ``trajectory`` is a ``gd_dynamics.Trajectory`` (or any object with the same array attributes).
    Labels are read from the trajectory when it holds them, else from ``y_train``/``y_test``.
    """
    if observable not in OBSERVABLES:
        raise ValueError(f"observable: must be one of {list(OBSERVABLES)}, got {observable!r}")
    if observable in ("train_error", "test_error"):
        split = "train" if observable == "train_error" else "test"
        preds = _get(trajectory, f"{split}_predictions")
        y = y_train if split == "train" else y_test
        if y is None:
            y = _get(trajectory, f"y_{split}")
        if preds is None or y is None:
            raise ValueError(
                f"observable: {observable!r} needs the run's {split} predictions and labels "
                f"(trajectory.{split}_predictions and y_{split})"
            )
        return mean_predictor_error(preds, y)
    if observable == "gibbs_test_error":
        values = _get(trajectory, "test_error")  # per-replica test MSE, (steps, R)
        if values is None:
            raise ValueError("observable: 'gibbs_test_error' needs trajectory.test_error")
        return _over_replicas(values)
    values = _get(trajectory, observable)
    if values is None:
        raise ValueError(f"observable: the run does not record {observable!r}")
    return _over_replicas(values)


# ------------------------------------------------------------------------------------------------
# theory side: monotone inversion in log T
# ------------------------------------------------------------------------------------------------
#: reversals of a theory observable smaller than this fraction of its range count as flat (rounding),
#: both when deciding that it is monotone and when building the interpolant's strictly increasing abscissa
MONOTONE_RTOL = 1e-9


def _monotone_tolerance(values: np.ndarray) -> float:
    return MONOTONE_RTOL * max(float(np.ptp(values)), np.finfo(float).tiny)


def _monotone_direction(values: np.ndarray) -> int:
    """+1 if non-decreasing, -1 if non-increasing (within ``MONOTONE_RTOL`` of the range), 0 otherwise."""
    d = np.diff(values)
    tol = _monotone_tolerance(values)
    if np.all(d >= -tol):
        return 1
    if np.all(d <= tol):
        return -1
    return 0


def _monotone_within_errors(values: np.ndarray, se: np.ndarray, n_se: float = 2.0) -> bool:
    """Whether a sequence is monotone up to reversals smaller than n_se combined standard errors
    (or 1e-6 of its range, whichever is larger), in the direction of its overall trend."""
    v, s = np.asarray(values, float), np.asarray(se, float)
    if len(v) < 2:
        return True
    sign = 1.0 if v[-1] >= v[0] else -1.0
    v = sign * v  # now the trend is increasing
    tol_floor = 1e-6 * max(np.ptp(v), np.finfo(float).tiny)
    best = 0
    for j in range(1, len(v)):
        if v[best] - v[j] > max(tol_floor, n_se * np.hypot(s[best], s[j])):
            return False
        if v[j] > v[best]:
            best = j
    return True


def invert_monotone(
    temperatures: np.ndarray, curve_values: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """Monotone inverse T(g) of a theory curve g(T), interpolated in log T.

    Returns ``(inverse, reason)``; ``inverse`` is None (and ``reason`` says why) when the curve is
    not monotone in T or has fewer than two distinct values. The inverse returns NaN outside the
    curve's range of values (no extrapolation).
    """
    T = np.asarray(temperatures, dtype=np.float64)
    g = np.asarray(curve_values, dtype=np.float64)
    order = np.argsort(T)
    T, g = T[order], g[order]
    finite = np.isfinite(g) & np.isfinite(T) & (T > 0)
    T, g = T[finite], g[finite]
    if len(T) < 2:
        return None, "the theory curve has fewer than two finite points"
    direction = _monotone_direction(g)
    if direction == 0:
        k = int(np.argmax(np.abs(np.diff(np.sign(np.diff(g)))) > 0)) + 1
        return None, f"the theory observable is not monotone in T (turns near T = {T[k]:.3g})"
    # strictly increasing abscissa for the interpolant, with the same tolerance as the monotonicity
    # test: a point is kept only if it exceeds the last kept one by more than it (plateaus and
    # reversals within the tolerance keep their first point)
    gs, logT = (g, np.log(T)) if direction > 0 else (g[::-1], np.log(T)[::-1])
    tol = _monotone_tolerance(g)
    keep = np.zeros(len(gs), dtype=bool)
    last = -np.inf
    for i, value in enumerate(gs):
        if value > last + tol:
            keep[i], last = True, value
    gs, logT = gs[keep], logT[keep]
    if len(gs) < 2:
        return None, "the theory observable is constant over the temperature grid"
    spline = PchipInterpolator(gs, logT, extrapolate=False)

    def inverse(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        out = np.full(v.shape, np.nan)
        inside = np.isfinite(v) & (v >= gs[0]) & (v <= gs[-1])
        out[inside] = np.exp(spline(v[inside]))
        return out

    return inverse, ""


def interpolate_curve(temperatures: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A theory observable evaluated at temperatures ``at`` (PCHIP in log T; NaN outside the grid)."""
    T = np.asarray(temperatures, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(T)
    T, v = T[order], v[order]
    ok = np.isfinite(v)
    spline = PchipInterpolator(np.log(T[ok]), v[ok], extrapolate=False)
    at = np.asarray(at, dtype=np.float64)
    out = np.full(at.shape, np.nan)
    good = np.isfinite(at) & (at > 0)
    out[good] = spline(np.log(at[good]))
    return out


@dataclass(frozen=True)
class TemperatureMap:
    """Effective temperature T_eff(t) of a run, by matching one observable to a theory curve.

    Arrays have one entry per logged step. ``status`` is ``"ok"``, ``"hotter"`` (the run value lies
    beyond the theory's value at its hottest temperature: T_eff > T_max of the grid), ``"colder"``
    (T_eff < T_min), ``"undefined"`` (the run value is NaN) or ``"no-map"`` (the theory observable is
    not monotone; see ``notes``). ``temperature_low/high`` map the run value ± one standard error.
    """

    step: np.ndarray
    observable: str
    curve_field: str
    run_value: np.ndarray
    run_value_se: np.ndarray
    temperature: np.ndarray
    temperature_low: np.ndarray
    temperature_high: np.ndarray
    status: np.ndarray
    theory_direction: int  # +1: the theory observable increases with T, -1 decreases, 0 not monotone
    run_monotone: bool  # the run's observable (hence T_eff) is monotone over the mapped steps, within 2 s.e.
    temperature_range: tuple[float, float]
    value_range: tuple[float, float]
    level: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"

    def at_step(self, step: float) -> float:
        """T_eff at an arbitrary step, interpolated in (log step, log T) between mapped steps."""
        ok = self.ok & (self.step > 0)
        if ok.sum() < 2 or not np.isfinite(step) or step <= 0:
            return float("nan")
        s, t = np.log(self.step[ok]), np.log(self.temperature[ok])
        if not (s.min() <= np.log(step) <= s.max()):
            return float("nan")
        return float(np.exp(np.interp(np.log(step), s, t)))

    def summary(self) -> dict:
        ok = self.ok
        counts = {k: int((self.status == k).sum()) for k in ("ok", "hotter", "colder", "undefined", "no-map")}
        return dict(
            observable=self.observable,
            curve_field=self.curve_field,
            level=self.level,
            mapped_steps=counts,
            first_mapped_step=float(self.step[ok][0]) if ok.any() else None,
            last_mapped_step=float(self.step[ok][-1]) if ok.any() else None,
            T_eff_first=float(self.temperature[ok][0]) if ok.any() else None,
            T_eff_last=float(self.temperature[ok][-1]) if ok.any() else None,
            theory_direction=self.theory_direction,
            run_monotone=self.run_monotone,
            temperature_range=list(self.temperature_range),
            notes=list(self.notes),
        )


def map_observable(
    steps: np.ndarray,
    run_value: np.ndarray,
    temperatures: np.ndarray,
    curve_values: np.ndarray,
    *,
    run_value_se: np.ndarray | None = None,
    observable: str = "train_error",
    curve_field: str = "",
    level: str = "",
) -> TemperatureMap:
    """Map a run's observable to T_eff(t) on a theory curve (pure arrays; see the module docstring)."""
    steps = np.asarray(steps, dtype=np.float64)
    run_value = np.asarray(run_value, dtype=np.float64)
    if steps.shape != run_value.shape or steps.ndim != 1:
        raise ValueError(f"run_value: expected shape {steps.shape} like steps, got {run_value.shape}")
    se = np.zeros_like(run_value) if run_value_se is None else np.nan_to_num(np.asarray(run_value_se, float))
    T = np.asarray(temperatures, dtype=np.float64)
    g = np.asarray(curve_values, dtype=np.float64)
    if T.shape != g.shape or T.ndim != 1:
        raise ValueError(f"curve_values: expected shape {T.shape} like the temperatures, got {g.shape}")
    order = np.argsort(T)
    T, g = T[order], g[order]
    notes: list[str] = []
    inverse, reason = invert_monotone(T, g)
    direction = _monotone_direction(g[np.isfinite(g)]) if inverse is not None else 0
    n = len(steps)
    status = np.full(n, "ok", dtype=object)
    if inverse is None:
        notes.append(f"no map: {reason}")
        nan = np.full(n, np.nan)
        status[:] = "no-map"
        return TemperatureMap(
            steps, observable, curve_field, run_value, se, nan, nan.copy(), nan.copy(), status.astype(str),
            0, False, (float(T[0]), float(T[-1])), (float(np.nanmin(g)), float(np.nanmax(g))), level, tuple(notes),
        )
    T_eff = inverse(run_value)
    a, b = inverse(run_value - se), inverse(run_value + se)
    low, high = np.fmin(a, b), np.fmax(a, b)
    g_hot, g_cold = g[-1], g[0]
    for i, v in enumerate(run_value):
        if not np.isfinite(v):
            status[i] = "undefined"
        elif np.isnan(T_eff[i]):
            # beyond the hot end if v is on the far side of g(T_max) from g(T_min)
            status[i] = "hotter" if (v - g_hot) * (g_hot - g_cold) > 0 else "colder"
    ok = status == "ok"
    run_monotone = _monotone_within_errors(run_value[ok], se[ok])
    if (status == "hotter").any():
        notes.append(
            f"{int((status == 'hotter').sum())} logged steps lie beyond the theory's value at T_max = {T[-1]:.3g} "
            "(hotter than the grid; T_eff = NaN, not extrapolated)"
        )
    if (status == "colder").any():
        notes.append(
            f"{int((status == 'colder').sum())} logged steps lie beyond the theory's value at T_min = {T[0]:.3g} "
            "(colder than the grid; T_eff = NaN, not extrapolated)"
        )
    if not run_monotone:
        notes.append("T_eff(t) is not monotone along the run: the run's observable turns back")
    return TemperatureMap(
        step=steps, observable=observable, curve_field=curve_field, run_value=run_value, run_value_se=se,
        temperature=T_eff, temperature_low=low, temperature_high=high, status=status.astype(str),
        theory_direction=direction, run_monotone=run_monotone,
        temperature_range=(float(T[0]), float(T[-1])),
        value_range=(float(np.nanmin(g)), float(np.nanmax(g))), level=level, notes=tuple(notes),
    )


def effective_temperature(
    trajectory: Any,
    curve: Any,
    observable: str = "train_error",
    *,
    y_train: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    check: bool = True,
) -> TemperatureMap:
    """T_eff(t) of a ``Trajectory`` on a ``TemperatureCurve`` computed for the same setting.

    Args:
        trajectory: a ``gd_dynamics.Trajectory`` (GD, SGD, Adam or Langevin).
        curve: an ``equilibrium.TemperatureCurve`` on the same data, width, activation and priors
            (checked with :func:`bridge.compare.check_compatible` unless ``check=False``).
        observable: one of ``OBSERVABLES`` (default: training error of the mean predictor).
        y_train, y_test: labels, when the trajectory does not hold them.
    """
    if observable not in OBSERVABLES:
        raise ValueError(f"observable: must be one of {list(OBSERVABLES)}, got {observable!r}")
    if check:
        check_compatible(trajectory, curve)
    curve_field = OBSERVABLES[observable][0]
    g = _get(curve, curve_field)
    if g is None:
        raise ValueError(f"observable: the theory curve has no field {curve_field!r} for {observable!r}")
    value, se = run_observable(trajectory, observable, y_train=y_train, y_test=y_test)
    steps = np.asarray(_get(trajectory, "step"), dtype=np.float64)
    if steps.ndim == 2:
        steps = steps[:, 0]
    return map_observable(
        steps, value, np.asarray(curve.temperature), np.asarray(g), run_value_se=se,
        observable=observable, curve_field=curve_field, level=str(_get(curve, "level") or ""),
    )
