"""LightningDataModule around :func:`gd_dynamics.data.load_task`: full batch by default, minibatches
optional, fixed train/test probe sets, and docs/conventions.md §6's exact input reduction for Langevin.

Batches are deterministic functions of (seed, epoch): full-batch epochs are ``steps_per_epoch``
identical batches, minibatch epochs are one pass over a permutation drawn from ``(seed, epoch)``
(Lightning calls ``set_epoch`` on the batch sampler). Resuming from any full-batch checkpoint, or
from a minibatch checkpoint taken at an epoch end, therefore replays exactly the same batches.
All replicas see the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import Task

__all__ = ["InputReduction", "GDDataModule", "stratified_probe", "exact_input_reduction"]


@dataclass(frozen=True)
class InputReduction:
    """Inputs rotated onto an orthonormal basis of the training span (docs/conventions.md §6).

    ``x_train @ basis`` keeps every inner product among training inputs, so a first layer acting on
    the ``rank`` coordinates with the original 1/√N0 scale gives the same pre-activations as the
    full network; the weight components outside the span never feel the likelihood and stay at
    their prior. A test input splits into its projection ``x_test @ basis`` plus a remainder whose
    pre-activation term w_⊥·r/√N0 is Gaussian with covariance r·r'/(N0 λ0): ``test_remainder``
    holds the remainder's coordinates in its own orthonormal basis (P_test × k), so that term is
    ``test_remainder @ z / √N0`` with z ~ N(0, I_k/λ0) drawn once per neuron and replica.
    """

    basis: np.ndarray  # (N0, rank)
    x_train: np.ndarray  # (P, rank)
    x_test: np.ndarray  # (P_test, rank)
    test_remainder: np.ndarray  # (P_test, k)
    input_dim: int  # N0 of the original inputs

    @property
    def rank(self) -> int:
        return self.basis.shape[1]


def exact_input_reduction(x_train: np.ndarray, x_test: np.ndarray, rtol: float = 1e-10) -> InputReduction:
    """Rotate train inputs onto their span and split test inputs into projection + remainder."""
    x_train = x_train.reshape(len(x_train), -1)
    x_test = x_test.reshape(len(x_test), -1)
    _, s, vt = np.linalg.svd(x_train, full_matrices=False)
    rank = int((s > rtol * s[0]).sum())
    basis = vt[:rank].T
    proj = x_test @ basis
    remainder = x_test - proj @ basis.T
    u2, s2, _ = np.linalg.svd(remainder, full_matrices=False)
    k = int((s2 > rtol * max(s2[0], 1e-300)).sum()) if len(s2) else 0
    return InputReduction(basis, x_train @ basis, proj, u2[:, :k] * s2[:k], x_train.shape[1])


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


class _EpochPermutation(Sampler):
    """Minibatch indices from a permutation fixed by (seed, epoch); drops the ragged last batch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for b in range(len(self)):
            yield perm[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class _Indexed(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, idx: list[int]):  # one gather per batch, not P item calls
        i = torch.as_tensor(idx)
        return self.x[i], self.y[i]

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class GDDataModule(pl.LightningDataModule):
    """Serves a :class:`~gd_dynamics.data.Task` to a :class:`~gd_dynamics.module.GDModule`.

    Args:
        task: the task (``load_task(...)``).
        loss: ``"mse"`` targets are ±1 (P,) or one-hot (P, D); ``"cross_entropy"`` targets are class ids.
        batch_size: ``None`` for full batch (default), else minibatches of this size.
        steps_per_epoch: full-batch steps per Lightning epoch (only bookkeeping).
        seed: fixes the minibatch order.
        probe_size: at most this many points in each probe set (the Gram-based geometry is O(p²)).
        reduce_inputs: apply :func:`exact_input_reduction` (valid for a one-hidden-layer FC net).
        dtype: tensor dtype.
    """

    def __init__(
        self,
        task: Task,
        *,
        loss: Literal["mse", "cross_entropy"] = "mse",
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        seed: int = 0,
        probe_size: int | None = 256,
        reduce_inputs: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        P = task.n_train
        if loss not in ("mse", "cross_entropy"):
            raise ValueError(f"loss: must be 'mse' or 'cross_entropy', got {loss!r}")
        if batch_size is not None and not 1 <= batch_size <= P:
            raise ValueError(f"batch_size: must be in 1..{P} (the training set size) or None, got {batch_size}")
        if probe_size is not None and probe_size < 2:
            raise ValueError(f"probe_size: must be at least 2 or None, got {probe_size}")
        self.task, self.loss, self.batch_size, self.seed = task, loss, batch_size, seed
        self.steps_per_epoch, self.dtype = steps_per_epoch, dtype
        self.probe_train = stratified_probe(task.labels_train, probe_size)
        self.probe_test = stratified_probe(task.labels_test, probe_size)
        for name, labels in (("train", task.labels_train[self.probe_train]), ("test", task.labels_test[self.probe_test])):
            if len(np.unique(labels)) < 2:
                raise ValueError(f"probe_size: the {name} probe set holds only class {labels[0]}; it needs both classes")
        self.reduction = exact_input_reduction(task.x_train, task.x_test) if reduce_inputs else None
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
        sampler = _EpochPermutation(len(self.x_train), self.batch_size, self.seed)
        return DataLoader(_Indexed(self.x_train, self.targets("train")), batch_sampler=sampler,
                          collate_fn=lambda b: b)
