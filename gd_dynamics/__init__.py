"""gd_dynamics: data, models and Lightning training (GD, SGD, Adam, Langevin) with geometry logging."""

from .data import DATASETS, Preprocessing, Task, load_task, parity_groups

__all__ = ["DATASETS", "Preprocessing", "Task", "load_task", "parity_groups"]
