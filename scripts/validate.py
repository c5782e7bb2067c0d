"""`gdeq validate`: each theory level against the sampled level (the exact posterior) ± s.e., with its diagnostics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gdeq.cli.common import DataOptions

# table rows: name -> TemperatureCurve field ("unit_class_radius_<c>" takes column c)
MEASURES = {"mean_predictor_train_error": "train_error", "test_bias2": "test_bias2",
            "readout_second_moment": "readout_second_moment", "centroid_distance": "centroid_distance",
            "centroid_shift": "centroid_shift", "unit_centroid_distance": "unit_centroid_distance",
            "unit_class_radius": "unit_class_radius"}


def validate(
    data: DataOptions = DataOptions(n_train=200, n_test=200),  # noqa: B008 - frozen: a safe default
    widths: list[int] = [100],  # noqa: B006
    temperatures: list[float] = [0.1, 1.0],  # noqa: B006
    activation: str = "erf",
    levels: list[str] = ["nngp", "gaussian"],  # noqa: B006
    replicas: int = 16,
    burn_in: float | None = None,
    sampling_time: float | None = None,
    max_trajectories: int = 3200,
    max_seconds: float | None = None,
    method: str = "hmc",
    device: str = "cpu",
    output: str | None = "runs/validate/table",
) -> list[dict]:
    """Sample the exact posterior (the ``sampled`` level) at each width and temperature, theory levels beside it.

    The sampled level runs until its diagnostics pass (split-R̂ < 1.01, ESS ≥ 200 for every diagnostic
    observable) or its budget runs out; every row carries R̂, ESS, acceptance and ``converged``, and rows
    at unconverged temperatures are marked NOT CONVERGED in the printout and hollow red in the plot.

    Args:
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed,
            --data.data_dir); data.seed also seeds the sampler.
        widths: hidden widths N1.
        temperatures: temperatures T at which to sample.
        activation: erf, relu, tanh or identity.
        levels: theory levels to compare (nngp, gaussian, single_neuron, cavity); "sampled" may be listed
            too (it is always run: it is the reference column).
        replicas: independent chains per temperature (error bars are over chains).
        burn_in: fixed burn-in in time units of docs/conventions.md §6 (with sampling_time; default:
            adaptive length, convergence-checked).
        sampling_time: fixed sampling time, in the same units (with burn_in).
        max_trajectories: budget of the adaptive sampler, trajectories per chain.
        max_seconds: wall-time budget of the adaptive sampler per width (none: no time limit).
        method: hmc (collapsed readout, exact at any step) or langevin.
        device: cpu or cuda.
        output: path stem for <output>.csv/.json and <output>.png (none to skip writing).
    """
    from gdeq.bridge.experiments import theory_curves, write_table
    from gdeq.equilibrium import SamplerSettings

    if replicas < 2:
        raise ValueError(f"replicas: need at least 2 chains for error bars, got {replicas}")
    settings = SamplerSettings(replicas=replicas, method=method, burn_in=burn_in, sampling_time=sampling_time,
                               max_trajectories=max_trajectories, max_seconds=max_seconds, seed=data.seed,
                               device=None if device == "cpu" else device)
    settings.check()  # one clear error before any work
    theory = [lv for lv in levels if lv != "sampled"]
    task = data.load()
    rows, curves_by_width = [], {}
    for width in widths:
        curves = theory_curves(task, width=width, activation=activation, temperatures=temperatures,
                               levels=[*theory, "sampled"], sampler=settings)
        curves_by_width[width] = curves
        rows += validation_rows(curves, theory)
    _print(rows, theory)
    if output:
        write_table(rows, Path(output))
        plot_validation(curves_by_width, theory, Path(output).with_suffix(".png"))
        print(f"table written to {output}.csv/.json, plot to {output}.png")
    return rows


def _field(curve, name: str, column: int | None) -> np.ndarray:
    values = np.asarray(getattr(curve, name), dtype=np.float64)
    return values if column is None else values[:, column]


def _measures(curve) -> list[tuple[str, str, int | None]]:
    """(row name, curve field, column) for every measure the sampled curve has a finite value of."""
    out = []
    for name, fld in MEASURES.items():
        values = np.asarray(getattr(curve, fld))
        if values.ndim == 2:
            out += [(f"{name}_{c}", fld, c) for c in range(values.shape[1])]
        elif np.all(np.isfinite(values)):
            out.append((name, fld, None))
    return out


def validation_rows(curves: dict, levels: list[str]) -> list[dict]:
    """One row per temperature and measure: the sampled mean ± s.e., its diagnostics (max R̂, min bulk/tail
    ESS, acceptance, burn-in, ``converged``) and per theory level its value, ``z[level]`` = (theory −
    sampled)/s.e. and ``rel[level]`` = theory/sampled − 1."""
    s = curves["sampled"]
    rows = []
    for k, T in enumerate(np.asarray(s.temperature)):
        d = s.diagnostics[k]
        diag = dict(converged=bool(d.converged), rhat_max=max(d.rhat.values()),
                    ess_min=min(min(d.ess_bulk.values()), min(d.ess_tail.values())),
                    acceptance=d.acceptance, burn_in=d.burn_in, n_draws=d.n_draws)
        for name, fld, col in _measures(s):
            mean, se = float(_field(s, fld, col)[k]), float(_field_se(s, fld, col)[k])
            row = dict(width=int(s.width), temperature=float(T), measure=name, sampled=mean, se=se, **diag)
            for lv in levels:
                th = float(_field(curves[lv], fld, col)[k])
                row[lv] = th
                row[f"z[{lv}]"] = (th - mean) / se if se > 0 else float("nan")
                row[f"rel[{lv}]"] = th / mean - 1 if mean != 0 else float("nan")
                if fld in curves[lv].mean_kernel_approximations:  # not the posterior average: say so
                    row[f"approx[{lv}]"] = "mean-kernel"
            rows.append(row)
    return rows


def _field_se(curve, name: str, column: int | None) -> np.ndarray:
    se = np.asarray(curve.sem(name), dtype=np.float64)
    return se if column is None else se[:, column]


def _print(rows: list[dict], levels: list[str]) -> None:
    print(f"{'N1':>5} {'T':>7} {'measure':<28} {'sampled ± s.e.':>22} " + " ".join(f"{lv:>22}" for lv in levels)
          + "   R̂max  ESSmin")
    for r in rows:
        cells = [f"{r[lv]:>10.4g} ({r[f'z[{lv}]']:+6.1f}σ)" + ("*" if f"approx[{lv}]" in r else "") for lv in levels]
        flag = "" if r["converged"] else "  NOT CONVERGED (not a result)"
        print(f"{r['width']:>5} {r['temperature']:>7.3g} {r['measure']:<28} {r['sampled']:>12.5g} ± {r['se']:<8.2g} "
              + " ".join(f"{c:>22}" for c in cells) + f"  {r['rhat_max']:6.3f} {r['ess_min']:6.0f}{flag}")
    if any(k.startswith("approx[") for r in rows for k in r):
        print("* mean-kernel approximation of a non-linear measure (docs/theory.md §4.3), not a posterior average")
    bad = sorted({(r["width"], r["temperature"]) for r in rows if not r["converged"]})
    if bad:
        print("NOT CONVERGED (sampler diagnostics failed; these rows are not results): "
              + ", ".join(f"N1 = {w}, T = {t:.3g}" for w, t in bad))


def plot_validation(curves_by_width: dict, levels: list[str], path: Path) -> None:
    """A block of panels per width, one panel per measure: the sampled level ± s.e. against T (filled
    black where converged, hollow red crosses where its diagnostics failed), the theory levels as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = list(curves_by_width)
    names = _measures(curves_by_width[widths[0]]["sampled"])
    ncol = min(4, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow * len(widths), ncol, figsize=(3.4 * ncol, 2.7 * nrow * len(widths)), squeeze=False)
    for w_index, width in enumerate(widths):
        curves = curves_by_width[width]
        s = curves["sampled"]
        T = np.asarray(s.temperature)
        ok = np.asarray(s.converged, dtype=bool)
        panels = list(axes[w_index * nrow:(w_index + 1) * nrow].flat)
        for ax, (name, fld, col) in zip(panels, names):
            for lv in levels:
                approx = fld in curves[lv].mean_kernel_approximations
                ax.plot(T, _field(curves[lv], fld, col), "--" if approx else "-", marker=".", lw=1.2,
                        label=f"{lv} (mean-kernel approx.)" if approx else lv)
            mean, se = _field(s, fld, col), _field_se(s, fld, col)
            if ok.any():
                ax.errorbar(T[ok], mean[ok], yerr=se[ok], fmt="s", color="k", ms=4, capsize=2, label="sampled")
            if (~ok).any():
                ax.errorbar(T[~ok], mean[~ok], yerr=se[~ok], fmt="x", color="tab:red", ms=7, capsize=2,
                            label="sampled, NOT converged")
            ax.set_xscale("log")
            ax.set_title(f"N1 = {width}: {name}", fontsize=8)
            ax.set_xlabel("T", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=5)
        for ax in panels[len(names):]:
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

