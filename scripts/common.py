"""Helpers shared by the subcommand modules: temperature grids and printing summaries."""

from __future__ import annotations

import math

import numpy as np


def temperature_grid(t_min: float, t_max: float, n_temperatures: int) -> list[float]:
    """Log-spaced temperatures; one clear error for a bad range."""
    if not (t_min > 0 and t_max > t_min and math.isfinite(t_max)):
        raise ValueError(f"t_min/t_max: need 0 < t_min < t_max < inf, got {t_min}, {t_max}")
    if n_temperatures < 3:
        raise ValueError(f"n_temperatures: need at least 3, got {n_temperatures}")
    return [float(t) for t in np.logspace(math.log10(t_min), math.log10(t_max), n_temperatures)]


def wandb_mode(value: str) -> str:
    if value not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb: must be 'offline', 'online' or 'disabled', got {value!r}")
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
