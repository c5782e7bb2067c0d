"""Pipelines behind the ``gdeq`` commands: one width end to end (GD runs, theory curves per level,
sampled points, the comparison), the demo, the resumable sweep and the validation table.

Library functions with plain arguments; ``scripts/`` only parses options and calls them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gdeq.gd_dynamics.trajectory import jsonable
from gdeq.geometry import activation as activation_fn
from gdeq.geometry import activation_derivative, mean_se

from .compare import Comparison, Turning, compare, infinite_width_centroid, replica_turning_steps, turning_point
from .identity import field_of as _get
from .identity import theory_request
from .maps import interpolate_curve
from .report import write_csv, write_report

__all__ = [
    "SampledPoint",
    "WidthResult",
    "default_learning_rate",
    "tangent_learning_rate",
    "sample_points",
    "theory_curves",
    "run_width",
    "run_demo",
    "cell_id",
    "cell_model",
    "parse_architecture",
    "sweep_cell",
    "run_sweep",
    "sweep_status",
    "SweepStatus",
    "make_executor",
    "sweep_markdown",
    "sweep_figures",
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


def theory_curves(task: Any, *, width: int | Sequence[int], activation: str = "erf", prior_w: float = 1.0,
                  prior_v: float | Sequence[float] = 1.0, temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                  levels: Sequence[str] = ("nngp", "gaussian"), sampler: Any = None, architecture: str = "fc",
                  patch_size: int | None = None, image_shape: Sequence[int] | None = None,
                  level_temperatures: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """``equilibrium.temperature_curve`` for each level, on the task's train (and test) set.

    ``level_temperatures``: a level -> temperatures override (an expensive level on a thinner grid; each
    curve carries its own temperatures and the bridge compares each level on its own grid).

    ``width=[N1, ..., NL]`` is the deep FC theory, ``architecture="cnn"`` (with ``patch_size`` and
    ``image_shape``) the CNN's; both have the saddle-point level ``gaussian`` only.

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
            task.x_train, task.y_train, np.asarray((level_temperatures or {}).get(lv, temperatures), dtype=np.float64),
            width=width,
            activation=activation, prior_w=prior_w, prior_v=prior_v, x_test=task.x_test, y_test=task.y_test, level=lv,
            **({"sampler": sampler} if lv == "sampled" else {}),
            **(dict(architecture="cnn", patch_size=patch_size, image_shape=tuple(image_shape or ()) or None)
               if architecture == "cnn" else {}),
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
              wandb: str | None = None, device: str = "cpu", seed: int = 0, progress: bool = True,
              level_temperatures: Mapping[str, Sequence[float]] | None = None) -> WidthResult:
    """One width end to end: train R replicas, compute the theory curves, sample, compare."""
    from gdeq.gd_dynamics import train

    if lr is None:
        lr = default_learning_rate(task.x_train, activation=activation, prior_w=prior_w, prior_v=prior_v, seed=seed)
        if optimizer == "langevin" and temperature:
            lr = 0.1 * lr  # Langevin wants a smaller step than GD's stability limit (step-size bias)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    curves = theory_curves(task, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                           temperatures=temperatures, levels=levels,
                           level_temperatures=level_temperatures)  # cheap, and fails early on bad input
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
             progress: bool = True, level_temperatures: Mapping[str, Sequence[float]] | None = None,
             ) -> tuple[Path, list[WidthResult], dict]:
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
            level_temperatures=level_temperatures,
        ))
    config = dict(name=name, dataset=dataset, classes=list(classes), n_train=n_train, n_test=n_test, widths=widths,
                  steps=steps, replicas=replicas, activation=activation, levels=list(levels),
                  temperature_range=[float(min(temperatures)), float(max(temperatures))],
                  n_temperatures=len(temperatures), sample_temperatures=list(sample_temperatures),
                  sample_width=sample_width, seed=seed, task=task.metadata(),
                  level_temperatures={lv: [float(t) for t in ts] for lv, ts in (level_temperatures or {}).items()},
                  lr={r.width: r.trajectory.lr for r in results})
    paths = write_report(out_dir, results, config=config, wandb_mode=wandb, wandb_project=wandb_project,
                         seconds_so_far=time.perf_counter() - t_start)
    return out_dir, results, paths


