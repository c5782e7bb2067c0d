"""Compare a run with equilibrium curves at matched temperatures (docs/conventions.md §7).

Every logged step t of a run is mapped to T_eff(t) on each theory level's curve (``bridge.maps``);
each measure the run and the curves share is then compared at matched points, and each side's
turning point is located on its own axis: the run's peak (or dip) step t* — per replica, mean ± s.e.
— and T_eff(t*), against the temperature T* where the equilibrium measure peaks, per level. When a
side has no turning point the comparison says so ("increasing", "decreasing", "flat") instead of
producing a number.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from gdeq.geometry import jackknife, mean_se

from .identity import check_compatible
from .identity import field_of as _get
from .identity import run_identity, single_width
from .maps import (OBSERVABLES, TemperatureMap, effective_temperature, interpolate_curve, invert_monotone,
                   mean_predictor_error, run_observable)

__all__ = [
    "Comparison",
    "ConsistencyCheck",
    "MeasureComparison",
    "Turning",
    "check_compatible",
    "compare",
    "curve_measures",
    "infinite_width_centroid",
    "langevin_consistency",
    "replica_turning_steps",
    "run_measures",
    "turning_point",
]


# ------------------------------------------------------------------------------------------------
# turning points
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Turning:
    """Shape of a curve y(x): a significant interior maximum ("peak") or minimum ("dip"), or else
    its monotone direction ("increasing", "decreasing", "flat"); "undefined" when too few points.

    Effect size and significance of a peak or dip:

    - ``excursion``: how far the extremum stands out beyond the lower of the two ends (a peak) or
      below the higher one (a dip), in the units of y — the size of the non-monotonicity;
    - ``relative_excursion``: excursion / |y at the extremum| (so a 0.08 % wiggle reads as 0.0008);
    - ``significance``: excursion in units of the combined standard error of the extremum and that
      end, √(se_i² + se_end²) (NaN when no standard errors were given).

    ``other`` is a weaker turning point of the opposite kind, if the curve has one (a Turning itself).
    """

    kind: str
    location: float = float("nan")
    value: float = float("nan")
    excursion: float = 0.0
    index: int = -1
    relative_excursion: float = float("nan")
    significance: float = float("nan")
    other: "Turning | None" = None

    @property
    def non_monotonic(self) -> bool:
        return self.kind in ("peak", "dip")

    def effect(self) -> str:
        """Effect size and significance in words, e.g. "excursion 0.0012 = 0.15 % of the value, 4.1 s.e."."""
        text = f"excursion {self.excursion:.3g}"
        if np.isfinite(self.relative_excursion):
            text += f" = {100 * self.relative_excursion:.3g} % of the value"
        if np.isfinite(self.significance):
            text += f", {self.significance:.3g} s.e."
        return text

    def describe(self, axis: str = "x", fmt: str = ".3g") -> str:
        if self.kind in ("peak", "dip"):
            text = f"non-monotonic: {self.kind} at {axis} = {self.location:{fmt}} ({self.effect()})"
            if self.other is not None:
                text += f"; also a {self.other.kind} at {axis} = {self.other.location:{fmt}} ({self.other.effect()})"
            return text
        if self.kind == "undefined":
            return "undefined (too few finite points)"
        return f"monotonic ({self.kind})"


def _parabolic(x: np.ndarray, y: np.ndarray, i: int, log_x: bool) -> float:
    """Vertex of the parabola through the extremum and its two neighbours (in log x if asked)."""
    u = np.log(x[i - 1 : i + 2]) if log_x else x[i - 1 : i + 2]
    if log_x and not np.all(np.isfinite(u)):
        return float(x[i])
    a, b, _ = np.polyfit(u - u[1], y[i - 1 : i + 2], 2)
    if a == 0:
        return float(x[i])
    v = float(np.clip(-b / (2 * a), u[0] - u[1], u[2] - u[1]) + u[1])
    return float(np.exp(v)) if log_x else v


def turning_point(
    x: np.ndarray, y: np.ndarray, se: np.ndarray | None = None, *, rel_tol: float = 0.02, n_se: float = 2.0,
    refine: bool = False, log_x: bool = False,
) -> Turning:
    """Locate a significant interior extremum of y(x).

    A peak at i needs y_i above both ends by more than tol_i = max(rel_tol · (max y − min y),
    n_se · √(se_i² + se_end²)); a dip symmetrically. If both exist, the larger excursion wins and the
    other is noted. ``x`` is only used to report the location (pass steps, or temperatures);
    ``refine=True`` places it at the vertex of a parabola through the extremum and its neighbours
    (in log x with ``log_x=True``), for smooth curves on a coarse grid such as theory curves.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.zeros_like(y) if se is None else np.nan_to_num(np.asarray(se, dtype=np.float64))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, s = x[ok], y[ok], s[ok]
    if len(y) < 3:
        return Turning("undefined")
    span = float(y.max() - y.min())
    if span <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return Turning("flat")

    def tol(i: int, j: int) -> float:
        return max(rel_tol * span, n_se * math.hypot(s[i], s[j]))

    def candidate(kind: str, i: int) -> Turning | None:
        if not 0 < i < len(y) - 1:
            return None
        sign = 1.0 if kind == "peak" else -1.0
        rise = (sign * (y[i] - y[0]), sign * (y[i] - y[-1]))  # how far it stands out beyond each end
        if not (rise[0] > tol(i, 0) and rise[1] > tol(i, -1)):
            return None
        end = 0 if rise[0] <= rise[1] else -1  # the end that limits the excursion
        exc = float(min(rise))
        se_comb = math.hypot(s[i], s[end])
        loc = _parabolic(x, y, i, log_x) if refine else float(x[i])
        return Turning(kind, loc, float(y[i]), exc, i,
                       relative_excursion=float(exc / abs(y[i])) if y[i] != 0 else float("nan"),
                       significance=float(exc / se_comb) if se is not None and se_comb > 0 else float("nan"))

    candidates = [t for t in (candidate("peak", int(np.argmax(y))), candidate("dip", int(np.argmin(y)))) if t]
    if candidates:
        candidates.sort(key=lambda t: -t.excursion)
        best = candidates[0]
        if len(candidates) > 1:
            best = dataclasses.replace(best, other=candidates[1])
        return best
    direction = y[-1] - y[0]
    if abs(direction) <= tol(0, -1):
        return Turning("flat")
    return Turning("increasing" if direction > 0 else "decreasing")


