"""Class-manifold geometry measures, defined once for every part of gdeq.

Every measure is a function of a Gram matrix ``G`` (shape ``(..., P, P)``) and class labels
(shape ``(P,)``), with a leading batch of replicas allowed. The ``*_from_features`` functions
take features ``Phi`` of shape ``(..., P, N)`` and agree with the Gram versions applied to the
hidden-layer Gram of docs/conventions.md §4, ``K_W = Phi Phi^T / N`` (a mean over units, so the numbers
are comparable across widths and with the infinite-width kernel ``K``).

The same functions measure the theory's posterior kernel ``<K_W>(T)``, a sampled network's
``K_W`` and a trained network's features. Measures that are linear in ``G`` (squared centroid
distance, mean squared pair distances, class radius²) therefore give exact posterior averages
when fed ``<K_W>``; the unit-sphere measures (arXiv 2303.05161) are not linear in ``G``.

Inputs may be numpy arrays or torch tensors; the computation runs in float64 torch on the
input's device and the result has the input's type (numpy in -> numpy out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "ClassGeometry",
    "centroid_distance",
    "centroid_distance_matrix",
    "centroid_vector",
    "class_geometry",
    "class_geometry_from_features",
    "class_radius",
    "feature_gram",
    "kernel_target_alignment",
    "mean_pair_distances",
    "participation_ratio",
    "unit_sphere_gram",
    "centroid_distance_from_features",
    "class_radius_from_features",
    "data_fingerprint",
]

ArrayLike = Any  # numpy.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------
# conversion helpers
# --------------------------------------------------------------------------------------------
def _as_tensor(x: ArrayLike, device: torch.device | None = None) -> tuple[torch.Tensor, bool]:
    """Return (float64 tensor, was_numpy)."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype=torch.float64, device=device or x.device), False
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device), True


def _out(x: torch.Tensor, as_numpy: bool) -> ArrayLike:
    return x.detach().cpu().numpy() if as_numpy else x


def _class_indicator(labels: ArrayLike, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """One-hot class membership (P, C) in float64 and the sorted class values.

    ``labels`` holds one class id per sample (ints, or ±1), or a one-hot matrix (P, C).
    """
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.ndim == 2:
        if not np.all((lab == 0) | (lab == 1)) or not np.all(lab.sum(1) == 1):
            raise ValueError("labels: a 2-d label array must be one-hot (rows of 0/1 summing to 1)")
        lab = lab.argmax(1)
    if lab.ndim != 1:
        raise ValueError(f"labels: expected shape (P,) or one-hot (P, C), got {lab.shape}")
    classes, inverse = np.unique(lab, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"labels: need at least two classes, got {classes.tolist()}")
    onehot = torch.zeros(len(lab), len(classes), dtype=torch.float64, device=device)
    onehot[torch.arange(len(lab), device=device), torch.as_tensor(inverse, device=device)] = 1.0
    return onehot, classes


def _check_gram(G: torch.Tensor, n: int) -> None:
    if G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"gram: expected shape (..., P, P), got {tuple(G.shape)}")
    if G.shape[-1] != n:
        raise ValueError(f"labels: length {n} does not match the Gram matrix size {G.shape[-1]}")


def data_fingerprint(x: ArrayLike, y: ArrayLike, *, decimals: int | None = None) -> str:
    """Short hash identifying a data set (inputs ``x``, labels ``y``), so results can be matched to their data.

    sha256 (first 16 hex) of each array's shape and its float64 bytes, x then y. The one fingerprint of
    gdeq: runs and theory curves record it (the bridge refuses to compare a run and a curve made on
    different data), and so do the benchmark caches.

    ``decimals``: round to that many decimals first (``np.round``) and fold −0.0 into 0.0, so the last bits
    of a preprocessing sum (another summation order, another data source of the same examples) do not
    change the fingerprint while another example, order or label does. The phase-diagram caches use
    ``decimals=9`` (benchmarks/phase_diagram.py); the default ``None`` hashes the exact bytes, which is what
    every run directory and curve recorded so far carries — rounding by default would change those
    stored values (a float that lies within round-off of a rounding boundary can still flip).
    """
    import hashlib

    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer))):
        raise ValueError(f"decimals: must be an int or None, got {decimals!r}")
    h = hashlib.sha256()
    for a in (x, y):
        a = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
        if decimals is not None:
            a = np.round(a, int(decimals)) + 0.0  # + 0.0: -0.0 -> 0.0
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def feature_gram(features: ArrayLike) -> ArrayLike:
    """Hidden-layer Gram ``K_W = Phi Phi^T / N`` of features ``(..., P, N)`` (docs/conventions.md §4)."""
    F, np_in = _as_tensor(features)
    return _out(F @ F.transpose(-1, -2) / F.shape[-1], np_in)


