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

Deep fully connected network (``width=[N_1, .., N_L]``, the model of :mod:`equilibrium.deep`):
h¹ = W¹x/√N0, h^{ℓ+1} = W^{ℓ+1}σ(h^ℓ)/√N_ℓ, f = v·σ(h^L)/√N_L with W¹ ~ N(0, 1/λ0),
W^{ℓ+1} ~ N(0, 1/λ_ℓ), v ~ N(0, 1/λ_L). Write K_0 = C, G_ℓ = κ(K_{ℓ−1}) = E[σ(h)σ(h')],
Ġ_ℓ = E[σ'(h)σ'(h')] with (h, h') ~ N(0, K_{ℓ−1}), K_ℓ = G_ℓ/λ_ℓ (the prior covariance of the
next pre-activation; K_L = the output NNGP kernel). The tangent kernel Θ_ℓ of the pre-activations
h^{ℓ+1} (of f for ℓ = L) with respect to all weights below them obeys, at infinite widths,

    Θ_0 = x·x'/N0 = λ0 C,      Θ_ℓ = G_ℓ + (1/λ_ℓ) Ġ_ℓ ⊙ Θ_{ℓ−1},   ℓ = 1..L:

the weights W^{ℓ+1} (or v) give (1/N_ℓ) Σ_j σ(h_j)σ(h'_j) → G_ℓ (the prior of the weight does not
enter: ∂h/∂W is the activation), and the chain through h^ℓ gives
(1/N_ℓ) Σ_j W_ij² σ'(h_j)σ'(h'_j) Θ_{ℓ−1} → (1/λ_ℓ) Ġ_ℓ Θ_{ℓ−1}. For L = 1 this is K + (λ0/λ1) C K̇.

One-hidden-layer CNN with non-overlapping patches (``architecture="cnn"``, the model of
:mod:`equilibrium.conv`): f = Σ_c Σ_i v_ci σ(w_c·x_i/√(C m²))/√(Nc Np). The readout gives
(1/(Nc Np)) Σ_{c,i} σ(h_ci)σ(h'_ci) → (1/Np) Σ_i K_ii; the shared filter gives
(1/(Nc Np)) Σ_c Σ_{ij} v_ci v_cj σ'(h_ci)σ'(h'_cj) x_i·x'_j/(C m²), whose i ≠ j terms vanish as
E[v_ci v_cj] = δ_ij/λ1. Hence Θ = (1/Np) Σ_i [K_ii + (λ0/λ1) C_ii K̇_ii] and the NNGP kernel
(1/(λ1 Np)) Σ_i K_ii: the average over patches of the one-hidden-layer kernels of each patch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gdeq.geometry.activations import ACTIVATIONS as _ALL_ACTIVATIONS
from gdeq.geometry.activations import activation_derivative, check_activation

from .conv import _check_shape, extract_patches  # the same patch layout as the equilibrium theory
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
    architecture: str = "fc"
    depth: int = 1


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


def _check_prior(name: str, value) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating, np.integer))
                                       and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def _deep_blocks(Z: torch.Tensor, priors: Sequence[float], activation: str, prior_w: float, nodes: int):
    """Output NNGP K_L, NTK Θ_L, G_L and Ġ_L of the symmetric block of Z through the deep recursion."""
    C = input_covariance(Z, Z, prior_w)
    C = 0.5 * (C + C.T)
    Kprev, theta = C, prior_w * C  # Θ_0 = x·x'/N0
    for lam in priors:
        d = torch.diagonal(Kprev).clone()
        G = kernel_from_covariance(d, Kprev, d, activation, nodes=nodes)
        Gd = derivative_kernel(d, Kprev, d, activation, nodes=nodes)
        G, Gd = 0.5 * (G + G.T), 0.5 * (Gd + Gd.T)
        G.diagonal().copy_(kernel_diagonal(d, activation, nodes=nodes))
        Gd.diagonal().copy_(_derivative_diagonal(d, activation, nodes=nodes))
        theta = G + Gd * theta / lam
        Kprev = G / lam
    return Kprev, theta, G, Gd


def tangent_kernels(x_train, x_test=None, *, activation: str = "erf", prior_w: float = 1.0,
                    prior_v: float | Sequence[float] = 1.0, width: int | Sequence[int] | None = None,
                    architecture: str = "fc", patch_size: int | None = None, image_shape=None,
                    device: str | torch.device | None = None, nodes: int = 64) -> TangentKernels:
    """NNGP and NTK blocks at infinite width (module docstring) of

    - ``architecture="fc"``: the one-hidden-layer network (``width`` None or one number:
      NNGP K/λ1, NTK K + (λ0/λ1) C K̇) or the deep one (``width=[N_1, .., N_L]``, ``prior_v`` one λ
      for every layer after the first or the list λ_1..λ_L, λ_L the readout's), by the recursion
      Θ_ℓ = G_ℓ + Ġ_ℓ Θ_{ℓ−1}/λ_ℓ; only the number of layers matters at infinite width;
    - ``architecture="cnn"``: the one-hidden-layer CNN with non-overlapping ``patch_size`` × ``patch_size``
      patches of images ``image_shape`` = (C, H, W) (flattened channels-last as in equilibrium.conv):
      Θ = (1/Np) Σ_i [K_ii + (λ0/λ1) C_ii K̇_ii], NNGP (1/(λ1 Np)) Σ_i K_ii.

    ``x_*`` are (n, N0) arrays (numpy or torch); float64 on ``device`` (default: the input's device).
    ``nodes`` is the Gauss–Hermite order per dimension for activations without a closed form.
    """
    if architecture not in ("fc", "cnn"):
        raise ValueError(f"architecture: must be 'fc' or 'cnn', got {architecture!r}")
    check_activation(activation, NTK_ACTIVATIONS)
    if width is None:
        depth = 1
    elif isinstance(width, (int, np.integer)) and not isinstance(width, bool):
        depth = 1
        if width < 1:
            raise ValueError(f"width: must be a positive integer or a list of them, got {width!r}")
    elif (isinstance(width, (list, tuple)) and len(width) >= 1
          and all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in width)):
        depth = len(width)
    else:
        raise ValueError(f"width: must be a positive integer or a non-empty list of them, got {width!r}")
    if architecture == "cnn" and depth != 1:
        raise ValueError(f"width: the CNN has one convolutional layer (one channel count Nc), got {width!r}")
    _check_prior("prior_w", prior_w)
    if isinstance(prior_v, (list, tuple)):
        if len(prior_v) != depth:
            raise ValueError(f"prior_v: a list needs one λ per layer ({depth}), got {len(prior_v)}")
        priors = tuple(_check_prior("prior_v", p) for p in prior_v)
    else:
        priors = (_check_prior("prior_v", prior_v),) * depth
    if architecture == "fc" and depth == 1:
        if patch_size is not None or image_shape is not None:
            raise ValueError("patch_size: only with architecture='cnn'")
        return _one_layer_kernels(x_train, x_test, activation=activation, prior_w=prior_w, prior_v=priors[0],
                                  device=device, nodes=nodes)
    dev = torch.device(device) if device is not None else (
        x_train.device if isinstance(x_train, torch.Tensor) else torch.device("cpu"))
    X = _as_tensor(x_train, dev)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"x_train: must be a non-empty (P, N0) array, got shape {tuple(X.shape)}")
    P = X.shape[0]
    Z = X
    if x_test is not None:
        Xt = _as_tensor(x_test, dev)
        if Xt.ndim != 2 or Xt.shape[1] != X.shape[1]:
            raise ValueError(f"x_test: must be a (Pt, {X.shape[1]}) array like x_train, got shape {tuple(Xt.shape)}")
        Z = torch.cat([X, Xt])
    if architecture == "fc":
        nngp, ntk, G, Gd = _deep_blocks(Z, priors, activation, prior_w, nodes)
    else:
        shape, m = _check_shape(image_shape, patch_size, X.shape[1])
        Zp = extract_patches(Z, shape, m)  # (n, Np, C m²)
        Np = Zp.shape[1]
        G = Gd = ntk = None
        for i in range(Np):
            Ki, Kdi, Ci = _blocks(Zp[:, i], None, activation, prior_w, nodes)
            ti = Ki + (prior_w / priors[0]) * Ci * Kdi
            G, Gd, ntk = (Ki, Kdi, ti) if G is None else (G + Ki, Gd + Kdi, ntk + ti)
        G, Gd, ntk = G / Np, Gd / Np, ntk / Np  # hidden/derivative: patch averages of K_ii, K̇_ii
        nngp = G / priors[0]
    pv = priors[0] if depth == 1 else priors
    common = dict(nngp_train=nngp[:P, :P], ntk_train=ntk[:P, :P], hidden_train=G[:P, :P],
                  derivative_train=Gd[:P, :P], activation=activation, prior_w=float(prior_w), prior_v=pv,
                  architecture=architecture, depth=depth)
    if x_test is None:
        return TangentKernels(**common)
    return TangentKernels(**common, nngp_test_train=nngp[P:, :P], nngp_test=nngp[P:, P:],
                          ntk_test_train=ntk[P:, :P], ntk_test=ntk[P:, P:])


def _one_layer_kernels(x_train, x_test=None, *, activation: str = "erf", prior_w: float = 1.0, prior_v: float = 1.0,
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