def replica_turning_steps(
    steps: np.ndarray, values: np.ndarray, kind: str, *, rel_tol: float = 0.02
) -> np.ndarray:
    """Per-replica location of a turning point of the given kind ("peak" or "dip"); NaN where a
    replica's own curve (shape (n, R)) has none (neither as its main nor as its weaker turning point)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape[1], np.nan)
    for r in range(v.shape[1]):
        t = turning_point(steps, v[:, r], rel_tol=rel_tol)
        match = t if t.kind == kind else (t.other if t.other is not None and t.other.kind == kind else None)
        if match is not None:
            out[r] = match.location
    return out


# ------------------------------------------------------------------------------------------------
# the measures each side has
# ------------------------------------------------------------------------------------------------
_CURVE_SKIP = {
    "temperature", "Q", "train_error", "test_error", "test_bias2", "test_variance", "width", "activation",
    "prior_w", "prior_v", "level", "data_fingerprint", "n_minima", "converged", "train_variance",
    "weight_label_moment",
}


#: the hidden-layer geometry measures (the run's Trajectory fields describe the first hidden layer)
GEOMETRY_FIELDS = ("centroid_distance", "unit_centroid_distance", "distance_ratio", "class_radius", "unit_class_radius")


def _last_layer_geometry(trajectory: Any, layer: int) -> dict[str, np.ndarray]:
    """Layer ``layer``'s geometry measures from the run's logged ``measures`` (whole set if logged, else
    the probe set), named as :func:`run_measures` names the first layer's; empty when not logged."""
    logged = _get(trajectory, "measures") or {}
    out: dict[str, np.ndarray] = {}
    for split in ("train_full", "train"):
        prefix = f"{split}/L{layer}/"
        for key, value in logged.items():
            if key.startswith(prefix):
                name = key[len(prefix):]
                base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
                if base in GEOMETRY_FIELDS and name not in out:
                    out[name] = np.asarray(value, dtype=np.float64)
    return out