def unit_sphere_gram(gram: ArrayLike) -> ArrayLike:
    """Gram matrix of the features projected onto the unit sphere, ``G_ij / sqrt(G_ii G_jj)``."""
    G, np_in = _as_tensor(gram)
    d = torch.diagonal(G, dim1=-2, dim2=-1).clamp_min(torch.finfo(torch.float64).tiny).rsqrt()
    return _out(G * d[..., :, None] * d[..., None, :], np_in)


def centroid_vector(labels: ArrayLike) -> np.ndarray:
    """Binary contrast vector c: +1/P_A on the first class, -1/P_B on the second (docs/conventions.md §4).

    The first class is the one whose label sorts last (``+1`` for ±1 labels); the squared
    distance does not depend on that choice.
    """
    onehot, classes = _class_indicator(labels, torch.device("cpu"))
    if len(classes) != 2:
        raise ValueError(f"labels: the centroid vector needs two classes, got {len(classes)}")
    frac = onehot / onehot.sum(0)
    return (frac[:, 1] - frac[:, 0]).numpy()


# --------------------------------------------------------------------------------------------
# measures of a Gram matrix
# --------------------------------------------------------------------------------------------
def centroid_distance_matrix(gram: ArrayLike, labels: ArrayLike, *, unit_sphere: bool = False) -> ArrayLike:
    """Squared distances between class centroids, ``(..., C, C)``.

    D_ab = m_a^T G m_a + m_b^T G m_b - 2 m_a^T G m_b with m_a the class-a averaging vector.
    """
    G, np_in = _as_tensor(gram)
    onehot, _ = _class_indicator(labels, G.device)
    _check_gram(G, onehot.shape[0])
    if unit_sphere:
        G = unit_sphere_gram(G)
    M = onehot / onehot.sum(0)  # (P, C) class-averaging vectors
    inner = M.T @ G @ M  # (..., C, C) centroid inner products
    diag = torch.diagonal(inner, dim1=-2, dim2=-1)
    return _out(diag[..., :, None] + diag[..., None, :] - 2.0 * inner, np_in)


def centroid_distance(gram: ArrayLike, labels: ArrayLike, *, unit_sphere: bool = False) -> ArrayLike:
    """Squared class-centroid distance ``c^T G c`` of a two-class problem (docs/conventions.md §4).

    For more than two classes use :func:`centroid_distance_matrix`. With ``unit_sphere=True`` the
    features are first projected onto the unit sphere (arXiv 2303.05161's ``D²``).
    """
    G, np_in = _as_tensor(gram)
    onehot, classes = _class_indicator(labels, G.device)
    if len(classes) != 2:
        raise ValueError(
            f"labels: centroid_distance needs two classes, got {len(classes)}; "
            "use centroid_distance_matrix for more"
        )
    _check_gram(G, onehot.shape[0])
    if unit_sphere:
        G = unit_sphere_gram(G)
    c = onehot[:, 1] / onehot[:, 1].sum() - onehot[:, 0] / onehot[:, 0].sum()
    return _out(torch.einsum("i,...ij,j->...", c, G, c), np_in)


def class_radius(gram: ArrayLike, labels: ArrayLike, *, unit_sphere: bool = False) -> ArrayLike:
    """RMS distance of each class's points from their centroid, ``(..., C)``.

    R_c² = mean_{i in c} G_ii - mean_{i,j in c} G_ij. With ``unit_sphere=True`` this is the radius
    R_c of arXiv 2303.05161 (features normalised to unit length first).
    """
    G, np_in = _as_tensor(gram)
    onehot, _ = _class_indicator(labels, G.device)
    _check_gram(G, onehot.shape[0])
    if unit_sphere:
        G = unit_sphere_gram(G)
    M = onehot / onehot.sum(0)
    diag = torch.diagonal(G, dim1=-2, dim2=-1)
    mean_sq_norm = diag @ M  # (..., C)
    centroid_sq = torch.diagonal(M.T @ G @ M, dim1=-2, dim2=-1)
    return _out((mean_sq_norm - centroid_sq).clamp_min(0.0).sqrt(), np_in)


