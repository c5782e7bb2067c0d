"""Closure ``"fluct"`` of the cavity level (level ``cavity_fluct``): the exact conditional averaged over a
FLUCTUATING cavity mean. Derivation and measurements: docs/theory.md B.10.

Unit i's exact conditional given the other units (A_∖ = T + Σ_{j≠i} φ_jφ_jᵀ/(λ1N1)):

    p(w | rest) ∝ p0(w) (1 + a)^(-1/2) exp(½ g²/(1 + a)),  a = φᵀA_∖⁻¹φ/(λ1N1),  g = φᵀr/√(λ1N1),  r = A_∖⁻¹y.

Model of the cavity: a self-averages, a ≈ a_a = φᵀΣ_aφ/(λ1N1) with Σ_a = E[A_∖⁻¹]; r = m + δ with δ ~ N(0, C_m)
independent of the unit. Then, given φ, g ~ N(ḡ, s²) with ḡ = mᵀφ/√(λ1N1), s² = φᵀC_mφ/(λ1N1), and

    p(w) ∝ p0(w) (1 + a_t)^(-1/2) exp(½ ḡ²/(1 + a_t)),   a_t = a_a − s² = φᵀΣ_tφ/(λ1N1),  Σ_t = Σ_a − C_m.  (★)

Under the tilt, δ | φ is Gaussian with mean C_m u ḡ/(1 + a_t) and covariance C_m + C_m u uᵀ C_m/(1 + a_t)
(u = φ/√(λ1N1); the Onsager reaction of the cavity to the unit). Three exact identities, averaged in this model
(c = (N1 − 1)/N1, E_p the average over (★)):

    Stein (A r = y):           (T + c·K_t/λ1) m = y,                K_t = E_p[φφᵀ/(1 + a_t)]
    trace (A A⁻¹ = I):         (T + c·K_a/λ1) Σ_a = I,              K_a = E_p[φφᵀ/(1 + a_a)]
    second moment (A r rᵀ = y rᵀ, Sherman–Morrison on each unit, δ | φ as above):
                               (T + c·K_post/λ1) C_m = c·V Σ_a/λ1,   V = E_p[φφᵀ (ḡ²/(1 + a_t)² + s²/((1 + a_a)(1 + a_t)))],
    K_post = E_p[ω φφᵀ],  ω = 1/(1 + a_t) + ḡ²/(1 + a_t)²  (= λ1⟨v²⟩ of the unit).

Pointwise ω − (ḡ²/(1 + a_t)² + s²/((1 + a_a)(1 + a_t))) = 1/(1 + a_a), i.e. K_post − V = K_a, so

    Σ_t = Σ_a − C_m = (T + c·K_post/λ1)⁻¹ (T + c·(K_post − V)/λ1) Σ_a = (T + c·K_post/λ1)⁻¹:

E[A_∖⁻¹] (and with it the rank bound) cancels exactly, and the fluctuating-mean closure is the readout-weighted
posterior kernel in EVERY direction. (Moment matching of t, expectation propagation, gives K_post − b bᵀ,
b = E_p[φḡ/(1 + a_t)], instead.) The default ``"shape"`` closure (B.5) is this Σ_t with the label block
replaced by the Gaussian-equivalent q·K (q = E_p[ω]); ``"fluct"`` keeps the measured block on the whole basis B
of :func:`equilibrium.cavity.cavity_curve` (bulk outside B: q·K, as in every closure). For Gaussian φ
K_post = Q*K + (rank one along K m, an O(1/N1) effect on a): the Q* theory, which is exact for the identity
activation.

This module supplies the per-iteration map only; the set-up (samples, basis, solver, predictor) is
:func:`equilibrium.cavity.cavity_curve`'s (``closure="fluct"``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["fluct_measure"]


def fluct_measure(*, quad_all: Callable, kernel_parts: Callable, solve_eig: Callable, phi: torch.Tensor,
                  pB: torch.Tensor, Bt: torch.Tensor, U: torch.Tensor, yr: torch.Tensor, log_p0_q: torch.Tensor,
                  lam1: float, width: float) -> Callable:
    """The fixed-point map of closure ``"fluct"`` (module docstring), on state (m, q, D):
    Σ_t = (T + c·(q K + B D Bᵀ)/λ1)⁻¹ with D the B-block of K_post − q K, m the cavity mean.

    Arguments are :func:`equilibrium.cavity.cavity_curve`'s internals: ``quad_all(T, c, scale, D, Bt)`` →
    (φᵀΣφ per sample, Tr Σ); ``kernel_parts(weights, scale)`` → D of E_w[fφφᵀ] ≈ scale·K + B D Bᵀ (exact prior
    control variate); ``solve_eig`` (Woodbury solve in K's eigenbasis); ``phi`` (P, S) features; ``pB`` = Bᵀφ;
    ``Bt`` = B in K's eigenbasis; ``U`` K's eigenvectors; ``yr`` = Uᵀy; ``log_p0_q`` the importance log-weights of
    the proposal. Returns ``measure(T, state) -> (new_state, aux)`` with the aux keys cavity_curve reads."""
    N1 = float(width)
    cav = (N1 - 1.0) / N1
    root = math.sqrt(lam1 * N1)

    def measure(T: float, state: tuple):
        m, q, D = state
        qa, _ = quad_all(T, cav, q, D, Bt)
        a = qa / (lam1 * N1)  # a_t = φᵀΣ_tφ/(λ1N1): Σ_t already carries −C_m
        g = (m @ phi) / root  # ḡ: the mean of the cavity field's overlap
        logw = log_p0_q - 0.5 * torch.log1p(a) + 0.5 * g * g / (1.0 + a)
        w = torch.softmax(logw, 0)
        omega = 1.0 / (1.0 + a) + g * g / (1.0 + a) ** 2
        q_new = float((w * omega).sum())
        rho = float((w / (1.0 + a)).sum())
        D_new = kernel_parts(w * omega, q_new)  # K_post on B: Σ_t⁻¹ = T + c·K_post/λ1 (Σ_a cancels)
        Dm = kernel_parts(w / (1.0 + a), rho)
        m_new = U @ solve_eig(T, cav, rho, Dm, yr[:, None])[:, 0]
        return (m_new, q_new, D_new), dict(w=w, a=a, g=g, omega=omega, rho=rho, Dm=Dm, logw=logw)

    return measure
