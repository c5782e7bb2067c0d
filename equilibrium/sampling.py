"""Exact posterior sampling of a one-hidden-layer network, with convergence diagnostics (docs/conventions.md §1, §6).

Network and posterior (standard parameterisation, conventions of docs/conventions.md §1)::

    f(x) = Σ_i v_i σ(w_i·x/√N0) / √N1,      w_i ~ N(0, I/λ0),  v_i ~ N(0, 1/λ1),
    p_T(W, v | D) ∝ exp(−(1/2T) Σ_μ |y^μ − f(x^μ)|² − (λ0/2)|W|² − (λ1/2)|v|²).

This is the ground truth of the equilibrium theory: :func:`sample_temperatures` samples a whole
temperature ladder in one batched computation (R chains per temperature, optionally with replica
exchange between neighbouring temperatures), measures every class-manifold measure on every sample
with the shared ``gdeq.geometry`` code, and reports per temperature the convergence diagnostics
(rank-normalised split-R̂, bulk and tail ESS from ``arviz``). :func:`sample_posterior` is the one-
temperature version. ``equilibrium.temperature_curve(..., level="sampled")`` wraps it as a curve.

Moves
-----
``method="hmc"`` (default)
    The readout is integrated out exactly: given W, v is Gaussian (docs/conventions.md §5), so W has the
    collapsed density p_T(W) ∝ exp(−U_T(W)),

        U_T(W) = (λ0/2)|W|² + (D/2) log det A_W + ½ tr Yᵀ A_W⁻¹ Y,   A_W = T·I + K_W/λ1,  K_W = ΦΦᵀ/N1,

    sampled with Metropolis-adjusted Hamiltonian Monte Carlo (no step-size bias) in Z = √λ0 W with unit
    mass. Default integrator ``"split"``: U = ½|Z|² + U_lik(Z) is integrated by Strang splitting, the
    prior flow exactly (a rotation of each (Z, p) pair), the likelihood by kicks, so the step size is
    limited by the likelihood's curvature only, not by the r·N1 prior-dominated directions (with the
    plain leapfrog those force ε ∝ (r·N1)^(−1/4)). Step size per temperature tuned during the discarded
    burn-in to an acceptance near 0.8, then frozen; every chain integrates for the same (jittered)
    time, taking as many steps as its temperature's step size needs. All
    readout-dependent observables are Rao–Blackwellised through v | W:
    E[v | W] = √N1 M⁻¹ΦᵀY, Cov[v | W] = T·N1·M⁻¹ per output, M = T·N1·λ1·I + ΦᵀΦ.
``method="langevin"``
    Plain unadjusted Langevin on (W, v) jointly (validation only: step-size bias, no tempering):
    θ ← θ − η ∇U(θ) + √(2η) ξ with U = (1/2T)Σ|y − f|² + (λ0/2)|W|² + (λ1/2)|v|²,
    default η = 0.05·T/κ_max (κ_max: top eigenvalue of the prior hidden kernel).

Replica exchange (``tempering=True``): the ladder is the requested temperatures plus helper
temperatures. Their spacing comes from a measurement (``swap_target``, default 0.25): the chains are
first tuned on a coarse probe ladder (ratio 3), the spread σ_E of E_T(W) = ∂U_T/∂T is measured there,
and helpers are placed at equal steps 2 erfc⁻¹(swap_target) of ∫σ_E dT (predicted exchange acceptance
erfc(ΔT σ_E / 2), :func:`ladder_from_energy_spread`), never further apart than
``max_temperature_ratio``; with ``swap_target=None`` the helpers are geometric at that ratio. After every
HMC trajectory, neighbouring pairs (alternately even and odd pairs) of the same replica column
propose to exchange their states W, accepted with probability
min(1, exp(U_Ti(W_i) + U_Tj(W_j) − U_Ti(W_j) − U_Tj(W_i))) — U_T(W) is the collapsed energy above
evaluated exactly at both temperatures (its T-dependent log det term included; constants that do
not depend on W cancel). Each temperature's marginal stays exactly p_T(W).

Safe by default (adaptive length): after a tuning phase, the sampler runs in rounds of
``first_round``, ``first_round``, 2·``first_round``, 4·``first_round``, … trajectories; after each
round the estimate uses only the last round (the second half of all draws; everything before is
burn-in) and the diagnostics of that round. It stops when split-R̂ < ``rhat_max`` and bulk and tail
ESS ≥ ``ess_min`` for every diagnostic observable at every temperature, or when the next round
would exceed the budget (``max_trajectories`` per chain, ``max_seconds``): then the temperatures
that fail are reported ``converged=False`` and a :class:`SamplingConvergenceWarning` names them.
Fixed lengths (``burn_in``/``sampling_time`` in time units) are still accepted; their diagnostics
are reported the same way.

Diagnostic observables (:data:`DIAGNOSTIC_OBSERVABLES`), one scalar per chain per draw, traces kept:
``readout_second_moment`` (1/(N1 D)) Σ_i E[|v_i|² | W] (λ1 × this is λ1⟨v²⟩), ``train_error``
(1/P)|Y − E[f | W]|², ``centroid_distance`` cᵀK_Wc (two classes; the mean off-diagonal entry of
the squared centroid-distance matrix otherwise; R̂/ESS are the same for the centroid shift, an
affine function of it) and ``unit_class_radius`` (unit-sphere radius, mean over classes).

Exact span reduction (docs/conventions.md §6, ``reduce=True``): the likelihood sees w_i only through its
component in the span of the training inputs (``gdeq.geometry.span_reduction``): the r span
coordinates are sampled; a test input's orthogonal remainder contributes w_⊥·x_⊥/√N0, whose
weight components are drawn fresh from the prior at every measurement.

Time units: ``burn_in`` and ``sampling_time`` are in docs/conventions.md §6's U-time; an HMC
trajectory of integration time L counts as L time units.

First-layer weight moments (the observable shared with the equilibrium theory)
------------------------------------------------------------------------------
Ω = (1/N1) Σ_i h_i h_iᵀ, h_i = X w_i/√N0 (P×P pre-activation Gram on the training inputs), prior
value C = XXᵀ/(N0 λ0). ``weight_moment_label`` = aᵀΩa/aᵀCa for a = each label column;
``weight_moment_pcs`` the k×k matrix u_kᵀΩu_l/√(c_k c_l) on the top-k eigenvectors of C
(``equilibrium.weights.weight_moment_projections``, the one definition). Same numbers as ``equilibrium.TemperatureCurve``:
``weight_moment_pcs`` = λ0 × ``TemperatureCurve.weight_moments`` and ``weight_moment_label`` = λ0 ×
``TemperatureCurve.weight_label_moment``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
import torch

from gdeq import geometry
from gdeq.geometry import Estimate

from . import inputs
from .weights import weight_moment_projections

__all__ = ["DIAGNOSTIC_OBSERVABLES", "Estimate", "PosteriorSample", "SAMPLER_ACTIVATIONS", "SamplerDiagnostics",
           "SamplerSettings", "SamplingConvergenceWarning", "chain_diagnostics", "ladder_from_energy_spread",
           "ladder_temperatures",
           "sample_posterior", "sample_temperatures"]

SAMPLER_ACTIVATIONS = ("erf", "relu", "tanh", "identity")
DIAGNOSTIC_OBSERVABLES = ("readout_second_moment", "train_error", "centroid_distance", "unit_class_radius")


class SamplingConvergenceWarning(RuntimeWarning):
    """The sampler stopped (budget or fixed length) before its diagnostics passed at some temperature."""


# ---------------------------------------------------------------------------------------------
# settings and results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerSettings:
    """How to sample (see the module docstring).

    replicas: R chains per temperature. method: ``"hmc"`` (collapsed, exact) or ``"langevin"``.
    tempering: replica exchange over the ladder (hmc only); helper temperatures are inserted so that
    neighbouring ladder temperatures differ by at most ``max_temperature_ratio`` and, with
    ``swap_target`` (default 0.25; None: geometric helpers only), so that the predicted exchange
    acceptance is about ``swap_target`` (spacing from the measured spread of ∂U_T/∂T, see
    :func:`ladder_from_energy_spread`). trajectory_length: HMC
    integration time per trajectory (jittered ±20 %; in Z = √λ0 W with unit mass, so π/2 is a quarter
    period of the prior flow: a fresh prior draw of every prior-dominated direction). step_size:
    initial HMC step (tuned per temperature) or Langevin η. integrator: ``"split"`` (prior flow exact,
    kicks by the likelihood; default) or ``"leapfrog"`` (plain leapfrog on the whole U). force_dtype:
    precision of the forces in the HMC kicks (default float32, ~3× cheaper on CPU; None: ``dtype``);
    positions, momenta and the Metropolis test stay in ``dtype``, so the chain stays exact. Adaptive length: ``first_round`` trajectories in the first round, stop at
    R̂ < ``rhat_max`` and ESS ≥ ``ess_min``, budget ``max_trajectories`` per chain (tuning included)
    and ``max_seconds`` (None: none). Fixed length instead: ``burn_in`` and ``sampling_time`` (time
    units, both given). ``reduce``: exact span reduction. ``n_components``: data principal directions
    for ``weight_moment_pcs``. ``measure_every``: Langevin time between draws.
    """

    replicas: int = 32
    method: Literal["hmc", "langevin"] = "hmc"
    tempering: bool = False
    max_temperature_ratio: float = 2.0
    swap_target: float | None = 0.25
    trajectory_length: float = math.pi / 2
    step_size: float | None = None
    integrator: Literal["split", "leapfrog"] = "split"
    force_dtype: torch.dtype | None = torch.float32
    rhat_max: float = 1.01
    ess_min: float = 200.0
    first_round: int = 50
    max_trajectories: int = 3200
    max_seconds: float | None = None
    burn_in: float | None = None
    sampling_time: float | None = None
    measure_every: float | None = None
    n_tune: int = 40
    reduce: bool = True
    n_components: int = 8
    seed: int = 0
    device: str | None = None
    dtype: torch.dtype = torch.float64
    progress: bool = False

    def check(self) -> None:
        """One ValueError naming the first bad setting."""
        def positive_int(name, v, lo=1):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")

        def positive(name, v, allow_none=False, lo=0.0):
            if v is None and allow_none:
                return
            if v is None or not np.isfinite(v) or v <= lo:
                raise ValueError(f"{name}: must be finite and > {lo:g}{' (or None)' if allow_none else ''}, got {v!r}")

        positive_int("replicas", self.replicas)
        if self.method not in ("hmc", "langevin"):
            raise ValueError(f"method: must be 'hmc' or 'langevin', got {self.method!r}")
        if self.tempering and self.method != "hmc":
            raise ValueError("tempering: replica exchange needs method='hmc' (the collapsed energy)")
        positive("max_temperature_ratio", self.max_temperature_ratio, lo=1.0)
        if self.swap_target is not None and not (0.0 < self.swap_target < 1.0):
            raise ValueError(f"swap_target: must be in (0, 1) or None, got {self.swap_target!r}")
        positive("trajectory_length", self.trajectory_length)
        positive("step_size", self.step_size, allow_none=True)
        if self.force_dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"force_dtype: must be torch.float32, torch.float64 or None, got {self.force_dtype!r}")
        if self.integrator not in ("split", "leapfrog"):
            raise ValueError(f"integrator: must be 'split' or 'leapfrog', got {self.integrator!r}")
        positive("rhat_max", self.rhat_max, lo=1.0)
        positive("ess_min", self.ess_min)
        positive_int("first_round", self.first_round, 2)
        positive_int("max_trajectories", self.max_trajectories, 4)
        positive("max_seconds", self.max_seconds, allow_none=True)
        positive_int("n_tune", self.n_tune, 0)
        if (self.burn_in is None) != (self.sampling_time is None):
            raise ValueError("burn_in/sampling_time: give both (fixed length) or neither (adaptive)")
        if self.burn_in is not None:
            if not np.isfinite(self.burn_in) or self.burn_in < 0:
                raise ValueError(f"burn_in: must be >= 0 (time units), got {self.burn_in!r}")
            positive("sampling_time", self.sampling_time)
        positive("measure_every", self.measure_every, allow_none=True)
        positive_int("n_components", self.n_components)


@dataclass(frozen=True)
class SamplerDiagnostics:
    """Convergence of the chains at one temperature (diagnostics computed by ``arviz`` on ``traces``).

    ``rhat``: rank-normalised split-R̂; ``ess_bulk``/``ess_tail``: effective sample sizes (all chains
    together), each a dict over :data:`DIAGNOSTIC_OBSERVABLES`. ``traces[name]``: (chains, draws) the
    draws the estimate used. ``acceptance``: mean HMC acceptance over those draws (1 for Langevin);
    ``swap_acceptance``: mean acceptance of exchanges with the next-hotter ladder temperature (NaN
    without tempering or at the hottest); ``burn_in`` draws discarded per chain (tuning excluded),
    ``burn_in_time`` the same in time units; ``converged``: every R̂ < rhat_max and ESS ≥ ess_min.
    """

    temperature: float
    rhat: dict[str, float]
    ess_bulk: dict[str, float]
    ess_tail: dict[str, float]
    acceptance: float
    swap_acceptance: float
    step_size: float
    burn_in: int
    burn_in_time: float
    n_draws: int
    converged: bool
    traces: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def failing(self, rhat_max: float, ess_min: float) -> list[str]:
        """The observables that fail the criteria, e.g. ``['train_error: R̂=1.03']``."""
        out = []
        for k in self.rhat:
            if not (self.rhat[k] < rhat_max):
                out.append(f"{k}: R̂={self.rhat[k]:.3f}")
            if not (min(self.ess_bulk[k], self.ess_tail[k]) >= ess_min):
                out.append(f"{k}: ESS={min(self.ess_bulk[k], self.ess_tail[k]):.0f}")
        return out


@dataclass(frozen=True)
class PosteriorSample:
    """Posterior averages at one temperature (shapes: P train, Pt test, D outputs, C classes).

    Every measure is evaluated on each sample and averaged: mean over chains of each chain's average,
    standard error over the independent replica columns (jackknife for non-linear functions of
    averages such as the error of the mean predictor). Outputs are squeezed to (P,) / scalars for a
    single-output (±1) task.
    """

    temperature: float
    width: int
    activation: str
    method: str
    replicas: int
    n_measurements: int
    step_size: float  # mean over chains (HMC: tuned leapfrog step; Langevin: η)
    acceptance: float  # HMC mean acceptance rate during sampling (1.0 for Langevin)
    reduced_dim: int  # number of sampled first-layer coordinates per unit (N0 without reduction)
    wall_time_s: float  # the whole ladder's wall time
    train_mean: Estimate  # posterior mean predictor f̄ on training inputs, (P,) or (P, D)
    train_error: Estimate  # (1/P) Σ_μ |y − f̄|² (summed over outputs)
    train_variance: Estimate  # (1/P) Σ_μ Var f(x_μ) (summed over outputs)
    readout_second_moment: Estimate  # (1/(N1 D)) Σ_i ⟨|v_i|²⟩; λ1 × this ≈ Q* (docs/conventions.md §5)
    readout_moment_matrix: Estimate  # (D, D): (1/N1) Σ_i ⟨v_i v_iᵀ⟩
    hidden_gram: Estimate  # ⟨K_W⟩ on the training set, (P, P)
    centroid_distance: Estimate  # ⟨cᵀ K_W c⟩ (two classes; NaN otherwise)
    centroid_distance_matrix: Estimate  # (C, C) squared class-centroid distances
    class_radius: Estimate  # (C,) raw-feature class radius
    inter_distance: Estimate  # mean squared inter-class pair distance
    intra_distance: Estimate  # mean squared intra-class pair distance
    distance_ratio: Estimate  # ⟨inter/intra⟩ (ratio per sample, then averaged)
    unit_centroid_distance: Estimate  # unit-sphere centroid distance (arXiv 2303.05161), per sample then averaged
    unit_class_radius: Estimate  # (C,) unit-sphere class radius, per sample then averaged
    weight_moments: Estimate  # Ω = (1/N1) Σ_i h_i h_iᵀ, (P, P) (see module docstring)
    weight_moment_label: Estimate  # (D,) aᵀΩa / aᵀCa for a = each label column
    weight_moment_pcs: Estimate  # (k, k) Ω on the top-k principal directions, prior = identity
    diagnostics: SamplerDiagnostics | None = None
    test_mean: Estimate | None = None  # (Pt,) or (Pt, D)
    test_error: Estimate | None = None  # bias² + variance
    test_bias2: Estimate | None = None  # (1/Pt) Σ |y_t − f̄_t|²
    test_variance: Estimate | None = None  # (1/Pt) Σ Var f(x_t) (summed over outputs)
    test_prediction_variance: Estimate | None = None  # (Pt,) or (Pt, D): Var f(x_t) per point
    hidden_gram_test: Estimate | None = None  # ⟨K_W⟩ test×train block, (Pt, P)
    hidden_gram_test_diag: Estimate | None = None  # (Pt,)
    test_geometry: dict[str, Estimate] = field(default_factory=dict, repr=False)  # measures of the test×test block
    settings: dict = field(default_factory=dict, repr=False)

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics.converged) if self.diagnostics is not None else False


# ---------------------------------------------------------------------------------------------
# diagnostics (arviz)
# ---------------------------------------------------------------------------------------------
def chain_diagnostics(traces: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Rank-normalised split-R̂ and bulk/tail ESS of each (chains, draws) trace, computed by ``arviz``.

    A trace that is constant over all draws (nothing sampled, e.g. a frozen first layer) gets R̂ = 1
    and ESS = the number of draws (it is exact). Returns (rhat, ess_bulk, ess_tail) dicts.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
        import arviz as az
    rhat, bulk, tail = {}, {}, {}
    for name, tr in traces.items():
        a = np.asarray(tr, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"traces[{name!r}]: expected shape (chains, draws), got {a.shape}")
        if np.ptp(a) <= 1e-14 * max(1.0, float(np.abs(a).max())):
            rhat[name], bulk[name], tail[name] = 1.0, float(a.size), float(a.size)
            continue
        rhat[name] = float(az.rhat(a, method="rank"))
        bulk[name] = float(az.ess(a, method="bulk"))
        tail[name] = float(az.ess(a, method="tail"))
    return rhat, bulk, tail


# ---------------------------------------------------------------------------------------------
# ladder
# ---------------------------------------------------------------------------------------------
def ladder_temperatures(temperatures: Sequence[float], max_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ladder (ascending) holding every requested temperature plus geometric helpers so that
    neighbours differ by at most ``max_ratio``; returns (ladder, index of each requested temperature)."""
    req = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    uniq = np.unique(req)
    ladder = [uniq[0]]
    for hi in uniq[1:]:
        lo = ladder[-1]
        n = int(math.ceil(math.log(hi / lo) / math.log(max_ratio) - 1e-9))
        ladder.extend(lo * (hi / lo) ** (np.arange(1, n + 1) / n))
        ladder[-1] = hi
    ladder = np.asarray(ladder)
    return ladder, np.searchsorted(ladder, req)


