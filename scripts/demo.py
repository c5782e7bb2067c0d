"""`gdeq demo`: GD vs equilibrium end to end on the embedded MNIST, with a report in runs/<name>/."""

from __future__ import annotations

import json
import time

from gdeq.cli.common import DataOptions, print_comparison, temperature_grid, wandb_mode


def demo(
    name: str = "demo",
    data: DataOptions = DataOptions(),  # noqa: B008 - frozen: a safe default
    widths: list[int] = [20, 400],  # noqa: B006
    steps: list[int] = [2000, 800],  # noqa: B006
    replicas: list[int] = [8, 4],  # noqa: B006
    activation: str = "erf",
    lr: float | None = None,
    levels: list[str] = ["nngp", "gaussian"],  # noqa: B006
    t_min: float = 1e-4,
    t_max: float = 100.0,
    n_temperatures: int = 49,
    sample_temperatures: list[float] = [0.03, 0.3, 3.0],  # noqa: B006
    sample_replicas: int = 8,
    sample_burn_in: float = 3.0,
    sample_time: float = 5.0,
    output_dir: str = "runs",
    wandb: str = "offline",
    wandb_project: str = "gdeq",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """GD runs at a narrow and a wide width, equilibrium curves, the time→temperature bridge, a report.

    Writes runs/<name>/: report.md, PNG plots, metrics.csv, curves.csv, summary.csv, metrics.json and a
    wandb run (offline unless --wandb online). Prints, per width and measure, whether each side is
    non-monotonic and where.

    Args:
        name: report directory name under output_dir.
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed,
            --data.data_dir); the default MNIST 3 vs 5 uses the embedded subset and works offline.
        widths: hidden widths N1 (α = P/N1 matters for the signatures).
        steps: GD steps per width (one value for all, or one per width).
        replicas: replicas per width (≥ 3; one value or one per width).
        activation: erf, relu, tanh or identity.
        lr: GD learning rate for ½Σ(y − f)² (default 1/λ_max of the tangent kernel at init).
        levels: theory levels (nngp, gaussian, single_neuron).
        t_min: lowest temperature of the theory grid.
        t_max: highest temperature of the theory grid.
        n_temperatures: number of log-spaced temperatures.
        sample_temperatures: temperatures at which the narrowest width's posterior is also sampled (HMC, the ground truth; [] to skip).
        sample_replicas: chains per sampled temperature.
        sample_burn_in: sampler burn-in, in time units of docs/conventions.md §6.
        sample_time: sampler measurement time, in the same units.
        output_dir: parent of the report directory.
        wandb: offline (default), online (falls back to offline) or disabled.
        wandb_project: wandb project name.
        device: cpu, cuda or auto (GD runs and sampling).
        progress: progress bars.
    """
    from gdeq.bridge.experiments import run_demo

    t0 = time.perf_counter()
    out, results, paths = run_demo(
        name, dataset=data.dataset, classes=data.classes, n_train=data.n_train, n_test=data.n_test, widths=widths, steps=steps,
        replicas=replicas, activation=activation, levels=levels, temperatures=temperature_grid(t_min, t_max, n_temperatures),
        sample_temperatures=sample_temperatures, sample_replicas=sample_replicas,
        sample_kwargs=dict(burn_in=sample_burn_in, sampling_time=sample_time), lr=lr, output_dir=output_dir,
        data_dir=data.data_dir, wandb=wandb_mode(wandb), wandb_project=wandb_project, device=device, seed=data.seed,
        progress=progress,
    )
    for res in results:
        print_comparison(res)
    seconds = time.perf_counter() - t0
    print(f"demo finished in {seconds:.0f} s; report: {paths['report']}")
    print(json.dumps({k: v for k, v in paths.items() if not k.startswith(("step_", "T_", "weights_"))}, indent=2))
    return dict(paths, seconds=seconds)
