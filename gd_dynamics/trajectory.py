"""Trajectory: the numbers a training run leaves behind, as numpy arrays, with save/load (npz + json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from gdeq import geometry

__all__ = ["Trajectory", "MODEL_IDENTITY_KEYS", "DOCUMENTED_POSTERIOR", "TEMPERATURE_CONVENTION", "model_identity",
           "posterior_deviations"]

#: The posterior every theory level and the exact sampler describe (docs/conventions.md §1, §6):
#: p(θ|D) ∝ exp(−L/T − Σ_l λ_l|θ_l|²/2) with L = ½Σ_μ|y^μ − f(x^μ)|² a SUM over the P samples.
TEMPERATURE_CONVENTION = "exp(-L/T - sum_l lambda_l |theta_l|^2/2), L = 1/2 sum_mu |y - f|^2 (sum over samples)"

#: Keys of ``Trajectory.model_identity``: what a network is and which posterior its dynamics sample.
#: ``bridge.check_compatible`` compares a run against a theory curve on exactly these keys.
MODEL_IDENTITY_KEYS: tuple[str, ...] = (
    "architecture",            # "fc" | "cnn"
    "widths",                  # hidden widths (N1, ..., NL); the CNN: [channels]
    "activation",              # σ by name
    "parameterisation",        # "standard" (init="prior": 1/√fan_in in the forward pass) | "pytorch"
    "init",                    # "prior" | "pytorch"
    "bias",                    # bool
    "prior_precisions",        # [λ0, ..., λL]
    "loss",                    # "mse" | "cross_entropy"
    "reduction",               # "sum" | "mean"
    "temperature_convention",  # TEMPERATURE_CONVENTION, or "none" for a run without noise
    "frozen_layers",           # layers kept at their initial values (1 = first hidden, L+1 = readout)
    "batch_size",              # None = full batch
    "kernel_size",             # CNN only (None for fc)
    "image_shape",             # CNN only, (C, H, W) (None for fc)
    "stride",                  # CNN only (None for fc)
    "padding",                 # CNN only, zero padding on each side (None for fc)
    "pooling",                 # CNN only, "none" | "avg" (None for fc)
)

#: The values the documented posterior requires (the keys not listed here may take any value).
DOCUMENTED_POSTERIOR: dict = dict(architecture="fc", parameterisation="standard", init="prior", bias=False,
                                  loss="mse", reduction="sum", frozen_layers=[], batch_size=None)


def model_identity(*, architecture: str, widths, activation: str, init: str, bias: bool, prior_precisions,
                   loss: str, reduction: str, optimizer: str, frozen_layers=(), batch_size: int | None = None,
                   kernel_size: int | None = None, image_shape=None, stride: int | None = None,
                   padding: int | None = None, pooling: str | None = None) -> dict:
    """The ``MODEL_IDENTITY_KEYS`` dict of a run (plain JSON types)."""
    cnn = architecture == "cnn"
    return dict(
        architecture=architecture, widths=[int(w) for w in widths], activation=activation,
        parameterisation="standard" if init == "prior" else "pytorch", init=init, bias=bool(bias),
        prior_precisions=[float(l) for l in prior_precisions], loss=loss, reduction=reduction,
        temperature_convention=TEMPERATURE_CONVENTION if optimizer == "langevin" else "none",
        frozen_layers=sorted(int(l) for l in frozen_layers), batch_size=None if batch_size is None else int(batch_size),
        kernel_size=int(kernel_size) if cnn and kernel_size is not None else None,
        image_shape=[int(d) for d in image_shape] if cnn and image_shape is not None else None,
        stride=int(stride) if cnn and stride is not None else None,
        padding=int(padding) if cnn and padding is not None else None,
        pooling=str(pooling) if cnn and pooling is not None else None,
    )


def posterior_deviations(identity: dict, n_train: int | None = None) -> list[str]:
    """Why a run with this identity does not sample the documented posterior (empty list: it does).

    One line per key whose value differs from :data:`DOCUMENTED_POSTERIOR`; a minibatch run is
    stochastic-gradient Langevin, whose stationary law is not the posterior (extra gradient noise).
    A batch of all ``n_train`` points is the full batch.
    """
    notes = []
    for key, want in DOCUMENTED_POSTERIOR.items():
        got = identity.get(key)
        if key == "batch_size" and got is not None and got == n_train:
            got = None
        if got != want:
            why = {"batch_size": "minibatch gradient noise changes the stationary law"}.get(key, "not the documented model")
            notes.append(f"{key}={got!r} (the documented posterior needs {want!r}: {why})")
    return notes

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
    - ``model_identity``: the network and the posterior its dynamics sample, keys
      :data:`MODEL_IDENTITY_KEYS`; ``samples_documented_posterior``: for a Langevin run, whether it
      samples docs/conventions.md §6's posterior (None for other optimisers), ``posterior_notes``:
      why not (:func:`posterior_deviations`).
    - metadata: width, activation, prior_w (λ0), prior_v (λ_L), temperature, optimizer, lr,
      replicas, seeds (one ``{"entropy", "spawn_key"}`` SeedSequence record per replica; the scheme
      is ``seed_scheme``, :mod:`gd_dynamics.seeds`), data_fingerprint (``geometry.data_fingerprint(x_train, y_train)``), task
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
    seeds: list[dict]
    data_fingerprint: str
    task: dict
    run_dir: str
    config: dict = field(default_factory=dict, repr=False)
    model_identity: dict = field(default_factory=dict)
    samples_documented_posterior: bool | None = None
    posterior_notes: list[str] = field(default_factory=list)
    seed_scheme: str = ""

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
        return geometry.mean_se(self.measure(key), axis=1)

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
