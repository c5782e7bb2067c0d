"""Measurement callbacks: hidden-layer geometry at log-spaced steps, and a finite-loss guard.

Every measure is kept per replica (numpy arrays of shape (R,)) in :class:`GeometryLogger`'s records
(which a checkpoint carries, so a resumed run continues the same trajectory) and reaches the
loggers through Lightning (``log_dict`` with the measurement's own step) as mean and standard error
over replicas (plus per-replica values for small R). The Gram-based class measures are the
torchmetrics ``Metric`` :class:`ReplicaClassGeometry`.
The class-manifold measures come from the shared :mod:`geometry` module, applied to the hidden
Gram ``K_W = Φ Φᵀ / N_l`` of every hidden layer on fixed probe sets.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import Metric
from torchmetrics.functional.clustering import calinski_harabasz_score, davies_bouldin_score
from torchmetrics.utilities import dim_zero_cat

from gdeq import geometry

__all__ = ["log_schedule", "GeometryLogger", "FiniteCheck", "DivergenceError", "knn_class_purity",
           "ReplicaClassGeometry"]


def log_schedule(steps: int, points: int = 100, kind: str = "log") -> np.ndarray:
    """Steps at which to measure: step 0 and ``steps`` included, ``points`` distinct steps at least
    (all steps if there are fewer). ``kind="log"`` spaces them logarithmically, ``"linear"`` evenly."""
    if kind not in ("log", "linear"):
        raise ValueError(f"log_schedule: kind must be 'log' or 'linear', got {kind!r}")
    points = min(points, steps + 1)
    n = points
    while True:
        grid = np.geomspace(1, steps, n) if kind == "log" else np.linspace(0, steps, n)
        sched = np.unique(np.concatenate([[0], np.round(grid).astype(int), [steps]]))
        if len(sched) >= points:
            return sched
        n += max(1, points - len(sched))


def knn_class_purity(gram: torch.Tensor, labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Mean fraction of each point's k nearest neighbours (Euclidean, self excluded) sharing its class.

    gram: (R, p, p); returns (R,).
    """
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    d2 = diag[..., :, None] + diag[..., None, :] - 2 * gram
    d2 = d2 + torch.diag(torch.full((d2.shape[-1],), float("inf"), dtype=d2.dtype, device=d2.device))
    k = min(k, d2.shape[-1] - 1)
    nn_idx = d2.topk(k, dim=-1, largest=False).indices  # (R, p, k)
    return (labels[nn_idx] == labels[None, :, None]).double().mean((-1, -2))


class ReplicaClassGeometry(Metric):
    """Class-manifold measures of hidden features with a replica axis, as a torchmetrics ``Metric``.

    ``update(features, labels, targets)``: features (R, p, N) of p points (more points may follow in
    further calls), their class ids (p,) and targets (p[, D]). State: the features (kept (p, R, N),
    concatenated over the point axis), labels and targets. ``compute()`` -> {name: (R,) tensor}: every
    measure of ``geometry.class_geometry(K_W, labels, targets)`` with K_W = Φ Φᵀ / N (docs/conventions.md §4),
    the k-NN class purity and, with ``clustering_indices``, the Calinski–Harabasz and Davies–Bouldin
    indices; replicas are processed ``replica_chunk`` at a time (memory chunk·p² floats).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, knn: int = 10, clustering_indices: bool = True, replica_chunk: int = 8) -> None:
        super().__init__()
        self.knn, self.clustering_indices, self.replica_chunk = knn, clustering_indices, replica_chunk
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> None:
        self.features.append(features.transpose(0, 1))  # (p, R, N): the point axis first, for "cat"
        self.labels.append(torch.as_tensor(labels, device=features.device))
        self.targets.append(targets)

    def compute(self) -> dict[str, torch.Tensor]:
        phi = dim_zero_cat(self.features).transpose(0, 1).double()  # (R, p, N)
        lab_t, targets = dim_zero_cat(self.labels), dim_zero_cat(self.targets)
        labels = lab_t.cpu().numpy()
        chunks: list[dict[str, torch.Tensor]] = []
        for r0 in range(0, phi.shape[0], self.replica_chunk):
            F = phi[r0 : r0 + self.replica_chunk]
            G = geometry.feature_gram(F)
            part = dict(geometry.class_geometry(G, labels, targets).scalars())
            part["knn_purity"] = knn_class_purity(G, lab_t, self.knn)
            if self.clustering_indices:
                part["calinski_harabasz"] = torch.stack([calinski_harabasz_score(f, lab_t) for f in F])
                part["davies_bouldin"] = torch.stack([davies_bouldin_score(f, lab_t) for f in F])
            chunks.append(part)
        return {k: torch.cat([torch.as_tensor(c[k]).reshape(-1) for c in chunks]) for k in chunks[0]}


class DivergenceError(FloatingPointError):
    """The loss or the weights stopped being finite."""


class FiniteCheck(pl.Callback):
    """Stop at the first non-finite loss or weight, naming the step and the likely cause.

    It runs before ModelCheckpoint (Lightning orders checkpoint callbacks last), so the last saved
    checkpoint is always a finite one.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["per_replica"] if isinstance(outputs, dict) else None  # GDModule.training_step's
        finite_params = all(torch.isfinite(p).all() for p in pl_module.parameters())
        if loss is not None and torch.isfinite(loss).all() and finite_params:
            return
        step = trainer.global_step
        bad = [] if loss is None else torch.nonzero(~torch.isfinite(loss)).flatten().tolist()
        ckpt = next((cb.last_model_path or cb.best_model_path for cb in trainer.checkpoint_callbacks), "") or "none saved"
        raise DivergenceError(
            f"non-finite {'loss' if bad else 'weights'} at step {step} (replicas {bad or 'all'}): the learning rate "
            f"lr={pl_module.lr} is most likely too large for this width, data scale and loss reduction "
            f"(sum over P={pl_module.n_train} samples); lower it. Last good checkpoint: {ckpt}"
        )