def run_measures(trajectory: Any) -> dict[str, np.ndarray]:
    """The run's scalar measures as (n, R) arrays, per-class and per-layer arrays split by suffix.

    Geometry is the LAST hidden layer's, the layer a theory curve's geometry describes: for a deep
    FC run (L hidden layers) it is read from the logged ``train[_full]/L<L>/...`` measures.
    Also ``train_mean_predictor_error``/``test_mean_predictor_error`` are added by :func:`compare`.
    """
    out: dict[str, np.ndarray] = {}
    for name in (
        "centroid_distance", "unit_centroid_distance", "distance_ratio", "readout_second_moment",
        "train_error", "test_error", "train_loss", "class_radius", "unit_class_radius", "weight_displacement",
    ):
        a = _get(trajectory, name)
        if a is None:
            continue
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 2:
            out[name] = a
        elif a.ndim == 3:
            for c in range(a.shape[2]):
                out[f"{name}_{c}"] = a[:, :, c]
    logged = _get(trajectory, "measures") or {}
    if "weights/weight_moment_label" in logged:
        # aᵀΩa / aᵀCa with a = y: λ0 × the second moment of the first-layer weights along Xᵀy/|Xᵀy|
        out["weight_moment_label"] = np.asarray(logged["weights/weight_moment_label"], dtype=np.float64)
    layers = run_identity(trajectory)["hidden_layers"] or 1
    if layers > 1:
        out = {k: v for k, v in out.items() if not any(k == g or k.startswith(g + "_") for g in GEOMETRY_FIELDS)}
        out.update(_last_layer_geometry(trajectory, layers))
        out.pop("weight_moment_label", None)  # first-layer weights: not a measure of the deep curves
    return out


def curve_measures(curve: Any) -> dict[str, np.ndarray]:
    """The curve's arrays over temperature (1-d ones as they are, (T, C) ones split by suffix)."""
    T = np.asarray(curve.temperature)
    out: dict[str, np.ndarray] = {}
    names = curve.__dataclass_fields__ if hasattr(curve, "__dataclass_fields__") else vars(curve)
    for name in names:
        if name in _CURVE_SKIP:
            continue
        a = getattr(curve, name, None)
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fi" or a.shape[:1] != T.shape:
            continue
        if a.ndim == 1:
            out[name] = a.astype(np.float64)
        elif a.ndim == 2 and a.shape[1] <= 16:
            for c in range(a.shape[1]):
                out[f"{name}_{c}"] = a[:, c].astype(np.float64)
    label_moment = getattr(curve, "weight_label_moment", None)
    if isinstance(label_moment, np.ndarray) and label_moment.shape == T.shape:
        # the run logs it relative to the prior (λ0 × second moment); the curve in absolute units
        out["weight_moment_label"] = float(getattr(curve, "prior_w", 1.0)) * label_moment.astype(np.float64)
    return out


