"""`gdeq validate`: each theory level against Langevin/HMC sampling of the finite network, ± s.e."""

from __future__ import annotations

from pathlib import Path

from gdeq.cli.common import DataOptions


def validate(
    data: DataOptions = DataOptions(n_train=200, n_test=200),  # noqa: B008 - frozen: a safe default
    widths: list[int] = [100],  # noqa: B006
    temperatures: list[float] = [0.1, 1.0],  # noqa: B006
    activation: str = "erf",
    levels: list[str] = ["nngp", "gaussian"],  # noqa: B006
    replicas: int = 16,
    burn_in: float = 5.0,
    sampling_time: float = 10.0,
    method: str = "hmc",
    device: str = "cpu",
    output: str | None = "runs/validate/table",
) -> list[dict]:
    """Sample the posterior at each width and temperature and print the theory levels beside it.

    Args:
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed,
            --data.data_dir); data.seed also seeds the sampler.
        widths: hidden widths N1.
        temperatures: temperatures T at which to sample.
        activation: erf, relu, tanh or identity.
        levels: theory levels (nngp, gaussian, single_neuron).
        replicas: independent chains per point (error bars are over chains).
        burn_in: burn-in, in time units of docs/conventions.md §6.
        sampling_time: sampling time, in the same units.
        method: hmc (collapsed readout, exact at any step) or langevin.
        device: cpu or cuda.
        output: path stem for <output>.csv/.json (none to skip writing).
    """
    from gdeq.bridge.experiments import validation_table, write_table
    if replicas < 2:
        raise ValueError(f"replicas: need at least 2 chains for error bars, got {replicas}")
    task = data.load()
    rows = validation_table(task, widths=widths, temperatures=temperatures, activation=activation, levels=levels,
                            replicas=replicas, burn_in=burn_in, sampling_time=sampling_time, seed=data.seed,
                            sampler_kwargs=dict(method=method, device=device))
    head = f"{'N1':>5} {'T':>7} {'measure':<28} {'sampled ± s.e.':>22} " + " ".join(f"{lv:>22}" for lv in levels)
    print(head)
    for r in rows:
        cells = []
        for lv in levels:
            cells.append(f"{r[lv]:>10.4g} ({r[f'z[{lv}]']:+6.1f}σ)" if lv in r else f"{'—':>22}")
        print(f"{r['width']:>5} {r['temperature']:>7.3g} {r['measure']:<28} {r['sampled']:>12.5g} ± {r['se']:<8.2g} "
              + " ".join(f"{c:>22}" for c in cells))
    if output:
        write_table(rows, Path(output))
        print(f"table written to {output}.csv/.json")
    return rows
