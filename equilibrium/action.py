"""Effective action of the one-hidden-layer posterior and its saddle point (docs/conventions.md §2).

Single output (y ∈ {±1}^P):

    S(Q) = Q − log Q + (1/N1) [log det A(Q) + yᵀ A(Q)⁻¹ y],   A(Q) = T·I + (Q/λ1) K.

K is the full second moment E[σσ], also for activations with a non-zero mean μ = E[σ(h)]
(ReLU): the mean mode μμᵀ couples to the readout sum s = Σ_i v_i/√N1, whose prior given the
readout norm is N(0, Q/λ1) — the mean mode is renormalised by the same Q at leading order
(docs/theory.md §2.2, checked against the exact posterior of an affine network in the tests).

In the eigenbasis K = U diag(κ) Uᵀ, ỹ = Uᵀy, every evaluation costs O(P):
S(Q) = Q − log Q + (1/N1) Σ_k [log(T + Qκ_k/λ1) + ỹ_k²/(T + Qκ_k/λ1)], so ONE eigendecomposition
serves any number of temperatures (:class:`Spectrum`).

Multi-output (one-hot Y, D outputs), with a D×D order parameter:

    S(Q) = tr Q − log det Q + (1/N1) [log det(T + Q⊗K/λ1) + yᵀ (T + Q⊗K/λ1)⁻¹ y].

In the joint eigenbasis every mode k of K contributes a D×D block B_k = T + κ_k Q/λ1; writing
Q = V diag(q) Vᵀ all blocks are diagonal in V, so one evaluation costs O(P D²).

One API for both: :func:`factorise` takes targets y of shape (P,) (scalar Q, the D = 1 case) or
(P, D) (D×D Q); :func:`effective_action`, :func:`action_gradient` and :func:`solve_saddle` follow the
shape of the targets stored in the :class:`Spectrum`.

For vector targets the saddle point Q* = argmin S (Q > 0) is found for a whole vector of temperatures at once:
the stationarity condition dS/dQ = 0 is bracketed on a log grid between rigorous bounds
(docs/theory.md §2.3), every sign change is refined by safeguarded Newton (bisection
fallback) vectorised over temperatures and roots, and when S has several minima the lowest is returned
and the count reported. For D > 1: damped Newton with the analytic Hessian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .linalg import eigh

__all__ = ["Spectrum", "SaddlePoint", "factorise", "effective_action", "action_gradient", "solve_saddle"]


@dataclass(frozen=True)
class Spectrum:
    """One eigendecomposition K = U diag(κ) Uᵀ with the targets projected on it.

    ``kappa`` (P,) ≥ 0, ``U`` (P, P), ``y_t`` = Uᵀy: (P,) for vector targets (scalar order parameter Q)
    or (P, D) for D output columns (D×D order parameter); ``prior_v`` = λ1. Float64 torch on one device.
    """

    kappa: torch.Tensor
    U: torch.Tensor
    y_t: torch.Tensor
    prior_v: float

    @property
    def P(self) -> int:
        return self.kappa.shape[0]

    @property
    def scalar(self) -> bool:
        """True for vector targets: Q is a scalar per temperature (the D = 1 fast path)."""
        return self.y_t.ndim == 1

    @property
    def D(self) -> int:
        """Number of outputs."""
        return 1 if self.scalar else self.y_t.shape[1]

    @property
    def Y_t(self) -> torch.Tensor:
        """UᵀY as a (P, D) matrix (a column for vector targets)."""
        return self.y_t[:, None] if self.scalar else self.y_t

    @property
    def a(self) -> torch.Tensor:
        """κ/λ1: A(Q) = U diag(T + Q·a) Uᵀ."""
        return self.kappa / self.prior_v


def factorise(K: torch.Tensor, y: torch.Tensor, *, prior_v: float) -> Spectrum:
    """Eigendecompose K once (docs/conventions.md §2); the only O(P³) step of a curve.

    ``y`` (P,) gives a scalar order parameter Q, ``y`` (P, D) a D×D one (D = 1 allowed).
    """
    if y.ndim not in (1, 2) or y.shape[0] != K.shape[0]:
        raise ValueError(f"y: must have shape ({K.shape[0]},) or ({K.shape[0]}, D), got {tuple(y.shape)}")
    kappa, U = eigh(K)
    kappa = kappa.clamp_min(0.0)  # K is PSD; round-off negatives would make A indefinite at tiny T
    return Spectrum(kappa=kappa, U=U, y_t=U.T @ y, prior_v=float(prior_v))


def _z(sp: Spectrum, T: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    return 1.0 / (T[..., None] + Q[..., None] * sp.a)


def effective_action(sp: Spectrum, T, Q, *, width: float) -> torch.Tensor:
    """S(Q): for vector targets at temperatures T and scalars Q (broadcastable), O(P) each; for D
    outputs at one temperature T and a D×D matrix Q (0-d tensor, +inf if Q is not positive
    definite), O(P D²)."""
    if not sp.scalar:
        return torch.tensor(_action_matrix(sp, float(T), _as_matrix(sp, Q), width=width), dtype=torch.float64)
    T = torch.as_tensor(T, dtype=torch.float64, device=sp.kappa.device)
    Q = torch.as_tensor(Q, dtype=torch.float64, device=sp.kappa.device)
    T, Q = torch.broadcast_tensors(T, Q)
    z = _z(sp, T, Q)
    return Q - torch.log(Q) + (-torch.log(z).sum(-1) + (sp.y_t**2 * z).sum(-1)) / width


def action_gradient(sp: Spectrum, T, Q, *, width: float) -> torch.Tensor:
    """dS/dQ. Vector targets: 1 − 1/Q + (1/N1) Σ_k [a_k z_k − ỹ_k² a_k z_k²], z_k = 1/(T + Q a_k),
    a = κ/λ1 (broadcast over T, Q). D outputs (one T, D×D Q): see :func:`_gradient_matrix`."""
    if not sp.scalar:
        return _gradient_matrix(sp, float(T), _as_matrix(sp, Q), width=width)
    T = torch.as_tensor(T, dtype=torch.float64, device=sp.kappa.device)
    Q = torch.as_tensor(Q, dtype=torch.float64, device=sp.kappa.device)
    T, Q = torch.broadcast_tensors(T, Q)
    z = _z(sp, T, Q)
    return 1.0 - 1.0 / Q + ((sp.a * z) * (1.0 - sp.y_t**2 * z)).sum(-1) / width


@dataclass(frozen=True)
class SaddlePoint:
    """Saddle point over temperatures (numpy arrays, one entry per temperature).

    ``Q`` the global minimiser of S, ``gradient`` dS/dQ there, ``converged`` the convergence flag,
    ``n_minima`` the number of local minima found by the scan, ``minima`` an (nT, n_max) array of
    all local minimisers (NaN padded), ``action`` S at ``Q``.
    """

    temperature: np.ndarray
    Q: np.ndarray
    action: np.ndarray
    gradient: np.ndarray
    converged: np.ndarray
    n_minima: np.ndarray
    minima: np.ndarray


def _bounds(sp: Spectrum, T: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigorous bracket of every stationary point (docs/theory.md §2.3).

    Upper: yᵀA⁻¹(K/λ1)A⁻¹y ≤ |y|²/(4QT)  ⇒  Q ≤ 1 + |y|²/(4 T N1).
    Lower: tr(A⁻¹K/λ1) ≤ min(tr K/(λ1 T), P/Q)  ⇒  Q ≥ max(1/(1 + tr K/(λ1 T N1)), 1 − P/N1).
    """
    y2 = float((sp.y_t**2).sum())
    tr = float(sp.a.sum())
    hi = (1.0 + y2 / (4.0 * T * width)) * 1.01
    lo = 1.0 / (1.0 + tr / (T * width))
    alpha = sp.P / width
    if alpha < 1.0:
        lo = torch.maximum(lo, torch.full_like(lo, 1.0 - alpha))
    return lo * 0.99, hi


