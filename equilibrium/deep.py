"""Deep fully-connected networks: kernel renormalisation with one order parameter per layer.

Model (docs/conventions.md §1 extended layer by layer, as deepbays' ``rkgp.FC_deep``):
h¹ = W¹x/√N0, h^{ℓ+1} = W^{ℓ+1}σ(h^ℓ)/√N_ℓ, f = v·σ(h^L)/√N_L, with W¹ ~ N(0, I/λ0),
W^{ℓ+1} ~ N(0, I/λ_ℓ) (ℓ = 1..L−1) and v ~ N(0, I/λ_L); widths N_1..N_L, posterior at temperature T.

Order parameter Q_ℓ renormalises the weights fed by hidden layer ℓ. Renormalised kernels:

    K_0 = C = XXᵀ/(N0 λ0),   K_ℓ = (Q_ℓ/λ_ℓ) κ(K_{ℓ−1}),   ℓ = 1..L,

κ(K)_μν = E[σ(a)σ(b)] for (a, b) Gaussian with covariance [[K_μμ, K_μν], [K_μν, K_νν]]. The
effective action (normalised by N_1, so that L = 1 is the one-hidden-layer action of
equilibrium.action and equal widths give deepbays' action exactly):

    S(Q) = Σ_ℓ (N_ℓ/N_1)(Q_ℓ − log Q_ℓ) + (1/N_1)[log det A + yᵀA⁻¹y],   A = T·I + K_L(Q).

Saddle point, two hidden layers (erf; "profile"): K_2 = (Q2/λ2) M(Q1), M(Q1) = κ((Q1/λ1) G1) with
G1 = κ(C) fixed. At fixed Q1 the data term depends on T and Q2 only through M's spectrum, so ONE
eigendecomposition of M(Q1) gives the exact profile S*(Q1; T) = min_{Q2} S for every temperature
(a scalar one-hidden-layer problem in Q2, scanned and refined by Brent per T) and, by the envelope
theorem, dS*/dlog Q1 = (Q1 − 1) + (Q2/(λ2 N1))[Σ_k z_k (VᵀDV)_kk − aᵀDa], D = dM/dlog Q1.
The profile is computed on a few log Q1 nodes (extended until every temperature's minimum is
bracketed, halved where a minimum lies in an interval wider than 0.25); every local minimum of its
cubic Hermite interpolant is a candidate for every T, and each candidate is polished by exact
Newton with the analytic gradient and Hessian (one Cholesky + inverse of A per evaluation, one
extra product A⁻¹D for the Hessian), the starting point corrected by the interpolation error seen
at the previous temperature. Converged = |dS/dlog Q| ≤ tol × its largest term, or an exact Newton
step below 1e-9 with a positive-definite Hessian. Distinct minima are counted (``n_minima``), the
lowest kept; the curve reuses the last factorisation for the predictor.

Other depths (L = 1, L ≥ 3) with erf, and D outputs: damped Newton in u = log Q with the analytic
gradient (one Cholesky and one inverse of A per evaluation; the gradient through the kernel
recursion by reverse-mode autodiff contracted with A⁻¹ − aaᵀ, a = A⁻¹y), a finite-difference
Hessian carried along T with BFGS updates, continued down in T from the prior Q = 1 and back up
again; the lowest of the distinct minima found by the two continuations is returned and their
number reported.

D outputs ((P, D) targets, D ≥ 2): the readout order parameter is a D×D matrix Q_L (as for one
hidden layer, docs/theory.md §2.4), the inner Q_ℓ stay scalars (the hidden units of a layer are
exchangeable whatever the number of outputs):
S = Σ_{ℓ<L} (N_ℓ/N_1)(Q_ℓ − log Q_ℓ) + (N_L/N_1)(tr Q_L − log det Q_L)
+ (1/N_1)[log det(T + Q_L ⊗ G_L/λ_L) + yᵀ(T + Q_L ⊗ G_L/λ_L)⁻¹y], G_L = κ(K_{L−1}); unknowns
log Q_ℓ and Σ = log Q_L (its upper triangle), Newton as above.

Homogeneous activations (relu, identity: κ(cK) = cκ(K)): K_L = q·K̂ with q = Π Q_ℓ and
K̂ = κ^{(L)}(C)/Π λ_ℓ, so ONE eigendecomposition serves all temperatures. For fixed q the first
term is minimised at N_ℓ(Q_ℓ − 1) = c (Lagrange), the same c for every layer; S along that curve
has dS/dc ∝ F(c) = c + Σ_k q a_k z_k (1 − ỹ_k² z_k), z_k = 1/(T + q a_k), a_k the eigenvalues of
K̂. Every minimum is a sign change − → + of F, bracketed by F ∈ [c − |y|²/(4T), c + P]; the
scan + Brent refinement is exhaustive up to the grid resolution, as for one hidden layer.

Predictor: GP with kernel K_L(Q*) and noise T (docs/conventions.md §3), test variance without T
(homogeneous: in the eigenbasis of K̂, no factorisation per T; D outputs: errors and variances
summed over outputs, as for one hidden layer).
Posterior kernels per layer at the saddle (kernel-renormalisation level): the activation Gram
G_ℓ = κ(K_{ℓ−1}) of hidden layer ℓ (G_1 is the NNGP kernel, independent of T) and the
pre-activation kernel K_ℓ; class geometry of G_ℓ through gdeq.geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import brentq

from gdeq import geometry

from .action import Spectrum, solve_saddle
from .kernels import input_covariance, kernel_diagonal, kernel_from_covariance
from .linalg import eigh

__all__ = [
    "DEEP_ACTIVATIONS",
    "DeepProblem",
    "DeepSaddlePoint",
    "DeepCurve",
    "deep_problem",
    "deep_kernels",
    "deep_effective_action",
    "deep_action_gradient",
    "solve_deep_saddle",
    "deep_temperature_curve",
]

DEEP_ACTIVATIONS: tuple[str, ...] = ("erf", "relu", "identity")
HOMOGENEOUS: tuple[str, ...] = ("relu", "identity")  # κ(cK) = cκ(K) for c > 0
GEOMETRY_MEASURES = ("centroid_distance", "centroid_distance_matrix", "class_radius", "inter_distance",
                     "intra_distance", "distance_ratio", "unit_centroid_distance", "unit_class_radius")


# ------------------------------------------------------------------------------------------
# problem definition and validation
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepProblem:
    """Training data and architecture of a deep FC posterior (float64 torch, CPU or GPU).

    ``C`` input covariance (P, P), ``y`` (P,) ±1, ``widths`` N_1..N_L, ``priors`` λ_1..λ_L (the
    weights fed by layer ℓ), ``prior_w`` λ0.
    """

    C: torch.Tensor
    y: torch.Tensor
    widths: tuple[float, ...]
    priors: tuple[float, ...]
    prior_w: float
    activation: str

    @property
    def L(self) -> int:
        return len(self.widths)

    @property
    def P(self) -> int:
        return self.C.shape[0]

    @property
    def D(self) -> int:
        """Number of outputs (1: ±1 labels, scalar Q_L; D ≥ 2: (P, D) targets, D×D Q_L)."""
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])

    @property
    def n_params(self) -> int:
        """Unknowns: log Q_1..log Q_L (D = 1), or log Q_1..log Q_{L−1} and the D(D+1)/2 entries of
        Σ = log Q_L (D ≥ 2)."""
        return self.L if self.D == 1 else self.L - 1 + self.D * (self.D + 1) // 2

    @property
    def coef(self) -> np.ndarray:
        """N_ℓ/N_1: weight of (Q_ℓ − log Q_ℓ) in S."""
        return np.asarray(self.widths, dtype=np.float64) / self.widths[0]


def _positive_list(value, L: int, name: str, lo: float, lo_text: str) -> tuple[float, ...]:
    vals = [value] * L if np.ndim(value) == 0 else list(value)
    if len(vals) != L:
        raise ValueError(f"{name}: needs one value per hidden layer ({L}), got {len(vals)}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{name}: must be finite numbers, got {v!r}")
        if not (v >= lo if name == "width" else v > lo):
            raise ValueError(f"{name}: every entry must be {lo_text}, got {v}")
        out.append(float(v))
    return tuple(out)


def deep_problem(x_train, y_train, *, width: Sequence[float], activation: str = "erf", prior_w: float = 1.0,
                 prior_v: float | Sequence[float] = 1.0, device=None) -> DeepProblem:
    """Validate and build a :class:`DeepProblem`. ``width`` = [N_1, ..., N_L] (L ≥ 1);
    ``prior_v`` one λ for every layer after the first or a list λ_1..λ_L (λ_L the readout prior)."""
    if np.ndim(width) != 1 or len(width) < 1:
        raise ValueError(f"width: must be a list of hidden-layer widths [N1, ..., NL], got {width!r}")
    widths = _positive_list(width, len(width), "width", 1.0, "≥ 1")
    priors = _positive_list(prior_v, len(widths), "prior_v", 0.0, "> 0")
    (pw,) = _positive_list(prior_w, 1, "prior_w", 0.0, "> 0")
    if activation not in DEEP_ACTIVATIONS:
        raise ValueError(f"activation: the deep FC theory supports {DEEP_ACTIVATIONS}, got {activation!r}")
    X = np.asarray(x_train.detach().cpu() if isinstance(x_train, torch.Tensor) else x_train, dtype=np.float64)
    Y = np.asarray(y_train.detach().cpu() if isinstance(y_train, torch.Tensor) else y_train, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or not np.all(np.isfinite(X)):
        raise ValueError(f"x_train: must be a finite array of shape (P, N0) with P ≥ 2, got shape {X.shape}")
    Y = Y.reshape(-1) if (Y.ndim == 2 and Y.shape[1] == 1) else Y
    if Y.ndim == 2 and Y.shape[0] == X.shape[0] and Y.shape[1] >= 2:
        if not np.all(np.isfinite(Y)):
            raise ValueError("y_train: (P, D) targets must be finite")
    elif Y.ndim != 1 or Y.shape[0] != X.shape[0] or not np.all(np.abs(Y) == 1):
        raise ValueError(f"y_train: the deep FC theory takes ±1 labels of shape ({X.shape[0]},) or (P, D) targets "
                         f"with D ≥ 2 (e.g. one-hot), got shape {Y.shape}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    Xd = torch.as_tensor(X, device=dev)
    return DeepProblem(C=input_covariance(Xd, Xd, pw), y=torch.as_tensor(Y, device=dev), widths=widths,
                       priors=priors, prior_w=pw, activation=activation)


# ------------------------------------------------------------------------------------------
# kernel recursion
# ------------------------------------------------------------------------------------------
def _kappa(K: torch.Tensor, activation: str) -> torch.Tensor:
    d = torch.diagonal(K)
    return kernel_from_covariance(d, K, d, activation)


def deep_kernels(C: torch.Tensor, Q, priors, activation: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Activation Grams G_ℓ = κ(K_{ℓ−1}) and renormalised kernels K_ℓ = (Q_ℓ/λ_ℓ) G_ℓ, ℓ = 1..L."""
    G, K = [], []
    Kl = C
    for l in range(len(priors)):
        g = _kappa(Kl, activation)
        g = 0.5 * (g + g.T)
        g.diagonal().copy_(kernel_diagonal(torch.diagonal(Kl).clone(), activation))
        G.append(g)
        Kl = (float(Q[l]) / priors[l]) * g
        K.append(Kl)
    return G, K


