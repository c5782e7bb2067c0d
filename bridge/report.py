"""Reports of a bridge comparison: ``report.md``, PNG plots, metrics CSV/JSON and a wandb run.

Files written into the report directory:

- ``report.md``: setting, timings, per width the T_eff map, a table of every measure's turning point on
  both sides, one plain sentence per measure ("non-monotonic: peak at step ..."), theory vs sampling;
- ``measures_vs_step_N{w}.png``: each geometry measure vs step (mean ± s.e. over replicas), T_eff(t)
  on a second axis; ``measures_vs_T_N{w}.png``: theory levels vs T, sampled points, GD mapped through
  T_eff; ``weights_N{w}.png``: ⟨v²⟩ and weight displacement; ``summary.png``: the centroid shift vs T
  for every width (the README's plot);
- ``metrics.csv`` (one row per width and logged step: replica means, s.e., T_eff per level and the
  theory at T_eff), ``curves.csv`` (the theory curves), ``summary.csv`` (the turning-point table) and
  ``metrics.json`` (all of the above that is not per step, plus consistency checks and timings);
- a wandb run (offline unless asked otherwise) holding the tables and plots; a wandb failure is
  reported in ``metrics.json`` and never stops the report.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["write_report", "write_csv", "run_settings", "GEOMETRY_MEASURES"]

GEOMETRY_MEASURES = (
    "centroid_distance", "centroid_shift", "unit_centroid_distance", "class_radius_0", "class_radius_1",
    "unit_class_radius_0", "unit_class_radius_1", "distance_ratio",
)
WEIGHT_MEASURES = ("readout_second_moment", "weight_moment_label", "weight_displacement_0", "weight_displacement_1")
LABELS = {
    "centroid_distance": "centroid distance² cᵀK_W c",
    "centroid_shift": "N1·(D − D∞)",
    "unit_centroid_distance": "unit-sphere centroid distance",
    "class_radius_0": "class radius (class 0)",
    "class_radius_1": "class radius (class 1)",
    "unit_class_radius_0": "unit-sphere radius R_0",
    "unit_class_radius_1": "unit-sphere radius R_1",
    "distance_ratio": "inter/intra distance ratio",
    "readout_second_moment": "⟨v²⟩",
    "weight_displacement_0": "|W−W0|/|W0| (first layer)",
    "weight_displacement_1": "|v−v0|/|v0| (readout)",
    "mean_predictor_train_error": "train error of mean predictor",
    "weight_moment_label": "λ0⟨(e_y·w)²⟩ (first layer, label direction)",
    "train_error": "train MSE (single networks)",
    "test_error": "test MSE (single networks)",
    "train_loss": "train loss ½Σ(y − f)²",
}


def _fmt(x: Any, spec: str = ".3g") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if not np.isfinite(x) else format(x, spec)


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _run_label(res: Any) -> str:
    """The run's optimizer for plot labels ("GD", "SGD", "ADAM", "LANGEVIN")."""
    return str(getattr(res.trajectory, "optimizer", "run")).upper()