# ------------------------------------------------------------------------------------------------
# sweep: one result file per finished cell, so an interrupted sweep resumes where it stopped
# ------------------------------------------------------------------------------------------------
SWEEP_KEYS = ("architecture", "width", "activation", "dataset", "classes")

#: the per-cell measures that get a figure across architectures (row key -> axis label)
SWEEP_FIGURES: dict[str, str] = {
    "inversion_step": "GD inversion step t* (unit-sphere radius of class 0 dips; mean ± s.e. over turning replicas)",
    "inversion_relative_excursion": "size of the GD inversion (relative depth of the replica-mean dip)",
    "replicas_turning_fraction": "fraction of replicas whose own radius dips",
    "centroid_peak_step": "GD step where the unit-sphere centroid distance peaks (segregation, then re-entangling)",
    "T_eff_at_inversion": "T_eff(t*) on the theory curve",
    "theory_peak_T": "equilibrium T* (peak of the centroid distance)",
    "final_test_error": "GD test error at the last step (mean over replicas)",
}


def parse_architecture(name: str) -> tuple[str, int]:
    """A sweep architecture name -> (architecture, hidden layers): ``fc`` or ``fc1`` one hidden layer,
    ``fcL`` L hidden layers of the cell's width each (deep FC), ``cnn`` the one-hidden-layer CNN on
    non-overlapping patches (the model of ``equilibrium.conv``; the cell's width is its channel count)."""
    n = str(name).strip().lower()
    if n == "cnn":
        return "cnn", 1
    m = re.fullmatch(r"fc(\d*)", n)
    if m and (not m.group(1) or int(m.group(1)) >= 1):
        return "fc", int(m.group(1) or 1)
    raise ValueError(f"architectures: each must be 'fc', 'fcL' (L ≥ 1 hidden layers, e.g. 'fc2') or 'cnn', got {name!r}")


def expand_grid(architectures: Sequence[str], widths: Sequence[int], activations: Sequence[str],
                datasets: Sequence[str], class_pairs: Sequence[Sequence]) -> list[dict]:
    """The Cartesian product of the sweep axes, one dict per cell (architecture names, and that each
    architecture's theory has each activation, checked first: no cell trains without its theory)."""
    from gdeq.equilibrium import ACTIVATIONS
    from gdeq.equilibrium.conv import CONV_ACTIVATIONS
    from gdeq.equilibrium.deep import DEEP_ACTIVATIONS

    for a in architectures:
        kind, depth = parse_architecture(a)
        allowed = CONV_ACTIVATIONS if kind == "cnn" else ACTIVATIONS if depth == 1 else DEEP_ACTIVATIONS
        bad = [act for act in activations if act not in allowed]
        if bad:
            raise ValueError(f"activations: the {a} theory has {list(allowed)}, got {bad}")
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1]
    if bad:
        raise ValueError(f"widths: must be positive integers, got {bad}")
    return [dict(architecture=a, width=int(w), activation=act, dataset=d, classes=list(c))
            for a in architectures for w in widths for act in activations for d in datasets for c in class_pairs]


def cell_id(cell: dict) -> str:
    """Stable file name of a cell: its axes in words plus a hash of the whole configuration."""
    digest = hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:10]
    cls = "-".join(str(c) for c in cell.get("classes", []))
    return f"{cell.get('architecture')}-{cell.get('activation')}-N{cell.get('width')}-{cell.get('dataset')}-{cls}-{digest}"


