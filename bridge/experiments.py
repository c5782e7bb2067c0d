"""Pipelines behind the ``gdeq`` commands: one width end to end (GD runs, theory curves per level,
sampled points, the comparison), the demo, the resumable sweep and the validation table.

Library functions with plain arguments; ``scripts/`` only parses options and calls them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gdeq.gd_dynamics.trajectory import jsonable
from gdeq.geometry import activation as activation_fn
from gdeq.geometry import activation_derivative, mean_se

from .compare import Comparison, compare, infinite_width_centroid, replica_turning_steps, turning_point
from .identity import check_theory_model
from .identity import field_of as _get
from .identity import single_width
from .report import write_csv, write_report

__all__ = [
    "SampledPoint",
    "WidthResult",
    "default_learning_rate",
    "sample_points",
    "theory_curves",
    "run_width",
    "run_demo",
    "cell_id",
    "sweep_cell",
    "run_sweep",
    "expand_grid",
    "validation_table",
]

DEFAULT_TEMPERATURES = tuple(float(t) for t in np.logspace(-4, 2, 49))


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------
def default_learning_rate(x_train: np.ndarray, *, activation: str = "erf", prior_w: float = 1.0,
                          prior_v: float = 1.0, neurons: int = 1024, seed: int = 0) -> float:
    """lr = 1/λ_max of the network's tangent kernel at initialisation (sum loss ½Σ(y − f)²).

    Full-batch GD on the sum loss is stable for lr < 2/λ_max. The tangent kernel of
    f = Σ_i v_i σ(w_i·x/√N0)/√N1 is Θ = ΦΦᵀ/N1 + (σ'σ'ᵀ ⊙ v² ⊙ XXᵀ/N0)/N1, estimated here by
    Monte Carlo over ``neurons`` prior draws (its expectation does not depend on N1).
    """
    import torch

    sigma, sigma_prime = activation_fn(activation), activation_derivative(activation)  # unknown names raise
    x = torch.as_tensor(np.asarray(x_train), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    n0 = x.shape[1]
    W = torch.randn(neurons, n0, generator=g, dtype=torch.float64) / math.sqrt(prior_w)
    v2 = torch.randn(neurons, generator=g, dtype=torch.float64) ** 2 / prior_v
    H = x @ W.T / math.sqrt(n0)
    phi, dphi = sigma(H), sigma_prime(H)
    theta = phi @ phi.T / neurons + ((dphi * v2) @ dphi.T / neurons) * (x @ x.T / n0)
    return float(1.0 / torch.linalg.eigvalsh(theta)[-1])


def theory_curves(task: Any, *, width: int, activation: str = "erf", prior_w: float = 1.0, prior_v: float = 1.0,
                  temperatures: Sequence[float] = DEFAULT_TEMPERATURES, levels: Sequence[str] = ("nngp", "gaussian"),
                  sampler: Any = None) -> dict[str, Any]:
    """``equilibrium.temperature_curve`` for each level, on the task's train (and test) set.

    ``"sampled"`` is accepted like any level (the exact posterior at every temperature, with standard
    errors and diagnostics; ``sampler``: its ``equilibrium.SamplerSettings``) — sampling a long temperature
    grid is expensive, so pass a short ``temperatures`` list for it.
    """
    from gdeq import equilibrium

    available = [*equilibrium.LEVELS, "sampled"]
    unknown = [lv for lv in levels if lv not in available]
    if unknown:
        raise ValueError(f"levels: unknown {unknown}; available: {available}")
    return {
        lv: equilibrium.temperature_curve(
            task.x_train, task.y_train, np.asarray(temperatures, dtype=np.float64), width=width,
            activation=activation, prior_w=prior_w, prior_v=prior_v, x_test=task.x_test, y_test=task.y_test, level=lv,
            **({"sampler": sampler} if lv == "sampled" else {}),
        )
        for lv in levels
    }


@dataclass(frozen=True)
class SampledPoint:
    """Posterior averages from Langevin/HMC sampling at one temperature: measure -> (mean, s.e.)."""

    temperature: float
    width: int
    values: dict[str, tuple[float, float]]
    replicas: int
    method: str
    seconds: float


def _estimate(e: Any) -> tuple[float, float]:
    return float(np.asarray(e.mean).reshape(-1)[0]), float(np.asarray(e.se).reshape(-1)[0])


def sample_points(task: Any, *, width: int, temperatures: Sequence[float], activation: str = "erf",
                  prior_w: float = 1.0, prior_v: float = 1.0, replicas: int = 16, burn_in: float = 5.0,
                  sampling_time: float = 10.0, seed: int = 0, centroid_infinite_width: float | None = None,
                  progress: bool = True, **sampler_kwargs: Any) -> list[SampledPoint]:
    """The ground truth: ``equilibrium.sample_posterior`` at each temperature."""
    from gdeq.equilibrium.sampling import sample_posterior

    out = []
    for T in temperatures:
        t0 = time.perf_counter()
        s = sample_posterior(task.x_train, task.y_train, width=width, temperature=float(T), activation=activation,
                             prior_w=prior_w, prior_v=prior_v, x_test=task.x_test, y_test=task.y_test,
                             replicas=replicas, burn_in=burn_in, sampling_time=sampling_time, seed=seed,
                             progress=progress, **sampler_kwargs)
        values = {
            "mean_predictor_train_error": _estimate(s.train_error),
            "readout_second_moment": _estimate(s.readout_second_moment),
            "centroid_distance": _estimate(s.centroid_distance),
            "unit_centroid_distance": _estimate(s.unit_centroid_distance),
            # aᵀΩa/aᵀCa along the labels: the definition GD logs as weights/weight_moment_label
            "weight_moment_label": _estimate(s.weight_moment_label),
        }
        for c in range(np.size(s.class_radius.mean)):
            values[f"class_radius_{c}"] = (float(s.class_radius.mean[c]), float(s.class_radius.se[c]))
            values[f"unit_class_radius_{c}"] = (float(s.unit_class_radius.mean[c]), float(s.unit_class_radius.se[c]))
        if s.test_bias2 is not None:
            values["test_bias2"] = _estimate(s.test_bias2)
            values["test_error"] = _estimate(s.test_error)
        if centroid_infinite_width is not None:
            m, se = values["centroid_distance"]
            values["centroid_shift"] = (width * (m - centroid_infinite_width), width * se)
        out.append(SampledPoint(float(T), width, values, replicas, s.method, time.perf_counter() - t0))
    return out


@dataclass(frozen=True)
class WidthResult:
    """Everything the report needs for one width: the run, the curves, the sampled points, the comparison."""

    width: int
    trajectory: Any
    curves: dict[str, Any]
    comparison: Comparison
    samples: list[SampledPoint] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _lazy_for(traj: Any, task: Any) -> Any:
    """The lazy (NTK) baseline at the run's steps for a full-batch GD run with MSE loss, else None."""
    from .lazy import lazy_baseline, lazy_not_covered

    config = getattr(traj, "config", None) or {}
    if traj.optimizer != "gd" or config.get("loss", "mse") != "mse" or config.get("batch_size") is not None:
        return None
    if lazy_not_covered(traj):  # e.g. a CNN with overlapping patches: no kernel for it
        return None
    return lazy_baseline(traj, task.x_train, task.y_train, task.x_test, task.y_test)


