"""Posterior observables of the `gaussian` level: hidden kernel ⟨K_W⟩(T), geometry, weights.

The single-neuron tilt (docs/conventions.md §4–5, docs/theory.md §4). To leading order in 1/N1 each
neuron's activation vector φ is reweighted by exp(½ φᵀ J φ) with

    J(T) = (Q/(λ1 N1)) (m mᵀ − A⁻¹),  m = A⁻¹ y                     (single output)
    J(T) = (1/(λ1 N1)) Σ_ab Q_ab (m_a m_bᵀ − (A⁻¹)_ab)              (D outputs)

and, replacing φ by the Gaussian with the same mean μ and covariance K − μμᵀ (Gaussian
equivalence), every second moment linear in the tilt follows from Wick's theorem:

    ⟨K_W⟩(T) = K + K J K − (μᵀJμ) μμᵀ         (hidden Gram; docs/conventions.md §4 when μ = 0)
    ⟨Ω⟩(T)   = C + (C S) J (S C),  S = diag(E[σ'(h)])   (pre-activation Gram, Stein's lemma)

where Ω = (1/N1) Σ_i h_i h_iᵀ, h_i = X w_i/√N0, is the weight second-moment matrix seen through
the data. In the eigenbasis of K, J = U [diag(j) + R W Rᵀ] Uᵀ with a rank-r part (r = 1 single
output, D for D outputs), so :class:`TiltedKernel` represents every such matrix for all
temperatures at once as ``base + F J̃ Fᵀ − γ μμᵀ`` and evaluates quadratic forms and diagonals in
O(P r) and O(P²) per temperature without materialising a P×P matrix per temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .action import Spectrum

__all__ = ["Tilt", "TiltedKernel", "gaussian_tilt", "zero_tilt", "class_measures",
           "class_measures_dense", "MEASURES"]


@dataclass(frozen=True)
class Tilt:
    """J(T) = U [diag(j) + R W Rᵀ] Uᵀ for nT temperatures: ``j`` (nT, P), ``R`` (nT, P, r),
    ``W`` (nT, r, r), ``U`` (P, P)."""

    U: torch.Tensor
    j: torch.Tensor
    R: torch.Tensor
    W: torch.Tensor

    def quadratic(self, H: torch.Tensor) -> torch.Tensor:
        """Ĥᵀ J̃ Ĥ for Ĥ = UᵀV already rotated: H (P, v) or (nT, P, v) -> (nT, v, v)."""
        if H.ndim == 2:
            out = torch.einsum("pv,tp,pw->tvw", H, self.j, H) if H.shape[1] > 1 else \
                (self.j @ H**2)[:, :, None]  # (nT, 1, 1)
            if self.R.shape[-1]:
                RH = self.R.transpose(-1, -2) @ H  # (nT, r, v)
                out = out + RH.transpose(-1, -2) @ self.W @ RH
            return out
        out = (H * self.j[:, :, None]).transpose(-1, -2) @ H
        if self.R.shape[-1]:
            RH = self.R.transpose(-1, -2) @ H
            out = out + RH.transpose(-1, -2) @ self.W @ RH
        return out


def gaussian_tilt(sp: Spectrum, temperatures, Q, *, width: float) -> Tilt:
    """J(T) of the `gaussian` level. Vector targets, Q (nT,): (Q/(λ1N1)) U[m̃m̃ᵀ − diag(z)]Uᵀ, m̃ = z ỹ.
    D output columns, Q (nT, D, D): (1/(λ1N1)) U[M̃QM̃ᵀ − diag(tr(Q B_k⁻¹))]Uᵀ, B_k = T + a_k Q."""
    if not sp.scalar:
        return _gaussian_tilt_matrix(sp, temperatures, Q, width=width)
    dev = sp.kappa.device
    T = torch.as_tensor(np.asarray(temperatures, dtype=np.float64), device=dev).reshape(-1)
    Qv = torch.as_tensor(np.asarray(Q, dtype=np.float64), device=dev).reshape(-1)
    z = 1.0 / (T[:, None] + Qv[:, None] * sp.a)
    s = Qv / (sp.prior_v * width)
    return Tilt(U=sp.U, j=-s[:, None] * z, R=(z * sp.y_t)[:, :, None], W=s[:, None, None])


def _gaussian_tilt_matrix(sp: Spectrum, temperatures, Q, *, width: float) -> Tilt:
    """:func:`gaussian_tilt` for D output columns (a rank-D part per temperature)."""
    dev = sp.kappa.device
    a = sp.kappa / sp.prior_v
    js, Rs, Ws = [], [], []
    for T, Qn in zip(np.asarray(temperatures, dtype=np.float64).reshape(-1), np.asarray(Q)):
        Qt = torch.as_tensor(Qn, dtype=torch.float64, device=dev)
        q, V = torch.linalg.eigh(Qt)
        Z = 1.0 / (T + a[:, None] * q[None, :])
        Rs.append(((sp.Y_t @ V) * Z) @ V.T)
        Ws.append(Qt / (sp.prior_v * width))
        js.append(-(Z @ q) / (sp.prior_v * width))
    return Tilt(U=sp.U, j=torch.stack(js), R=torch.stack(Rs), W=torch.stack(Ws))


def zero_tilt(U: torch.Tensor, n_temperatures: int) -> Tilt:
    """J = 0: the infinite-width (`nngp`) level."""
    z = torch.zeros(n_temperatures, U.shape[0], dtype=torch.float64, device=U.device)
    return Tilt(U=U, j=z, R=z[:, :, None][:, :, :0], W=z[:, :0, None][:, :, :0])


@dataclass(frozen=True)
class TiltedKernel:
    """G(T) = base + F J̃(T) Fᵀ for all temperatures: ``base`` (n, n), ``F`` (n, P) = (left
    factor)·U, ``tilt`` the :class:`Tilt`. E.g. ⟨K_W⟩ train block: base = K, F = U diag(κ)."""

    base: torch.Tensor
    F: torch.Tensor
    tilt: Tilt
    mean: torch.Tensor | None = None  # (n,) activation means μ of the rows (non-odd σ)
    gamma: torch.Tensor | None = None  # (nT,) μᵀJμ over the training set: G −= γ μμᵀ

    def _has_mean(self) -> bool:
        return self.mean is not None and self.gamma is not None

    @property
    def n_temperatures(self) -> int:
        return self.tilt.j.shape[0]

    def quadratic(self, V: torch.Tensor) -> torch.Tensor:
        """Vᵀ G(T) V for V (n, v) or per-temperature V (nT, n, v) -> (nT, v, v)."""
        if V.ndim == 2:
            base = (V.T @ self.base @ V).expand(self.n_temperatures, V.shape[1], V.shape[1])
            H = self.F.T @ V
        else:  # per-temperature vectors: one big matrix product for all temperatures
            nT, n, v = V.shape
            flat = V.permute(1, 0, 2).reshape(n, nT * v)
            base = V.transpose(-1, -2) @ (self.base @ flat).reshape(n, nT, v).permute(1, 0, 2)
            H = (self.F.T @ flat).reshape(self.F.shape[1], nT, v).permute(1, 0, 2)
        out = base + self.tilt.quadratic(H)
        if self._has_mean():
            a = V.T @ self.mean if V.ndim == 2 else torch.einsum("tnv,n->tv", V, self.mean)
            a = a.expand(self.n_temperatures, -1) if a.ndim == 1 else a
            out = out - self.gamma[:, None, None] * a[:, :, None] * a[:, None, :]
        return out

    def diagonal(self) -> torch.Tensor:
        """diag G(T), (nT, n): O(n P) per temperature."""
        d = torch.diagonal(self.base)[None, :] + self.tilt.j @ (self.F**2).T
        if self.tilt.R.shape[-1]:
            FR = torch.einsum("np,tpr->tnr", self.F, self.tilt.R)
            d = d + torch.einsum("tnr,trs,tns->tn", FR, self.tilt.W, FR)
        if self._has_mean():
            d = d - self.gamma[:, None] * self.mean[None, :] ** 2
        return d

    def dense(self, index=slice(None)) -> torch.Tensor:
        """Materialise G(T) for the selected temperatures, (k, n, n): O(n² P) each."""
        j, R, W = self.tilt.j[index], self.tilt.R[index], self.tilt.W[index]
        if j.ndim == 1:
            j, R, W = j[None], R[None], W[None]
        inner = torch.diag_embed(j) + R @ W @ R.transpose(-1, -2)
        out = self.base[None] + self.F[None] @ inner @ self.F.T[None]
        if self._has_mean():
            g = self.gamma[index]
            g = g[None] if g.ndim == 0 else g
            out = out - g[:, None, None] * torch.outer(self.mean, self.mean)[None]
        return out


# ------------------------------------------------------------------------------------------
# class-manifold measures (definitions: geometry module; this is its spectral fast path)
# ------------------------------------------------------------------------------------------
MEASURES = ("centroid_distance", "centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance",
            "distance_ratio", "unit_centroid_distance", "unit_class_radius")


def _onehot(labels: np.ndarray, dev) -> torch.Tensor:
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab.argmax(1)
    _, inv = np.unique(lab, return_inverse=True)
    oh = np.zeros((len(lab), inv.max() + 1))
    oh[np.arange(len(lab)), inv] = 1.0
    return torch.as_tensor(oh, dtype=torch.float64, device=dev)


def _measures_from_sums(S: torch.Tensor, dsum: torch.Tensor, n: torch.Tensor, Su: torch.Tensor) -> dict:
    """Geometry from class-block sums S_ab = 1_aᵀG1_b, diagonal sums d_a, and the unit-sphere
    class sums Su_ab (same definitions as geometry.class_geometry)."""
    inner = S / (n[:, None] * n[None, :])
    dg = torch.diagonal(inner, dim1=-2, dim2=-1)
    matrix = dg[..., :, None] + dg[..., None, :] - 2.0 * inner
    radius = (dsum / n - dg).clamp_min(0.0).sqrt()
    tot_intra = (2.0 * n * dsum - 2.0 * torch.diagonal(S, dim1=-2, dim2=-1)).sum(-1)
    cnt_intra = (n * (n - 1)).sum()
    Dsum = dsum.sum(-1)
    N = n.sum()
    # Σ_{a≠b} [n_b d_a + n_a d_b − 2 S_ab]
    tot_all = 2.0 * N * Dsum - 2.0 * S.sum((-1, -2))
    tot_inter = tot_all - tot_intra
    cnt_inter = N * N - (n * n).sum()
    inter, intra = tot_inter / cnt_inter, tot_intra / cnt_intra
    uinner = Su / (n[:, None] * n[None, :])
    udg = torch.diagonal(uinner, dim1=-2, dim2=-1)
    umatrix = udg[..., :, None] + udg[..., None, :] - 2.0 * uinner
    binary = S.shape[-1] == 2
    nan = torch.full(S.shape[:-2], float("nan"), dtype=S.dtype, device=S.device)
    return dict(
        centroid_distance=matrix[..., 0, 1] if binary else nan,
        centroid_distance_matrix=matrix,
        class_radius=radius,
        inter_distance=inter,
        intra_distance=intra,
        distance_ratio=inter / intra,
        unit_centroid_distance=umatrix[..., 0, 1].clamp_min(0.0).sqrt() if binary else nan,
        unit_class_radius=(1.0 - udg).clamp_min(0.0).sqrt(),
    )


def class_measures(G: TiltedKernel, labels) -> dict[str, np.ndarray]:
    """Class-manifold measures of G(T) for every temperature, O(P C²) + O(P² C) per temperature.

    Same definitions and field names as :func:`geometry.class_geometry` (squared centroid
    distances, radii, mean squared pair distances, Euclidean unit-sphere centroid distance);
    the unit-sphere measures are those of the MEAN kernel, G_ij/√(G_ii G_jj) (mean-kernel
    approximation, see docs/theory.md §4.3). Agreement with geometry on materialised matrices is
    a test.
    """
    dev = G.base.device
    oh = _onehot(labels, dev)
    n = oh.sum(0)
    S = G.quadratic(oh)
    diag = G.diagonal()
    dsum = diag @ oh
    Vu = oh[None] / diag.clamp_min(torch.finfo(torch.float64).tiny).sqrt()[:, :, None]
    Su = G.quadratic(Vu)
    return {k: v.cpu().numpy() for k, v in _measures_from_sums(S, dsum, n, Su).items()}


def class_measures_dense(G: torch.Tensor, labels, chunk: int = 8) -> dict[str, np.ndarray]:
    """The same measures straight from dense Gram matrices (nT, n, n) through the geometry module."""
    from gdeq import geometry

    out: dict[str, list] = {k: [] for k in MEASURES}
    for start in range(0, G.shape[0], chunk):
        geo = geometry.class_geometry(G[start:start + chunk], np.asarray(labels))
        for k in MEASURES:
            out[k].append(torch.as_tensor(getattr(geo, k)).cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}
