"""First-layer weight moments: the one definition shared by the theory levels and the exact sampler.

The observable (docs/conventions.md §5) is the second-moment matrix of the first-layer weights
averaged over units, M_w = (1/N1) Σ_i ⟨w_i w_iᵀ⟩ (prior value I/λ0), read along a few fixed
orthonormal directions of weight space:

- the top-r principal directions of the training inputs, e_j = Xᵀu_j/|Xᵀu_j| with u_j the top
  eigenvectors of C = XXᵀ/(N0 λ0) (eigenvalues c_j), each with its largest-magnitude component made
  positive (:func:`weight_directions`);
- the label direction(s) e_y = Xᵀy/|Xᵀy|, one per output column.

Measured on first-layer weights W (N1, N0) this is :func:`measure_weight_moments`. A sampler that
only keeps the pre-activation Gram Ω = (1/N1) Σ_i h_i h_iᵀ = X M_w Xᵀ/N0 (P × P, h_i = Xw_i/√N0)
gets the same numbers from Ω, relative to the prior (:func:`weight_moment_projections`):

    λ0 e_jᵀ M_w e_l = u_jᵀ Ω u_l / √(c_j c_l),     λ0 e_yᵀ M_w e_y = yᵀΩy / yᵀCy,

because |Xᵀu_j|² = N0 λ0 c_j. Both equal the identity (resp. 1) in the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .linalg import eigh

__all__ = ["N_WEIGHT_DIRECTIONS", "PrincipalDirections", "principal_directions", "weight_directions",
           "label_directions", "tilted_weight_moments",
           "measure_weight_moments", "weight_moment_projections"]

N_WEIGHT_DIRECTIONS = 8


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(a if isinstance(a, torch.Tensor) else np.asarray(a), dtype=torch.float64)


@dataclass(frozen=True)
class PrincipalDirections:
    """Top principal directions of training inputs X (P, N0), in both spaces.

    ``sample`` (P, r): unit eigenvectors u_j of XXᵀ (columns); ``weight`` (r, N0): e_j = Xᵀu_j/|Xᵀu_j|
    (orthonormal rows); ``gram_eigenvalues`` (r,): the eigenvalues s_j² of XXᵀ, descending. Signs: the
    largest-magnitude component of every e_j is positive (u_j carries the same sign).
    """

    sample: torch.Tensor
    weight: torch.Tensor
    gram_eigenvalues: torch.Tensor


def principal_directions(x_train, n: int = N_WEIGHT_DIRECTIONS) -> PrincipalDirections:
    """The top-n principal directions of X (exact, from the top-n eigenpairs of the smaller of XᵀX
    and XXᵀ: cost O(min(P, N0)³)); directions with eigenvalue ≤ 1e-12 × the largest are dropped."""
    if n < 1:
        raise ValueError(f"n: must be ≥ 1, got {n}")
    X = _tensor(x_train)
    if X.ndim != 2:
        raise ValueError(f"x_train: must have shape (P, N0), got {tuple(X.shape)}")
    P, N0 = X.shape
    tiny = torch.finfo(torch.float64).tiny
    k = min(n, P, N0)
    if N0 <= P:
        ev, E = eigh(X.T @ X, top=k)  # E: top right singular vectors (N0, k)
    else:
        ev, Uc = eigh(X @ X.T, top=k)
        E = X.T @ Uc / ev.clamp_min(tiny).sqrt()
    order = torch.argsort(ev, descending=True)[:n]
    order = order[ev[order] > 1e-12 * ev.max()]
    ev, E = ev[order], E[:, order].T  # (r, N0)
    sign = torch.sign(E.gather(1, E.abs().argmax(1, keepdim=True)))
    E = E * sign
    U = X @ E.T / ev.clamp_min(tiny).sqrt()  # u_j = X e_j / s_j, the matching sample-space directions
    return PrincipalDirections(sample=U, weight=E, gram_eigenvalues=ev)


def weight_directions(x_train, n: int = N_WEIGHT_DIRECTIONS) -> np.ndarray:
    """Top-n principal directions of the inputs in weight space, (r, N0) orthonormal rows, r ≤ n: the
    leading right singular vectors of X, each with its largest-magnitude component made positive.
    These are the directions of ``TemperatureCurve.weight_moments``, of the single_neuron level and of
    the sampler's ``weight_moment_pcs``; the theory value of the moments holds for any orthonormal
    directions."""
    return principal_directions(x_train, n).weight.cpu().numpy()


def label_directions(x_train, y_train) -> torch.Tensor:
    """e_y = Xᵀy/|Xᵀy| per output column, (D, N0)."""
    X = _tensor(x_train)
    Y = _tensor(y_train).reshape(X.shape[0], -1)
    Ey = X.T @ Y
    return (Ey / Ey.norm(dim=0, keepdim=True)).T


def measure_weight_moments(W, directions) -> np.ndarray:
    """(1/N1) Σ_i (e_j·w_i)(e_l·w_i) for first-layer weights W (..., N1, N0) and directions E (r, N0):
    what ``TemperatureCurve.weight_moments`` predicts once averaged over posterior samples."""
    Wt = _tensor(W)
    E = _tensor(directions).to(Wt.device)
    proj = Wt @ E.T  # (..., N1, r)
    return (proj.transpose(-1, -2) @ proj / Wt.shape[-2]).cpu().numpy()


def weight_moment_projections(
    omega, x_train, y_train, *, prior_w: float = 1.0, n_components: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Weight moments relative to the prior from a pre-activation Gram Ω (..., P, P) (module docstring).

    Returns ``(label, pcs)``: label (..., D) = aᵀΩa / aᵀCa for each label column a (= λ0 e_yᵀM_w e_y)
    and pcs (..., r, r) = u_jᵀΩu_l / √(c_j c_l) (= λ0 × ``weight_moments`` along
    :func:`weight_directions`), C = XXᵀ/(N0 λ0). Both are 1 / the identity in the prior.
    """
    if not prior_w > 0:
        raise ValueError(f"prior_w: must be > 0, got {prior_w!r}")
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(x.shape[0], -1)
    n0 = x.shape[1]
    pd = principal_directions(x, n_components)
    u = pd.sample.numpy()
    c = pd.gram_eigenvalues.numpy() / (n0 * prior_w)  # eigenvalues of C
    C = x @ x.T / (n0 * prior_w)
    om = np.asarray(omega, dtype=np.float64)
    label = np.einsum("pd,...pq,qd->...d", y, om, y) / np.einsum("pd,pq,qd->d", y, C, y)
    pcs = np.einsum("pk,...pq,ql->...kl", u, om, u) / np.sqrt(c[:, None] * c[None, :])
    return label, pcs