def curve_measure_errors(curve: Any) -> dict[str, np.ndarray]:
    """Standard errors of :func:`curve_measures`'s arrays, same names, for curves that carry them (the
    ``sampled`` level's ``standard_errors``; the ``condensate`` level's Monte-Carlo error of the centroid distance,
    N1·shift and weight label moment); empty for the deterministic theory levels."""
    errors = getattr(curve, "standard_errors", None) or {}
    T = np.asarray(curve.temperature)
    out: dict[str, np.ndarray] = {}
    for name, a in errors.items():
        a = np.asarray(a, dtype=np.float64)
        if a.shape[:1] != T.shape or name.startswith("test_"):
            continue
        if a.ndim == 1:
            out[name] = a
        elif a.ndim == 2 and a.shape[1] <= 16:
            for c in range(a.shape[1]):
                out[f"{name}_{c}"] = a[:, c]
    if "weight_label_moment" in out:  # the run logs it relative to the prior, as curve_measures
        out["weight_moment_label"] = float(getattr(curve, "prior_w", 1.0)) * out.pop("weight_label_moment")
    return out


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasureComparison:
    """One measure on both sides: the run vs step (mean ± s.e. over replicas), the theory of each
    level at the run's T_eff(t), and each side's turning point."""

    measure: str
    step: np.ndarray
    run_mean: np.ndarray
    run_se: np.ndarray
    run_turning: Turning
    replica_steps: np.ndarray  # per replica t* of the run's turning kind (NaN where none)
    t_star: float
    t_star_se: float
    T_eff_at_t_star: dict[str, float]
    theory_at_T_eff: dict[str, np.ndarray]  # level -> (n,) the theory value at T_eff(t)
    theory_temperature: dict[str, np.ndarray]
    theory_values: dict[str, np.ndarray]
    theory_turning: dict[str, Turning]
    # level -> (nT,) standard error of theory_values (the sampled level; a Monte-Carlo theory level such as
    # condensate); absent for deterministic levels
    theory_se: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def replicas_with_turning(self) -> int:
        return int(np.isfinite(self.replica_steps).sum())

    def statement(self) -> str:
        """One plain sentence per side: is it non-monotonic, and where."""
        R = len(self.replica_steps)
        t = self.run_turning
        if t.non_monotonic:
            run = (f"run: {t.kind} at step t* = {self.t_star:.4g} ± {self.t_star_se:.2g} "
                   f"({self.replicas_with_turning}/{R} replicas turn; replica mean: {t.effect()})")
            teff = ", ".join(f"{lv}: {v:.3g}" for lv, v in self.T_eff_at_t_star.items() if np.isfinite(v))
            run += f", T_eff(t*) = {teff}" if teff else ", T_eff(t*) outside the theory's range"
        else:
            own = "dip" if t.kind == "decreasing" else "peak"
            run = f"run: {t.describe('step')} ({self.replicas_with_turning}/{R} replicas show a {own} of their own)"
        sides = [run]
        for level, tt in self.theory_turning.items():
            sides.append(f"{level}: " + (f"{tt.kind} at T* = {tt.location:.3g} ({tt.effect()})" if tt.non_monotonic
                                         else tt.describe("T")))
        return "; ".join(sides)


@dataclass(frozen=True)
class ConsistencyCheck:
    """A Langevin run at temperature T0 mapped back through a theory curve: T_eff should be T0."""

    observable: str
    level: str
    claimed_temperature: float
    temperature: float  # T_eff from the stationary window
    temperature_low: float  # mapped at value ∓ n_se · s.e.
    temperature_high: float
    run_value: float
    run_value_se: float
    theory_value: float  # the theory's observable at T0
    relative_deviation: float  # T_eff/T0 − 1
    within_error_bars: bool  # T0 in [low, high]
    within_tolerance: bool  # |T_eff/T0 − 1| ≤ rtol (the theory level's own accuracy)
    window_steps: tuple[float, float]
    message: str

    @property
    def passed(self) -> bool:
        return self.within_error_bars or self.within_tolerance


