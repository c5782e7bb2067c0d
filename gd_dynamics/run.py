"""``train``: the array user's entry point. Builds the data module, the replica module, the loggers
(CSV always, wandb offline by default) and the callbacks, runs Lightning, returns a Trajectory."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.loggers import CSVLogger

from gdeq import geometry

from .callbacks import FiniteCheck, GeometryLogger, log_schedule
from .config import TrainConfig
from .data import Task
from .datamodule import GDDataModule
from .module import GDModule
from .seeds import SEED_SCHEME, SeedSpec, seed_spec
from .trajectory import Trajectory, model_identity, posterior_deviations
from .wandb_setup import wandb_logger

__all__ = ["train", "drop_train_points", "TrainConfig", "RunProgressBar"]


def drop_train_points(task: Task, indices: Sequence[int]) -> Task:
    """The same task without the training points at ``indices`` (positions in ``task.x_train``)."""
    keep = np.setdiff1d(np.arange(task.n_train), np.asarray(indices, dtype=int))
    return replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep],
                   labels_train=task.labels_train[keep], indices_train=task.indices_train[keep])


class RunProgressBar(TQDMProgressBar):
    """One bar per training run over all its steps, labelled with the run's name (Lightning's default
    restarts a bar every epoch, and a full-batch "epoch" is only a bookkeeping unit here). It redraws
    at most ~100 times a run on a terminal and ~10 times into a log file (each redraw is a line there)."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the CSV logger's version number says nothing about the run
        return metrics

    def __init__(self, description: str, steps: int) -> None:
        redraws = 100 if sys.stdout.isatty() else 8
        super().__init__(refresh_rate=max(1, steps // redraws))
        self.description = description

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning's init_train_tqdm draws a bar without a total first; this one knows it
        self.train_progress_bar = Tqdm(
            desc=self.description, total=trainer.max_steps, initial=trainer.global_step,  # a resumed run
            position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
            file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *_) -> None:
        pass  # one bar for the whole run

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = trainer.global_step
        bar = self.train_progress_bar
        if self._should_update(n, bar.total) and not bar.disable:
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass


def train(
    task: Task,
    *,
    width: int | Sequence[int] | None = None,
    activation: str = "erf",
    optimizer: Literal["gd", "sgd", "adam", "langevin"] = "gd",
    lr: float | None = None,
    steps: int | None = None,
    replicas: int = 1,
    temperature: float | None = None,
    seed: int | Sequence[SeedSpec] = 0,
    data_seed: int | None = None,
    architecture: Literal["fc", "cnn"] = "fc",
    loss: Literal["mse", "cross_entropy"] = "mse",
    reduction: Literal["sum", "mean"] | None = None,
    batch_size: int | None = None,
    bias: bool = False,
    init: Literal["prior", "pytorch"] = "prior",
    prior_precisions: Sequence[float] | None = None,
    kernel_size: int = 5,
    stride: int = 1,
    padding: int = 0,
    pooling: Literal["none", "avg"] = "none",
    image_shape: tuple[int, int, int] | None = None,
    reduce_inputs: bool | None = None,
    frozen_layers: Sequence[int] = (),
    log_points: int = 100,
    log_spacing: Literal["log", "linear"] = "log",
    log_steps: Sequence[int] | None = None,
    probe_size: int | None = 256,
    knn: int = 10,
    layer_geometry: bool = True,
    clustering_indices: bool = True,
    stop_at_fit: bool = False,
    output_dir: str | os.PathLike = "runs",
    run_name: str | None = None,
    wandb: Literal["offline", "online"] | None = "offline",
    wandb_project: str = "gdeq",
    wandb_group: str | None = None,
    wandb_tags: Sequence[str] = (),
    checkpoint_every: int | None = None,
    resume: bool | str | os.PathLike = False,
    progress_bar: bool = True,
    device: str = "cpu",
    dtype: Literal["float64", "float32"] = "float64",
    callbacks: Sequence[pl.Callback] = (),
    config: TrainConfig | None = None,
) -> Trajectory:
    """Train R replica networks on ``task`` and return their :class:`Trajectory`.

    The model, optimiser and measurement settings form one :class:`TrainConfig`, validated before any
    work; pass ``config=`` directly, or the keywords below (``width``, ``lr`` and ``steps`` required;
    all ignored when ``config`` is given).

    Args:
        task: from :func:`gd_dynamics.load_task`.
        width: hidden width N1 (an int), or one width per hidden layer (``architecture="fc"``), or the
            CNN's channel count.
        activation: erf, relu, tanh or identity.
        optimizer: ``"gd"`` full-batch gradient descent, ``"sgd"`` minibatch SGD (``batch_size``
            required), ``"adam"``, ``"langevin"`` (GD + weight decay Tλ + noise √(2 lr T), docs/conventions.md §6).
        lr: learning rate η (per step, for the summed loss ½Σ(y − f)²).
        steps: optimisation steps.
        replicas: R independent networks trained together.
        seed: an integer: replica r gets ``numpy.random.SeedSequence(seed).spawn(R)[r]``, whose own
            streams draw its initial weights, Langevin noise, test-remainder prior and minibatch order
            (:mod:`gd_dynamics.seeds`); runs with different seeds share nothing. Or one replica seed
            per replica (``Trajectory.seeds`` records): ``train(..., replicas=1, seed=[traj.seeds[r]])``
            reproduces replica r of a batched run exactly.
        data_seed: None (default): each replica's minibatch order comes from its own seed. An integer:
            from ``SeedSequence(data_seed).spawn(R)`` instead (still one independent order per replica).
        temperature: T ≥ 0, required for (and only for) ``"langevin"``.
        loss / reduction: ``"mse"`` (½Σ|y − f|²) or ``"cross_entropy"``; reduction ``"sum"`` over
            samples (default) or ``"mean"`` (what ``nn.CrossEntropyLoss`` does).
        batch_size: minibatch size (None = full batch).
        bias / init / prior_precisions: biases; ``"prior"`` (standard parameterisation, variance 1/λ)
            or ``"pytorch"`` (nn.Linear's convention); (λ0, ..., λL), default all 1.
        kernel_size / stride / padding / pooling / image_shape: the CNN's k, stride s (default 1),
            zero padding (default 0), readout after ``"none"`` (default) or ``"avg"`` (global average)
            pooling, and (C, H, W) (default: ``models.infer_image_shape``). The equilibrium theory
            covers stride = kernel_size dividing H and W, no padding, no pooling (docs/architectures.md).
        frozen_layers: layers (1 = first hidden, L+1 = readout) kept at their initial values.
        reduce_inputs: docs/conventions.md §6's exact reduction (default: on for Langevin of a one-hidden-layer
            FC net with P < N0 and prior init).
        log_points / log_spacing / log_steps: measurement schedule (default ≥ 100 log-spaced steps,
            step 0 included) or explicit steps.
        probe_size: at most this many train (and test) points for the Gram-based geometry measures
            (cost O(R·p²) per measurement; None = all). The Trajectory's centroid distances and class
            radii always refer to the whole training set (from the features, O(R·P·N)).
        layer_geometry / clustering_indices: switch off the hidden-layer measures, or only the
            (per-replica, slower) Calinski–Harabasz and Davies–Bouldin indices.
        stop_at_fit: stop at the first measurement at which every replica fits the training set
            (100 % training accuracy); ``steps`` is then the maximum.
        output_dir / run_name: the run directory is ``output_dir/run_name`` (csv/, wandb/,
            checkpoints/, trajectory.npz/.json).
        wandb: ``"offline"`` (default), ``"online"`` or None; a wandb failure never stops the run.
        checkpoint_every: steps between checkpoints (default steps // 10); the last is always kept.
        resume: True (``run_dir/checkpoints/last.ckpt``) or a checkpoint path.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        callbacks: extra Lightning callbacks.
    """
    if config is None:
        config = TrainConfig(
            width=width, lr=lr, steps=steps, activation=activation, optimizer=optimizer, replicas=replicas,
            temperature=temperature, seed=seed, data_seed=data_seed, architecture=architecture, loss=loss,
            reduction=reduction, batch_size=batch_size, bias=bias, init=init, prior_precisions=prior_precisions,
            kernel_size=kernel_size, stride=stride, padding=padding, pooling=pooling, image_shape=image_shape,
            reduce_inputs=reduce_inputs, frozen_layers=frozen_layers,
            dtype=dtype, log_points=log_points, log_spacing=log_spacing, log_steps=log_steps, probe_size=probe_size,
            knn=knn, layer_geometry=layer_geometry, clustering_indices=clustering_indices, stop_at_fit=stop_at_fit)
    config = config.for_task(task)
    ckpt_path = _checkpoint_path(resume, output_dir, run_name)
    _check_run_options(wandb, device, checkpoint_every)

    dm = GDDataModule(task, config)
    run_name = run_name or _default_run_name(config)
    run_dir = Path(output_dir) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    hparams = _hyperparameters(config, task)
    module = GDModule(config, input_dim=dm.input_dim, n_outputs=dm.n_outputs, n_train=task.n_train,
                      input_scale_dim=dm.input_scale_dim if config.reduce_inputs else None,
                      test_remainder=dm.reduction.test_remainder if config.reduce_inputs else None, hparams=hparams)

    geometry_cb = _geometry_logger(config)
    loggers = [CSVLogger(str(run_dir), name="csv")]
    wandb_run = wandb_logger(wandb, save_dir=run_dir, name=run_name, project=wandb_project, group=wandb_group,
                             tags=wandb_tags)
    loggers += [wandb_run] if wandb_run is not None else []
    trainer = _trainer(config, device, loggers, run_dir, checkpoint_every, progress_bar, run_name,
                       [FiniteCheck(), geometry_cb, *callbacks])

    wall = _fit(trainer, module, dm, ckpt_path, wandb_run)
    traj = _trajectory(geometry_cb, module, task, hparams, run_dir, wall)
    traj.save(run_dir / "trajectory")
    return traj


def _checkpoint_path(resume, output_dir, run_name) -> str | None:
    if not resume:
        return None
    if resume is True and run_name is None:
        raise ValueError("resume: resume=True needs the run_name of the run to continue")
    path = str(Path(output_dir) / str(run_name) / "checkpoints" / "last.ckpt") if resume is True else str(resume)
    if not Path(path).is_file():
        raise ValueError(f"resume: no checkpoint at {path}")
    return path


def _check_run_options(wandb, device: str, checkpoint_every) -> None:
    if wandb not in (None, "offline", "online"):
        raise ValueError(f"wandb: must be 'offline', 'online' or None, got {wandb!r}")
    if device not in ("cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
        raise ValueError(f"device: must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if checkpoint_every is not None and not (isinstance(checkpoint_every, (int, np.integer)) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every: must be a positive integer or None, got {checkpoint_every!r}")


def _default_run_name(config: TrainConfig) -> str:
    return (f"{config.optimizer}-{config.architecture}-{config.activation}-N{'x'.join(map(str, config.widths))}"
            f"-R{config.replicas}-{time.strftime('%Y%m%d-%H%M%S')}")


def _hyperparameters(config: TrainConfig, task: Task) -> dict:
    """Everything that defines the run, recorded once (``save_hyperparameters``) and in the Trajectory."""
    return dict(config.to_dict(), seed_scheme=SEED_SCHEME,
                data_fingerprint=geometry.data_fingerprint(task.x_train, task.y_train), task=task.metadata())


def _geometry_logger(config: TrainConfig) -> GeometryLogger:
    schedule = (np.asarray(config.log_steps) if config.log_steps is not None
                else log_schedule(config.steps, config.log_points, config.log_spacing))
    return GeometryLogger(schedule, knn=config.knn, layer_geometry=config.layer_geometry,
                          clustering_indices=config.clustering_indices, stop_at_fit=config.stop_at_fit)


def _trainer(config: TrainConfig, device: str, loggers: list, run_dir: Path, checkpoint_every: int | None,
             progress_bar: bool, run_name: str, callbacks: list) -> pl.Trainer:
    accelerator = "auto" if device == "auto" else ("gpu" if str(device).startswith("cuda") else "cpu")
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True,
                           every_n_train_steps=checkpoint_every or max(1, config.steps // 10),
                           save_top_k=1, save_on_train_epoch_end=False)
    bar = [RunProgressBar(run_name, config.steps)] if progress_bar else []
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    return pl.Trainer(
        max_steps=config.steps, max_epochs=-1, accelerator=accelerator, devices=1, logger=loggers,
        callbacks=[*callbacks, *bar, ckpt], enable_progress_bar=progress_bar, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False, log_every_n_steps=1,  # GeometryLogger logs by step
        precision="64-true" if config.dtype == "float64" else "32-true",
    )


def _fit(trainer: pl.Trainer, module: GDModule, dm: GDDataModule, ckpt_path: str | None, wandb_run) -> float:
    """Run Lightning (resuming from ``ckpt_path``); returns the wall-clock seconds."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")  # Lightning-internal
        try:
            # our own checkpoints hold numpy records and generator states: not weights-only
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=False if ckpt_path else None)
        finally:
            if wandb_run is not None:
                try:
                    wandb_run.experiment.finish()
                except Exception:
                    pass
    return time.perf_counter() - t0


def _trajectory(cb: GeometryLogger, module: GDModule, task: Task, config: dict, run_dir: Path,
                wall: float) -> Trajectory:
    recs = cb.records
    R = len(recs[0]["train_loss"])

    def stack(key: str) -> np.ndarray:  # NaN where a measure was switched off
        return np.stack([r[key] if key in r else np.full(R, np.nan) for r in recs])

    measures = {k: stack(k) for k in recs[0] if k != "step"}
    n_classes = len(np.unique(task.labels_train))
    # whole training set: "train_full" when the probe is a strict subset, else the probe is the set
    whole = "train_full" if "train_full/L1/centroid_distance" in recs[0] else "train"
    radius = lambda unit: np.stack([stack(f"{whole}/L1/{'unit_' if unit else ''}class_radius_{c}")  # noqa: E731
                                    for c in range(n_classes)], axis=-1)
    layers = sorted(int(k.split("/")[1][1:]) for k in recs[0] if k.startswith("weights/L"))
    lambdas = module.model.lambdas
    config = dict(config, wall_seconds=wall, geometry_seconds=cb.seconds)
    model = module.model
    identity = model_identity(
        architecture=config["architecture"], widths=[model.channels] if config["architecture"] == "cnn" else model.widths,
        activation=config["activation"], init=config["init"], bias=config["bias"], prior_precisions=model.lambdas,
        loss=config["loss"], reduction=config["reduction"], optimizer=config["optimizer"],
        frozen_layers=config["frozen_layers"], batch_size=config["batch_size"],
        kernel_size=getattr(model, "k", None), image_shape=getattr(model, "image_shape", None),
        stride=getattr(model, "stride", None), padding=getattr(model, "padding", None),
        pooling=getattr(model, "pooling", None))
    langevin = config["optimizer"] == "langevin"
    notes = posterior_deviations(identity, task.n_train) if langevin else []
    return Trajectory(
        step=np.array([int(r["step"]) for r in recs]),
        train_loss=stack("train_loss"), test_loss=stack("test_loss"),
        train_error=stack("train_error"), test_error=stack("test_error"),
        train_accuracy=stack("train_accuracy"), test_accuracy=stack("test_accuracy"),
        centroid_distance=stack(f"{whole}/L1/centroid_distance"),
        unit_centroid_distance=stack(f"{whole}/L1/unit_centroid_distance"),
        class_radius=radius(False), unit_class_radius=radius(True),
        distance_ratio=stack("train/L1/distance_ratio"),
        readout_second_moment=stack("weights/readout_second_moment"),
        weight_displacement=np.stack([stack(f"weights/L{l}/displacement") for l in layers], axis=-1),
        train_predictions=np.stack(cb.predictions["train"]), test_predictions=np.stack(cb.predictions["test"]),
        y_train=task.y_train, labels_train=task.labels_train, y_test=task.y_test, labels_test=task.labels_test,
        measures=measures, width=config["width"], activation=config["activation"],
        prior_w=float(lambdas[0]), prior_v=float(lambdas[-1]), temperature=config["temperature"],
        optimizer=config["optimizer"], lr=float(config["lr"]), replicas=int(config["replicas"]),
        seeds=[seed_spec(s) for s in module.seeds], data_fingerprint=config["data_fingerprint"], task=task.metadata(),
        run_dir=str(run_dir), config=config, model_identity=identity,
        samples_documented_posterior=(not notes) if langevin else None, posterior_notes=notes,
        seed_scheme=config["seed_scheme"],
    )
