"""``train``: the array user's entry point. Builds the data module, the replica module, the loggers
(CSV always, wandb offline by default) and the callbacks, runs Lightning, returns a Trajectory."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from gdeq import geometry

from .callbacks import FiniteCheck, GeometryLogger, log_schedule
from .data import Task
from .datamodule import GDDataModule
from .models import ACTIVATIONS, ARCHITECTURES, INITS
from .module import OPTIMIZERS, GDModule
from .trajectory import Trajectory, model_identity, posterior_deviations

__all__ = ["train", "drop_train_points"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def drop_train_points(task: Task, indices: Sequence[int]) -> Task:
    """The same task without the training points at ``indices`` (positions in ``task.x_train``)."""
    keep = np.setdiff1d(np.arange(task.n_train), np.asarray(indices, dtype=int))
    return replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep],
                   labels_train=task.labels_train[keep], indices_train=task.indices_train[keep])


def _wandb_logger(mode: str, run_dir: Path, name: str, project: str, group: str | None,
                  tags: Sequence[str], config: dict):
    """A WandbLogger that is already initialised; online failures fall back to offline, then to none."""
    try:
        import wandb
        from pytorch_lightning.loggers import WandbLogger
    except ImportError:
        warnings.warn("wandb: not installed; logging to CSV only")
        return None
    for attempt in ([mode, "offline"] if mode == "online" else ["offline"]):
        try:
            logger = WandbLogger(name=name, project=project, group=group, tags=list(tags), save_dir=str(run_dir),
                                 offline=(attempt == "offline"), config=config,
                                 settings=wandb.Settings(init_timeout=60, silent=True))
            _ = logger.experiment  # initialise now, so a failure is caught here and not mid-run
            return logger
        except Exception as err:  # never let wandb stop a run
            warnings.warn(f"wandb: {attempt} initialisation failed ({err}); "
                          + ("retrying offline" if attempt == "online" else "logging to CSV only"))
            try:
                wandb.finish()
            except Exception:
                pass
    return None


def train(
    task: Task,
    *,
    width: int | Sequence[int],
    activation: str = "erf",
    optimizer: Literal["gd", "sgd", "adam", "langevin"] = "gd",
    lr: float,
    steps: int,
    replicas: int = 1,
    temperature: float | None = None,
    seed: int = 0,
    data_seed: int | None = None,
    architecture: Literal["fc", "cnn"] = "fc",
    loss: Literal["mse", "cross_entropy"] = "mse",
    reduction: Literal["sum", "mean"] | None = None,
    batch_size: int | None = None,
    bias: bool = False,
    init: Literal["prior", "pytorch"] = "prior",
    prior_precisions: Sequence[float] | None = None,
    kernel_size: int = 5,
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
) -> Trajectory:
    """Train R replica networks on ``task`` and return their :class:`Trajectory`.

    Args:
        task: from :func:`gd_dynamics.load_task`.
        width: hidden width N1 (an int), or one width per hidden layer (``architecture="fc"``), or the
            CNN's channel count.
        activation: erf, relu, tanh or identity.
        optimizer: ``"gd"`` full-batch gradient descent, ``"sgd"`` minibatch SGD (``batch_size``
            required), ``"adam"``, ``"langevin"`` (GD + weight decay Tλ + noise √(2 lr T), docs/conventions.md §6).
        lr: learning rate η (per step, for the summed loss ½Σ(y − f)²).
        steps: optimisation steps.
        replicas: R independent networks trained together; replica r uses seed ``seed + r``, so it
            equals a one-replica run with that seed.
        data_seed: fixes the minibatch order (default ``seed``); all replicas share it.
        temperature: T ≥ 0, required for (and only for) ``"langevin"``.
        loss / reduction: ``"mse"`` (½Σ|y − f|²) or ``"cross_entropy"``; reduction ``"sum"`` over
            samples (default) or ``"mean"`` (what ``nn.CrossEntropyLoss`` does).
        batch_size: minibatch size (None = full batch).
        bias / init / prior_precisions: biases; ``"prior"`` (standard parameterisation, variance 1/λ)
            or ``"pytorch"`` (nn.Linear's convention); (λ0, ..., λL), default all 1.
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
    # --- validate everything before any work --------------------------------------------------------------
    _check(isinstance(lr, (int, float)) and lr > 0, f"lr: must be > 0, got {lr!r}")
    _check(isinstance(steps, (int, np.integer)) and steps >= 1, f"steps: must be an integer ≥ 1, got {steps!r}")
    _check(isinstance(replicas, (int, np.integer)) and replicas >= 1, f"replicas: must be an integer ≥ 1, got {replicas!r}")
    widths = [width] if isinstance(width, (int, np.integer)) else list(width)
    _check(len(widths) >= 1 and all(isinstance(w, (int, np.integer)) and w >= 1 for w in widths),
           f"width: must be a positive integer (or a list of them), got {width!r}")
    _check(optimizer in OPTIMIZERS, f"optimizer: must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    _check(activation in ACTIVATIONS, f"activation: must be one of {list(ACTIVATIONS)}, got {activation!r}")
    _check(architecture in ARCHITECTURES, f"architecture: must be one of {list(ARCHITECTURES)}, got {architecture!r}")
    _check(architecture == "fc" or len(widths) == 1, "width: the CNN has one hidden layer; pass one channel count")
    _check(init in INITS, f"init: must be one of {list(INITS)}, got {init!r}")
    _check(loss in ("mse", "cross_entropy"), f"loss: must be 'mse' or 'cross_entropy', got {loss!r}")
    reduction = reduction or "sum"
    _check(reduction in ("sum", "mean"), f"reduction: must be 'sum' or 'mean', got {reduction!r}")
    if optimizer == "langevin":
        _check(temperature is not None, "temperature: required for optimizer='langevin' (T ≥ 0)")
    if temperature is not None:
        _check(temperature >= 0, f"temperature: must be ≥ 0, got {temperature!r}")
        _check(optimizer == "langevin", f"temperature: only applies to optimizer='langevin', got optimizer={optimizer!r}")
    P = task.n_train
    if batch_size is not None:
        _check(isinstance(batch_size, (int, np.integer)) and 1 <= batch_size <= P,
               f"batch_size: must be in 1..{P} (the training set size), got {batch_size!r}")
    _check(optimizer != "sgd" or batch_size is not None, "batch_size: optimizer='sgd' needs a minibatch size")
    _check(wandb in (None, "offline", "online"), f"wandb: must be 'offline', 'online' or None, got {wandb!r}")
    _check(dtype in ("float64", "float32"), f"dtype: must be 'float64' or 'float32', got {dtype!r}")
    _check(log_points >= 2, f"log_points: must be ≥ 2, got {log_points}")
    if loss == "cross_entropy":
        _check(task.n_outputs >= 1, "loss: cross_entropy needs class labels")
    n_layers = len(widths) + 1
    _check(all(isinstance(l, (int, np.integer)) and 1 <= l <= n_layers for l in frozen_layers),
           f"frozen_layers: layer indices must lie in 1..{n_layers} (1 = first hidden, {n_layers} = readout), got {list(frozen_layers)}")
    if reduce_inputs is None:
        reduce_inputs = (optimizer == "langevin" and architecture == "fc" and len(widths) == 1
                         and P < task.input_dim and init == "prior")
    _check(not reduce_inputs or (architecture == "fc" and len(widths) == 1),
           "reduce_inputs: the exact reduction applies to one-hidden-layer FC networks only")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))

    data_seed = seed if data_seed is None else data_seed
    dm = GDDataModule(task, loss=loss, batch_size=batch_size, seed=data_seed, probe_size=probe_size,
                      reduce_inputs=reduce_inputs, dtype=getattr(torch, dtype))
    schedule = np.asarray(log_steps) if log_steps is not None else log_schedule(steps, log_points, log_spacing)
    _check(schedule.min() >= 0 and schedule.max() <= steps, f"log_steps: must lie in 0..{steps}")

    run_name = run_name or f"{optimizer}-{architecture}-{activation}-N{'x'.join(map(str, widths))}-R{replicas}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(output_dir) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = dict(width=width if isinstance(width, int) else widths, activation=activation, optimizer=optimizer,
                  lr=lr, steps=steps, replicas=replicas, temperature=temperature, seed=seed,
                  data_seed=data_seed, architecture=architecture, loss=loss, reduction=reduction, batch_size=batch_size, bias=bias,
                  init=init, prior_precisions=list(prior_precisions) if prior_precisions else None,
                  reduce_inputs=reduce_inputs, frozen_layers=list(frozen_layers), dtype=dtype, probe_size=probe_size,
                  data_fingerprint=geometry.data_fingerprint(task.x_train, task.y_train), task=task.metadata())

    module = GDModule(
        input_dim=dm.input_dim, n_outputs=dm.n_outputs, n_train=P, width=width, activation=activation,
        architecture=architecture, optimizer=optimizer, lr=lr, temperature=temperature, replicas=replicas,
        seed=seed, prior_precisions=prior_precisions, bias=bias, init=init, loss=loss, reduction=reduction,
        batch_size=batch_size, image_shape=image_shape, kernel_size=kernel_size,
        input_scale_dim=dm.input_scale_dim if reduce_inputs else None,
        test_remainder=dm.reduction.test_remainder if reduce_inputs else None, frozen_layers=tuple(frozen_layers),
        dtype=dtype,
    )
    dm.to(dev)

    geometry_cb = GeometryLogger(schedule, knn=knn, layer_geometry=layer_geometry, clustering_indices=clustering_indices,
                                 stop_at_fit=stop_at_fit)
    ckpt_every = checkpoint_every or max(1, steps // 10)
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, every_n_train_steps=ckpt_every,
                           save_top_k=1, save_on_train_epoch_end=False)
    loggers: list = [CSVLogger(str(run_dir), name="csv")]
    wandb_logger = None
    if wandb is not None:
        wandb_logger = _wandb_logger(wandb, run_dir, run_name, wandb_project, wandb_group, wandb_tags, config)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
    for lg in loggers:
        lg.log_hyperparams(config)

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=-1, accelerator="gpu" if dev.type == "cuda" else "cpu", devices=1,
        logger=loggers, callbacks=[FiniteCheck(), geometry_cb, *callbacks, ckpt],
        enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, use_distributed_sampler=False, log_every_n_steps=50, precision="64-true" if dtype == "float64" else "32-true",
    )
    ckpt_path = None
    if resume:
        ckpt_path = str(run_dir / "checkpoints" / "last.ckpt") if resume is True else str(resume)
        _check(Path(ckpt_path).is_file(), f"resume: no checkpoint at {ckpt_path}")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        try:
            # our own checkpoints hold numpy records and generator states: not weights-only
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=False if ckpt_path else None)
        finally:
            if wandb_logger is not None:
                try:
                    wandb_logger.experiment.finish()
                except Exception:
                    pass
    wall = time.perf_counter() - t0

    traj = _trajectory(geometry_cb, module, task, config, run_dir, widths, prior_precisions, wall)
    traj.save(run_dir / "trajectory")
    return traj


def _trajectory(cb: GeometryLogger, module: GDModule, task: Task, config: dict, run_dir: Path,
                widths, prior_precisions, wall: float) -> Trajectory:
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
    lambdas = list(prior_precisions) if prior_precisions else [1.0] * (len(widths) + 1)
    config = dict(config, wall_seconds=wall, geometry_seconds=cb.seconds)
    model = module.model
    identity = model_identity(
        architecture=config["architecture"], widths=[model.channels] if config["architecture"] == "cnn" else model.widths,
        activation=config["activation"], init=config["init"], bias=config["bias"], prior_precisions=model.lambdas,
        loss=config["loss"], reduction=config["reduction"], optimizer=config["optimizer"],
        frozen_layers=config["frozen_layers"], batch_size=config["batch_size"],
        kernel_size=getattr(model, "k", None), image_shape=getattr(model, "image_shape", None))
    langevin = config["optimizer"] == "langevin"
    notes = posterior_deviations(identity) if langevin else []
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
        seeds=list(module.seeds), data_fingerprint=config["data_fingerprint"], task=task.metadata(),
        run_dir=str(run_dir), config=config, model_identity=identity,
        samples_documented_posterior=(not notes) if langevin else None, posterior_notes=notes,
    )