def mean_pair_distances(
    gram: ArrayLike, labels: ArrayLike, *, squared: bool = True, unit_sphere: bool = False
) -> tuple[ArrayLike, ArrayLike]:
    """Mean inter-class and intra-class pair distances ``(inter, intra)``, each ``(...)``.

    Pairs are unordered pairs of distinct points; d_ij² = G_ii + G_jj - 2 G_ij. ``squared=True``
    (default) averages d², which is linear in G and so exact for a posterior-averaged kernel;
    ``squared=False`` averages the Euclidean distance d.
    """
    G, np_in = _as_tensor(gram)
    onehot, _ = _class_indicator(labels, G.device)
    _check_gram(G, onehot.shape[0])
    if unit_sphere:
        G = unit_sphere_gram(G)
    n = onehot.sum(0)  # (C,)
    intra_pairs = (n * (n - 1) / 2).sum()
    if intra_pairs == 0:
        raise ValueError("labels: intra-class distances need a class with at least two points")
    inter_pairs = (n.sum() ** 2 - (n**2).sum()) / 2
    if squared:
        # linear in G: sums of d² over pairs follow from the class block sums S_ab = 1_aᵀ G 1_b
        # and the class traces t_a, without forming the P×P distance matrix.
        S = onehot.T @ G @ onehot  # (..., C, C)
        t = torch.diagonal(G, dim1=-2, dim2=-1) @ onehot  # (..., C)
        S_diag = torch.diagonal(S, dim1=-2, dim2=-1)
        intra_sum = (n * t - S_diag).sum(-1)
        all_sum = n.sum() * t.sum(-1) - S.sum((-1, -2))  # over all unordered pairs
        inter, intra = (all_sum - intra_sum) / inter_pairs, intra_sum / intra_pairs
        return _out(inter, np_in), _out(intra, np_in)
    diag = torch.diagonal(G, dim1=-2, dim2=-1)
    d = (diag[..., :, None] + diag[..., None, :] - 2.0 * G).clamp_min(0.0).sqrt()
    same = onehot @ onehot.T
    off_diag = 1.0 - torch.eye(same.shape[0], dtype=torch.float64, device=G.device)
    intra = (d * (same * off_diag)).sum((-1, -2)) / (2 * intra_pairs)
    inter = (d * (1.0 - same)).sum((-1, -2)) / (2 * inter_pairs)
    return _out(inter, np_in), _out(intra, np_in)


def _centred_frobenius_sq(G: torch.Tensor) -> torch.Tensor:
    """|H G H|_F² for symmetric G, H = I - 11ᵀ/P, without forming HGH: |G|² - 2|G1|²/P + (1ᵀG1)²/P²."""
    P = G.shape[-1]
    row = G.sum(-1)
    return (G * G).sum((-1, -2)) - 2.0 * (row * row).sum(-1) / P + row.sum(-1) ** 2 / P**2


def kernel_target_alignment(gram: ArrayLike, targets: ArrayLike, *, centered: bool = False) -> ArrayLike:
    """Kernel–target alignment ``<G, Y Y^T>_F / (|G|_F |Y Y^T|_F)`` (Cristianini et al. 2002).

    ``targets`` is ±1 (P,) or one-hot (P, D). ``centered=True`` centres both G and Y Y^T with
    H = I - 11^T/P first (Cortes, Mohri, Rostamizadeh 2012). Computed as tr(Zᵀ G Z) with Z = (H)Y,
    so no P×P target matrix is formed (G is taken symmetric).
    """
    G, np_in = _as_tensor(gram)
    Y, _ = _as_tensor(targets, device=G.device)
    if Y.ndim == 1:
        Y = Y[:, None]
    _check_gram(G, Y.shape[0])
    Z = Y - Y.mean(0) if centered else Y
    num = torch.einsum("pd,...pq,qd->...", Z, G, Z)
    g_norm = _centred_frobenius_sq(G).clamp_min(0.0).sqrt() if centered else torch.linalg.matrix_norm(G)
    return _out(num / (g_norm * torch.linalg.matrix_norm(Z.T @ Z)), np_in)


def participation_ratio(gram: ArrayLike) -> ArrayLike:
    """Participation-ratio dimension (sum λ)² / sum λ² of the centred Gram's spectrum.

    Equals the PR of the feature covariance, since both share their non-zero eigenvalues.
    """
    G, np_in = _as_tensor(gram)
    P = G.shape[-1]
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1) - G.sum((-1, -2)) / P  # tr(HGH)
    return _out(tr * tr / _centred_frobenius_sq(G), np_in)


