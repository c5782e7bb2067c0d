"""`gdeq compare`: a saved run against equilibrium curves on the same setting, with a report."""

from __future__ import annotations

from gdeq.cli.common import print_comparison, temperature_grid, wandb_mode


def compare(
    run: str,
    levels: list[str] = ["nngp", "gaussian"],  # noqa: B006
    observable: str = "train_error",
    t_min: float = 1e-4,
    t_max: float = 100.0,
    n_temperatures: int = 49,
    sample_temperatures: list[float] = [],  # noqa: B006
    sample_replicas: int = 16,
    data_dir: str | None = None,
    output_dir: str | None = None,
    wandb: str = "offline",
) -> dict:
    """Map a run's training time to T_eff(t), compare every measure at matched temperatures, write a report.

    The data, width, activation and priors are read from the run; a curve for a different setting is
    rejected. For a Langevin run the map must give back the run's own temperature: the check is printed.

    Args:
        run: a run directory from `gdeq train` (or its trajectory.npz).
        levels: theory levels to compare with (nngp, gaussian, single_neuron).
        observable: matching observable for T_eff: train_error (mean predictor), test_error, gibbs_test_error or readout_second_moment.
        t_min: lowest temperature of the theory grid.
        t_max: highest temperature of the theory grid.
        n_temperatures: number of log-spaced temperatures.
        sample_temperatures: temperatures at which to sample the exact posterior too (costly).
        sample_replicas: chains per sampled temperature.
        data_dir: data directory, if the run was trained on data outside the embedded MNIST.
        output_dir: report directory (default <run>/bridge).
        wandb: offline (default), online or disabled.
    """
    from gdeq.bridge.experiments import compare_saved_run

    out, res, paths = compare_saved_run(
        run, levels=levels, temperatures=temperature_grid(t_min, t_max, n_temperatures), observable=observable,
        sample_temperatures=sample_temperatures, sample_replicas=sample_replicas, data_dir=data_dir,
        output_dir=output_dir, wandb=wandb_mode(wandb),
    )
    print_comparison(res)
    print(f"report: {paths['report']}")
    return paths