def run_width(task: Any, *, width: int, activation: str = "erf", optimizer: str = "gd", lr: float | None = None,
              steps: int = 1000, replicas: int = 8, temperature: float | None = None, batch_size: int | None = None,
              prior_w: float = 1.0, prior_v: float = 1.0, levels: Sequence[str] = ("nngp", "gaussian"),
              temperatures: Sequence[float] = DEFAULT_TEMPERATURES, sample_temperatures: Sequence[float] = (),
              sample_replicas: int = 16, sample_kwargs: dict | None = None, observable: str = "train_error",
              log_points: int = 60, output_dir: str | Path = "runs", run_name: str | None = None,
              wandb: str | None = None, device: str = "cpu", seed: int = 0, progress: bool = True) -> WidthResult:
    """One width end to end: train R replicas, compute the theory curves, sample, compare."""
    from gdeq.gd_dynamics import train

    if lr is None:
        lr = default_learning_rate(task.x_train, activation=activation, prior_w=prior_w, prior_v=prior_v, seed=seed)
        if optimizer == "langevin" and temperature:
            lr = 0.1 * lr  # Langevin wants a smaller step than GD's stability limit (step-size bias)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    curves = theory_curves(task, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                           temperatures=temperatures, levels=levels)  # cheap, and fails early on bad input
    seconds["theory"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    traj = train(task, width=width, activation=activation, optimizer=optimizer, lr=lr, steps=steps,
                 replicas=replicas, temperature=temperature, batch_size=batch_size,
                 prior_precisions=(prior_w, prior_v), seed=seed, log_points=log_points, output_dir=output_dir,
                 run_name=run_name, wandb=wandb, device=device, progress_bar=progress, clustering_indices=False,
                 reduce_inputs=task.n_train < task.input_dim,
                 probe_size=max(task.n_train, len(task.x_test)))  # geometry on the full sets, as the theory
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    comparison = compare(traj, curves, observable=observable, lazy=_lazy_for(traj, task))
    seconds["compare"] = time.perf_counter() - t0
    samples: list[SampledPoint] = []
    if sample_temperatures:
        t0 = time.perf_counter()
        samples = sample_points(task, width=width, temperatures=sample_temperatures, activation=activation,
                                prior_w=prior_w, prior_v=prior_v, replicas=sample_replicas, seed=seed,
                                centroid_infinite_width=infinite_width_centroid(next(iter(curves.values()))),
                                progress=progress, **(sample_kwargs or {}))
        seconds["sampling"] = time.perf_counter() - t0
    return WidthResult(width, traj, curves, comparison, samples, seconds)


def run_demo(name: str = "demo", *, dataset: str = "mnist", classes: Sequence = (3, 5), n_train: int = 400,
             n_test: int = 400, widths: Sequence[int] = (20, 400), steps: Sequence[int] = (2000, 1000),
             replicas: Sequence[int] = (8, 4), activation: str = "erf", levels: Sequence[str] = ("nngp", "gaussian"),
             temperatures: Sequence[float] = DEFAULT_TEMPERATURES, sample_temperatures: Sequence[float] = (),
             sample_width: int | None = None, sample_replicas: int = 16, sample_kwargs: dict | None = None,
             lr: float | None = None, output_dir: str | Path = "runs", data_dir: str | None = None,
             wandb: str = "offline", wandb_project: str = "gdeq", device: str = "cpu", seed: int = 0,
             progress: bool = True) -> tuple[Path, list[WidthResult], dict]:
    """The ``gdeq demo`` pipeline: GD at each width, theory curves, sampled points, bridge, report.

    ``steps`` and ``replicas`` are given per width (a single value applies to all). Sampling runs
    at ``sample_temperatures`` for ``sample_width`` (default: the narrowest width) only.
    Returns (report directory, per-width results, paths of the written files).
    """
    from gdeq.gd_dynamics import load_task

    widths = list(widths)
    steps = list(steps) if isinstance(steps, (list, tuple)) else [steps]
    replicas = list(replicas) if isinstance(replicas, (list, tuple)) else [replicas]
    if len(steps) == 1:
        steps = steps * len(widths)
    if len(replicas) == 1:
        replicas = replicas * len(widths)
    if len(steps) != len(widths) or len(replicas) != len(widths):
        raise ValueError(f"steps/replicas: give one value or one per width ({len(widths)} widths)")
    if any(r < 3 for r in replicas):
        raise ValueError(f"replicas: the demo needs ≥ 3 replicas per width for error bars, got {replicas}")
    if wandb not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb: must be 'offline', 'online' or 'disabled', got {wandb!r}")
    t_start = time.perf_counter()
    out_dir = Path(output_dir) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    task = load_task(dataset, classes, n_train, n_test, seed, data_dir)
    sample_width = sample_width or min(widths)
    results = []
    for w, s, r in zip(widths, steps, replicas):
        results.append(run_width(
            task, width=w, activation=activation, lr=lr, steps=s, replicas=r, levels=levels,
            temperatures=temperatures, sample_temperatures=sample_temperatures if w == sample_width else (),
            sample_replicas=sample_replicas, sample_kwargs=sample_kwargs, output_dir=out_dir / "runs",
            run_name=f"gd-N{w}", wandb=None, device=device, seed=seed, progress=progress,
        ))
    config = dict(name=name, dataset=dataset, classes=list(classes), n_train=n_train, n_test=n_test, widths=widths,
                  steps=steps, replicas=replicas, activation=activation, levels=list(levels),
                  temperature_range=[float(min(temperatures)), float(max(temperatures))],
                  n_temperatures=len(temperatures), sample_temperatures=list(sample_temperatures),
                  sample_width=sample_width, seed=seed, task=task.metadata(),
                  lr={r.width: r.trajectory.lr for r in results})
    paths = write_report(out_dir, results, config=config, wandb_mode=wandb, wandb_project=wandb_project,
                         seconds_so_far=time.perf_counter() - t_start)
    return out_dir, results, paths


# ------------------------------------------------------------------------------------------------
# sweep: one result file per finished cell, so an interrupted sweep resumes where it stopped
# ------------------------------------------------------------------------------------------------
SWEEP_KEYS = ("architecture", "width", "activation", "dataset", "classes")


def expand_grid(architectures: Sequence[str], widths: Sequence[int], activations: Sequence[str],
                datasets: Sequence[str], class_pairs: Sequence[Sequence]) -> list[dict]:
    """The Cartesian product of the sweep axes, one dict per cell."""
    return [dict(architecture=a, width=int(w), activation=act, dataset=d, classes=list(c))
            for a in architectures for w in widths for act in activations for d in datasets for c in class_pairs]


def cell_id(cell: dict) -> str:
    """Stable file name of a cell: its axes in words plus a hash of the whole configuration."""
    digest = hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:10]
    cls = "-".join(str(c) for c in cell.get("classes", []))
    return f"{cell.get('architecture')}-{cell.get('activation')}-N{cell.get('width')}-{cell.get('dataset')}-{cls}-{digest}"


