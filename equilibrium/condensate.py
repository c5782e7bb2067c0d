r"""Level ``condensate``: one condensed unit, sampled exactly, on a Gaussian-equivalent bulk (docs/theory.md B.12).

Below a crossover temperature at α = P/N1 > 1, the exact posterior of the one-hidden-layer network puts its
readout on ONE unit: in posterior draws of MNIST 3 v 5 at P = 250, N1 = 50, T = 0.1 (the sampler,
``benchmarks/condensate_diagnostics.py``) every network has exactly one unit with λ1⟨v_j²⟩ > 1. Its mean readout
is v̄_c² ≈ 55 ≈ N1, its feature has |cos(φ_c, y)| ≈ 0.98, and it carries 97 % of Σ_j g_j²/(1 + a_j)². Its tilt
exponent ½g²/(1 + a) is ≈ 300, i.e. O(N1). That is a macroscopic, symmetry-breaking state; a single-unit
cavity closure with a deterministic field gives it weight e^(−O(N1)) and misses it, and that is where the
``gaussian`` and ``cavity`` levels fail (α ≳ 2, T ≲ 0.1; α = 20 from T ≈ 1).

This level singles out one unit c with weight w_c and feature u = σ(X w_c/√N0)/√(λ1N1). The other N1 − 1
units form a Gaussian-equivalent bulk (the ``gaussian`` level's approximation). Given u, the bulk sees the noise
covariance T + uuᵀ, so its readout scale Q relaxes with u:

    S_b(Q; u) = (N_b/2)(Q − log Q) + ½ log det A_Q + ½ yᵀA_Q⁻¹y + ½ log(1 + a) − ½ g²/(1 + a),
    A_Q = T + c Q K/λ1,  a = uᵀA_Q⁻¹u,  g = yᵀA_Q⁻¹u,  c = N_b/N1,  N_b = N1 − 1

(matrix-determinant lemma and Sherman–Morrison for T + uuᵀ + cQK/λ1). The condensed unit's marginal is then

    p(w_c) ∝ p0(w_c) exp(−min_Q S_b(Q; u(w_c))),

sampled by HMC (the gradient at fixed Q by the envelope theorem; Q by Newton per draw). Given w_c the network's
output is a GP with kernel uuᵀ + (cQ/λ1)K and noise T, which gives the predictor (averaged over w_c draws),
and λ1⟨v²⟩ = (ω_c + N_b Q)/N1 with ω_c = 1/(1 + a) + g²/(1 + a)², the exact readout moment of the
condensed unit. The bulk's ⟨K_W⟩ and weight moments are its response to the tilt
J = (Q/(λ1N1))(r rᵀ − (A_Q + uuᵀ)⁻¹), r = (A_Q + uuᵀ)⁻¹y, averaged over the draws: Cov_p0(φφᵀ, ½φᵀJφ) with the
exact activation (the ``gaussian`` level takes Wick's K J K, i.e. Gaussian features).

Without condensation the singled-out unit stays typical and the level is the ``gaussian`` level up to O(1/N1)
(tested: identity activation, large N1). Where chains started typical and chains started condensed do not
agree (split-R̂ of the energy above ``rhat_max``), the temperature is flagged: that is the crossover, where
the relative weight of the two branches also lacks the log N1 entropy of choosing the condensed unit
(docs/theory.md B.12).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from gdeq import geometry
from . import inputs
from .action import Spectrum, factorise
from .kernels import KernelBlocks, nngp_kernels
from .posterior import Tilt
from .sampling import chain_diagnostics
from .weights import tilted_weight_moments, weight_directions

__all__ = ["CondensateSettings", "CondensateResult", "condensate_curve"]

#: activations whose NNGP mean is zero: the bulk's Gaussian-equivalent action needs no mean mode
ZERO_MEAN_ACTIVATIONS = ("erf", "tanh", "identity")
#: trajectories per block of the extended burn-in (CondensateSettings.max_burn_in)
BURN_BLOCK = 25
#: the bulk response's Monte Carlo (response_draws): at least RESPONSE_SAMPLES prior draws, and RESPONSE_ELEMENTS/P
#: where that is more (P < 1024): its (draws × P) arrays keep one size, its error on N1·shift falls with P
RESPONSE_SAMPLES, RESPONSE_ELEMENTS = 16384, 2**24
#: the smallest width at which the level was validated against exact sampling (docs/validation.md: N1 = 5 … 20
#: at P = 100 and 400, test error within 5 %); below it the regime flag is off
MIN_VALIDATED_WIDTH = 5


@dataclass(frozen=True)
class CondensateSettings:
    """HMC of the condensed unit: ``chains`` per temperature (half started from prior draws, half condensed,
    i.e. along the Hebbian classifier of the inputs, so that R̂ sees a second branch), ``burn_in`` trajectories per
    chain — extended in blocks of 25 up to ``max_burn_in`` at temperatures whose chains still sit on different
    branches — and ``draws`` kept ones, ``leapfrog`` steps per trajectory (step size adapted during burn-in to
    ``target_accept``, jittered ±20 %), flagged where the split-R̂ of the energy or of ω_c exceeds ``rhat_max``;
    ``kernel_draws``: draws per temperature averaged for the bulk's tilt J (O(P²) each);
    ``response_samples``: prior draws for the bulk's response with the exact activation (0: Wick's theorem, the
    ``gaussian`` level's Gaussian-equivalent response; None: :func:`response_draws`, max(16384, 2²⁴/P) — more at
    small P, where they are cheap and the response's Monte-Carlo error would otherwise dominate N1·shift)."""

    chains: int = 8
    burn_in: int = 100
    max_burn_in: int = 400
    draws: int = 100
    leapfrog: int = 8
    target_accept: float = 0.75
    rhat_max: float = 1.05
    kernel_draws: int = 256
    response_samples: int | None = None
    seed: int = 0

    def check(self) -> None:
        for name in ("chains", "burn_in", "max_burn_in", "draws", "leapfrog", "kernel_draws", "response_samples"):
            v = getattr(self, name)
            if name == "response_samples" and v is None:
                continue
            lo = 4 if name in ("chains", "draws") else 0 if name == "response_samples" else 1
            if not (isinstance(v, (int, np.integer)) and v >= lo):
                raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
        if self.chains % 2:
            raise ValueError(f"chains: must be even (half start typical, half condensed), got {self.chains}")
        if self.max_burn_in < self.burn_in:
            raise ValueError(f"max_burn_in: must be >= burn_in = {self.burn_in}, got {self.max_burn_in}")
        if not (0.0 < self.target_accept < 1.0):
            raise ValueError(f"target_accept: must be in (0, 1), got {self.target_accept!r}")
        if not (np.isfinite(self.rhat_max) and self.rhat_max > 1.0):
            raise ValueError(f"rhat_max: must be > 1, got {self.rhat_max!r}")


