"""LightningDataModule around :func:`gd_dynamics.data.load_task`: full batch by default, minibatches
optional, fixed train/test probe sets, and docs/conventions.md §6's exact input reduction for Langevin.

Batches are deterministic functions of (replica seeds, epoch = step // batches per epoch): full-batch epochs are
``steps_per_epoch`` identical batches shared by all replicas; a minibatch epoch gives every replica
its own pass over its own permutation, drawn from the replica's ``batch_order`` stream and the epoch
(:mod:`gd_dynamics.seeds`; Lightning calls ``set_epoch`` on the batch sampler), and a batch is
(R, B, N0). Resuming from any full-batch checkpoint, or from a minibatch checkpoint taken at an epoch
end, therefore replays exactly the same batches (a minibatch run resumed mid-epoch continues its
epoch's permutation where it stopped).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gdeq import geometry

from .config import TrainConfig
from .data import Task
from .seeds import stream_rng

__all__ = ["GDDataModule", "ReplicaEpochPermutation", "stratified_probe"]


def stratified_probe(labels: np.ndarray, size: int | None) -> np.ndarray:
    """Deterministic probe indices: all points if ``size`` ≥ P, else the first points of each class
    in proportion to the class sizes (sorted, so the probe is a fixed subset)."""
    P = len(labels)
    if size is None or size >= P:
        return np.arange(P)
    classes, counts = np.unique(labels, return_counts=True)
    share = np.floor(counts / P * size).astype(int)
    share[np.argsort(-counts)[: size - share.sum()]] += 1
    idx = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in zip(classes, share)])
    return np.sort(idx)


class _Repeat(Dataset):
    """``n`` identical full batches (one epoch = ``n`` full-batch GD steps)."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.batch


class _EpochCounter:
    """Where Lightning sets the epoch: it calls ``set_epoch`` on ``batch_sampler.sampler``, not on the
    batch sampler itself (without this, every epoch replayed the first epoch's order)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class ReplicaEpochPermutation(Sampler):
    """Per-replica minibatch indices (R, B): replica r passes over its own permutation of the P points,
    drawn from its ``batch_order`` stream and the epoch; drops the ragged last batch."""

    def __init__(self, n: int, batch_size: int, seeds, steps_done=None) -> None:
        self.n, self.batch_size, self.seeds = n, batch_size, list(seeds)
        self.sampler = _EpochCounter()
        # under a Trainer the epoch is read off the optimisation step when a pass starts, so a run
        # resumed from a checkpoint at any epoch boundary continues with the same orders
        self.steps_done = steps_done

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def permutations(self) -> np.ndarray:
        """(R, P): this epoch's order of every replica."""
        return np.stack([stream_rng(s, "batch_order", self.epoch).permutation(self.n) for s in self.seeds])

    def __iter__(self):
        first = 0
        if self.steps_done is not None:  # a resumed run continues mid-epoch where it stopped
            self.set_epoch(self.steps_done() // len(self))
            first = self.steps_done() % len(self)
        perm = self.permutations()
        for b in range(first, len(self)):
            yield perm[:, b * self.batch_size : (b + 1) * self.batch_size].tolist()


class _Indexed(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, idx: list[list[int]]):  # one gather per (R, B) batch, not R·B item calls
        i = torch.as_tensor(idx)
        return self.x[i], self.y[i]

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class GDDataModule(pl.LightningDataModule):
    """Serves a :class:`~gd_dynamics.data.Task` to a :class:`~gd_dynamics.module.GDModule`.

    Args:
        task: the task (``load_task(...)``).
        config: the run's settings, already checked against the task (``TrainConfig.for_task``): the
            loss (``"mse"`` targets are ±1 (P,) or one-hot (P, D); ``"cross_entropy"`` targets are
            class ids), ``batch_size`` (None = full batch), the replicas' batch-order seeds,
            ``probe_size`` (at most this many points per probe set: the Gram geometry is O(p²)),
            ``reduce_inputs`` (``geometry.span_reduction``; one-hidden-layer FC nets) and ``dtype``.
        steps_per_epoch: full-batch steps per Lightning epoch (only bookkeeping).
    """

    def __init__(self, task: Task, config: TrainConfig, *, steps_per_epoch: int = 100) -> None:
        super().__init__()
        config = config.for_task(task)
        P = task.n_train
        loss, probe_size, reduce_inputs, dtype = config.loss, config.probe_size, config.reduce_inputs, getattr(torch, config.dtype)
        self.task, self.loss, self.batch_size = task, loss, config.batch_size
        self.batch_seeds = config.batch_order_seeds
        self.steps_per_epoch, self.dtype = steps_per_epoch, dtype
        self.probe_train = stratified_probe(task.labels_train, probe_size)
        self.probe_test = stratified_probe(task.labels_test, probe_size)
        for name, labels in (("train", task.labels_train[self.probe_train]), ("test", task.labels_test[self.probe_test])):
            if len(np.unique(labels)) < 2:
                raise ValueError(f"probe_size: the {name} probe set holds only class {labels[0]}; it needs both classes")
        self.reduction = geometry.span_reduction(task.x_train, task.x_test) if reduce_inputs else None
        x_tr, x_te = (self.reduction.x_train, self.reduction.x_test) if reduce_inputs else (task.x_train, task.x_test)
        as_t = lambda a, dt=dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
        self.x_train, self.x_test = as_t(x_tr.reshape(P, -1)), as_t(x_te.reshape(len(x_te), -1))
        self.y_train, self.y_test = as_t(task.y_train), as_t(task.y_test)
        self.labels_train = torch.as_tensor(task.labels_train)
        self.labels_test = torch.as_tensor(task.labels_test)

    # --- what the model and the callbacks need to know -------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def input_scale_dim(self) -> int:
        """The N0 of the 1/√N0 scale (the original input dimension, also after the reduction)."""
        return self.task.input_dim

    @property
    def n_outputs(self) -> int:
        if self.loss == "cross_entropy":
            return int(max(self.task.labels_train.max(), self.task.labels_test.max()) + 1)
        return self.task.n_outputs

    def targets(self, split: str) -> torch.Tensor:
        """Loss targets: y (±1 or one-hot) for mse, class ids for cross-entropy."""
        if self.loss == "cross_entropy":
            return self.labels_train if split == "train" else self.labels_test
        return self.y_train if split == "train" else self.y_test

    def to(self, device: torch.device) -> "GDDataModule":
        for name in ("x_train", "x_test", "y_train", "y_test", "labels_train", "labels_test"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    # --- Lightning hooks -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        if self.batch_size is None:
            return DataLoader(_Repeat((self.x_train, self.targets("train")), self.steps_per_epoch), batch_size=None)
        steps_done = (lambda: self.trainer.global_step) if self.trainer is not None else None
        sampler = ReplicaEpochPermutation(len(self.x_train), self.batch_size, self.batch_seeds, steps_done)
        return DataLoader(_Indexed(self.x_train, self.targets("train")), batch_sampler=sampler,
                          collate_fn=lambda b: b)