def sweep_cell(cell: dict, *, output_dir: str | Path, progress: bool = False) -> dict:
    """Run one sweep cell and return its table row.

    Row: inversion step (the unit-sphere radius of the first class stops falling, mean ± s.e. over
    replicas with a turning point), peak centroid distance (unit sphere) and its step, final test
    error, T_eff at the inversion, and the theory's peak temperature T* of the centroid distance (for
    one-hidden-layer FC networks; NaN with a note for other architectures).
    """
    from gdeq.gd_dynamics import load_task, train

    c = dict(cell)
    task = load_task(c["dataset"], c["classes"], c.get("n_train", 200), c.get("n_test", 200), c.get("seed", 0),
                     c.get("data_dir"))
    fc = c["architecture"] == "fc"
    levels = tuple(c.get("levels", ("gaussian",)))
    curves = theory_curves(task, width=c["width"], activation=c["activation"], levels=levels) if fc else {}
    lr = c.get("lr") or default_learning_rate(task.x_train, activation=c["activation"], seed=c.get("seed", 0))
    traj = train(task, width=c["width"], activation=c["activation"], architecture=c["architecture"], lr=lr,
                 steps=c.get("steps", 1000), replicas=c.get("replicas", 4), seed=c.get("seed", 0),
                 log_points=c.get("log_points", 50), output_dir=Path(output_dir) / "runs", run_name=cell_id(c),
                 wandb=None, progress_bar=progress, clustering_indices=False,
                 reduce_inputs=fc and task.n_train < task.input_dim, probe_size=max(task.n_train, len(task.x_test)))
    steps = np.asarray(traj.step, dtype=float)
    row: dict[str, Any] = {k: c[k] for k in SWEEP_KEYS}
    row["lr"] = float(lr)
    radius = np.asarray(traj.unit_class_radius)[:, :, 0]
    t_rad = turning_point(steps, *mean_se(radius, axis=1))  # significance: replica s.e. of the mean curve
    rep = replica_turning_steps(steps, radius, "dip")
    rep = rep[np.isfinite(rep)]
    dip = t_rad.kind == "dip"
    row["inversion"] = t_rad.kind
    row["inversion_step"] = float(rep.mean()) if dip and len(rep) else float("nan")
    row["inversion_step_se"] = float(mean_se(rep)[1]) if dip and len(rep) > 1 else float("nan")
    # effect size and significance of the replica-mean dip (reports give both)
    row["inversion_excursion"] = t_rad.excursion if dip else float("nan")
    row["inversion_relative_excursion"] = t_rad.relative_excursion if dip else float("nan")
    row["inversion_significance_se"] = t_rad.significance if dip else float("nan")
    dist = np.asarray(traj.unit_centroid_distance).mean(1)
    row["peak_distance"] = float(np.nanmax(dist))
    row["peak_distance_step"] = float(steps[int(np.nanargmax(dist))])
    row["distance_shape"] = turning_point(steps, dist).kind
    row["final_test_error"] = float(np.asarray(traj.test_error)[-1].mean())
    row["final_train_error"] = float(np.asarray(traj.train_error)[-1].mean())
    if fc:
        cmp = compare(traj, curves)
        lv = levels[-1]
        m = cmp.maps[lv]
        row["T_eff_at_inversion"] = m.at_step(row["inversion_step"]) if np.isfinite(row["inversion_step"]) else float("nan")
        row["T_eff_final"] = float(m.temperature[m.ok][-1]) if m.ok.any() else float("nan")
        tt = cmp.measures["centroid_distance"].theory_turning.get(lv) if "centroid_distance" in cmp.measures else None
        row["theory_level"] = lv
        row["theory_shape"] = tt.kind if tt else "absent"
        row["theory_peak_T"] = tt.location if tt is not None and tt.kind == "peak" else float("nan")
    else:
        row.update(T_eff_at_inversion=float("nan"), T_eff_final=float("nan"), theory_level="",
                   theory_shape="no theory for this architecture", theory_peak_T=float("nan"))
    row["run_dir"] = traj.run_dir
    return row


