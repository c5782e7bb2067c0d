"""Two thermometers: is a training run at some temperature, or only cooling? (docs/conventions.md §7)

``bridge.maps`` turns ONE observable into T_eff(t). Because e.g. the training error only falls under
GD, such a map is a clock: it always produces a temperature, whether or not the run's state resembles
any equilibrium state. Two independent observables a and b, each mapped on the same theory curve,
give two temperatures T_a(t), T_b(t); an equilibrium state at temperature T gives T_a = T_b = T. The
consistency statistic per logged step is

    r(t) = log T_a(t) − log T_b(t),

with its standard error from a leave-one-replica-out jackknife (both observables come from the same
replicas, so their errors are correlated; the jackknife carries that correlation, which naive error
propagation would miss). Theory curves of b are often two-valued (λ1⟨v²⟩ and the test error turn near
T ~ 1 and T ~ 0.05 on MNIST), so b is inverted on each monotone branch and the solution nearest to T_a
is reported.

The decision is taken in b's own units, which stays defined where b is flat, two-valued or beyond
every equilibrium value: the residual

    ρ(t) = b_run(t) − g_b(T_a(t))      (g_b: the theory curve of b)

asks whether the equilibrium state at T_a reproduces the run's b; to first order ρ = (dg_b/d log T)·r
wherever b inverts. Its s.e. is a jackknife over replicas of the whole chain (a, b) -> ρ. A step is
"thermal within errors" when |ρ| ≤ n_se·se(ρ), "not thermal" when it is larger, and "unmapped" where
T_a itself is undefined (a outside the theory's range).

Run-side observables (``bridge.maps.OBSERVABLES``): ``train_error`` and ``test_error`` (mean predictor,
bias-corrected for the finite number of replicas), ``gibbs_test_error`` and
``readout_second_moment`` λ1⟨v²⟩/λ1. The readout moment of a network from the prior fluctuates by
O(1/√N1) from replica to replica while it moves by only O(1/N1) at large width, so by default it is
measured with a control variate: its value at step 0 (prior init, E = 1/λ1 exactly), with the
regression coefficient fitted over replicas, ⟨v²⟩_t − β (⟨v²⟩_0 − 1/λ1) — at the steps where the
replicas' ⟨v²⟩_t and ⟨v²⟩_0 are correlated enough for it to pay (r² > 1/2; decided once on all
replicas and kept fixed inside the jackknife).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from gdeq.geometry import jackknife_se, leave_one_out

from .identity import field_of as _get
from .maps import (OBSERVABLES, TemperatureMap, interpolate_curve, invert_monotone, map_observable,
                   mean_predictor_error)

__all__ = ["ThermalCheck", "control_variate_steps", "observable_per_replica_subset", "thermometer_consistency"]


def observable_per_replica_subset(trajectory: Any, observable: str, keep: np.ndarray | None = None, *,
                                  control_variate: bool | np.ndarray = True) -> np.ndarray:
    """Run value of ``observable`` at every logged step from the replicas ``keep`` (all by default).

    ``control_variate`` (readout moment only): True decides per step from these replicas (see
    :func:`control_variate_steps`), or pass that decision as a boolean array (n,) to keep it fixed.
    """
    if observable not in OBSERVABLES:
        raise ValueError(f"observables: each must be one of {list(OBSERVABLES)}, got {observable!r}")
    if observable in ("train_error", "test_error"):
        split = observable.split("_")[0]
        preds = np.asarray(_get(trajectory, f"{split}_predictions"), dtype=np.float64)
        y = np.asarray(_get(trajectory, f"y_{split}"), dtype=np.float64)
        if keep is not None:
            preds = preds[:, keep]
        return mean_predictor_error(preds, y)[0]
    values = np.asarray(_get(trajectory, "test_error" if observable == "gibbs_test_error" else observable),
                        dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if keep is not None:
        values = values[:, keep]
    mean = values.mean(1)
    if observable != "readout_second_moment" or control_variate is False or not _prior_start(trajectory):
        return mean
    use = control_variate_steps(values) if control_variate is True else np.asarray(control_variate, bool)
    if values.shape[1] < 3 or not use.any():
        return mean
    v0 = values[0]
    prior = 1.0 / float(_get(trajectory, "prior_v"))
    beta = ((values - mean[:, None]) * (v0 - v0.mean())[None]).mean(1) / max(np.var(v0), np.finfo(float).tiny)
    return np.where(use, mean - beta * (v0.mean() - prior), mean)


def control_variate_steps(values: np.ndarray, min_r2: float = 0.5) -> np.ndarray:
    """Steps at which the step-0 control variate pays: replica correlation² of ⟨v²⟩_t with ⟨v²⟩_0 above
    ``min_r2`` (the variance falls by that fraction; near 1 while training is lazy, near 0 once a
    sampler has forgotten its start, where the control variate would only add noise)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[1] < 3:
        return np.zeros(len(v), dtype=bool)
    d = v - v.mean(1, keepdims=True)
    d0 = d[0]
    r2 = (d @ d0) ** 2 / np.maximum((d * d).sum(1) * (d0 @ d0), np.finfo(float).tiny)
    return r2 > min_r2