def _cross_kernels(C00: torch.Tensor, c00: torch.Tensor, C0X: torch.Tensor, cX: torch.Tensor, Q, priors,
                   activation: str, full_test: bool):
    """Test×train rows K_ℓ(x0, X), test diagonals and (optionally) test×test G_ℓ through the recursion."""
    K0X, k0, kX = C0X, c00, cX
    K00 = C00
    G0X, G00 = [], []
    for l in range(len(priors)):
        s = float(Q[l]) / priors[l]
        g0X = kernel_from_covariance(k0, K0X, kX, activation)
        if full_test:
            g00 = kernel_from_covariance(k0, K00, k0, activation)
            g00 = 0.5 * (g00 + g00.T)
            g00.diagonal().copy_(kernel_diagonal(k0, activation))
            G00.append(g00)
            K00 = s * g00
        G0X.append(g0X)
        K0X = s * g0X
        k0 = s * kernel_diagonal(k0, activation)
        kX = s * kernel_diagonal(kX, activation)
    return K0X, k0, G0X, G00


# ------------------------------------------------------------------------------------------
# action and gradient (general path)
# ------------------------------------------------------------------------------------------
def _KL_graph(pb: DeepProblem, u: torch.Tensor) -> torch.Tensor:
    K = pb.C
    for l in range(pb.L):
        K = (torch.exp(u[l]) / pb.priors[l]) * _kappa(K, pb.activation)
    return 0.5 * (K + K.T)


def _evaluate(pb: DeepProblem, T: float, u: np.ndarray, *, gradient: bool = True):
    """S, dS/du (u = log Q) and the size of the largest gradient term, at one temperature."""
    if pb.D > 1:
        return _evaluate_multi(pb, T, u, gradient=gradient)
    ut = torch.as_tensor(u, dtype=torch.float64, device=pb.C.device).clone().requires_grad_(gradient)
    KL = _KL_graph(pb, ut)
    A = KL.detach() + T * torch.eye(pb.P, dtype=torch.float64, device=pb.C.device)
    chol, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return math.inf, None, None, None
    a = torch.cholesky_solve(pb.y[:, None], chol)[:, 0]
    logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()
    Q = np.exp(u)
    N1 = pb.widths[0]
    S = float(np.sum(pb.coef * (Q - u)) + (float(logdet) + float(pb.y @ a)) / N1)
    if not gradient:
        return S, None, None, chol
    Ainv = torch.cholesky_inverse(chol)
    # d/du of the data term: <A⁻¹ − aaᵀ, dK_L/du>; two vector-Jacobian products keep the terms apart
    g_tr, = torch.autograd.grad(KL, ut, grad_outputs=Ainv, retain_graph=True)
    g_q, = torch.autograd.grad(KL, ut, grad_outputs=torch.outer(a, a))
    g_tr, g_q = g_tr.cpu().numpy(), g_q.cpu().numpy()
    grad = pb.coef * (Q - 1.0) + (g_tr - g_q) / N1
    scale = pb.coef * (Q + 1.0) + (np.abs(g_tr) + np.abs(g_q)) / N1
    return S, grad, scale, chol


# ------------------------------------------------------------------------------------------
# D outputs: a D×D readout order parameter (docs/architectures.md "D outputs")
# ------------------------------------------------------------------------------------------
def _GL_graph(pb: DeepProblem, u_inner: torch.Tensor) -> torch.Tensor:
    """Activation Gram of the last hidden layer, G_L = κ(K_{L−1}(Q_1..Q_{L−1})) (G_1 = κ(C))."""
    K = pb.C
    for l in range(pb.L - 1):
        K = (torch.exp(u_inner[l]) / pb.priors[l]) * _kappa(K, pb.activation)
    G = _kappa(K, pb.activation)
    return 0.5 * (G + G.T)