def run_sweep(cells: Sequence[dict], *, output_dir: str | Path, cell_fn: Callable[..., dict] = sweep_cell,
              progress: bool = True, on_cell: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every cell not already done (``output_dir/cells/<cell_id>.json`` exists) and return all rows.

    A finished cell is written atomically (temp file + rename), so an interruption never leaves a
    half-written result; rerunning the same sweep skips the finished cells. The combined table is
    written to ``output_dir/sweep.csv`` and ``sweep.json``.
    """
    from tqdm.auto import tqdm

    out = Path(output_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    rows = []
    for cell in tqdm(list(cells), desc="sweep cells", disable=not progress):
        path = out / "cells" / f"{cell_id(cell)}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        row = dict(cell_fn(cell, output_dir=out), cell_id=cell_id(cell), config=cell)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=2, default=jsonable))
        tmp.replace(path)
        rows.append(json.loads(path.read_text()))
        if on_cell is not None:
            on_cell(row)
    write_table(rows, out / "sweep")
    return rows


def write_table(rows: list[dict], stem: Path) -> None:
    """``stem.csv`` (:func:`bridge.report.write_csv`) and ``stem.json`` of a list of flat dicts."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2, default=jsonable))
    write_csv(rows, stem.with_suffix(".csv"))


# ------------------------------------------------------------------------------------------------
# theory versus sampling
# ------------------------------------------------------------------------------------------------
VALIDATION_MEASURES = ("mean_predictor_train_error", "test_bias2", "readout_second_moment", "centroid_distance",
                       "centroid_shift")
_CURVE_FIELD = {"mean_predictor_train_error": "train_error"}


def validation_table(task: Any, *, widths: Sequence[int], temperatures: Sequence[float], activation: str = "erf",
                     levels: Sequence[str] = ("nngp", "gaussian"), prior_w: float = 1.0, prior_v: float = 1.0,
                     replicas: int = 16, burn_in: float = 5.0, sampling_time: float = 10.0, seed: int = 0,
                     progress: bool = True, sampler_kwargs: dict | None = None) -> list[dict]:
    """Each theory level against the sampled value ± s.e., per width, temperature and measure.

    Row: width, T, measure, sampled mean, s.e., then per level its value and its deviation in units
    of the s.e. (``z[level]``) and relative (``rel[level]``).
    """
    rows = []
    for width in widths:
        curves = theory_curves(task, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                               temperatures=temperatures, levels=levels)
        d_inf = infinite_width_centroid(next(iter(curves.values())))
        points = sample_points(task, width=width, temperatures=temperatures, activation=activation, prior_w=prior_w,
                               prior_v=prior_v, replicas=replicas, burn_in=burn_in, sampling_time=sampling_time,
                               seed=seed, centroid_infinite_width=d_inf, progress=progress, **(sampler_kwargs or {}))
        for p in points:
            for measure in VALIDATION_MEASURES:
                if measure not in p.values:
                    continue
                mean, se = p.values[measure]
                row = dict(width=width, temperature=p.temperature, measure=measure, sampled=mean, se=se,
                           replicas=p.replicas, method=p.method, seconds=round(p.seconds, 2))
                for lv, c in curves.items():
                    field_name = _CURVE_FIELD.get(measure, measure)
                    values = _get(c, field_name)
                    if values is None:
                        continue
                    k = int(np.argmin(np.abs(np.log(np.asarray(c.temperature)) - math.log(p.temperature))))
                    th = float(np.asarray(values)[k])
                    row[lv] = th
                    row[f"z[{lv}]"] = (th - mean) / se if se > 0 else float("nan")
                    row[f"rel[{lv}]"] = th / mean - 1 if mean != 0 else float("nan")
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# compare a saved run
# ------------------------------------------------------------------------------------------------
def task_from_metadata(meta: dict, data_dir: str | None = None) -> Any:
    """Reload the task a run was trained on from ``Trajectory.task`` (its ``Task.metadata()``)."""
    from gdeq.gd_dynamics import Preprocessing, load_task

    classes = [tuple(c) if isinstance(c, list) else c for c in meta["classes"]]
    return load_task(meta["dataset"], classes, int(meta["n_train"]), int(meta["n_test"]), int(meta["seed"]), data_dir,
                     selection=meta.get("selection", "balanced"),
                     preprocessing=Preprocessing(**meta["preprocessing"]) if meta.get("preprocessing") else None)


def compare_saved_run(run: str | Path, *, levels: Sequence[str] = ("nngp", "gaussian"),
                      temperatures: Sequence[float] = DEFAULT_TEMPERATURES, observable: str = "train_error",
                      sample_temperatures: Sequence[float] = (), sample_replicas: int = 16,
                      data_dir: str | None = None, output_dir: str | Path | None = None, wandb: str = "offline",
                      progress: bool = True) -> tuple[Path, WidthResult, dict]:
    """Compare a saved ``Trajectory`` (``run_dir/trajectory.npz`` or the run dir) with theory curves
    computed on the same data, width, activation and priors, and write a report next to it."""
    from gdeq.gd_dynamics import Trajectory

    path = Path(run)
    if path.is_dir():
        path = path / "trajectory.npz"
    if not path.with_suffix(".npz").is_file():
        raise ValueError(f"run: no trajectory at {path} (expected a run directory or trajectory.npz)")
    traj = Trajectory.load(path)
    check_theory_model(traj)  # a CNN, a PyTorch-init or a mean-loss run is refused before any theory is computed
    task = task_from_metadata(traj.task, data_dir)
    width = single_width(traj.width, "run")
    t0 = time.perf_counter()
    curves = theory_curves(task, width=width, activation=traj.activation, prior_w=traj.prior_w, prior_v=traj.prior_v,
                           temperatures=temperatures, levels=levels)
    # raises on any mismatch of data, width, priors
    cmp = compare(traj, curves, observable=observable, lazy=_lazy_for(traj, task))
    seconds = {"theory+compare": time.perf_counter() - t0}
    samples = []
    if sample_temperatures:
        t0 = time.perf_counter()
        samples = sample_points(task, width=width, temperatures=sample_temperatures, activation=traj.activation,
                                prior_w=traj.prior_w, prior_v=traj.prior_v, replicas=sample_replicas,
                                centroid_infinite_width=infinite_width_centroid(next(iter(curves.values()))),
                                progress=progress)
        seconds["sampling"] = time.perf_counter() - t0
    res = WidthResult(width, traj, curves, cmp, samples, seconds)
    out = Path(output_dir) if output_dir else path.parent / "bridge"
    config = dict(name=f"compare-{path.parent.name}", run=str(path), levels=list(levels), activation=traj.activation,
                  observable=observable, task=traj.task, optimizer=traj.optimizer, temperature=traj.temperature)
    paths = write_report(out, [res], config=config, wandb_mode=wandb)
    return out, res, paths