@dataclass(frozen=True)
class CondensateResult:
    """Per temperature (leading axis nT): the predictor, λ1⟨v²⟩, ⟨K_W⟩ and weight moments of the level, the bulk's
    Q, the condensed unit's λ1⟨v_c²⟩ (``condensate_readout``) and |cos(φ_c, y)| (``condensate_alignment``; ≈ 1 when
    condensed, O(P^−1/2)·… when typical), and the HMC's acceptance, split-R̂ (max over the energy and ω_c) and
    burn-in length (trajectories per chain). ``centroid_shift_se``: the Monte-Carlo standard error of
    N1·(cᵀ⟨K_W⟩c − cᵀKc) — the condensed unit's chains (their means) and the bulk response's prior draws
    (``response_samples`` of them); the bulk tilt's average over ``kernel_draws`` draws is not in it.
    ``weight_label_moment_se``: the same for the weight label moment."""

    temperature: np.ndarray
    bulk_Q: np.ndarray
    train_mean: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    test_mean: np.ndarray | None
    test_point_variance: np.ndarray | None
    test_bias2: np.ndarray
    test_variance: np.ndarray
    test_error: np.ndarray
    readout_second_moment: np.ndarray
    condensate_readout: np.ndarray
    condensate_alignment: np.ndarray
    hidden_gram: np.ndarray
    hidden_gram_test: np.ndarray | None
    centroid_shift_se: np.ndarray
    weight_label_moment_se: np.ndarray
    response_samples: int
    weight_moments: np.ndarray
    weight_label_moment: np.ndarray
    weight_directions: np.ndarray
    acceptance: np.ndarray
    rhat: np.ndarray
    burn_in: np.ndarray
    converged: np.ndarray
    in_regime: np.ndarray
    regime_reason: tuple[str, ...]
    wall_time_s: float


