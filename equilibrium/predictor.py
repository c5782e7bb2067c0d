"""GP predictor of the one-hidden-layer posterior for all temperatures at once (docs/conventions.md §3).

At the saddle point the network's output is a Gaussian process with kernel (Q*/λ1) K and
noise T. With A = T + (Q/λ1) K, a test point x0, k0 = (Q/λ1) K(x0, X), k00 = (Q/λ1) K(x0, x0):

    mean f̄(x0) = k0ᵀ A⁻¹ y,    variance Σ(x0) = k00 − k0ᵀ A⁻¹ k0,
    train residual y − f̄(X) = T A⁻¹ y,   train error (1/P) T² |A⁻¹y|²,
    mean train variance (1/P) tr(T − T² A⁻¹),
    test error = bias² + variance = mean over test points of (y0 − f̄(x0))² + Σ(x0)

(deepbays' definition: no observation noise T in the test variance). For D outputs the D×D
order parameter enters as k0 = Q⊗K(x0, X)/λ1, and the errors are SUMMED over outputs (mean over
points) — D times deepbays' ``FC_1HL_multiclass`` loss, which averages over outputs.

As in neural-tangents' ``predict.py``, :func:`gp_predictor` factorises once (the eigenbasis of
:class:`~equilibrium.action.Spectrum`, the test rows rotated into it) and returns a closure whose
cost per temperature is O(P·P_test) (O(P) for the training-set quantities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .action import Spectrum

__all__ = ["Prediction", "gp_predictor"]


@dataclass(frozen=True)
class Prediction:
    """Predictor over temperatures (numpy). Test fields are None without a test set / test labels.

    ``train_error`` (nT,), ``train_variance`` (nT,) mean posterior variance on the training set,
    ``test_mean`` (nT, Pt[, D]), ``test_variance`` (nT, Pt[, D]), ``test_bias2``,
    ``test_variance_mean``, ``test_error`` (nT,).
    """

    train_error: np.ndarray
    train_variance: np.ndarray
    test_mean: np.ndarray | None = None
    test_variance: np.ndarray | None = None
    test_bias2: np.ndarray | None = None
    test_variance_mean: np.ndarray | None = None
    test_error: np.ndarray | None = None


def _as(x, dev):
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=dev)


def gp_predictor(
    sp: Spectrum,
    K_test_train: torch.Tensor | None = None,
    K_test_diag: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    *,
    test_rotated: torch.Tensor | None = None,
) -> Callable[..., Prediction]:
    """Factorise once; return ``predict(temperatures, Q) -> Prediction``.

    ``K_test_train`` (Pt, P) and ``K_test_diag`` (Pt,) are NNGP blocks; the one O(Pt P²) step is
    rotating the test rows into K's eigenbasis (pass ``test_rotated`` = K_test_train U to reuse it).
    The shapes follow the targets of ``sp``: vector targets take Q (nT,) and ``y_test`` (Pt,); D output
    columns take Q (nT, D, D) and ``y_test`` (Pt, D), with errors and variances summed over outputs.
    """
    if not sp.scalar:
        return _gp_predictor_matrix(sp, K_test_train, K_test_diag, y_test, test_rotated=test_rotated)
    lv = sp.prior_v
    dev = sp.kappa.device
    F0 = test_rotated if test_rotated is not None else (None if K_test_train is None else K_test_train @ sp.U)
    F0sq = None if F0 is None else F0**2

    def predict(temperatures, Q) -> Prediction:
        T = _as(temperatures, dev).reshape(-1)
        Qv = _as(Q, dev).reshape(-1)
        z = 1.0 / (T[:, None] + Qv[:, None] * sp.a)  # (nT, P): eigenvalues of A⁻¹
        m = z * sp.y_t  # Uᵀ A⁻¹ y
        train_error = T**2 * (m**2).sum(-1) / sp.P
        train_var = T - T**2 * z.sum(-1) / sp.P
        if F0 is None:
            return Prediction(train_error.cpu().numpy(), train_var.cpu().numpy())
        alpha = (Qv / lv)[:, None]
        mean = alpha * (m @ F0.T)
        var = alpha * K_test_diag[None, :] - alpha**2 * (z @ F0sq.T)
        out = dict(test_mean=mean.cpu().numpy(), test_variance=var.cpu().numpy())
        if y_test is not None:
            bias2 = ((y_test[None, :] - mean) ** 2).mean(-1)
            v = var.mean(-1)
            out.update(test_bias2=bias2.cpu().numpy(), test_variance_mean=v.cpu().numpy(),
                       test_error=(bias2 + v).cpu().numpy())
        return Prediction(train_error.cpu().numpy(), train_var.cpu().numpy(), **out)

    return predict


def _gp_predictor_matrix(
    sp: Spectrum,
    K_test_train: torch.Tensor | None,
    K_test_diag: torch.Tensor | None,
    Y_test: torch.Tensor | None,
    *,
    test_rotated: torch.Tensor | None,
) -> Callable[..., Prediction]:
    """:func:`gp_predictor` for D output columns: ``predict(temperatures, Q (nT, D, D))``; errors and
    variances summed over outputs (mean over points)."""
    lv = sp.prior_v
    dev = sp.kappa.device
    a = sp.kappa / lv
    F0 = test_rotated if test_rotated is not None else (None if K_test_train is None else K_test_train @ sp.U)
    F0sq = None if F0 is None else F0**2

    def predict(temperatures, Q) -> Prediction:
        T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
        Q_all = np.asarray(Q, dtype=np.float64).reshape(len(T_all), sp.D, sp.D)
        rows = {k: [] for k in ("train_error", "train_variance", "test_mean", "test_variance")}
        for T, Qn in zip(T_all, Q_all):
            Qt = _as(Qn, dev)
            q, V = torch.linalg.eigh(Qt)
            Z = 1.0 / (T + a[:, None] * q[None, :])  # (P, D) in the V basis
            M = ((sp.Y_t @ V) * Z) @ V.T  # rows B_k⁻¹ ỹ_k
            rows["train_error"].append(T**2 * (M**2).sum() / sp.P)
            trAinv = Z.sum()  # Σ_a tr over outputs of the (a, a) blocks
            rows["train_variance"].append(sp.D * T - T**2 * trAinv / sp.P)
            if F0 is not None:
                rows["test_mean"].append(F0 @ M @ Qt / lv)
                diagQ = torch.diagonal(Qt)
                rows["test_variance"].append(
                    diagQ[None, :] * K_test_diag[:, None] / lv - F0sq @ (Z * q**2) @ (V**2).T / lv**2)
        train_error = torch.stack([torch.as_tensor(x) for x in rows["train_error"]]).cpu().numpy()
        train_var = torch.stack([torch.as_tensor(x) for x in rows["train_variance"]]).cpu().numpy()
        if F0 is None:
            return Prediction(train_error, train_var)
        mean = torch.stack(rows["test_mean"])
        var = torch.stack(rows["test_variance"])
        out = dict(test_mean=mean.cpu().numpy(), test_variance=var.cpu().numpy())
        if Y_test is not None:
            bias2 = ((Y_test[None] - mean) ** 2).sum(-1).mean(-1)
            v = var.sum(-1).mean(-1)
            out.update(test_bias2=bias2.cpu().numpy(), test_variance_mean=v.cpu().numpy(),
                       test_error=(bias2 + v).cpu().numpy())
        return Prediction(train_error, train_var, **out)

    return predict