def cell_model(cell: dict, input_dim: int) -> dict:
    """The ``gd_dynamics.train`` model keywords of a cell: ``fcL`` gives ``width=[N]*L``; ``cnn`` gives
    ``kernel_size = stride = patch_size`` (the cell's ``patch_size``, default half the image side: 4
    patches), no padding, no pooling — the CNN the theory describes."""
    from gdeq.gd_dynamics.models import infer_image_shape

    kind, depth = parse_architecture(cell["architecture"])
    n = int(cell["width"])
    if kind == "fc":
        return dict(architecture="fc", width=n if depth == 1 else [n] * depth)
    shape = tuple(cell["image_shape"]) if cell.get("image_shape") else infer_image_shape(input_dim)
    m = int(cell.get("patch_size") or shape[1] // 2)
    return dict(architecture="cnn", width=n, kernel_size=m, stride=m, image_shape=shape)


def tangent_learning_rate(x_train: np.ndarray, *, activation: str, width: int | Sequence[int], prior_w: float = 1.0,
                          prior_v: float = 1.0, architecture: str = "fc", patch_size: int | None = None,
                          image_shape=None) -> float:
    """lr = 1/λ_max of the infinite-width tangent kernel Θ of the architecture (``equilibrium.tangent_kernels``;
    full-batch GD on ½Σ(y − f)² is stable for lr < 2/λ_max): one rule for every architecture of a sweep."""
    import torch

    from gdeq.equilibrium import tangent_kernels

    arch = dict(architecture="cnn", patch_size=patch_size, image_shape=image_shape) if architecture == "cnn" else {}
    k = tangent_kernels(x_train, activation=activation, prior_w=prior_w, prior_v=prior_v, width=width, **arch)
    return float(1.0 / torch.linalg.eigvalsh(k.ntk_train)[-1])


def _theory_turning(curve: Any, name: str) -> Turning:
    """Where a theory curve's measure turns, on its own temperature axis (refined in log T)."""
    T = np.asarray(curve.temperature, dtype=np.float64)
    v = np.asarray(_get(curve, name), dtype=np.float64)
    v = v[:, 0] if v.ndim == 2 else v
    order = np.argsort(T)
    return turning_point(T[order], v[order], refine=True, log_x=True)


def sweep_cell(cell: dict, *, output_dir: str | Path, progress: bool = False) -> dict:
    """Run one sweep cell (train, then the theory of the same architecture) and return its table row.

    GD inversion signatures, on the LAST hidden layer (the layer the theory's geometry describes): the
    unit-sphere radius of class 0 stops falling — ``inversion`` (the replica-mean curve's shape),
    ``inversion_step`` ± ``inversion_step_se`` (mean over replicas that dip on their own),
    ``inversion_excursion`` / ``inversion_relative_excursion`` / ``inversion_significance_se`` (its
    size), ``replicas_turning`` of ``replicas``; ``peak_distance`` (unit-sphere centroid distance) and
    its step; ``final_test_error``/``final_train_error``.

    Theory (``equilibrium.temperature_curve`` with the run's own architecture, from
    :func:`bridge.identity.theory_request`: ``width=N`` (fc1), ``width=[N]*L`` (fcL) or
    ``architecture="cnn"``), per level ``lv`` of ``cell["levels"]``: ``theory_peak_T[lv]`` (T* of the
    centroid distance, NaN unless a peak), ``theory_radius_T[lv]`` (T* of the class-0 unit-sphere radius,
    NaN unless a dip), ``T_eff_at_inversion[lv]``, ``T_eff_final[lv]``, ``theory_test_error_at_T_eff[lv]``
    and ``theory_converged[lv]``; the unsuffixed keys repeat the last level. Deep FC and CNN have one
    level, the saddle point (``gaussian``, recorded as ``renormalised``). The CNN theory's geometry is
    that of its renormalised kernel Σ_ij Q_ij K_ij/(λ1 Np), not of the hidden features' Gram.
    """
    from gdeq.gd_dynamics import load_task, train

    from .compare import run_measures
    from .identity import theory_request

    c = dict(cell)
    task = load_task(c["dataset"], c["classes"], c.get("n_train", 200), c.get("n_test", 200), c.get("seed", 0),
                     c.get("data_dir"))
    model = cell_model(c, task.input_dim)
    kind, depth = parse_architecture(c["architecture"])
    levels = tuple(c.get("levels", ("gaussian",))) if (kind, depth) == ("fc", 1) else ("gaussian",)
    arch = dict(architecture="cnn", patch_size=model["kernel_size"], image_shape=model["image_shape"]) \
        if kind == "cnn" else {}
    lr = c.get("lr") or tangent_learning_rate(task.x_train, activation=c["activation"], width=model["width"], **arch)
    t0 = time.perf_counter()
    traj = train(task, activation=c["activation"], lr=lr, steps=c.get("steps", 1000), replicas=c.get("replicas", 4),
                 seed=c.get("seed", 0), log_points=c.get("log_points", 50), output_dir=Path(output_dir) / "runs",
                 run_name=cell_id(c), wandb=None, progress_bar=progress, clustering_indices=False,
                 reduce_inputs=(kind, depth) == ("fc", 1) and task.n_train < task.input_dim,
                 probe_size=max(task.n_train, len(task.x_test)), **model)
    seconds_train = time.perf_counter() - t0
    steps = np.asarray(traj.step, dtype=float)
    row: dict[str, Any] = {k: c[k] for k in SWEEP_KEYS}
    row.update(hidden_layers=depth, lr=float(lr))
    if kind == "cnn":
        row.update(patch_size=model["kernel_size"], image_shape=list(model["image_shape"]))
    measures = run_measures(traj)  # geometry of the last hidden layer
    radius = measures["unit_class_radius_0"]
    R = radius.shape[1]
    t_rad = turning_point(steps, *mean_se(radius, axis=1))  # significance: replica s.e. of the mean curve
    rep = replica_turning_steps(steps, radius, "dip")
    rep = rep[np.isfinite(rep)]
    dip = t_rad.kind == "dip"
    nan = float("nan")
    row["inversion"] = t_rad.kind
    row["inversion_step"] = float(rep.mean()) if dip and len(rep) else nan
    row["inversion_step_se"] = float(mean_se(rep)[1]) if dip and len(rep) > 1 else nan
    # effect size and significance of the replica-mean dip (reports give both)
    row["inversion_excursion"] = t_rad.excursion if dip else nan
    row["inversion_relative_excursion"] = t_rad.relative_excursion if dip else nan
    row["inversion_significance_se"] = t_rad.significance if dip else nan
    row["replicas_turning"] = int(len(rep))
    row["replicas"] = int(R)
    row["replicas_turning_fraction"] = len(rep) / R
    dist = measures["unit_centroid_distance"].mean(1)
    row["peak_distance"] = float(np.nanmax(dist))
    row["peak_distance_step"] = float(steps[int(np.nanargmax(dist))])
    row["distance_shape"] = turning_point(steps, dist).kind
    row["centroid_peak_step"] = row["peak_distance_step"] if row["distance_shape"] == "peak" else nan
    row["final_test_error"] = float(np.asarray(traj.test_error)[-1].mean())
    row["final_train_error"] = float(np.asarray(traj.train_error)[-1].mean())
    t0 = time.perf_counter()
    request = theory_request(traj)  # the theory of exactly this model, or one clear refusal
    if request.get("architecture") == "cnn" and request.get("image_shape") is None:
        request["image_shape"] = model["image_shape"]
    temps = c.get("temperatures") or DEFAULT_TEMPERATURES
    curves = theory_curves(task, temperatures=temps, levels=levels, **request)
    cmp = compare(traj, curves)
    row["seconds_theory"] = time.perf_counter() - t0
    row["seconds_train"] = seconds_train
    for lv, curve in curves.items():
        m = cmp.maps[lv]
        peak, rad = _theory_turning(curve, "centroid_distance"), _theory_turning(curve, "unit_class_radius")
        t_final = float(m.temperature[m.ok][-1]) if m.ok.any() else nan
        values = {
            "theory_level": str(curve.level),
            "theory_shape": peak.kind,
            "theory_peak_T": peak.location if peak.kind == "peak" else nan,
            "theory_radius_shape": rad.kind,
            "theory_radius_T": rad.location if rad.kind == "dip" else nan,
            "T_eff_at_inversion": m.at_step(row["inversion_step"]) if np.isfinite(row["inversion_step"]) else nan,
            "T_eff_final": t_final,
            "theory_test_error_at_T_eff": float(interpolate_curve(curve.temperature, curve.test_error,
                                                                  np.array([t_final]))[0]) if np.isfinite(t_final) else nan,
            "theory_converged": bool(np.all(curve.converged)),
        }
        row.update({f"{k}[{lv}]": v for k, v in values.items()})
        row.update(values)  # the unsuffixed keys: the last level
    row["run_dir"] = traj.run_dir
    return row


def _cell_job(cell_fn: Callable[..., dict]) -> Callable[[dict, str, str], str]:
    """The function that runs one cell and writes its row atomically (temp file + rename).

    Built as a nested function so that cloudpickle sends it to a submitit job BY VALUE: the job process
    imports only what ``cell_fn`` itself needs (for ``sweep_cell``: the toolkit), nothing for the writing."""

    def job(cell: dict, path: str, output_dir: str) -> str:
        import json as _json
        import os as _os

        def plain(o):  # numpy scalars and arrays -> Python
            return o.tolist() if hasattr(o, "tolist") else str(o)

        row = dict(cell_fn(cell, output_dir=output_dir), cell_id=_os.path.basename(path)[:-5], config=cell)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            _json.dump(row, fh, indent=2, default=plain)
        _os.replace(tmp, path)  # an interruption never leaves a half-written row
        return path

    return job


#: submitit/SLURM job states in which a cell's job may still deliver: not resubmitted on a rerun
ACTIVE_JOB_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"})


@dataclass(frozen=True)
class SweepStatus:
    """What a sweep invocation found and did: ``rows`` of the finished cells (in grid order),
    ``submitted`` cell ids sent to the engine now, ``pending`` cell ids whose earlier jobs are still
    queued or running, ``failed`` cell id -> error of cells whose job ended without a row."""

    rows: list[dict]
    submitted: list[str]
    pending: list[str]
    failed: dict[str, str]

    @property
    def complete(self) -> bool:
        return not self.pending and not self.failed


def make_executor(folder: str | Path, *, cluster: str | None = None, timeout_min: int = 60, cpus_per_task: int = 1,
                  mem_gb: float = 4.0, slurm_partition: str | None = None, array_parallelism: int = 64,
                  slurm_kwargs: dict | None = None) -> Any:
    """A ``submitit.AutoExecutor`` (``cluster``: None = SLURM when ``sbatch`` is available, else local
    processes; or ``"slurm"``, ``"local"``, ``"debug"`` (in-process)) with one CPU job per cell."""
    import submitit

    if cluster not in (None, "slurm", "local", "debug"):
        raise ValueError(f"cluster: must be None (auto), 'slurm', 'local' or 'debug', got {cluster!r}")
    if timeout_min < 1 or cpus_per_task < 1 or mem_gb <= 0 or array_parallelism < 1:
        raise ValueError(f"timeout_min, cpus_per_task, array_parallelism: must be ≥ 1 and mem_gb > 0, got "
                         f"{timeout_min}, {cpus_per_task}, {array_parallelism}, {mem_gb}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = dict(timeout_min=int(timeout_min), cpus_per_task=int(cpus_per_task), mem_gb=float(mem_gb),
                                  slurm_array_parallelism=int(array_parallelism))
    if slurm_partition:
        params["slurm_partition"] = slurm_partition
    params.update({k if k.startswith("slurm_") else f"slurm_{k}": v for k, v in (slurm_kwargs or {}).items()})
    ex.update_parameters(**params)
    return ex


def run_sweep(cells: Sequence[dict], *, output_dir: str | Path, cell_fn: Callable[..., dict] = sweep_cell,
              progress: bool = True, on_cell: Callable[[dict], None] | None = None, executor: Any = None,
              wait: bool = True) -> list[dict]:
    """Run every cell not already done (``output_dir/cells/<cell_id>.json`` exists) and return the
    finished rows (grid order); :func:`sweep_status` says more (what was submitted, pending, failed).

    ``executor=None`` runs the cells one after the other in this process; a ``submitit`` executor
    (:func:`make_executor`) sends one job per missing cell as one job array. Either way a finished
    cell is written atomically, so an interruption never leaves a half-written result, and rerunning
    the same sweep skips the finished cells and assembles the table: ``output_dir/sweep.csv`` and
    ``sweep.json`` (the finished cells; the table is complete once every cell has finished).
    """
    return sweep_status(cells, output_dir=output_dir, cell_fn=cell_fn, progress=progress, on_cell=on_cell,
                        executor=executor, wait=wait).rows


def sweep_status(cells: Sequence[dict], *, output_dir: str | Path, cell_fn: Callable[..., dict] = sweep_cell,
                 progress: bool = True, on_cell: Callable[[dict], None] | None = None, executor: Any = None,
                 wait: bool = True) -> SweepStatus:
    """:func:`run_sweep`, returning a :class:`SweepStatus`.

    With an executor: cells whose recorded job (``output_dir/jobs/<cell_id>.json``) is still queued
    or running (:data:`ACTIVE_JOB_STATES`) are not submitted again; the others are submitted as one
    array; with ``wait`` the call waits for them (a job that dies — killed, out of time, an error —
    leaves its cell missing, reported in ``failed``, and the next run submits that cell alone).
    """
    from tqdm.auto import tqdm

    out = Path(output_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    cells = list(cells)
    path = {cell_id(c): out / "cells" / f"{cell_id(c)}.json" for c in cells}
    job = _cell_job(cell_fn)
    missing = [c for c in cells if not path[cell_id(c)].is_file()]
    submitted, pending, failed = [], [], {}
    if executor is None:
        for c in tqdm(missing, desc="sweep cells", disable=not progress):
            job(c, str(path[cell_id(c)]), str(out))
            submitted.append(cell_id(c))
            if on_cell is not None:
                on_cell(json.loads(path[cell_id(c)].read_text()))
    elif missing:
        jobs_dir = out / "jobs"
        jobs_dir.mkdir(exist_ok=True)
        todo = []
        for c in missing:
            state = _recorded_job_state(executor, jobs_dir / f"{cell_id(c)}.json")
            (pending if state in ACTIVE_JOB_STATES else todo).append(c)
        pending = [cell_id(c) for c in pending]
        if todo:
            jobs = executor.map_array(job, todo, [str(path[cell_id(c)]) for c in todo], [str(out)] * len(todo))
            for c, j in zip(todo, jobs):
                (jobs_dir / f"{cell_id(c)}.json").write_text(json.dumps(dict(job_id=str(j.job_id),
                                                                             folder=str(executor.folder))))
                submitted.append(cell_id(c))
            print(f"sweep: submitted {len(todo)} cell(s) as one job array ({type(executor).__name__}, "
                  f"logs in {executor.folder}); {len(pending)} still queued/running from an earlier run")
            if wait:
                for c, j in zip(tqdm(todo, desc="sweep jobs", disable=not progress), jobs):
                    error = _job_outcome(j, path[cell_id(c)])
                    if error:  # a dead job leaves its cell missing: reported, and resubmitted by the next run
                        failed[cell_id(c)] = error
                    elif on_cell is not None:
                        on_cell(json.loads(path[cell_id(c)].read_text()))
    rows = [json.loads(path[cell_id(c)].read_text()) for c in cells if path[cell_id(c)].is_file()]
    if rows:
        write_table(rows, out / "sweep")
    return SweepStatus(rows=rows, submitted=submitted, pending=pending, failed=failed)


def _job_outcome(job: Any, row: Path) -> str:
    """Wait for a submitit job; '' if its cell's row was written, else why not (the job's own error when
    it raised one, else its state and where its log is: a killed job writes neither row nor result)."""
    job.wait()
    if row.is_file():
        return ""
    if job.paths.result_pickle.exists():
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - the job's exception, as text
            return " ".join(str(err).split())[-500:]
    return f"job {job.job_id} ended in state {job.state} without a result; log: {job.paths.stdout}"


def _recorded_job_state(executor: Any, record: Path) -> str | None:
    """State of the job recorded for a cell (None without a record or when it cannot be read)."""
    if not record.is_file():
        return None
    try:
        info = json.loads(record.read_text())
        return str(executor.job_class(Path(info["folder"]), info["job_id"]).state).upper()
    except Exception:  # noqa: BLE001 - an unreadable record or state: resubmit rather than wait forever
        return None


def write_table(rows: list[dict], stem: Path) -> None:
    """``stem.csv`` (:func:`bridge.report.write_csv`) and ``stem.json`` of a list of flat dicts."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2, default=jsonable))
    write_csv(rows, stem.with_suffix(".csv"))


def _fmt(v: Any, se: Any = None) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, bool):
        v = float(v)
        if not np.isfinite(v):
            return "—"
        text = f"{v:.3g}"
        if se is not None and np.isfinite(float(se)):
            text += f" ± {float(se):.2g}"
        return text
    return str(v)


def sweep_markdown(rows: list[dict]) -> str:
    """One markdown table of a sweep: a row per cell, the GD inversion signatures, the theory's T*,
    T_eff at the inversion and the test errors (— where a side has no turning point)."""
    head = ["architecture", "N", "activation", "data", "GD inversion step t*", "size (rel.)", "replicas turning",
            "T_eff(t*)", "GD centroid-distance peak step", "theory T* (centroid peak)", "theory radius dip T*", "GD test error",
            "theory test error at T_eff(final)", "theory"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        data = f"{r.get('dataset')} {'v'.join(str(c) for c in r.get('classes', []))}"
        inv = _fmt(r.get("inversion_step"), r.get("inversion_step_se")) if r.get("inversion") == "dip" \
            else f"none ({r.get('inversion')})"
        theory = f"{r.get('theory_level')}" + ("" if r.get("theory_converged", True) else ", NOT converged")
        lines.append("| " + " | ".join([
            str(r.get("architecture")), str(r.get("width")), str(r.get("activation")), data, inv,
            _fmt(r.get("inversion_relative_excursion")), f"{r.get('replicas_turning')}/{r.get('replicas')}",
            _fmt(r.get("T_eff_at_inversion")),
            _fmt(r.get("peak_distance_step")) if r.get("distance_shape") == "peak" else f"none ({r.get('distance_shape')})",
            _fmt(r.get("theory_peak_T")) if r.get("theory_shape") == "peak" else f"none ({r.get('theory_shape')})",
            _fmt(r.get("theory_radius_T")) if r.get("theory_radius_shape") == "dip"
            else f"none ({r.get('theory_radius_shape')})",
            _fmt(r.get("final_test_error")), _fmt(r.get("theory_test_error_at_T_eff")), theory]) + " |")
    return "\n".join(lines) + "\n"


def sweep_figures(rows: list[dict], out_dir: str | Path, *, prefix: str = "sweep_") -> dict[str, Path]:
    """One PNG per measure of :data:`SWEEP_FIGURES`: the measure against the width, one line per
    architecture (and activation/dataset/class pair when those vary); cells without the measure (no
    turning point) are left out, so a line may have gaps. Returns measure -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vary = [k for k in ("activation", "dataset", "classes") if len({json.dumps(r.get(k)) for r in rows}) > 1]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = " ".join([str(r["architecture"])] + [str(r.get(k)) for k in vary])
        groups.setdefault(label, []).append(r)
    paths = {}
    for key, label in SWEEP_FIGURES.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, rs in sorted(groups.items()):
            rs = sorted(rs, key=lambda r: r["width"])
            x = np.array([r["width"] for r in rs], dtype=float)
            y = np.array([_float(_row_value(r, key)) for r in rs])
            err = np.array([_float(r.get("inversion_step_se")) for r in rs]) if key == "inversion_step" else None
            ok = np.isfinite(y)
            if not ok.any():
                ax.plot([], [], "o-", label=f"{name} (none)")
                continue
            ax.errorbar(x[ok], y[ok], yerr=None if err is None else np.nan_to_num(err[ok]), marker="o", capsize=3,
                        label=name)
        finite = [_float(_row_value(r, key)) for r in rows if np.isfinite(_float(_row_value(r, key)))]
        if finite:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.set_xticks(sorted({float(r["width"]) for r in rows}))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        if finite and min(finite) > 0 and key in ("inversion_step", "T_eff_at_inversion", "theory_peak_T",
                                                  "centroid_peak_step"):
            ax.set_yscale("log")
        if not finite:
            ax.text(0.5, 0.5, "no cell has this measure (no turning point)", ha="center", transform=ax.transAxes)
        ax.set_xlabel("width N (hidden units per layer; CNN: channels)")
        ax.set_ylabel(key)
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths[key] = out / f"{prefix}{key}.png"
        fig.savefig(paths[key], dpi=110)
        plt.close(fig)
    return paths


def _row_value(r: dict, key: str) -> Any:
    """A row's value, also for rows cached before ``centroid_peak_step`` was a column (derived the same way)."""
    if key == "centroid_peak_step" and key not in r:
        return r.get("peak_distance_step") if r.get("distance_shape") == "peak" else float("nan")
    return r.get(key)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


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
    of the s.e. (``z[level]``) and relative (``rel[level]``). The sampled reference is always the column
    ``sampled``; listing "sampled" among ``levels`` as well is refused (it would overwrite that column).
    """
    if "sampled" in levels:
        raise ValueError("levels: the sampled level is this table's reference column already; "
                         f"list theory levels only (e.g. 'nngp', 'gaussian', 'single_neuron', 'cavity'), got {list(levels)}")
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
    # a CNN the theory does not cover, a PyTorch-init or a mean-loss run is refused before any theory is computed
    request = theory_request(traj)
    task = task_from_metadata(traj.task, data_dir)
    if request.get("architecture") == "cnn" and request.get("image_shape") is None:
        from gdeq.gd_dynamics.models import infer_image_shape

        request["image_shape"] = infer_image_shape(task.input_dim)
    one_layer_fc = request.get("architecture", "fc") == "fc" and not isinstance(request["width"], list)
    if not one_layer_fc:  # the deep FC and CNN theories have one level, the saddle point
        if "gaussian" not in levels or sample_temperatures:
            raise ValueError(f"levels: the deep FC and CNN theories have the saddle-point level only (include "
                             f"gaussian; no sample_temperatures), got levels={list(levels)}, "
                             f"sample_temperatures={list(sample_temperatures)}")
        levels = ("gaussian",)
    width = request["width"]
    t0 = time.perf_counter()
    curves = theory_curves(task, temperatures=temperatures, levels=levels, **request)
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