def tilted_weight_moments(tilt, eigenvectors: torch.Tensor, slope: torch.Tensor, x_train: torch.Tensor,
                          y_train: torch.Tensor, directions, *, prior_w: float) -> tuple[np.ndarray, np.ndarray]:
    """Theory value of the weight moments for a level with a spectral tilt J(T) (docs/conventions.md §5):

        M_w = (1/N1) Σ_i ⟨w_i w_iᵀ⟩ = I/λ0 + (1/(λ0² N0)) Xᵀ S J S X,   S = diag(slope),

    projected on ``directions`` E (r, N0) -> (nT, r, r), and on the label direction(s) e_y -> (nT,)
    (mean over outputs). ``tilt`` is an ``equilibrium.posterior.Tilt`` in the eigenbasis
    ``eigenvectors`` (P, P) of K; cost O(P²·r) for the rotation, then O(P·r) per temperature.
    """
    X = x_train
    N0 = X.shape[1]
    r = np.shape(directions)[0]
    dirs = torch.cat([torch.as_tensor(np.asarray(directions), dtype=torch.float64, device=X.device),
                      label_directions(X, y_train).to(X.device)])
    H = eigenvectors.T @ (slope[:, None] * (X @ dirs.T))  # S X e rotated into K's eigenbasis
    M = tilt.quadratic(H) / (prior_w**2 * N0) + (dirs @ dirs.T)[None] / prior_w  # (nT, r + D, r + D)
    label = torch.diagonal(M[:, r:, r:], dim1=-2, dim2=-1).mean(-1)
    return M[:, :r, :r].cpu().numpy(), label.cpu().numpy()