def _level_colors(levels: Sequence[str]) -> dict[str, str]:
    palette = ["tab:gray", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    return {lv: palette[i % len(palette)] for i, lv in enumerate(levels)}


def _plot_vs_step(res: Any, path: Path) -> None:
    plt = _plt()
    cmp = res.comparison
    names = [m for m in GEOMETRY_MEASURES if m in cmp.measures]
    ncol = 3
    nrow = max(1, int(np.ceil(len(names) / ncol)))  # a CNN run has no geometry measure to compare
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    level = list(cmp.maps)[-1]
    tmap = cmp.maps[level]
    for ax, name in zip(axes.flat, names):
        m = cmp.measures[name]
        s = np.maximum(m.step, 0.5)  # step 0 on a log axis
        ax.plot(s, m.run_mean, color="tab:red", lw=1.5, label=f"{_run_label(res)} (mean ± s.e.)")
        ax.fill_between(s, m.run_mean - np.nan_to_num(m.run_se), m.run_mean + np.nan_to_num(m.run_se),
                        color="tab:red", alpha=0.25, lw=0)
        if np.isfinite(m.t_star):
            ax.axvline(m.t_star, color="tab:red", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_title(LABELS.get(name, name), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax2 = ax.twinx()
        ok = tmap.ok
        ax2.plot(s[ok], tmap.temperature[ok], color="k", lw=0.8, ls="--")
        ax2.set_yscale("log")
        ax2.set_ylabel(f"T_eff ({level})", fontsize=7)
        ax2.tick_params(labelsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"N1 = {res.width}: measures vs step (red), T_eff(t) dashed; dotted: t*", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_three_way(res: Any, path: Path) -> None:
    """GD (replica mean ± s.e.), the lazy NTK theory at the same steps, equilibrium at T_eff(t) per level."""
    plt = _plt()
    cmp = res.comparison
    names = list(cmp.three_way)
    colors = _level_colors(list(cmp.maps))
    ncol = 3
    nrow = max(1, int(np.ceil(len(names) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        tw = cmp.three_way[name]
        s = np.maximum(tw.step, 0.5)
        ax.errorbar(s, tw.run, yerr=np.nan_to_num(tw.run_se), fmt="o", ms=2.5, color="tab:red", lw=0.6,
                    label="GD (mean ± s.e.)")
        ax.plot(s, tw.lazy, color="k", lw=1.4, label="lazy (NTK, N1 → ∞)")
        for lv, v in tw.equilibrium.items():
            ax.plot(s, v, color=colors[lv], lw=1.2, ls="--", label=f"equilibrium at T_eff(t) ({lv})")
        ax.set_xscale("log")
        ax.set_title(tw.observable, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    if names:
        axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"N1 = {res.width}: GD vs lazy theory vs equilibrium at T_eff(t)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _regime_lines(curves: dict) -> list[str]:
    """One line per level whose curve is outside its validated regime somewhere (``TemperatureCurve.in_regime``:
    the level's own checks, or the sampler's diagnostics for the sampled level): comparisons made at those
    temperatures are marked, never silently shown as results."""
    lines = []
    for lv, c in curves.items():
        flags = getattr(c, "in_regime", None)
        if flags is None or np.all(flags):
            continue
        T = np.asarray(c.temperature)
        out = np.flatnonzero(~np.asarray(flags, bool))
        reasons = sorted({c.regime_reason[i] for i in out if i < len(c.regime_reason) and c.regime_reason[i]})
        lines.append(f"- **Outside its regime** ({lv}): {len(out)} of {len(T)} temperatures, T in "
                     f"[{T[out].min():.3g}, {T[out].max():.3g}]" + (f" ({'; '.join(reasons[:3])})" if reasons else "")
                     + "; values and T_eff mapped there are not validated results.")
    return lines


def _error_band(ax, T, values, se, color) -> None:
    """± one standard error around a curve that has them (the sampled level; condensate's Monte-Carlo error)."""
    if se is None:
        return
    order = np.argsort(T)
    ax.fill_between(np.asarray(T)[order], (values - se)[order], (values + se)[order], color=color, alpha=0.25, lw=0)


def _plot_theory(ax, res: Any, lv: str, T, values, color, lw: float, label: str) -> None:
    """A theory curve: solid where the level is inside its validated regime, dashed (and labelled so) where
    ``TemperatureCurve.in_regime`` is False — an out-of-regime stretch must not read as a result. NaN
    values (a temperature where the level has no result, e.g. an unconverged fixed point) leave gaps."""
    T, values = np.asarray(T, dtype=np.float64), np.asarray(values, dtype=np.float64)
    flags = getattr(res.curves.get(lv), "in_regime", None)
    if flags is None or len(flags) != len(T) or np.all(flags):
        ax.plot(T, values, color=color, lw=lw, label=label)
        return
    inside = np.asarray(flags, dtype=bool)
    order = np.argsort(T)
    T, values, inside = T[order], values[order], inside[order]
    # out of regime: dashed over the whole curve; in regime: solid on top (a point joins both styles)
    ax.plot(T, values, color=color, lw=0.9 * lw, ls="--", label=f"{label}, dashed: outside its regime")
    if inside.any():
        ax.plot(T, np.where(inside, values, np.nan), color=color, lw=lw)


def _plot_vs_T(res: Any, path: Path, names: Sequence[str]) -> None:
    plt = _plt()
    cmp = res.comparison
    names = [m for m in names if m in cmp.measures]
    colors = _level_colors(list(cmp.maps))
    ncol = 3
    nrow = max(1, int(np.ceil(len(names) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        m = cmp.measures[name]
        for lv, T in m.theory_temperature.items():
            _plot_theory(ax, res, lv, T, m.theory_values[lv], colors[lv], 1.5, f"theory: {lv}")
            _error_band(ax, T, m.theory_values[lv], m.theory_se.get(lv), colors[lv])
            tt = m.theory_turning.get(lv)
            if tt is not None and tt.non_monotonic:
                ax.axvline(tt.location, color=colors[lv], ls=":", lw=1)
        for lv, tmap in cmp.maps.items():
            ok = tmap.ok
            if ok.any():
                ax.errorbar(tmap.temperature[ok], m.run_mean[ok], yerr=np.nan_to_num(m.run_se[ok]), fmt="o", ms=2.5,
                            color=colors[lv], mfc="white", alpha=0.8, lw=0.6, label=f"{_run_label(res)} via T_eff ({lv})")
        pts = [(p.temperature, *p.values[name]) for p in res.samples if name in p.values]
        if pts:
            T, mu, se = map(np.array, zip(*pts))
            ax.errorbar(T, mu, yerr=se, fmt="s", color="k", ms=4, capsize=2, label="Langevin/HMC sampling")
        ax.set_xscale("log")
        ax.set_xlabel("T", fontsize=8)
        ax.set_title(LABELS.get(name, name), fontsize=9)
        ax.tick_params(labelsize=7)
    if names:
        axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"N1 = {res.width}: vs temperature — lines theory, circles {_run_label(res)} at T_eff(t), squares sampling",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_summary(results: Sequence[Any], path: Path, measure: str = "centroid_shift") -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.4), squeeze=False)
    for ax, res in zip(axes.flat, results):
        cmp = res.comparison
        colors = _level_colors(list(cmp.maps))
        m = cmp.measures.get(measure)
        if m is None:
            ax.axis("off")
            continue
        for lv, T in m.theory_temperature.items():
            _plot_theory(ax, res, lv, T, m.theory_values[lv], colors[lv], 1.8, f"theory ({lv})")
            _error_band(ax, T, m.theory_values[lv], m.theory_se.get(lv), colors[lv])
        lv = list(cmp.maps)[-1]
        tmap = cmp.maps[lv]
        ok = tmap.ok
        ax.errorbar(tmap.temperature[ok], m.run_mean[ok], yerr=np.nan_to_num(m.run_se[ok]), fmt="o", ms=3,
                    color="tab:red", mfc="white", lw=0.6, label=f"{_run_label(res)} at T_eff(t) ({lv})")
        pts = [(p.temperature, *p.values[measure]) for p in res.samples if measure in p.values]
        if pts:
            T, mu, se = map(np.array, zip(*pts))
            # above the legend box: the converged sampled points are the reference and must not be hidden
            ax.errorbar(T, mu, yerr=se, fmt="s", color="k", ms=4, capsize=2, label="sampling", zorder=6)
        ax.set_xscale("log")
        ax.set_xlabel("temperature T  (GD: T_eff(t), time runs right to left)", fontsize=8)
        ax.set_title(f"N1 = {res.width} (α = P/N1 = {res.trajectory.train_predictions.shape[2] / res.width:.3g})",
                     fontsize=9)
        ax.set_ylabel(LABELS.get(measure, measure), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _metrics_rows(res: Any) -> list[dict]:
    cmp = res.comparison
    rows = []
    steps = np.asarray(res.trajectory.step)
    for i, s in enumerate(steps):
        row: dict[str, Any] = dict(width=res.width, step=int(s))
        for lv, tmap in cmp.maps.items():
            row[f"T_eff[{lv}]"] = tmap.temperature[i]
            row[f"T_eff_low[{lv}]"] = tmap.temperature_low[i]
            row[f"T_eff_high[{lv}]"] = tmap.temperature_high[i]
            row[f"status[{lv}]"] = tmap.status[i]
        row["match_value"] = next(iter(cmp.maps.values())).run_value[i]
        row["match_value_se"] = next(iter(cmp.maps.values())).run_value_se[i]
        for name, tw in cmp.three_way.items():
            row[f"{name}_gd"], row[f"{name}_gd_se"], row[f"{name}_lazy"] = tw.run[i], tw.run_se[i], tw.lazy[i]
            for lv, v in tw.equilibrium.items():
                row[f"{name}_eq[{lv}]"] = v[i]
        for lv, th in cmp.thermal.items():
            row[f"thermal[{lv}]"] = th.status[i]
            row[f"log_T_ratio[{lv}]"], row[f"log_T_ratio_se[{lv}]"] = th.log_ratio[i], th.log_ratio_se[i]
        for name, m in cmp.measures.items():
            row[name] = m.run_mean[i]
            row[f"{name}_se"] = m.run_se[i]
            for lv, v in m.theory_at_T_eff.items():
                row[f"{name}_theory[{lv}]"] = v[i]
        rows.append(row)
    return rows


def _curve_rows(res: Any) -> list[dict]:
    from .compare import curve_measures

    rows = []
    for lv, c in res.curves.items():
        table = curve_measures(c)
        for k, T in enumerate(np.asarray(c.temperature)):
            q = np.asarray(c.Q)[k]  # a number; per layer (deep FC) or a patch × patch matrix (CNN)
            row = dict(width=res.width, level=lv, temperature=float(T), Q=float(q) if q.ndim == 0 else q.tolist(),
                       train_error=float(np.asarray(c.train_error)[k]), test_error=float(np.asarray(c.test_error)[k]),
                       test_bias2=float(np.asarray(c.test_bias2)[k]))
            row.update({name: float(v[k]) for name, v in table.items()})
            rows.append(row)
    return rows


def _summary_rows(res: Any) -> list[dict]:
    return [dict(width=res.width, **row) for row in res.comparison.table()]


def write_csv(rows: list[dict], path: Path) -> None:
    """A CSV of flat dicts (columns: the union of their keys, in order of appearance); floats at full
    precision (``repr``), lists and dicts JSON-encoded."""
    from gdeq.gd_dynamics.trajectory import jsonable

    def cell(v: Any) -> Any:
        if isinstance(v, (float, np.floating)):
            return repr(float(v))
        return json.dumps(v, default=jsonable) if isinstance(v, (list, dict)) else v

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: cell(v) for k, v in r.items()})


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------
_OPTIMIZER_NAMES = dict(gd="full-batch GD", sgd="SGD", adam="Adam", langevin="Langevin dynamics")


def run_settings(trajectory: Any) -> str:
    """The run's real settings in words, read from the trajectory and the arguments it records."""
    config = getattr(trajectory, "config", None) or {}
    optimizer = str(getattr(trajectory, "optimizer", config.get("optimizer", "?")))
    text = _OPTIMIZER_NAMES.get(optimizer, optimizer)
    batch = config.get("batch_size")
    if batch is not None:
        text += f" (minibatch {batch})" if optimizer != "gd" else f" (batch {batch})"
    temperature = getattr(trajectory, "temperature", None)
    if temperature is not None:
        text += f" at T = {_fmt(temperature, '.4g')}"
    loss = config.get("loss", "mse")
    reduction = config.get("reduction", "sum")
    text += (" on ½Σ(y − f)²" if loss == "mse" else f" on the {loss} loss") + f" ({reduction} over samples)"
    text += f", lr = {_fmt(getattr(trajectory, 'lr', float('nan')), '.4g')}"
    text += f", λ0 = {_fmt(trajectory.prior_w, '.4g')}, λ1 = {_fmt(trajectory.prior_v, '.4g')}"
    init = config.get("init", "prior")
    text += ", from the prior (standard parameterisation)" if init == "prior" else f", {init} initialisation"
    if config.get("bias"):
        text += ", with biases"
    if config.get("frozen_layers"):
        text += f", frozen layers {list(config['frozen_layers'])}"
    if config.get("dtype"):
        text += f", {config['dtype']}"
    return text


def _width_json(res: Any) -> dict:
    cmp = res.comparison
    measures = {}
    for name, m in cmp.measures.items():
        measures[name] = dict(
            run_shape=m.run_turning.kind, run_turning_step=m.run_turning.location, run_excursion=m.run_turning.excursion,
            t_star=m.t_star, t_star_se=m.t_star_se, replicas_turning=m.replicas_with_turning,
            replica_steps=m.replica_steps, T_eff_at_t_star=m.T_eff_at_t_star,
            theory={lv: dict(shape=t.kind, T_star=t.location if t.non_monotonic else None, excursion=t.excursion)
                    for lv, t in m.theory_turning.items()},
            statement=m.statement(),
        )
    return dict(
        width=res.width, replicas=int(res.trajectory.train_predictions.shape[1]), lr=res.trajectory.lr,
        steps=int(res.trajectory.step[-1]), run_dir=res.trajectory.run_dir, seconds=res.seconds,
        maps={lv: m.summary() for lv, m in cmp.maps.items()},
        measures=measures,
        consistency={lv: dict(vars(c), passed=c.passed) for lv, c in cmp.consistency.items()},
        lazy=None if cmp.lazy is None else dict(stable=cmp.lazy.stable, notes=list(cmp.lazy.notes),
                                                 ntk_max_eigenvalue=float(np.max(cmp.lazy.ntk_eigenvalues))),
        three_way={name: dict(description=tw.description, within_3se=tw.agreement(), steps=len(tw.step))
                   for name, tw in cmp.three_way.items()},
        thermal={lv: th.summary() for lv, th in cmp.thermal.items()},
        samples=[dict(temperature=p.temperature, replicas=p.replicas, method=p.method, seconds=p.seconds,
                      values={k: dict(mean=v[0], se=v[1]) for k, v in p.values.items()}) for p in res.samples],
    )


def _three_way_lines(res: Any) -> list[str]:
    """Markdown for the lazy baseline (three-way table) and the two-thermometer verdict of one width."""
    cmp = res.comparison
    lines: list[str] = []
    if cmp.three_way:
        levels = list(cmp.maps)
        lines += ["", "**GD vs lazy (NTK) theory vs equilibrium at T_eff(t)** — values at the last logged step; "
                  "counts: logged steps where GD lies within 3 s.e. of each", "",
                  "| observable | GD | lazy | " + " | ".join(f"eq. {lv}" for lv in levels) + " | within 3 s.e.: lazy | "
                  + " | ".join(f"{lv}" for lv in levels) + " |", "|" + "---|" * (3 + 2 * len(levels))]
        for name, tw in cmp.three_way.items():
            agree = tw.agreement()
            n = len(tw.step)
            cells = [name, f"{_fmt(tw.run[-1], '.4g')} ± {_fmt(tw.run_se[-1], '.2g')}", _fmt(tw.lazy[-1], ".4g")]
            cells += [_fmt(tw.equilibrium[lv][-1], ".4g") if lv in tw.equilibrium else "—" for lv in levels]
            cells += [f"{agree['lazy']}/{n}"] + [f"{agree[lv]}/{n}" if lv in agree else "—" for lv in levels]
            lines.append("| " + " | ".join(cells) + " |")
        if cmp.lazy is not None and cmp.lazy.notes:
            lines.append("")
            lines.append("Lazy theory notes: " + "; ".join(cmp.lazy.notes) + ".")
    for lv, th in cmp.thermal.items():
        lines += ["", f"- {th.statement()[0].upper()}{th.statement()[1:]}."]
    for note in cmp.metadata.get("notes", []):
        lines += ["", f"- {note}"]
    return lines


def _markdown(results: Sequence[Any], config: dict, files: dict, seconds: float) -> str:
    lines = [f"# gdeq report: {config.get('name', '')}", ""]
    task = config.get("task", {})
    meta = results[0].comparison.metadata if results else {}
    rel_tol, n_se = meta.get("rel_tol", float("nan")), meta.get("n_se", float("nan"))
    lines += [
        f"Data: {task.get('dataset', '?')} classes {task.get('classes', '?')}, P = {task.get('n_train', '?')} "
        f"(test {task.get('n_test', '?')}), source: {task.get('source', '?')}; activation {config.get('activation')}; "
        f"theory levels: {', '.join(config.get('levels', []))}. Each width's run settings are stated in its section.",
        "",
        "T_eff(t) matches the training error of the replica-mean predictor (bias-corrected for the finite number of "
        "replicas) to the theory's (1/P)T²|A⁻¹y|², monotonically in log T; steps outside the theory's range are "
        "reported, not extrapolated. Turning points use the same rule on both sides: an interior extremum standing "
        f"out by more than {_fmt(100 * rel_tol)} % of the curve's range (and {_fmt(n_se)} s.e. on the run side); each "
        "comes with its effect size (the excursion, and as a % of the value) and, on the run side, its significance "
        "(the excursion in standard errors over replicas).",
        "",
        f"Total time: {seconds:.0f} s.",
        "",
        f"![summary]({files['summary']})",
        "",
    ]
    for res in results:
        cmp = res.comparison
        P = res.trajectory.train_predictions.shape[2]
        lines += [f"## N1 = {res.width} (α = P/N1 = {P / res.width:.3g}), {res.trajectory.train_predictions.shape[1]} "
                  f"replicas, lr = {res.trajectory.lr:.3g}, {int(res.trajectory.step[-1])} steps", ""]
        lines.append(f"Run: {run_settings(res.trajectory)}.")
        lines.append("")
        lines.append("Timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()) + ".")
        lines.append("")
        for lv, m in cmp.maps.items():
            s = m.summary()
            first, last = s["T_eff_first"], s["T_eff_last"]
            lines.append(f"- T_eff ({lv}): {s['mapped_steps']['ok']} of {len(m.step)} logged steps mapped, from "
                         f"T_eff = {_fmt(first)} at step {_fmt(s['first_mapped_step'])} down to {_fmt(last)} at step "
                         f"{_fmt(s['last_mapped_step'])}; " + ("; ".join(m.notes) if m.notes else "no flags") + ".")
        lines += _regime_lines(res.curves)
        for lv, c in cmp.consistency.items():
            lines.append(f"- Langevin consistency ({lv}): {c.message}")
        lines += _three_way_lines(res)
        lines += ["", "**Where each side is non-monotonic**", ""]
        for name, m in cmp.measures.items():
            lines.append(f"- {LABELS.get(name, name)} (`{name}`): {m.statement()}")
        lines += ["", "| measure | run shape | t* ± s.e. | replicas turning | "
                  + " | ".join(f"T_eff(t*) {lv} | theory {lv} | T* {lv}" for lv in cmp.maps) + " |"]
        lines.append("|" + "---|" * (4 + 3 * len(cmp.maps)))
        for row in cmp.table():
            cells = [row["measure"], row["run_shape"], f"{_fmt(row['t_star'], '.4g')} ± {_fmt(row['t_star_se'], '.2g')}",
                     f"{row['replicas_turning']}/{row['replicas']}"]
            for lv in cmp.maps:
                cells += [_fmt(row[f"T_eff_t_star[{lv}]"]), row[f"theory_shape[{lv}]"], _fmt(row[f"T_star[{lv}]"])]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        if res.samples:
            p0 = res.samples[0]
            lines += ["", f"**Theory vs sampling** (N1 = {res.width}; {p0.method}, {p0.replicas} chains, "
                      f"{_fmt(res.seconds.get('sampling', float('nan')), '.0f')} s; mean ± s.e. over chains). "
                      "`test_error` is bias² + variance (a single posterior network), `test_bias2` the mean "
                      "predictor's; short chains on CPU: check with `gdeq validate` before trusting a digit.", "",
                      "| T | measure | sampled | " + " | ".join(cmp.maps) + " |", "|" + "---|" * (3 + len(cmp.maps))]
            from .maps import interpolate_curve

            from .compare import curve_measures

            tables = {lv: dict(curve_measures(c), train_error=np.asarray(c.train_error),
                               test_bias2=np.asarray(c.test_bias2), test_error=np.asarray(c.test_error))
                      for lv, c in res.curves.items()}
            for p in res.samples:
                for name, (mu, se) in p.values.items():
                    field_name = "train_error" if name == "mean_predictor_train_error" else name
                    th = []
                    for lv, c in res.curves.items():
                        v = tables[lv].get(field_name)
                        th.append(_fmt(interpolate_curve(c.temperature, v, np.array([p.temperature]))[0], ".4g")
                                  if v is not None else "—")
                    lines.append(f"| {p.temperature:.3g} | {name} | {mu:.4g} ± {se:.2g} | " + " | ".join(th) + " |")
        w = res.width
        lines += ["", f"![measures vs step]({files[f'step_{w}']})", "", f"![measures vs T]({files[f'T_{w}']})", "",
                  f"![weights]({files[f'weights_{w}']})", ""]
        if f"lazy_{w}" in files:
            lines += [f"![GD vs lazy vs equilibrium]({files[f'lazy_{w}']})", ""]
    if any(res.comparison.thermal for res in results):
        lines += ["## Is training thermal? (two thermometers)", ""]
        for res in results:
            for lv, th in res.comparison.thermal.items():
                lines.append(f"- N1 = {res.width}: {th.statement()}.")
        lines.append("")
    lines += ["## Files", "",
              "- `metrics.csv`: per width and logged step, replica means and s.e. of every measure, T_eff per level "
              "(with the interval from ± 1 s.e.) and the theory at T_eff;",
              "- `curves.csv`: the theory curves; `summary.csv`: the table above; `metrics.json`: everything not per step;",
              f"- wandb run: {files.get('wandb', 'not written')}.", ""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, results: Sequence[Any], *, config: dict | None = None,
                 wandb_mode: str = "offline", wandb_project: str = "gdeq", seconds_so_far: float = 0.0) -> dict:
    """Write the report files for per-width results (``bridge.experiments.WidthResult``); returns their paths.

    ``wandb_mode``: ``"offline"`` (default; sync later with ``wandb sync``), ``"online"`` (falls back to
    offline if the server cannot be reached) or ``"disabled"``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(config or {})
    files: dict[str, str] = {"summary": "summary.png"}
    _plot_summary(results, out / "summary.png")
    for res in results:
        w = res.width
        files[f"step_{w}"] = f"measures_vs_step_N{w}.png"
        files[f"T_{w}"] = f"measures_vs_T_N{w}.png"
        files[f"weights_{w}"] = f"weights_N{w}.png"
        _plot_vs_step(res, out / files[f"step_{w}"])
        _plot_vs_T(res, out / files[f"T_{w}"], GEOMETRY_MEASURES)
        _plot_vs_T(res, out / files[f"weights_{w}"], WEIGHT_MEASURES + ("mean_predictor_train_error",))
        if res.comparison.three_way:
            files[f"lazy_{w}"] = f"gd_lazy_equilibrium_N{w}.png"
            _plot_three_way(res, out / files[f"lazy_{w}"])
    metrics = [r for res in results for r in _metrics_rows(res)]
    write_csv(metrics, out / "metrics.csv")
    write_csv([r for res in results for r in _curve_rows(res)], out / "curves.csv")
    summary = [r for res in results for r in _summary_rows(res)]
    write_csv(summary, out / "summary.csv")
    files.update(metrics_csv="metrics.csv", curves_csv="curves.csv", summary_csv="summary.csv", json="metrics.json",
                 report="report.md")
    wandb_info = _log_wandb(out, results, config, files, summary, wandb_mode, wandb_project)
    if wandb_info.get("dir"):
        files["wandb"] = wandb_info["dir"]
    seconds = seconds_so_far + time.perf_counter() - t0
    doc = dict(config=config, seconds=seconds, widths=[_width_json(r) for r in results], summary=summary,
               files=files, wandb=wandb_info)
    (out / "metrics.json").write_text(json.dumps(_clean(doc), indent=2, default=str))
    (out / "report.md").write_text(_markdown(results, config, files, seconds))
    return {k: str(out / v) if not Path(v).is_absolute() else v for k, v in files.items()}


def _log_wandb(out: Path, results: Sequence[Any], config: dict, files: dict, summary: list[dict], mode: str,
               project: str) -> dict:
    """Log the tables and plots to a wandb run (gd_dynamics.wandb_setup: offline by default, never raises)."""
    from gdeq.gd_dynamics.wandb_setup import log_to_wandb

    def log(run) -> None:
        import wandb

        cols = sorted({k for r in summary for k in r})
        run.log({"summary": wandb.Table(columns=cols, data=[[_clean(r.get(k)) for k in cols] for r in summary])})
        for key, name in files.items():
            if name.endswith(".png"):
                run.log({f"plots/{key}": wandb.Image(str(out / name))})
        for res in results:
            for name, m in res.comparison.measures.items():
                run.summary[f"N{res.width}/{name}/t_star"] = _clean(m.t_star)
                for lv, v in m.T_eff_at_t_star.items():
                    run.summary[f"N{res.width}/{name}/T_eff_t_star/{lv}"] = _clean(v)

    return log_to_wandb(mode, log, project=project, dir=out, name=config.get("name"), config=_clean(config))