def _prior_start(trajectory: Any) -> bool:
    """Step 0 is logged and the networks were drawn from the prior (so E⟨v²⟩_0 = 1/λ1)."""
    steps = np.asarray(_get(trajectory, "step"))
    config = _get(trajectory, "config") or {}
    return bool(len(steps) and steps.reshape(len(steps), -1)[0, 0] == 0 and config.get("init", "prior") == "prior"
                and _get(trajectory, "prior_v") is not None)


@dataclass(frozen=True)
class ThermalCheck:
    """Two-thermometer consistency along a run (module docstring). Arrays: one entry per logged step.

    ``maps`` are the two single-observable maps (``bridge.maps.TemperatureMap``, s.e. from a jackknife
    over replicas); ``log_ratio`` = log T_a − log T_b with jackknife ``log_ratio_se`` (NaN where b does not
    invert); ``residual`` = b_run − g_b(T_a) with jackknife ``residual_se``; ``status`` is "thermal"
    (|residual| ≤ n_se·se), "not thermal" or "unmapped" (T_a undefined); ``stretches`` are the runs of
    consecutive thermal steps as (first step, last step).
    """

    step: np.ndarray
    observables: tuple[str, str]
    maps: tuple[TemperatureMap, TemperatureMap]
    log_ratio: np.ndarray
    log_ratio_se: np.ndarray
    residual: np.ndarray
    residual_se: np.ndarray
    status: np.ndarray
    n_se: float
    level: str
    stretches: tuple[tuple[float, float], ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def thermal(self) -> np.ndarray:
        return self.status == "thermal"

    @property
    def ratio(self) -> np.ndarray:
        """T_a / T_b per step."""
        return np.exp(self.log_ratio)

    def counts(self) -> dict[str, int]:
        return {k: int((self.status == k).sum()) for k in ("thermal", "not thermal", "unmapped")}

    def statement(self) -> str:
        """One line for reports."""
        a, b = self.observables
        c = self.counts()
        mapped = c["thermal"] + c["not thermal"]
        head = (f"two thermometers ({a} vs {b}, {self.level} level): thermal within {self.n_se:g} s.e. at "
                f"{c['thermal']}/{mapped} steps where both map ({c['unmapped']} unmapped)")
        if not self.stretches:
            return head + "; no thermal stretch"
        spans = ", ".join(f"{lo:.0f}–{hi:.0f}" if lo != hi else f"{lo:.0f}" for lo, hi in self.stretches)
        return head + f"; thermal at steps {spans}"

    def summary(self) -> dict:
        finite = np.isfinite(self.log_ratio)
        return dict(observables=list(self.observables), level=self.level, n_se=self.n_se, **self.counts(),
                    stretches=[list(s) for s in self.stretches],
                    max_abs_log_ratio=float(np.abs(self.log_ratio[finite]).max()) if finite.any() else None,
                    statement=self.statement(), notes=list(self.notes))


def _monotone_branches(T: np.ndarray, g: np.ndarray) -> list[slice]:
    """Index ranges of the (T-sorted) grid on which g is monotone; neighbours share their turning point."""
    d = np.sign(np.where(np.abs(np.diff(g)) > 1e-12 * max(np.ptp(g[np.isfinite(g)]) if np.isfinite(g).any() else 0, 1e-300),
                         np.diff(g), 0.0))
    for i in range(1, len(d)):  # plateaus continue the current direction
        if d[i] == 0:
            d[i] = d[i - 1]
    cuts = [0] + [i for i in range(1, len(d)) if d[i] != 0 and d[i - 1] != 0 and d[i] != d[i - 1]] + [len(d)]
    return [slice(a, b + 1) for a, b in zip(cuts[:-1], cuts[1:])]


def _branch_map(m: TemperatureMap, inverses: list, T_b: np.ndarray, value: np.ndarray, loo: np.ndarray) -> TemperatureMap:
    """The map of a two-valued thermometer with, per step, the chosen branch's temperature and interval."""
    from dataclasses import replace

    se = jackknife_se(loo)
    lo = np.array([inv(np.array([v - s]))[0] for inv, v, s in zip(inverses, value, se)])
    hi = np.array([inv(np.array([v + s]))[0] for inv, v, s in zip(inverses, value, se)])
    status = np.where(np.isfinite(T_b), "ok", np.where(np.isfinite(value), m.status, "undefined")).astype(str)
    status = np.where((status == "no-map") & np.isfinite(value), "outside", status).astype(str)
    return replace(m, temperature=T_b, temperature_low=np.fmin(lo, hi), temperature_high=np.fmax(lo, hi),
                   status=status, notes=m.notes + ("two-valued theory curve: per step the branch nearest to the first "
                                                   "thermometer's T_eff",))


def _stretches(step: np.ndarray, thermal: np.ndarray, status: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Maximal runs of thermal steps, skipping unmapped steps inside a run but broken by non-thermal ones."""
    out: list[tuple[float, float]] = []
    start = last = None
    for s, th, st in zip(step, thermal, status):
        if th:
            start = s if start is None else start
            last = s
        elif st == "not thermal" and start is not None:
            out.append((float(start), float(last)))
            start = None
    if start is not None:
        out.append((float(start), float(last)))
    return tuple(out)


def thermometer_consistency(
    trajectory: Any,
    curve: Any,
    observables: Sequence[str] = ("train_error", "readout_second_moment"),
    *,
    n_se: float = 3.0,
    control_variate: bool = True,
    check: bool = True,
) -> ThermalCheck:
    """Map T_eff from two observables on one theory curve and test, per step, whether they agree.

    Args:
        trajectory: a ``gd_dynamics.Trajectory`` (or an object/dict with the same arrays) with R ≥ 3
            replicas (the jackknife needs them).
        curve: an ``equilibrium.TemperatureCurve`` of the same setting (checked unless ``check=False``).
        observables: two names from ``bridge.maps.OBSERVABLES``.
        n_se: agreement threshold in jackknife standard errors (of the residual b − g_b(T_a), which
            decides; ``log_ratio`` and its s.e. are reported beside it).
        control_variate: measure ``readout_second_moment`` with the step-0 control variate.
    """
    obs = tuple(observables)
    if len(obs) != 2 or obs[0] == obs[1]:
        raise ValueError(f"observables: need two different observables, got {list(obs)}")
    for o in obs:
        if o not in OBSERVABLES:
            raise ValueError(f"observables: each must be one of {list(OBSERVABLES)}, got {o!r}")
    if not (np.isfinite(n_se) and n_se > 0):
        raise ValueError(f"n_se: must be > 0, got {n_se!r}")
    preds = np.asarray(_get(trajectory, "train_predictions"))
    R = preds.shape[1]
    if R < 3:
        raise ValueError(f"trajectory: the two-thermometer test needs at least 3 replicas, got {R}")
    if check:
        from .identity import check_compatible

        check_compatible(trajectory, curve)
    steps = np.asarray(_get(trajectory, "step"), dtype=np.float64).reshape(len(preds), -1)[:, 0]
    T = np.asarray(curve.temperature, dtype=np.float64)
    level = str(_get(curve, "level") or "")
    notes: list[str] = []
    maps: list[TemperatureMap] = []
    inverses, values, loo = [], [], []
    if control_variate and "readout_second_moment" in obs:
        control_variate = control_variate_steps(np.asarray(_get(trajectory, "readout_second_moment"), dtype=np.float64))
    for o in obs:
        g = np.asarray(getattr(curve, OBSERVABLES[o][0]), dtype=np.float64)
        value = observable_per_replica_subset(trajectory, o, control_variate=control_variate)
        loo_o = leave_one_out(lambda kept: observable_per_replica_subset(trajectory, o, kept,  # noqa: B023
                                                                        control_variate=control_variate), np.arange(R))
        se = jackknife_se(loo_o)
        maps.append(map_observable(steps, value, T, g, run_value_se=se, observable=o, curve_field=OBSERVABLES[o][0],
                                   level=level))
        inverse, reason = invert_monotone(T, g)
        if inverse is None and o == obs[0]:
            notes.append(f"{o}: no map ({reason})")
        inverses.append(inverse)
        values.append(value)
        loo.append(loo_o)
    n = len(steps)
    log_ratio = np.full(n, np.nan)
    log_ratio_se = np.full(n, np.nan)
    if inverses[0] is None:
        notes.append(f"{obs[0]}: the first thermometer must be monotone in T; no consistency test")
    else:
        # thermometer b may be two-valued (e.g. λ1⟨v²⟩ dips near T ~ 1): invert it on each monotone
        # branch of its theory curve and keep, per step, the branch solution nearest to T_a — "is there an
        # equilibrium state at T ≈ T_a with this value of b?"
        g_b = np.asarray(getattr(curve, OBSERVABLES[obs[1]][0]), dtype=np.float64)
        branches = [inv for inv in (invert_monotone(T[sl], g_b[sl])[0] for sl in _monotone_branches(T, g_b))
                    if inv is not None]
        if len(branches) > 1:
            notes.append(f"{obs[1]}: the theory curve is not monotone in T; inverted on {len(branches)} monotone "
                         f"branches, taking per step the solution nearest to T_eff from {obs[0]}")
        Ta = maps[0].temperature
        cand = np.stack([b(values[1]) for b in branches]) if branches else np.full((1, n), np.nan)
        dist = np.abs(np.log(cand) - np.log(Ta)[None])
        pick = np.argmin(np.where(np.isfinite(dist), dist, np.inf), axis=0)
        Tb = cand[pick, np.arange(n)]
        if branches:
            maps[1] = _branch_map(maps[1], [branches[k] for k in pick], Tb, values[1], loo[1])
        log_ratio = np.log(Ta) - np.log(Tb)
        loo_a = np.log(inverses[0](loo[0]))
        loo_b = np.stack([np.log(branches[k](loo[1][:, i])) for i, k in enumerate(pick)], 1) if branches else loo_a * np.nan
        loo_ratio = loo_a - loo_b  # (R, n)
        ok = np.isfinite(loo_ratio).all(0)
        jk = jackknife_se(loo_ratio)
        log_ratio_se = np.where(ok, jk, np.nan)
        if np.any(np.isfinite(log_ratio) & ~ok):
            # a leave-one-out value left the theory's range: fall back to the maps' own ±1 s.e. intervals
            half = [0.5 * np.abs(np.log(m.temperature_high) - np.log(m.temperature_low)) for m in maps]
            log_ratio_se = np.where(ok, log_ratio_se, np.hypot(half[0], half[1]))
            notes.append("at some steps a leave-one-replica-out value left the theory's range: s.e. there from "
                         "the two maps' intervals combined in quadrature (ignores their correlation)")
    # the decision: does the equilibrium state at T_a(t) reproduce the run's b(t)? r_b = b − g_b(T_a), with a
    # jackknife s.e. that carries both observables' noise and their correlation. Where b inverts this is the
    # ratio test to first order (Δ log T = r_b / (dg_b/d log T)); it also decides where b's curve is flat,
    # two-valued, or where b lies beyond every equilibrium value.
    g_b = np.asarray(getattr(curve, OBSERVABLES[obs[1]][0]), dtype=np.float64)
    residual = np.full(n, np.nan)
    residual_se = np.full(n, np.nan)
    if inverses[0] is not None:
        residual = values[1] - interpolate_curve(T, g_b, maps[0].temperature)
        loo_T = inverses[0](loo[0])  # (R, n)
        loo_res = loo[1] - interpolate_curve(T, g_b, loo_T)
        ok = np.isfinite(loo_res).all(0)
        residual_se = np.where(ok, jackknife_se(loo_res), np.nan)
    mapped = np.isfinite(residual) & np.isfinite(residual_se)
    thermal = mapped & (np.abs(residual) <= n_se * residual_se)
    status = np.where(thermal, "thermal", np.where(mapped, "not thermal", "unmapped")).astype(str)
    return ThermalCheck(step=steps, observables=obs, maps=(maps[0], maps[1]), log_ratio=log_ratio,
                        log_ratio_se=log_ratio_se, residual=residual, residual_se=residual_se, status=status,
                        n_se=float(n_se), level=level, stretches=_stretches(steps, thermal, status),
                        notes=tuple(notes))
