"""Helpers shared by the subcommand modules: the data options, temperature grids, printing summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gdeq.gd_dynamics.wandb_setup import WANDB_MODES


@dataclass(frozen=True)
class DataOptions:
    """The task a command works on (``gd_dynamics.load_task``'s arguments), given as ``--data.<name>``.

    Args:
        dataset: mnist, fashion-mnist, cifar10 or teacher.
        classes: two classes (±1), two groups like [[0,2,4,6,8],[1,3,5,7,9]] or "parity", or k classes (one-hot).
        n_train: training examples P.
        n_test: test examples.
        seed: seed of the balanced data draw (and of the replicas/chains where a command has them).
        data_dir: directory with .npz files or torchvision's layout; when given (or $GDEQ_DATA_DIR is set) it
            is the only source and must hold the dataset. Unset: torchvision's copy, then the embedded MNIST.
    """

    dataset: str = "mnist"
    classes: list | str = field(default_factory=lambda: [3, 5])
    n_train: int = 400
    n_test: int = 400
    seed: int = 0
    data_dir: str | None = None

    def load(self, **kwargs):
        """``load_task`` on these options (``kwargs``: per_class, selection, preprocessing, ...)."""
        from gdeq.gd_dynamics import load_task

        return load_task(self.dataset, self.classes, self.n_train, self.n_test, self.seed, self.data_dir, **kwargs)


def temperature_grid(t_min: float, t_max: float, n_temperatures: int) -> list[float]:
    """Log-spaced temperatures; one clear error for a bad range."""
    if not (t_min > 0 and t_max > t_min and math.isfinite(t_max)):
        raise ValueError(f"t_min/t_max: need 0 < t_min < t_max < inf, got {t_min}, {t_max}")
    if n_temperatures < 3:
        raise ValueError(f"n_temperatures: need at least 3, got {n_temperatures}")
    return [float(t) for t in np.logspace(math.log10(t_min), math.log10(t_max), n_temperatures)]


def wandb_mode(value: str) -> str:
    if value not in WANDB_MODES:
        raise ValueError(f"wandb: must be one of {list(WANDB_MODES)}, got {value!r}")
    return value


def print_comparison(res, measures=("centroid_distance", "centroid_shift", "unit_centroid_distance",
                                    "unit_class_radius_0", "distance_ratio", "readout_second_moment")) -> None:
    """Plain statements of where each side is non-monotonic, and the T_eff map's range."""
    cmp = res.comparison
    print(f"N1 = {res.width}: {res.trajectory.train_predictions.shape[1]} replicas, lr = {res.trajectory.lr:.3g}, "
          f"{int(res.trajectory.step[-1])} steps")
    for lv, m in cmp.maps.items():
        s = m.summary()
        print(f"  T_eff [{lv}]: {s['mapped_steps']['ok']}/{len(m.step)} steps mapped, "
              f"{s['T_eff_first']} -> {s['T_eff_last']}" + (f"  ({'; '.join(m.notes)})" if m.notes else ""))
    for lv, c in cmp.consistency.items():
        print(f"  consistency [{lv}]: {c.message}")
    for name in measures:
        if name in cmp.measures:
            print(f"  {name}: {cmp.measures[name].statement()}")