@dataclass(frozen=True)
class Comparison:
    """A run against equilibrium curves of one or more theory levels."""

    maps: dict[str, TemperatureMap]  # level -> T_eff(t)
    measures: dict[str, MeasureComparison]
    consistency: dict[str, ConsistencyCheck]  # level -> check (Langevin runs only)
    metadata: dict = field(default_factory=dict)
    lazy: Any = None  # bridge.lazy.LazyTrajectory at the run's steps (when given)
    three_way: dict = field(default_factory=dict)  # observable -> bridge.lazy.ThreeWay (GD, lazy, equilibrium)
    thermal: dict = field(default_factory=dict)  # level -> bridge.thermal.ThermalCheck (two thermometers)

    def table(self) -> list[dict]:
        """One row per measure: each side's turning point (the report's summary table)."""
        rows = []
        for name, m in self.measures.items():
            row = dict(
                measure=name,
                run_shape=m.run_turning.kind,
                run_excursion=m.run_turning.excursion if m.run_turning.non_monotonic else float("nan"),
                run_relative_excursion=m.run_turning.relative_excursion,
                run_significance_se=m.run_turning.significance,
                t_star=m.t_star,
                t_star_se=m.t_star_se,
                replicas_turning=m.replicas_with_turning,
                replicas=len(m.replica_steps),
            )
            for level in self.maps:
                row[f"T_eff_t_star[{level}]"] = m.T_eff_at_t_star.get(level, float("nan"))
                tt = m.theory_turning.get(level)
                row[f"theory_shape[{level}]"] = tt.kind if tt else "absent"
                row[f"T_star[{level}]"] = tt.location if tt and tt.non_monotonic else float("nan")
            rows.append(row)
        return rows


# ------------------------------------------------------------------------------------------------
# the comparison itself
# ------------------------------------------------------------------------------------------------
def infinite_width_centroid(curve: Any) -> float:
    """The N1 → ∞ centroid distance D∞ of a theory curve: median over T of D − (N1·(D − D∞))/N1."""
    return float(np.median(np.asarray(curve.centroid_distance) - np.asarray(curve.centroid_shift)
                           / single_width(curve.width, "curve")))


def compare(
    trajectory: Any,
    curves: Mapping[str, Any] | Any,
    *,
    observable: str = "train_error",
    measures: list[str] | None = None,
    rel_tol: float = 0.02,
    n_se: float = 2.0,
    consistency_rtol: float = 0.1,
    lazy: Any = None,
    thermometers: tuple[str, str] | None = ("train_error", "readout_second_moment"),
) -> Comparison:
    """Compare a run with theory curves (one per level) at matched temperatures.

    Args:
        trajectory: a ``gd_dynamics.Trajectory``.
        curves: ``{level: TemperatureCurve}`` (or a single curve); all must match the run
            (:func:`check_compatible`), else ValueError before any work.
        observable: the matching observable for T_eff (``bridge.maps.OBSERVABLES``).
        measures: restrict to these measure names (default: every measure of the run).
        rel_tol: significance of a turning point, as a fraction of the curve's range
            (:func:`turning_point`); replica s.e. also enter on the run side: a turn must stand out by
            more than ``n_se`` combined standard errors.
        consistency_rtol: for Langevin runs, the relative T_eff deviation accepted as consistent when
            the error bars are tighter than the theory level's own accuracy.
        lazy: the lazy (NTK) theory at the run's steps (``bridge.lazy.lazy_baseline``): adds the
            three-way comparison GD / lazy / equilibrium at T_eff(t) (``Comparison.three_way``).
        thermometers: two observables for the two-thermometer test per level (``bridge.thermal``;
            None to skip; skipped with a note when the run lacks them or has < 3 replicas).
    """
    if not isinstance(curves, Mapping):
        curves = {str(_get(curves, "level") or "theory"): curves}
    if not curves:
        raise ValueError("curves: need at least one theory curve")
    for curve in curves.values():
        check_compatible(trajectory, curve)
    steps = np.asarray(trajectory.step, dtype=np.float64)
    maps = {lv: effective_temperature(trajectory, c, observable, check=False) for lv, c in curves.items()}
    width = single_width(_get(next(iter(curves.values())), "width"), "curve")  # N1, N_L (deep) or Nc (CNN)
    items = _run_side(trajectory, curves, measures, width)
    theory = {lv: (curve_measures(c), curve_measure_errors(c)) for lv, c in curves.items()}
    R = int(trajectory.train_predictions.shape[1])
    results = {name: _compare_measure(name, values, steps, curves, theory, maps, replicas=R, rel_tol=rel_tol,
                                      n_se=n_se) for name, values in items.items()}
    consistency: dict[str, ConsistencyCheck] = {}
    if str(_get(trajectory, "optimizer")) == "langevin":
        for lv, c in curves.items():
            consistency[lv] = langevin_consistency(trajectory, c, observable=observable, rtol=consistency_rtol,
                                                   check=False)
    three, thermal, notes = _lazy_and_thermal(trajectory, curves, maps, lazy, thermometers)
    meta = dict(
        optimizer=_get(trajectory, "optimizer"), lr=_get(trajectory, "lr"), width=width,
        activation=_get(trajectory, "activation"), prior_w=_get(trajectory, "prior_w"),
        prior_v=_get(trajectory, "prior_v"), replicas=int(trajectory.train_predictions.shape[1]),
        data_fingerprint=_get(trajectory, "data_fingerprint"), observable=observable,
        observable_description=OBSERVABLES[observable][1], levels=list(curves), rel_tol=rel_tol, n_se=n_se,
        notes=notes,
        batch_size=(_get(trajectory, "config") or {}).get("batch_size"), temperature=_get(trajectory, "temperature"),
    )
    return Comparison(maps=maps, measures=results, consistency=consistency, metadata=meta, lazy=lazy,
                      three_way=three, thermal=thermal)


