"""`gdeq equilibrium`: theory curves versus temperature for each level, and where they turn."""

from __future__ import annotations

from pathlib import Path

from gdeq.cli.common import DataOptions, temperature_grid


def equilibrium(
    data: DataOptions = DataOptions(),  # noqa: B008 - frozen: a safe default
    width: int = 20,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    levels: list[str] = ["nngp", "gaussian"],  # noqa: B006
    t_min: float = 1e-4,
    t_max: float = 100.0,
    n_temperatures: int = 49,
    output: str | None = "runs/equilibrium/curves",
) -> list[dict]:
    """Compute equilibrium temperature curves and print each measure's turning point per level.

    Args:
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed, --data.data_dir).
        width: hidden width N1.
        activation: erf, relu, identity, tanh, ...
        prior_w: first-layer prior precision λ0.
        prior_v: readout prior precision λ1.
        levels: theory levels (equilibrium.LEVELS: nngp, gaussian, single_neuron).
        t_min: lowest temperature.
        t_max: highest temperature.
        n_temperatures: number of log-spaced temperatures.
        output: path stem for <output>.csv and <output>.json (none to skip writing).
    """
    from gdeq.bridge.compare import curve_measures, turning_point
    from gdeq.bridge.experiments import theory_curves, write_table
    import numpy as np

    temps = temperature_grid(t_min, t_max, n_temperatures)
    task = data.load()
    curves = theory_curves(task, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                           temperatures=temps, levels=levels)
    rows, peaks = [], []
    for lv, c in curves.items():
        table = dict(train_error=np.asarray(c.train_error), test_error=np.asarray(c.test_error), Q=np.asarray(c.Q),
                     **curve_measures(c))
        for k, T in enumerate(temps):
            rows.append(dict(level=lv, temperature=T, **{n: float(v[k]) for n, v in table.items()}))
        for name, v in table.items():
            t = turning_point(np.asarray(temps), v, refine=True, log_x=True)
            peaks.append(dict(level=lv, measure=name, shape=t.kind, T_star=t.location if t.non_monotonic else None))
            print(f"[{lv}] {name}: {t.describe('T')}")
    if output:
        write_table(rows, Path(output))
        write_table(peaks, Path(output).with_name(Path(output).name + "_turning_points"))
        print(f"curves written to {output}.csv/.json")
    return peaks
