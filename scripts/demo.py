"""`gdeq demo`: GD vs equilibrium end to end on the embedded MNIST, with a report in runs/<name>/."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from gdeq.cli.common import DataOptions, print_comparison, temperature_grid, wandb_mode


def demo(
    name: str = "demo",
    data: DataOptions = DataOptions(),  # noqa: B008 - frozen: a safe default
    widths: list[int] = [20, 400],  # noqa: B006
    steps: list[int] = [2000, 800],  # noqa: B006
    replicas: list[int] = [8, 4],  # noqa: B006
    activation: str = "erf",
    lr: float | None = None,
    levels: list[str] = ["nngp", "condensate", "gaussian"],  # noqa: B006  (GD's T_eff plots map through the last)
    cavity_every: int = 2,
    condensate_every: int = 4,
    t_min: float = 1e-4,
    t_max: float = 100.0,
    n_temperatures: int = 49,
    sample_temperatures: list[float] | None = None,
    sample_every: int = 4,
    sample_replicas: int = 8,
    sample_max_trajectories: int = 400,
    sample_max_seconds: float | None = 300.0,
    sample_min_temperature: float = 0.01,
    output_dir: str = "runs",
    wandb: str = "offline",
    wandb_project: str = "gdeq",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """GD runs at a narrow and a wide width, equilibrium curves, the time→temperature bridge, a report.

    Writes runs/<name>/: report.md, PNG plots, metrics.csv, curves.csv, summary.csv, metrics.json and a
    wandb run (offline unless --wandb online). Prints, per width and measure, whether each side is
    non-monotonic and where. The narrowest width's exact posterior is sampled (the ``sampled`` level:
    HMC, adaptive length until split-R̂ < 1.01 and ESS ≥ 200, or its budget) across the temperature
    range; only temperatures whose diagnostics passed are shown as results (squares with error bars),
    the others are listed as NOT CONVERGED in the printout and the report.

    Args:
        name: report directory name under output_dir.
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed,
            --data.data_dir); the default MNIST 3 vs 5 uses the embedded subset and works offline.
        widths: hidden widths N1 (α = P/N1 matters for the signatures).
        steps: GD steps per width (one value for all, or one per width).
        replicas: replicas per width (≥ 3; one value or one per width).
        activation: erf, relu, tanh or identity.
        lr: GD learning rate for ½Σ(y − f)² (default 1/λ_max of the tangent kernel at init).
        levels: theory levels (nngp, gaussian, single_neuron, cavity, condensate). ``condensate`` (one unit
            sampled exactly on a Gaussian-equivalent bulk, docs/theory.md B.12) is shown beside ``gaussian``: it is
            the level validated against exact sampling at the demo's widths (test error and λ1⟨v²⟩ within a few per
            cent where its flag is on; dashed where it is off). ``cavity`` (the self-consistent single-unit level)
            is outside its validated regime at N1 < 50 (``--levels='[nngp, cavity, gaussian]'`` shows it). The plots
            map GD through the last level's T_eff (default ``gaussian``, defined at every temperature).
        cavity_every: the ``cavity`` level runs on every cavity_every-th temperature of the theory grid (both
            ends included): it costs ~1 CPU-s per temperature at P = 400, the other levels milliseconds.
        condensate_every: the same thinning for the ``condensate`` level (it costs ~3 CPU-s per temperature at
            P = 400: 36 and 40 CPU-s for its 13 of the 49 temperatures at N1 = 20 and 400).
        t_min: lowest temperature of the theory grid.
        t_max: highest temperature of the theory grid.
        n_temperatures: number of log-spaced temperatures.
        sample_temperatures: temperatures at which the narrowest width's posterior is sampled (default: every
            sample_every-th temperature of the theory grid, both ends included; [] to skip sampling).
        sample_every: thinning of the theory grid for the default sample_temperatures.
        sample_replicas: chains per sampled temperature.
        sample_max_trajectories: sampler budget, HMC trajectories per chain (tuning included); temperatures
            not converged within it are flagged, not shown as results.
        sample_max_seconds: wall-time budget of the sampler (checked before each round after the first two;
            none: only the trajectory budget).
        sample_min_temperature: the default sample_temperatures stop here: HMC steps per trajectory grow like
            1/√T, so colder temperatures cost more than a demo can spend (pass sample_temperatures to go lower).
        output_dir: parent of the report directory.
        wandb: offline (default), online (falls back to offline) or disabled.
        wandb_project: wandb project name.
        device: cpu, cuda or auto (GD runs and sampling).
        progress: progress bars.
    """
    from gdeq.bridge.experiments import run_demo
    from gdeq.bridge.report import write_report
    from gdeq.equilibrium import SamplerSettings

    t0 = time.perf_counter()
    grid = temperature_grid(t_min, t_max, n_temperatures)
    if sample_every < 1:
        raise ValueError(f"sample_every: must be ≥ 1, got {sample_every}")
    level_temperatures = {}
    for level, every in (("cavity", cavity_every), ("condensate", condensate_every)):
        if every < 1:
            raise ValueError(f"{level}_every: must be ≥ 1, got {every}")
        if level in levels and every > 1:
            level_temperatures[level] = sorted({*grid[::every], grid[-1]})
    level_temperatures = level_temperatures or None
    if not sample_min_temperature > 0:
        raise ValueError(f"sample_min_temperature: must be > 0, got {sample_min_temperature}")
    if sample_temperatures is None:
        sample_temperatures = sorted(t for t in {*grid[::sample_every], grid[-1]} if t >= sample_min_temperature)
    if device == "auto":  # the sampler takes a concrete device
        import torch

        device_sampler = "cuda" if torch.cuda.is_available() else None
    else:
        device_sampler = None if device == "cpu" else device
    settings = SamplerSettings(replicas=sample_replicas, max_trajectories=sample_max_trajectories,
                               max_seconds=sample_max_seconds, seed=data.seed, device=device_sampler)
    settings.check()  # one clear error before any work
    mode = wandb_mode(wandb)
    out, results, paths = run_demo(
        name, dataset=data.dataset, classes=data.classes, n_train=data.n_train, n_test=data.n_test, widths=widths, steps=steps,
        replicas=replicas, activation=activation, levels=levels, temperatures=grid, lr=lr, output_dir=output_dir,
        data_dir=data.data_dir, wandb=mode if not sample_temperatures else "disabled", wandb_project=wandb_project,
        device=device, seed=data.seed, progress=progress, level_temperatures=level_temperatures,
    )
    flagged: list[str] = []
    if sample_temperatures:
        k = int(np.argmin(widths))
        points, curve, seconds = sampled_points(data.load(), results[k], sample_temperatures, settings, activation)
        results[k] = dataclasses.replace(results[k], samples=points, seconds={**results[k].seconds, "sampling": seconds})
        config = json.loads((out / "metrics.json").read_text())["config"]
        config.update(sample_temperatures=[float(t) for t in sample_temperatures], sample_width=int(widths[k]),
                      sampler=dict(replicas=sample_replicas, max_trajectories=sample_max_trajectories,
                                   max_seconds=sample_max_seconds, min_temperature=sample_min_temperature,
                                   adaptive=True))
        paths = write_report(out, results, config=config, wandb_mode=mode, wandb_project=wandb_project,
                             seconds_so_far=time.perf_counter() - t0)
        flagged = _flag_unconverged(curve, Path(paths["report"]))
    for res in results:
        print_comparison(res)
    for line in flagged:
        print(line)
    seconds = time.perf_counter() - t0
    print(f"demo finished in {seconds:.0f} s; report: {paths['report']}")
    print(json.dumps({k: v for k, v in paths.items() if not k.startswith(("step_", "T_", "weights_"))}, indent=2))
    return dict(paths, seconds=seconds)


def sampled_points(task, res, temperatures, settings, activation: str):
    """The ``sampled`` level at the width of ``res`` on the task, as the report's sampled points — the
    CONVERGED temperatures only (a too-short run must never look like a result). Returns (points, the
    full sampled curve, seconds)."""
    from gdeq.bridge.experiments import SampledPoint, theory_curves

    t0 = time.perf_counter()
    curve = theory_curves(task, width=res.width, activation=activation, temperatures=temperatures,
                          levels=["sampled"], sampler=settings)["sampled"]
    seconds = time.perf_counter() - t0
    fields = {"mean_predictor_train_error": ("train_error", None), "readout_second_moment": ("readout_second_moment", None),
              "centroid_distance": ("centroid_distance", None), "centroid_shift": ("centroid_shift", None),
              "unit_centroid_distance": ("unit_centroid_distance", None), "test_bias2": ("test_bias2", None),
              "test_error": ("test_error", None)}
    for c in range(np.shape(curve.class_radius)[1]):
        fields[f"class_radius_{c}"] = ("class_radius", c)
        fields[f"unit_class_radius_{c}"] = ("unit_class_radius", c)
    points = []
    for i, T in enumerate(np.asarray(curve.temperature)):
        if not curve.converged[i]:
            continue
        values = {}
        for key, (fld, col) in fields.items():
            v, se = np.asarray(getattr(curve, fld)), np.asarray(curve.sem(fld))
            v, se = (v[i], se[i]) if col is None else (v[i, col], se[i, col])
            if np.isfinite(v):
                values[key] = (float(v), float(se))
        points.append(SampledPoint(float(T), res.width, values, settings.replicas, settings.method, seconds))
    return points, curve, seconds


def _flag_unconverged(curve, report: Path) -> list[str]:
    """Per-temperature diagnostics appended to report.md; lines naming the unconverged temperatures."""
    rows = ["", f"## Sampled level, N1 = {int(curve.width)}: diagnostics per temperature", "",
            "Only converged temperatures are shown as results (squares); the others are NOT results.", "",
            "| T | converged | max split-R̂ | min ESS (bulk, tail) | acceptance | burn-in | draws per chain |",
            "|---|---|---|---|---|---|---|"]
    for d in curve.diagnostics:
        ess = min(min(d.ess_bulk.values()), min(d.ess_tail.values()))
        rows.append(f"| {d.temperature:.3g} | {'yes' if d.converged else '**NO**'} | {max(d.rhat.values()):.3f} | "
                    f"{ess:.0f} | {d.acceptance:.2f} | {d.burn_in} | {d.n_draws} |")
    with report.open("a") as fh:
        fh.write("\n".join(rows) + "\n")
    bad = [d.temperature for d in curve.diagnostics if not d.converged]
    n = len(curve.diagnostics)
    line = f"sampled level (N1 = {int(curve.width)}): {n - len(bad)}/{n} temperatures converged"
    if bad:
        line += "; NOT CONVERGED (not shown as results): T = " + ", ".join(f"{t:.3g}" for t in bad)
    return [line]