def _run_side(trajectory: Any, curves: Mapping[str, Any], measures: list[str] | None, width: float) -> dict:
    """The run's measures, (n, R) per replica, plus the scaled centroid shift and the mean-predictor
    training error as ``(mean, se)`` (a function of all replicas, not a per-replica array)."""
    run = run_measures(trajectory)
    if str(_get(next(iter(curves.values())), "architecture") or "fc") == "cnn":
        # the CNN curve's geometry is that of the renormalised kernel Σ_ij Q_ij K_ij/(λ1 Np) (patch pairs
        # mixed by Q), not of the hidden features' Gram the run logs: not the same quantity, not compared
        run = {k: v for k, v in run.items() if not any(k == g or k.startswith(g + "_") for g in GEOMETRY_FIELDS)}
        run.pop("weight_moment_label", None)
    # the scaled centroid shift N1·(D − cᵀKc) needs the infinite-width value; every curve has it
    first = next(iter(curves.values()))
    if "centroid_distance" in run and _get(first, "centroid_shift") is not None:
        run["centroid_shift"] = width * (run["centroid_distance"] - infinite_width_centroid(first))
    if measures is not None:
        unknown = [m for m in measures if m not in run and m != "mean_predictor_train_error"]
        if unknown:
            raise ValueError(f"measures: unknown {unknown}; the run has {sorted(run)}")
        run = {k: v for k, v in run.items() if k in measures}
    items: dict = dict(run)
    if trajectory.train_predictions.shape[1] >= 2 and (measures is None or "mean_predictor_train_error" in measures):
        items["mean_predictor_train_error"] = mean_predictor_error(trajectory.train_predictions, trajectory.y_train)
    return items


