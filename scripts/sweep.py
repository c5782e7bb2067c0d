"""`gdeq sweep`: a grid over architectures, widths, activations, datasets and class pairs -> one table.

Resumable: every finished cell is written to ``<output_dir>/cells/<cell>.json`` and skipped when the
sweep is run again. As a wandb sweep, each agent runs single cells (all axes given as single values),
writing into the same shared ``output_dir`` and logging its row to the agent's run::

    wandb sweep docs/sweep.yaml          # prints the sweep id
    wandb agent <entity>/<project>/<id>  # on each machine; runs `gdeq sweep --architectures=fc --widths=20 ...`
"""

from __future__ import annotations

from gdeq.cli.common import wandb_mode


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_pairs(value) -> list[list]:
    value = _as_list(value)
    if value and not isinstance(value[0], (list, tuple)):  # one pair given flat, e.g. [3, 5]
        return [list(value)]
    return [list(v) for v in value]


def sweep(
    architectures: list[str] | str = ["fc"],  # noqa: B006
    widths: list[int] | int = [20, 400],  # noqa: B006
    activations: list[str] | str = ["erf"],  # noqa: B006
    datasets: list[str] | str = ["mnist"],  # noqa: B006
    class_pairs: list = [[3, 5], [4, 9]],  # noqa: B006
    n_train: int = 200,
    n_test: int = 200,
    steps: int = 1000,
    replicas: int = 4,
    seed: int = 0,
    level: str = "gaussian",
    data_dir: str | None = None,
    output_dir: str = "runs/sweep",
    wandb: str = "offline",
    wandb_project: str = "gdeq",
    progress: bool = True,
) -> list[dict]:
    """Run (or resume) a grid of GD runs with the bridge and print one table.

    Columns: inversion step (unit-sphere radius of the first class stops falling; mean ± s.e. over
    replicas), peak unit-sphere centroid distance, final test error, T_eff at the inversion and the
    theory's peak temperature T* of the centroid distance (fc only; cnn has no theory here).

    Args:
        architectures: fc and/or cnn (a single value runs that one).
        widths: hidden widths N1 (or CNN channels).
        activations: erf, relu, tanh, identity.
        datasets: mnist, fashion-mnist, cifar10, teacher.
        class_pairs: list of class pairs, e.g. [[3,5],[4,9]] (a flat pair [3,5] is one cell).
        n_train: training examples P per cell.
        n_test: test examples per cell.
        steps: GD steps per cell (lr = 1/λ_max of the tangent kernel at init).
        replicas: replicas per cell.
        seed: data and replica seed.
        level: theory level for T_eff and T* (nngp, gaussian, single_neuron).
        data_dir: directory with .npz files (default $GDEQ_DATA_DIR, then embedded MNIST).
        output_dir: sweep directory: cells/ (one JSON per finished cell), runs/, sweep.csv/.json.
        wandb: offline (default), online or disabled: the table (and, under `wandb agent`, the cell's row).
        wandb_project: wandb project name.
        progress: progress bars.
    """
    from gdeq.bridge.experiments import expand_grid, run_sweep

    mode = wandb_mode(wandb)
    cells = expand_grid(_as_list(architectures), _as_list(widths), _as_list(activations), _as_list(datasets),
                        _as_pairs(class_pairs))
    for c in cells:
        c.update(n_train=n_train, n_test=n_test, steps=steps, replicas=replicas, seed=seed, levels=[level])
        if data_dir:
            c["data_dir"] = data_dir
    rows = run_sweep(cells, output_dir=output_dir, progress=progress)
    cols = ("architecture", "width", "activation", "dataset", "classes", "inversion_step", "inversion_step_se",
            "peak_distance", "final_test_error", "T_eff_at_inversion", "theory_peak_T")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in cols))
    print(f"table: {output_dir}/sweep.csv ({len(rows)} cells)")
    if mode != "disabled":
        _log(rows, mode, wandb_project, output_dir)
    return rows


def _log(rows: list[dict], mode: str, project: str, output_dir: str) -> None:
    """One wandb run with the table (or, under `wandb agent`, the agent's run with this cell's row)."""
    from gdeq.gd_dynamics.wandb_setup import log_to_wandb

    def log(run) -> None:
        import wandb

        cols = sorted({k for r in rows for k in r if not isinstance(r[k], (dict, list))})
        run.log({"sweep": wandb.Table(columns=cols, data=[[r.get(k) for k in cols] for r in rows])})
        if len(rows) == 1:
            run.summary.update({k: v for k, v in rows[0].items() if isinstance(v, (int, float, str))})

    info = log_to_wandb(mode, log, project=project, dir=output_dir, job_type="sweep")
    if "id" not in info:  # never fail the sweep because of wandb
        print(f"wandb: not logged ({'; '.join(f'{k}: {v}' for k, v in info.items() if k != 'mode')})")
