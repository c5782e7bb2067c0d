"""Theory level ``cavity``: the single-unit cavity measure with self-consistent fields AND the predictor from it.

Derivation: docs/theory.md "Beyond the Gaussian level", B.5. With the readout integrated out and an
auxiliary field t ∈ R^P (t | W ~ N(i A_W⁻¹y, A_W⁻¹), A_W = T + ΦΦᵀ/(λ1N1)), one unit's marginal,
for a Gaussian cavity field t ~ N(i m, Σ), is

    p(w) ∝ p0(w) (1 + a)^(-1/2) exp(½ g²/(1 + a)),   a = φᵀΣφ/(λ1N1),  g = mᵀφ/√(λ1N1),   (★)

and every observable of the level is an average over (★) (E_p below):

    ω = 1/(1 + a) + g²/(1 + a)²        λ1⟨v²⟩ of the unit given the cavity
    K_m    = E_p[φφᵀ/(1 + a)]           (mean kernel: the exact Stein identity of the t-mean)
    K_post = E_p[ω φφᵀ]                 (readout-weighted posterior kernel (1/N1)Σ λ1 v_i² φ_iφ_iᵀ)

Fields (cavity of N1 − 1 units, c = (N1 − 1)/N1):  (T + c K_m/λ1) m = y,   Σ = (T + c K_post/λ1)⁻¹.
Predictor (full network, the same measure):
    train residual y − f̄ = T m̂,  m̂ = (T + K_m/λ1)⁻¹y;   train posterior variance T − T² Tr Σ̂/P,
    Σ̂ = (T + K_post/λ1)⁻¹  (exact identity Cov f(X) = T − T² Cov(t), with Cov(t) ≈ Σ̂);
    test mean f̄(x) = K_m(x, X) m̂/λ1;  test variance K_post(x, x)/λ1 − K_post(x, X) Σ̂ K_post(X, x)/λ1².
Also ⟨K_W⟩ = E_p[φφᵀ] and the first-layer weight moments. For Gaussian φ (identity activation) the
fixed point is the Q* theory exactly: K_m m = Q*K m, K_post = Q*K + (rank one along Km, which
changes a, TrΣ and test variances by O(1/N1) only) — tested.

Numerics (the speed lever): ONE set of importance samples for the whole temperature ladder, from
a fixed mixture proposal (the prior, stretched by several factors along the few directions in
which the tilt grows, :func:`_proposal`), so the features φ, their rotation into K's eigenbasis and
their projections on a fixed basis B (top eigenvectors of K, labels, class indicators, the Q*
fields) are computed once. The Q* fields that orient the proposal and enter B are those of a fixed
temperature grid (4 per decade, 10 … 10⁻³), not of the ladder, so a temperature's value does not depend on
the other temperatures asked for. Per temperature and iteration everything is O(P·S·|B|). Kernel
matrices are represented as (scalar)·K + B D Bᵀ: K_m, K_post deviate from their bulk scale in the
directions of B only (the rest is Monte-Carlo noise at this sample size). Prior averages are
subtracted as control variates (exact K). The fixed point is solved by Newton–Krylov (finite-difference
Jacobian-vector products, GMRES) in block-scaled variables, with continuation along the ladder (hot to
cold): a secant predictor, and a failed step is halved (helper temperatures in between, at most
``max_refine`` halvings); a first temperature that does not converge from its Q* fields is reached from
``WARM_T`` = 10 down. Damped and Anderson iteration fail here: the map has a real eigenvalue far
below −1 (−3 at T = 1, −13 at T = 0.6 for MNIST P = 1000, N1 = 50; docs/theory.md B.5 "Solver").
A temperature whose fixed point is not found returns NaN for every observable (flagged, B.6).

Regime indicator (:attr:`CavityResult.in_regime`, reasons in ``regime_reason``; docs/theory.md B.6):
the importance weights must not be degenerate (Kish ESS ≥ ``min_ess``, Pareto k̂ ≤ 0.7), the fixed
point must converge, the cavity covariance must respect the exact rank bound
T·TrΣ/P ≥ 1 − (N1 − 1)/P (:func:`rank_bound`), and N1 ≥ 50 (:func:`width_check`).
"""

from __future__ import annotations

import math
import warnings
import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg
import torch

from gdeq import geometry

from .action import Spectrum, solve_saddle
from .kernels import nngp_kernels
from .linalg import eigh
from .sampling import chain_diagnostics
from .weights import weight_directions

__all__ = ["CavityResult", "cavity_curve", "regime_flags", "pareto_k", "rank_bound", "gaussian_sigma_trace", "width_check",
           "DEFAULT_MIN_ESS", "MAX_PARETO_K", "MIN_VALIDATED_WIDTH", "ResampleMove"]

DEFAULT_MIN_ESS = 200.0
"""Kish effective sample size below which an importance-sampled level is flagged out of regime."""


@dataclass(frozen=True)
class CavityResult:
    """Per-temperature output of :func:`cavity_curve` (numpy; leading axis = temperature).

    Predictor: ``train_mean`` (nT, P), ``train_error`` (1/P)|y − f̄|², ``train_variance`` mean posterior
    variance of f on the training inputs, ``test_mean``/``test_point_variance`` (nT, Pt),
    ``test_bias2``, ``test_variance`` (means), ``test_error`` = bias² + variance (NaN without labels).
    ``readout_second_moment`` (1/N1)Σ⟨v_i²⟩ = E_p[ω]/λ1. ``hidden_gram`` ⟨K_W⟩ train (nT, P, P),
    ``hidden_gram_test_train`` (nT, Pt, P), ``hidden_gram_test`` (nT, Pt, Pt). ``weight_moments``
    (nT, r, r) along ``weight_directions`` and ``weight_label_moment`` along e_y ∝ Xᵀy (definitions
    of :class:`equilibrium.TemperatureCurve`). Diagnostics: ``ess`` Kish effective sample size (of
    ``samples``), ``iterations``, ``converged``, ``pareto_k`` Pareto k̂ of the log weights, ``sigma_trace`` T·TrΣ/P of the cavity field, ``in_regime`` and
    ``regime_reason`` (empty string when in regime), ``helper_temperatures`` inserted by the continuation
    on the way to each temperature. Where ``converged`` is False every observable and diagnostic is NaN:
    the fixed point was not found, so there is no result to report.
    """

    temperature: np.ndarray
    train_mean: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    test_mean: np.ndarray | None
    test_point_variance: np.ndarray | None
    test_bias2: np.ndarray
    test_variance: np.ndarray
    test_error: np.ndarray
    readout_second_moment: np.ndarray
    hidden_gram: np.ndarray
    hidden_gram_test_train: np.ndarray | None
    hidden_gram_test: np.ndarray | None
    weight_moments: np.ndarray
    weight_label_moment: np.ndarray
    weight_directions: np.ndarray
    ess: np.ndarray
    pareto_k: np.ndarray
    samples: int
    iterations: np.ndarray
    converged: np.ndarray
    sigma_trace: np.ndarray
    in_regime: np.ndarray
    regime_reason: tuple[str, ...]
    helper_temperatures: np.ndarray | None = None


MAX_PARETO_K = 0.7
"""Pareto-tail index of the importance log-weights above which their average is unreliable (PSIS)."""