def _compare_measure(name: str, values: Any, steps: np.ndarray, curves: Mapping[str, Any], theory: dict,
                     maps: dict, *, replicas: int, rel_tol: float, n_se: float) -> MeasureComparison:
    """One measure on both sides: the run's turning point (replica mean, and per replica), then each
    level's values, error bars, turning point and value at the run's T_eff(t)."""
    if isinstance(values, tuple):  # (mean, se) of a statistic of all replicas: no per-replica turning
        (mean, se), curve_name = values, "train_error"
        t_run = turning_point(steps, mean, se, rel_tol=rel_tol, n_se=n_se)
        rep_steps = np.full(replicas, np.nan)
    else:
        mean, se = mean_se(values, axis=1)
        curve_name = name
        t_run = turning_point(steps, mean, se, rel_tol=rel_tol, n_se=n_se)
        # replicas may turn on their own even when the mean does not
        kind = t_run.kind if t_run.non_monotonic else ("dip" if t_run.kind == "decreasing" else "peak")
        rep_steps = replica_turning_steps(steps, values, kind, rel_tol=rel_tol)
    finite = rep_steps[np.isfinite(rep_steps)]
    if t_run.non_monotonic and len(finite) >= 2:
        t_star, t_se = map(float, mean_se(finite))
    elif t_run.non_monotonic:
        t_star, t_se = t_run.location, float("nan")
    else:
        t_star, t_se = float("nan"), float("nan")
    at_T, th_T, th_v, th_turn, teff_star, th_se = {}, {}, {}, {}, {}, {}
    for lv, (table, errors) in theory.items():
        T = np.asarray(curves[lv].temperature, dtype=np.float64)
        teff_star[lv] = maps[lv].at_step(t_star) if np.isfinite(t_star) else float("nan")
        src = table.get(curve_name)
        if name == "mean_predictor_train_error":
            src = np.asarray(curves[lv].train_error, dtype=np.float64)
        if src is None or np.isfinite(src).sum() < 2:  # the level does not give this measure (e.g. NaN)
            continue
        th_T[lv], th_v[lv] = T, src
        at_T[lv] = interpolate_curve(T, src, maps[lv].temperature)
        order = np.argsort(T)
        src_se = errors.get(curve_name)
        if src_se is not None:  # a Monte-Carlo curve turns only where its excursion exceeds its error bars
            th_se[lv] = src_se
            th_turn[lv] = turning_point(T[order], src[order], src_se[order], rel_tol=rel_tol, n_se=n_se, log_x=True)
        else:
            th_turn[lv] = turning_point(T[order], src[order], rel_tol=rel_tol, refine=True, log_x=True)
    return MeasureComparison(
        measure=name, step=steps, run_mean=mean, run_se=se, run_turning=t_run, replica_steps=rep_steps,
        t_star=t_star, t_star_se=t_se, T_eff_at_t_star=teff_star, theory_at_T_eff=at_T,
        theory_temperature=th_T, theory_values=th_v, theory_turning=th_turn, theory_se=th_se,
    )


def _lazy_and_thermal(trajectory: Any, curves: Mapping[str, Any], maps: dict, lazy: Any, thermometers: Any):
    """The three-way GD / lazy / equilibrium records and the two-thermometer test per level (with notes
    for levels where the test cannot run)."""
    three, thermal, notes = {}, {}, []
    if lazy is not None:
        from .lazy import three_way

        three = three_way(trajectory, lazy, dict(curves), maps)
    if thermometers is not None:
        from .thermal import thermometer_consistency

        for lv, c in curves.items():
            try:
                thermal[lv] = thermometer_consistency(trajectory, c, thermometers, check=False)
            except (ValueError, TypeError) as err:  # e.g. fewer than 3 replicas: no jackknife
                notes.append(f"two-thermometer test skipped ({lv}): {err}")
    return three, thermal, notes


