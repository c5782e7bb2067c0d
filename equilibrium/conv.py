"""One-hidden-layer convolutional network: local kernel renormalisation (patch × patch order parameter).

Model (as deepbays' ``rkgp.CONV_1HL``, docs/conventions.md §1 applied to patches): an image
x of shape (C, H, W) is cut into Np = (H/m)(W/m) non-overlapping m × m patches x_i (all C
channels; stride = mask = m, no padding); Nc channels (filters) w_c ~ N(0, I/λ0) act on every
patch and a readout weight v_ci ~ N(0, 1/λ1) per channel and patch gives

    f(x) = Σ_c Σ_i v_ci σ(w_c·x_i/√(C m²)) / √(Nc Np).

Patch kernels: C_ij(x, x') = x_i·x'_j/(C m² λ0), K_ij = κ(C_ii, C_ij, C_jj) (the NNGP kernel
of equilibrium.kernels for each patch pair). With the Np × Np order parameter Q (renormalising
the readout's patch-patch second moments, Q = I in the prior: the NNGP is local, Σ_i K_ii), the
effective action per channel is

    S(Q) = tr Q − log det Q + (1/Nc)[log det A + yᵀA⁻¹y],   A = T·I + Σ_ij Q_ij K_ij/(λ1 Np).

The independent variables are q_p = Q_ij for i ≤ j (Np(Np+1)/2 of them); the symmetric
matrices B_p = (K_ij + K_ji)/(λ1 Np) (K_ii/(λ1 Np) on the diagonal) are stored once, so one
evaluation costs one Cholesky and one inverse of A (O(P³)) plus O(Np² P²) contractions:

    ∂S/∂q_p = ⟨I − Q⁻¹, E_p⟩ + (1/Nc)[⟨A⁻¹, B_p⟩ − aᵀB_p a],   a = A⁻¹y,
    ∂²S/∂q_p∂q_r = ⟨Q⁻¹E_rQ⁻¹, E_p⟩ − (1/Nc)[⟨A⁻¹B_rA⁻¹, B_p⟩ − 2 (A⁻¹B_r a)ᵀB_p a],

E_p the symmetric unit matrix of pair p. Saddle point: damped Newton (exact Hessian; for more than
``exact_hessian_max`` variables the exact Hessian is computed at the first temperature and on
failures, and carried along T with BFGS updates otherwise), steps kept inside Q ≻ 0, continued
down in T from the prior Q = I and back up; distinct minima are counted and the lowest kept.

Predictor: GP with kernel K_R = Σ_ij Q*_ij K_ij/(λ1 Np) and noise T (docs/conventions.md §3).
Geometry: class measures (gdeq.geometry) of the renormalised kernel K_R(T) (``reference``: the
prior Q = I, i.e. the channel-level NNGP Gram (1/(λ1 Np)) Σ_i K_ii) and, per patch, of K_ii.

Not covered (refused with a ValueError): overlapping patches (stride ≠ mask), padding, images
whose sides are not multiples of the patch size, pooling, more than one convolutional layer,
biases, and multi-output (one-hot) targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from gdeq import geometry

from . import inputs
from .kernels import kernel_diagonal, kernel_from_covariance

__all__ = ["CONV_ACTIVATIONS", "ConvProblem", "ConvSaddlePoint", "ConvCurve", "conv_problem", "extract_patches",
           "conv_effective_action", "conv_action_gradient", "conv_action_hessian", "solve_conv_saddle",
           "conv_temperature_curve"]

CONV_ACTIVATIONS: tuple[str, ...] = ("erf", "relu", "identity")
GEOMETRY_MEASURES = ("centroid_distance", "centroid_distance_matrix", "class_radius", "inter_distance",
                     "intra_distance", "distance_ratio", "unit_centroid_distance", "unit_class_radius")


def _check_shape(image_shape, patch_size, n_features: int) -> tuple[tuple[int, int, int], int]:
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
            or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in image_shape)):
        raise ValueError(f"image_shape: must be (C, H, W) positive integers, got {image_shape!r}")
    C, H, W = (int(s) for s in image_shape)
    if C * H * W != n_features:
        raise ValueError(f"image_shape: C·H·W = {C * H * W} does not match the {n_features} input features")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise ValueError(f"patch_size: must be a positive integer, got {patch_size!r}")
    m = int(patch_size)
    if H % m or W % m:
        raise ValueError(f"patch_size: non-overlapping patches (stride = patch size) must tile the image; "
                         f"{m} does not divide H = {H} and W = {W} (overlapping patches are not covered)")
    return (C, H, W), m


def extract_patches(x: torch.Tensor, image_shape, patch_size: int) -> torch.Tensor:
    """(P, H·W·C) → (P, Np, m·m·C); patches in row-major order (as deepbays' divide2dImage).

    Flattened images are channels-last (H, W, C), as ``gd_dynamics.data.load_task`` and
    ``gd_dynamics.models.ReplicaCNN`` lay out colour images (no difference for C = 1)."""
    C, H, W = image_shape
    m = patch_size
    P = x.shape[0]
    return (x.reshape(P, H // m, m, W // m, m, C).permute(0, 1, 3, 2, 4, 5)
            .reshape(P, (H // m) * (W // m), m * m * C))


def _pairs(Np: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(Np)
    return i, j


@dataclass(frozen=True)
class ConvProblem:
    """Training side of the CNN action (float64 torch): ``B`` (n_pairs, P, P) the symmetric pair
    kernels B_p, ``y`` (P,), ``pairs`` (i, j) with i ≤ j, ``patch_diagonal`` (Np, P, P) = K_ii,
    the patches and the architecture."""

    B: torch.Tensor
    y: torch.Tensor
    pairs: tuple[np.ndarray, np.ndarray]
    patch_diagonal: torch.Tensor
    patches: torch.Tensor
    channels: float
    n_patches: int
    patch_size: int
    image_shape: tuple[int, int, int]
    prior_w: float
    prior_v: float
    activation: str

    @property
    def P(self) -> int:
        return self.y.shape[0]

    @property
    def n_vars(self) -> int:
        return len(self.pairs[0])

    def Q_matrix(self, q: np.ndarray) -> np.ndarray:
        Q = np.zeros((self.n_patches, self.n_patches))
        i, j = self.pairs
        Q[i, j] = q
        Q[j, i] = q
        return Q

    def q_vector(self, Q: np.ndarray) -> np.ndarray:
        return np.asarray(Q)[self.pairs]


def _patch_cov(Xa: torch.Tensor, Xb: torch.Tensor, i: int, j: int, norm: float) -> torch.Tensor:
    """C_ij(μ, ν) = x_i^μ·x_j^ν/(C m² λ0): (Pa, Pb)."""
    return Xa[:, i] @ Xb[:, j].T * norm


def conv_problem(x_train, y_train, *, channels: float, patch_size: int, image_shape, activation: str = "erf",
                 prior_w: float = 1.0, prior_v: float = 1.0, device=None) -> ConvProblem:
    """Validate inputs and build the pair kernels (the only O(Np² P²) kernel step of a curve)."""
    inputs.number("width", channels, at_least=1.0)  # the number of channels Nc
    inputs.number("prior_w", prior_w)
    inputs.number("prior_v", prior_v)
    if activation not in CONV_ACTIVATIONS:
        raise ValueError(f"activation: the CNN theory supports {CONV_ACTIVATIONS}, got {activation!r}")
    X, Y, _, _, _ = inputs.data_set(x_train, y_train, labels="pm1")
    shape, m = _check_shape(image_shape, patch_size, X.shape[1])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    Xp = extract_patches(torch.as_tensor(X, device=dev), shape, m)
    Np = Xp.shape[1]
    norm = 1.0 / (shape[0] * m * m * prior_w)
    cdiag = torch.einsum("aik,aik->ia", Xp, Xp) * norm  # (Np, P): C_ii(μ, μ)
    i_idx, j_idx = _pairs(Np)
    B = torch.empty((len(i_idx), X.shape[0], X.shape[0]), dtype=torch.float64, device=dev)
    Kii = torch.empty((Np, X.shape[0], X.shape[0]), dtype=torch.float64, device=dev)
    scale = 1.0 / (prior_v * Np)
    for p, (i, j) in enumerate(zip(i_idx, j_idx)):
        K = kernel_from_covariance(cdiag[i], _patch_cov(Xp, Xp, i, j, norm), cdiag[j], activation)
        if i == j:
            K = 0.5 * (K + K.T)
            K.diagonal().copy_(kernel_diagonal(cdiag[i], activation))
            Kii[i] = K
            B[p] = scale * K
        else:
            B[p] = scale * (K + K.T)
    return ConvProblem(B=B, y=torch.as_tensor(Y, device=dev), pairs=(i_idx, j_idx), patch_diagonal=Kii,
                       patches=Xp, channels=float(channels), n_patches=Np, patch_size=m, image_shape=shape,
                       prior_w=float(prior_w), prior_v=float(prior_v), activation=activation)


# ------------------------------------------------------------------------------------------
# action, gradient, Hessian
# ------------------------------------------------------------------------------------------
@dataclass
class _State:
    S: float
    grad: np.ndarray | None = None
    scale: np.ndarray | None = None
    Qinv: np.ndarray | None = None
    chol: torch.Tensor | None = None
    Ainv: torch.Tensor | None = None
    a: torch.Tensor | None = None


def _unit_pairs(pb: ConvProblem) -> np.ndarray:
    """E_p (n_pairs, Np, Np)."""
    i, j = pb.pairs
    E = np.zeros((pb.n_vars, pb.n_patches, pb.n_patches))
    E[np.arange(pb.n_vars), i, j] = 1.0
    E[np.arange(pb.n_vars), j, i] = 1.0
    return E


def _state(pb: ConvProblem, T: float, q: np.ndarray, *, gradient: bool = True) -> _State:
    Q = pb.Q_matrix(q)
    try:
        LQ = np.linalg.cholesky(Q)
    except np.linalg.LinAlgError:
        return _State(S=math.inf)
    qt = torch.as_tensor(q, dtype=torch.float64, device=pb.B.device)
    A = torch.tensordot(qt, pb.B, dims=1)
    A.diagonal().add_(T)
    chol, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return _State(S=math.inf)
    a = torch.cholesky_solve(pb.y[:, None], chol)[:, 0]
    logdet_A = 2.0 * float(torch.log(torch.diagonal(chol)).sum())
    S = float(np.trace(Q) - 2.0 * np.log(np.diag(LQ)).sum() + (logdet_A + float(pb.y @ a)) / pb.channels)
    st = _State(S=S, chol=chol, a=a, Qinv=np.linalg.inv(Q))
    return _add_gradient(pb, st, q) if gradient else st


def _add_gradient(pb: ConvProblem, st: _State, q: np.ndarray, chunk: int = 4) -> _State:
    """∂S/∂q_p: one pass over the stored pair kernels (both contractions per chunk of pairs)."""
    if st.grad is not None:
        return st
    Ainv = torch.cholesky_inverse(st.chol)
    n, P = pb.n_vars, pb.P
    tr = torch.empty(n, dtype=torch.float64, device=pb.B.device)
    quad = torch.empty(n, dtype=torch.float64, device=pb.B.device)
    af = Ainv.reshape(P * P)
    for s in range(0, n, chunk):
        Bc = pb.B[s:s + chunk]
        tr[s:s + chunk] = Bc.reshape(-1, P * P) @ af
        quad[s:s + chunk] = (Bc @ st.a) @ st.a
    tr, quad = tr.cpu().numpy(), quad.cpu().numpy()
    Qinv = st.Qinv
    i, j = pb.pairs
    mult = np.where(i == j, 1.0, 2.0)
    gQ = mult * (np.where(i == j, 1.0, 0.0) - Qinv[i, j])
    st.grad = gQ + (tr - quad) / pb.channels
    # size of the largest term of each component; the Q part's round-off is ~eps·max|Q⁻¹| even where
    # Q⁻¹_ij = 0 (e.g. an all-zero patch decouples), hence the common floor
    st.scale = (mult * (np.where(i == j, 1.0, 0.0) + np.abs(Qinv[i, j])) + (np.abs(tr) + np.abs(quad)) / pb.channels
                + np.abs(Qinv).max())
    st.Ainv = Ainv
    return st


def _hessian(pb: ConvProblem, st: _State, E: np.ndarray) -> np.ndarray:
    n, P = pb.n_vars, pb.P
    M = st.Qinv @ E @ st.Qinv  # (n, Np, Np): Q⁻¹E_rQ⁻¹
    HQ = E.reshape(n, -1) @ M.reshape(n, -1).T
    W = st.Ainv @ pb.B @ st.Ainv  # (n, P, P): A⁻¹B_rA⁻¹
    tr = (W.reshape(n, P * P) @ pb.B.reshape(n, P * P).T).cpu().numpy()
    Ba = pb.B @ st.a  # (n, P)
    cross = (Ba @ torch.cholesky_solve(Ba.T, st.chol)).cpu().numpy()  # (B_p a)ᵀ A⁻¹ (B_r a)
    H = HQ - (tr - 2.0 * cross) / pb.channels
    return 0.5 * (H + H.T)


def conv_effective_action(pb: ConvProblem, T: float, Q) -> float:
    """S(Q) for a symmetric Np × Np matrix Q (+inf outside Q ≻ 0)."""
    return _state(pb, float(T), pb.q_vector(Q), gradient=False).S


def conv_action_gradient(pb: ConvProblem, T: float, Q) -> np.ndarray:
    """dS/dQ as a symmetric matrix G (dS = ⟨G, dQ⟩ for symmetric dQ)."""
    st = _state(pb, float(T), pb.q_vector(Q))
    i, j = pb.pairs
    return pb.Q_matrix(st.grad / np.where(i == j, 1.0, 2.0))


def conv_action_hessian(pb: ConvProblem, T: float, Q) -> np.ndarray:
    """∂²S/∂q_p∂q_r over the independent entries q_p = Q_ij, i ≤ j (row-major upper triangle)."""
    return _hessian(pb, _state(pb, float(T), pb.q_vector(Q)), _unit_pairs(pb))


# ------------------------------------------------------------------------------------------
# saddle point over temperatures
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvSaddlePoint:
    """``Q`` (nT, Np, Np) the lowest minimum found, ``action``, ``gradient`` (nT, Np, Np) dS/dQ,
    ``converged`` (gradient at round-off level with a positive-definite exact or BFGS Hessian),
    ``curvature_exact`` whether that Hessian was the exact one, ``n_minima`` distinct minima
    found by the two continuations, ``n_evaluations`` gradient evaluations (one P³ each) and
    ``n_hessians`` exact Hessians (≈ n_pairs × 2P³ each)."""

    temperature: np.ndarray
    Q: np.ndarray
    action: np.ndarray
    gradient: np.ndarray
    converged: np.ndarray
    curvature_exact: np.ndarray
    n_minima: np.ndarray
    n_evaluations: int
    n_hessians: int


def _max_step(Q: np.ndarray, D: np.ndarray) -> float:
    """Largest α with Q + αD ≻ 0 (∞ if D ⪰ 0 along all directions)."""
    L = np.linalg.cholesky(Q)
    Li = np.linalg.inv(L)
    ev = np.linalg.eigvalsh(Li @ D @ Li.T)
    return math.inf if ev.min() >= 0 else -1.0 / ev.min()


class _Counter:
    def __init__(self):
        self.evals = 0
        self.hessians = 0


def _newton(pb, T, q0, H0, E, *, tol, max_iter, exact, cnt):
    q = q0.copy()
    st = _state(pb, T, q)
    cnt.evals += 1
    if st.grad is None:
        return q, st, H0, False, False
    H, fresh = H0, False
    for _ in range(max_iter):
        if exact or H is None:
            H, fresh = _hessian(pb, st, E), True
            cnt.hessians += 1
        pd = np.linalg.eigvalsh(H).min() > 0
        if np.all(np.abs(st.grad) <= tol * st.scale):
            return q, st, H, pd, fresh
        step = -np.linalg.solve(H, st.grad) if pd else -st.grad / max(1.0, float(np.abs(st.grad).max()))
        if step @ st.grad >= 0:
            step = -st.grad / max(1.0, float(np.abs(st.grad).max()))
        amax = _max_step(pb.Q_matrix(q), pb.Q_matrix(step))
        alpha = min(1.0, 0.9 * amax)
        accepted = False
        while alpha > 1e-12:
            qn = q + alpha * step
            sn = _state(pb, T, qn, gradient=False)
            cnt.evals += 1
            if math.isfinite(sn.S) and sn.S <= st.S + 1e-4 * alpha * (step @ st.grad):
                sn = _add_gradient(pb, sn, qn)
                accepted = True
                break
            # near the minimum S stalls at round-off: a full Newton step that halves the gradient is accepted
            if math.isfinite(sn.S) and alpha == 1.0 and pd:
                sn = _add_gradient(pb, sn, qn)
                if np.abs(sn.grad).max() < 0.5 * np.abs(st.grad).max():
                    accepted = True
                    break
            alpha *= 0.5
        if not accepted:
            if np.all(np.abs(st.grad) <= 1e3 * tol * st.scale):  # stalled at round-off
                if not fresh:
                    H, fresh = _hessian(pb, st, E), True
                    cnt.hessians += 1
                return q, st, H, np.linalg.eigvalsh(H).min() > 0, fresh
            if fresh:
                return q, st, H, False, fresh
            H = None  # retry with the exact Hessian
            continue
        s, yv = qn - q, sn.grad - st.grad
        if not exact and s @ yv > 1e-300:
            Hs = H @ s
            H = H + np.outer(yv, yv) / (yv @ s) - np.outer(Hs, Hs) / (s @ Hs)
            fresh = False
        q, st = qn, sn
    return q, st, H, False, fresh


def _continuation(pb, temps, q_start, E, *, tol, max_iter, exact, cnt):
    n = len(temps)
    out = []
    H = None
    q_prev = q_prev2 = None
    lt_prev = lt_prev2 = None
    for T in temps:
        lt = math.log(T)
        q0 = q_start.copy() if q_prev is None else q_prev.copy()
        if q_prev2 is not None:  # secant predictor in log T, kept inside Q ≻ 0
            d = (q_prev - q_prev2) * (lt - lt_prev) / (lt_prev - lt_prev2)
            amax = _max_step(pb.Q_matrix(q_prev), pb.Q_matrix(d))
            q0 = q_prev + min(1.0, 0.5 * amax) * d
        q, st, H, ok, fresh = _newton(pb, float(T), q0, H, E, tol=tol, max_iter=max_iter, exact=exact, cnt=cnt)
        if not ok and q_prev is not None:
            q, st, H, ok, fresh = _newton(pb, float(T), q_prev.copy(), None, E, tol=tol, max_iter=max_iter,
                                          exact=exact, cnt=cnt)
        out.append((q, st, ok, fresh))
        if ok:
            q_prev2, lt_prev2 = q_prev, lt_prev
            q_prev, lt_prev = q, lt
    assert len(out) == n
    return out


def solve_conv_saddle(pb: ConvProblem, temperatures, *, tol: float = 1e-10, max_iter: int = 80,
                      both_directions: bool = True, exact_hessian_max: int = 36,
                      raise_on_failure: bool = True) -> ConvSaddlePoint:
    """Q*(T) (Np × Np) for every temperature; see the module docstring. Converged = every
    |∂S/∂q_p| ≤ ``tol`` × the size of its largest term, with a positive-definite Hessian."""
    T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if T_all.size == 0 or not np.all(np.isfinite(T_all)) or np.any(T_all <= 0):
        raise ValueError(f"temperatures: must be a non-empty array of finite values > 0, got {T_all[:5]}")
    E = _unit_pairs(pb)
    exact = pb.n_vars <= exact_hessian_max
    cnt = _Counter()
    order = np.argsort(-T_all)
    temps = T_all[order]
    q_eye = pb.q_vector(np.eye(pb.n_patches))
    branches = [_continuation(pb, temps, q_eye, E, tol=tol, max_iter=max_iter, exact=exact, cnt=cnt)]
    if both_directions and len(temps) > 1:
        start = branches[0][-1][0] if branches[0][-1][2] else q_eye
        branches.append(_continuation(pb, temps[::-1], start, E, tol=tol, max_iter=max_iter, exact=exact,
                                      cnt=cnt)[::-1])
    n, Np = len(temps), pb.n_patches
    Qo = np.full((n, Np, Np), np.nan)
    Go = np.full((n, Np, Np), np.nan)
    So = np.full(n, np.inf)
    ok = np.zeros(n, bool)
    cexact = np.zeros(n, bool)
    nmin = np.zeros(n, np.int64)
    i_idx, j_idx = pb.pairs
    half = np.where(i_idx == j_idx, 1.0, 0.5)
    for k in range(n):
        found = []
        for br in branches:
            q, st, conv, fresh = br[k]
            if conv and not any(np.max(np.abs(q - f[1])) <= 1e-6 * max(1.0, np.abs(q).max()) for f in found):
                found.append((st.S, q, st, fresh))
        nmin[k] = len(found)
        if not found:
            q, st, _, fresh = branches[0][k]
            found = [(st.S, q, st, fresh)]
        else:
            ok[k] = True
        found.sort(key=lambda f: f[0])
        S, q, st, fresh = found[0]
        So[k], Qo[k], cexact[k] = S, pb.Q_matrix(q), fresh
        if st.grad is not None:
            Go[k] = pb.Q_matrix(st.grad * half)
    inv = np.empty_like(order)
    inv[order] = np.arange(n)
    sad = ConvSaddlePoint(temperature=T_all, Q=Qo[inv], action=So[inv], gradient=Go[inv], converged=ok[inv],
                          curvature_exact=cexact[inv], n_minima=nmin[inv], n_evaluations=cnt.evals,
                          n_hessians=cnt.hessians)
    if raise_on_failure and not sad.converged.all():
        raise ValueError(f"temperatures: the CNN saddle point did not converge at T = "
                         f"{T_all[~sad.converged].tolist()[:5]} (channels={pb.channels}, patches={Np})")
    return sad


# ------------------------------------------------------------------------------------------
# the curve
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvCurve:
    """Posterior observables of the one-hidden-layer CNN over temperature (numpy).

    ``Q`` (nT, Np, Np) patch-pair order parameters; ``readout_second_moment`` (nT,) =
    tr Q/(Np λ1) (mean ⟨v_ci²⟩ per channel and patch); predictor fields as
    :class:`equilibrium.TemperatureCurve`; ``kernel_geometry[name]`` (nT, ...) class measures of
    the renormalised kernel K_R(T) (``reference``: its prior value Q = I, the channel-level NNGP
    Gram); ``patch_geometry[name]`` (Np, ...) the same for each patch's NNGP kernel K_ii.
    """

    temperature: np.ndarray
    Q: np.ndarray
    readout_second_moment: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    test_error: np.ndarray
    test_bias2: np.ndarray
    test_variance: np.ndarray
    kernel_geometry: dict[str, np.ndarray]
    patch_geometry: dict[str, np.ndarray]
    converged: np.ndarray
    n_minima: np.ndarray
    channels: float
    patch_size: int
    image_shape: tuple[int, int, int]
    prior_w: float
    prior_v: float
    activation: str
    saddle: ConvSaddlePoint
    data_fingerprint: str = ""
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    test_prediction: np.ndarray | None = None
    test_prediction_variance: np.ndarray | None = None


def _geometry(G: torch.Tensor, labels) -> dict[str, np.ndarray]:
    geo = geometry.class_geometry(G, np.asarray(labels))
    return {k: np.asarray(torch.as_tensor(getattr(geo, k)).cpu()) for k in GEOMETRY_MEASURES}


def _test_blocks(pb: ConvProblem, x_test: torch.Tensor):
    """B0X_p (n_pairs, Pt, P) and the test diagonals b0_p (n_pairs, Pt) of the pair kernels."""
    Xt = extract_patches(x_test, pb.image_shape, pb.patch_size)
    norm = 1.0 / (pb.image_shape[0] * pb.patch_size**2 * pb.prior_w)
    Np = pb.n_patches
    c0 = torch.einsum("aik,ajk->ija", Xt, Xt) * norm  # (Np, Np, Pt): C_ij(x0, x0)
    cX = torch.einsum("aik,aik->ia", pb.patches, pb.patches) * norm  # (Np, P)
    scale = 1.0 / (pb.prior_v * Np)
    i_idx, j_idx = pb.pairs
    B0X = torch.empty((pb.n_vars, Xt.shape[0], pb.P), dtype=torch.float64, device=Xt.device)
    b0 = torch.empty((pb.n_vars, Xt.shape[0]), dtype=torch.float64, device=Xt.device)

    def k0(i, j):  # κ on the test diagonal only: (Pt,)
        if i == j:
            return kernel_diagonal(c0[i, i], pb.activation)
        return torch.diagonal(kernel_from_covariance(c0[i, i], torch.diag(c0[i, j]), c0[j, j], pb.activation))

    for p, (i, j) in enumerate(zip(i_idx, j_idx)):
        Kij = kernel_from_covariance(c0[i, i], _patch_cov(Xt, pb.patches, i, j, norm), cX[j], pb.activation)
        if i == j:
            B0X[p] = scale * Kij
            b0[p] = scale * k0(i, i)
        else:
            Kji = kernel_from_covariance(c0[j, j], _patch_cov(Xt, pb.patches, j, i, norm), cX[i], pb.activation)
            B0X[p] = scale * (Kij + Kji)
            b0[p] = scale * 2.0 * k0(i, j)
    return B0X, b0


def conv_temperature_curve(
    x_train, y_train, temperatures, *, width: float, patch_size: int, image_shape, activation: str = "erf",
    prior_w: float = 1.0, prior_v: float = 1.0, x_test=None, y_test=None, device=None,
    geometry_measures: bool = True, **solver,
) -> ConvCurve:
    """Saddle point, GP predictor and kernel/patch geometry of the one-hidden-layer CNN with
    ``width`` = Nc channels, non-overlapping ``patch_size`` × ``patch_size`` patches of images of
    ``image_shape`` = (C, H, W) (inputs flattened channels-last, (H, W, C), as load_task does)."""
    pb = conv_problem(x_train, y_train, channels=width, patch_size=patch_size, image_shape=image_shape,
                      activation=activation, prior_w=prior_w, prior_v=prior_v, device=device)
    T = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    dev = pb.B.device
    Xt = Yt = None
    if x_test is not None:
        Xt = torch.as_tensor(np.asarray(x_test, dtype=np.float64), device=dev)
        if Xt.ndim != 2 or Xt.shape[1] != pb.patches.shape[1] * pb.patches.shape[2]:
            raise ValueError(f"x_test: must have shape (P_test, C·H·W), got {tuple(Xt.shape)}")
    if y_test is not None:
        if Xt is None:
            raise ValueError("y_test: given without x_test")
        Yt = np.asarray(y_test, dtype=np.float64).reshape(-1)
        if Yt.shape[0] != Xt.shape[0] or not np.all(np.abs(Yt) == 1):
            raise ValueError(f"y_test: must be ±1 of shape ({Xt.shape[0]},), got shape {np.shape(y_test)}")
    sad = solve_conv_saddle(pb, T, **solver)
    nT, P = len(T), pb.P
    labels = pb.y.cpu().numpy()
    train_err, train_var = np.empty(nT), np.empty(nT)
    test_mean = test_var = None
    if Xt is not None:
        B0X, b0 = _test_blocks(pb, Xt)
        test_mean = np.empty((nT, Xt.shape[0]))
        test_var = np.empty((nT, Xt.shape[0]))
    kgeo: dict[str, list] = {k: [] for k in GEOMETRY_MEASURES}
    for i in range(nT):
        qt = torch.as_tensor(pb.q_vector(sad.Q[i]), dtype=torch.float64, device=dev)
        KR = torch.tensordot(qt, pb.B, dims=1)
        chol = torch.linalg.cholesky(KR + T[i] * torch.eye(P, dtype=torch.float64, device=dev))
        a = torch.cholesky_solve(pb.y[:, None], chol)[:, 0]
        train_err[i] = float((T[i] * a).pow(2).mean())
        train_var[i] = float(T[i] - T[i] ** 2 * torch.cholesky_inverse(chol).diagonal().mean())
        if geometry_measures:
            m = _geometry(KR, labels)
            for k in GEOMETRY_MEASURES:
                kgeo[k].append(m[k])
        if Xt is not None:
            K0X = torch.tensordot(qt, B0X, dims=1)
            k0 = qt @ b0
            test_mean[i] = (K0X @ a).cpu().numpy()
            test_var[i] = (k0 - (K0X * torch.cholesky_solve(K0X.T, chol).T).sum(1)).cpu().numpy()
    nan = np.full(nT, np.nan)
    bias2 = var_mean = err = nan
    if Yt is not None:
        bias2 = ((Yt[None] - test_mean) ** 2).mean(1)
        var_mean = test_var.mean(1)
        err = bias2 + var_mean
    reference, pgeo = {}, {}
    if geometry_measures:
        reference = _geometry(pb.patch_diagonal.sum(0) / (pb.prior_v * pb.n_patches), labels)
        per_patch = [_geometry(pb.patch_diagonal[i], labels) for i in range(pb.n_patches)]
        pgeo = {k: np.asarray([g[k] for g in per_patch]) for k in GEOMETRY_MEASURES}
    x_flat = np.asarray(x_train.detach().cpu() if isinstance(x_train, torch.Tensor) else x_train, dtype=np.float64)
    return ConvCurve(
        temperature=T, Q=sad.Q, readout_second_moment=np.trace(sad.Q, axis1=1, axis2=2) / (pb.n_patches * pb.prior_v),
        train_error=train_err, train_variance=train_var, test_error=err, test_bias2=bias2, test_variance=var_mean,
        kernel_geometry={k: np.asarray(v) for k, v in kgeo.items()} if geometry_measures else {},
        patch_geometry=pgeo, converged=sad.converged, n_minima=sad.n_minima, channels=pb.channels,
        patch_size=pb.patch_size, image_shape=pb.image_shape, prior_w=pb.prior_w, prior_v=pb.prior_v,
        activation=activation, saddle=sad, data_fingerprint=geometry.data_fingerprint(x_flat, labels),
        reference=reference, test_prediction=test_mean, test_prediction_variance=test_var,
    )
