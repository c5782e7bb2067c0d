"""Neural tangent kernel of the one-hidden-layer network (docs/conventions.md §1), float64 torch.

For f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1 with w_i ~ N(0, I/λ0), v_i ~ N(0, 1/λ1), and gradient descent
on all parameters with one learning rate, the tangent kernel Θ(x, x') = Σ_θ ∂f(x)/∂θ ∂f(x')/∂θ at
initialisation is, at infinite width N1 (law of large numbers over the hidden units),

    readout:      Σ_i ∂f/∂v_i ∂f'/∂v_i = (1/N1) Σ_i σ(h_i) σ(h'_i)            -> K(x, x')
    first layer:  Σ_i ∂f/∂w_i·∂f'/∂w_i = (1/N1) Σ_i v_i² σ'(h_i) σ'(h'_i) x·x'/N0
                                                                          -> (1/λ1) K̇(x, x') x·x'/N0

    Θ(x, x') = K(x, x') + (1/λ1) (x·x'/N0) K̇(x, x') = K + (λ0/λ1) C K̇,

with K = E[σ(h)σ(h')] (:mod:`equilibrium.kernels`), K̇ = E[σ'(h)σ'(h')], and (h, h') Gaussian with the
prior covariance C(x, x') = x·x'/(N0 λ0). The network's prior output covariance (its NNGP kernel)
is E[f(x) f(x')] = K(x, x')/λ1. Closed forms of K̇:

- ``erf``: σ' = (2/√π) e^{−h²}, K̇ = (4/π) / √((1 + 2C_xx)(1 + 2C_yy) − 4C_xy²);
- ``relu``: σ' = 1[h > 0], the arc-cosine kernel of order 0, K̇ = (π − θ)/(2π), cos θ = C_xy/√(C_xx C_yy)
  (Cho & Saul 2009);
- ``identity``: K̇ = 1;

every other activation by the 2-d Gauss–Hermite quadrature of :mod:`equilibrium.kernels` applied to σ'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gdeq.geometry.activations import ACTIVATIONS as _ALL_ACTIVATIONS
from gdeq.geometry.activations import activation_derivative, check_activation

from .kernels import input_covariance, kernel_diagonal, kernel_from_covariance

__all__ = ["NTK_ACTIVATIONS", "TangentKernels", "derivative_kernel", "tangent_kernels"]

#: activations with a tangent kernel (closed form for erf, relu, identity; quadrature otherwise)
NTK_ACTIVATIONS: tuple[str, ...] = tuple(_ALL_ACTIVATIONS)


def derivative_kernel(c11: torch.Tensor, c12: torch.Tensor, c22: torch.Tensor, activation: str, *,
                      nodes: int = 64) -> torch.Tensor:
    """K̇_ij = E[σ'(h_i) σ'(h'_j)] for Var h_i = c11[i], Cov(h_i, h'_j) = c12[i, j], Var h'_j = c22[j]."""
    if activation == "erf":
        det = (1.0 + 2.0 * c11)[:, None] * (1.0 + 2.0 * c22)[None, :] - 4.0 * c12 * c12
        return (4.0 / math.pi) / torch.sqrt(det.clamp_min(torch.finfo(torch.float64).tiny))
    if activation == "relu":
        norm = torch.sqrt(c11[:, None] * c22[None, :]).clamp_min(torch.finfo(torch.float64).tiny)
        theta = torch.arccos((c12 / norm).clamp(-1.0, 1.0))
        return (math.pi - theta) / (2.0 * math.pi)
    if activation == "identity":
        return torch.ones_like(c12)
    return kernel_from_covariance(c11, c12, c22, activation_derivative(activation), nodes=nodes)


def _derivative_diagonal(c: torch.Tensor, activation: str, *, nodes: int) -> torch.Tensor:
    """K̇(x, x) = E[σ'(h)²] (exact 1-d rule: the 2-d one is least accurate at ρ = 1)."""
    if activation in ("erf", "relu", "identity"):
        return torch.diagonal(derivative_kernel(c, torch.diag(c), c, activation))
    return kernel_diagonal(c, activation_derivative(activation), nodes=nodes)


@dataclass(frozen=True)
class TangentKernels:
    """NNGP and NTK blocks of a training set (and optionally a test set), float64 torch.

    ``nngp_*`` is the network's prior output covariance K/λ1; ``ntk_*`` the tangent kernel
    Θ = K + (λ0/λ1) C K̇. Blocks: ``*_train`` (P, P), ``*_test_train`` (Pt, P), ``*_test`` (Pt, Pt)
    (None without a test set). ``hidden_*`` is K = E[σσ] and ``derivative_*`` K̇ = E[σ'σ'] (train block).
    """

    nngp_train: torch.Tensor
    ntk_train: torch.Tensor
    hidden_train: torch.Tensor
    derivative_train: torch.Tensor
    activation: str
    prior_w: float
    prior_v: float
    nngp_test_train: torch.Tensor | None = None
    nngp_test: torch.Tensor | None = None
    ntk_test_train: torch.Tensor | None = None
    ntk_test: torch.Tensor | None = None


def _as_tensor(x, device: torch.device) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return x.to(device=device, dtype=torch.float64)


def _blocks(X1: torch.Tensor, X2: torch.Tensor | None, activation: str, prior_w: float,
            nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K, K̇, C) between X1 and X2 (X2 None: the symmetric block of X1 with exact diagonals)."""
    same = X2 is None
    X2 = X1 if same else X2
    C = input_covariance(X1, X2, prior_w)
    c1 = (X1 * X1).sum(1) / (X1.shape[1] * prior_w)
    c2 = c1 if same else (X2 * X2).sum(1) / (X2.shape[1] * prior_w)
    K = kernel_from_covariance(c1, C, c2, activation, nodes=nodes)
    Kd = derivative_kernel(c1, C, c2, activation, nodes=nodes)
    if same:
        K, Kd = 0.5 * (K + K.T), 0.5 * (Kd + Kd.T)
        K.diagonal().copy_(kernel_diagonal(c1, activation, nodes=nodes))
        Kd.diagonal().copy_(_derivative_diagonal(c1, activation, nodes=nodes))
    return K, Kd, C


def tangent_kernels(x_train, x_test=None, *, activation: str = "erf", prior_w: float = 1.0, prior_v: float = 1.0,
                    device: str | torch.device | None = None, nodes: int = 64) -> TangentKernels:
    """NNGP (K/λ1) and NTK (K + (λ0/λ1) C K̇) blocks of the one-hidden-layer network (module docstring).

    ``x_*`` are (n, N0) arrays (numpy or torch); float64 on ``device`` (default: the input's device).
    ``nodes`` is the Gauss–Hermite order per dimension for activations without a closed form.
    """
    check_activation(activation, NTK_ACTIVATIONS)
    for name, value in (("prior_w", prior_w), ("prior_v", prior_v)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    dev = torch.device(device) if device is not None else (
        x_train.device if isinstance(x_train, torch.Tensor) else torch.device("cpu"))
    X = _as_tensor(x_train, dev)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"x_train: must be a non-empty (P, N0) array, got shape {tuple(X.shape)}")
    scale = prior_w / prior_v  # Θ = K + (λ0/λ1) C K̇
    K, Kd, C = _blocks(X, None, activation, prior_w, nodes)
    common = dict(nngp_train=K / prior_v, ntk_train=K + scale * C * Kd, hidden_train=K, derivative_train=Kd,
                  activation=activation, prior_w=float(prior_w), prior_v=float(prior_v))
    if x_test is None:
        return TangentKernels(**common)
    Xt = _as_tensor(x_test, dev)
    if Xt.ndim != 2 or Xt.shape[1] != X.shape[1]:
        raise ValueError(f"x_test: must be a (Pt, {X.shape[1]}) array like x_train, got shape {tuple(Xt.shape)}")
    K0X, Kd0X, C0X = _blocks(Xt, X, activation, prior_w, nodes)
    K00, Kd00, C00 = _blocks(Xt, None, activation, prior_w, nodes)
    return TangentKernels(**common, nngp_test_train=K0X / prior_v, nngp_test=K00 / prior_v,
                          ntk_test_train=K0X + scale * C0X * Kd0X, ntk_test=K00 + scale * C00 * Kd00)