def _readout(pb: DeepProblem, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Σ = log Q_L from the last D(D+1)/2 parameters (upper triangle, row-major): (Σ, σ, U, Q_L) with
    Σ = U diag(σ) Uᵀ and Q_L = U diag(e^σ) Uᵀ."""
    D = pb.D
    Sig = np.zeros((D, D))
    Sig[np.triu_indices(D)] = u[pb.L - 1:]
    Sig = Sig + np.triu(Sig, 1).T
    sig, U = np.linalg.eigh(Sig)
    return Sig, sig, U, (U * np.exp(sig)) @ U.T


def _q_vector(pb: DeepProblem, u: np.ndarray) -> np.ndarray:
    """Q_1..Q_L (D ≥ 2: the last entry is tr Q_L / D, the mean readout second moment × λ_L)."""
    if pb.D == 1:
        return np.exp(u)
    return np.concatenate([np.exp(u[: pb.L - 1]), [np.trace(_readout(pb, u)[3]) / pb.D]])


def _evaluate_multi(pb: DeepProblem, T: float, u: np.ndarray, *, gradient: bool = True):
    """D outputs: S = Σ_{ℓ<L} (N_ℓ/N_1)(Q_ℓ − log Q_ℓ) + (N_L/N_1)(tr Q_L − log det Q_L)
    + (1/N_1)[log det A + yᵀA⁻¹y], A = T + Q_L ⊗ G_L/λ_L (as docs/theory.md §2.4 for L = 1). With
    Q_L = Σ_d q_d u_d u_dᵀ, A = ⊕_d (T + q_d G_L/λ_L) on the rotated targets y u_d: D Choleskys of P × P.
    dS/dQ_L (data) = (U diag(t) Uᵀ − αᵀG_Lα)/λ_L, t_d = Tr(A_d⁻¹G_L), α = A⁻¹y (P × D); chained to
    Σ = log Q_L by the Daleckii–Krein formula, F_ij = (e^σ_i − e^σ_j)/(σ_i − σ_j); the inner layers
    through one vector-Jacobian product of G_L with Σ_d (q_d/λ_L) A_d⁻¹ − αQ_Lαᵀ/λ_L."""
    L, D, P = pb.L, pb.D, pb.P
    dev = pb.C.device
    Sig, sig, U, QL = _readout(pb, u)
    q = np.exp(sig)
    ut = torch.as_tensor(u[: L - 1], dtype=torch.float64, device=dev).clone().requires_grad_(gradient and L > 1)
    GLg = _GL_graph(pb, ut)
    GL = GLg.detach()
    lam, N1 = pb.priors[-1], pb.widths[0]
    Ut = torch.as_tensor(U, device=dev)
    Yr = pb.y @ Ut
    eye = torch.eye(P, dtype=torch.float64, device=dev)
    logdet = quad = 0.0
    alpha_r, invs = [], []
    for d in range(D):
        chol, info = torch.linalg.cholesky_ex((q[d] / lam) * GL + T * eye)
        if int(info) != 0:
            return math.inf, None, None, None
        a = torch.cholesky_solve(Yr[:, d:d + 1], chol)[:, 0]
        logdet += 2.0 * float(torch.log(torch.diagonal(chol)).sum())
        quad += float(Yr[:, d] @ a)
        alpha_r.append(a)
        if gradient:
            invs.append(torch.cholesky_inverse(chol))
    Qi = np.exp(u[: L - 1])
    cL = float(pb.coef[-1])
    S = float(np.sum(pb.coef[:-1] * (Qi - u[: L - 1])) + cL * (np.trace(QL) - np.trace(Sig)) + (logdet + quad) / N1)
    if not gradient:
        return S, None, None, None
    alpha = torch.stack(alpha_r, 1) @ Ut.T  # (P, D), original output basis
    t = np.array([float((inv * GL).sum()) for inv in invs])
    GQ_tr = (U * t) @ U.T / lam
    GQ_q = (alpha.T @ GL @ alpha).cpu().numpy() / lam
    diff = sig[:, None] - sig[None, :]
    same = np.abs(diff) < 1e-12
    F = np.where(same, np.exp(sig)[:, None], (np.exp(sig)[:, None] - np.exp(sig)[None, :]) / np.where(same, 1.0, diff))

    def chain(X):  # d/dΣ of ⟨X, Q_L(Σ)⟩
        return U @ (F * (U.T @ X @ U)) @ U.T

    c_tr, c_q = chain(GQ_tr), chain(GQ_q)
    iu = np.triu_indices(D)
    mult = np.where(iu[0] == iu[1], 1.0, 2.0)  # Σ_ij = Σ_ji share one parameter
    g_th = (cL * (QL - np.eye(D)) + (c_tr - c_q) / N1)[iu] * mult
    s_th = (cL * (np.abs(QL) + np.eye(D)) + (np.abs(c_tr) + np.abs(c_q)) / N1)[iu] * mult
    if L > 1:
        W_tr = sum((q[d] / lam) * invs[d] for d in range(D))
        W_q = alpha @ torch.as_tensor(QL, device=dev) @ alpha.T / lam
        g_tr, = torch.autograd.grad(GLg, ut, grad_outputs=W_tr, retain_graph=True)
        g_q, = torch.autograd.grad(GLg, ut, grad_outputs=W_q)
        g_tr, g_q = g_tr.cpu().numpy(), g_q.cpu().numpy()
        g_in = pb.coef[:-1] * (Qi - 1.0) + (g_tr - g_q) / N1
        s_in = pb.coef[:-1] * (Qi + 1.0) + (np.abs(g_tr) + np.abs(g_q)) / N1
    else:
        g_in = s_in = np.zeros(0)
    return S, np.concatenate([g_in, g_th]), np.concatenate([s_in, s_th]), None


def _params(pb: DeepProblem, Q, Q_readout=None) -> np.ndarray:
    """u from Q_1..Q_L (D = 1) or from Q_1..Q_{L−1} and the D×D Q_L (D ≥ 2; Σ = log Q_L)."""
    if pb.D == 1:
        return np.log(np.asarray(Q, dtype=np.float64))
    w, V = np.linalg.eigh(np.asarray(Q_readout, dtype=np.float64))
    Sig = (V * np.log(w)) @ V.T
    return np.concatenate([np.log(np.asarray(Q, dtype=np.float64)[: pb.L - 1]), Sig[np.triu_indices(pb.D)]])


def deep_effective_action(pb: DeepProblem, T: float, Q, Q_readout=None) -> float:
    """S(Q) at one temperature (see the module docstring); +inf where A is not positive definite.
    D outputs: ``Q`` = Q_1..Q_{L−1} (or L values, the last ignored) and ``Q_readout`` the D×D Q_L."""
    return _evaluate(pb, float(T), _params(pb, Q, Q_readout), gradient=False)[0]


def deep_action_gradient(pb: DeepProblem, T: float, Q) -> np.ndarray:
    """dS/dQ_ℓ = (N_ℓ/N_1)(1 − 1/Q_ℓ) + (1/(N_1 Q_ℓ)) ⟨A⁻¹ − aaᵀ, ∂K_L/∂log Q_ℓ⟩."""
    Q = np.asarray(Q, dtype=np.float64)
    return _evaluate(pb, float(T), np.log(Q))[1] / Q


# ------------------------------------------------------------------------------------------
# saddle point
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepSaddlePoint:
    """Saddle point over temperatures (numpy): ``Q`` (nT, L) the lowest minimum found,
    ``action`` S there, ``gradient`` dS/dQ (nT, L), ``converged`` (gradient at round-off level
    AND a positive-definite Hessian), ``curvature_exact`` whether that Hessian was a fresh
    finite-difference one (else the BFGS matrix carried along T; the homogeneous path checks the
    sign change of dS/dc exactly), ``n_minima`` distinct minima found, ``minima`` (nT, k, L)
    NaN-padded, ``n_evaluations`` action/gradient evaluations (each one P³ factorisation; 0 for
    the homogeneous path, which needs one eigendecomposition in all), ``n_eigendecompositions``
    (profile nodes), ``n_hessians`` analytic Hessians (each one extra P³ product), ``method`` the
    path taken ("profile", "newton", "homogeneous"), ``profile_nodes`` the log Q1 nodes,
    ``Q_readout`` (nT, D, D) the readout Q_L for D outputs (then ``Q[:, -1]`` = tr Q_L/D and
    ``gradient`` is dS/du, u = (log Q_1..log Q_{L−1}, upper triangle of log Q_L))."""

    temperature: np.ndarray
    Q: np.ndarray
    action: np.ndarray
    gradient: np.ndarray
    converged: np.ndarray
    n_minima: np.ndarray
    minima: np.ndarray
    n_evaluations: int = 0
    curvature_exact: np.ndarray | None = None
    n_eigendecompositions: int = 0
    n_hessians: int = 0
    method: str = ""
    profile_nodes: np.ndarray | None = None
    Q_readout: np.ndarray | None = None


def _fd_hessian(pb, T, u, h=1e-5):
    L = len(u)
    H = np.empty((L, L))
    for j in range(L):
        e = np.zeros(L)
        e[j] = h
        gp = _evaluate(pb, T, u + e)[1]
        gm = _evaluate(pb, T, u - e)[1]
        if gp is None or gm is None:
            return None
        H[:, j] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


def _newton(pb: DeepProblem, T: float, u0: np.ndarray, H0: np.ndarray | None, *, tol: float, max_iter: int):
    """Damped (quasi-)Newton in u = log Q from u0 with H0 (None: finite-difference Hessian).
    Returns u, S, grad_u, H, converged (small gradient, H positive definite), whether H is a fresh
    finite-difference Hessian (else the BFGS-carried one), evaluations."""
    u = u0.copy()
    S, g, scale, _ = _evaluate(pb, T, u)
    n_eval = 1
    if g is None:  # start outside the domain (cannot happen for Q > 0, T > 0; kept as a guard)
        return u, math.inf, np.full(len(u), np.nan), H0, False, False, n_eval
    H = H0
    fresh = False
    for _ in range(max_iter):
        if H is None or not np.all(np.isfinite(H)):
            H, fresh = _fd_hessian(pb, T, u), True
            n_eval += 2 * len(u)
        small = bool(np.all(np.abs(g) <= tol * scale))
        pd = H is not None and np.linalg.eigvalsh(H).min() > 0
        if small:
            return u, S, g, H, pd, fresh, n_eval
        step = -np.linalg.solve(H, g) if pd else -g / max(1.0, float(np.abs(g).max()))
        if step @ g >= 0:
            step = -g / max(1.0, float(np.abs(g).max()))
        step *= min(1.0, 2.0 / max(float(np.abs(step).max()), 1e-300))  # |Δ log Q| ≤ 2 per step
        alpha, accepted = 1.0, False
        while alpha > 1e-10:
            un = u + alpha * step
            Sn, gn, sn, _ = _evaluate(pb, T, un)
            n_eval += 1
            # Armijo on S; near the minimum S stalls at round-off, so a step that shrinks the
            # gradient is accepted too
            if gn is not None and (Sn <= S + 1e-4 * alpha * (step @ g)
                                   or (alpha == 1.0 and np.abs(gn).max() < 0.5 * np.abs(g).max())):
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            H, fresh = None, False
            if np.abs(g).max() <= 1e3 * tol * scale.max():  # stalled at round-off
                H = _fd_hessian(pb, T, u)
                n_eval += 2 * len(u)
                pd = H is not None and np.linalg.eigvalsh(H).min() > 0
                return u, S, g, H, pd, True, n_eval
            continue
        s, yv = un - u, gn - g
        if s @ yv > 1e-300 and H is not None:  # BFGS update of the carried Hessian
            Hs = H @ s
            H = H + np.outer(yv, yv) / (yv @ s) - np.outer(Hs, Hs) / (s @ Hs)
            fresh = False
        u, S, g, scale = un, Sn, gn, sn
    return u, S, g, H, False, fresh, n_eval


def _continuation(pb, temps, u_start, *, tol, max_iter):
    n = len(temps)
    L = pb.n_params
    U = np.full((n, L), np.nan)
    S = np.full(n, np.inf)
    Gd = np.full((n, L), np.nan)
    ok = np.zeros(n, bool)
    exact = np.zeros(n, bool)
    n_eval = 0
    H = None
    u_prev = u_prev2 = None
    lt_prev = lt_prev2 = None
    for i, T in enumerate(temps):
        lt = math.log(T)
        if u_prev is None:
            u0 = u_start.copy()
        elif u_prev2 is None:
            u0 = u_prev.copy()
        else:  # secant predictor in log T
            u0 = u_prev + (u_prev - u_prev2) * (lt - lt_prev) / (lt_prev - lt_prev2)
        u, s, g, H, conv, fresh, ne = _newton(pb, float(T), u0, H, tol=tol, max_iter=max_iter)
        n_eval += ne
        if not conv and u_prev is not None:  # retry from the previous solution with a fresh Hessian
            u, s, g, H, conv, fresh, ne = _newton(pb, float(T), u_prev.copy(), None, tol=tol, max_iter=max_iter)
            n_eval += ne
        U[i], S[i], Gd[i], ok[i], exact[i] = u, s, g, conv, fresh
        if conv:
            u_prev2, lt_prev2 = u_prev, lt_prev
            u_prev, lt_prev = u, lt
    return U, S, Gd, ok, exact, n_eval


def _solve_general(pb, T_all, *, tol, max_iter, both_directions):
    order = np.argsort(-T_all)
    temps = T_all[order]
    npar = pb.n_params
    U1, S1, G1, ok1, ex1, ne = _continuation(pb, temps, np.zeros(npar), tol=tol, max_iter=max_iter)
    branches = [(U1, S1, G1, ok1, ex1)]
    if both_directions and len(temps) > 1:
        start = U1[-1] if ok1[-1] else np.zeros(npar)
        U2, S2, G2, ok2, ex2, ne2 = _continuation(pb, temps[::-1], start, tol=tol, max_iter=max_iter)
        ne += ne2
        branches.append((U2[::-1], S2[::-1], G2[::-1], ok2[::-1], ex2[::-1]))
    n = len(temps)
    D = pb.D
    Qo = np.full((n, pb.L), np.nan)
    So = np.full(n, np.inf)
    Go = np.full((n, npar), np.nan)
    QR = np.full((n, D, D), np.nan) if D > 1 else None
    ok = np.zeros(n, bool)
    cexact = np.zeros(n, bool)
    nmin = np.zeros(n, np.int64)
    minima = np.full((n, len(branches), pb.L), np.nan)

    def put(i, u, g):  # D = 1: dS/dQ; D ≥ 2: dS/du (u = log Q_1..log Q_{L−1}, Σ = log Q_L)
        Qo[i] = _q_vector(pb, u)
        Go[i] = g / np.exp(u) if D == 1 else g
        if D > 1:
            QR[i] = _readout(pb, u)[3]

    for i in range(n):
        found: list[tuple[float, np.ndarray, np.ndarray, bool]] = []
        for U, S, G, okb, exb in branches:
            if okb[i] and not any(np.max(np.abs(U[i] - f[1])) <= 1e-6 for f in found):
                found.append((S[i], U[i], G[i], exb[i]))
        nmin[i] = len(found)
        if found:
            found.sort(key=lambda f: f[0])
            So[i], ok[i], cexact[i] = found[0][0], True, found[0][3]
            put(i, found[0][1], found[0][2])
            for k, f in enumerate(found):
                minima[i, k] = _q_vector(pb, f[1])
        else:  # report the first branch's (unconverged) point
            So[i] = S1[i]
            put(i, U1[i], G1[i])
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return DeepSaddlePoint(temperature=T_all, Q=Qo[inv], action=So[inv], gradient=Go[inv], converged=ok[inv],
                           n_minima=nmin[inv], minima=minima[inv], n_evaluations=ne, curvature_exact=cexact[inv],
                           method="newton", Q_readout=None if QR is None else QR[inv])


def _homogeneous_base(pb: DeepProblem) -> torch.Tensor:
    """K̂ = κ^{(L)}(C)/Π λ_ℓ: K_L = (Π Q_ℓ) K̂ for homogeneous activations."""
    _, K = deep_kernels(pb.C, np.ones(pb.L), pb.priors, pb.activation)
    return K[-1]


def _solve_homogeneous(pb: DeepProblem, T_all: np.ndarray, *, grid: int = 64, xtol: float = 1e-15,
                       on_spectrum=None):
    Kh = _homogeneous_base(pb)
    kappa, U = eigh(Kh)
    if on_spectrum is not None:  # the curve's predictor works in the same eigenbasis
        on_spectrum(Kh, kappa, U)
    a = kappa.clamp_min(0.0).cpu().numpy()
    yt2 = ((U.T @ pb.y) ** 2).cpu().numpy()
    Nl = np.asarray(pb.widths)
    N1, Nmin = Nl[0], Nl.min()

    def F(c, T):
        q = np.prod(1.0 + c / Nl)
        z = 1.0 / (T + q * a)
        return c + np.sum(q * a * z * (1.0 - yt2 * z))

    def action(c, T):
        Q = 1.0 + c / Nl
        q = np.prod(Q)
        den = T + q * a
        return float(np.sum(Nl / N1 * (Q - np.log(Q))) + (np.sum(np.log(den)) + np.sum(yt2 / den)) / N1)

    def grad_Q(c, T):
        Q = 1.0 + c / Nl
        q = np.prod(Q)
        z = 1.0 / (T + q * a)
        dphi = np.sum(a * z * (1.0 - yt2 * z)) / N1  # dφ/dq
        return Nl / N1 * (1.0 - 1.0 / Q) + q / Q * dphi

    y2, tr = float(yt2.sum()), float(a.sum())
    nT = len(T_all)
    Qo = np.full((nT, pb.L), np.nan)
    So = np.full(nT, np.inf)
    Go = np.full((nT, pb.L), np.nan)
    ok = np.zeros(nT, bool)
    nmin = np.zeros(nT, np.int64)
    found_all = []
    for i, T in enumerate(T_all):
        # bracket: Q_min = 1 + c/N_min ∈ [1/(1 + tr/(T N_min)), 1 + |y|²/(4 T N_min)] (module docstring)
        lo = math.log(1.0 / (1.0 + tr / (T * Nmin))) - 1e-3
        hi = math.log(1.0 + y2 / (4.0 * T * Nmin)) + 1e-3
        cs = Nmin * (np.exp(np.linspace(lo, hi, grid)) - 1.0)
        f = np.array([F(c, T) for c in cs])
        roots = []
        for k in np.nonzero((f[:-1] < 0) & (f[1:] >= 0))[0]:
            c = brentq(F, cs[k], cs[k + 1], args=(T,), xtol=xtol * max(1.0, abs(cs[k])), rtol=1e-15, maxiter=200)
            roots.append(c)
        found = sorted(((action(c, T), c) for c in roots))
        nmin[i] = len(found)
        found_all.append([1.0 + c / Nl for _, c in found])
        if found:
            So[i], c = found[0]
            Qo[i] = 1.0 + c / Nl
            Go[i] = grad_Q(c, T)
            ok[i] = True
    kmax = max(1, max(len(f) for f in found_all))
    minima = np.full((nT, kmax, pb.L), np.nan)
    for i, f in enumerate(found_all):
        for k, q in enumerate(f):
            minima[i, k] = q
    return DeepSaddlePoint(temperature=T_all, Q=Qo, action=So, gradient=Go, converged=ok, n_minima=nmin,
                           minima=minima, n_evaluations=0, curvature_exact=ok.copy())


# ------------------------------------------------------------------------------------------
# two hidden layers, general activation: profile over Q1 (docs/architectures.md "Speed")
# ------------------------------------------------------------------------------------------
def _layer2_gram(G1: torch.Tensor, u1: float, prior1: float, activation: str, order: int) -> list[torch.Tensor]:
    """[M, dM/du1, cache][:order + 1] with M = κ((Q1/λ1) G1), u1 = log Q1 (cache: for d²M/du1²).

    erf: M = (2/π) asin r, r = 2c g_μν/√(s_μ s_ν), s_μ = 1 + 2c g_μμ, c = Q1/λ1; with
    a_μ = c g_μμ/s_μ, dr/du1 = r (1 − a_μ − a_ν) and da_μ/du1 = a_μ/s_μ. In-place: every
    elementwise pass over P² numbers counts at P = 1000."""
    if activation != "erf":
        raise ValueError(f"activation: the profile solver has the closed-form kernel derivatives of erf only, "
                         f"got {activation!r}")
    c = math.exp(u1) / prior1
    g = torch.diagonal(G1)
    s = 1.0 + 2.0 * c * g
    w = torch.rsqrt(s)
    r = G1 * (2.0 * c * w)[:, None]
    r.mul_(w[None, :])
    r.diagonal().copy_(2.0 * c * g / s)  # exact diagonal (kernel_diagonal)
    M = torch.asin(r).mul_(2.0 / math.pi)
    if order == 0:
        return [M]
    a = c * g / s
    inv = torch.rsqrt(torch.addcmul(torch.ones_like(r), r, r, value=-1.0))   # (1 − r²)^(-1/2)
    r1 = r * (1.0 - a)[:, None]
    r1.sub_(r * a[None, :])                                                   # r (1 − a_μ − a_ν)
    D = (r1 * inv).mul_(2.0 / math.pi)
    return [M, D, (r, r1, inv, a, a / s)]


def _layer2_d2(cache: tuple) -> torch.Tensor:
    """d²M/du1² = (2/π)(1 − r²)^(-1/2)[r'' + r r'²/(1 − r²)], r'' = r'(1 − a_μ − a_ν) − r(b_μ + b_ν),
    b = a/s (the cache of :func:`_layer2_gram`)."""
    r, r1, inv, a, b = cache
    r2 = r1 * ((1.0 - a)[:, None] - a[None, :])
    r2.sub_(r * b[:, None]).sub_(r * b[None, :])
    out = (r * r1).mul_(r1).mul_(inv).mul_(inv)
    return out.add_(r2).mul_(inv).mul_(2.0 / math.pi)


def _fdot(A: torch.Tensor, B: torch.Tensor) -> float:
    """Σ_ij A_ij B_ij without a P² temporary."""
    return float(torch.dot(A.reshape(-1), B.reshape(-1)))


@dataclass
class _Exact:
    """One exact evaluation of the L = 2 action at u = (log Q1, log Q2): Cholesky and inverse of A."""

    u: np.ndarray
    T: float
    S: float
    g: np.ndarray
    scale: np.ndarray
    chol: torch.Tensor
    Ainv: torch.Tensor
    a: torch.Tensor
    M: torch.Tensor
    D: torch.Tensor
    c2: float
    t: tuple[float, float, float, float]  # Σ A⁻¹∘M, Σ A⁻¹∘D, aᵀMa, aᵀDa
    cache: tuple = ()


def _exact_l2(pb: DeepProblem, G1: torch.Tensor, T: float, u: np.ndarray) -> _Exact | None:
    """S, dS/du at u (one Cholesky + one inverse of A = T + (Q2/λ2) M(Q1)); None outside the domain."""
    M, D, cache = _layer2_gram(G1, float(u[0]), pb.priors[0], pb.activation, 1)
    c2 = math.exp(float(u[1])) / pb.priors[1]
    A = c2 * M
    A.diagonal().add_(T)
    chol, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return None
    a = torch.cholesky_solve(pb.y[:, None], chol)[:, 0]
    Ainv = torch.cholesky_inverse(chol)
    tM, tD = _fdot(Ainv, M), _fdot(Ainv, D)
    aMa, aDa = float(a @ (M @ a)), float(a @ (D @ a))
    logdet = 2.0 * float(torch.log(torch.diagonal(chol)).sum())
    Q = np.exp(u)
    N1 = pb.widths[0]
    S = float(np.sum(pb.coef * (Q - u)) + (logdet + float(pb.y @ a)) / N1)
    g = pb.coef * (Q - 1.0) + c2 * np.array([tD - aDa, tM - aMa]) / N1
    scale = pb.coef * (Q + 1.0) + c2 * np.array([abs(tD) + abs(aDa), abs(tM) + abs(aMa)]) / N1
    return _Exact(u=u.copy(), T=T, S=S, g=g, scale=scale, chol=chol, Ainv=Ainv, a=a, M=M, D=D, c2=c2,
                  t=(tM, tD, aMa, aDa), cache=cache)


def _exact_l2_hessian(pb: DeepProblem, G1: torch.Tensor, ev: _Exact) -> np.ndarray:
    """d²S/du² at ev.u: with A_i = ∂A/∂u_i, a = A⁻¹y,
    φ_ij = Tr(A⁻¹A_ij) − Tr(A⁻¹A_iA⁻¹A_j) − aᵀA_ij a + 2(A_i a)ᵀA⁻¹(A_j a); A_2 = A_22 = c2 M,
    A_1 = A_12 = c2 D, A_11 = c2 d²M/du1². One extra product X = A⁻¹D; A⁻¹M = (I − T A⁻¹)/c2."""
    D2 = _layer2_d2(ev.cache)
    Ai, c2, T, P = ev.Ainv, ev.c2, ev.T, pb.P
    tM, tD, aMa, aDa = ev.t
    X = Ai @ ev.D
    trAi = float(torch.diagonal(Ai).sum())
    pM, pD = c2 * (ev.M @ ev.a), c2 * (ev.D @ ev.a)
    qM, qD = Ai @ pM, Ai @ pD
    trMM = P - 2.0 * T * trAi + T * T * _fdot(Ai, Ai)            # Tr(A⁻¹A_2A⁻¹A_2)
    trDD = c2 * c2 * _fdot(X, X.T.contiguous())                  # Tr(A⁻¹A_1A⁻¹A_1)
    trDM = c2 * (float(torch.diagonal(X).sum()) - T * _fdot(X, Ai))
    h22 = c2 * tM - trMM - c2 * aMa + 2.0 * float(pM @ qM)
    h11 = c2 * _fdot(Ai, D2) - trDD - c2 * float(ev.a @ (D2 @ ev.a)) + 2.0 * float(pD @ qD)
    h12 = c2 * tD - trDM - c2 * aDa + 2.0 * float(pD @ qM)
    H = np.array([[h11, h12], [h12, h22]]) / pb.widths[0]
    return H + np.diag(pb.coef * np.exp(ev.u))


@dataclass
class _Node:
    """Exact profile S*(u1; T) = min_{u2} S(u1, u2; T) at one u1 for every temperature (one eigh)."""

    u1: float
    S: np.ndarray   # (nT,)
    g: np.ndarray   # dS*/du1 (envelope theorem: ∂S/∂u1 at u2*)
    u2: np.ndarray  # argmin u2
    n_inner: np.ndarray  # minima in u2 at this u1


def _profile_node(pb: DeepProblem, G1: torch.Tensor, u1: float, T_all: np.ndarray, *, grid: int = 40) -> _Node:
    """In M's eigenbasis (M = Σ m_k v_k v_kᵀ, ỹ = Vᵀy) the data term at (u1, u2) is
    Σ_k log(T + c2 m_k) + ỹ_k² z_k, z_k = 1/(T + c2 m_k), c2 = Q2/λ2, and
    S = coef1 (Q1 − log Q1) + coef2 [Q2 − log Q2 + (1/N2) Σ_k ...] with coef2 = N2/N1: the minimum
    over Q2 is the one-hidden-layer saddle point of width N2 on the kernel M/λ2
    (equilibrium.action.solve_saddle: bracketed scan, every minimum, the lowest kept; docs/theory.md
    §2.3). dS*/du1 = coef1 (Q1 − 1) + (c2/N1)[Σ_k z_k (VᵀDV)_kk − aᵀDa], a = V(z ỹ)."""
    M, D, _ = _layer2_gram(G1, u1, pb.priors[0], pb.activation, 1)
    m_t, V = eigh(M)
    m = m_t.clamp_min(0.0).cpu().numpy()
    yt = (V.T @ pb.y).cpu().numpy()
    dk = (V * (D @ V)).sum(0).cpu().numpy()
    lam2, N1, N2 = pb.priors[1], pb.widths[0], pb.widths[1]
    coef1, coef2 = pb.coef
    Q1 = math.exp(u1)
    # min over Q2: S = coef1 (Q1 − log Q1) + coef2 × (the one-hidden-layer action of width N2 on M/λ2)
    sp = Spectrum(kappa=m_t.clamp_min(0.0), U=V, y_t=V.T @ pb.y, prior_v=lam2)
    inner = solve_saddle(sp, T_all, width=N2, grid=grid, raise_on_failure=False)
    ok = np.asarray(inner.converged, dtype=bool)
    u2_out = np.where(ok, np.log(np.asarray(inner.Q, dtype=np.float64)), np.nan)
    S_out = np.where(ok, coef1 * (Q1 - u1) + coef2 * np.asarray(inner.action, dtype=np.float64), np.inf)
    nin = np.asarray(inner.n_minima, dtype=np.int64)
    c2 = np.exp(u2_out) / lam2
    z = 1.0 / (T_all[:, None] + c2[:, None] * m[None])                       # (nT, P)
    Av = V @ torch.as_tensor((z * yt[None]).T, dtype=V.dtype, device=V.device)  # a = V(z ỹ), (P, nT)
    aDa = (Av * (D @ Av)).sum(0).cpu().numpy()
    g = coef1 * (Q1 - 1.0) + c2 * ((z * dk[None]).sum(1) - aDa) / N1
    return _Node(u1=u1, S=S_out, g=g, u2=u2_out, n_inner=nin)


def _hermite_minima(n0: _Node, n1: _Node, i: int) -> list[tuple[float, float]]:
    """Local minima (u1, u2 guess) of the cubic Hermite interpolant of S*(u1; T_i) on [n0.u1, n1.u1]."""
    h = n1.u1 - n0.u1
    p0, p1, m0, m1 = n0.S[i], n1.S[i], h * n0.g[i], h * n1.g[i]
    if not (np.isfinite(p0) and np.isfinite(p1) and np.isfinite(m0) and np.isfinite(m1)):
        return []
    qa, qb, qc = 6 * p0 + 3 * m0 - 6 * p1 + 3 * m1, -6 * p0 - 4 * m0 + 6 * p1 - 2 * m1, m0  # dS/dt
    ts = []
    if abs(qa) < 1e-14 * (abs(qb) + abs(qc) + 1e-300):
        if qb > 0:
            ts = [-qc / qb]
    else:
        disc = qb * qb - 4 * qa * qc
        if disc >= 0:
            sq = math.sqrt(disc)
            ts = [t for t in ((-qb - sq) / (2 * qa), (-qb + sq) / (2 * qa)) if 2 * qa * t + qb > 0]
    out = []
    for t in ts:
        if -1e-12 <= t <= 1.0 + 1e-12:
            t = min(max(t, 0.0), 1.0)
            out.append((n0.u1 + t * h, (1 - t) * n0.u2[i] + t * n1.u2[i]))
    return out


def _polish_l2(pb, G1, T, u0, *, tol, step_tol, max_iter):
    """Newton from u0 with exact gradient and Hessian (quadratic convergence). Converged when
    |dS/du| ≤ tol × the size of its largest term, or when the Newton step from the exact gradient
    with a positive-definite Hessian (fresh, or from the previous iterate: O(step) accurate) is
    below step_tol. Returns (ev, converged, H, evaluations, hessians)."""
    ev = _exact_l2(pb, G1, T, np.asarray(u0, dtype=np.float64))
    n_ev, n_h = 1, 0
    if ev is None:
        return None, False, None, n_ev, n_h
    H = None
    for _ in range(max_iter):
        if np.all(np.abs(ev.g) <= tol * ev.scale):
            if H is None:
                H, n_h = _exact_l2_hessian(pb, G1, ev), n_h + 1
            return ev, bool(np.linalg.eigvalsh(H).min() > 0), H, n_ev, n_h
        if H is not None and np.linalg.eigvalsh(H).min() > 0:
            if np.abs(np.linalg.solve(H, ev.g)).max() <= step_tol:  # certified with the carried H
                return ev, True, H, n_ev, n_h
        H, n_h = _exact_l2_hessian(pb, G1, ev), n_h + 1
        pd = np.linalg.eigvalsh(H).min() > 0
        step = -np.linalg.solve(H, ev.g) if pd else -ev.g / max(1.0, float(np.abs(ev.g).max()))
        if pd and np.abs(step).max() <= step_tol:
            return ev, True, H, n_ev, n_h
        if step @ ev.g >= 0:
            step = -ev.g / max(1.0, float(np.abs(ev.g).max()))
        step *= min(1.0, 0.5 / max(float(np.abs(step).max()), 1e-300))  # |Δ log Q| ≤ 0.5 per step
        alpha, new = 1.0, None
        while alpha > 1e-8:
            cand = _exact_l2(pb, G1, T, ev.u + alpha * step)
            n_ev += 1
            if cand is not None and (cand.S <= ev.S + 1e-4 * alpha * (step @ ev.g)
                                     or (alpha == 1.0 and np.abs(cand.g).max() < 0.5 * np.abs(ev.g).max())):
                new = cand
                break
            alpha *= 0.5
        if new is None:
            return ev, False, H, n_ev, n_h
        if alpha < 1.0:
            H = None  # the carried Hessian is only trusted after a full Newton step
        ev = new
    return ev, False, H, n_ev, n_h


def _solve_profile(pb: DeepProblem, T_all: np.ndarray, *, tol: float, max_iter: int, step_tol: float = 1e-9,
                   h_max: float = 0.25, max_nodes: int = 24, on_solution=None) -> DeepSaddlePoint:
    """L = 2, general activation (module docstring): exact profile on adaptive u1 nodes, every local
    minimum of its cubic Hermite interpolant for every T, each polished by exact Newton."""
    G1 = deep_kernels(pb.C, np.ones(2), pb.priors, pb.activation)[0][0]
    coef1 = float(pb.coef[0])
    nodes: dict[float, _Node] = {}

    def add(u: float) -> None:
        nodes[float(u)] = _profile_node(pb, G1, float(u), T_all)

    add(0.0)
    # 1. bracket: extend until every temperature's profile rises at the right end and falls at the left
    for _ in range(max_nodes):
        us = sorted(nodes)
        moved = False
        for side in (1, -1):
            end = nodes[us[-1] if side == 1 else us[0]]
            need = (end.g < 0) if side == 1 else (end.g > 0)
            need &= np.isfinite(end.g)
            if not need.any() or len(nodes) >= max_nodes:
                continue
            curv = coef1 * math.exp(end.u1)  # prior curvature; a secant through the last two nodes if it is larger
            if len(us) >= 2:
                other = nodes[us[-2] if side == 1 else us[1]]
                sec = (end.g - other.g) / (end.u1 - other.u1)
                curv = np.where(np.isfinite(sec) & (sec > curv), sec, curv)
            step = float(np.clip(1.2 * np.max(np.abs(end.g[need] / np.broadcast_to(curv, end.g.shape)[need])),
                                 0.02, 0.5))
            add(end.u1 + side * step)
            moved = True
        if not moved:
            break
    # 2. refine: halve every interval wider than h_max in which some temperature has a minimum
    while len(nodes) < max_nodes:
        us = sorted(nodes)
        wide = [(us[j], us[j + 1]) for j in range(len(us) - 1) if us[j + 1] - us[j] > h_max
                and any(_hermite_minima(nodes[us[j]], nodes[us[j + 1]], i) for i in range(len(T_all)))]
        if not wide:
            break
        for lo, hi in wide[: max_nodes - len(nodes)]:
            add(0.5 * (lo + hi))
    us = sorted(nodes)
    # 3. candidates per temperature, polished from the highest temperature down; the model's error
    #    at the previous temperature (exact − interpolated) corrects the next starting point
    order = np.argsort(-T_all)
    nT = len(T_all)
    Qo, So, Go = np.full((nT, 2), np.nan), np.full(nT, np.inf), np.full((nT, 2), np.nan)
    ok, nmin = np.zeros(nT, bool), np.zeros(nT, np.int64)
    minima_all: list[list[np.ndarray]] = [[] for _ in range(nT)]
    n_ev = n_h = 0
    hist: list[tuple[float, np.ndarray, np.ndarray]] = []  # (log T, model, exact) of the lowest minimum
    for i in order:
        cands = [c for j in range(len(us) - 1) for c in _hermite_minima(nodes[us[j]], nodes[us[j + 1]], i)]
        first, last = nodes[us[0]], nodes[us[-1]]
        if first.g[i] > 0:
            cands.append((first.u1, first.u2[i]))
        if last.g[i] < 0:
            cands.append((last.u1, last.u2[i]))
        if not cands:  # no interior minimum seen: start from the lowest node
            k = int(np.argmin([nodes[u].S[i] for u in us]))
            cands = [(us[k], nodes[us[k]].u2[i])]
        found: list[tuple[float, _Exact, np.ndarray]] = []
        fallback: _Exact | None = None  # reported (converged = False) when no candidate converges
        for c in cands:
            model = np.array(c, dtype=np.float64)
            u0 = model.copy()
            if hist and np.abs(hist[-1][1] - model).max() < 0.1:
                corr = hist[-1][2] - hist[-1][1]
                if len(hist) >= 2 and np.abs(hist[-2][1] - model).max() < 0.2:
                    lt, lt1, lt2 = math.log(T_all[i]), hist[-1][0], hist[-2][0]
                    corr = corr + (corr - (hist[-2][2] - hist[-2][1])) * (lt - lt1) / (lt1 - lt2)
                u0 = model + corr
            ev, conv, H, ne, nh = _polish_l2(pb, G1, float(T_all[i]), u0, tol=tol, step_tol=step_tol,
                                             max_iter=max_iter)
            n_ev, n_h = n_ev + ne, n_h + nh
            if ev is not None and not conv and (fallback is None or ev.S < fallback.S):
                fallback = ev
            if ev is None or not conv:
                continue
            if any(np.abs(ev.u - f[1].u).max() <= 1e-6 for f in found):
                continue
            found.append((ev.S, ev, model))
        found.sort(key=lambda f: f[0])
        nmin[i] = len(found)
        minima_all[i] = [np.exp(f[1].u) for f in found]
        if found:
            S, ev, model = found[0]
            Qo[i], So[i], Go[i], ok[i] = np.exp(ev.u), S, ev.g / np.exp(ev.u), True
            hist.append((math.log(T_all[i]), model, ev.u.copy()))
            if on_solution is not None:
                on_solution(int(i), ev)
        elif fallback is not None:
            Qo[i], So[i], Go[i] = np.exp(fallback.u), fallback.S, fallback.g / np.exp(fallback.u)
            if on_solution is not None:
                on_solution(int(i), fallback)
    kmax = max(1, max(len(m) for m in minima_all))
    minima = np.full((nT, kmax, 2), np.nan)
    for i, ms in enumerate(minima_all):
        for k, q in enumerate(ms):
            minima[i, k] = q
    return DeepSaddlePoint(temperature=T_all, Q=Qo, action=So, gradient=Go, converged=ok, n_minima=nmin,
                           minima=minima, n_evaluations=n_ev, curvature_exact=ok.copy(),
                           n_eigendecompositions=len(nodes), n_hessians=n_h, method="profile",
                           profile_nodes=np.asarray(us))


def _resolve_method(pb: DeepProblem, method: str) -> str:
    if method not in ("auto", "newton", "homogeneous", "profile"):
        raise ValueError(f"method: must be 'auto', 'newton', 'homogeneous' or 'profile', got {method!r}")
    if method == "homogeneous" and pb.activation not in HOMOGENEOUS:
        raise ValueError(f"method: 'homogeneous' needs an activation in {HOMOGENEOUS}, got {pb.activation!r}")
    if method == "profile" and (pb.L != 2 or pb.activation != "erf" or pb.D != 1):
        raise ValueError(f"method: 'profile' solves two hidden layers with erf and one output, got L={pb.L}, "
                         f"{pb.activation!r}, D={pb.D}")
    if method == "homogeneous" and pb.D != 1:
        raise ValueError(f"method: 'homogeneous' has one output only, got D={pb.D}")
    if pb.D > 1:
        return "newton"
    if method != "auto":
        return method
    if pb.activation in HOMOGENEOUS:
        return "homogeneous"
    return "profile" if (pb.L == 2 and pb.activation == "erf") else "newton"


def solve_deep_saddle(pb: DeepProblem, temperatures, *, tol: float = 1e-11, max_iter: int = 60,
                      both_directions: bool = True, method: str = "auto", raise_on_failure: bool = True,
                      _on_solution=None, _on_spectrum=None) -> DeepSaddlePoint:
    """Q*(T) for every temperature (module docstring). ``method`` "auto" takes the exact one-
    eigendecomposition path for homogeneous activations, the profile over Q1 for two hidden layers
    (erf) and Newton continuation otherwise ("newton" forces the general path, "profile" the
    L = 2 one). Converged = |dS/dlog Q_ℓ| ≤ ``tol`` × the size of its largest term (profile: or an
    exact Newton step below 1e-9 in log Q), with a positive-definite Hessian. Raises ValueError at
    non-convergence unless ``raise_on_failure=False``."""
    T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if T_all.size == 0 or not np.all(np.isfinite(T_all)) or np.any(T_all <= 0):
        raise ValueError(f"temperatures: must be a non-empty array of finite values > 0, got {T_all[:5]}")
    how = _resolve_method(pb, method)
    if how == "homogeneous":
        sad = _solve_homogeneous(pb, T_all, on_spectrum=_on_spectrum)
    elif how == "profile":
        sad = _solve_profile(pb, T_all, tol=tol, max_iter=max_iter, on_solution=_on_solution)
    else:
        sad = _solve_general(pb, T_all, tol=tol, max_iter=max_iter, both_directions=both_directions)
    if raise_on_failure and not sad.converged.all():
        raise ValueError(f"temperatures: the deep saddle point did not converge at T = "
                         f"{T_all[~sad.converged].tolist()[:5]} (widths={list(pb.widths)})")
    return sad


# ------------------------------------------------------------------------------------------
# the curve
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepCurve:
    """Posterior observables of a deep FC network over temperature (numpy; axis 0 = temperature).

    ``Q`` (nT, L) order parameters; ``weight_second_moment`` (nT, L) = Q_ℓ/λ_ℓ. For the readout
    (ℓ = L) this is the posterior mean squared weight (×λ_L: 1 in the prior); for an inner layer it
    is the kernel's renormalisation factor, NOT the mean squared weight, which stays close to its
    prior value 1/λ_ℓ (exact sampling, docs/validation.md "Deep FC and CNN"); predictor fields as
    :class:`equilibrium.TemperatureCurve` (``train_error``, ``train_variance``, ``test_error`` =
    ``test_bias2`` + ``test_variance``, ``test_prediction``, ``test_prediction_variance``).
    ``layer_geometry[name]`` (nT, L[, C]) class geometry (gdeq.geometry.class_geometry
    definitions) of the activation Gram G_ℓ of every hidden layer; ``test_layer_geometry`` the same
    on the test×test blocks; ``reference`` the infinite-width values (Q = 1). ``saddle`` the full
    :class:`DeepSaddlePoint`. D outputs: ``Q_readout`` (nT, D, D), ``test_prediction`` (nT, P_t, D),
    class geometry with the one-hot classes (absent for targets that are not one-hot).
    """

    temperature: np.ndarray
    Q: np.ndarray
    weight_second_moment: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    test_error: np.ndarray
    test_bias2: np.ndarray
    test_variance: np.ndarray
    layer_geometry: dict[str, np.ndarray]
    converged: np.ndarray
    n_minima: np.ndarray
    widths: tuple[float, ...]
    priors: tuple[float, ...]
    prior_w: float
    activation: str
    saddle: DeepSaddlePoint
    data_fingerprint: str = ""
    test_layer_geometry: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    test_prediction: np.ndarray | None = None
    test_prediction_variance: np.ndarray | None = None
    Q_readout: np.ndarray | None = None


def _geometry(G: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
    geo = geometry.class_geometry(G, labels)
    return {k: np.asarray(torch.as_tensor(getattr(geo, k)).cpu()) for k in GEOMETRY_MEASURES}


def deep_temperature_curve(
    x_train, y_train, temperatures, *, width: Sequence[float], activation: str = "erf", prior_w: float = 1.0,
    prior_v: float | Sequence[float] = 1.0, x_test=None, y_test=None, device=None, geometry_measures: bool = True,
    **solver,
) -> DeepCurve:
    """Saddle point, GP predictor and per-layer posterior kernel geometry of a deep FC network.

    Cost: the saddle point (module docstring), then per temperature one Cholesky of A and the
    kernel recursion (O(L P²)) for the predictor and the layer Grams.
    """
    pb = deep_problem(x_train, y_train, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                      device=device)
    T = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    dev = pb.C.device
    X = torch.as_tensor(np.asarray(x_train.detach().cpu() if isinstance(x_train, torch.Tensor) else x_train,
                                   dtype=np.float64), device=dev)
    Xt = Yt = None
    if x_test is not None:
        Xt = torch.as_tensor(np.asarray(x_test, dtype=np.float64), device=dev)
        if Xt.ndim != 2 or Xt.shape[1] != X.shape[1]:
            raise ValueError(f"x_test: must have shape (P_test, {X.shape[1]}), got {tuple(Xt.shape)}")
    if y_test is not None:
        if Xt is None:
            raise ValueError("y_test: given without x_test")
        Yt = np.asarray(y_test, dtype=np.float64)
        if pb.D == 1:
            Yt = Yt.reshape(-1)
            if Yt.shape[0] != Xt.shape[0] or not np.all(np.abs(Yt) == 1):
                raise ValueError(f"y_test: must be ±1 of shape ({Xt.shape[0]},), got shape {np.shape(y_test)}")
        elif Yt.shape != (Xt.shape[0], pb.D) or not np.all(np.isfinite(Yt)):
            raise ValueError(f"y_test: must be finite of shape ({Xt.shape[0]}, {pb.D}), got shape {np.shape(y_test)}")
    D = pb.D
    Ynp = pb.y.cpu().numpy()
    onehot = D > 1 and bool(np.all((Ynp == 0) | (Ynp == 1)) and np.all(Ynp.sum(1) == 1))
    if D > 1 and not onehot:
        geometry_measures = False  # class geometry needs class labels: one-hot targets only
    labels = Ynp if D == 1 else Ynp.argmax(1)
    test_labels = None if Yt is None else (Yt if D == 1 else Yt.argmax(1))
    nT, L, P = len(T), pb.L, pb.P
    train_err, train_var = np.empty(nT), np.empty(nT)
    test_mean = test_var = None
    if Xt is not None:
        C0X = input_covariance(Xt, X, pb.prior_w)
        C00 = input_covariance(Xt, Xt, pb.prior_w)
        c00, cX = torch.diagonal(C00).clone(), torch.diagonal(pb.C).clone()
        test_mean = np.empty((nT, Xt.shape[0]) + ((D,) if D > 1 else ()))
        test_var = np.empty_like(test_mean)
    full_test = Yt is not None and len(np.unique(test_labels)) >= 2 and geometry_measures
    geo: dict[str, list] = {k: [[None] * L for _ in range(nT)] for k in GEOMETRY_MEASURES}
    tgeo: dict[str, list] = {k: [[None] * L for _ in range(nT)] for k in GEOMETRY_MEASURES}
    # G_1 = κ(C) does not depend on Q: measure it once
    G1, _ = deep_kernels(pb.C, np.ones(L), pb.priors, activation)
    g1 = _geometry(G1[0], labels) if geometry_measures else None

    def record_geometry(i: int, G: list[torch.Tensor] | None, G00: list[torch.Tensor] | None) -> None:
        """Class geometry of every layer Gram (train: G, test×test: G00) at temperature i."""
        for grams, lab, out in ((G if geometry_measures else None, labels, geo), (G00, test_labels, tgeo)):
            if grams is None:
                continue
            for l in range(L):
                m = g1 if (l == 0 and out is geo) else _geometry(grams[l], lab)
                for k in GEOMETRY_MEASURES:
                    out[k][i][l] = m[k]

    def observe(i: int, Q: np.ndarray, G: list[torch.Tensor], chol: torch.Tensor, Ainv: torch.Tensor | None):
        """Predictor and layer geometry at temperature i from the factorisation of A = T + K_L(Q*)."""
        a = torch.cholesky_solve(pb.y[:, None], chol)[:, 0]
        train_err[i] = float((T[i] * a).pow(2).mean())
        dAinv = torch.cholesky_inverse(chol).diagonal() if Ainv is None else Ainv.diagonal()
        train_var[i] = float(T[i] - T[i] ** 2 * dAinv.mean())
        G00 = None
        if Xt is not None:
            K0X, k0, G0X, G00 = _cross_kernels(C00, c00, C0X, cX, Q, pb.priors, activation, full_test)
            test_mean[i] = (K0X @ a).cpu().numpy()
            B = torch.cholesky_solve(K0X.T, chol) if Ainv is None else Ainv @ K0X.T
            test_var[i] = (k0 - (K0X * B.T).sum(1)).cpu().numpy()
        record_geometry(i, G, G00 if full_test else None)

    def observe_multi(i: int, Q: np.ndarray, QL: np.ndarray) -> None:
        """D outputs (docs/theory.md §3 conventions): in Q_L's eigenbasis A = ⊕_d (T + q_d G_L/λ_L);
        f̄ = G_L(x0, X) α Q_L/λ_L, Σ_a = Q_L,aa g00/λ_L − Σ_d U_ad² (q_d/λ_L)² g0ᵀA_d⁻¹g0; errors
        and variances summed over outputs."""
        Qs = np.r_[Q[: L - 1], 1.0]
        G, _ = deep_kernels(pb.C, Qs, pb.priors, activation)
        GL, lam = G[-1], pb.priors[-1]
        q, U = np.linalg.eigh(QL)
        Ut = torch.as_tensor(U, device=dev)
        Yr = pb.y @ Ut
        eye = torch.eye(P, dtype=torch.float64, device=dev)
        chols, cols, trinv = [], [], 0.0
        for d in range(D):
            chol = torch.linalg.cholesky((q[d] / lam) * GL + T[i] * eye)
            cols.append(torch.cholesky_solve(Yr[:, d:d + 1], chol)[:, 0])
            trinv += float(torch.cholesky_inverse(chol).diagonal().sum())
            chols.append(chol)
        alpha = torch.stack(cols, 1) @ Ut.T
        train_err[i] = float(T[i] ** 2 * (alpha**2).sum() / P)
        train_var[i] = D * T[i] - T[i] ** 2 * trinv / P
        G00 = None
        if Xt is not None:
            K0X, k0, G0X, G00 = _cross_kernels(C00, c00, C0X, cX, Qs, pb.priors, activation, full_test)
            g0X, g00 = G0X[-1], k0 * lam  # Q_L = 1 above: k0 = g00/λ_L
            test_mean[i] = (g0X @ alpha @ torch.as_tensor(QL, device=dev) / lam).cpu().numpy()
            red = torch.stack([(g0X * torch.cholesky_solve(g0X.T, c).T).sum(1) for c in chols], 1)  # (Pt, D)
            var = torch.diagonal(torch.as_tensor(QL, device=dev))[None, :] * g00[:, None] / lam \
                - red @ torch.as_tensor(((q / lam) ** 2)[:, None] * (U**2).T, device=dev)
            test_var[i] = var.cpu().numpy()
        record_geometry(i, G, G00 if full_test else None)

    done = np.zeros(nT, bool)

    def on_solution(i: int, ev: _Exact) -> None:  # profile path: reuse the polish's last factorisation
        observe(i, np.exp(ev.u), [G1[0], ev.M], ev.chol, ev.Ainv)
        done[i] = True

    spectrum: list = []
    sad = solve_deep_saddle(pb, T, _on_solution=on_solution, _on_spectrum=lambda *s: spectrum.extend(s), **solver)
    if spectrum:  # homogeneous: K_L = q K̂ with q = Π Q_ℓ, the eigenbasis of K̂ serves every T (docs/theory.md §3)
        Kh, kap, Uk = spectrum
        kap = kap.clamp_min(0.0)
        yt = Uk.T @ pb.y
        if Xt is not None:
            K0h, k0h, _, _ = _cross_kernels(C00, c00, C0X, cX, np.ones(L), pb.priors, activation, False)
            F0 = K0h @ Uk
        for i in range(nT):
            q, Ti = float(np.prod(sad.Q[i])), float(T[i])
            z = 1.0 / (Ti + q * kap)
            train_err[i] = float(Ti**2 * (z**2 * yt**2).sum() / P)
            train_var[i] = float(Ti - Ti**2 * z.sum() / P)
            if Xt is not None:
                test_mean[i] = (q * (F0 @ (z * yt))).cpu().numpy()
                test_var[i] = (q * k0h - q * q * (F0**2 @ z)).cpu().numpy()
            if geometry_measures or full_test:
                G = deep_kernels(pb.C, sad.Q[i], pb.priors, activation)[0] if geometry_measures else None
                G00 = _cross_kernels(C00, c00, C0X, cX, sad.Q[i], pb.priors, activation, True)[3] if full_test else None
                record_geometry(i, G, G00)
        done[:] = True
    eye = torch.eye(P, dtype=torch.float64, device=dev)
    for i in np.nonzero(~done)[0]:
        if D > 1:
            observe_multi(int(i), sad.Q[i], sad.Q_readout[i])
            continue
        G, K = deep_kernels(pb.C, sad.Q[i], pb.priors, activation)
        observe(int(i), sad.Q[i], G, torch.linalg.cholesky(K[-1] + T[i] * eye), None)
    nan = np.full(nT, np.nan)
    bias2 = var_mean = err = nan
    if Yt is not None:  # D outputs: summed over outputs, mean over points
        sq, tv = (Yt[None] - test_mean) ** 2, test_var
        if D > 1:
            sq, tv = sq.sum(-1), tv.sum(-1)
        bias2, var_mean = sq.mean(1), tv.mean(1)
        err = bias2 + var_mean
    stack = lambda d: {k: np.asarray([[np.asarray(v) for v in row] for row in d[k]]) for k in d}  # noqa: E731
    reference = {}
    if geometry_measures:
        for k in GEOMETRY_MEASURES:  # Q = 1: the NNGP Grams of every layer
            reference[k] = np.asarray([_geometry(g, labels)[k] for g in G1])
    return DeepCurve(
        temperature=T, Q=sad.Q, weight_second_moment=sad.Q / np.asarray(pb.priors)[None], train_error=train_err,
        train_variance=train_var, test_error=err, test_bias2=bias2, test_variance=var_mean,
        layer_geometry=stack(geo) if geometry_measures else {}, converged=sad.converged, n_minima=sad.n_minima,
        widths=pb.widths, priors=pb.priors, prior_w=pb.prior_w, activation=activation, saddle=sad,
        data_fingerprint=geometry.data_fingerprint(X.cpu().numpy(), labels),
        test_layer_geometry=stack(tgeo) if full_test else {}, reference=reference,
        test_prediction=test_mean, test_prediction_variance=test_var, Q_readout=sad.Q_readout,
    )

