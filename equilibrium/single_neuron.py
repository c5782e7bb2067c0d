"""Theory level ``single_neuron``: the single-unit cavity measure with the exact non-linear activation.

Derivation: docs/theory.md, "Beyond the Gaussian level". Integrating the readout out exactly and writing
det(A_W)^(-1/2) exp(-½ yᵀA_W⁻¹y) as a Gaussian integral over an auxiliary field t ∈ R^P,

    p(W) ∝ ∫ dt exp(-T|t|²/2 + i t·y) Π_i p0(w_i) exp(-(t·φ_i)²/(2 λ1 N1)),   φ_i = σ(X w_i/√N0),

the units are independent given t. The marginal of one unit is p0(w) times its factor averaged over
the cavity field (the t-measure of the other N1 − 1 units). If that field is Gaussian with mean i·m
and covariance Σ,

    p(w) ∝ p0(w) (1 + a)^(-1/2) exp(½ g² / (1 + a)),   a = φᵀΣφ/(λ1 N1),   g = m·φ/√(λ1 N1)   (★)

(docs/conventions.md §5). a and g are O(1): the reweighting of each unit is O(1) and non-Gaussian along the
label direction. Observables: ⟨K_W⟩ = E_p[φφᵀ] (train, test×train, test×test blocks),
λ1⟨v²⟩ = E_p[1/(1+a) + g²/(1+a)²] (v given the cavity, docs/conventions.md §5), and the first-layer weight
moments (1/N1)Σ⟨(e·w)(e'·w)⟩ along the data's principal directions and along e_y ∝ Xᵀy.

Two choices of the fields (m, Σ), see :func:`single_neuron_curve`: from the Q* saddle point
(``self_consistent=False``), or iterated to self-consistency with (★) itself (default). Measured
against ``equilibrium.sampling`` (docs/validation.md): at T ≥ 0.3 both are within a few % of sampling;
at T ≤ 0.1 and α = P/N1 ≳ 1 the saddle fields OVER-estimate the centroid shift (+10–30 %, and the
estimate becomes heavy-tailed), the self-consistent fields UNDER-estimate it (−10 to −15 % at
T = 0.1–0.03, α = 2) while the closed-form ``gaussian`` level is at −30 %.

Numerics: self-normalised importance sampling with ``samples`` common random draws (reused for every
temperature and iteration: smooth curves in T), in the span of the training inputs (docs/conventions.md §6
reduction) plus an independent prior draw for the test inputs' orthogonal remainder. The proposal is
the prior stretched along the linearised tilt directions Zᵀ(σ̄'⊙m): the tilted measure has heavier
tails than the prior there, and plain prior sampling becomes an infinite-variance estimator at low T.
The prior average is replaced by its exact value (control variate with the p0/q weights):
⟨K_W⟩ = K + Σ_s (w_s − w0_s) φ_sφ_sᵀ, so the Monte-Carlo error is that of the O(1/N1) shift. The
effective sample size ``ess`` is reported; it falls as T falls and α grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gdeq import geometry

from . import inputs
from .cavity import pareto_k, regime_flags
from .kernels import nngp_kernels
from .linalg import eigh
from .weights import label_directions, weight_directions

__all__ = ["SingleNeuronResult", "posterior_kernel", "single_neuron_curve"]


@dataclass(frozen=True)
class SingleNeuronResult:
    """Per-temperature output of :func:`single_neuron_curve` (numpy, leading axis = temperature).

    ``hidden_gram`` ⟨K_W⟩ train block (nT, P, P); ``hidden_gram_test_train`` (nT, Pt, P) and
    ``hidden_gram_test`` (nT, Pt, Pt) with a test set; ``readout_second_moment`` (1/N1)Σ⟨v_i²⟩ =
    E_p[ω]/λ1 (equals Q*/λ1 for Gaussian-equivalent φ); ``weight_moments`` (nT, r, r) =
    (1/N1)Σ⟨(e_j·w)(e_l·w)⟩ along ``weight_directions`` e_j (top right singular vectors of X, as
    :func:`equilibrium.weight_directions`; prior δ_jl/λ0) and ``weight_label_moment`` along
    e_y = Xᵀy/|Xᵀy|; ``ess`` the effective sample size of the importance weights (of ``samples``),
    ``iterations``/``converged`` of the self-consistent variant (1/True otherwise); ``pareto_k`` the
    Pareto-tail index k̂ of the log weights (arviz PSIS); ``in_regime``/``regime_reason`` the regime
    indicator (:func:`equilibrium.cavity.regime_flags`: ESS, k̂ ≤ 0.7, convergence). Where ``converged``
    is False every observable and diagnostic is NaN, ``in_regime`` False and the reason "self-consistent
    fields did not converge" (docs/theory.md B.6): the last iterate of a failed solve is not a result.
    """

    temperature: np.ndarray
    hidden_gram: np.ndarray
    readout_second_moment: np.ndarray
    weight_moments: np.ndarray
    weight_label_moment: np.ndarray
    weight_directions: np.ndarray
    ess: np.ndarray
    samples: int
    iterations: np.ndarray
    converged: np.ndarray
    hidden_gram_test_train: np.ndarray | None = None
    hidden_gram_test: np.ndarray | None = None
    pareto_k: np.ndarray | None = None
    in_regime: np.ndarray | None = None
    regime_reason: tuple[str, ...] = ()


class _Draws:
    """Common Gaussian draws ξ of the first-layer weight in the span of the training inputs, mapped per
    temperature to a proposal q(w): the prior, broadened along a few tilt directions (the tilted
    measure has heavier tails than the prior along them, which makes plain prior sampling an
    infinite-variance estimator at low T). The span and the test inputs' orthogonal remainder come from
    the exact reduction ``geometry.span_reduction`` (docs/conventions.md §6)."""

    def __init__(self, x, x_test, prior_w, activation, samples, seed, dev):
        n0 = x.shape[1]
        span = geometry.span_reduction(x, x_test)
        self.basis = span.basis.T  # (r, N0) orthonormal rows
        gen = torch.Generator(device=dev).manual_seed(seed)
        kw = dict(dtype=torch.float64, device=dev)
        self.lam0 = prior_w
        self.sigma = geometry.activation(activation)
        self.xi = torch.randn(span.rank, samples, generator=gen, **kw)
        self.Z = torch.as_tensor(span.x_train / math.sqrt(n0), **kw)  # h = Z w
        self.Zt = self.extra = None
        if x_test is not None:
            self.Zt = torch.as_tensor(span.x_test / math.sqrt(n0), **kw)
            k = span.test_remainder.shape[1]
            if k:  # the test inputs' orthogonal remainder sees only prior weight components
                Zp = torch.as_tensor(span.test_remainder / math.sqrt(n0), **kw)
                self.extra = Zp @ (torch.randn(k, samples, generator=gen, **kw) / math.sqrt(prior_w))

    def draw(self, directions: torch.Tensor | None, stretch: torch.Tensor | None):
        """w (r, S) from q = prior stretched by ``stretch`` along orthonormal ``directions`` (r, k);
        returns w and log(p0/q) per sample."""
        w = self.xi / math.sqrt(self.lam0)
        log_p0_q = torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
        if directions is not None:
            u = directions.T @ w  # prior-scale projections (k, S)
            w = w + directions @ ((stretch[:, None] - 1.0) * u)
            u = stretch[:, None] * u
            log_p0_q = (torch.log(stretch)[:, None] - 0.5 * self.lam0 * u**2 * (1.0 - stretch[:, None] ** -2)).sum(0)
        return w, log_p0_q

    def features(self, w):
        phi = self.sigma(self.Z @ w)
        if self.Zt is None:
            return phi, None
        ht = self.Zt @ w
        return phi, self.sigma(ht if self.extra is None else ht + self.extra)


def _weighted_gram(A: torch.Tensor, weights: torch.Tensor, B: torch.Tensor | None = None, chunk: int = 16384):
    """Σ_s weights_s A[:, s] B[:, s]ᵀ, chunked over samples."""
    B = A if B is None else B
    out = torch.zeros(A.shape[0], B.shape[0], dtype=A.dtype, device=A.device)
    for i in range(0, A.shape[1], chunk):
        out += (A[:, i:i + chunk] * weights[i:i + chunk]) @ B[:, i:i + chunk].T
    return out


def _quad_forms(Sigma: torch.Tensor, phi: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """φ_sᵀ Σ φ_s for every sample s."""
    out = torch.empty(phi.shape[1], dtype=phi.dtype, device=phi.device)
    for i in range(0, phi.shape[1], chunk):
        p = phi[:, i:i + chunk]
        out[i:i + chunk] = (p * (Sigma @ p)).sum(0)
    return out


def _field_matrices(T: float, Qk, K: torch.Tensor, lam1: float):
    """Cholesky factors of A_k = T·I + q_k K/λ1 for each eigenvalue q_k of Q* (docs/conventions.md §2).

    K is the full (uncentred) kernel: the mean mode of a non-odd activation is renormalised by Q
    like every other mode (docs/theory.md §2.2, checked against an exact affine network).
    """
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    return [torch.linalg.cholesky(T * eye + float(q) * K / lam1) for q in Qk]


# ------------------------------------------------------------------------------------------
# the named steps of one temperature
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Fields:
    """Cavity fields of (★), one (m_k, Σ_k) per eigen-direction of Q* (one pair for the self-consistent closure)."""

    means: list[torch.Tensor]  # m_k (P, 1)
    covariances: list[torch.Tensor]  # Σ_k (P, P)


@dataclass(frozen=True)
class _Sample:
    """Importance sample of (★): weights w_s (r, S), features φ (P, S) (and test φ_t), log(p/q) and log(p0/q)
    (unnormalised), ω = λ1⟨v²⟩ given the cavity, and a_k = φᵀΣ_kφ/(λ1N1) per sample."""

    w: torch.Tensor
    phi: torch.Tensor
    phi_test: torch.Tensor | None
    log_weight: torch.Tensor
    log_prior_weight: torch.Tensor
    omega: torch.Tensor
    a: list[torch.Tensor]


def _saddle_fields(T: float, q: np.ndarray, Yk: torch.Tensor, K: torch.Tensor, lam1: float) -> _Fields:
    """Fields from the Q* theory: Σ_k = A_k⁻¹, m_k = A_k⁻¹(YV)_k, A_k = T + q_k K/λ1."""
    Ls = _field_matrices(T, q, K, lam1)
    return _Fields(means=[torch.cholesky_solve(Yk[:, k:k + 1], L) for k, L in enumerate(Ls)],
                   covariances=[torch.cholesky_inverse(L) for L in Ls])


def _self_consistent_fields(T: float, Yk: torch.Tensor, K_m: torch.Tensor, qb: float, K: torch.Tensor, lam1: float,
                            cav: float) -> _Fields:
    """Stein closure for m, bulk scale λ1⟨v²⟩ for Σ (D = 1):
    m = (T + cav·K_m/λ1)⁻¹ y,  Σ = (T + cav·q K/λ1)⁻¹,  cav = (N1 − 1)/N1."""
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    return _Fields(means=[torch.linalg.solve(T * eye + cav * K_m / lam1, Yk)],
                   covariances=[torch.cholesky_inverse(_field_matrices(T, [qb * cav], K, lam1)[0])])


def _draw_proposal(draws: _Draws, fields: _Fields, slope: torch.Tensor, K: torch.Tensor, lam0: float, lam1: float,
                   N1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """w_s from the prior stretched along the linearised tilt directions, and log(p0/q)."""
    # the linearised tilt g ≈ d·w, d = Zᵀ(σ̄'⊙m)/√(λ1N1), would give precision λ0 − |d|²/(1+ā) along d;
    # stretch the prior there by more than that (capped: the exact tilt saturates)
    d = torch.cat([draws.Z.T @ (slope[:, None] * m) for m in fields.means], 1) / math.sqrt(lam1 * N1)
    abar = torch.stack([(torch.diagonal(Sg) * torch.diagonal(K)).sum() for Sg in fields.covariances]) / (lam1 * N1)
    kappa = float(((d * d).sum(0) / (1.0 + abar)).max())
    var = 2.0 / (lam0 - min(kappa, 0.8 * lam0))
    dirs = torch.linalg.qr(d)[0]
    stretch = torch.full((dirs.shape[1],), math.sqrt(var * lam0), dtype=d.dtype, device=d.device)
    return draws.draw(dirs, stretch)


def _tilt_weights(draws: _Draws, w_s: torch.Tensor, log_p0_q: torch.Tensor, fields: _Fields, lam1: float,
                  N1: float) -> _Sample:
    """Features of the draws and their log weights under (★): Σ_k [−½ log(1 + a_k) + ½ g_k²/(1 + a_k)] + log(p0/q)."""
    phi, phi_t = draws.features(w_s)
    logw = log_p0_q.clone()
    omega = torch.zeros_like(logw)
    a_all = []
    D = len(fields.means)
    for m, Sg in zip(fields.means, fields.covariances):
        a = _quad_forms(Sg, phi) / (lam1 * N1)
        g2 = ((m.T @ phi)[0]) ** 2 / (lam1 * N1)
        logw += -0.5 * torch.log1p(a) + 0.5 * g2 / (1.0 + a)
        omega += (1.0 / (1.0 + a) + g2 / (1.0 + a) ** 2) / D  # λ1⟨v²⟩ given the cavity (docs/conventions.md §5)
        a_all.append(a)
    return _Sample(w=w_s, phi=phi, phi_test=phi_t, log_weight=logw, log_prior_weight=log_p0_q, omega=omega, a=a_all)


def _fixed_point_update(sample: _Sample, fields: _Fields, K_m: torch.Tensor, qb: float, K: torch.Tensor,
                        top: torch.Tensor, Yk: torch.Tensor, *, damping: float, tol: float):
    """One damped step of K_m = E_p[φφᵀ/(1+a)] and q = E_p[ω]; returns (K_m, q, converged).

    K_m keeps the exact prior part ρK (ρ = E_p[1/(1+a)]) and replaces it only in the span of the ``top``
    eigen-directions of K, y and Km (the rest is Monte-Carlo noise)."""
    w = torch.softmax(sample.log_weight, 0)
    w0 = torch.softmax(sample.log_prior_weight, 0)
    r_ = w / (1.0 + sample.a[0])
    rho = float(r_.sum())
    Km = K @ fields.means[0]
    B = torch.linalg.qr(torch.cat([top, Yk / Yk.norm(), Km / Km.norm()], 1))[0]
    pp = B.T @ sample.phi
    K_new = rho * K + B @ ((pp * (r_ - rho * w0)) @ pp.T) @ B.T  # E_p[φφᵀ/(1+a)], raw φ
    q_new = float((w * sample.omega).sum())
    done = abs(q_new - qb) < tol * qb and float((K_new - K_m).norm()) < tol * float(K_m.norm())
    return (1 - damping) * K_m + damping * K_new, (1 - damping) * qb + damping * q_new, done


def _observables(sample: _Sample, kb, directions: torch.Tensor, n_dir: int, lam1: float, lam0: float) -> dict:
    """⟨K_W⟩ blocks and weight moments (prior part exact, control variate p0/q), λ1⟨v²⟩/λ1, ESS."""
    w = torch.softmax(sample.log_weight, 0)  # p / q, normalised
    w0 = torch.softmax(sample.log_prior_weight, 0)  # p0 / q: the control variate with the exact prior average K
    dw = w - w0
    # the directions lie in the span of the inputs, so their exact prior moment is E Eᵀ/λ0
    mom = directions @ directions.T / lam0 + _weighted_gram(directions @ sample.w, dw)
    out = {"KW": (kb.train + _weighted_gram(sample.phi, dw)).cpu().numpy(),
           "v2": float((w * sample.omega).sum()) / lam1,
           "wm": mom[:n_dir, :n_dir].cpu().numpy(),
           "wl": float(torch.diagonal(mom[n_dir:, n_dir:]).mean()),
           "ess": float(1.0 / (w * w).sum()),
           "pareto_k": pareto_k(sample.log_weight)}
    if sample.phi_test is not None:
        out["KWt"] = (kb.test_train + _weighted_gram(sample.phi_test, dw, sample.phi)).cpu().numpy()
        out["KWtt"] = (kb.test + _weighted_gram(sample.phi_test, dw)).cpu().numpy()
    return out


def _check_inputs(x_train, y_train, temperatures, Q, width, prior_w, prior_v):
    """Arrays (x, Y (P, D), T, Q (nT, D, D)); one ValueError naming the parameter before any work."""
    x, y, _, _, _ = inputs.data_set(x_train, y_train)
    Y = y.reshape(len(y), -1)
    D = Y.shape[1]
    T_all = inputs.temperatures(temperatures)
    nT = len(T_all)
    inputs.number("width", width, at_least=1.0)
    inputs.number("prior_w", prior_w)
    inputs.number("prior_v", prior_v)
    Qa = np.asarray(Q, dtype=np.float64)
    if Qa.size == nT * D * D:
        Qa = Qa.reshape(nT, D, D)
    if Qa.shape != (nT, D, D) or not np.all(np.isfinite(Qa)):
        raise ValueError(f"Q: expected finite saddle-point values of shape ({nT},) or ({nT}, {D}, {D}), got {np.shape(Q)}")
    return x, Y, T_all, Qa


def single_neuron_curve(
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
    samples: int | None = None,
    self_consistent: bool = True,
    damping: float = 0.25,
    tol: float = 2e-3,
    max_iter: int = 40,
    rank: int = 32,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> SingleNeuronResult:
    """⟨K_W⟩(T), λ1⟨v²⟩ and weight moments from the exact-activation single-unit measure (★).

    ``Q``: saddle-point Q*(T), shape (nT,) or (nT, D, D) (``equilibrium.solve_saddle``).

    ``self_consistent=False`` ("saddle fields"): the cavity field of (★) comes from the Q* theory,
    per eigen-direction q_k of Q* = V diag(q) Vᵀ: Σ_k = A_k⁻¹, m_k = A_k⁻¹(YV)_k,
    A_k = T + q_k K/λ1, and p(w) ∝ p0(w) Π_k (1 + a_k)^(-1/2) exp(½ g_k²/(1 + a_k)).
    One pass per temperature, O(P²·S).

    ``self_consistent=True`` (default, D = 1; D > 1 falls back to saddle fields): the fields are
    iterated to self-consistency with the exact measure,

        m = (T + ((N1−1)/N1) K_m/λ1)⁻¹ y,   K_m = E_p[φφᵀ/(1+a)]      (exact mean equation of the
                                                                       cavity field, Stein identity)
        Σ = (T + ((N1−1)/N1) q K/λ1)⁻¹,      q = E_p[1/(1+a) + g²/(1+a)²] = λ1⟨v²⟩,

    whose Gaussian-equivalent fixed point is the Q* theory (q = Q*, K_m m = Q*K m). K_m deviates
    from ρK (ρ = E_p[1/(1+a)]) only in the ``rank`` leading eigen-directions of K plus y and Km
    (the rest is Monte-Carlo noise). Damped fixed-point iteration (``damping``, ``tol`` on q and
    K_m, ``max_iter``), temperatures solved hot to cold, each warm-starting the next; ``converged``
    reports the outcome per temperature, and an unconverged temperature returns NaN for every observable
    and diagnostic (the next one still starts from its last iterate). Cost: ``iterations`` × O(P²·S).

    ``samples`` importance samples (default: 2^24 / P, between 4096 and 2^15); ``seed`` fixes them.

    Per temperature the steps are: cavity fields (saddle or current fixed point) -> draw the proposal
    -> tilt weights (★) -> [self-consistent: fixed-point update, repeat] -> observables.
    """
    x, Y, T_all, Qa = _check_inputs(x_train, y_train, temperatures, Q, width, prior_w, prior_v)
    P, D = Y.shape
    dev = torch.device(device) if device is not None else torch.device("cpu")
    N1, lam0, lam1 = float(width), float(prior_w), float(prior_v)
    xt = None if x_test is None else np.asarray(x_test, dtype=np.float64)
    S = samples or int(min(2**15, max(4096, 2**24 // max(P, 1))))
    kb = nngp_kernels(x, xt, activation=activation, prior_w=lam0, device=dev)
    K = kb.train
    draws = _Draws(x, xt, lam0, activation, S, seed, dev)
    Yt = torch.as_tensor(Y, device=dev)
    # weight directions (TemperatureCurve's definition): right singular vectors of X, and e_y ∝ Xᵀy, in span coordinates
    E = weight_directions(x)
    ey = torch.as_tensor(draws.basis, device=dev) @ label_directions(x, Y).T.to(dev)  # (r, D)
    E_dir = torch.cat([torch.as_tensor(E @ draws.basis.T, device=dev), ey.T])

    self_consistent = self_consistent and D == 1
    cav = (N1 - 1.0) / N1
    top = eigh(K, top=min(rank, P))[1]  # includes the mean mode of a non-odd σ
    rows: list[dict] = []
    iterations: list[int] = []
    found: list[bool] = []
    q_prev = None
    order = np.argsort(-T_all, kind="stable")  # hot to cold: each temperature warm-starts the next
    for step, ti in enumerate(order):
        T = float(T_all[ti])
        q, V = np.linalg.eigh(Qa[ti])
        Yk = Yt @ torch.as_tensor(V, device=dev)  # outputs rotated to Q's eigenbasis
        if self_consistent:  # start from the Q* theory, or rescale the previous temperature's fixed point
            K_m, qb = (q[0] * K, float(q[0])) if step == 0 else (K_m * (q[0] / q_prev), qb * (q[0] / q_prev))
        done = not self_consistent  # the saddle fields need no solve
        for it in range(max_iter if self_consistent else 1):
            fields = (_self_consistent_fields(T, Yk, K_m, qb, K, lam1, cav) if self_consistent
                      else _saddle_fields(T, q, Yk, K, lam1))
            w_s, log_p0_q = _draw_proposal(draws, fields, kb.slope_train, K, lam0, lam1, N1)
            sample = _tilt_weights(draws, w_s, log_p0_q, fields, lam1, N1)
            if not self_consistent:
                break
            K_m, qb, done = _fixed_point_update(sample, fields, K_m, qb, K, top, Yk, damping=damping, tol=tol)
            if done:
                break
        q_prev = q[0]
        iterations.append(it + 1)
        found.append(bool(done))
        row = _observables(sample, kb, E_dir, E.shape[0], lam1, lam0)
        if not done:  # no fixed point: every observable and diagnostic of this T is NaN (docs/theory.md B.6)
            row = {k: np.full_like(np.asarray(v, dtype=np.float64), np.nan) for k, v in row.items()}
        rows.append(row)
    inv = np.argsort(order)
    rows = [rows[i] for i in inv]
    its = np.array(iterations)[inv]
    test = xt is not None
    converged = np.array(found, dtype=bool)[inv]
    ess, khat = np.array([r["ess"] for r in rows]), np.array([r["pareto_k"] for r in rows])
    # degenerate importance weights are flagged; an unconverged temperature has no diagnostics (NaN): its only
    # reason is the non-convergence (as in equilibrium.cavity)
    in_regime, reason = regime_flags(np.where(converged, ess, np.inf), converged, pareto=np.where(converged, khat, 0.0))
    return SingleNeuronResult(
        temperature=T_all, hidden_gram=np.stack([r["KW"] for r in rows]),
        readout_second_moment=np.array([r["v2"] for r in rows]),
        weight_moments=np.stack([r["wm"] for r in rows]), weight_label_moment=np.array([r["wl"] for r in rows]),
        weight_directions=E, ess=ess, samples=S, iterations=its, pareto_k=khat, in_regime=in_regime,
        regime_reason=reason,
        hidden_gram_test_train=np.stack([r["KWt"] for r in rows]) if test else None,
        hidden_gram_test=np.stack([r["KWtt"] for r in rows]) if test else None,
        converged=converged,
    )


def posterior_kernel(x_train, y_train, x_test, temperatures, Q, *, width, activation="erf", prior_w=1.0,
                     prior_v=1.0):
    """⟨K_W⟩(T) of the ``single_neuron`` level: (train (nT, P, P), test×test (nT, Pt, Pt) or None).

    The contract of ``equilibrium.levels``; see :func:`single_neuron_curve` for everything else.
    """
    r = single_neuron_curve(x_train, y_train, temperatures, Q, width=width, activation=activation, prior_w=prior_w,
                            prior_v=prior_v, x_test=x_test)
    return r.hidden_gram, r.hidden_gram_test
