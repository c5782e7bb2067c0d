"""``TrainConfig``: every setting of a training run, validated once (one ValueError per bad parameter,
naming it and the allowed values) before any work. ``train()``, :class:`~gd_dynamics.module.GDModule`
and :class:`~gd_dynamics.datamodule.GDDataModule` all read this one object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

from gdeq import geometry

from .seeds import replica_seed_sequences, seed_spec

__all__ = ["TrainConfig", "OPTIMIZERS", "ACTIVATIONS", "ARCHITECTURES", "INITS", "LOSSES", "REDUCTIONS", "DTYPES",
           "POOLINGS", "CNN_DEFAULTS"]

OPTIMIZERS = ("gd", "sgd", "adam", "langevin")
ACTIVATIONS = ("erf", "relu", "tanh", "identity")
ARCHITECTURES = ("fc", "cnn")
INITS = ("prior", "pytorch")
LOSSES = ("mse", "cross_entropy")
REDUCTIONS = ("sum", "mean")
DTYPES = ("float64", "float32")
#: the CNN's readout: "none" (a readout weight per channel and position, the theory's model) or "avg"
#: (global average pooling over positions, one readout weight per channel)
POOLINGS = ("none", "avg")
#: the CNN-only options and their defaults (an FC run must leave them at these values)
CNN_DEFAULTS: dict = dict(kernel_size=5, stride=1, padding=0, pooling="none", image_shape=None)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one run (see :func:`gd_dynamics.train` for each one's meaning).

    Normalised on construction: ``width`` becomes a tuple of hidden widths, ``reduction`` None ->
    ``"sum"``, ``frozen_layers`` and ``prior_precisions`` tuples, an integer ``seed`` stays an int and
    a list of replica seeds becomes a tuple of ``{"entropy", "spawn_key"}`` records.
    Task-dependent checks (batch size ≤ P, the default of ``reduce_inputs``) are :meth:`for_task`.
    """

    width: int | tuple[int, ...]
    lr: float
    steps: int
    activation: str = "erf"
    optimizer: Literal["gd", "sgd", "adam", "langevin"] = "gd"
    replicas: int = 1
    temperature: float | None = None
    seed: int | tuple[dict, ...] = 0
    data_seed: int | None = None
    architecture: Literal["fc", "cnn"] = "fc"
    loss: Literal["mse", "cross_entropy"] = "mse"
    reduction: Literal["sum", "mean"] | None = "sum"
    batch_size: int | None = None
    bias: bool = False
    init: Literal["prior", "pytorch"] = "prior"
    prior_precisions: tuple[float, ...] | None = None
    kernel_size: int = 5
    stride: int = 1
    padding: int = 0
    pooling: Literal["none", "avg"] = "none"
    image_shape: tuple[int, int, int] | None = None
    reduce_inputs: bool | None = None
    frozen_layers: tuple[int, ...] = ()
    dtype: Literal["float64", "float32"] = "float64"
    log_points: int = 100
    log_spacing: Literal["log", "linear"] = "log"
    log_steps: tuple[int, ...] | None = None
    probe_size: int | None = 256
    knn: int = 10
    layer_geometry: bool = True
    clustering_indices: bool = True
    stop_at_fit: bool = False

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (normalising a frozen instance)
        _require(isinstance(self.lr, (int, float, np.floating)) and not isinstance(self.lr, bool) and self.lr > 0
                 and np.isfinite(self.lr), f"lr: must be a finite number > 0, got {self.lr!r}")
        _require(_is_int(self.steps) and self.steps >= 1, f"steps: must be an integer ≥ 1, got {self.steps!r}")
        _require(_is_int(self.replicas) and self.replicas >= 1, f"replicas: must be an integer ≥ 1, got {self.replicas!r}")
        widths = (self.width,) if _is_int(self.width) else tuple(self.width) if isinstance(self.width, (list, tuple)) else ()
        _require(len(widths) >= 1 and all(_is_int(w) and w >= 1 for w in widths),
                 f"width: must be a positive integer (or a list of them), got {self.width!r}")
        set_("width", int(widths[0]) if _is_int(self.width) else tuple(int(w) for w in widths))
        _require(self.optimizer in OPTIMIZERS, f"optimizer: must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        geometry.check_activation(self.activation, ACTIVATIONS)
        _require(self.architecture in ARCHITECTURES,
                 f"architecture: must be one of {list(ARCHITECTURES)}, got {self.architecture!r}")
        _require(self.architecture == "fc" or len(widths) == 1, "width: the CNN has one hidden layer; pass one channel count")
        _require(_is_int(self.kernel_size) and self.kernel_size >= 1,
                 f"kernel_size: must be a positive integer, got {self.kernel_size!r}")
        _require(_is_int(self.stride) and self.stride >= 1, f"stride: must be a positive integer, got {self.stride!r}")
        _require(_is_int(self.padding) and self.padding >= 0,
                 f"padding: must be a non-negative integer, got {self.padding!r}")
        _require(self.pooling in POOLINGS, f"pooling: must be one of {list(POOLINGS)}, got {self.pooling!r}")
        if self.architecture == "fc":  # the CNN's options mean nothing for an FC net: refuse rather than ignore
            changed = [k for k, v in CNN_DEFAULTS.items() if getattr(self, k) != v]
            _require(not changed, f"{', '.join(changed)}: only for architecture='cnn' (got architecture='fc')")
        _require(self.init in INITS, f"init: must be one of {list(INITS)}, got {self.init!r}")
        _require(self.loss in LOSSES, f"loss: must be one of {list(LOSSES)}, got {self.loss!r}")
        set_("reduction", self.reduction or "sum")
        _require(self.reduction in REDUCTIONS, f"reduction: must be one of {list(REDUCTIONS)}, got {self.reduction!r}")
        if self.optimizer == "langevin":
            _require(self.temperature is not None, "temperature: required for optimizer='langevin' (T ≥ 0)")
        if self.temperature is not None:
            _require(self.temperature >= 0, f"temperature: must be ≥ 0, got {self.temperature!r}")
            _require(self.optimizer == "langevin",
                     f"temperature: only applies to optimizer='langevin', got optimizer={self.optimizer!r}")
        if self.batch_size is not None:
            _require(_is_int(self.batch_size) and self.batch_size >= 1,
                     f"batch_size: must be a positive integer or None, got {self.batch_size!r}")
        _require(self.optimizer != "sgd" or self.batch_size is not None, "batch_size: optimizer='sgd' needs a minibatch size")
        _require(self.dtype in DTYPES, f"dtype: must be one of {list(DTYPES)}, got {self.dtype!r}")
        _require(_is_int(self.log_points) and self.log_points >= 2, f"log_points: must be an integer ≥ 2, got {self.log_points!r}")
        _require(self.log_spacing in ("log", "linear"), f"log_spacing: must be 'log' or 'linear', got {self.log_spacing!r}")
        if self.log_steps is not None:
            steps = np.asarray(self.log_steps)
            _require(steps.size >= 1 and steps.min() >= 0 and steps.max() <= self.steps,
                     f"log_steps: must lie in 0..{self.steps}")
            set_("log_steps", tuple(int(s) for s in steps))
        _require(self.probe_size is None or (_is_int(self.probe_size) and self.probe_size >= 2),
                 f"probe_size: must be at least 2 or None, got {self.probe_size!r}")
        _require(_is_int(self.knn) and self.knn >= 1, f"knn: must be a positive integer, got {self.knn!r}")
        n_layers = len(widths) + 1
        frozen = tuple(self.frozen_layers)
        _require(all(_is_int(l) and 1 <= l <= n_layers for l in frozen),
                 f"frozen_layers: layer indices must lie in 1..{n_layers} (1 = first hidden, {n_layers} = readout), "
                 f"got {list(frozen)}")
        set_("frozen_layers", tuple(int(l) for l in frozen))
        if self.prior_precisions is not None:
            lam = tuple(float(l) for l in self.prior_precisions)
            _require(len(lam) == n_layers and min(lam) > 0,
                     f"prior_precisions: need {n_layers} positive values (λ0..λL), got {list(lam)}")
            set_("prior_precisions", lam)
        _require(self.reduce_inputs in (None, True, False), f"reduce_inputs: must be True, False or None, got {self.reduce_inputs!r}")
        _require(not self.reduce_inputs or (self.architecture == "fc" and len(widths) == 1),
                 "reduce_inputs: the exact reduction applies to one-hidden-layer FC networks only")
        if self.image_shape is not None:
            _require(len(self.image_shape) == 3 and all(_is_int(d) and d >= 1 for d in self.image_shape),
                     f"image_shape: must be (C, H, W), got {self.image_shape!r}")
            set_("image_shape", tuple(int(d) for d in self.image_shape))
        _require(self.data_seed is None or (_is_int(self.data_seed) and self.data_seed >= 0),
                 f"data_seed: must be a non-negative integer or None, got {self.data_seed!r}")
        if not _is_int(self.seed):
            set_("seed", tuple(seed_spec(s) for s in replica_seed_sequences(self.seed, self.replicas)))
        else:
            replica_seed_sequences(self.seed, 1)  # checks the range

    # --- derived values ---------------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        return (self.width,) if isinstance(self.width, int) else self.width

    @property
    def replica_seeds(self) -> list[np.random.SeedSequence]:
        """One independent SeedSequence per replica (:mod:`gd_dynamics.seeds`)."""
        return replica_seed_sequences(list(self.seed) if isinstance(self.seed, tuple) else self.seed, self.replicas)

    @property
    def batch_order_seeds(self) -> list[np.random.SeedSequence]:
        """The replicas' minibatch-order sequences: their own, or ``SeedSequence(data_seed).spawn(R)``."""
        return self.replica_seeds if self.data_seed is None else replica_seed_sequences(self.data_seed, self.replicas)

    def for_task(self, task) -> "TrainConfig":
        """Check the settings that depend on the data, and resolve ``reduce_inputs``'s default (on for
        Langevin of a one-hidden-layer FC net with prior init and P < N0)."""
        P = task.n_train
        _require(self.batch_size is None or self.batch_size <= P,
                 f"batch_size: must be in 1..{P} (the training set size), got {self.batch_size!r}")
        if self.loss == "cross_entropy":
            _require(task.n_outputs >= 1, "loss: cross_entropy needs class labels")
        if self.reduce_inputs is None:
            reduce = (self.optimizer == "langevin" and self.architecture == "fc" and len(self.widths) == 1
                      and P < task.input_dim and self.init == "prior")
            return replace(self, reduce_inputs=reduce)
        return self

    def to_dict(self) -> dict:
        """Plain JSON types (lists for tuples)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d