class _Bulk:
    """The Gaussian-equivalent bulk of N1 − 1 units in K's eigenbasis: S_b(Q; u), its minimiser over Q per walker,
    and ∂S_b/∂u there.

    With z_i = 1/(T + Q b_i), b = cκ/λ1, a = Σ z u², g = Σ z y u, every Q-derivative of S_b is a weighted sum over
    the P modes of z, b z², b² z³ (dz/dQ = −b z²): Newton in log Q with the exact second derivative costs five
    (B, P) element-wise operations and one batched (3 × P)·(P × 2) contraction per walker and step."""

    def __init__(self, kappa: torch.Tensor, y_rot: torch.Tensor, T: torch.Tensor, N1: float, lam1: float):
        self.N1, self.Nb = N1, N1 - 1.0
        self.b = ((N1 - 1.0) / N1) * kappa.clamp_min(0.0) / lam1  # c κ/λ1
        self.y = y_rot  # Uᵀy
        self.T = T  # (B,) one temperature per walker
        self.grid = torch.logspace(-4, 2, 49, dtype=kappa.dtype, device=kappa.device)  # Newton refines
        self.y2 = y_rot * y_rot
        # the u-independent terms' Q-derivatives: Σ v_k b and Σ v_k y² (v_k = b^k z^(k+1), see solve)
        self.const = torch.stack([self.b, self.y2], 1)

    def action(self, Q: torch.Tensor, uk: torch.Tensor) -> torch.Tensor:
        """S_b for Q (B,) or (B, G) and u rotated (B, P)."""
        grid = Q.dim() == 2
        z = 1.0 / ((self.T[:, None, None] if grid else self.T[:, None]) + Q[..., None] * self.b)
        u = uk[:, None, :] if grid else uk
        a, g = (z * u * u).sum(-1), (z * self.y * u).sum(-1)
        return (0.5 * self.Nb * (Q - torch.log(Q)) + 0.5 * (-torch.log(z) + self.y ** 2 * z).sum(-1)
                + 0.5 * torch.log1p(a) - 0.5 * g * g / (1.0 + a))

    def solve(self, uk: torch.Tensor, start: torch.Tensor | None, tol: float = 1e-3, max_iter: int = 50,
              rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q = argmin_Q S_b(Q; u) per walker, S_b there, ∂S_b/∂u there (B, P) — the gradient of min_Q S_b by the
        envelope theorem — and the condensed unit's λ1⟨v_c²⟩ = ω_c = 1/(1 + a) + g²/(1 + a)² (B,; at the last
        evaluation, O(tol) off: it only tells the branches apart during burn-in). ``rows``: which
        walkers (of those the bulk was built for) ``uk`` holds; all when None.

        Newton in log Q with the exact second derivative (from a grid search when there is no start) until the
        Newton step δ is below ``tol``; the last step is then taken to second order: Q·e^δ (error O(δ²)), S_b + d₁δ
        + ½d₂δ² (O(δ³)) and ∂S_b/∂u + ΔQ·∂²S_b/∂Q∂u (O(δ²)). With the default 10⁻³ that is 10⁻⁶ on Q and on the
        force, 10⁻⁹ on S_b (checked against the solve converged to round-off), after one or two evaluations from a
        warm start; plain Newton to the same accuracy needs one more.
        Each evaluation works on the walkers not yet converged only (a walker crossing between the typical and
        the condensed branch may move log Q by 3 in one leapfrog step and need 8)."""
        B = uk.shape[0]
        Q = self.grid[self.action(self.grid.expand(B, -1), uk).argmin(1)] if start is None else start.clone()
        S, dS_du, omega = uk.new_empty(B), torch.empty_like(uk), uk.new_empty(B)
        idx = torch.arange(B, device=uk.device)
        u_a, T_a, lq = uk, (self.T if rows is None else self.T[rows])[:, None], torch.log(Q)
        uu_a = torch.stack([uk * uk, self.y * uk], 2)  # (B, P, 2)
        b, Nb = self.b, self.Nb
        v = uk.new_empty(B, 3, uk.shape[1])
        cpu = uk.device.type == "cpu"
        for it in range(max_iter):
            Qa = torch.exp(lq)
            # v_k = b^k z^(k+1), k = 0, 1, 2 (dz/dQ = −b z²): every Q-derivative of a, g and of the u-independent
            # terms is a sum over the P modes of one v_k against u², yu, b or y²
            z = torch.reciprocal(torch.addcmul(T_a, Qa[:, None], b), out=v[:, 0])
            bz = z * b
            torch.mul(bz, z, out=v[:, 1])
            torch.mul(bz, v[:, 1], out=v[:, 2])
            m = torch.bmm(v, uu_a)  # m[:, k] = Σ v_k u², Σ v_k y u
            cst = v @ self.const  # (n, 3, 2): Σ v_k b, Σ v_k y²
            if cpu:  # ~40 operations on (n,) vectors: numpy's per-call overhead is a tenth of torch's
                d1, d2 = _log_q_derivatives(m.numpy(), cst.numpy(), Qa.numpy(), Nb)
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = np.clip(np.where(d2 > 0, -d1 / d2, -0.2 * np.sign(d1)), -0.5, 0.5)
                d1, d2, step = torch.from_numpy(d1), torch.from_numpy(d2), torch.from_numpy(step)
            else:
                d1, d2 = _log_q_derivatives(m, cst, Qa, Nb)
                step = torch.where(d2 > 0, -d1 / d2, -0.2 * torch.sign(d1)).clamp(-0.5, 0.5)
            done = (step.abs() < tol) | (it == max_iter - 1)
            if not bool(done.any()):
                lq = lq + step
                continue
            every = bool(done.all())
            sel = slice(None) if every else done  # the converged walkers' rows of this evaluation
            a, g, a1, g1 = m[sel, 0, 0], m[sel, 0, 1], -m[sel, 1, 0], -m[sel, 1, 1]
            zs, us, dlq, Qs = z[sel], u_a[sel], step[sel], Qa[sel]
            ia = 1.0 / (1.0 + a)
            al, be = ia + g * g * ia * ia, g * ia  # ∂S_b/∂u = z⊙(α u − β y)
            ia1 = -a1 * ia * ia  # Q-derivatives of 1/(1 + a), α, β
            al1, be1 = ia1 + 2.0 * g * g1 * ia * ia + 2.0 * g * g * ia * ia1, g1 * ia + g * ia1
            Q_new = Qs * torch.exp(dlq)
            S_sel = (0.5 * Nb * (Qs - lq[sel]) - 0.5 * torch.log(zs).sum(1) + 0.5 * (zs @ self.y2)
                     + 0.5 * torch.log1p(a) - 0.5 * g * be + (d1[sel] + 0.5 * d2[sel] * dlq) * dlq)
            r0 = torch.addcmul(torch.outer(-be, self.y), al[:, None], us)  # α u − β y
            r1 = torch.addcmul(torch.outer(-be1, self.y), al1[:, None], us)  # its Q-derivative, at fixed z
            dQ = (Q_new - Qs)[:, None]
            dS_sel = torch.addcmul(zs * r0, dQ, torch.addcmul(zs * r1, v[sel, 1], r0, value=-1.0))
            if every and len(idx) == B:  # the common case: every walker converged together
                return Q_new, S_sel, dS_sel, al
            i = idx[done]
            Q[i], S[i], dS_du[i], omega[i] = Q_new, S_sel, dS_sel, al
            if every:
                break
            keep = ~done
            idx, u_a, uu_a, T_a, lq = idx[keep], u_a[keep], uu_a[keep], T_a[keep], lq[keep] + step[keep]
            v = v[:len(idx)]
        return Q, S, dS_du, omega


def _log_q_derivatives(m, cst, Q, Nb: float):
    """First and second derivative of S_b in log Q from the mode sums of :meth:`_Bulk.solve` (numpy arrays or
    tensors alike): m[:, k] = (Σ v_k u², Σ v_k y u), cst[:, k] = (Σ v_k b, Σ v_k y²), v_k = b^k z^(k+1), so that
    a' = −Σ v_1 u², a'' = 2 Σ v_2 u² (likewise g) and the u-independent terms ½Σ log(T + Qb) + ½Σ y²z give
    ½Σ v_0 b − ½Σ v_1 y² and −½Σ v_1 b + Σ v_2 y²."""
    a, g = m[:, 0, 0], m[:, 0, 1]
    a1, g1 = -m[:, 1, 0], -m[:, 1, 1]
    a2, g2 = 2.0 * m[:, 2, 0], 2.0 * m[:, 2, 1]
    ia = 1.0 / (1.0 + a)
    gia, a1ia = g * ia, a1 * ia
    s1 = (0.5 * Nb * (1.0 - 1.0 / Q) + 0.5 * (cst[:, 0, 0] - cst[:, 1, 1])
          + 0.5 * a1ia - gia * g1 + 0.5 * gia * gia * a1)
    s2 = (0.5 * Nb / (Q * Q) - 0.5 * cst[:, 1, 0] + cst[:, 2, 1]
          + 0.5 * a2 * ia - 0.5 * a1ia * a1ia
          - (g1 * g1 + g * g2) * ia + 2.0 * gia * g1 * a1ia
          + 0.5 * gia * gia * a2 - gia * gia * a1ia * a1)
    return Q * s1, Q * Q * s2 + Q * s1  # derivatives in log Q


def _energy_and_force(w: torch.Tensor, Q_start: torch.Tensor | None, Z: torch.Tensor, U: torch.Tensor, bulk: _Bulk,
                      sigma_and_prime, scale_u: float, lam0: float, rows: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """E(w) = λ0|w|²/2 + min_Q S_b(Q; u(w)), the gradient of its second part (by hand: u = σ(Zw)/√(λ1N1) rotated by
    U), Q and ω_c, for walkers w (B, r) float64 (``rows`` of the bulk's walkers; all when None). The products with
    Z and U run in their dtype (float32 in the HMC), the Q solve and the action in float64. The Gaussian prior part
    of the force is integrated exactly by the leapfrog's rotation."""
    phi, dphi = sigma_and_prime(w.to(Z.dtype) @ Z.T)
    uk = ((phi * scale_u) @ U).double()  # (B, P) in K's eigenbasis
    Q, S, dS_du, omega = bulk.solve(uk, Q_start, rows=rows)
    grad = ((((dS_du.to(U.dtype) @ U.T) * scale_u) * dphi) @ Z).double()
    return 0.5 * lam0 * (w * w).sum(1) + S, grad, Q, omega


def response_draws(samples: int | None, P: int) -> int:
    """Prior draws of the bulk response's Monte Carlo: ``samples`` when given (0: none, Wick's theorem); by default
    max(RESPONSE_SAMPLES, RESPONSE_ELEMENTS // P) — 16384 at P ≥ 1024, 16777 at P = 1000, 167772 at P = 100 (where
    16384 would leave N1·shift a ~5 % Monte-Carlo error on CIFAR grey cat v dog, docs/theory.md B.12). The error is
    reported (``CondensateResult.centroid_shift_se``)."""
    if samples is not None:
        return int(samples)
    return int(max(RESPONSE_SAMPLES, RESPONSE_ELEMENTS // P))


def _check_kernels(kb: KernelBlocks, x: np.ndarray, xt: np.ndarray | None, prior_w: float) -> None:
    """Refuse kernel blocks that do not belong to these inputs (shapes, and the input covariance's first and last
    rows, O(P·N0))."""
    P, N0 = x.shape
    rows = torch.as_tensor(x[[0, -1]] @ x.T / (N0 * prior_w), dtype=torch.float64)
    if (kb.train.shape != (P, P) or (xt is None) != (kb.test_train is None)
            or (xt is not None and kb.test_train.shape != (xt.shape[0], P))
            or not torch.allclose(kb.cov_train[[0, -1]].cpu(), rows, rtol=1e-10, atol=1e-12)):
        raise ValueError("kernels: are not nngp_kernels(x_train, x_test, prior_w) of these inputs")


def condensate_curve(
    x_train,
    y_train,
    temperatures,
    *,
    width: float,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    settings: CondensateSettings | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    kernels: KernelBlocks | None = None,
    spectrum: Spectrum | None = None,
) -> CondensateResult:
    """Every observable of the ``condensate`` level (module docstring; docs/theory.md B.12) at ``temperatures``.

    x_train (P, N0), y_train ±1 (P,); x_test, y_test optional (test predictor, test block of ⟨K_W⟩). ``width`` N1 ≥ 2,
    ``activation`` one of :data:`ZERO_MEAN_ACTIVATIONS`. All temperatures are sampled in one batch of
    ``settings.chains`` walkers each. Cost per trajectory O(chains·nT·P·(r + P)), r the rank of the inputs.
    ``kernels`` (:func:`nngp_kernels` of these inputs) and ``spectrum`` (:func:`factorise` of its train block) when
    the caller has them already (``temperature_curve`` does); computed here otherwise. Ones that do not belong to
    these inputs are refused.
    """
    s = settings if settings is not None else CondensateSettings()
    s.check()
    T_all = inputs.temperatures(temperatures)
    inputs.number("width", width, at_least=2.0)
    inputs.number("prior_w", prior_w)
    inputs.number("prior_v", prior_v)
    if activation not in ZERO_MEAN_ACTIVATIONS:
        raise ValueError(f"activation: the condensate level needs a zero-mean activation {ZERO_MEAN_ACTIVATIONS} "
                         f"(its bulk has no mean mode), got {activation!r}")
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or not np.all(np.abs(y) == 1):
        raise ValueError(f"y_train: the condensate level needs ±1 labels of shape (P,) for x_train (P, N0), "
                         f"got {np.shape(y_train)} and {np.shape(x_train)}")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test, y_test: give both or neither")
    xt = None if x_test is None else np.asarray(x_test, dtype=np.float64)
    yt = None if y_test is None else np.asarray(y_test, dtype=np.float64).reshape(-1)
    if xt is not None and (xt.ndim != 2 or xt.shape[1] != x.shape[1] or yt.shape[0] != xt.shape[0]):
        raise ValueError(f"x_test, y_test: need (P_test, {x.shape[1]}) and (P_test,), got {xt.shape} and {yt.shape}")

    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    kw = dict(dtype=torch.float64, device=dev)
    P, N0 = x.shape
    N1, lam0, lam1 = float(width), float(prior_w), float(prior_v)
    sigma = geometry.activation(activation)
    red = geometry.span_reduction(x, xt)
    Z = torch.as_tensor(red.x_train, **kw) / math.sqrt(N0)  # h = Z w, w ∈ R^r with prior N(0, I/λ0)
    r = Z.shape[1]
    Y = torch.as_tensor(y, **kw)
    kb = kernels if kernels is not None else nngp_kernels(x, xt, activation=activation, prior_w=lam0, device=dev)
    _check_kernels(kb, x, xt, lam0)
    sp = spectrum if spectrum is not None else factorise(kb.train, Y, prior_v=lam1)
    if sp.U.shape != (P, P) or abs(float(sp.kappa.sum() - torch.trace(kb.train))) > 1e-8 * float(torch.trace(kb.train)):
        raise ValueError("spectrum: is not the eigendecomposition of these inputs' kernel (factorise(kernels.train, y))")
    kappa, U = sp.kappa, sp.U
    y_rot = U.T @ Y
    nT, C = len(T_all), int(s.chains)
    B = nT * C
    T_w = torch.as_tensor(np.repeat(T_all, C), **kw)  # temperature-major walkers: b = k·C + chain
    bulk = _Bulk(kappa, y_rot, T_w, N1, lam1)
    gen = torch.Generator(device=dev).manual_seed(int(s.seed))
    scale_u = 1.0 / math.sqrt(lam1 * N1)

    sigma_and_prime = geometry.activation_and_derivative(activation)

    # The four (walkers × P × r or P) products of energy and force run in float32, the Q solve and the action in
    # float64: E is then a deterministic function of w, off by |ΔE| < 10⁻² at P = 1000 (tests/test_condensate.py),
    # a change of the sampled density far below its Monte-Carlo error; it halves the cost of a trajectory.
    Z32, U32 = Z.float(), U.float()

    def energy_and_force(w: torch.Tensor, Q_start: torch.Tensor | None, rows: torch.Tensor | None = None):
        return _energy_and_force(w, Q_start, Z32, U32, bulk, sigma_and_prime, scale_u, lam0, rows)

    # starts: half typical (prior draws), half condensed: a prior draw whose component along the Hebbian direction
    # ê ∝ Zᵀy is set so that this part of the pre-activations has rms 2 (σ saturates on the labels). Condensed draws
    # sit there (MNIST 3 v 5, P = 250, N1 = 50, T = 0.1: w·ê ≈ 6.9 against 2/rms(Zê) = 6.1, |w|² within 25 % of the
    # prior's), so both halves start one short relaxation from their branch.
    w = torch.randn(B, r, generator=gen, **kw) / math.sqrt(lam0)
    e_hebb = Z.T @ Y
    e_hebb = e_hebb / e_hebb.norm()
    beta = 2.0 / float((Z @ e_hebb).pow(2).mean().sqrt())
    cond = (torch.arange(B, device=dev) % C) >= C // 2
    w[cond] += (beta - w[cond] @ e_hebb)[:, None] * e_hebb
    E, grad, Q, omega = energy_and_force(w, None)
    # split HMC (Shahbaba et al. 2014): the prior's harmonic flow is a rotation of (w, p), exact at any step, so the
    # step size is set by the bulk action alone; a trajectory turns by at most a quarter period of the prior
    rot_max = 0.5 * math.pi / int(s.leapfrog)
    eps = torch.full((B,), 0.5 * rot_max / math.sqrt(lam0), **kw)

    def trajectory(rows: torch.Tensor | None, adapt: bool) -> torch.Tensor:
        """One HMC trajectory of the walkers ``rows`` (all when None), state updated in place; their acceptance."""
        nonlocal w, E, grad, Q, omega, eps
        sel = slice(None) if rows is None else rows
        w0, E0, grad0, Qs, om0, eps0 = w[sel], E[sel], grad[sel], Q[sel], omega[sel], eps[sel]
        n = w0.shape[0]
        p = torch.randn(n, r, generator=gen, **kw)
        H0 = E0 + 0.5 * (p * p).sum(1)
        e = eps0 * (1.0 + 0.2 * (2.0 * torch.rand(n, generator=gen, **kw) - 1.0))
        cos, sin = torch.cos(e * math.sqrt(lam0))[:, None], torch.sin(e * math.sqrt(lam0))[:, None]
        w1, p1, Q1, Q0 = w0, p - 0.5 * e[:, None] * grad0, Qs, Qs
        for step in range(int(s.leapfrog)):
            w1, p1 = w1 * cos + p1 * (sin / math.sqrt(lam0)), p1 * cos - w1 * (sin * math.sqrt(lam0))
            # Newton started from log Q extrapolated linearly along the trajectory; S_b has one minimum in Q
            # (checked on a grid along whole runs), so Q is a function of w alone and the leapfrog stays reversible
            Q0, (E1, g1, Q1, om1) = Q1, energy_and_force(w1, Q1 * Q1 / Q0, rows)
            p1 = p1 - (0.5 if step == s.leapfrog - 1 else 1.0) * e[:, None] * g1
        H1 = E1 + 0.5 * (p1 * p1).sum(1)
        acc = torch.exp(torch.clamp(H0 - H1, max=0.0))
        acc = torch.where(torch.isfinite(acc), acc, torch.zeros_like(acc))
        ok = torch.rand(n, generator=gen, **kw) < acc
        new = (torch.where(ok[:, None], w1, w0), torch.where(ok, E1, E0), torch.where(ok[:, None], g1, grad0),
               torch.where(ok, Q1, Qs), torch.where(ok, om1, om0))
        if adapt:  # Robbins–Monro on log ε toward the target acceptance
            eps0 = (eps0 * torch.exp(0.5 * (acc - s.target_accept))).clamp_max(rot_max / math.sqrt(lam0))
        if rows is None:
            (w, E, grad, Q, omega), eps = new, eps0
        else:
            for old, upd in zip((w, E, grad, Q, omega, eps), new + (eps0,)):
                old[rows] = upd
        return acc

    # Burn-in: ``burn_in`` trajectories for every walker, then, in blocks of BURN_BLOCK, longer for the temperatures
    # whose chains sit on different branches (some condensed, λ1⟨v_c²⟩ averaged over the block > N1/4, some
    # typical), up to ``max_burn_in``: at α = 2, T ≤ 0.03 a typical start takes 100–300 trajectories to condense.
    # Chains that all condensed but disagree otherwise (local states of the condensed unit) are not extended.
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(s.burn_in) + int(s.draws), desc="condensate HMC", leave=False)
    burned = np.zeros(nT, dtype=int)  # burn-in trajectories per temperature
    omega_trace: list[torch.Tensor] = []
    active = np.ones(nT, dtype=bool)
    while active.any():
        rows = None if active.all() else torch.as_tensor(np.flatnonzero(np.repeat(active, C)), device=dev)
        trajectory(rows, adapt=True)
        omega_trace = omega_trace[-(BURN_BLOCK - 1):] + [omega.clone()]
        burned[active] += 1
        if bar is not None:
            bar.update(1)
        k = int(burned.max())  # the active temperatures' common count
        if k >= s.burn_in and (k - s.burn_in) % BURN_BLOCK == 0:
            chain_cond = (torch.stack(omega_trace).mean(0) > N1 / 4.0).reshape(nT, C).cpu().numpy()
            active &= chain_cond.any(1) & ~chain_cond.all(1) & (burned < s.max_burn_in)
            if bar is not None and active.any():  # another block for the temperatures whose branches coexist
                bar.total += BURN_BLOCK
                bar.set_postfix_str(f"burn-in extended at {int(active.sum())} T")
    kept_w, kept_Q, kept_E, acc_sum = [], [], [], torch.zeros(B, **kw)
    for _ in range(int(s.draws)):
        acc_sum += trajectory(None, adapt=False)
        kept_w.append(w.clone())
        kept_Q.append(Q.clone())
        kept_E.append(E.clone())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    nD = len(kept_w)
    Wd = torch.stack(kept_w, 1).reshape(nT, C * nD, r)  # per temperature: chain-major, then draws
    Qd = torch.stack(kept_Q, 1).reshape(nT, C * nD)
    Ed = torch.stack(kept_E, 1).reshape(nT, C, nD)
    acceptance = (acc_sum / nD).reshape(nT, C).mean(1).cpu().numpy()

    Zt = Rt = None
    if xt is not None:
        Zt = torch.as_tensor(red.x_test, **kw) / math.sqrt(N0)
        if red.test_remainder is not None and red.test_remainder.shape[1]:
            Rt = torch.as_tensor(red.test_remainder, **kw) / math.sqrt(N0)
    E_dirs = weight_directions(x)
    E_red = torch.as_tensor(E_dirs, **kw) @ torch.as_tensor(red.basis, **kw)  # directions in span coordinates
    ey = torch.as_tensor(red.basis.T @ (x.T @ y), **kw)
    ey = ey / ey.norm()
    F0 = None if kb.test_train is None else kb.test_train @ U
    c = (N1 - 1.0) / N1
    # weight directions: in span coordinates for the sampled unit; their parts off the span keep the prior
    dirs = torch.cat([E_red, ey[None]])
    e_input = torch.as_tensor(np.concatenate([E_dirs, (x.T @ y)[None] / np.linalg.norm(x.T @ y)]), **kw)
    prior_off_span = (e_input @ e_input.T - dirs @ dirs.T) / lam0
    Yt = None if yt is None else torch.as_tensor(yt, **kw)
    # N1·shift = N1·(cᵀ⟨K_W⟩c − cᵀKc): its Monte-Carlo error is reported (the condensed unit's draws and the response)
    c_vec = torch.as_tensor(geometry.centroid_vector(y), **kw)
    cKc = float(c_vec @ kb.train @ c_vec)
    n_resp = response_draws(s.response_samples, P)

    def exact_responses(tilts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple]:
        """The bulk's response to its tilt with the exact activation (docs/theory.md B.12), per temperature's
        J̃ = diag(j) + VᵀV (K's eigenbasis; V its rank part from the kernel draws): MC_φ − MC_ℓ + L J L for the train
        block, the test block and the weight moments, and the Monte-Carlo standard error of cᵀ(·)c. One Monte Carlo
        over ``n_resp`` prior draws shared by all temperatures, in chunks (memory O(chunk·P)). Control variate: the
        linear part ℓ = s⊙h (s = E[σ'(h)]), whose response is Wick's exact L J L (L = S C S) — for the identity
        activation the Monte-Carlo terms cancel exactly. Both Monte-Carlo terms are centred on their exact means,
        (φφᵀ − K)(q − E q) and (ℓℓᵀ − L)(q_ℓ − E q_ℓ): the same expectation, ~20 % less noise."""
        gen_pr = torch.Generator(device=dev).manual_seed(int(s.seed) + 1)  # its own stream: HMC draws unchanged
        slope = kb.slope_train
        SZ = Z * slope[:, None]
        G = SZ.T @ U  # ℓ̃ = Uᵀℓ = Gᵀw: the control variate's forms cost r², not P², per draw
        L = slope[:, None] * kb.cov_train * slope[None, :]
        L_rot = L @ U
        UtLU = U.T @ L_rot
        cl_vec, cLc = SZ.T @ c_vec, float(c_vec @ L @ c_vec)
        if Zt is not None:
            C_tt = Zt @ Zt.T / lam0 + (0.0 if Rt is None else Rt @ Rt.T / lam0)
            L_tt = kb.slope_test[:, None] * C_tt * kb.slope_test[None, :]
            Lt_rot = (kb.slope_test[:, None] * kb.cov_test_train * slope[None, :]) @ U
        prep = []
        for j, V in tilts:
            lam, E = torch.linalg.eigh(V @ V.T)  # VᵀV from its nonzero singular directions only
            V = E[:, lam > 1e-12 * lam[-1].clamp_min(1e-300)].T @ V
            GV = G @ V.T
            M = (G * j) @ G.T + GV @ GV.T  # q_ℓ = ½ wᵀMw
            Eq = 0.5 * float(j @ kappa + ((V * V) @ kappa).sum())  # E[q]: UᵀKU = diag κ
            Eql = 0.5 * float(j @ UtLU.diagonal() + ((V @ UtLU) * V).sum())
            prep.append((j.float(), V, V.float(), M.float(), Eq, Eql))
        nT_ = len(tilts)
        acc_phi = torch.zeros(nT_, P, P, **kw)
        acc_lin = torch.zeros(nT_, r, r, **kw)
        acc_w = torch.zeros(nT_, dirs.shape[0], dirs.shape[0], **kw)
        acc_t = None if Zt is None else torch.zeros(nT_, Zt.shape[0], Zt.shape[0], **kw)
        sums = torch.zeros(nT_, 6, **kw)  # Σ q̃, Σ q̃_ℓ, Σ cc, Σ cc², Σ ll, Σ ll² per temperature
        chunk = max(1024, 2**24 // max(P, r, 1 if Zt is None else Zt.shape[0]))
        for start in range(0, n_resp, chunk):
            m = min(chunk, n_resp - start)
            w_pr = torch.randn(m, r, generator=gen_pr, **kw) / math.sqrt(lam0)
            phi = sigma(w_pr @ Z.T)
            # (draws × P × P) products in float32: the Monte-Carlo error (~1 %) dwarfs float32 rounding (~10⁻⁶)
            phi32, w32 = phi.float(), w_pr.float()
            ph = phi32 @ U32
            proj = w_pr @ dirs.T
            label2 = proj[:, -1] ** 2 - 1.0 / lam0  # (e_y·w)² − its prior mean (e_y the last direction, unit norm)
            c_phi = (phi @ c_vec) ** 2 - cKc
            c_lin = (w_pr @ cl_vec) ** 2 - cLc
            if Zt is not None:
                ht = w_pr @ Zt.T
                if Rt is not None:
                    ht = ht + torch.randn(m, Rt.shape[1], generator=gen_pr, **kw) @ Rt.T / math.sqrt(lam0)
                phit, lint = sigma(ht).float(), (kb.slope_test * ht).float()
            for k, (j32, _, V32, M32, Eq, Eql) in enumerate(prep):
                q = 0.5 * ((ph * ph) @ j32 + (ph @ V32.T).pow(2).sum(1)).double() - Eq
                ql = 0.5 * ((w32 @ M32) * w32).sum(1).double() - Eql
                q32, ql32 = q.float()[:, None], ql.float()[:, None]
                acc_phi[k] += ((phi32 * q32).T @ phi32).double()
                acc_lin[k] += ((w32 * ql32).T @ w32).double()
                acc_w[k] += (proj * (q - ql)[:, None]).T @ proj
                if acc_t is not None:
                    acc_t[k] += ((phit * q32).T @ phit - (lint * ql32).T @ lint).double()
                cc = c_phi * q - c_lin * ql
                ll = label2 * (q - ql)  # the weight label moment's part, per draw (for its s.e.)
                sums[k] += torch.stack([q.sum(), ql.sum(), cc.sum(), (cc * cc).sum(), ll.sum(), (ll * ll).sum()])
        res = []
        for k, (j32, V, _, _, _, _) in enumerate(prep):
            j = j32.double()
            mq, mql, mc, mc2, ml, ml2 = (sums[k] / n_resp).tolist()
            LV = L_rot @ V.T
            train = acc_phi[k] / n_resp - kb.train * mq - SZ @ (acc_lin[k] / n_resp) @ SZ.T + L * mql \
                + (L_rot * j) @ L_rot.T + LV @ LV.T
            test = None
            if acc_t is not None:
                LtV = Lt_rot @ V.T
                test = acc_t[k] / n_resp - kb.test * mq + L_tt * mql + (Lt_rot * j) @ Lt_rot.T + LtV @ LtV.T
            weights = acc_w[k] / n_resp - (dirs @ dirs.T / lam0) * (mq - mql)  # the Stein (ℓ) part is the base's
            res.append((train, test, weights, math.sqrt(max(mc2 - mc * mc, 0.0) / n_resp),
                        math.sqrt(max(ml2 - ml * ml, 0.0) / n_resp)))
        return res

    cond_moments, resp_weights, tilts = [], [], []  # tilts: the bulk tilt (j, V) per temperature, J̃ = diag j + VᵀV
    F, U2 = U * kappa, U * U  # K = F Uᵀ; diag A⁻¹ = U² z — loop invariants
    F0_2 = None if F0 is None else F0 * F0
    out: dict[str, list] = {k: [] for k in ("trm", "tre", "trv", "tem", "tev", "b2", "tv", "v2", "om", "al", "KWc",
                                            "KWtc", "rhat", "all_cond", "cse", "lse")}
    for k, T in enumerate(T_all):
        w_k, Q_k = Wd[k], Qd[k]
        phi = sigma(w_k @ Z.T)  # (n, P)
        uk = (phi * scale_u) @ U
        z = 1.0 / (T + Q_k[:, None] * bulk.b)
        a = (z * uk * uk).sum(1)
        g = (z * y_rot * uk).sum(1)
        r_rot = z * y_rot - (z * uk) * (g / (1.0 + a))[:, None]  # Uᵀ(A_Q + uuᵀ)⁻¹y
        f_train = Y[None] - T * (r_rot @ U.T)
        diag_inv = U2 @ z.T  # diag A_Q⁻¹, (P, n)
        zu = (z * uk) @ U.T
        var_train = T - T * T * (diag_inv.T - zu * zu / (1.0 + a)[:, None])
        f_mean = f_train.mean(0)
        out["trm"].append(f_mean.cpu().numpy())
        out["tre"].append(float(((Y - f_mean) ** 2).mean()))
        out["trv"].append(float((var_train.mean(0) + f_train.var(0, unbiased=False)).mean()))
        omega = 1.0 / (1.0 + a) + g * g / (1.0 + a) ** 2
        out["om"].append(float(omega.mean()))
        # every chain condensed (λ1⟨v_c²⟩ per chain above N1/4, a typical unit's is O(1))?
        out["all_cond"].append(bool((omega.reshape(C, nD).mean(1) > N1 / 4.0).all()))
        out["v2"].append(float(((omega + (N1 - 1.0) * Q_k) / N1).mean()))
        out["al"].append(float(((phi @ Y).abs() / (phi.norm(dim=1) * Y.norm())).mean()))
        rh, _, _ = chain_diagnostics({"energy": Ed[k].cpu().numpy(),
                                      "omega": omega.reshape(C, nD).cpu().numpy()})
        out["rhat"].append(max(rh.values()))
        # the bulk tilt J̃ = (Q/(λ1N1))(r̃r̃ᵀ − diag z + (zũ)(zũ)ᵀ/(1 + a)), averaged over a subset of the draws
        sub = torch.linspace(0, w_k.shape[0] - 1, min(int(s.kernel_draws), w_k.shape[0]), device=dev).long()
        wt = (Q_k[sub] / (lam1 * N1))
        zu_rot = z[sub] * uk[sub] / torch.sqrt(1.0 + a[sub])[:, None]
        V_rank = torch.cat([r_rot[sub], zu_rot]) * torch.sqrt(wt / len(sub)).repeat(2)[:, None]
        j_diag = -(wt[:, None] * z[sub]).mean(0)
        tilts.append((j_diag, V_rank))
        # the condensed unit's part of ⟨K_W⟩, from all its draws; the s.e. of its cᵀφφᵀc from the chains' means
        n_w = phi.shape[0]
        out["KWc"].append((phi.T @ phi) / (n_w * N1))
        c_draws = ((phi @ c_vec) ** 2).reshape(C, nD).mean(1)
        out["cse"].append(float(c_draws.std()) / math.sqrt(C))
        proj = w_k @ dirs.T  # the condensed unit's weight moments, from its draws
        cond_moments.append(proj.T @ proj / proj.shape[0] + prior_off_span)
        out["lse"].append(float((proj[:, -1] ** 2).reshape(C, nD).mean(1).std()) / math.sqrt(C))
        if Zt is not None:
            ht = w_k @ Zt.T
            if Rt is not None:  # the weight components off the training span keep their prior
                ht = ht + torch.randn(w_k.shape[0], Rt.shape[1], generator=gen, **kw) @ Rt.T / math.sqrt(lam0)
            phit = sigma(ht)
            ut = phit * scale_u
            # k_f(x_t, X) U = u_t ũ + (cQ/λ1) F0 row by row; its forms with Σ = diag z − (zũ)(zũ)ᵀ/(1 + a)
            # expanded so that no (draws, P_test, P) tensor is formed
            kq = (c * Q_k / lam1)[:, None]
            f_test = ut * (uk * r_rot).sum(1)[:, None] + kq * (r_rot @ F0.T)
            v1 = (z * uk) @ F0.T  # F0 z ũ, (n, Pt)
            v2 = z @ F0_2.T  # diag(F0 diag(z) F0ᵀ)
            quad = ut * ut * a[:, None] + 2.0 * ut * kq * v1 + kq * kq * v2 \
                - (ut * a[:, None] + kq * v1) ** 2 / (1.0 + a)[:, None]
            var_t = ut * ut + kq * torch.diagonal(kb.test)[None] - quad
            tm = f_test.mean(0)
            tv = var_t.mean(0) + f_test.var(0, unbiased=False)
            out["tem"].append(tm.cpu().numpy())
            out["tev"].append(tv.cpu().numpy())
            out["b2"].append(float(((Yt - tm) ** 2).mean()))
            out["tv"].append(float(tv.mean()))
            out["KWtc"].append((phit.T @ phit) / (n_w * N1))
    # ⟨K_W⟩ = the condensed unit's part + c·(K + the bulk's response): the exact activation's (Monte Carlo, one pass
    # for all temperatures) or Wick's K J K
    responses = exact_responses(tilts) if n_resp else None
    tilt_j, tilt_W = torch.stack([j for j, _ in tilts]), torch.stack([V.T @ V for _, V in tilts])
    KW, KWt, shift_se, label_se = [], [], [], []
    for k in range(nT):
        if responses is None:
            J_rot = torch.diag(tilt_j[k]) + tilt_W[k]
            d_train = F @ J_rot @ F.T
            d_test = None if F0 is None else F0 @ J_rot @ F0.T
            r_se = l_se = 0.0
        else:
            d_train, d_test, d_weights, r_se, l_se = responses[k]
            resp_weights.append(d_weights)
        KW.append((out["KWc"][k] + c * (kb.train + d_train)).cpu().numpy())
        if Zt is not None:
            KWt.append((out["KWtc"][k] + c * (kb.test + d_test)).cpu().numpy())
        # N1·shift = (cᵀφ_cφ_cᵀc averaged over the draws) + (N1 − 1)(cᵀKc + cᵀRc) − N1 cᵀKc
        shift_se.append(math.hypot(out["cse"][k], (N1 - 1.0) * r_se))
        label_se.append(math.hypot(out["lse"][k], (N1 - 1.0) * l_se) / N1)  # as weight_label_moment below
    # the bulk's weight moments from its §4 tilt, all temperatures in one rotation (weights.tilted_weight_moments)
    tilt = Tilt(U=U, j=tilt_j, R=torch.eye(P, **kw).expand(nT, P, P), W=tilt_W)
    m_b, l_b = tilted_weight_moments(tilt, U, kb.slope_train, torch.as_tensor(x, **kw), Y, E_dirs, prior_w=lam0)
    if resp_weights:  # the exact activation's part of the bulk's weight response
        extra = torch.stack(resp_weights).cpu().numpy()
        m_b = m_b + extra[:, :-1, :-1]
        l_b = l_b + extra[:, -1, -1]
    m_c = torch.stack(cond_moments).cpu().numpy()
    ne = E_dirs.shape[0]
    weight_moments = (m_c[:, :ne, :ne] + (N1 - 1.0) * m_b) / N1
    weight_label_moment = (m_c[:, ne, ne] + (N1 - 1.0) * l_b) / N1
    rhat = np.array(out["rhat"])
    conv = np.isfinite(rhat) & (rhat <= s.rhat_max)
    all_cond = np.array(out["all_cond"])
    checks = [(conv | all_cond, f"condensed-unit chains disagree (split-R̂ > {s.rhat_max:g}): typical and condensed "
                                "branches coexist (crossover, docs/theory.md B.12)"),
              (conv | ~all_cond, f"condensed-unit chains disagree (split-R̂ > {s.rhat_max:g}) although every chain "
                                 "condensed: they sit in different local states of the condensed unit (its weight "
                                 "posterior is multimodal there; docs/theory.md B.12)"),
              (np.full(nT, N1 >= MIN_VALIDATED_WIDTH), f"width N1 < {MIN_VALIDATED_WIDTH}: below the smallest width "
                                                        "validated against sampling (use sampling)")]
    ok = np.logical_and.reduce([m for m, _ in checks])
    why = tuple("; ".join(reason for m, reason in checks if not m[i]) for i in range(nT))
    have_test = xt is not None
    nan = np.full(nT, np.nan)
    b2 = np.array(out["b2"]) if have_test else nan
    tv = np.array(out["tv"]) if have_test else nan
    return CondensateResult(
        temperature=T_all, bulk_Q=Qd.mean(1).cpu().numpy(), train_mean=np.stack(out["trm"]),
        train_error=np.array(out["tre"]), train_variance=np.array(out["trv"]),
        test_mean=np.stack(out["tem"]) if have_test else None,
        test_point_variance=np.stack(out["tev"]) if have_test else None,
        test_bias2=b2, test_variance=tv, test_error=b2 + tv, readout_second_moment=np.array(out["v2"]),
        condensate_readout=np.array(out["om"]), condensate_alignment=np.array(out["al"]),
        hidden_gram=np.stack(KW), hidden_gram_test=np.stack(KWt) if have_test else None,
        centroid_shift_se=np.array(shift_se), weight_label_moment_se=np.array(label_se), response_samples=n_resp,
        weight_moments=weight_moments, weight_label_moment=weight_label_moment, weight_directions=E_dirs,
        acceptance=acceptance, rhat=rhat, burn_in=burned, converged=conv, in_regime=ok, regime_reason=why,
        wall_time_s=time.perf_counter() - t0,
    )