def langevin_consistency(
    trajectory: Any,
    curve: Any,
    *,
    temperature: float | None = None,
    observable: str = "train_error",
    window: float = 0.5,
    n_se: float = 2.0,
    rtol: float = 0.1,
    check: bool = True,
) -> ConsistencyCheck:
    """Map a Langevin run's stationary window back to a temperature; it should be the run's own.

    The observable is averaged over the last ``window`` fraction of logged steps (each step's value is
    an unbiased estimate at stationarity; the s.e. is a jackknife over replicas, which are
    independent), then inverted on the curve. ``temperature`` defaults to the run's own.
    """
    if check:
        check_compatible(trajectory, curve)
    T0 = temperature if temperature is not None else _get(trajectory, "temperature")
    if T0 is None or not np.isfinite(T0) or T0 <= 0:
        raise ValueError(f"temperature: the Langevin run's temperature must be > 0, got {T0!r}")
    if not 0 < window <= 1:
        raise ValueError(f"window: must be in (0, 1], got {window}")
    steps = np.asarray(trajectory.step, dtype=np.float64)
    n = len(steps)
    start = min(int(math.floor(n * (1 - window))), n - 1)
    sl = slice(start, n)
    if observable in ("train_error", "test_error"):
        split = observable.split("_")[0]
        preds = np.asarray(getattr(trajectory, f"{split}_predictions"))[sl]
        y = np.asarray(getattr(trajectory, f"y_{split}"))
        # the window average of unbiased per-step estimates; jackknife over replicas
        value, se = map(float, jackknife(lambda p: mean_predictor_error(p, y)[0].mean(), preds, axis=1,
                                         min_replicas=3))
    else:
        run_observable(trajectory, observable)  # raises one clear error if the run lacks it
        per_replica = np.asarray(_get(trajectory, observable), dtype=np.float64)[sl].mean(0)
        value, se = map(float, mean_se(per_replica))
    curve_field = OBSERVABLES[observable][0]
    T = np.asarray(curve.temperature, dtype=np.float64)
    g = np.asarray(getattr(curve, curve_field), dtype=np.float64)
    inverse, reason = invert_monotone(T, g)
    theory_value = float(interpolate_curve(T, g, np.array([T0]))[0])
    level = str(_get(curve, "level") or "")
    if inverse is None:
        nan = float("nan")
        return ConsistencyCheck(observable, level, float(T0), nan, nan, nan, value, se, theory_value, nan, False, False,
                                (steps[start], steps[-1]), f"no map: {reason}")
    T_eff = float(inverse(np.array([value]))[0])
    s = se if np.isfinite(se) else 0.0
    a, b = inverse(np.array([value - n_se * s, value + n_se * s]))
    low, high = float(np.fmin(a, b)), float(np.fmax(a, b))
    if np.isnan(a) or np.isnan(b):  # an end of the interval falls off the grid: open it there
        low = T[0] if np.isnan(low) else low
        high = T[-1] if np.isnan(high) else high
    dev = T_eff / T0 - 1 if np.isfinite(T_eff) else float("nan")
    within_bars = bool(np.isfinite(T_eff) and low <= T0 <= high)
    within_tol = bool(np.isfinite(dev) and abs(dev) <= rtol)
    verdict = "consistent" if (within_bars or within_tol) else "INCONSISTENT"
    msg = (f"Langevin at T0 = {T0:.4g} maps to T_eff = {T_eff:.4g} [{low:.4g}, {high:.4g}] "
           f"({level}, {observable}; {dev:+.1%}): {verdict}")
    if not np.isfinite(T_eff):
        msg = (f"Langevin at T0 = {T0:.4g}: the stationary {observable} = {value:.4g} ± {se:.2g} lies outside the "
               f"theory's range [{g.min():.4g}, {g.max():.4g}] on T in [{T.min():.3g}, {T.max():.3g}]: INCONSISTENT")
    return ConsistencyCheck(
        observable=observable, level=level, claimed_temperature=float(T0), temperature=T_eff, temperature_low=low,
        temperature_high=high, run_value=value, run_value_se=se, theory_value=theory_value, relative_deviation=dev,
        within_error_bars=within_bars, within_tolerance=within_tol, window_steps=(float(steps[start]), float(steps[-1])),
        message=msg,
    )
