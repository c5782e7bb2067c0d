"""Unit-sphere measures of a finite-width posterior: the delta-method correction to the mean kernel.

The unit-sphere measures (arXiv 2303.05161; definitions in ``geometry.class_geometry``) are
non-linear functions of the hidden Gram K_W = (1/N1) Σ_n σ_n σ_nᵀ (σ_n the activation vector of
neuron n over the data). With the normalised kernel g_ij = K_ij/√(K_ii K_jj), the class-block
averages ū_ab = mean_{i∈a, j∈b} g_ij and a linear combination L(ū) (squared unit centroid distance
ū_aa + ū_bb − 2ū_ab; squared unit radius 1 − ū_cc), each measure is √L. What a posterior average
needs is E[√L(K_W)], not √L(E[K_W]) (the mean-kernel value). Second order in δK = K_W − K̄
(docs/theory.md §4.3):

    E[√L] ≈ √(L̄ + b) − Var(L)/(8 L̄^{3/2}),   L̄ = L(ū(K̄)),
    b      = Σ_ij M_ij ½ tr(∂²g_ij Cov(δK))           (second-order bias of each g_ij, i ≠ j)
    Var(L) = (1/N1) Var_σ(σᵀ B σ),  B = M∘(r rᵀ) + diag(−(M∘g)1 / d)   (linear response of L)

where M is the (P×P) coefficient matrix of g_ij in L, d = diag K̄, r = d^{-1/2}, and the bias of
g = x a^{-1/2} b^{-1/2} (x = K_ij, a = K_ii, b = K_jj) is

    b_ij = −Cov(x,a)/(2a√(ab)) − Cov(x,b)/(2b√(ab)) + g (3Var a/(8a²) + 3Var b/(8b²) + Cov(a,b)/(4ab)).

The covariances are those of independent neurons at the Gaussian level, Cov(K_ij, K_kl) =
(1/N1)(E[σ_iσ_jσ_kσ_l] − E[σ_iσ_j]E[σ_kσ_l]): the single-neuron four-point function at the PRIOR
(the tilt changes it at the next order in 1/N1), evaluated by Monte Carlo over the prior
pre-activations h ~ N(0, C) with a fixed seed (deterministic). The derivatives are taken at the
level's mean kernel K̄ = ⟨K_W⟩(T). Checked against an exact Monte Carlo at the prior and against the
sampled level at finite T (tests/test_unit_sphere.py).

The expansion needs Var(L) ≪ L̄²; where Var(L)/L̄² > :data:`MAX_RELATIVE_VARIANCE` (small widths,
a centroid distance near zero) the mean-kernel value is kept and reported as an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gdeq import geometry

from .kernels import input_covariance
from .posterior import _onehot

__all__ = ["NeuronSamples", "prior_neuron_samples", "unit_sphere_measures", "MAX_RELATIVE_VARIANCE",
           "DEFAULT_NEURON_SAMPLES"]

#: above this Var(L)/L̄² the second-order expansion is not trusted (the mean-kernel value is kept)
MAX_RELATIVE_VARIANCE = 0.25
#: Monte Carlo neurons for the four-point function (its error is ~1/√M of an O(1/N1) correction)
DEFAULT_NEURON_SAMPLES = 8192


@dataclass(frozen=True)
class NeuronSamples:
    """Activations of M independent prior neurons on n inputs, ``s`` (M, n), and the moments the
    delta method needs: ``m2`` = E[σ_iσ_j], ``cov_xa[i, j]`` = Cov(σ_iσ_j, σ_i²), ``cov_ab[i, j]`` =
    Cov(σ_i², σ_j²) (all (n, n), sample moments)."""

    s: torch.Tensor
    m2: torch.Tensor
    cov_xa: torch.Tensor
    cov_ab: torch.Tensor

    @property
    def var_a(self) -> torch.Tensor:
        """Var(σ_i²), (n,)."""
        return torch.diagonal(self.cov_ab)


def prior_neuron_samples(x, *, activation: str = "erf", prior_w: float = 1.0,
                         n_samples: int = DEFAULT_NEURON_SAMPLES, seed: int = 0,
                         device: str | torch.device | None = None) -> NeuronSamples:
    """σ(h) for M neurons with h ~ N(0, C), C = x xᵀ/(N0 λ0) (docs/conventions.md §1), and their moments.

    h is drawn through the eigendecomposition of C (O(n³) once, then O(M n²)); the moments cost
    O(M n²). Fixed ``seed``: the same numbers every call.
    """
    X = torch.as_tensor(x, dtype=torch.float64, device=device)
    C = input_covariance(X, X, prior_w)
    lam, V = torch.linalg.eigh(0.5 * (C + C.T))
    root = V * lam.clamp_min(0.0).sqrt()
    gen = torch.Generator(device=X.device).manual_seed(seed)
    z = torch.randn(n_samples, X.shape[0], generator=gen, dtype=torch.float64, device=X.device)
    s = geometry.activation(activation)(z @ root.T)
    m = float(n_samples)
    m2 = s.T @ s / m
    s2 = s * s
    dm = torch.diagonal(m2)
    cov_xa = (s2 * s).T @ s / m - m2 * dm[:, None]
    cov_ab = s2.T @ s2 / m - dm[:, None] * dm[None, :]
    return NeuronSamples(s=s, m2=m2, cov_xa=cov_xa, cov_ab=cov_ab)


def _functionals(n_classes: int, dev) -> list[tuple[str, torch.Tensor, float]]:
    """(name, coefficients on the class-block averages ū (C, C), constant) of each squared measure."""
    out = []
    if n_classes == 2:
        out.append(("centroid", torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64, device=dev), 0.0))
    for c in range(n_classes):
        coef = torch.zeros(n_classes, n_classes, dtype=torch.float64, device=dev)
        coef[c, c] = -1.0
        out.append((f"radius{c}", coef, 1.0))
    return out


def _one_temperature(K: torch.Tensor, ns: NeuronSamples, A: torch.Tensor, width: float):
    """Corrected √L and Var(L)/L̄² for every functional at one mean kernel K (n, n)."""
    d = torch.diagonal(K).clamp_min(torch.finfo(torch.float64).tiny)
    r = d.rsqrt()
    rr = r[:, None] * r[None, :]
    g = K * rr
    va = ns.var_a
    bias = (-0.5 * ns.cov_xa * rr / d[:, None] - 0.5 * ns.cov_xa.T * rr / d[None, :]
            + g * (0.375 * (va / d**2)[:, None] + 0.375 * (va / d**2)[None, :]
                   + 0.25 * ns.cov_ab / (d[:, None] * d[None, :])))
    bias.fill_diagonal_(0.0)  # g_ii = 1 exactly
    bias = bias / width
    U = A.T @ g @ A  # class-block averages of g
    Ub = A.T @ bias @ A
    Z = (ns.s * r) @ A  # (M, C): Σ_{i∈a} r_i σ_i / n_a per sample
    s2 = ns.s * ns.s
    gA = g @ A  # (n, C)
    values, ratios = [], []
    for _, coef, const in _functionals(A.shape[1], K.device):
        L = const + (coef * U).sum()
        b = (coef * Ub).sum()
        beta = -(A * (gA @ coef)).sum(1) / d  # −(M∘g)1/d with M = A coef Aᵀ
        q = ((Z @ coef) * Z).sum(1) + s2 @ beta
        var = q.var() / width
        Lc = L.clamp_min(torch.finfo(torch.float64).tiny)
        values.append((L + b).clamp_min(0.0).sqrt() - var / (8.0 * Lc**1.5))
        ratios.append(var / Lc**2)
    return torch.stack(values), torch.stack(ratios)


def unit_sphere_measures(mean_kernel, labels, samples: NeuronSamples, *, width: float,
                         chunk: int = 8) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Posterior averages of the unit-sphere measures from the mean kernel by the delta method.

    ``mean_kernel``: (nT, n, n) tensor or a :class:`~equilibrium.posterior.TiltedKernel`
    (materialised ``chunk`` temperatures at a time, O(n³) each); ``labels`` (n,) or one-hot;
    ``samples`` from :func:`prior_neuron_samples` on the same inputs. Returns
    ({"unit_centroid_distance": (nT,) (NaN for more than two classes), "unit_class_radius": (nT, C)},
    ``trusted`` (nT,) bool: Var(L)/L̄² ≤ :data:`MAX_RELATIVE_VARIANCE` for every measure).
    """
    dense = isinstance(mean_kernel, torch.Tensor)
    nT = mean_kernel.shape[0] if dense else mean_kernel.n_temperatures
    dev = samples.s.device
    onehot = _onehot(labels, dev)
    A = onehot / onehot.sum(0)
    vals, rats = [], []
    for start in range(0, nT, chunk):
        block = mean_kernel[start:start + chunk] if dense else mean_kernel.dense(slice(start, start + chunk))
        for K in block:
            v, q = _one_temperature(K.to(dev, torch.float64), samples, A, float(width))
            vals.append(v)
            rats.append(q)
    V = torch.stack(vals).cpu().numpy()
    Rt = torch.stack(rats).cpu().numpy()
    binary = A.shape[1] == 2
    out = dict(unit_centroid_distance=V[:, 0] if binary else np.full(nT, np.nan),
               unit_class_radius=V[:, 1:] if binary else V)
    return out, np.all(Rt <= MAX_RELATIVE_VARIANCE, axis=1)
