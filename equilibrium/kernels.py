"""NNGP kernels of a one-hidden-layer network (docs/conventions.md §1), float64 torch on CPU or GPU.

With first-layer weights w ~ N(0, I/λ0) the pre-activations h(x) = w·x/√N0 are jointly Gaussian
with covariance ``C(x, x') = x·x' / (N0 λ0)``. The hidden-layer kernel is the second moment

    K(x, x') = E_w[σ(h(x)) σ(h(x'))],

a function of (C(x,x), C(x,x'), C(x',x')). Closed forms:

- ``erf``: (2/π) arcsin(2C_xy / √((1 + 2C_xx)(1 + 2C_yy)))  (Williams 1997);
- ``relu``: the arc-cosine kernel of order 1 (Cho & Saul 2009),
  √(C_xx C_yy)/(2π) (sin θ + (π − θ) cos θ), cos θ = C_xy/√(C_xx C_yy); its mean
  E[relu(h)] = √(C_xx/(2π)) is non-zero, so :class:`KernelBlocks` also carries the mean vector μ
  (K includes the mean mode μμᵀ; the action renormalises all of K by the same Q at leading order,
  while the posterior kernel needs μ separately — docs/theory.md §2.2 and §4);
- ``identity``: C_xy.

Every other elementwise activation (``tanh``, ``gelu``, ``sigmoid``, ``softplus`` or any torch
callable) is integrated by 2-d Gauss–Hermite quadrature on the bivariate Gaussian of (h, h'):
h = √C_xx z1, h' = √C_yy (ρ z1 + √(1 − ρ²) z2), ρ = C_xy/√(C_xx C_yy).

Besides K the blocks carry the per-point mean μ(x) = E[σ(h(x))] and the slope
E[σ'(h(x))] = E[h σ(h)]/C_xx (Stein's lemma), which the weight observables need.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from gdeq import geometry
from gdeq.geometry.activations import Activation

__all__ = [
    "ACTIVATIONS",
    "ODD_ACTIVATIONS",
    "KernelBlocks",
    "input_covariance",
    "kernel_from_covariance",
    "kernel_diagonal",
    "activation_mean",
    "activation_slope",
    "nngp_kernels",
]

# σ by name, the names and which are odd: one table for all of gdeq (gdeq.geometry.activations). Here only
# the closed forms below differ per name; every other activation goes through the quadrature.
ACTIVATIONS = geometry.ACTIVATIONS
ODD_ACTIVATIONS = geometry.ODD_ACTIVATIONS
_CLOSED_FORM = ("erf", "relu", "identity")


_NODES_1D = 200  # 1-d rules are cheap: use many nodes (saturating σ² converges slowly at large variance)


def _gauss_hermite(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of E_{z~N(0,1)}[f(z)] ≈ Σ w_i f(z_i) (probabilists' Hermite)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    return (torch.as_tensor(z, dtype=torch.float64, device=device),
            torch.as_tensor(w, dtype=torch.float64, device=device))


def input_covariance(x1: torch.Tensor, x2: torch.Tensor, prior_w: float) -> torch.Tensor:
    """C = x1 x2ᵀ / (N0 λ0) (docs/conventions.md §1)."""
    return x1 @ x2.T / (x1.shape[1] * prior_w)


def kernel_from_covariance(
    c11: torch.Tensor, c12: torch.Tensor, c22: torch.Tensor, activation: Activation, *, nodes: int = 64,
    chunk_elements: int = 2**24,
) -> torch.Tensor:
    """K_ij = E[σ(h_i) σ(h'_j)] for Var h_i = c11[i], Cov = c12[i, j], Var h'_j = c22[j]."""
    if activation == "erf":
        return (2.0 / math.pi) * torch.asin(
            (2.0 * c12 / torch.sqrt((1.0 + 2.0 * c11)[:, None] * (1.0 + 2.0 * c22)[None, :])).clamp(-1.0, 1.0)
        )
    if activation == "relu":
        norm = torch.sqrt(c11[:, None] * c22[None, :])
        u = (c12 / norm.clamp_min(torch.finfo(torch.float64).tiny)).clamp(-1.0, 1.0)
        theta = torch.arccos(u)
        return norm / (2.0 * math.pi) * (torch.sqrt(1.0 - u * u) + (math.pi - theta) * u)
    if activation == "identity":
        return c12.clone()
    if _equal(c11) and _equal(c22) and abs(float(c11[0]) - float(c22[0])) <= 1e-12 * float(c11[0]):
        return _tabulated(float(c11[0]), c12 / float(c11[0]), activation)
    return _direct_quadrature(c11, c12, c22, activation, nodes=nodes, chunk_elements=chunk_elements)


def _equal(c: torch.Tensor) -> bool:
    return bool((c.max() - c.min()) <= 1e-12 * c.abs().max())


_TABLE_POINTS = 2049  # uniform ρ grid on [-1, 1]; local cubic interpolation error ~ h⁴ ≈ 1e-12


def _tabulated(c: float, rho: torch.Tensor, activation: Activation) -> torch.Tensor:
    """Equal variances c (e.g. sphere-normalised inputs): K depends on ρ only, so tabulate K(ρ)
    once by 80-node 2-d Gauss–Hermite and interpolate (4-point Lagrange on a uniform grid)."""
    table = _table(c, activation, str(rho.device))
    h = 2.0 / (_TABLE_POINTS - 1)
    t = (rho.clamp(-1.0, 1.0) + 1.0) / h
    i = t.floor().long().clamp(1, _TABLE_POINTS - 3)
    u = t - i  # position within [x_i, x_{i+1}], nodes at -1, 0, 1, 2
    f0, f1, f2, f3 = table[i - 1], table[i], table[i + 1], table[i + 2]
    return (-u * (u - 1) * (u - 2) / 6 * f0 + (u + 1) * (u - 1) * (u - 2) / 2 * f1
            - (u + 1) * u * (u - 2) / 2 * f2 + (u + 1) * u * (u - 1) / 6 * f3)


@functools.lru_cache(maxsize=16)
def _table(c: float, activation: Activation, device: str) -> torch.Tensor:
    grid = torch.linspace(-1.0, 1.0, _TABLE_POINTS, dtype=torch.float64, device=device)
    cc = torch.full((_TABLE_POINTS,), c, dtype=torch.float64, device=device)
    return _direct_quadrature(cc, (c * grid)[:, None], cc[:1], activation, nodes=80)[:, 0]


def _direct_quadrature(
    c11: torch.Tensor, c12: torch.Tensor, c22: torch.Tensor, activation: Activation, *, nodes: int,
    chunk_elements: int = 2**24,
) -> torch.Tensor:
    sigma = geometry.activation(activation)
    z, w = _gauss_hermite(nodes, c12.device)
    s1 = torch.sqrt(c11.clamp_min(0.0))
    s2 = torch.sqrt(c22.clamp_min(0.0))
    out = torch.empty_like(c12)
    # σ(h_i) at the nodes, (n1, nodes), weighted: reused for every column
    f1 = sigma(s1[:, None] * z[None, :]) * w[None, :]
    rows = max(1, chunk_elements // max(1, c12.shape[1] * nodes * nodes))
    for start in range(0, c12.shape[0], rows):
        sl = slice(start, start + rows)
        rho = (c12[sl] / (s1[sl, None] * s2[None, :]).clamp_min(torch.finfo(torch.float64).tiny)).clamp(-1.0, 1.0)
        comp = torch.sqrt(1.0 - rho * rho)
        # h'_j at node pair (a, b): s2_j (ρ z_a + √(1−ρ²) z_b)
        h2 = s2[None, :, None, None] * (rho[:, :, None, None] * z[None, None, :, None]
                                         + comp[:, :, None, None] * z[None, None, None, :])
        inner = (sigma(h2) * w[None, None, None, :]).sum(-1)  # (rows, n2, nodes_a)
        out[sl] = torch.einsum("ia,ija->ij", f1[sl], inner)
    return out


def kernel_diagonal(c: torch.Tensor, activation: Activation, *, nodes: int = 64) -> torch.Tensor:
    """K(x, x) = E[σ(h)²], h ~ N(0, c)."""
    if activation == "erf":
        return (2.0 / math.pi) * torch.asin(2.0 * c / (1.0 + 2.0 * c))
    if activation == "relu":
        return c / 2.0
    if activation == "identity":
        return c.clone()
    z, w = _gauss_hermite(max(nodes, _NODES_1D), c.device)
    return (geometry.activation(activation)(torch.sqrt(c)[:, None] * z[None, :]) ** 2 * w).sum(-1)


def activation_mean(c: torch.Tensor, activation: Activation, *, nodes: int = 64) -> torch.Tensor:
    """μ(x) = E[σ(h)], h ~ N(0, c); exactly zero for the odd activations."""
    if isinstance(activation, str) and activation in ODD_ACTIVATIONS:
        return torch.zeros_like(c)
    if activation == "relu":
        return torch.sqrt(c / (2.0 * math.pi))
    z, w = _gauss_hermite(max(nodes, _NODES_1D), c.device)
    return (geometry.activation(activation)(torch.sqrt(c)[:, None] * z[None, :]) * w).sum(-1)


def activation_slope(c: torch.Tensor, activation: Activation, *, nodes: int = 64) -> torch.Tensor:
    """E[σ'(h)] = E[h σ(h)]/c, h ~ N(0, c) (Stein's lemma)."""
    if activation == "erf":
        return (2.0 / math.sqrt(math.pi)) / torch.sqrt(1.0 + 2.0 * c)
    if activation == "relu":
        return torch.full_like(c, 0.5)
    if activation == "identity":
        return torch.ones_like(c)
    z, w = _gauss_hermite(max(nodes, _NODES_1D), c.device)
    s = torch.sqrt(c)
    return (z[None, :] * geometry.activation(activation)(s[:, None] * z[None, :]) * w).sum(-1) / s


@dataclass(frozen=True)
class KernelBlocks:
    """NNGP kernel blocks of a training set (and optionally a test set), float64 torch.

    ``train`` (P, P) is K; ``test_train`` (Pt, P), ``test`` (Pt, Pt) the test blocks (None without
    a test set). ``mean_*`` is μ = E[σ(h)] per point (all zero for odd activations),
    ``slope_*`` is E[σ'(h)] per point, ``cov_train`` the input covariance C (P, P) and
    ``cov_test_train`` (Pt, P).
    """

    train: torch.Tensor
    mean_train: torch.Tensor
    slope_train: torch.Tensor
    cov_train: torch.Tensor
    test_train: torch.Tensor | None = None
    test: torch.Tensor | None = None
    mean_test: torch.Tensor | None = None
    slope_test: torch.Tensor | None = None
    cov_test_train: torch.Tensor | None = None

    @property
    def has_mean(self) -> bool:
        """Whether the activation has a non-zero mean (a mean mode μμᵀ in K)."""
        return bool(self.mean_train.abs().max() > 0)

    @property
    def test_diagonal(self) -> torch.Tensor | None:
        return None if self.test is None else torch.diagonal(self.test)


def _mean_is_zero(mean: torch.Tensor, diag: torch.Tensor) -> bool:
    return bool(mean.abs().max() <= 1e-12 * diag.abs().max().sqrt().clamp_min(1e-300))


def nngp_kernels(
    x_train, x_test=None, *, activation: Activation = "erf", prior_w: float = 1.0,
    device: str | torch.device | None = None, nodes: int = 64,
) -> KernelBlocks:
    """Train×train, test×train and test×test NNGP kernel blocks plus the per-point mean and slope.

    ``x_*`` are (n, N0) arrays (numpy or torch); the computation is float64 on ``device``
    (default: the input's device, CPU for numpy). ``nodes`` is the Gauss–Hermite order per
    dimension for activations without a closed form.
    """
    geometry.check_activation(activation, callables=True)  # one ValueError naming ``activation``
    dev = torch.device(device) if device is not None else (
        x_train.device if isinstance(x_train, torch.Tensor) else torch.device("cpu"))
    X = torch.as_tensor(np.asarray(x_train) if not isinstance(x_train, torch.Tensor) else x_train,
                        dtype=torch.float64).to(dev)
    C = input_covariance(X, X, prior_w)
    c = torch.diagonal(C).clone()
    K = kernel_from_covariance(c, C, c, activation, nodes=nodes)
    K = 0.5 * (K + K.T)
    diag = kernel_diagonal(c, activation, nodes=nodes)
    K.diagonal().copy_(diag)  # exact diagonal (the 2-d rule is slightly less accurate at ρ = 1)
    mean = activation_mean(c, activation, nodes=nodes)
    if _mean_is_zero(mean, diag):
        mean = torch.zeros_like(mean)
    slope = activation_slope(c, activation, nodes=nodes)
    if x_test is None:
        return KernelBlocks(train=K, mean_train=mean, slope_train=slope, cov_train=C)
    Xt = torch.as_tensor(np.asarray(x_test) if not isinstance(x_test, torch.Tensor) else x_test,
                         dtype=torch.float64).to(dev)
    C0X = input_covariance(Xt, X, prior_w)
    C00 = input_covariance(Xt, Xt, prior_w)
    c0 = torch.diagonal(C00).clone()
    K0X = kernel_from_covariance(c0, C0X, c, activation, nodes=nodes)
    K00 = kernel_from_covariance(c0, C00, c0, activation, nodes=nodes)
    K00 = 0.5 * (K00 + K00.T)
    K00.diagonal().copy_(kernel_diagonal(c0, activation, nodes=nodes))
    mean0 = activation_mean(c0, activation, nodes=nodes)
    if not bool(mean.abs().max() > 0):
        mean0 = torch.zeros_like(mean0)
    return KernelBlocks(
        train=K, mean_train=mean, slope_train=slope, cov_train=C, test_train=K0X, test=K00,
        mean_test=mean0, slope_test=activation_slope(c0, activation, nodes=nodes), cov_test_train=C0X,
    )