_PROBE_RATIO = 3.0  # coarse ladder on which the energy spread is measured before the ladder is placed


def ladder_from_energy_spread(temperatures: Sequence[float], probe: Sequence[float], spread: Sequence[float],
                              target: float, max_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Ladder (ascending) of the requested temperatures plus helpers spaced for exchange acceptance ≈ ``target``.

    With E_T(W) = ∂U_T(W)/∂T (= (D/2) tr A_W⁻¹ − ½|A_W⁻¹Y|²) and U_T' ≈ U_T + (T' − T) E_T, the log
    acceptance of an exchange between T and T + ΔT is ≈ −ΔT (E(W') − E(W)) ~ N(−m, 2m),
    m = (ΔT σ_E)², whose mean acceptance is erfc(√m / 2). So neighbours are placed at equal steps
    c = 2 erfc⁻¹(target) of ∫ σ_E(T) dT, σ_E measured at the ``probe`` temperatures (``spread``) and
    interpolated log-linearly (T σ_E against log T); at least enough helpers that no ratio exceeds
    ``max_ratio``. Returns (ladder, index of each requested temperature).
    """
    from scipy.special import erfcinv

    req = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    uniq = np.unique(req)
    c = 2.0 * float(erfcinv(target))
    lt = np.log(np.asarray(probe, dtype=np.float64))
    ls = np.log(np.maximum(np.asarray(probe, dtype=np.float64) * np.asarray(spread, dtype=np.float64), 1e-300))
    ladder = [uniq[0]]
    for hi in uniq[1:]:
        lo = ladder[-1]
        g = np.linspace(math.log(lo), math.log(hi), 513)  # log T grid
        # steps per unit log T: exchange distance T σ_E / c, or the ratio cap, whichever is denser
        density = np.maximum(np.exp(np.interp(g, lt, ls)) / c, 1.0 / math.log(max_ratio))
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(g))])
        n = max(1, int(math.ceil(cum[-1] - 1e-9)))
        ladder.extend(np.exp(np.interp(cum[-1] * np.arange(1, n) / n, cum, g)))
        ladder.append(hi)
    ladder = np.asarray(ladder)
    return ladder, np.searchsorted(ladder, req)


def _probe_energy_spread(prob: "_Problem", W, s: "SamplerSettings", R: int, gen, randn):
    """Tune HMC on the probe ladder (prob's temperatures) and return (mover, σ_E per probe temperature:
    the within-chain standard deviation of ∂U_T/∂T over the last half of the tuning trajectories, root
    mean square over chains — the spread between chains is mostly burn-in drift, not equilibrium spread)."""
    nP = len(prob.T) // R
    mover = _HMCMover(prob, W, s, nP, R, False, gen, randn)
    E = []
    for i in range(s.n_tune):
        mover._trajectory(10, True)
        if i >= s.n_tune // 2:
            E.append(prob.temperature_derivative(mover.W).view(nP, R))
    spread = torch.stack(E, -1).var(-1).mean(1).sqrt().cpu().numpy()
    return mover, spread


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_data(x_train, y_train, x_test, y_test, width, temperatures, activation, prior_w, prior_v):
    # any finite targets (regression allowed); the class-manifold measures use their sign / argmax
    x, y, xt, yt, _ = inputs.data_set(x_train, y_train, x_test, y_test, labels="real")
    if xt is not None and yt.shape[1:] != y.shape[1:]:
        raise ValueError(f"y_test: expected the layout of y_train with {xt.shape[0]} rows, got {yt.shape}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width: must be an integer >= 1, got {width!r}")
    T = inputs.temperatures(temperatures, "temperature")
    if activation not in SAMPLER_ACTIVATIONS:
        raise ValueError(f"activation: must be one of {list(SAMPLER_ACTIVATIONS)}, got {activation!r}")
    inputs.number("prior_w", prior_w)
    inputs.number("prior_v", prior_v)
    return x, y, xt, yt, T


# ---------------------------------------------------------------------------------------------
# the target
# ---------------------------------------------------------------------------------------------
def scaled_inputs(x, x_test, reduce: bool, scale: float, kw: dict):
    """The first layer's inputs divided by ``scale``, on the span of the training inputs when ``reduce``
    (``geometry.span_reduction``): (X (P, r), X_test (P_test, r) or None, the test inputs' part outside
    the span or None). Shared by every collapsed target (one-hidden-layer, deep FC, CNN)."""
    if reduce:
        red = geometry.span_reduction(x, x_test)
        z, zt, rem = red.x_train, red.x_test, red.test_remainder
    else:
        z, zt, rem = x, x_test, None
    X = torch.as_tensor(z / scale, **kw)
    Xt = None if zt is None else torch.as_tensor(zt / scale, **kw)
    Xt_perp = torch.as_tensor(rem / scale, **kw) if rem is not None and rem.shape[1] else None
    return X, Xt, Xt_perp


class _Problem:
    """Tensors shared by the moves: (reduced) inputs, targets, priors; one temperature per chain."""

    def __init__(self, x, y, x_test, width, chain_temperatures, activation, prior_w, prior_v, reduce, device, dtype):
        P, n0 = x.shape
        self.P, self.n0, self.N1 = P, n0, int(width)
        self.lam0, self.lam1 = float(prior_w), float(prior_v)
        self.D = 1 if y.ndim == 1 else y.shape[1]
        self.act = geometry.activation_and_derivative(activation)
        kw = dict(device=device, dtype=dtype)
        self.T = torch.as_tensor(chain_temperatures, **kw)  # (B,)
        self.X, self.Xt, self.Xt_perp = scaled_inputs(x, x_test, reduce, math.sqrt(n0), kw)  # h = X w, (P, r)
        self.r = self.X.shape[1]
        self.Y = torch.as_tensor(y.reshape(P, self.D), **kw)

    def with_temperatures(self, chain_temperatures: torch.Tensor) -> "_Problem":
        other = object.__new__(_Problem)
        other.__dict__.update(self.__dict__)
        other.T = chain_temperatures
        return other

    def cast(self, dtype: torch.dtype) -> "_Problem":
        """The same problem with every tensor in ``dtype`` (for cheaper HMC forces)."""
        other = object.__new__(_Problem)
        other.__dict__.update({k: v.to(dtype) if torch.is_tensor(v) else v for k, v in self.__dict__.items()})
        return other

    def force(self, W: torch.Tensor, low: "_Problem | None") -> torch.Tensor:
        """∇U_T(W), computed in ``low``'s precision (None: exactly); where that is not finite, in W's.

        A deterministic function of W either way — all the HMC kicks need for reversibility."""
        if low is None:
            return self.collapsed(W)[1]
        g = low.collapsed(W.to(low.X.dtype))[1].to(W.dtype)
        bad = ~torch.isfinite(g.sum((1, 2)))  # a NaN or inf anywhere makes the sum non-finite
        if bool(bad.any()):
            g[bad] = self.with_temperatures(self.T[bad]).collapsed(W[bad])[1]
        return g

    # ---- collapsed (readout integrated out) energy of W: value and gradient ----------------
    def collapsed(self, W: torch.Tensor, need_grad: bool = True):
        """U_T(W) = (λ0/2)|W|² + (D/2) log det A_W + ½ tr YᵀA_W⁻¹Y and ∇U, batched over chains (B, r, N1)."""
        N1, lam1, D, P = self.N1, self.lam1, self.D, self.P
        T = self.T
        h = self.X @ W  # (B, P, N1)
        phi, dphi = self.act(h)
        if N1 <= P:  # push-through: work with the N1×N1 matrix M = T N1 λ1 I + ΦᵀΦ, det A = det M · T^(P−N1)/(N1 λ1)^N1
            M = phi.transpose(1, 2) @ phi
            M.diagonal(dim1=1, dim2=2).add_((T * N1 * lam1)[:, None])
            L, info = torch.linalg.cholesky_ex(M)
            S = torch.cholesky_solve(phi.transpose(1, 2) @ self.Y, L)  # M⁻¹ΦᵀY
            Rv = (self.Y - phi @ S) / T[:, None, None]  # A⁻¹Y
            logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1) + (P - N1) * torch.log(T) \
                - N1 * math.log(N1 * lam1)
            if need_grad:
                phiMinv = torch.cholesky_solve(phi.transpose(1, 2), L).transpose(1, 2)  # Φ M⁻¹
        else:
            A = phi @ phi.transpose(1, 2) / (N1 * lam1)
            A.diagonal(dim1=1, dim2=2).add_(T[:, None])
            L, info = torch.linalg.cholesky_ex(A)
            Rv = torch.cholesky_solve(self.Y, L)
            logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
            if need_grad:
                phiMinv = torch.cholesky_solve(phi, L) / (N1 * lam1)
        U = 0.5 * self.lam0 * (W * W).sum((1, 2)) + 0.5 * D * logdet + 0.5 * (self.Y * Rv).sum((1, 2))
        U = torch.where(info == 0, U, torch.full_like(U, float("inf")))
        if not need_grad:
            return U, None
        g_phi = D * phiMinv - Rv @ (Rv.transpose(1, 2) @ phi) / (N1 * lam1)
        grad = self.X.T @ (g_phi * dphi) + self.lam0 * W
        return U, grad

    def temperature_derivative(self, W: torch.Tensor) -> torch.Tensor:
        """E_T(W) = ∂U_T(W)/∂T = (D/2) tr A_W⁻¹ − ½|A_W⁻¹Y|², by a central difference of the exact energy
        (relative step 10⁻⁴; it only places ladder temperatures, never enters an acceptance)."""
        d = 1e-4 * self.T
        up, _ = self.with_temperatures(self.T + d).collapsed(W, need_grad=False)
        dn, _ = self.with_temperatures(self.T - d).collapsed(W, need_grad=False)
        return (up - dn) / (2 * d)

    # ---- joint (W, v) potential gradient for plain Langevin ----------------------------------
    def joint_grad(self, W: torch.Tensor, v: torch.Tensor):
        h = self.X @ W
        phi, dphi = self.act(h)
        sq = math.sqrt(self.N1)
        T = self.T[:, None, None]
        resid = phi @ v / sq - self.Y  # (B, P, D)
        g_v = phi.transpose(1, 2) @ resid / (T * sq) + self.lam1 * v
        g_phi = resid @ v.transpose(1, 2) / (T * sq)
        g_W = self.X.T @ (g_phi * dphi) + self.lam0 * W
        return g_W, g_v


class _Accumulator:
    """Per-chain running sums of every observable (time averages per chain) and per-draw scalar traces."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.traces: dict[str, list[np.ndarray]] = {}
        self.accept: list[torch.Tensor] = []
        self.n = 0

    def add(self, values: dict[str, torch.Tensor], scalars: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = v.to(torch.float64)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        for k, v in scalars.items():
            self.traces.setdefault(k, []).append(v.detach().to(torch.float64).cpu().numpy())
        self.n += 1

    def means(self) -> dict[str, np.ndarray]:
        return {k: (v / self.n).cpu().numpy() for k, v in self.sums.items()}

    def trace_arrays(self) -> dict[str, np.ndarray]:
        """(B, draws) per scalar observable."""
        return {k: np.stack(v, axis=1) for k, v in self.traces.items()}


# ---------------------------------------------------------------------------------------------
# one measurement of every observable on the current states
# ---------------------------------------------------------------------------------------------
class _Measure:
    def __init__(self, prob: _Problem, labels, test_labels, randn):
        self.prob, self.randn = prob, randn
        self.labels = labels
        self.test_labels = test_labels  # None unless the test set has ≥ 2 classes
        self.n_classes = len(np.unique(labels))

    def __call__(self, W: torch.Tensor, v: torch.Tensor | None) -> tuple[dict, dict]:
        prob, N1, D = self.prob, self.prob.N1, self.prob.D
        B = W.shape[0]
        kw = dict(device=W.device, dtype=W.dtype)
        h = prob.X @ W
        phi, _ = prob.act(h)
        KW = phi @ phi.transpose(1, 2) / N1
        out: dict[str, torch.Tensor] = dict(KW=KW, Omega=h @ h.transpose(1, 2) / N1)
        phi_t = None
        if prob.Xt is not None:
            ht = prob.Xt @ W
            if prob.Xt_perp is not None:  # orthogonal remainder: fresh prior draw of those weight components
                ht = ht + prob.Xt_perp @ (self.randn(B, prob.Xt_perp.shape[1], N1) / math.sqrt(prob.lam0))
            phi_t, _ = prob.act(ht)
            out["KWt"] = phi_t @ phi.transpose(1, 2) / N1
            out["KWt_diag"] = (phi_t * phi_t).sum(-1) / N1
        if v is not None:  # raw samples (plain Langevin)
            sq = math.sqrt(N1)
            f = phi @ v / sq
            out.update(f=f, f2=f * f, vv=v.transpose(1, 2) @ v / N1)
            if phi_t is not None:
                ft = phi_t @ v / sq
                out.update(ft=ft, ft2=ft * ft)
        else:  # Rao–Blackwell through v | W ~ N(√N1 M⁻¹ΦᵀY, T N1 M⁻¹)
            M = phi.transpose(1, 2) @ phi
            M.diagonal(dim1=1, dim2=2).add_((prob.T * N1 * prob.lam1)[:, None])
            L = torch.linalg.cholesky(M)
            S = torch.cholesky_solve(phi.transpose(1, 2) @ prob.Y, L)  # M⁻¹ΦᵀY = v̄/√N1
            Minv_diag = torch.diagonal(torch.cholesky_inverse(L), dim1=1, dim2=2)
            vbar = S * math.sqrt(N1)
            vv = vbar.transpose(1, 2) @ vbar / N1
            vv = vv + torch.eye(D, **kw) * (prob.T * Minv_diag.sum(1))[:, None, None]
            f = phi @ S
            var_train = prob.T[:, None] * (phi * torch.cholesky_solve(phi.transpose(1, 2), L).transpose(1, 2)).sum(-1)
            out.update(f=f, f2=f * f + var_train[..., None], vv=vv)
            if phi_t is not None:
                ft = phi_t @ S
                var = prob.T[:, None] * (phi_t * torch.cholesky_solve(phi_t.transpose(1, 2), L).transpose(1, 2)).sum(-1)
                out.update(ft=ft, ft2=ft * ft + var[..., None])
        geo = geometry.class_geometry(KW, self.labels)  # every measure per sample, the shared definitions
        for k in ("centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance", "distance_ratio",
                  "unit_centroid_distance", "unit_class_radius"):
            out[k] = torch.as_tensor(getattr(geo, k))
        if phi_t is not None and self.test_labels is not None:
            gt = geometry.class_geometry(phi_t @ phi_t.transpose(1, 2) / N1, self.test_labels)
            for k in ("centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance",
                      "distance_ratio", "unit_centroid_distance", "unit_class_radius"):
                out["test_" + k] = torch.as_tensor(getattr(gt, k))
        cdm = out["centroid_distance_matrix"]
        C = self.n_classes
        cd = cdm[:, 0, 1] if C == 2 else cdm.sum((1, 2)) / (C * (C - 1))
        scalars = dict(
            readout_second_moment=torch.diagonal(out["vv"], dim1=1, dim2=2).sum(1) / D,
            train_error=((prob.Y - out["f"]) ** 2).sum((1, 2)) / prob.P,
            centroid_distance=cd,
            unit_class_radius=out["unit_class_radius"].mean(1),
        )
        return out, scalars


# ---------------------------------------------------------------------------------------------
# moves
# ---------------------------------------------------------------------------------------------
def _hmc_trajectory(prob: _Problem, W, U, grad, eps, n_steps, randn, gen, integrator: str = "split",
                    low: _Problem | None = None):
    """One Metropolis-adjusted trajectory per chain; chain b takes ``n_steps[b]`` steps of size ``eps[b]``.

    Coordinates Z = √λ0 W with unit mass (kinetic energy ½|p|², i.e. mass λ0 for W), so the prior part
    of U is ½|Z|² whatever λ0. ``integrator="split"``: U = ½|Z|² + U_lik is split (Strang) into the
    prior flow, integrated exactly (a rotation by angle ε in each (Z, p) plane), and kicks by −∇U_lik:
    kick ε/2 · (rotate ε · kick ε)ⁿ⁻¹ · rotate ε · kick ε/2. The prior-dominated directions — almost all
    of the r·N1 coordinates — then add no integration error, so the step is set by the likelihood alone
    (dimension-robust HMC for Gaussian-prior targets, Beskos et al. 2011; "split HMC", Shahbaba et al.
    2014). ``"leapfrog"``: the plain velocity-Verlet leapfrog on the whole U. Both maps are volume
    preserving and reversible, so the Metropolis test with H = U + ½|p|² leaves p_T(W) exact.
    Chains that have taken all their steps drop out of the batch (per-temperature trajectory costs differ).
    ``low``: the problem in lower precision: then every kick uses :meth:`_Problem.force` (float32 forces;
    any deterministic force keeps the kick-rotate-kick map reversible and volume preserving), positions
    and momenta stay in W's dtype and U at the end point is evaluated exactly for the Metropolis test.
    ``grad`` must be that same force at W. Returns new (W, U, grad) and the acceptance probabilities.
    """
    sq = math.sqrt(prob.lam0)
    Z = W * sq
    p = randn(*W.shape)
    H0 = U + 0.5 * (p * p).sum((1, 2)).to(U.dtype)
    split = integrator == "split"

    def force(Zb, gWb):  # ∇_Z of U_lik (split) or of U (leapfrog), from ∇_W U
        return gWb / sq - Zb if split else gWb / sq

    e3 = eps.to(W.dtype)[:, None, None]
    cos, sin = torch.cos(e3), torch.sin(e3)
    Zn, Un, gn = Z.clone(), U.clone(), grad.clone()
    pn = p - 0.5 * e3 * force(Z, grad)
    n_max = int(n_steps.max())
    for k in range(n_max):
        every = bool((n_steps > k).all())
        act = slice(None) if every else (n_steps > k).nonzero().squeeze(1)
        Za, pa, ea = Zn[act], pn[act], e3[act]
        if split:
            Za, pa = Za * cos[act] + pa * sin[act], pa * cos[act] - Za * sin[act]
        else:
            Za = Za + ea * pa
        sub = prob if every else prob.with_temperatures(prob.T[act])
        if low is None:
            Ua, ga = sub.collapsed(Za / sq)
            if every:
                Un = Ua
            else:
                Un[act] = Ua
        else:
            ga = sub.force(Za / sq, low if every else low.with_temperatures(low.T[act]))
        last = (n_steps[act] == k + 1)[:, None, None]
        pa = pa - torch.where(last, 0.5 * ea, ea) * force(Za, ga)
        if every:  # no copies back into the batch
            Zn, pn, gn = Za, pa, ga
        else:
            Zn[act], pn[act], gn[act] = Za, pa, ga
    if low is not None:  # the exact energy at the end point, for the Metropolis test
        Un, _ = prob.collapsed(Zn / sq, need_grad=False)
    H1 = Un + 0.5 * (pn * pn).sum((1, 2)).to(Un.dtype)
    log_a = (H0 - H1).to(torch.float64)
    log_a = torch.where(torch.isfinite(log_a), log_a, torch.full_like(log_a, -float("inf")))
    a = torch.exp(log_a.clamp(max=0.0))
    u = torch.rand(a.shape, generator=gen, device=a.device, dtype=torch.float64)
    take = u < a
    tw = take[:, None, None]
    return torch.where(tw, Zn / sq, W), torch.where(take, Un, U), torch.where(tw, gn, grad), a


def _swap(prob: _Problem, W, U, nT: int, R: int, parity: int, gen):
    """Replica exchange between ladder slots (k, k+1), k ≡ parity (mod 2), within each replica column.

    Chains are laid out temperature-major: chain b = k·R + r. Acceptance
    min(1, exp(U_k(W_k) + U_{k+1}(W_{k+1}) − U_k(W_{k+1}) − U_{k+1}(W_k))) with the exact collapsed
    energies. Returns (W, accepted (nT − 1, R) NaN where no pair was proposed)."""
    perm = torch.arange(nT * R, device=W.device).view(nT, R)
    lows = torch.arange(parity, nT - 1, 2, device=W.device)
    if len(lows) == 0:
        return W, None
    perm[lows], perm[lows + 1] = perm[lows + 1].clone(), perm[lows].clone()
    perm = perm.reshape(-1)
    U_cross, _ = prob.collapsed(W[perm], need_grad=False)  # U_{T_b}(W_partner(b))
    delta = (U + U[perm] - U_cross - U_cross[perm]).view(nT, R)  # per pair, both members hold the same value
    log_a = torch.where(torch.isfinite(delta), delta, torch.full_like(delta, -float("inf"))).to(torch.float64)
    a = torch.exp(log_a[lows].clamp(max=0.0))
    take_pair = torch.rand(a.shape, generator=gen, device=W.device, dtype=torch.float64) < a  # (len(lows), R)
    take = torch.zeros(nT, R, dtype=torch.bool, device=W.device)
    take[lows], take[lows + 1] = take_pair, take_pair
    take = take.reshape(-1)
    W = torch.where(take[:, None, None], W[perm], W)
    record = torch.full((nT - 1, R), float("nan"), dtype=torch.float64, device=W.device)
    record[lows] = a
    return W, record


def _prior_kernel_top_eigenvalue(prob: _Problem, gen, kw) -> float:
    """κ_max of K = E_prior[σ(h)σ(h)ᵀ], estimated from 4096 prior units (for the default Langevin step)."""
    n = 4096
    w = torch.randn(prob.r, n, generator=gen, **kw) / math.sqrt(prob.lam0)
    phi, _ = prob.act(prob.X @ w)
    K = (phi @ phi.T / n).to(torch.float64)
    return float(torch.linalg.eigvalsh(K)[-1])


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------
def sample_temperatures(
    x_train,
    y_train,
    temperatures,
    *,
    width: int,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    settings: SamplerSettings | None = None,
    first_layer=None,
) -> list[PosteriorSample]:
    """Sample the exact posterior at every temperature of ``temperatures`` in one batched run.

    Args:
        x_train, y_train: (P, N0) inputs, targets ±1 (P,) or one-hot (P, D).
        temperatures: requested T > 0 (any order; one result per entry, in that order).
        width: N1. activation: erf, relu, tanh or identity. prior_w, prior_v: λ0, λ1.
        x_test, y_test: optional held-out set (test predictor, test rows of ⟨K_W⟩, test geometry).
        settings: :class:`SamplerSettings` (default: adaptive length, 32 chains per temperature, HMC).
        first_layer: optional fixed first-layer weights (N1, N0) shared by all chains: then only v is
            sampled (Bayesian linear regression on fixed features, integrated exactly).

    Returns one :class:`PosteriorSample` per requested temperature, each with its
    :class:`SamplerDiagnostics`. Warns (:class:`SamplingConvergenceWarning`) naming every requested
    temperature whose diagnostics failed.
    """
    s = settings if settings is not None else SamplerSettings()
    s.check()
    x, y, xt, yt, T_req = _check_data(x_train, y_train, x_test, y_test, width, temperatures, activation,
                                      prior_w, prior_v)
    frozen = first_layer is not None
    reduce = s.reduce
    if frozen:
        first_layer = np.asarray(first_layer, dtype=np.float64)
        if first_layer.shape != (int(width), x.shape[1]) or not np.all(np.isfinite(first_layer)):
            raise ValueError(f"first_layer: expected finite weights of shape ({width}, {x.shape[1]}), "
                             f"got {first_layer.shape}")
        reduce = False
    adaptive = (s.tempering and s.swap_target is not None and not frozen and s.n_tune >= 4
                and len(np.unique(T_req)) > 1)
    if adaptive:  # first a coarse probe ladder, on which the energy spread is measured
        ladder, where = ladder_temperatures(T_req, _PROBE_RATIO)
    elif s.tempering:
        ladder, where = ladder_temperatures(T_req, s.max_temperature_ratio)
    else:
        ladder, where = np.unique(T_req), np.searchsorted(np.unique(T_req), T_req)
    t0 = time.perf_counter()
    device = torch.device(s.device) if s.device is not None else torch.device("cpu")
    dtype, kw = s.dtype, dict(device=device, dtype=s.dtype)
    nT, R = len(ladder), int(s.replicas)
    B = nT * R
    chain_T = torch.as_tensor(np.repeat(ladder, R), **kw)  # temperature-major layout: b = k·R + r
    prob = _Problem(x, y, xt, width, chain_T, activation, prior_w, prior_v, reduce, device, dtype)
    gen = torch.Generator(device=device).manual_seed(int(s.seed))
    N1 = prob.N1

    def randn(*shape):
        return torch.randn(*shape, generator=gen, **kw)

    labels = inputs.class_labels(y)
    test_labels = None
    if yt is not None and len(np.unique(inputs.class_labels(yt))) >= 2:
        test_labels = inputs.class_labels(yt)
    measure = _Measure(prob, labels, test_labels, randn)

    W = randn(B, prob.r, N1) / math.sqrt(prob.lam0)
    if frozen:
        W = torch.as_tensor(first_layer.T, **kw).expand(B, -1, -1).contiguous()

    if adaptive:  # place the ladder from the probe's energy spread; each slot starts from the nearest probe slot
        probe_mover, spread = _probe_energy_spread(prob, W, s, R, gen, randn)
        probe = ladder
        ladder, where = ladder_from_energy_spread(T_req, probe, spread, s.swap_target, s.max_temperature_ratio)
        nearest = np.abs(np.log(ladder)[:, None] - np.log(probe)[None, :]).argmin(1)
        src = torch.as_tensor((nearest[:, None] * R + np.arange(R)[None, :]).reshape(-1), device=device)
        nT, B = len(ladder), len(ladder) * R
        prob = prob.with_temperatures(torch.as_tensor(np.repeat(ladder, R), **kw))
        measure = _Measure(prob, labels, test_labels, randn)
        W = probe_mover.W[src]
    mover = (_LangevinMover if s.method == "langevin" else _HMCMover)(prob, W, s, nT, R, frozen, gen, randn)
    if adaptive:
        mover.eps = probe_mover.eps[src]
    last, diag, stop_reason = _run_rounds(mover, measure, s, ladder, R, frozen, t0)
    warn_unconverged(diag, ladder, where, s, stop_reason)
    wall = time.perf_counter() - t0
    return [_summarise(last, int(k), R, diag[int(k)], x, y, yt, prob, s, frozen, reduce, activation, wall,
                       prior_w, prior_v)
            for k in where]


# ---------------------------------------------------------------------------------------------
# moves: one call of ``move`` advances every chain by one HMC trajectory (+ exchanges) or by
# ``move_time`` of Langevin dynamics; ``tune`` runs before the rounds
# ---------------------------------------------------------------------------------------------
class _HMCMover:
    """Collapsed HMC on W for every chain, with optional replica exchange after each trajectory."""

    def __init__(self, prob: _Problem, W, s: SamplerSettings, nT: int, R: int, frozen: bool, gen, randn):
        self.prob, self.s, self.nT, self.R, self.frozen, self.gen, self.randn = prob, s, nT, R, frozen, gen, randn
        B, dev = W.shape[0], W.device
        self.eps = torch.full((B,), float(s.step_size) if s.step_size is not None else 0.2, device=dev,
                              dtype=torch.float64)
        self.W = W
        self.low = prob.cast(s.force_dtype) if s.force_dtype not in (None, W.dtype) else None
        self._energy_and_force()
        self.parity = 0
        self.move_time = float(s.trajectory_length)
        self.uses_tuning = True

    def _trajectory(self, max_steps: int | None, adapt: bool) -> torch.Tensor:
        L, eps, dev = self.move_time, self.eps, self.eps.device
        jitter = 0.8 + 0.4 * torch.rand((), generator=self.gen, device=dev, dtype=torch.float64)
        # every chain integrates for the same time L·jitter (jitter shared, drawn independently of the
        # state): chain b takes n_b = ⌈L·jitter/ε_b⌉ steps of L·jitter/n_b (exact: a fixed map per chain)
        n_steps = torch.clamp(torch.ceil(L * jitter / eps), min=1).long()
        e = L * jitter / n_steps
        if max_steps is not None:  # tuning: at most max_steps steps of the current size
            n_steps = n_steps.clamp(max=max_steps)
            e = torch.minimum(e, eps * jitter)
        if self.frozen:  # nothing to sample: v | W is integrated exactly
            return torch.ones(eps.shape, dtype=torch.float64, device=dev)
        self.W, self.U, self.grad, a = _hmc_trajectory(self.prob, self.W, self.U, self.grad, e, n_steps,
                                                       self.randn, self.gen, self.s.integrator, self.low)
        if adapt:  # towards acceptance 0.8, pooled over the chains of one temperature (less noisy)
            a_T = a.view(self.nT, self.R).mean(1, keepdim=True).expand(self.nT, self.R).reshape(-1)
            self.eps = (eps * torch.exp(0.6 * (a_T - 0.8)).clamp(0.5, 1.5)).clamp(max=math.pi / 2)
        return a

    def tune(self) -> None:
        for _ in range(self.s.n_tune):  # short trajectories (≤ 10 steps) to find the step size
            self._trajectory(10, True)

    def move(self, adapt: bool):
        a = self._trajectory(None, adapt)
        record = None
        if self.s.tempering and self.nT > 1 and not self.frozen:
            self.W, record = _swap(self.prob, self.W, self.U, self.nT, self.R, self.parity, self.gen)
            self.parity ^= 1
            self._energy_and_force()
        return a, record

    def _energy_and_force(self) -> None:
        """Exact U at the current states and the force the kicks use there (low precision if set)."""
        if self.low is None:
            self.U, self.grad = self.prob.collapsed(self.W)
        else:
            self.U, _ = self.prob.collapsed(self.W, need_grad=False)
            self.grad = self.prob.force(self.W, self.low)

    def step_sizes(self) -> torch.Tensor:
        return self.eps

    def state(self):
        return self.W, None


class _LangevinMover:
    """Plain unadjusted Langevin on (W, v) (validation method; per-chain η ∝ T)."""

    def __init__(self, prob: _Problem, W, s: SamplerSettings, nT: int, R: int, frozen: bool, gen, randn):
        self.prob, self.frozen, self.randn = prob, frozen, randn
        B = W.shape[0]
        kw = dict(device=W.device, dtype=W.dtype)
        self.W, self.v = W, randn(B, prob.N1, prob.D) / math.sqrt(prob.lam1)
        cap = 0.05 / max(prob.lam0, prob.lam1)
        if s.step_size is None:
            kappa = _prior_kernel_top_eigenvalue(prob, gen, kw)
            self.eta = torch.clamp(0.05 * prob.T / kappa, max=cap)
        else:
            self.eta = torch.full((B,), min(float(s.step_size), cap), **kw)
        every = s.measure_every if s.measure_every is not None else 0.05
        self.k_every = max(1, int(round(every / float(self.eta.max()))))
        self.move_time = self.k_every * float(self.eta.max())
        self.uses_tuning = False

    def tune(self) -> None:
        pass

    def move(self, adapt: bool):
        eta, noise = self.eta[:, None, None], torch.sqrt(2 * self.eta)[:, None, None]
        W, v = self.W, self.v
        for _ in range(self.k_every):
            gW, gv = self.prob.joint_grad(W, v)
            if not self.frozen:
                W = W - eta * gW + noise * self.randn(*W.shape)
            v = v - eta * gv + noise * self.randn(*v.shape)
        if not torch.isfinite(W).all():
            raise FloatingPointError(f"Langevin diverged: reduce step_size (was {float(self.eta.max()):.3g})")
        self.W, self.v = W, v
        return torch.ones(W.shape[0], dtype=torch.float64, device=W.device), None

    def step_sizes(self) -> torch.Tensor:
        return self.eta.to(torch.float64)

    def state(self):
        return self.W, self.v


def _round_lengths(s: SamplerSettings, move_time: float):
    """(moves, measured) per round: fixed = burn-in then sampling; adaptive = n, n, 2n, 4n, … (last measured)."""
    if s.burn_in is not None:
        yield int(math.ceil(s.burn_in / move_time)), False
        yield max(2, int(math.ceil(s.sampling_time / move_time))), True
        return
    first = min(int(s.first_round), max(2, (int(s.max_trajectories) - s.n_tune) // 2))
    yield first, False
    k = 0
    while True:
        yield first * 2 ** k, True
        k += 1


def _run_rounds(mover, measure: _Measure, s: SamplerSettings, ladder, R: int, frozen: bool, t0: float):
    """Tune, then run rounds until every temperature's diagnostics pass (adaptive) or the budget / the
    fixed length ends. Returns (accumulator of the last measured round, diagnostics, why it stopped)."""
    fixed = s.burn_in is not None
    bar = _bar(s.max_trajectories, s.progress, f"{s.method} ladder of {len(ladder)}")
    mover.tune()
    done = s.n_tune if mover.uses_tuning else 0
    history: list[int] = []
    last = diag = None
    stop_reason = "fixed length" if fixed else "converged"
    for index, (n_moves, measured) in enumerate(_round_lengths(s, mover.move_time)):
        if not fixed and index >= 2:  # budget check before another round
            elapsed = time.perf_counter() - t0
            if done + n_moves > s.max_trajectories:
                stop_reason = f"trajectory budget ({s.max_trajectories} per chain)"
                break
            if s.max_seconds is not None and elapsed + elapsed / max(done, 1) * n_moves > s.max_seconds:
                stop_reason = f"time budget ({s.max_seconds:g} s)"
                break
        acc = _Accumulator()
        for i in range(n_moves):
            # adapt the step only in discarded draws: the first half of a fixed burn-in, the whole first round
            a, record = mover.move((not measured) and (not fixed or i < n_moves // 2))
            if measured:
                acc.add(*measure(*mover.state()))
                acc.accept.append(a)
                if record is not None:
                    acc.sums["_swap"] = acc.sums.get("_swap", torch.zeros_like(record)) + torch.nan_to_num(record)
                    acc.sums["_swap_n"] = acc.sums.get("_swap_n", torch.zeros_like(record)) + (~torch.isnan(record))
            if bar is not None:
                bar.update(1)
        done += n_moves
        history.append(n_moves)
        if measured:
            last = acc
            diag = _diagnose(acc, ladder, R, s, mover.step_sizes(), burn_in=sum(history[:-1]),
                             move_time=mover.move_time, frozen=frozen)
            if fixed or all(d.converged for d in diag):
                break
    if bar is not None:
        bar.close()
    return last, diag, stop_reason


def _diagnose(acc: _Accumulator, ladder, R, s: SamplerSettings, eps, *, burn_in, move_time, frozen):
    traces = acc.trace_arrays()
    accept = torch.stack(acc.accept, 1).mean(1).cpu().numpy()  # (B,)
    swap = None
    if "_swap" in acc.sums:
        swap = (acc.sums["_swap"] / acc.sums["_swap_n"].clamp_min(1)).cpu().numpy()  # (nT − 1, R)
    eps = eps.detach().cpu().numpy()
    out = []
    for k, T in enumerate(ladder):
        sl = slice(k * R, (k + 1) * R)
        # every scalar the measurement traces (the four DIAGNOSTIC_OBSERVABLES, plus per-layer ones of
        # equilibrium.sampling_arch)
        tr = {name: traces[name][sl] for name in traces}
        rhat, bulk, tail = chain_diagnostics(tr)
        ok = frozen or all(rhat[n] < s.rhat_max and min(bulk[n], tail[n]) >= s.ess_min for n in tr)
        out.append(SamplerDiagnostics(
            temperature=float(T), rhat=rhat, ess_bulk=bulk, ess_tail=tail, acceptance=float(accept[sl].mean()),
            swap_acceptance=float(swap[k].mean()) if swap is not None and k < len(ladder) - 1 else float("nan"),
            step_size=float(eps[sl].mean()), burn_in=int(burn_in), burn_in_time=float(burn_in * move_time),
            n_draws=acc.n, converged=bool(ok), traces=tr))
    return out


def predictor_estimates(m: dict[str, np.ndarray], y: np.ndarray, yt: np.ndarray | None) -> dict[str, Estimate]:
    """Predictor estimates from per-chain averages ``m["f"]``, ``m["f2"]`` (R, P, D) of f and f² on the
    training inputs (``m["ft"]``, ``m["ft2"]`` on the test inputs when ``yt`` is given): train_mean,
    train_error = (1/P)|y − f̄|², train_variance, and test_mean, test_bias2, test_variance,
    test_error = bias² + variance, test_prediction_variance. Mean ± s.e. over chains; jackknife over
    chains for the non-linear functions of averages. Outputs squeezed to (P,) for a 1-d ``y``.
    Shared with equilibrium.sampling_arch."""
    P = y.shape[0]
    D = 1 if y.ndim == 1 else y.shape[1]
    squeeze = (lambda a: a[..., 0]) if y.ndim == 1 else (lambda a: a)  # noqa: E731

    def est(a) -> Estimate:
        return Estimate(*geometry.mean_se(a))

    def jack(stat, *arrays) -> Estimate:
        return Estimate(*geometry.jackknife(stat, *arrays))

    Yn = y.reshape(P, D)
    res = dict(
        train_mean=est(squeeze(m["f"])),
        train_error=jack(lambda f: float(((Yn - f.mean(0)) ** 2).sum() / P), m["f"]),
        train_variance=jack(lambda f, f2: float((f2.mean(0) - f.mean(0) ** 2).sum() / P), m["f"], m["f2"]),
    )
    if yt is not None:
        Ytn = yt.reshape(len(yt), D)
        Pt = len(yt)
        bias2 = lambda ft, ft2: float(((Ytn - ft.mean(0)) ** 2).sum() / Pt)  # noqa: E731
        variance = lambda ft, ft2: float((ft2.mean(0) - ft.mean(0) ** 2).sum() / Pt)  # noqa: E731
        res.update(
            test_mean=est(squeeze(m["ft"])),
            test_prediction_variance=jack(lambda ft, ft2: squeeze(ft2.mean(0) - ft.mean(0) ** 2), m["ft"], m["ft2"]),
            test_bias2=jack(bias2, m["ft"], m["ft2"]),
            test_variance=jack(variance, m["ft"], m["ft2"]),
            test_error=jack(lambda a, b: bias2(a, b) + variance(a, b), m["ft"], m["ft2"]),
        )
    return res


def warn_unconverged(diag, ladder, where, s: SamplerSettings, stop_reason: str) -> None:
    """One SamplingConvergenceWarning naming every requested temperature whose diagnostics failed."""
    failed = [f"T={ladder[k]:g} ({'; '.join(diag[k].failing(s.rhat_max, s.ess_min))})"
              for k in sorted(set(np.asarray(where).tolist())) if not diag[k].converged]
    if failed:
        warnings.warn(f"sampled posterior not converged ({stop_reason}) at " + ", ".join(failed) +
                      "; do not use these values as results (increase max_trajectories / max_seconds)",
                      SamplingConvergenceWarning, stacklevel=3)


def _summarise(acc: _Accumulator, k: int, R: int, diag: SamplerDiagnostics, x, y, yt, prob: _Problem,
               s: SamplerSettings, frozen: bool, reduce: bool, activation: str, wall: float, prior_w, prior_v):
    """Estimates at ladder slot k from the per-chain time averages of the measured round."""
    sl = slice(k * R, (k + 1) * R)
    m = {name: v[sl] for name, v in acc.means().items() if not name.startswith("_")}
    P, D = prob.P, prob.D
    C = m["centroid_distance_matrix"].shape[-1]

    def est(a) -> Estimate:
        return Estimate(*geometry.mean_se(a))

    Yn = y.reshape(P, D)
    res: dict = predictor_estimates(m, y, yt)
    res.update(
        readout_second_moment=est(np.trace(m["vv"], axis1=1, axis2=2) / D),
        readout_moment_matrix=est(m["vv"]),
        hidden_gram=est(m["KW"]),
        centroid_distance=est(m["centroid_distance_matrix"][:, 0, 1] if C == 2 else np.full(R, np.nan)),
        weight_moments=est(m["Omega"]),
    )
    for name in ("centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance", "distance_ratio",
                 "unit_centroid_distance", "unit_class_radius"):
        res[name] = est(m[name])
    lab_proj, pcs_proj = weight_moment_projections(m["Omega"], x, Yn, prior_w=prob.lam0, n_components=s.n_components)
    res.update(weight_moment_label=est(lab_proj), weight_moment_pcs=est(pcs_proj))
    if yt is not None:
        res.update(
            hidden_gram_test=est(m["KWt"]),
            hidden_gram_test_diag=est(m["KWt_diag"]),
        )
        tg = {name[5:]: est(v) for name, v in m.items() if name.startswith("test_")}
        if tg:
            ct = tg["centroid_distance_matrix"].mean.shape[-1]
            tg["centroid_distance"] = est(m["test_centroid_distance_matrix"][:, 0, 1] if ct == 2 else np.full(R, np.nan))
            res["test_geometry"] = tg
    settings = dict(settings=s, reduce=reduce, frozen_first_layer=frozen, prior_w=prior_w, prior_v=prior_v,
                    ladder=prob.T.view(-1, R)[:, 0].cpu().numpy().astype(np.float64),
                    data=geometry.data_fingerprint(x, y))
    return PosteriorSample(
        temperature=diag.temperature, width=prob.N1, activation=activation, method=s.method, replicas=R,
        n_measurements=acc.n, step_size=diag.step_size, acceptance=diag.acceptance, reduced_dim=prob.r,
        wall_time_s=wall, diagnostics=diag, settings=settings, **res,
    )


def sample_posterior(
    x_train,
    y_train,
    *,
    width: int,
    temperature: float,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    replicas: int = 32,
    method: Literal["hmc", "langevin"] = "hmc",
    step_size: float | None = None,
    burn_in: float | None = None,
    sampling_time: float | None = None,
    measure_every: float | None = None,
    trajectory_length: float = math.pi / 2,
    reduce: bool = True,
    first_layer=None,
    n_components: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    settings: SamplerSettings | None = None,
) -> PosteriorSample:
    """Sample the exact posterior of f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1 at one temperature T.

    The one-temperature form of :func:`sample_temperatures` (see there and the module docstring).
    Without ``burn_in``/``sampling_time`` the length adapts until the diagnostics pass (default);
    with both, the run has that fixed length (time units) and still reports its diagnostics.
    ``settings`` (optional) replaces every sampler keyword (replicas … progress).
    """
    if settings is None:
        settings = SamplerSettings(
            replicas=replicas, method=method, step_size=step_size, burn_in=burn_in, sampling_time=sampling_time,
            measure_every=measure_every, trajectory_length=trajectory_length, reduce=reduce,
            n_components=n_components, seed=seed, device=None if device is None else str(device), dtype=dtype,
            progress=progress)
    if np.ndim(temperature) != 0:
        raise ValueError(f"temperature: must be one number (use sample_temperatures for several), got {temperature!r}")
    return sample_temperatures(x_train, y_train, [temperature], width=width, activation=activation, prior_w=prior_w,
                               prior_v=prior_v, x_test=x_test, y_test=y_test, settings=settings,
                               first_layer=first_layer)[0]


# ---------------------------------------------------------------------------------------------
# the sampled level of equilibrium.temperature_curve
# ---------------------------------------------------------------------------------------------
CURVE_MEASURES = ("centroid_distance", "centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance",
                  "distance_ratio", "unit_centroid_distance", "unit_class_radius")


def sampled_curve_fields(x_train, y_train, temperatures, *, width: int, activation: str, prior_w: float,
                         prior_v: float, x_test=None, y_test=None, settings: SamplerSettings | None = None,
                         n_directions: int = 8) -> tuple[dict, dict, tuple[SamplerDiagnostics, ...]]:
    """Sample every temperature and return (values, standard errors, diagnostics) keyed by the names of
    ``equilibrium.TemperatureCurve`` fields (``test_<measure>`` for the test-set geometry).

    ``weight_moments``/``weight_label_moment`` are in TemperatureCurve's units (second moments of W,
    prior δ/λ0): the sampled Ω projections divided by λ0 (``equilibrium.weights``)."""
    s = settings if settings is not None else SamplerSettings()
    s = replace(s, n_components=n_directions)
    samples = sample_temperatures(x_train, y_train, temperatures, width=width, activation=activation,
                                  prior_w=prior_w, prior_v=prior_v, x_test=x_test, y_test=y_test, settings=s)
    D = 1 if np.ndim(y_train) == 1 else np.shape(y_train)[1]
    vals: dict[str, list] = {}
    ses: dict[str, list] = {}

    def put(name, e: Estimate | None, scale: float = 1.0):
        if e is None:
            return
        vals.setdefault(name, []).append(np.asarray(e.mean, dtype=np.float64) * scale)
        ses.setdefault(name, []).append(np.asarray(e.se, dtype=np.float64) * abs(scale))

    for p in samples:
        put("Q", p.readout_second_moment if D == 1 else p.readout_moment_matrix, prior_v)
        for name in ("train_error", "train_variance", "test_error", "test_bias2", "test_variance",
                     "readout_second_moment", *CURVE_MEASURES):
            put(name, getattr(p, name))
        put("test_prediction", p.test_mean)
        put("test_prediction_variance", p.test_prediction_variance)
        put("weight_moments", p.weight_moment_pcs, 1.0 / prior_w)
        lab = p.weight_moment_label
        # mean over outputs; its s.e. bounded by the mean s.e. (outputs share the chains)
        put("weight_label_moment", Estimate(np.mean(lab.mean), np.mean(lab.se)), 1.0 / prior_w)
        for name, e in p.test_geometry.items():
            if name in CURVE_MEASURES:
                put("test_" + name, e)
    values = {k: np.stack(v) for k, v in vals.items()}
    errors = {k: np.stack(v) for k, v in ses.items()}
    return values, errors, tuple(p.diagnostics for p in samples)