class GeometryLogger(pl.Callback):
    """Measure the networks at the steps of ``schedule`` (step 0 = initialisation included).

    Per replica and step it records: train/test loss (the training objective on the full sets),
    MSE (1/P)Σ|y − f|² (for cross-entropy: the Brier score of the softmax), accuracy, the outputs on
    both sets, and for every hidden layer l on the train and test probe sets:
    ``geometry.class_geometry`` of K_W (centroid distance² raw and unit-sphere, class radii raw and
    unit-sphere, inter/intra pair distances and their ratio, alignments, participation ratio),
    the scaled changes N_l·(D_t − D_0) of both centroid distances, Calinski–Harabasz and
    Davies–Bouldin indices (torchmetrics), k-NN class purity; plus per layer the weight
    displacement |W_t − W_0|/|W_0|, the readout second moment ⟨v²⟩ and the first-layer weight moment
    along the labels, ``weight_moment_label`` = yᵀΩy / yᵀCy with Ω = (1/N1) Σ_i h_i h_iᵀ,
    h_i = X w_i/√N0, C = XXᵀ/(N0 λ0) on the train probe (1 in the prior; as equilibrium.sampling),
    and ``weight_moment_trace`` = tr Ω / tr C.

    Args:
        schedule: sorted steps at which to measure.
        knn: k of the k-NN purity.
        replica_chunk: replicas per Gram computation (bounds memory at chunk·p² floats).
        per_replica_keys: send per-replica values to the loggers when R ≤ this.
        layer_geometry: measure the hidden layers at all (off: losses, errors, outputs, weights only).
        clustering_indices: include Calinski–Harabasz and Davies–Bouldin (one call per replica).
        stop_at_fit: stop the run at the first measurement where every replica fits the training set.

    When a probe set is a strict subset, the feature-based measures of arXiv 2303.05161 (centroid
    distance and class radii, raw and unit-sphere) are also logged on the whole set
    (``train_full/...``, ``test_full/...``), at O(R·P·N) cost.
    """

    def __init__(self, schedule: Sequence[int], knn: int = 10, replica_chunk: int = 8, per_replica_keys: int = 8,
                 layer_geometry: bool = True, clustering_indices: bool = True, stop_at_fit: bool = False) -> None:
        self.stop_at_fit = stop_at_fit
        self.layer_geometry, self.clustering_indices = layer_geometry, clustering_indices
        self.schedule = np.asarray(sorted(set(int(s) for s in schedule)))
        self._todo = set(self.schedule.tolist())
        self.knn, self.replica_chunk, self.per_replica_keys = knn, replica_chunk, per_replica_keys
        self._metric = ReplicaClassGeometry(knn, clustering_indices, replica_chunk)
        self.records: list[dict[str, np.ndarray]] = []
        self.predictions: dict[str, list[np.ndarray]] = {"train": [], "test": []}
        self.init_values: dict[str, np.ndarray] = {}
        self.init_weights: dict[str, torch.Tensor] = {}
        self.seconds = 0.0
        self._pending: dict[str, float] | None = None  # the latest measurement, not yet handed to Lightning

    # --- state for checkpoints (resume continues the same trajectory) ----------------------------------
    def state_dict(self) -> dict:
        return dict(records=self.records, predictions=self.predictions, init_values=self.init_values,
                    init_weights={k: v.cpu() for k, v in self.init_weights.items()}, seconds=self.seconds,
                    pending=self._pending)

    def load_state_dict(self, state: dict) -> None:
        self.records, self.predictions = state["records"], state["predictions"]
        self.init_values, self.init_weights, self.seconds = state["init_values"], state["init_weights"], state["seconds"]
        self._pending = state.get("pending")

    # --- hooks --------------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        trainer.datamodule.to(pl_module.device)  # the measurement sets live where the Trainer put the model
        self.init_weights = {k: v.to(pl_module.device) for k, v in self.init_weights.items()}
        if trainer.global_step == 0 and not self.init_weights:
            self.init_weights = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
            self._measure(trainer, pl_module, 0, record=0 in self._todo)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step in self._todo and (not self.records or self.records[-1]["step"] < step):
            self._measure(trainer, pl_module, step)

    # --- logging through Lightning ---------------------------------------------------------------------
    # A run has steps + 1 measurable states (0..steps) but Lightning flushes logged values once per batch,
    # so a measurement is logged (``pl_module.log_dict``, with its own "step") at the start of the next
    # batch, and the last one at the end of the epoch: at most one measurement per flush.
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._log_pending(pl_module, on_epoch=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log_pending(pl_module, on_epoch=True)

    def _log_pending(self, pl_module, on_epoch: bool) -> None:
        if self._pending is not None:
            metrics, self._pending = self._pending, None
            # float64 tensors: Lightning would turn Python floats into float32
            metrics = {k: torch.tensor(v, dtype=torch.float64, device=pl_module.device) for k, v in metrics.items()}
            pl_module.log_dict(metrics, on_step=not on_epoch, on_epoch=on_epoch, logger=True, prog_bar=False,
                               batch_size=1)

    # --- measurement --------------------------------------------------------------------------------------
    @torch.no_grad()
    def _measure(self, trainer, pl_module, step: int, record: bool = True) -> None:
        """Measure now; at step 0 always (the reference values of the changes), kept if ``record``."""
        t0 = time.perf_counter()
        dm = trainer.datamodule
        R = pl_module.model.replicas
        rec: dict[str, np.ndarray] = {"step": np.asarray(step)}
        for split, x, y, labels, probe in (
            ("train", dm.x_train, dm.y_train, dm.labels_train, dm.probe_train),
            ("test", dm.x_test, dm.y_test, dm.labels_test, dm.probe_test),
        ):
            out, feats = pl_module.outputs_and_features(x, split)
            target = dm.targets(split)
            rec[f"{split}_loss"] = pl_module.losses(out, target).cpu().numpy()
            rec.update(self._errors(split, out, y, labels, pl_module.loss_name))
            self.predictions[split].append(out.cpu().numpy())
            probe_t = torch.as_tensor(probe, device=x.device)
            lab_np = labels.cpu().numpy()[probe]
            targets = y[probe_t] if y.ndim == 1 else y[probe_t]
            for l, phi in enumerate(feats if self.layer_geometry else [], start=1):
                rec.update(self._layer_geometry(f"{split}/L{l}", phi[:, probe_t], lab_np, targets, step))
                if len(probe) < len(labels):  # the paper's measures on the whole set too: O(R P N) from features
                    rec.update(self._full_set(f"{split}_full/L{l}", phi, labels.cpu().numpy()))
        rec.update(self._weights(pl_module, dm))
        self.seconds += time.perf_counter() - t0
        if not record:
            for split in self.predictions:
                self.predictions[split].pop()
            return
        self.records.append(rec)
        self._send(trainer, rec, step, R)
        if self.stop_at_fit and step > 0 and np.all(rec["train_accuracy"] == 1.0):
            trainer.should_stop = True  # every replica classifies every training point correctly

    def _errors(self, split, out, y, labels, loss_name) -> dict[str, np.ndarray]:
        if loss_name == "cross_entropy":
            prob = out.softmax(-1)
            onehot = torch.nn.functional.one_hot(labels, out.shape[-1]).to(prob.dtype)
            mse = ((prob - onehot) ** 2).sum(-1).mean(-1)
            correct = out.argmax(-1) == labels
        else:
            mse = ((out - y) ** 2).reshape(out.shape[0], out.shape[1], -1).sum(-1).mean(-1)
            correct = (torch.sign(out) == y) if out.ndim == 2 else (out.argmax(-1) == y.argmax(-1))
        return {f"{split}_error": mse.cpu().numpy(), f"{split}_accuracy": correct.double().mean(-1).cpu().numpy()}

    def _layer_geometry(self, prefix: str, phi: torch.Tensor, labels: np.ndarray, targets: torch.Tensor,
                        step: int) -> dict[str, np.ndarray]:
        N = phi.shape[-1]
        metric = self._metric.to(phi.device)
        metric.update(phi, torch.as_tensor(labels, device=phi.device), targets)
        # torchmetrics squeezes a one-replica result to a scalar: keep the replica axis
        out = {f"{prefix}/{k}": v.reshape(-1).cpu().numpy() for k, v in metric.compute().items()}
        metric.reset()
        for name in ("centroid_distance", "unit_centroid_distance"):
            key = f"{prefix}/{name}"
            if step == 0:
                self.init_values[key] = out[key]
            out[f"{prefix}/{name}_change"] = N * (out[key] - self.init_values[key])
        return out

    @staticmethod
    def _full_set(prefix: str, phi: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for unit, tag in ((False, ""), (True, "unit_")):
            cd = geometry.centroid_distance_from_features(phi, labels, unit_sphere=unit).cpu().numpy()
            out[f"{prefix}/{tag}centroid_distance"] = np.sqrt(cd) if unit else cd  # as ClassGeometry
            radius = geometry.class_radius_from_features(phi, labels, unit_sphere=unit).cpu().numpy()
            for c in range(radius.shape[-1]):
                out[f"{prefix}/{tag}class_radius_{c}"] = radius[..., c]
        return out

    def _weights(self, pl_module, dm) -> dict[str, np.ndarray]:
        model = pl_module.model
        rec: dict[str, np.ndarray] = {}
        sq_diff: dict[int, torch.Tensor] = {}
        sq_init: dict[int, torch.Tensor] = {}
        for name, p in model.named_parameters():
            if "bias" in name or name.endswith("_b"):
                continue  # displacement of the weight matrices only
            l = model.layer_of[name]
            w0 = self.init_weights[name]
            sq_diff[l] = sq_diff.get(l, 0) + ((p - w0) ** 2).reshape(p.shape[0], -1).sum(-1)
            sq_init[l] = sq_init.get(l, 0) + (w0**2).reshape(p.shape[0], -1).sum(-1)
        sq_init[1] = sq_init[1] + pl_module.orthogonal_w_sq
        for l in sorted(sq_diff):
            rec[f"weights/L{l}/displacement"] = (sq_diff[l] / sq_init[l]).sqrt().cpu().numpy()
        readout = [p for n, p in model.named_parameters() if model.layer_of[n] == max(model.layer_of.values())
                   and "bias" not in n and not n.endswith("_b")][0]
        rec["weights/readout_second_moment"] = (readout**2).reshape(readout.shape[0], -1).mean(-1).cpu().numpy()
        if hasattr(model, "preactivations"):
            # Ω = (1/N1) Σ_i h_i h_iᵀ, h_i = X w_i/√N0, projected on the labels relative to the prior
            # C = XXᵀ/(N0 λ0): aᵀΩa / aᵀCa per label column a — the definition of equilibrium.sampling
            probe = torch.as_tensor(dm.probe_train, device=dm.x_train.device)
            X = dm.x_train[probe]
            h = model.preactivations(X)  # (R, p, N1)
            if model.use_bias:
                h = h - model.biases[0][:, None, :]
            Y = dm.y_train[probe]
            Y = (Y[:, None] if Y.ndim == 1 else Y).to(h.dtype)
            yh = torch.einsum("pd,rpn->rdn", Y, h)  # (R, D, N1): a·h_i
            yCy = ((X.T.to(h.dtype) @ Y) ** 2).sum(0) / (pl_module.input_scale_dim * model.lambdas[0])  # (D,)
            rec["weights/weight_moment_label"] = ((yh**2).mean(-1) / yCy).mean(-1).cpu().numpy()
            trC = (X.to(h.dtype) ** 2).sum() / (pl_module.input_scale_dim * model.lambdas[0])
            rec["weights/weight_moment_trace"] = ((h**2).sum(1).mean(-1) / trC).cpu().numpy()
        return rec

    def _send(self, trainer, rec: dict[str, np.ndarray], step: int, R: int) -> None:
        """Queue the measurement for Lightning's loggers: mean and s.e. over replicas (and per replica for
        small R), at its own step (Lightning uses a logged "step" as the x-axis)."""
        metrics: dict[str, float] = {"step": float(step)}
        for k, v in rec.items():
            if k == "step":
                continue
            m, s = geometry.mean_se(v)
            metrics[f"{k}/mean"], metrics[f"{k}/sem"] = float(m), float(s)
            if R <= self.per_replica_keys:
                for r in range(R):
                    metrics[f"{k}/r{r}"] = float(v[r])
        self._pending = metrics
