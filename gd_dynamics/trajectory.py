"""Trajectory: the numbers a training run leaves behind, as numpy arrays, with save/load (npz + json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Trajectory"]

# Array fields: first axis = logged steps (except ``step`` itself), second = replicas.
_ARRAYS = (
    "step", "train_loss", "test_loss", "train_error", "test_error", "train_accuracy", "test_accuracy",
    "centroid_distance", "unit_centroid_distance", "class_radius", "unit_class_radius", "distance_ratio",
    "readout_second_moment", "weight_displacement", "train_predictions", "test_predictions",
    "y_train", "labels_train", "y_test", "labels_test",
)


@dataclass(frozen=True)
class Trajectory:
    """One run: per logged step and replica. Shapes (n = logged steps, R = replicas, C = classes):

    - ``step`` (n,): optimisation steps after which the measurement was taken (0 = initialisation).
    - ``train_loss``, ``test_loss`` (n, R): the training objective on the full sets (½Σ(y − f)² by
      default: a sum over samples).
    - ``train_error``, ``test_error`` (n, R): MSE (1/P)Σ|y − f|²; ``train_accuracy``, ``test_accuracy``.
    - ``centroid_distance`` (n, R): squared class-centroid distance of the first hidden layer,
      ``geometry.centroid_distance(K_W, labels)`` with K_W = ΦΦᵀ/N1 on the whole training set
      (docs/conventions.md §4); ``unit_centroid_distance`` (n, R): Euclidean centroid distance on the unit
      sphere; ``class_radius``, ``unit_class_radius`` (n, R, C): RMS class radius, raw and unit
      sphere (arXiv 2303.05161's R_c), whole training set; ``distance_ratio`` (n, R): mean
      inter/intra squared pair distance on the train probe set.
    - ``readout_second_moment`` (n, R): ⟨v²⟩; ``weight_displacement`` (n, R, L+1): |W_t − W_0|/|W_0|
      per layer (last = readout).
    - ``train_predictions`` (n, R, P[, D]), ``test_predictions`` (n, R, P_test[, D]).
    - ``measures``: every logged measure by its logger key (e.g. ``"test/L1/knn_purity"``), (n, R).
    - ``y_*``, ``labels_*``: the targets and class ids, for stragglers and the mean predictor.
    - metadata: width, activation, prior_w (λ0), prior_v (λ_L), temperature, optimizer, lr,
      replicas, seeds, data_fingerprint (``geometry.data_fingerprint(x_train, y_train)``), task
      (``Task.metadata()``), run_dir, config (every argument of the run).
    """

    step: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    centroid_distance: np.ndarray
    unit_centroid_distance: np.ndarray
    class_radius: np.ndarray
    unit_class_radius: np.ndarray
    distance_ratio: np.ndarray
    readout_second_moment: np.ndarray
    weight_displacement: np.ndarray
    train_predictions: np.ndarray
    test_predictions: np.ndarray
    y_train: np.ndarray
    labels_train: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray
    measures: dict[str, np.ndarray] = field(repr=False)
    width: Any
    activation: str
    prior_w: float
    prior_v: float
    temperature: float | None
    optimizer: str
    lr: float
    replicas: int
    seeds: list[int]
    data_fingerprint: str
    task: dict
    run_dir: str
    config: dict = field(default_factory=dict, repr=False)

    @property
    def n_logged(self) -> int:
        return len(self.step)

    def measure(self, key: str) -> np.ndarray:
        """A logged measure by key, (n, R); the field names above work too."""
        if key in self.measures:
            return self.measures[key]
        if key in _ARRAYS:
            return getattr(self, key)
        raise KeyError(f"{key!r} not logged; available: {sorted(self.measures)}")

    def mean_sem(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error over replicas (axis 1) of a field or measure."""
        a = self.measure(key)
        R = a.shape[1]
        sem = a.std(1, ddof=1) / np.sqrt(R) if R > 1 else np.full(a.mean(1).shape, np.nan)
        return a.mean(1), sem

    def mean_predictor(self, split: str = "train") -> np.ndarray:
        """Replica-averaged predictions (n, P[, D]) (the posterior mean for a Langevin run)."""
        return (self.train_predictions if split == "train" else self.test_predictions).mean(1)

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (metadata); returns the npz path."""
        path = Path(path).with_suffix("")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        arrays.update({f"measures::{k}": v for k, v in self.measures.items()})
        np.savez_compressed(path.with_suffix(".npz"), **arrays)
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ARRAYS and f.name != "measures"}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=jsonable))
        return path.with_suffix(".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        path = Path(path).with_suffix("")
        meta = json.loads(path.with_suffix(".json").read_text())
        with np.load(path.with_suffix(".npz")) as data:
            arrays = {k: data[k] for k in _ARRAYS}
            measures = {k.split("::", 1)[1]: data[k] for k in data.files if k.startswith("measures::")}
        return cls(**arrays, measures=measures, **meta)


def jsonable(o):
    """json.dumps default for numpy scalars/arrays, tuples and sets (anything else as str)."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)
