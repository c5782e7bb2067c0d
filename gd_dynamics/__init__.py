"""gd_dynamics: data, models and Lightning training (GD, SGD, Adam, Langevin) with geometry logging."""

from .data import DATASETS, Preprocessing, Task, load_task, parity_groups
from .run import drop_train_points, train
from .trajectory import Trajectory

__all__ = ["DATASETS", "Preprocessing", "Task", "Trajectory", "drop_train_points", "load_task", "parity_groups",
           "train"]