def solve_saddle(
    sp: Spectrum, temperatures, *, width: float, grid: int = 40, rtol: float = 1e-14, tol: float = 1e-10,
    max_iter: int = 100, chunk_elements: int = 2**22, raise_on_failure: bool = True,
) -> SaddlePoint:
    """Q*(T) for every temperature, for either shape of the targets in ``sp``.

    Vector targets (scalar Q, the fast path): scan dS/dQ on a ``grid``-point log grid in a rigorous
    bracket, vectorised over temperatures, refine every sign change by safeguarded Newton to ``rtol``
    and keep the lowest minimum. Cost: O(nT · grid · P) plus O(nT · iterations · P), after the single
    eigendecomposition in ``sp``. ``Q`` has shape (nT,).

    D output columns: damped Newton on the D×D Q with the analytic Hessian, continued from high to low
    temperature, converged when max|dS/dQ| ≤ ``tol`` × its largest term (:func:`_solve_saddle_matrix`).
    ``Q`` has shape (nT, D, D).

    Raises ``ValueError`` naming the temperatures at which the solver did not converge
    (``raise_on_failure=False`` returns the flag instead).
    """
    if not sp.scalar:
        return _solve_saddle_matrix(sp, temperatures, width=width, tol=tol, max_iter=max_iter,
                                    raise_on_failure=raise_on_failure)
    dev = sp.kappa.device
    T_all = torch.as_tensor(np.asarray(temperatures, dtype=np.float64), device=dev).reshape(-1)
    nT = T_all.shape[0]
    Q_out = torch.empty(nT, dtype=torch.float64, device=dev)
    conv = torch.zeros(nT, dtype=torch.bool, device=dev)
    nmin = torch.zeros(nT, dtype=torch.long, device=dev)
    minima_list: list[torch.Tensor] = []
    step = max(1, chunk_elements // (grid * sp.P))
    for start in range(0, nT, step):
        T = T_all[start:start + step]
        lo, hi = _bounds(sp, T, width)
        s = torch.linspace(0.0, 1.0, grid, dtype=torch.float64, device=dev)
        Qg = torch.exp(torch.log(lo)[:, None] + s[None, :] * (torch.log(hi) - torch.log(lo))[:, None])
        g = action_gradient(sp, T[:, None], Qg, width=width)  # (n, grid)
        # a minimum lies where dS/dQ goes from < 0 to ≥ 0
        up = (g[:, :-1] < 0) & (g[:, 1:] >= 0)
        ti, gi = torch.nonzero(up, as_tuple=True)
        roots, ok = _refine(sp, T[ti], Qg[ti, gi], Qg[ti, gi + 1], g[ti, gi], g[ti, gi + 1],
                            width=width, rtol=rtol, max_iter=max_iter)
        S = effective_action(sp, T[ti], roots, width=width)
        counts = torch.bincount(ti, minlength=T.shape[0])
        nmin[start:start + step] = counts
        kmax = max(int(counts.max()), 1)
        # slot of each root within its temperature (nonzero() returns them grouped by temperature)
        slot = torch.arange(ti.shape[0], device=dev) - (torch.cumsum(counts, 0) - counts)[ti]
        mins = torch.full((T.shape[0], kmax), float("nan"), dtype=torch.float64, device=dev)
        S_pad = torch.full((T.shape[0], kmax), float("inf"), dtype=torch.float64, device=dev)
        ok_pad = torch.zeros((T.shape[0], kmax), dtype=torch.bool, device=dev)
        mins[ti, slot], S_pad[ti, slot], ok_pad[ti, slot] = roots, S, ok
        k = torch.argmin(S_pad, 1, keepdim=True)  # the lowest minimum
        Q_out[start:start + step] = mins.gather(1, k)[:, 0]
        conv[start:start + step] = ok_pad.gather(1, k)[:, 0] & (counts > 0)
        minima_list.append(mins)
    width_max = max(m.shape[1] for m in minima_list)
    minima = torch.cat([torch.nn.functional.pad(m, (0, width_max - m.shape[1]), value=float("nan"))
                        for m in minima_list])
    grad = action_gradient(sp, T_all, Q_out, width=width)
    if raise_on_failure and not bool(conv.all()):
        bad = T_all[~conv].cpu().numpy()
        raise ValueError(
            f"temperatures: the saddle point did not converge at T = {bad.tolist()[:5]} "
            f"(width={width}); try a different grid or check the data"
        )
    return SaddlePoint(
        temperature=T_all.cpu().numpy(), Q=Q_out.cpu().numpy(),
        action=effective_action(sp, T_all, Q_out, width=width).cpu().numpy(),
        gradient=grad.cpu().numpy(), converged=conv.cpu().numpy(), n_minima=nmin.cpu().numpy(),
        minima=minima.cpu().numpy(),
    )


def _gradient_and_curvature(sp: Spectrum, T: torch.Tensor, Q: torch.Tensor, width: float):
    """dS/dQ and d²S/dQ² = 1/Q² + (1/N1) Σ_k [−a_k² z_k² + 2 ỹ_k² a_k² z_k³] in one O(P) pass."""
    z = _z(sp, T, Q)
    az = sp.a * z
    yaz = sp.y_t**2 * az * z
    g = 1.0 - 1.0 / Q + (az.sum(-1) - yaz.sum(-1)) / width
    h = 1.0 / Q**2 + ((2.0 * yaz * az).sum(-1) - (az * az).sum(-1)) / width
    return g, h


def _refine(sp, T, lo, hi, glo, ghi, *, width, rtol, max_iter):
    """Safeguarded Newton on brackets with dS/dQ(lo) < 0 ≤ dS/dQ(hi), vectorised over brackets:
    a Newton step that leaves the (shrinking) bracket is replaced by a bisection in log Q.
    Converged = the last step or the bracket is below 1e-10 relative (the bracket always holds a
    sign change of the continuous dS/dQ), or dS/dQ is exactly 0."""
    lo, hi = lo.clone(), hi.clone()
    x = (lo * ghi - hi * glo) / (ghi - glo)  # secant start
    x = torch.where(torch.isfinite(x) & (x > lo) & (x < hi), x, torch.sqrt(lo * hi))
    done = torch.zeros_like(lo, dtype=torch.bool)
    step = torch.full_like(lo, float("inf"))
    for _ in range(max_iter):
        g, h = _gradient_and_curvature(sp, T, x, width)
        hi = torch.where((g >= 0) & ~done, x, hi)
        lo = torch.where((g < 0) & ~done, x, lo)
        newton = x - g / h
        ok = torch.isfinite(newton) & (newton > lo) & (newton < hi)
        nxt = torch.where(ok, newton, torch.sqrt(lo * hi))
        step = torch.where(done, step, (nxt - x).abs())
        exact = g == 0
        x = torch.where(done | exact, x, nxt)
        done = done | exact | (step <= rtol * x) | ((hi - lo) <= rtol * hi)
        if bool(done.all()):
            break
    ok = done & ((step <= 1e-10 * x) | ((hi - lo) <= 1e-10 * hi) | (_gradient_and_curvature(sp, T, x, width)[0] == 0))
    return x, ok


# ------------------------------------------------------------------------------------------
# D output columns: D×D order parameter
# ------------------------------------------------------------------------------------------
def _as_matrix(sp: Spectrum, Q) -> torch.Tensor:
    Qt = torch.as_tensor(Q, dtype=torch.float64, device=sp.kappa.device)
    if Qt.shape != (sp.D, sp.D):
        raise ValueError(f"Q: must be a {sp.D}×{sp.D} matrix for {sp.D} output columns, got shape {tuple(Qt.shape)}")
    return Qt


def _qeig(Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, V = torch.linalg.eigh(0.5 * (Q + Q.T))
    return q, V


def _action_matrix(sp: Spectrum, T: float, Q: torch.Tensor, *, width: float) -> float:
    """S(Q) for a D×D matrix Q at one temperature, O(P D²)."""
    q, V = _qeig(Q)
    if bool((q <= 0).any()):
        return float("inf")
    a = sp.kappa / sp.prior_v
    den = T + a[:, None] * q[None, :]  # (P, D): blocks diagonal in V
    Yh = sp.Y_t @ V
    F = torch.log(den).sum() + (Yh**2 / den).sum()
    return float(q.sum() - torch.log(q).sum() + F / width)


def _gradient_matrix(sp: Spectrum, T: float, Q: torch.Tensor, *, width: float) -> torch.Tensor:
    """dS/dQ = I − Q⁻¹ + (1/(λ1 N1)) Σ_k κ_k [B_k⁻¹ − B_k⁻¹ ỹ_k ỹ_kᵀ B_k⁻¹], B_k = T + κ_k Q/λ1."""
    q, V = _qeig(Q)
    a = sp.kappa / sp.prior_v
    Z = 1.0 / (T + a[:, None] * q[None, :])  # (P, D)
    Yh = (sp.Y_t @ V) * Z  # B_k⁻¹ ỹ_k in the V basis
    inner = torch.diag((a[:, None] * Z).sum(0)) - Yh.T @ (a[:, None] * Yh)
    Qinv = (V / q) @ V.T
    return torch.eye(Q.shape[0], dtype=Q.dtype, device=Q.device) - Qinv + V @ inner @ V.T / width


def _hessian_matrix(sp: Spectrum, T: float, Q: np.ndarray, width: float) -> np.ndarray:
    """d(dS/dQ)[Δ] as a D²×D² matrix on vec(Δ):
    Q⁻¹ΔQ⁻¹ + (1/N1) Σ_k a_k² [−B_k⁻¹ΔB_k⁻¹ + B_k⁻¹Δ m_k m_kᵀ + m_k m_kᵀ Δ B_k⁻¹],  m_k = B_k⁻¹ỹ_k,
    evaluated in the eigenbasis of Q (where every B_k is diagonal), O(P D³)."""
    D = Q.shape[0]
    q, V = np.linalg.eigh(Q)
    a = (sp.kappa / sp.prior_v).cpu().numpy()
    Z = 1.0 / (T + a[:, None] * q[None, :])  # (P, D)
    M = (sp.Y_t.cpu().numpy() @ V) * Z  # m_k in the V basis
    a2 = a * a
    H = np.zeros((D, D, D, D))  # H[i, j, k, l]: coefficient of Δ_kl in (dG)_ij
    idx = np.arange(D)
    H[idx[:, None], idx[None, :], idx[:, None], idx[None, :]] += 1.0 / np.outer(q, q)
    H[idx[:, None], idx[None, :], idx[:, None], idx[None, :]] -= np.einsum("k,ki,kj->ij", a2, Z, Z) / width
    # (B⁻¹ Δ m mᵀ)_ij = z_i Δ_il (m mᵀ)_lj ;  (m mᵀ Δ B⁻¹)_ij = (m mᵀ)_ik Δ_kj z_j
    T1 = np.einsum("k,ki,kl,kj->ilj", a2, Z, M, M) / width
    for i in range(D):
        H[i, :, i, :] += T1[i].T
    T2 = np.einsum("k,ki,kl,kj->ilj", a2, M, M, Z) / width
    for j in range(D):
        H[:, j, :, j] += T2[:, :, j]
    # back to the original basis: Δ = V Δ' Vᵀ, dG = V dG' Vᵀ
    H = np.einsum("ai,bj,ijkl,ck,dl->abcd", V, V, H, V, V)
    return H.reshape(D * D, D * D)


def _gradient_scale_matrix(sp: Spectrum, T: float, Q: np.ndarray, width: float) -> float:
    """Size of the largest term in dS/dQ (|Q⁻¹|, and the data sums Σ a_k z_k, Σ a_k ŷ_k² z_k² over
    N1): the round-off floor of the gradient is ~1e-16 of it, so convergence is judged relative to it."""
    q, V = np.linalg.eigh(Q)
    a = (sp.kappa / sp.prior_v).cpu().numpy()
    Z = 1.0 / (T + a[:, None] * q[None, :])
    Yh = (sp.Y_t.cpu().numpy() @ V) * Z
    data = max(float((a[:, None] * Z).sum(0).max()), float((a[:, None] * Yh**2).sum(0).max())) / width
    return 1.0 + float(np.abs(1.0 / q).max()) + data


def _solve_saddle_matrix(
    sp: Spectrum, temperatures, *, width: float, tol: float = 1e-10, max_iter: int = 100,
    raise_on_failure: bool = True,
) -> SaddlePoint:
    """D×D saddle point per temperature by damped Newton on dS/dQ = 0 with the analytic Hessian
    (backtracking on S, staying positive definite; natural-gradient step −Q(dS/dQ)Q when the
    Hessian is not positive), continued from high to low temperature. Converged = Q positive
    definite, Hessian positive (a minimum) and max|dS/dQ| ≤ tol × the size of its largest term
    (:func:`_gradient_scale_matrix`), or a Newton step below 1e-13 relative. ``Q`` in the
    result has shape (nT, D, D); ``n_minima`` is 1 where converged (no multi-minimum scan for D > 1)."""
    T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    D = sp.D
    order = np.argsort(-T_all)
    Qs = np.empty((len(T_all), D, D))
    grads = np.empty((len(T_all), D, D))
    conv = np.zeros(len(T_all), dtype=bool)
    S = np.empty(len(T_all))
    dev = sp.kappa.device
    Q_prev = np.eye(D)

    def tq(Q):
        return torch.as_tensor(Q, dtype=torch.float64, device=dev)

    def grad(T, Q):
        return _gradient_matrix(sp, T, tq(Q), width=width).cpu().numpy()

    for idx in order:
        T = float(T_all[idx])
        Q = Q_prev.copy()
        f = _action_matrix(sp, T, tq(Q), width=width)
        ok = False
        for _ in range(max_iter):
            G = grad(T, Q)
            G = 0.5 * (G + G.T)
            scale = _gradient_scale_matrix(sp, T, Q, width)
            H = _hessian_matrix(sp, T, Q, width)
            hess_pd = np.linalg.eigvalsh(0.5 * (H + H.T)).min() > 0
            if np.abs(G).max() <= tol * scale:
                ok = hess_pd
                break
            step = None
            if hess_pd:
                step = np.linalg.solve(H, -G.reshape(-1)).reshape(D, D)
                step = 0.5 * (step + step.T)
            if step is None or np.sum(step * G) >= 0:
                step = -Q @ G @ Q
            if hess_pd and np.abs(step).max() <= 1e-13 * np.abs(Q).max():
                ok = True  # Newton step at round-off level: converged to working precision
                break
            slope = np.sum(step * G)
            alpha = 1.0
            while alpha > 1e-12:
                Qn = Q + alpha * step
                if np.linalg.eigvalsh(Qn).min() > 0:
                    fn = _action_matrix(sp, T, tq(Qn), width=width)
                    if fn <= f + 1e-4 * alpha * slope:
                        break
                    # near the minimum S changes below its round-off: accept a full Newton step
                    # that halves the gradient instead
                    if alpha == 1.0 and hess_pd and np.abs(grad(T, Qn)).max() <= 0.5 * np.abs(G).max():
                        break
                alpha *= 0.5
            Q, f = 0.5 * (Qn + Qn.T), fn
        Qs[idx], grads[idx], S[idx] = Q, grad(T, Q), f
        conv[idx] = ok
        if ok:
            Q_prev = Q
    if raise_on_failure and not conv.all():
        raise ValueError(
            f"temperatures: the D×D saddle point did not converge at T = {T_all[~conv].tolist()[:5]} (width={width})"
        )
    return SaddlePoint(temperature=T_all, Q=Qs, action=S, gradient=grads, converged=conv,
                       n_minima=conv.astype(np.int64), minima=Qs[:, None])
