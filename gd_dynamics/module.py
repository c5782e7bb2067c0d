"""LightningModule: R replica networks trained by full-batch GD, minibatch SGD, Adam or Langevin.

Loss (docs/conventions.md): L = ½ Σ_μ |y^μ − f(x^μ)|², a SUM over the P training samples (and the D outputs),
not a mean: with the mean, lr would be rescaled by P. A minibatch of B samples contributes
(P/B)·½ Σ_batch, an unbiased estimate of the full-batch L, so lr means the same for every batch size.
``loss="cross_entropy"`` uses Σ_μ CE by default too; ``reduction="mean"`` divides by P (what
``torch.nn.CrossEntropyLoss`` and arXiv 2303.05161 use).

Langevin at temperature T (docs/conventions.md §6): θ ← θ − η ∇[L + T(λ_l/2)|θ_l|²] + √(2ηT) ξ, i.e. GD with
weight decay Tλ_l per layer plus Gaussian noise; its stationary law is the posterior
p(θ|D) ∝ exp(−L/T − Σ_l (λ_l/2)|θ_l|²) (up to O(η) discretisation bias).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from .config import OPTIMIZERS, TrainConfig
from .models import build_model
from .seeds import stream_seed

__all__ = ["OPTIMIZERS", "GDModule", "LangevinSGD", "replica_losses"]


class LangevinSGD(torch.optim.Optimizer):
    """θ ← θ − lr (∇L + Tλ θ) + √(2 lr T) ξ, with ξ for replica r drawn from ``generators[r]``.

    Every parameter carries the replica axis first; each param group has its own ``weight_decay``
    (= Tλ of its layer). Drawing replica r's noise from its own stream keeps a batched run equal to
    separate runs with the same seeds.
    """

    def __init__(self, params, lr: float, temperature: float, generators: Sequence[torch.Generator]) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=0.0, temperature=temperature))
        self.generators = list(generators)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, T = group["lr"], group["weight_decay"], group["temperature"]
            scale = math.sqrt(2.0 * lr * T)
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.add_(p.grad + wd * p, alpha=-lr)
                if scale > 0:
                    noise = torch.stack([torch.randn(p.shape[1:], generator=g, dtype=p.dtype, device=p.device)
                                         for g in self.generators])
                    p.add_(noise, alpha=scale)
        return loss


def replica_losses(out: torch.Tensor, target: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """Per-replica loss (R,) of outputs (R, P[, D]) against shared targets ((P[, D]) or class ids (P,))
    or per-replica targets ((R, P[, D]) or (R, P)): Σ_μ over the P samples, divided by P for "mean"."""
    R, P = out.shape[:2]
    if loss == "mse":
        sq = (out - target) ** 2
        per = 0.5 * sq.reshape(R, -1).sum(-1)
    else:
        ids = target.reshape(-1) if target.ndim == 2 else target.repeat(R)
        per = torch.nn.functional.cross_entropy(out.reshape(R * P, -1), ids, reduction="none")
        per = per.reshape(R, P).sum(-1)
    return per / P if reduction == "mean" else per


class GDModule(pl.LightningModule):
    """R replica networks and their dynamics, configured by a :class:`~gd_dynamics.config.TrainConfig`.

    ``input_scale_dim`` / ``test_remainder`` implement docs/conventions.md §6's exact reduction: the first layer
    acts on rotated coordinates with the original 1/√N0, and test inputs get the prior term of their
    remainder, ``test_remainder @ z / √N0`` with z ~ N(0, I/λ0) fixed per neuron and replica.
    Replica r draws its initial weights, Langevin noise and z from its own streams
    (:mod:`gd_dynamics.seeds`). ``hparams`` (the run's full config) is recorded once, by
    ``save_hyperparameters``; Lightning sends it to every logger.
    """

    def __init__(self, config: TrainConfig, *, input_dim: int, n_outputs: int, n_train: int,
                 input_scale_dim: int | None = None, test_remainder: np.ndarray | None = None,
                 hparams: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(hparams if hparams is not None else config.to_dict(), ignore=["test_remainder", "config"])
        self.config = config
        self.seeds = config.replica_seeds
        torch_dtype = getattr(torch, config.dtype)
        self.model = build_model(
            config.architecture, input_dim, config.width, n_outputs, config.activation, replicas=config.replicas,
            seeds=[stream_seed(s, "init") for s in self.seeds], prior_precisions=config.prior_precisions,
            bias=config.bias, init=config.init, image_shape=config.image_shape, kernel_size=config.kernel_size,
            stride=config.stride, padding=config.padding, pooling=config.pooling,
            input_scale_dim=input_scale_dim, dtype=torch_dtype,
        )
        for name, p in self.model.named_parameters():
            if self.model.layer_of[name] in config.frozen_layers:
                p.requires_grad_(False)  # e.g. a frozen first layer: a random-features model
        self.lr, self.temperature, self.optimizer_name = config.lr, config.temperature or 0.0, config.optimizer
        self.loss_name, self.reduction_name, self.n_train = config.loss, config.reduction, n_train
        self.input_scale_dim = input_scale_dim or input_dim
        # |W_0|² of the first-layer components outside the sampled span (their prior mean), so the
        # displacement is relative to the full-space |W_0| also after the reduction
        n1 = self.model.widths[0]
        self.orthogonal_w_sq = n1 * (self.input_scale_dim - input_dim) / self.model.lambdas[0]
        if test_remainder is not None and test_remainder.shape[1] > 0:
            k = test_remainder.shape[1]
            z = torch.stack([torch.randn((k, n1), generator=torch.Generator().manual_seed(stream_seed(s, "test_remainder")),
                                         dtype=torch_dtype) for s in self.seeds]) / math.sqrt(self.model.lambdas[0])
            offset = torch.einsum("pk,rkn->rpn", torch.as_tensor(test_remainder, dtype=torch_dtype), z)
            self.register_buffer("test_offset", offset / math.sqrt(self.input_scale_dim))
        else:
            self.test_offset = None
        self._noise_generators: list[torch.Generator] | None = None
        self._noise_states: list[torch.Tensor] | None = None

    # --- evaluation helpers used by the callbacks --------------------------------------------------------
    def outputs_and_features(self, x: torch.Tensor, split: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        offset = self.test_offset if split == "test" else None
        feats = self.model.hidden_features(x, offset)
        return self.model.readout(feats[-1]), feats

    def losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return replica_losses(out, target, self.loss_name, self.reduction_name)

    # --- training ----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> dict:
        """``batch``: the full set (P, N0) shared by all replicas, or per-replica minibatches (R, B, N0).
        Returns the summed loss and, for the callbacks, each replica's loss (``per_replica``)."""
        x, y = batch
        per_replica = self.losses(self.model(x), y)
        n = x.shape[-2]
        if self.reduction_name == "sum" and n != self.n_train:
            per_replica = per_replica * (self.n_train / n)  # unbiased estimate of the full sum
        loss = per_replica.sum()  # replicas are independent: the gradient of the sum is each one's own
        if self.global_step % 25 == 0:  # the progress bar's loss; cheap enough every 25 steps
            self.log("loss", per_replica.mean(), prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return {"loss": loss, "per_replica": per_replica.detach()}

    def _noise(self) -> list[torch.Generator]:
        if self._noise_generators is None:
            gens = [torch.Generator(device=self.device).manual_seed(stream_seed(s, "noise")) for s in self.seeds]
            if self._noise_states is not None:
                for g, st in zip(gens, self._noise_states):
                    g.set_state(st)
            self._noise_generators = gens
        return self._noise_generators
    def configure_optimizers(self):
        named = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if self.optimizer_name in ("gd", "sgd"):
            return torch.optim.SGD(named.values(), lr=self.lr)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(named.values(), lr=self.lr)
        T = self.temperature
        groups = [dict(params=[p], weight_decay=T * self.model.prior_precision[n]) for n, p in named.items()]
        return LangevinSGD(groups, lr=self.lr, temperature=T, generators=self._noise())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._noise_generators is not None:
            checkpoint["noise_generator_states"] = [g.get_state() for g in self._noise_generators]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("noise_generator_states")
        if states is not None:
            self._noise_states = states
            if self._noise_generators is not None:
                for g, st in zip(self._noise_generators, states):
                    g.set_state(st)
