"""`gdeq sweep`: a grid over architectures, widths, activations, datasets and class pairs -> one table
and one figure per measure across architectures.

Resumable: every finished cell is written to ``<output_dir>/cells/<cell>.json`` and skipped when the
sweep is run again. Engines:

- ``--engine local`` (default): the missing cells one after the other in this process;
- ``--engine submitit``: one job per missing cell, as one SLURM job array through ``submitit``
  (``--cluster local`` runs the jobs as local processes, ``--cluster debug`` in this process).
  With ``--wait false`` the command submits and returns; rerunning the same command later skips
  the finished cells, does not resubmit cells whose jobs are still queued or running, resubmits the
  cells whose jobs died, and assembles the table from whatever has finished.

As a wandb sweep, each agent runs single cells (all axes given as single values), writing into the
same shared ``output_dir`` and logging its row to the agent's run::

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
    architectures: list[str] | str = ["fc1"],  # noqa: B006
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
    patch_size: int | None = None,
    log_points: int = 50,
    data_dir: str | None = None,
    output_dir: str = "runs/sweep",
    engine: str = "local",
    cluster: str | None = None,
    slurm_partition: str | None = None,
    timeout_min: int = 60,
    cpus_per_task: int = 1,
    mem_gb: float = 4.0,
    array_parallelism: int = 64,
    wait: bool = True,
    figures_dir: str | None = None,
    wandb: str = "offline",
    wandb_project: str = "gdeq",
    progress: bool = True,
) -> list[dict]:
    """Run (or resume) a grid of GD runs, each with the equilibrium theory of its own architecture;
    print one table and write it with one figure per measure.

    Per cell (``bridge.experiments.sweep_cell``): the GD inversion signatures on the last hidden layer
    (step t* of the class-0 unit-sphere radius dip, mean ± s.e. over replicas; its size; how many
    replicas turn), the theory's T* (peak of the centroid distance; dip of the radius), T_eff at the
    inversion, GD and theory test errors. Writes ``output_dir/sweep.csv``, ``sweep.json``, ``sweep.md``
    and ``output_dir/figures/sweep_<measure>.png``.

    Args:
        architectures: fc1 (= fc; one hidden layer), fcL (L hidden layers of the cell's width, e.g. fc2,
            fc3; deep FC theory with width=[N]*L), cnn (one conv layer, stride = kernel = patch_size, no
            padding or pooling; CNN theory with architecture="cnn").
        widths: hidden widths N (per layer for fcL; channels for cnn).
        activations: erf, relu, tanh, identity.
        datasets: mnist, fashion-mnist, cifar10, teacher.
        class_pairs: list of class pairs, e.g. [[3,5],[4,9]] (a flat pair [3,5] is one cell).
        n_train: training examples P per cell.
        n_test: test examples per cell.
        steps: GD steps per cell (lr = 1/λ_max of the tangent kernel at init).
        replicas: replicas per cell.
        seed: data and replica seed.
        level: theory level for T_eff and T* of fc1 (nngp, gaussian, single_neuron, cavity); fcL and cnn
            always use their saddle point (gaussian).
        patch_size: the CNN's patch size m (kernel = stride = m; default half the image side: 4 patches).
        log_points: log-spaced measurement steps per run.
        data_dir: directory with .npz files (default $GDEQ_DATA_DIR, then embedded MNIST).
        output_dir: sweep directory: cells/ (one JSON per finished cell), runs/, sweep.csv/.json.
        wandb: offline (default), online or disabled: the table (and, under `wandb agent`, the cell's row).
        wandb_project: wandb project name.
        progress: progress bars.
        engine: local (cells one after the other here) or submitit (one job per cell, a SLURM job array).
        cluster: submitit only: slurm, local (local processes), debug (in this process); default: slurm if
            available, else local.
        slurm_partition: submitit only: the SLURM partition.
        timeout_min: submitit only: time limit per cell job, minutes.
        cpus_per_task: submitit only: CPUs per cell job.
        mem_gb: submitit only: memory per cell job, GB.
        array_parallelism: submitit only: at most this many cell jobs at once.
        wait: submitit only: wait for the jobs and assemble the table (false: submit and return; rerun
            the same command to assemble).
        figures_dir: where the figures go (default output_dir/figures).
    """
    options = dict(locals())  # every option, for the provenance record
    from pathlib import Path

    from gdeq.bridge.experiments import expand_grid, make_executor, sweep_figures, sweep_markdown, sweep_status

    mode = wandb_mode(wandb)
    if engine not in ("local", "submitit"):
        raise ValueError(f"engine: must be 'local' or 'submitit', got {engine!r}")
    cells = expand_grid(_as_list(architectures), _as_list(widths), _as_list(activations), _as_list(datasets),
                        _as_pairs(class_pairs))
    for c in cells:
        c.update(n_train=n_train, n_test=n_test, steps=steps, replicas=replicas, seed=seed, levels=[level],
                 log_points=log_points)
        if patch_size is not None and c["architecture"] == "cnn":
            c["patch_size"] = int(patch_size)
        if data_dir:
            c["data_dir"] = data_dir
    executor = None
    if engine == "submitit":
        executor = make_executor(Path(output_dir) / "submitit", cluster=cluster, timeout_min=timeout_min,
                                 cpus_per_task=cpus_per_task, mem_gb=mem_gb, slurm_partition=slurm_partition,
                                 array_parallelism=array_parallelism)
    status = sweep_status(cells, output_dir=output_dir, progress=progress, executor=executor, wait=wait)
    rows = status.rows
    cols = ("architecture", "width", "activation", "dataset", "classes", "inversion_step", "inversion_step_se",
            "replicas_turning", "T_eff_at_inversion", "theory_peak_T", "final_test_error")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in cols))
    if rows:
        Path(output_dir, "sweep.md").write_text(sweep_markdown(rows))
        sweep_figures(rows, Path(figures_dir) if figures_dir else Path(output_dir) / "figures")
        _provenance(options, Path(output_dir), len(rows), len(cells))
    print(f"table: {output_dir}/sweep.csv ({len(rows)} of {len(cells)} cells finished)")
    if status.pending:
        print(f"sweep: {len(status.pending)} cell(s) still queued or running; rerun the same command to assemble")
    if status.submitted and not wait:
        print(f"sweep: {len(status.submitted)} cell(s) submitted; rerun the same command once they finish")
    for cid, err in status.failed.items():
        print(f"sweep: cell {cid} ended without a result ({err}); rerun the same command to run it again")
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


def _provenance(options: dict, output_dir, finished: int, total: int) -> None:
    """``output_dir/provenance.json``: the command that reproduces the table (every option spelled out),
    the commit of the code that ran it (when run from a git checkout) and how many cells had finished."""
    import datetime
    import json
    import shlex
    import subprocess
    from pathlib import Path

    skip = {"progress", "wandb", "wandb_project", "wait"}
    if options.get("engine") == "local":  # the job options mean nothing without submitit
        skip |= {"cluster", "slurm_partition", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism"}
    args = []
    for k, v in options.items():
        if k in skip or v is None:
            continue
        args.append(f"--{k} {shlex.quote(json.dumps(v) if isinstance(v, (list, tuple)) else str(v))}")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.splitlines()
        # the sweep's own outputs (table, figures) do not make the code differ from the commit
        outputs = [str(Path(d)).rstrip("/") + "/" for d in (options["output_dir"], options.get("figures_dir")) if d]
        dirty = [line[3:] for line in status if not any(line[3:].startswith(o) for o in outputs)]

    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    record = dict(command="gdeq sweep " + " ".join(args), options=options, commit=commit,
                  uncommitted_changes=dirty,  # tracked files that differ from the commit (None: not a checkout)
                  cells_finished=finished, cells_total=total,
                  written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    (Path(output_dir) / "provenance.json").write_text(json.dumps(record, indent=2, default=str))