def pareto_k(log_weights: torch.Tensor | np.ndarray) -> float:
    """Pareto-tail index k̂ of importance log-weights (arviz ``psislw``): k̂ > 0.7 means the
    weighted averages are dominated by a few samples (heavy tail; the ESS can still look large)."""
    import arviz  # lazy: arviz is slow to import

    lw = np.asarray(log_weights.detach().cpu().numpy() if isinstance(log_weights, torch.Tensor) else log_weights,
                    dtype=np.float64)
    if not np.all(np.isfinite(lw)):
        return float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(arviz.psislw(lw - lw.max())[1])


def regime_flags(ess, converged, *, pareto=None, min_ess: float = DEFAULT_MIN_ESS,
                 extra=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-temperature regime indicator of an importance-sampled level: in regime iff the Kish ESS
    ≥ ``min_ess``, the Pareto k̂ of the log weights (when given) ≤ 0.7, the fixed point converged,
    and every ``extra`` (mask, reason) holds. Returns (bool array, reasons: '' where in regime,
    else the failed checks joined by '; ')."""
    ess = np.asarray(ess, dtype=np.float64)
    conv = np.asarray(converged, dtype=bool)
    checks = [(ess >= min_ess, f"importance weights degenerate (ESS < {min_ess:g})"),
              (conv, "self-consistent fields did not converge")] + list(extra or [])
    if pareto is not None:
        checks.insert(1, (np.asarray(pareto) <= MAX_PARETO_K,
                          f"importance weights heavy-tailed (Pareto k > {MAX_PARETO_K:g})"))
    ok = np.ones(len(ess), bool)
    reasons = []
    for i in range(len(ess)):
        bad = [r for m, r in checks if not bool(np.asarray(m)[i])]
        ok[i] = not bad
        reasons.append("; ".join(bad))
    return ok, tuple(reasons)


MIN_VALIDATED_WIDTH = 50
"""Below this width the proportional-limit levels are not validated (the sampled level is the reference)."""


def rank_bound(sigma_trace, n_train: int, width: float) -> tuple[np.ndarray, str]:
    """The exact constraint on the cavity covariance of N1 − 1 units: A_∖i = T + (rank ≤ N1 − 1), so
    T·TrΣ/P ≥ 1 − (N1 − 1)/P (> 0 only for α = P/N1 > 1). A level whose cavity Σ breaks it has left
    the regime where a deterministic Gaussian cavity field describes the other units (docs/theory.md
    B.5). Returns (mask of temperatures that satisfy it, reason)."""
    bound = max(0.0, 1.0 - (float(width) - 1.0) / float(n_train))
    return np.asarray(sigma_trace) >= bound, f"cavity covariance breaks the rank bound T·TrΣ/P ≥ {bound:.2f} (α > 1, low T)"


def gaussian_sigma_trace(temperatures, Q, kappa, *, prior_v: float, width: float) -> np.ndarray:
    """T·TrΣ/P of the Gaussian-equivalent cavity field Σ = (T + ((N1−1)/N1)·Q K/λ1)⁻¹ (D outputs: averaged
    over the eigenvalues of Q), from K's eigenvalues ``kappa``."""
    T = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    kap = np.clip(np.asarray(kappa.detach().cpu().numpy() if isinstance(kappa, torch.Tensor) else kappa,
                             dtype=np.float64), 0.0, None)
    Qa = np.asarray(Q, dtype=np.float64)
    q = Qa.reshape(len(T), 1) if Qa.size == len(T) else np.linalg.eigvalsh(Qa.reshape(len(T), *Qa.shape[-2:]))
    cav = (float(width) - 1.0) / float(width)
    z = T[:, None, None] / (T[:, None, None] + cav * q[:, :, None] * kap[None, None, :] / prior_v)
    return z.mean(axis=(1, 2))


def width_check(width: float, n: int) -> tuple[np.ndarray, str]:
    """(mask, reason): the width is at least :data:`MIN_VALIDATED_WIDTH`."""
    return np.full(n, float(width) >= MIN_VALIDATED_WIDTH), (
        f"width N1 < {MIN_VALIDATED_WIDTH}: proportional-limit theory not validated (use sampling)")


#: where the continuation starts when the hottest requested temperature cannot start from its own Q* fields:
#: hot enough that the tilt is weak for the kernels of the unit-variance priors (λ0 = λ1 = 1 data scale), and the
#: fixed point is near them (MNIST, P = 1000, N1 = 50: 16 evaluations at T = 10, where T = 1 from its Q* fields
#: does not converge)
WARM_T = 10.0
#: density of the fixed temperature grid whose Q* fields orient the proposal and span the correction basis
FIELD_GRID_PER_DECADE = 4


def _newton_krylov(F, u0: np.ndarray, *, tol: float, max_eval: int) -> tuple[np.ndarray, bool, int]:
    """Newton–Krylov for F(u) = 0: finite-difference Jacobian-vector products, GMRES inner solves
    (Eisenstat–Walker forcing), backtracking on |F|₂. Why not fixed-point mixing: the cavity map G has a
    real eigenvalue far below −1 that grows as T falls (docs/theory.md B.5 "Solver"), which damped or
    Anderson iteration must resolve step by step, while Newton is invariant to it.
    Returns (u, converged: max|F(u)| ≤ tol, evaluations)."""
    n = [0]

    def f_eval(u):
        n[0] += 1
        r = F(u)
        return r if np.all(np.isfinite(r)) else None

    u = np.array(u0, dtype=np.float64)
    f = f_eval(u)
    if f is None:
        return u, False, n[0]
    eta = 0.02
    while float(np.max(np.abs(f))) > tol and n[0] < max_eval:
        u_k, f_k = u, f
        norm = float(np.linalg.norm(f_k))

        def jv(d):
            nd = float(np.linalg.norm(d))
            if nd == 0.0:
                return np.zeros_like(d)
            h = 1e-7 * (1.0 + float(np.linalg.norm(u_k))) / nd
            r = f_eval(u_k + h * d)
            return (r - f_k) / h if r is not None else np.full_like(d, 1e12)

        op = scipy.sparse.linalg.LinearOperator((len(u), len(u)), matvec=jv, dtype=np.float64)
        left = max_eval - n[0] - 2
        if left < 2:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d, _ = scipy.sparse.linalg.gmres(op, -f_k, rtol=eta, atol=0.0, restart=min(30, left),
                                             maxiter=max(1, min(3, left // 30)))
        lam, new = 1.0, None
        for _ in range(8):  # backtracking (Armijo on |F|₂, for which the Newton direction descends)
            r = f_eval(u_k + lam * d)
            if r is not None and float(np.linalg.norm(r)) <= (1.0 - 1e-4 * lam) * norm:
                new = r
                break
            lam *= 0.5
        if new is None:  # no descent along the Newton direction: stalled (the caller refines the T step)
            break
        eta = min(0.02, max(1e-4, 0.9 * (float(np.linalg.norm(new)) / norm) ** 2))  # Eisenstat–Walker 2, capped
        u, f = u_k + lam * d, new
    return u, float(np.max(np.abs(f))) <= tol, n[0]


def _solve_fixed_point(residual, pack, state, cold, unpack, *, tol: float, max_iter: int, scale=None):
    """Fixed point v = G(v) (``residual`` = G(v) − v) by Newton–Krylov (:func:`_newton_krylov`) in scaled
    variables v/scale (``scale`` per entry, e.g. the rms size of each block, so ``tol`` is relative; default:
    |v0| per entry, floored), from the start ``state`` (from ``cold`` when the start's residual is not finite),
    at most ``max_iter`` evaluations of G. Returns (state, converged)."""
    v0 = pack(state)
    if not np.all(np.isfinite(residual(v0))):
        v0 = np.asarray(cold, dtype=np.float64)
    if scale is None:
        scale = np.maximum(np.abs(v0), 1e-3 * max(float(np.abs(v0).max()), 1e-12))
    u, ok, _ = _newton_krylov(lambda z: residual(z * scale) / scale, v0 / scale, tol=tol, max_eval=max_iter)
    return unpack(u * scale), ok


def _orth(M: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
    """Orthonormal basis of the columns of M (rank-revealing SVD)."""
    u, s, _ = torch.linalg.svd(M, full_matrices=False)
    return u[:, s > tol * s[0]]


def _proposal(Zt: torch.Tensor, slope: torch.Tensor, fields: list[torch.Tensor], lam0: float, k_max: int = 4):
    """Directions (r, k) in span coordinates along which the tilt exp(½g²/(1+a)) grows: the linearised
    tilt g ≈ w·Zᵀ(σ̄'⊙m) for the Q* fields m of the ladder; the top-k principal directions of those."""
    d = torch.stack([Zt.T @ (slope * m) for m in fields], 1)
    d = d / d.norm(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(d, full_matrices=False)
    keep = s > 0.05 * s[0]
    return u[:, keep][:, :k_max]


def _cavity_core(
    x_train,
    y_train,
    temperatures,
    Q,
    *,
    width: float,
    activation="erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    samples: int | None = None,
    stretches: tuple[float, ...] = (1.0, 1.6, 2.5, 4.0),
    rank: int = 32,
    tol: float = 1e-3,
    max_iter: int = 60,
    max_refine: int = 4,
    min_ess: float = DEFAULT_MIN_ESS,
    seed: int = 0,
    device: str | torch.device | None = None,
    closure: str = "shape",
    injected: tuple[torch.Tensor, torch.Tensor] | None = None,
    start: tuple | None = None,
    setup: dict | None = None,
) -> tuple[CavityResult, dict]:
    """:func:`cavity_curve` with the importance measure (its docstring has the options), plus the hooks of the
    resample-move measure: ``injected`` = (draws (r, S) in span coordinates, log p0/p_ref of each) replaces the
    importance samples, ``start`` = the cavity fields (m, q, D) where the first temperature's solve starts, and
    ``setup`` = a previous call's data setup (kernels, eigenbasis, span, field grid) on the same data, reused
    (its field grid also fixes the correction basis, so fields from one call fit the next), or
    ``{"ladder": (T_max, T_min)}`` to build the field grid for a whole ladder from a call at one temperature.
    Returns (result, internals): the fixed-point fields per temperature (None where not found), the
    differentiable log tilt of (★), the data ``setup`` and what the HMC needs (``dim``, ``prior_w``, ``kw``)."""
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x_train, y_train: need (P, N0) and (P,), got {x.shape} and {np.shape(y_train)}")
    if not np.all(np.abs(y) == 1):
        raise ValueError("y_train: the cavity level needs ±1 labels of shape (P,) (binary task)")
    T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if T_all.size == 0 or not np.all(np.isfinite(T_all)) or np.any(T_all <= 0):
        raise ValueError(f"temperatures: must be finite and > 0, got {T_all.tolist()[:5]}")
    if not (np.isfinite(width) and width >= 2):
        raise ValueError(f"width: must be >= 2 (a cavity of N1 − 1 ≥ 1 units), got {width!r}")
    for name, value in (("prior_w", prior_w), ("prior_v", prior_v)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    Qa = np.asarray(Q, dtype=np.float64).reshape(-1)
    if Qa.shape != T_all.shape or not np.all(np.isfinite(Qa)) or np.any(Qa <= 0):
        raise ValueError(f"Q: expected finite positive saddle-point values of shape {T_all.shape}, got {np.shape(Q)}")
    if closure not in ("shape", "trace", "fluct"):
        raise ValueError(f"closure: must be 'shape', 'trace' or 'fluct', got {closure!r}")
    if not (len(stretches) >= 1 and all(s >= 1 for s in stretches)):
        raise ValueError(f"stretches: must be a non-empty tuple of factors >= 1, got {stretches!r}")
    if y_test is not None and x_test is None:
        raise ValueError("y_test: given without x_test")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    kw = dict(dtype=torch.float64, device=dev)
    P, n0 = x.shape
    N1, lam0, lam1 = float(width), float(prior_w), float(prior_v)
    cav = (N1 - 1.0) / N1
    S = int(samples or min(2**15, max(4096, 2**23 // max(P, 1))))
    xt = None if x_test is None else np.asarray(x_test, dtype=np.float64)
    yt = None if y_test is None else torch.as_tensor(np.asarray(y_test, dtype=np.float64).reshape(-1), **kw)

    # ---- kernels, eigenbasis, Q* fields --------------------------------------------------
    setup = {} if setup is None else setup
    if "kb" not in setup:
        kb = nngp_kernels(x, xt, activation=activation, prior_w=lam0, device=dev)
        kappa, U = eigh(kb.train)
        setup.update(kb=kb, kappa=kappa.clamp_min(0.0), U=U)
    kb, kappa, U = setup["kb"], setup["kappa"], setup["U"]
    K = kb.train
    yv = torch.as_tensor(y, **kw)
    yr = U.T @ yv
    mQ = [U @ (yr / (float(T) + float(q) * kappa / lam1)) for T, q in zip(T_all, Qa)]
    # the Q* fields on a fixed grid (FIELD_GRID_PER_DECADE per decade from WARM_T down to 10⁻³, wider if the
    # ladder is): they orient the proposal and span the correction basis B, so the level's value at a
    # temperature does not depend on which other temperatures were asked for
    if "T_grid" not in setup:
        spectrum = Spectrum(kappa=kappa, U=U, y_t=yr, prior_v=lam1)
        ladder = setup.get("ladder", (float(T_all.max()), float(T_all.min())))  # the whole ladder's range
        t_hi, t_lo = max(WARM_T, ladder[0]), min(1e-3, ladder[1])
        setup["T_grid"] = np.geomspace(t_hi, t_lo, int(math.ceil(FIELD_GRID_PER_DECADE * math.log10(t_hi / t_lo))) + 1)
        setup["Q_grid"] = solve_saddle(spectrum, setup["T_grid"], width=N1).Q
    T_grid, Q_grid = setup["T_grid"], setup["Q_grid"]
    m_grid = [U @ (yr / (float(T) + float(q) * kappa / lam1)) for T, q in zip(T_grid, Q_grid)]

    # ---- samples: span coordinates, mixture proposal --------------------------------------
    if "span" not in setup:
        setup["span"] = geometry.span_reduction(x, xt)  # the exact reduction (docs/conventions.md §6)
        setup["E"] = weight_directions(x)
    span = setup["span"]
    basis = span.basis.T  # (r, N0) orthonormal rows
    r = basis.shape[0]
    Z = torch.as_tensor(span.x_train / math.sqrt(n0), **kw)  # h = Z w
    gen = torch.Generator(device=dev).manual_seed(seed)
    if injected is None:
        dirs = _proposal(Z, kb.slope_train, m_grid, lam0)
        k = dirs.shape[1]
        xi = torch.randn(r, S, generator=gen, **kw) / math.sqrt(lam0)
        st = torch.as_tensor(stretches, **kw)
        comp = torch.arange(S, device=dev) % len(stretches)  # equal share per mixture component
        u = dirs.T @ xi
        w_s = xi + dirs @ ((st[comp] - 1.0)[None, :] * u)
        u = st[comp][None, :] * u  # projections of the drawn w on the stretched directions
        u2 = (u * u).sum(0) * lam0
        # log p0/q along the stretched subspace (balance-heuristic mixture density)
        log_q = torch.logsumexp(-k * torch.log(st)[:, None] - 0.5 * u2[None, :] / st[:, None] ** 2, 0) - math.log(len(st))
        log_p0_q = -0.5 * u2 - log_q
    else:  # draws of a reference single-unit measure (resample-move): log p0/p_ref = −tilt_ref, no prior control variate
        w_s, log_p0_q = (v.to(**kw) for v in injected)
        S = w_s.shape[1]
    sigma = geometry.activation(activation)
    phi = sigma(Z @ w_s)  # (P, S)
    phi_t = None
    if xt is not None:
        ht = torch.as_tensor(span.x_test / math.sqrt(n0), **kw) @ w_s
        r2 = span.test_remainder.shape[1]
        if r2:  # the test inputs' orthogonal remainder sees only prior weight components
            Zp = torch.as_tensor(span.test_remainder / math.sqrt(n0), **kw)
            ht = ht + Zp @ (torch.randn(r2, S, generator=gen, **kw) / math.sqrt(lam0))
        phi_t = sigma(ht)
    phr = U.T @ phi  # features in K's eigenbasis (once)
    phr2 = phr * phr
    # prior weights: control variate with the exact prior averages (importance samples). Draws of a tilted
    # reference measure represent the prior badly, so there the exact prior averages are used without it.
    w0 = torch.softmax(log_p0_q, 0) if injected is None else None

    def excess(weights: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, prior_xy, scale: float = 1.0) -> torch.Tensor:
        """E_w[X Yᵀ] − scale·E_0[X Yᵀ] (E_0[X Yᵀ] = ``prior_xy`` exactly), with the prior control variate if any."""
        if w0 is None:
            return (X * weights) @ Y.T - scale * prior_xy
        return (X * (weights - scale * w0)) @ Y.T

    def excess_vec(weights: torch.Tensor, F: torch.Tensor, prior_f) -> torch.Tensor:
        """E_w[F] − E_0[F] per row of F (E_0[F] = ``prior_f``)."""
        return F @ weights - prior_f if w0 is None else F @ (weights - w0)

    # fixed basis B for the low-rank kernel corrections: top eigen-directions, labels, class
    # indicators, the Q* fields m and K m on the fixed grid
    cls = torch.stack([(yv > 0).to(torch.float64), (yv < 0).to(torch.float64)], 1)
    fields = torch.stack(m_grid, 1)
    cand = torch.cat([U[:, -min(rank, P):], yv[:, None], cls, fields, K @ fields], 1)
    B = _orth(cand)
    nb = B.shape[1]
    Bt = U.T @ B  # B in K's eigenbasis
    pB = B.T @ phi  # (nb, S) projections, once
    # shape basis of Σ: the leading eigen-directions of K with the label directions (y, the fields m,
    # K m) projected out — along those the Gaussian-equivalent scale q·K is kept (B.5: the label part
    # of K_post is a fluctuation term that feeds back on m and runs away)
    # Σ's shape basis lies inside the top-`rank` eigenspace of K (coordinates idx of K's eigenbasis), so
    # that a = φᵀΣφ/(λ1N1) costs O(rank²·S) per evaluation, not O(P·rank·S) (B.5 "Numerics")
    L = _orth(torch.cat([yv[:, None], fields, K @ fields], 1))
    idx = torch.arange(P - min(rank, P), P, device=dev)
    Lr = _orth((U.T @ L)[idx])  # the label directions' components in the top eigenspace
    Cr = _orth(torch.eye(len(idx), **kw) - Lr @ Lr.T)  # their complement there
    ns = Cr.shape[1]
    Bst = torch.zeros(P, ns, **kw)
    Bst[idx] = Cr
    phr_top = phr[idx].contiguous()
    pBs = Cr.T @ phr_top

    KB = B.T @ K @ B  # exact prior averages E_0[pB pBᵀ] and E_0[pBs pBsᵀ]
    Ks = Cr.T @ (kappa[idx, None] * Cr)

    def kernel_parts(weights: torch.Tensor, scale: float, p: torch.Tensor = pB, p0: torch.Tensor = KB) -> torch.Tensor:
        """D of E_w[fφφᵀ] ≈ scale·K + B D Bᵀ, with weights = w·f (control variate scale·w0)."""
        return excess(weights, p, p, p0, scale)

    def solve_eig(T: float, c: float, scale: float, D: torch.Tensor, rhs_r: torch.Tensor, Vt=Bt) -> torch.Tensor:
        """(T + c(scale K + V D Vᵀ)/λ1)⁻¹ applied to rhs (all in K's eigenbasis, Woodbury)."""
        lam = T + c * scale * kappa / lam1
        Li = 1.0 / lam
        x0 = Li[:, None] * rhs_r
        small = torch.eye(Vt.shape[1], **kw) + (c / lam1) * D @ (Vt.T @ (Li[:, None] * Vt))
        return x0 - Li[:, None] * (Vt @ torch.linalg.solve(small, (c / lam1) * D @ (Vt.T @ x0)))

    Bst_shape = Bst

    def quad_all(T: float, c: float, scale: float, D: torch.Tensor, Bst=Bst) -> tuple[torch.Tensor, torch.Tensor]:
        """a_s·λ1N1 = φ_sᵀ(T + c(scale K + Bs D Bsᵀ)/λ1)⁻¹φ_s for all samples, and Tr of that inverse."""
        ns = Bst.shape[1]
        lam = T + c * scale * kappa / lam1
        Li = 1.0 / lam
        base = Li @ phr2
        if Bst is Bst_shape:  # supported on the top eigenspace only
            BL = Cr.T @ (Li[idx, None] * phr_top)  # (ns, S)
        else:
            BL = Bst.T @ (Li[:, None] * phr)
        small = torch.eye(ns, **kw) + (c / lam1) * D @ (Bst.T @ (Li[:, None] * Bst))
        corr = ((c / lam1) * (torch.linalg.solve(small, D @ BL)) * BL).sum(0)
        trace = Li.sum() - (c / lam1) * torch.trace(torch.linalg.solve(small, D @ (Bst.T @ (Li[:, None] ** 2 * Bst))))
        return base - corr, trace

    def tilt(T: float, m: torch.Tensor, scale: float, D: torch.Tensor, basis: torch.Tensor):
        """The (★) weights of every sample for cavity fields (m, Σ = (T + c·(scale·K + basis D basisᵀ)/λ1)⁻¹)."""
        qa, _ = quad_all(T, cav, scale, D, basis)
        a = qa / (lam1 * N1)
        g = (m @ phi) / math.sqrt(lam1 * N1)
        logw = log_p0_q - 0.5 * torch.log1p(a) + 0.5 * g * g / (1.0 + a)
        w = torch.softmax(logw, 0)
        omega = 1.0 / (1.0 + a) + g * g / (1.0 + a) ** 2  # λ1⟨v²⟩ of the unit given the cavity
        return w, a, g, omega, logw

    # where Σ's measured shape lives: "shape" (B.5) on Bs (label directions removed, q·K there);
    # "fluct" (B.10: Σ_t⁻¹ = T + c·K_post/λ1, what a Gaussian-fluctuating cavity mean closes to) on all of B
    sigma_basis, shape_p, shape_p0 = (Bt, pB, KB) if closure == "fluct" else (Bst, pBs, Ks)

    def measure(T: float, state: tuple):
        """One pass: fields -> (★) weights -> new (m, q, D_post, ρ, D_m)."""
        m, q, Dp = state
        w, a, g, omega, logw = tilt(T, m, q, Dp, sigma_basis)
        q_new = float((w * omega).sum())
        rho = float((w / (1.0 + a)).sum())
        Dp_new = kernel_parts(w * omega, q_new, shape_p, shape_p0)
        Dm = kernel_parts(w / (1.0 + a), rho)
        m_new = U @ solve_eig(T, cav, rho, Dm, yr[:, None])[:, 0]
        return (m_new, q_new, Dp_new), dict(w=w, a=a, g=g, omega=omega, rho=rho, Dm=Dm, logw=logw)

    def measure_trace(T: float, state: tuple):
        """One pass of the "trace" closure (B.9): Σ = (T + c·K_m/λ1)⁻¹, m = Σy, K_m = ρK + B D_m Bᵀ."""
        m, rho, Dm = state
        w, a, g, omega, logw = tilt(T, m, rho, Dm, Bt)
        rho_new = float((w / (1.0 + a)).sum())
        Dm_new = kernel_parts(w / (1.0 + a), rho_new)
        m_new = U @ solve_eig(T, cav, rho_new, Dm_new, yr[:, None])[:, 0]
        return (m_new, rho_new, Dm_new), dict(w=w, a=a, g=g, omega=omega, rho=rho_new, Dm=Dm_new, logw=logw)

    if closure == "trace":  # state (m, ρ, D_m) on the full basis B instead of (m, q, D_post) on Bs
        measure = measure_trace  # noqa: F811
    if closure in ("trace", "fluct"):
        ns = nb

    def pack(state):
        m, q, Dp = state
        return torch.cat([m, torch.tensor([math.log(q)], **kw), Dp.reshape(-1)]).cpu().numpy()

    def unpack(v):
        v = torch.as_tensor(v, **kw)
        return v[:P], math.exp(min(max(float(v[P]), -30.0), 30.0)), v[P + 1:].reshape(ns, ns)

    E = setup["E"]
    ey = x.T @ y
    ey = ey / np.linalg.norm(ey)
    E_dir = torch.as_tensor(np.concatenate([E, ey[None]]) @ basis.T, **kw)
    proj = E_dir @ w_s  # (r_dir + 1, S)
    prior_mom = E_dir @ E_dir.T / lam0

    K0 = kb.test_train
    F0 = None if K0 is None else K0 @ U
    if xt is not None:
        kt_eval, kt_vec = torch.linalg.eigh(kb.test)
        cand_t = [kt_vec[:, -min(rank, xt.shape[0]):]]
        if yt is not None:
            cand_t += [yt[:, None], torch.stack([(yt > 0).to(torch.float64), (yt < 0).to(torch.float64)], 1)]
        Bt_test = _orth(torch.cat(cand_t, 1))
        pBt = Bt_test.T @ phi_t
    names = ("train_mean", "train_error", "train_variance", "test_mean", "test_var", "v2", "KW", "KWt", "KWtt",
             "wm", "wl", "ess", "khat", "it", "conv", "trS", "helpers")
    out: dict[str, list] = {n: [] for n in names}
    order = np.argsort(-T_all, kind="stable")
    d_floor = 1e-3 * float(kappa[idx].mean())  # the shape matrix's natural unit: K's top eigenvalues

    def block_scale(v: np.ndarray) -> np.ndarray:
        """Per-entry scale of the packed state: the rms size of m, 1 for log q, the rms size of the shape
        matrix (floored): ``tol`` is then a relative tolerance per block."""
        sc = np.empty_like(v)
        sc[:P] = max(float(np.sqrt(np.mean(v[:P] ** 2))), 1e-12)
        sc[P] = 1.0
        sc[P + 1:] = max(float(np.sqrt(np.mean(v[P + 1:] ** 2))) if len(v) > P + 1 else 0.0, d_floor)
        return sc

    def solve_at(T: float, start: np.ndarray, cold: np.ndarray, count: list) -> tuple[tuple, bool]:
        def residual(v):
            count[0] += 1
            s_out, _ = measure(T, unpack(v))
            return pack(s_out) - v

        return _solve_fixed_point(residual, pack, unpack(start), cold, unpack, tol=tol, max_iter=max_iter,
                                  scale=block_scale(start))

    def start_at(T: float, x: float, count: list) -> np.ndarray:
        """The secant predictor, or the last converged state where that starts closer (relative residual)."""
        warm, pred = hist[-1][1], predict(x)
        if pred is warm:
            return warm

        def size(v):
            count[0] += 1
            s_out, _ = measure(T, unpack(v))
            r = (pack(s_out) - v) / block_scale(v)
            return float(np.linalg.norm(r)) if np.all(np.isfinite(r)) else np.inf

        return pred if size(pred) < size(warm) else warm

    # continuation in log T (B.5 "Solver"): converged (log T, packed state), helper temperatures included
    hist: list[tuple[float, np.ndarray]] = []

    def predict(x: float) -> np.ndarray:
        """Secant predictor from the last two converged points (at most one of their steps ahead)."""
        if len(hist) < 2 or hist[-1][0] == hist[-2][0]:
            return hist[-1][1]
        (x0, v0), (x1, v1) = hist[-2], hist[-1]
        t = min(1.0, (x - x1) / (x1 - x0))
        return v1 + t * (v1 - v0)

    def continue_to(T: float, cold: np.ndarray, count: list) -> tuple[tuple, bool, int]:
        """Continuation from the last converged temperature to T: a failed step is halved (helper temperatures
        in between), a successful one doubled; at most `max_refine` halvings. Returns (state, converged, helpers)."""
        cur, goal = hist[-1][0], math.log(T)
        # after a temperature that could not be reached, one direct attempt only (cost: the colder ones
        # start even farther from the last fixed point and rarely succeed)
        step, fails, n_help = goal - cur, (max_refine if lost else 0), 0
        while True:
            nxt = goal if abs(step) >= abs(goal - cur) else cur + step
            state, ok = solve_at(math.exp(nxt), start_at(math.exp(nxt), nxt, count), cold, count)
            if ok:
                hist.append((nxt, pack(state)))
                cur = nxt
                if nxt == goal:
                    return state, True, n_help
                n_help += 1
                step *= 2.0
            else:
                fails += 1
                if fails > max_refine:
                    return state, False, n_help
                step /= 2.0

    def warm_up(count: list) -> bool:
        """A converged start at the field grid's hottest temperature (WARM_T whenever this is needed: the ladder is
        colder), from its Q* fields (the tilt is weak there, so they are close to the fixed point), for a ladder
        whose hottest temperature is too cold to start from its own Q* fields."""
        T_w = float(T_grid[0])
        cold_w = pack((m_grid[0], float(Q_grid[0]), torch.zeros(ns, ns, **kw)))
        state, ok = solve_at(T_w, cold_w, cold_w, count)
        if ok:
            hist.append((math.log(T_w), pack(state)))
        return ok

    helpers_used, lost, states = [], False, []
    for ti in order:
        T = float(T_all[ti])
        cold = pack((mQ[ti], float(Qa[ti]), torch.zeros(ns, ns, **kw)))  # the Q* fields
        it_count = [0]
        n_help = 0
        if not hist:
            state, converged = solve_at(T, cold if start is None else pack(start), cold, it_count)
            if converged:
                hist.append((math.log(T), pack(state)))
            elif injected is None and T < WARM_T and warm_up(it_count):  # start hotter and continue down to T
                state, converged, n_help = continue_to(T, cold, it_count)
                n_help += 1
        else:
            state, converged, n_help = continue_to(T, cold, it_count)
        helpers_used.append(n_help)
        lost = lost or not converged
        states.append(state if converged else None)
        if not converged:  # observables are NaN (below); the Q* fields only give them their shapes
            state = unpack(cold)
        _, aux = measure(T, state)
        w, a, omega, rho, Dm = aux["w"], aux["a"], aux["omega"], aux["rho"], aux["Dm"]
        q = float((w * omega).sum())
        Dp = kernel_parts(w * omega, q, shape_p, shape_p0)
        # ---- predictor of the full network (N1 units) from the same measure ----
        m_hat_r = solve_eig(T, 1.0, rho, Dm, yr[:, None])[:, 0]
        m_hat = U @ m_hat_r
        resid_train = T * m_hat
        out["train_mean"].append((yv - resid_train).cpu().numpy())
        out["train_error"].append(float((resid_train ** 2).mean()))
        _, tr_cav = quad_all(T, cav, rho, Dm, Bt) if closure == "trace" else quad_all(T, cav, q, Dp, sigma_basis)
        trS = T * float(tr_cav) / P  # T·TrΣ/P of the cavity field (regime indicator)
        out["trS"].append(trS)
        # train posterior variance T − T²·Tr Σ̂/P with Σ̂ = (T + qK/λ1)⁻¹ (same kernel as the test variance)
        out["train_variance"].append(T - T * T * float((1.0 / (T + q * kappa / lam1)).sum()) / P)
        out["v2"].append(q / lam1)
        # ⟨K_W⟩ train: K + B M Bᵀ with the exact diagonal
        Mw = excess(w, pB, pB, KB)
        KW = K + B @ Mw @ B.T
        diag_true = torch.diagonal(K) + excess_vec(w, phi * phi, torch.diagonal(K))
        KW = KW + torch.diag(diag_true - torch.diagonal(KW))
        out["KW"].append(KW.cpu().numpy())
        mom = prior_mom + excess(w, proj, proj, prior_mom)  # exact prior second moment + shift
        out["wm"].append(mom[:-1, :-1].cpu().numpy())
        out["wl"].append(float(mom[-1, -1]))
        out["ess"].append(float(1.0 / (w * w).sum()))
        out["khat"].append(pareto_k(aux["logw"]))
        out["it"].append(it_count[0])
        out["conv"].append(bool(converged))
        if phi_t is not None:
            gm = phi.T @ m_hat  # φᵀm̂ per sample
            wr = w / (1.0 + a)
            # test mean K_m(x, X) m̂/λ1, control variate ρ·(K0 m̂ − Σ w0 φ0 φᵀm̂)
            cv = 0.0 if w0 is None else rho * (K0 @ m_hat - phi_t @ (w0 * gm))
            tm = (phi_t @ (wr * gm) + cv) / lam1
            out["test_mean"].append(tm.cpu().numpy())
            # test variance: the GP of kernel q·K (q = λ1⟨v²⟩ of the measure) and noise T. The shape
            # corrections of K_post (B.5) over-shoot the sampled variance by 6-12 % (MNIST, P = 200,
            # α = 2, T = 1 and 0.3) where this form is within 1 %: they are left out here.
            R_r = q * F0
            SR = R_r.T / (T + q * kappa / lam1)[:, None]
            var = q * torch.diagonal(kb.test) / lam1 - (R_r * SR.T).sum(1) / lam1**2
            out["test_var"].append(var.cpu().numpy())
            KWt = K0 + excess(w, phi_t, pB, K0 @ B) @ B.T
            out["KWt"].append(KWt.cpu().numpy())
            Mt = excess(w, pBt, pBt, Bt_test.T @ kb.test @ Bt_test)
            KWtt = kb.test + Bt_test @ Mt @ Bt_test.T
            dtt = torch.diagonal(kb.test) + excess_vec(w, phi_t * phi_t, torch.diagonal(kb.test))
            KWtt = KWtt + torch.diag(dtt - torch.diagonal(KWtt))
            out["KWtt"].append(KWtt.cpu().numpy())
        if not converged:  # no fixed point found: every observable and diagnostic of this T is NaN (B.6)
            for name in names:
                if name not in ("it", "conv") and len(out[name]) == len(out["conv"]):
                    out[name][-1] = np.full_like(np.asarray(out[name][-1], dtype=np.float64), np.nan)
        out["helpers"].append(helpers_used[-1])
    inv = np.argsort(order)
    out = {n: [v[i] for i in inv] for n, v in out.items() if len(v)}
    nT = len(T_all)
    nan = np.full(nT, np.nan)
    test_mean = np.stack(out["test_mean"]) if "test_mean" in out else None
    test_var = np.stack(out["test_var"]) if "test_var" in out else None
    if test_mean is not None and yt is not None:
        ytn = yt.cpu().numpy()
        bias2 = ((test_mean - ytn[None]) ** 2).mean(1)
        tvar = test_var.mean(1)
        terr = bias2 + tvar
    else:
        bias2, tvar, terr = nan, (test_var.mean(1) if test_var is not None else nan), nan
    ess = np.array(out["ess"])
    conv = np.array(out["conv"])
    trS = np.array(out["trS"])
    khat = np.array(out["khat"])
    # an unconverged temperature has no diagnostics (NaN): its only reason is the non-convergence
    ok, why = regime_flags(np.where(conv, ess, np.inf), conv, pareto=np.where(conv, khat, 0.0), min_ess=min_ess,
                           extra=([] if activation == "identity" else [rank_bound(np.where(conv, trS, np.inf), P, N1)])
                           + [width_check(N1, nT)])  # rank bound: B.9
    sig_basis = Bt if closure == "trace" else sigma_basis

    def log_tilt(w: torch.Tensor, T: float, state: tuple) -> torch.Tensor:
        """log of (★)'s tilt −½log(1 + a) + ½g²/(1 + a) at draws w (r, C) (span coordinates) for the cavity fields
        ``state`` at T (differentiable in w: the single-unit measure that resample-move samples)."""
        m, scale, D = state
        phw = sigma(Z @ w)
        prw = U.T @ phw
        Li = 1.0 / (T + cav * scale * kappa / lam1)
        BL = sig_basis.T @ (Li[:, None] * prw)
        small = torch.eye(sig_basis.shape[1], **kw) + (cav / lam1) * D @ (sig_basis.T @ (Li[:, None] * sig_basis))
        a = (Li @ (prw * prw) - ((cav / lam1) * torch.linalg.solve(small, D @ BL) * BL).sum(0)) / (lam1 * N1)
        g = (m @ phw) / math.sqrt(lam1 * N1)
        return -0.5 * torch.log1p(a) + 0.5 * g * g / (1.0 + a)

    internals = dict(states=[states[i] for i in inv], log_tilt=log_tilt, dim=r, prior_w=lam0, kw=kw, setup=setup)
    return CavityResult(
        temperature=T_all, train_mean=np.stack(out["train_mean"]), train_error=np.array(out["train_error"]),
        train_variance=np.array(out["train_variance"]), test_mean=test_mean, test_point_variance=test_var,
        test_bias2=bias2, test_variance=tvar, test_error=terr, readout_second_moment=np.array(out["v2"]),
        hidden_gram=np.stack(out["KW"]), hidden_gram_test_train=np.stack(out["KWt"]) if "KWt" in out else None,
        hidden_gram_test=np.stack(out["KWtt"]) if "KWtt" in out else None,
        weight_moments=np.stack(out["wm"]), weight_label_moment=np.array(out["wl"]), weight_directions=E,
        ess=ess, pareto_k=khat, samples=S, iterations=np.array(out["it"]), converged=conv, sigma_trace=trS,
        in_regime=ok, regime_reason=why, helper_temperatures=np.array(out["helpers"], dtype=int),
    ), internals



@dataclass(frozen=True)
class ResampleMove:
    """Settings of ``cavity_curve(measure="resample-move")`` (docs/theory.md B.11).

    Per temperature and round: ``chains`` HMC chains on the single-unit measure (★) at reference fields,
    ``burn_in`` trajectories (more, ``3 × burn_in``, for the first temperature, from prior draws), then
    ``draws`` kept per chain (``leapfrog`` steps per trajectory, step size adapted to 75 % acceptance in the
    burn-in and jittered by ±20 % per trajectory). The fixed point is solved on those draws reweighted to the fields (a smooth map, so Newton–Krylov
    applies); when the reweighting's relative ESS at the fixed point is below ``min_overlap`` its fields become
    the reference and the draws are renewed, at most ``rounds`` times. A temperature whose fixed point does not
    settle, or whose chains have split-R̂ > ``rhat_max`` on the log tilt, is flagged (``in_regime`` False).
    Along the ladder (hot to cold) the reference fields are carried by continuation in steps of at most a
    factor ``max_step`` in T (helper temperatures in between); after a temperature that does not settle the
    colder ones are not attempted (NaN, flagged).
    """

    chains: int = 32
    draws: int = 128
    burn_in: int = 100
    leapfrog: int = 10
    rounds: int = 5
    min_overlap: float = 0.5
    rhat_max: float = 1.05
    max_step: float = 1.5
    seed: int = 0

    def check(self) -> None:
        for name in ("chains", "draws", "burn_in", "leapfrog", "rounds"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"ResampleMove.{name}: must be an integer >= 1, got {v!r}")
        if self.chains < 4:
            raise ValueError(f"ResampleMove.chains: must be >= 4 (split-R̂ needs several chains), got {self.chains}")
        if not (0.0 < self.min_overlap <= 1.0):
            raise ValueError(f"ResampleMove.min_overlap: must be in (0, 1], got {self.min_overlap!r}")
        if not (self.rhat_max > 1.0):
            raise ValueError(f"ResampleMove.rhat_max: must be > 1, got {self.rhat_max!r}")
        if not (self.max_step > 1.0):
            raise ValueError(f"ResampleMove.max_step: must be > 1, got {self.max_step!r}")


def _hmc_unit(log_density, w: torch.Tensor, eps: float, *, burn_in: int, draws: int, leapfrog: int,
              gen: torch.Generator) -> tuple[torch.Tensor, float, torch.Tensor, float]:
    """Batched HMC (identity mass, leapfrog) on a density over the columns of w (r, C), one chain per column;
    the step size adapts to 75 % acceptance during the burn-in. Returns (last state, step size, kept draws
    (r, C·draws) in draw-major order, acceptance rate of the kept part)."""

    def grad(x):
        x = x.detach().requires_grad_(True)
        lp = log_density(x)
        (g,) = torch.autograd.grad(lp.sum(), x)
        return lp.detach(), g

    lp, gr = grad(w)
    kept, acc_kept, acc_win = [], [], []
    for it in range(burn_in + draws):
        p0 = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
        # step size jittered per trajectory (±20 %): a fixed trajectory length resonates with some directions
        h = eps * (0.8 + 0.4 * float(torch.rand((), generator=gen, dtype=w.dtype, device=w.device)))
        x, p = w, p0 + 0.5 * h * gr
        for step in range(leapfrog):
            x = x + h * p
            lpn, grn = grad(x)
            p = p + (h if step < leapfrog - 1 else 0.5 * h) * grn
        log_acc = lpn - lp - 0.5 * (p * p).sum(0) + 0.5 * (p0 * p0).sum(0)
        acc = torch.log(torch.rand(lp.shape, generator=gen, dtype=w.dtype, device=w.device)) < torch.nan_to_num(
            log_acc, nan=-math.inf)
        w = torch.where(acc[None], x, w)
        lp, gr = torch.where(acc, lpn, lp), torch.where(acc[None], grn, gr)
        rate = float(acc.to(w.dtype).mean())
        if it < burn_in:
            acc_win.append(rate)
            if len(acc_win) == 10:  # simple stochastic step-size adaptation toward 75 % acceptance
                eps *= math.exp(0.5 * (float(np.mean(acc_win)) - 0.75))
                acc_win = []
        else:
            kept.append(w.clone())
            acc_kept.append(rate)
    return w, eps, torch.cat(kept, 1), float(np.mean(acc_kept))


def cavity_curve(
    x_train,
    y_train,
    temperatures,
    Q,
    *,
    width: float,
    activation="erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    samples: int | None = None,
    stretches: tuple[float, ...] = (1.0, 1.6, 2.5, 4.0),
    rank: int = 32,
    tol: float = 1e-3,
    max_iter: int = 60,
    max_refine: int = 4,
    min_ess: float = DEFAULT_MIN_ESS,
    seed: int = 0,
    device: str | torch.device | None = None,
    closure: str = "shape",
    measure: str = "importance",
    resample_move: ResampleMove | None = None,
) -> CavityResult:
    """Every observable of the ``cavity`` level over temperatures (module docstring, docs/theory.md B.5).

    ``Q``: the saddle point Q*(T) (nT,) (``equilibrium.solve_saddle``), used for the starting fields only
    (the proposal directions and the correction basis come from the Q* fields of a fixed temperature grid).
    ``y_train`` ±1 (P,) (binary tasks). ``samples`` importance samples (default 2^23/P clipped to [4096, 2^15]) drawn once
    from a mixture of the prior stretched by ``stretches`` along the tilt directions; ``rank`` leading
    eigen-directions of K in the low-rank kernel corrections; fixed point to relative change ``tol`` in
    (m, q, D) within ``max_iter`` evaluations of the map per Newton–Krylov attempt, with at most ``max_refine``
    halvings of the continuation step per temperature; ``min_ess`` for the regime indicator; ``seed``;
    ``device``. A temperature that does not converge returns NaN for every observable and diagnostic
    (``converged`` False, reason given).

    ``closure``: "shape" (default, B.5: Σ = (T + c·K_Σ/λ1)⁻¹ with the Gaussian-equivalent scale q) or
    "trace" (B.9: Σ = (T + c·K_m/λ1)⁻¹, the same kernel as the mean field, from averaging the exact
    identity T·A_W⁻¹ + Σ_j φ_jφ_jᵀA_∖j⁻¹/(λ1N1(1 + a_j)) = I; it satisfies the rank bound by construction
    but misses the cavity mean's fluctuations and is measured to be worse — kept to reproduce B.9), or
    "fluct" (docs/theory.md B.10: Σ⁻¹ = T + c·K_post/λ1 in every direction of the basis, what a
    Gaussian-fluctuating cavity mean closes to; level ``cavity_fluct``; measured, not the default).

    ``measure``: how averages over the single-unit measure (★) are taken. "importance" (default): one set
    of importance samples for the whole ladder (fast; B.5 "Numerics"). "resample-move" (B.11): HMC draws
    of (★) at reference fields, reweighted to the fixed point and renewed there (``resample_move``
    settings) — a second, independent way to take the same averages, to check the importance sampler where
    its weights are suspect (at large α, B.5 "What is left"). Cost: about a minute per temperature at
    P = 1000 on one CPU thread (``benchmarks/cavity_convergence.py --resample-move``). The
    draws come from a tilted measure, so the prior control variates are not used: the O(1/N1) parts —
    ⟨K_W⟩ − K, the weight moments' shifts — carry a Monte-Carlo error ∝ N1/√(chains·draws) (a few % of
    N1·shift at N1 = 50 with the defaults, far more at N1 ≥ 400); the predictor and λ1⟨v²⟩ do not.
    """
    options = dict(activation=activation, prior_w=prior_w, prior_v=prior_v, x_test=x_test, y_test=y_test,
                   samples=samples, stretches=stretches, rank=rank, tol=tol, max_iter=max_iter, max_refine=max_refine,
                   min_ess=min_ess, seed=seed, device=device, closure=closure)
    if measure not in ("importance", "resample-move"):
        raise ValueError(f"measure: must be 'importance' or 'resample-move', got {measure!r}")
    if measure == "importance":
        if resample_move is not None:
            raise ValueError("resample_move: only used with measure='resample-move'")
        return _cavity_core(x_train, y_train, temperatures, Q, width=width, **options)[0]
    rm = resample_move or ResampleMove()
    rm.check()
    T_all = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    Qa = np.asarray(Q, dtype=np.float64).reshape(-1)
    # the whole ladder is checked here: the core sees one temperature at a time, after sampling has started
    if T_all.size == 0 or not np.all(np.isfinite(T_all)) or np.any(T_all <= 0):
        raise ValueError(f"temperatures: must be finite and > 0, got {T_all.tolist()[:5]}")
    if Qa.shape != T_all.shape or not np.all(np.isfinite(Qa)) or np.any(Qa <= 0):
        raise ValueError(f"Q: expected finite positive saddle-point values of shape {T_all.shape}, got {np.shape(Q)}")
    # the importance level at the hottest temperature: validates every input before the sampling, and gives
    # the first reference fields (reached from WARM_T by its own continuation where needed)
    order = np.argsort(-T_all, kind="stable")
    # (every call shares one data setup: one kernel, eigenbasis and field grid for the whole ladder, so the
    # correction basis, and with it the shape of the fields, is the same in every call)
    first, inner = _cavity_core(x_train, y_train, T_all[order[:1]], Qa[order[:1]], width=width,
                                setup={"ladder": (float(T_all.max()), float(T_all.min()))}, **options)
    setup = inner["setup"]
    ref = inner["states"][0]
    if ref is None:
        first, inner = _cavity_core(x_train, y_train, np.array([WARM_T]), Qa[order[:1]], width=width, setup=setup,
                                    **options)
        ref = inner["states"][0]
    kw, lam0 = inner["kw"], inner["prior_w"]
    gen = torch.Generator(device=kw["device"]).manual_seed(rm.seed)
    chains = torch.randn(inner["dim"], rm.chains, generator=gen, **kw) / math.sqrt(lam0)
    eps, burn = 0.3 / math.sqrt(lam0), 3 * rm.burn_in
    ref_T = float(T_all[order[0]]) if first.converged[0] else WARM_T
    rows: list[CavityResult | None] = [None] * len(T_all)
    extra: list[str] = [""] * len(T_all)
    n_help = [0] * len(T_all)

    def settle(T: float, Q_T: np.ndarray):
        """Resample-move rounds at T from the reference fields: (result, settled, R̂ of the last chains)."""
        nonlocal chains, eps, burn, ref, inner
        res, rhat = None, math.nan
        for _ in range(rm.rounds):
            lt = inner["log_tilt"]

            def log_density(w, lt=lt, ref=ref):
                return -0.5 * lam0 * (w * w).sum(0) + lt(w, T, ref)

            chains, eps, draws, _ = _hmc_unit(log_density, chains, eps, burn_in=burn, draws=rm.draws,
                                              leapfrog=rm.leapfrog, gen=gen)
            burn = rm.burn_in
            with torch.no_grad():
                lt_draws = lt(draws, T, ref)
            rhat = chain_diagnostics({"log_tilt": lt_draws.reshape(rm.draws, rm.chains).T.cpu().numpy()})[0]["log_tilt"]
            res, inner = _cavity_core(x_train, y_train, np.array([T]), Q_T, width=width, setup=setup,
                                      injected=(draws, -lt_draws), start=ref, **options)
            new = inner["states"][0]
            if new is None:  # the reweighted map has no fixed point near the reference: not settled
                return res, False, rhat
            ref = new
            if res.ess[0] >= rm.min_overlap * draws.shape[1]:
                return res, True, rhat
        return res, False, rhat

    lost = False
    for ti in order:
        T = float(T_all[ti])
        res, settled, rhat = None, False, math.nan
        if ref is not None and not lost:
            # continuation in log T from the last settled temperature, steps of at most a factor max_step
            n = max(1, int(math.ceil(math.log(ref_T / T) / math.log(rm.max_step) - 1e-9))) if ref_T > T else 1
            for T_k in np.geomspace(ref_T, T, n + 1)[1:] if ref_T > T else [T]:
                res, settled, rhat = settle(float(T_k), Qa[ti:ti + 1])
                if not settled:
                    break
                ref_T = float(T_k)
            n_help[ti] = n - 1
        lost = lost or not settled  # colder temperatures would start from fields that were not found
        if res is None:
            res = first  # no reference fields: the importance level's row at the first temperature
        reasons = []
        if not settled:
            reasons.append("resample-move did not settle (fixed point not found or still moving)")
        if not (rhat <= rm.rhat_max):
            reasons.append(f"single-unit chains not mixed (R̂ {rhat:.3f} > {rm.rhat_max})")
        extra[ti] = "; ".join(reasons)
        row = res if settled else _nan_row(res)
        rows[ti] = dataclasses.replace(row, temperature=np.array([T]),
                                       helper_temperatures=np.array([n_help[ti]], dtype=int))
    return _stack_rows(rows, extra)


def _nan_row(r: CavityResult) -> CavityResult:
    """A one-temperature result with every observable and diagnostic NaN (no fixed point: no result, B.6)."""
    keep = {"temperature", "samples", "iterations", "weight_directions", "regime_reason", "helper_temperatures"}
    new = {}
    for f in dataclasses.fields(r):
        v = getattr(r, f.name)
        if f.name == "converged":
            v = np.zeros_like(v, dtype=bool)
        elif f.name == "in_regime":
            v = np.zeros_like(v, dtype=bool)
        elif f.name not in keep and isinstance(v, np.ndarray):
            v = np.full_like(v, np.nan, dtype=np.float64)
        new[f.name] = v
    return CavityResult(**new)


def _stack_rows(rows: list[CavityResult], extra: list[str]) -> CavityResult:
    """One :class:`CavityResult` from one-temperature results (ladder order), with the extra regime reasons."""
    new = {}
    for f in dataclasses.fields(CavityResult):
        vals = [getattr(r, f.name) for r in rows]
        if f.name == "samples":
            new[f.name] = int(max(vals))
        elif f.name == "weight_directions":
            new[f.name] = vals[0]
        elif f.name == "regime_reason":
            new[f.name] = tuple("; ".join(x for x in (v[0], e) if x) for v, e in zip(vals, extra))
        elif any(v is None for v in vals):
            new[f.name] = None
        else:
            new[f.name] = np.concatenate([np.asarray(v) for v in vals], 0)
    new["in_regime"] = np.array([bool(r.in_regime[0]) and not e for r, e in zip(rows, extra)])
    return CavityResult(**new)