@dataclass(frozen=True)
class ClassGeometry:
    """All class-manifold measures of one Gram matrix (arrays over the leading batch axes)."""

    centroid_distance: ArrayLike  # squared, raw features (two classes) or NaN for C > 2
    centroid_distance_matrix: ArrayLike  # squared, (..., C, C)
    class_radius: ArrayLike  # (..., C)
    inter_distance: ArrayLike  # mean squared inter-class pair distance
    intra_distance: ArrayLike  # mean squared intra-class pair distance
    distance_ratio: ArrayLike  # inter / intra
    unit_centroid_distance: ArrayLike  # Euclidean (not squared) centroid distance on the unit sphere
    unit_class_radius: ArrayLike  # (..., C), arXiv 2303.05161's R_c
    alignment: ArrayLike
    centered_alignment: ArrayLike
    participation_ratio: ArrayLike

    def scalars(self) -> dict[str, ArrayLike]:
        """Flat dict of named measures (per-class arrays split into ``name_c`` entries)."""
        out: dict[str, ArrayLike] = {}
        for name in (
            "centroid_distance",
            "inter_distance",
            "intra_distance",
            "distance_ratio",
            "unit_centroid_distance",
            "alignment",
            "centered_alignment",
            "participation_ratio",
        ):
            out[name] = getattr(self, name)
        for name in ("class_radius", "unit_class_radius"):
            value = getattr(self, name)
            for c in range(value.shape[-1]):
                out[f"{name}_{c}"] = value[..., c]
        return out


def class_geometry(gram: ArrayLike, labels: ArrayLike, targets: ArrayLike | None = None) -> ClassGeometry:
    """Every class-manifold measure of ``gram`` at once.

    ``targets`` (±1 or one-hot) enter the alignments; by default the labels' one-hot encoding.
    """
    G, np_in = _as_tensor(gram)
    onehot, classes = _class_indicator(labels, G.device)
    Y = onehot if targets is None else _as_tensor(targets, device=G.device)[0]
    matrix = centroid_distance_matrix(G, labels)
    G_unit = unit_sphere_gram(G)  # once, for both unit-sphere measures
    unit_matrix = centroid_distance_matrix(G_unit, labels)
    inter, intra = mean_pair_distances(G, labels)
    binary = len(classes) == 2
    nan = torch.full(G.shape[:-2], float("nan"), dtype=torch.float64, device=G.device)
    result = dict(
        centroid_distance=matrix[..., 0, 1] if binary else nan,
        centroid_distance_matrix=matrix,
        class_radius=class_radius(G, labels),
        inter_distance=inter,
        intra_distance=intra,
        distance_ratio=inter / intra,
        unit_centroid_distance=unit_matrix[..., 0, 1].clamp_min(0).sqrt() if binary else nan,
        unit_class_radius=class_radius(G_unit, labels),
        alignment=kernel_target_alignment(G, Y),
        centered_alignment=kernel_target_alignment(G, Y, centered=True),
        participation_ratio=participation_ratio(G),
    )
    return ClassGeometry(**{k: _out(v, np_in) for k, v in result.items()})


# --------------------------------------------------------------------------------------------
# direct feature-space versions (O(P N) instead of O(P² N)); they agree with the Gram versions
# --------------------------------------------------------------------------------------------
def _class_means(F: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    return (onehot / onehot.sum(0)).T @ F  # (..., C, N)


def _prepare_features(features: ArrayLike, unit_sphere: bool) -> tuple[torch.Tensor, bool]:
    F, np_in = _as_tensor(features)
    if unit_sphere:
        F = F / F.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    else:
        F = F / np.sqrt(F.shape[-1])  # K_W = Phi Phi^T / N
    return F, np_in


def centroid_distance_from_features(
    features: ArrayLike, labels: ArrayLike, *, unit_sphere: bool = False
) -> ArrayLike:
    """Squared distance between the two class centroids of ``features`` ``(..., P, N)``.

    Equals ``centroid_distance(feature_gram(features), labels)``.
    """
    F, np_in = _prepare_features(features, unit_sphere)
    onehot, classes = _class_indicator(labels, F.device)
    if len(classes) != 2:
        raise ValueError(f"labels: centroid distance needs two classes, got {len(classes)}")
    mu = _class_means(F, onehot)
    return _out(((mu[..., 1, :] - mu[..., 0, :]) ** 2).sum(-1), np_in)


def class_radius_from_features(features: ArrayLike, labels: ArrayLike, *, unit_sphere: bool = False) -> ArrayLike:
    """Per-class RMS distance from the class centroid, ``(..., C)``; agrees with :func:`class_radius`."""
    F, np_in = _prepare_features(features, unit_sphere)
    onehot, _ = _class_indicator(labels, F.device)
    mu = _class_means(F, onehot)
    resid2 = ((F - onehot @ mu) ** 2).sum(-1)  # (..., P)
    return _out((resid2 @ (onehot / onehot.sum(0))).sqrt(), np_in)


def class_geometry_from_features(
    features: ArrayLike, labels: ArrayLike, targets: ArrayLike | None = None
) -> ClassGeometry:
    """:func:`class_geometry` of the hidden Gram ``Phi Phi^T / N`` of ``features``."""
    return class_geometry(feature_gram(features), labels, targets)
