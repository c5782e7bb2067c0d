"""Exact posterior sampling of the deep FC network and the one-hidden-layer CNN (docs/architectures.md).

The same ground truth as :mod:`equilibrium.sampling` (one hidden layer), for the two architectures
of :mod:`equilibrium.deep` and :mod:`equilibrium.conv`. In both the readout is linear in a feature
map Φ_θ (P × F) of the sampled inner weights θ,

    f(x) = v·φ_θ(x)/√N,   v ~ N(0, I/λ_out),

so, exactly as for one hidden layer (docs/conventions.md §5), v given θ is Gaussian and θ has the
collapsed density p_T(θ) ∝ exp(−U_T(θ)),

    U_T(θ) = ½|u|² + ½ log det A_θ + ½ yᵀA_θ⁻¹y,   A_θ = T·I + Φ_θΦ_θᵀ/(N λ_out),

where u are the inner weights whitened by their priors (W = u/√λ: unit-mass HMC is then
preconditioned by the prior scale of every layer). The gradient is taken by autograd. Architectures:

deep FC (``width=[N1, ..., NL]``)
    h¹ = W¹x/√N0, h^{ℓ+1} = W^{ℓ+1}σ(h^ℓ)/√N_ℓ, f = v·σ(h^L)/√N_L; W¹ ~ N(0, I/λ0), W^{ℓ+1} ~
    N(0, I/λ_ℓ), v ~ N(0, I/λ_L) (the conventions of ``equilibrium.deep``); Φ = σ(h^L), N = N_L,
    λ_out = λ_L. θ = (W¹ on the span of the training inputs, W², ..., W^L) — the exact span
    reduction of docs/conventions.md §6 (``gdeq.geometry.span_reduction``); a test input's remainder
    outside that span meets weight components drawn fresh from the prior at every measurement.
CNN (``architecture="cnn"``)
    f(x) = Σ_c Σ_i v_ci σ(w_c·x_i/√(C m²))/√(Nc Np) (``equilibrium.conv``; ``gd_dynamics``'
    ``ReplicaCNN(stride=kernel_size)``); Φ has the F = Nc·Np columns φ_ci, N = Nc·Np, λ_out = λ1;
    θ = the Nc filters (no reduction: a patch has few pixels).

The moves, the rounds (adaptive length until split-R̂ < ``rhat_max`` and bulk/tail ESS ≥ ``ess_min``
at every temperature, or the budget), replica exchange and the diagnostics are those of
:mod:`equilibrium.sampling` (its ``_HMCMover`` and ``_run_rounds``, driven by the target objects
here through ``collapsed(W, need_grad)``; the state is a flat (chains, 1, d) tensor). Diagnostic
observables: those of the one-hidden-layer sampler (of the last layer / the readout-weighted CNN
kernel) plus, per inner layer, its order parameter and its centroid distance.

Observables per sample (then averaged; readout ones Rao–Blackwellised through v | θ, with
K = ΦΦᵀ/(Nλ_out), a = A⁻¹y, E[f] = K a, Var f = T·diag(K A⁻¹)):

- predictor: train/test mean and variance (test: K_t a, k_t − diag(K_t A⁻¹K_tᵀ)), errors as in
  :mod:`equilibrium.sampling`;
- deep: per layer ℓ the activation Gram G_ℓ = σ(h^ℓ)σ(h^ℓ)ᵀ/N_ℓ (every class measure of
  ``geometry.class_geometry``) and the order parameter Q_ℓ = λ_ℓ|W^{ℓ+1}|²/(N_ℓN_{ℓ+1}) (ℓ < L),
  Q_L = λ_L (1/N_L) Σ_i E[v_i² | θ] (the readout) — the theory's ``weight_second_moment`` × λ_ℓ;
- CNN: Q_ij = λ1 (1/Nc) Σ_c E[v_ci v_cj | θ] (the patch × patch order parameter of the theory),
  the readout-weighted kernel K_v = (1/(Nc Np)) Σ_c Σ_ij E[v_ci v_cj | θ] φ_ci φ_cjᵀ (the sampled
  counterpart of the theory's renormalised kernel K_R = Σ_ij Q_ij K_ij/(λ1 Np)) and the hidden
  Gram G = ΦΦᵀ/(Nc Np) (whose prior mean is the local NNGP Σ_i K_ii/Np), each with every class measure.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from gdeq import geometry
from gdeq.geometry import Estimate

from . import inputs
from .sampling import (SamplerDiagnostics, SamplerSettings, _HMCMover, _run_rounds, scaled_inputs,
                       ladder_temperatures, predictor_estimates, warn_unconverged)

__all__ = ["ARCH_SAMPLER_ACTIVATIONS", "ArchitectureSample", "sample_architecture", "sampled_architecture_curve"]

ARCH_SAMPLER_ACTIVATIONS = ("erf", "relu", "tanh", "identity")
MEASURES = ("centroid_distance", "centroid_distance_matrix", "class_radius", "inter_distance", "intra_distance",
            "distance_ratio", "unit_centroid_distance", "unit_class_radius")


# ---------------------------------------------------------------------------------------------
# the collapsed targets
# ---------------------------------------------------------------------------------------------
def _rb_readout(phi: torch.Tensor, Y: torch.Tensor, T: torch.Tensor, norm: float, phi_t: torch.Tensor | None = None):
    """v | θ integrated out for features Φ (B, P, F), normaliser N·λ_out = ``norm``, targets Y (P, 1).

    Returns a dict: ``chol`` of A = T + K, ``a`` = A⁻¹Y, ``f`` = K a, ``var`` = T diag(K A⁻¹),
    ``v2`` = Σ_i E[v_i² | θ]·λ_out (sum over the F readout weights), and for test features ``ft``,
    ``var_t``. Uses ΦᵀA⁻¹Φ only through traces (no F × F matrix)."""
    P = phi.shape[1]
    K = phi @ phi.transpose(1, 2) / norm
    A = K.clone()
    A.diagonal(dim1=1, dim2=2).add_(T[:, None])
    L = torch.linalg.cholesky(A)
    a = torch.cholesky_solve(Y.expand(phi.shape[0], P, Y.shape[1]), L)
    Ainv = torch.cholesky_inverse(L)
    f = K @ a
    KAinv = (K * Ainv).sum(-1)  # diag(K A⁻¹) (both symmetric)
    F = phi.shape[2]
    # λ E|v|² = λ|v̄|² + tr(λ Cov) = aᵀKa + F − tr(A⁻¹K)
    v2 = (a * f).sum((1, 2)) + F - KAinv.sum(-1)
    out = dict(chol=L, a=a, f=f, var=T[:, None] * KAinv, v2=v2, K=K, Ainv=Ainv)
    if phi_t is not None:
        Kt = phi_t @ phi.transpose(1, 2) / norm
        out["ft"] = Kt @ a
        out["var_t"] = (phi_t * phi_t).sum(-1) / norm - (Kt * (Kt @ Ainv)).sum(-1)
    return out


def _collapsed_data_energy(phi: torch.Tensor, Y: torch.Tensor, T: torch.Tensor, norm: float):
    """½ log det A + ½ YᵀA⁻¹Y (B,), A = T + ΦΦᵀ/norm; F × F push-through when F < P. Also the
    Cholesky status (0 = success)."""
    B, P, F = phi.shape
    if F < P:  # det A = T^(P−F) det M / norm^F,  YᵀA⁻¹Y = (|Y|² − (ΦᵀY)ᵀM⁻¹ΦᵀY)/T,  M = T·norm + ΦᵀΦ
        M = phi.transpose(1, 2) @ phi + (T * norm)[:, None, None] * torch.eye(F, dtype=phi.dtype, device=phi.device)
        L, info = torch.linalg.cholesky_ex(M)
        b = phi.transpose(1, 2) @ Y
        s = torch.linalg.solve_triangular(L, b, upper=False)
        quad = ((Y * Y).sum() - (s * s).sum((1, 2))) / T
        logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1) + (P - F) * torch.log(T) - F * math.log(norm)
    else:
        A = phi @ phi.transpose(1, 2) / norm + T[:, None, None] * torch.eye(P, dtype=phi.dtype, device=phi.device)
        L, info = torch.linalg.cholesky_ex(A)
        s = torch.linalg.solve_triangular(L, Y.expand(B, P, Y.shape[1]), upper=False)
        quad = (s * s).sum((1, 2))
        logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
    return 0.5 * Y.shape[1] * logdet + 0.5 * quad, info


class _Target:
    """A collapsed target: whitened inner weights u (B, 1, d) → features → U_T(u). Subclasses define
    ``features(u, test=False)`` and the bookkeeping; ``T`` (B,) one temperature per chain."""

    norm: float  # N · λ_out
    T: torch.Tensor
    Y: torch.Tensor
    # the prior precision of the HMC state as equilibrium.sampling's movers see it: the state u is
    # already whitened (prior ½|u|²), so 1 (the network's λ0 is ``prior_w``)
    lam0: float = 1.0

    def collapsed(self, W: torch.Tensor, need_grad: bool = True):
        """U_T(W) = ½|u|² + ½ log det A + ½ yᵀA⁻¹y and its gradient (autograd), batched over chains."""
        with torch.enable_grad():
            u = W.detach().requires_grad_(need_grad)
            phi = self.features(u)[0]
            data, info = _collapsed_data_energy(phi, self.Y, self.T, self.norm)
            U = 0.5 * (u * u).sum((1, 2)) + data
            grad = torch.autograd.grad(U.sum(), u)[0] if need_grad else None
        U = U.detach()
        U = torch.where((info == 0) & torch.isfinite(U), U, torch.full_like(U, float("inf")))
        return U, grad

    def with_temperatures(self, chain_temperatures: torch.Tensor) -> "_Target":
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.T = chain_temperatures
        return other

    # ---- the rest of the target protocol of equilibrium.sampling's movers (lower-precision forces,
    # ∂U/∂T for ladder placement): generic, through ``collapsed`` only
    def cast(self, dtype: torch.dtype) -> "_Target":
        """The same target with every tensor in ``dtype``."""
        other = object.__new__(type(self))
        other.__dict__.update({k: v.to(dtype) if torch.is_tensor(v) else v for k, v in self.__dict__.items()})
        return other

    def force(self, W: torch.Tensor, low: "_Target | None") -> torch.Tensor:
        """∇U_T(W) in ``low``'s precision (None: exactly), exact where that is not finite (deterministic in W)."""
        if low is None:
            return self.collapsed(W)[1]
        g = low.collapsed(W.to(low.T.dtype))[1].to(W.dtype)
        bad = ~torch.isfinite(g.reshape(g.shape[0], -1).sum(1))
        if bool(bad.any()):
            g[bad] = self.with_temperatures(self.T[bad]).collapsed(W[bad])[1]
        return g

    def temperature_derivative(self, W: torch.Tensor) -> torch.Tensor:
        """∂U_T(W)/∂T by a central difference of the exact energy (relative step 10⁻⁴)."""
        d = 1e-4 * self.T
        up, _ = self.with_temperatures(self.T + d).collapsed(W, need_grad=False)
        dn, _ = self.with_temperatures(self.T - d).collapsed(W, need_grad=False)
        return (up - dn) / (2 * d)


class _DeepTarget(_Target):
    """Deep FC: u = (√λ0·W¹ on the span (r × N1), √λ1·W² (N1 × N2), …, √λ_{L−1}·W^L), flattened."""

    def __init__(self, x, y, x_test, widths, activation, prior_w, priors, chain_T, reduce, kw):
        P, n0 = x.shape
        self.P, self.widths, self.L = P, tuple(int(n) for n in widths), len(widths)
        self.prior_w, self.priors = float(prior_w), tuple(float(p) for p in priors)
        self.act = geometry.activation(activation)
        self.T = torch.as_tensor(chain_T, **kw)
        # h¹ = X u¹/√(N0 λ0): the prior scale folded into the inputs
        self.X, self.Xt, self.Xt_perp = scaled_inputs(x, x_test, reduce, math.sqrt(n0 * self.prior_w), kw)
        self.r = self.X.shape[1]
        self.Y = torch.as_tensor(y.reshape(P, 1), **kw)
        shapes = [(self.r, self.widths[0])] + [(self.widths[l], self.widths[l + 1]) for l in range(self.L - 1)]
        self.shapes = shapes
        self.sizes = [a * b for a, b in shapes]
        self.dim = sum(self.sizes)
        self.norm = self.widths[-1] * self.priors[-1]

    def unpack(self, u: torch.Tensor) -> list[torch.Tensor]:
        B = u.shape[0]
        flat = u.reshape(B, -1)
        out, k = [], 0
        for (a, b), n in zip(self.shapes, self.sizes):
            out.append(flat[:, k:k + n].reshape(B, a, b))
            k += n
        return out

    def _forward(self, Ws, h1):
        phis = [self.act(h1)]
        for l in range(1, self.L):  # h^{ℓ+1} = σ(h^ℓ) u^{ℓ+1}/√(N_ℓ λ_ℓ)
            h = phis[-1] @ Ws[l] / math.sqrt(self.widths[l - 1] * self.priors[l - 1])
            phis.append(self.act(h))
        return phis

    def features(self, u: torch.Tensor, test: bool = False, randn=None):
        Ws = self.unpack(u)
        phis = self._forward(Ws, self.X @ Ws[0])
        if not test:
            return phis[-1], phis
        ht = self.Xt @ Ws[0]
        if self.Xt_perp is not None:  # the remainder meets fresh prior weights (whitened: standard normal)
            ht = ht + self.Xt_perp @ randn(u.shape[0], self.Xt_perp.shape[1], self.widths[0])
        phis_t = self._forward(Ws, ht)
        return phis[-1], phis, phis_t[-1], phis_t

    def initial(self, randn, B: int) -> torch.Tensor:
        return randn(B, 1, self.dim)


class _ConvTarget(_Target):
    """One-hidden-layer CNN: u = √λ0 × the Nc filters (d × Nc, d = C m²), flattened."""

    def __init__(self, x, y, x_test, channels, patch_size, image_shape, activation, prior_w, prior_v, chain_T, kw):
        from .conv import _check_shape, extract_patches

        shape, m = _check_shape(tuple(image_shape), patch_size, x.shape[1])
        self.image_shape, self.patch_size = shape, m
        C = shape[0]
        scale = 1.0 / math.sqrt(C * m * m * float(prior_w))
        self.Xp = extract_patches(torch.as_tensor(x, **kw), shape, m) * scale  # (P, Np, d)
        self.Xpt = None if x_test is None else extract_patches(torch.as_tensor(x_test, **kw), shape, m) * scale
        self.P, self.Np, self.d = self.Xp.shape
        self.Nc = int(channels)
        self.prior_w, self.lam1 = float(prior_w), float(prior_v)
        self.act = geometry.activation(activation)
        self.T = torch.as_tensor(chain_T, **kw)
        self.Y = torch.as_tensor(y.reshape(self.P, 1), **kw)
        self.dim = self.d * self.Nc
        self.norm = self.Nc * self.Np * self.lam1
        self.r = self.d

    def _phi(self, Xp, w):  # (B, P, Np, Nc); one batched matmul (P·Np, d) @ (d, Nc)
        P, Np, d = Xp.shape
        return self.act(Xp.reshape(P * Np, d) @ w).reshape(w.shape[0], P, Np, self.Nc)

    def features(self, u: torch.Tensor, test: bool = False, randn=None):
        B = u.shape[0]
        w = u.reshape(B, self.d, self.Nc)
        phi4 = self._phi(self.Xp, w)
        phi = phi4.reshape(B, self.P, self.Np * self.Nc)
        if not test:
            return phi, phi4
        phi4t = self._phi(self.Xpt, w)
        return phi, phi4, phi4t.reshape(B, -1, self.Np * self.Nc), phi4t

    def initial(self, randn, B: int) -> torch.Tensor:
        return randn(B, 1, self.dim)


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------
def _geometry_dict(G: torch.Tensor, labels, prefix: str, out: dict) -> None:
    geo = geometry.class_geometry(G, labels)
    for k in MEASURES:
        out[prefix + k] = torch.as_tensor(getattr(geo, k))


def _predictor(out: dict, rb: dict, with_test: bool) -> None:
    out.update(f=rb["f"], f2=rb["f"] ** 2 + rb["var"][..., None])
    if with_test:
        out.update(ft=rb["ft"], ft2=rb["ft"] ** 2 + rb["var_t"][..., None])


class _DeepMeasure:
    def __init__(self, tgt: _DeepTarget, labels, randn):
        self.tgt, self.labels, self.randn = tgt, labels, randn

    def __call__(self, W: torch.Tensor, v) -> tuple[dict, dict]:
        t = self.tgt
        with torch.no_grad():
            if t.Xt is not None:
                phi, phis, phi_t, _ = t.features(W, test=True, randn=self.randn)
            else:
                phi, phis = t.features(W)
                phi_t = None
            rb = _rb_readout(phi, t.Y, t.T, t.norm, phi_t)
            out: dict[str, torch.Tensor] = {}
            _predictor(out, rb, phi_t is not None)
            Ws = t.unpack(W)
            q = [(Ws[l + 1] ** 2).sum((1, 2)) / (t.widths[l] * t.widths[l + 1]) for l in range(t.L - 1)]
            q.append(rb["v2"] / t.widths[-1])
            out["Q"] = torch.stack(q, 1)  # (B, L)
            for l, p in enumerate(phis):
                _geometry_dict(p @ p.transpose(1, 2) / t.widths[l], self.labels, f"layer{l + 1}_", out)
            scalars = dict(readout_second_moment=out["Q"][:, -1] / t.priors[-1],
                           train_error=((t.Y - out["f"]) ** 2).sum((1, 2)) / t.P,
                           centroid_distance=out[f"layer{t.L}_centroid_distance"],
                           unit_class_radius=out[f"layer{t.L}_unit_class_radius"].mean(1))
            out["readout_second_moment"] = scalars["readout_second_moment"]
            for l in range(t.L - 1):
                scalars[f"Q_layer{l + 1}"] = out["Q"][:, l]
                scalars[f"centroid_distance_layer{l + 1}"] = out[f"layer{l + 1}_centroid_distance"]
        return out, scalars


class _ConvMeasure:
    def __init__(self, tgt: _ConvTarget, labels):
        self.tgt, self.labels = tgt, labels

    def __call__(self, W: torch.Tensor, v) -> tuple[dict, dict]:
        t = self.tgt
        with torch.no_grad():
            if t.Xpt is not None:
                phi, phi4, phi_t, _ = t.features(W, test=True)
            else:
                (phi, phi4), phi_t = t.features(W), None
            B = phi.shape[0]
            rb = _rb_readout(phi, t.Y, t.T, t.norm, phi_t)
            out: dict[str, torch.Tensor] = {}
            _predictor(out, rb, phi_t is not None)
            # v̄ = Φᵀa/(√N λ1) per (patch, channel); Cov = (1/λ1)(I − ΦᵀA⁻¹Φ/(Nλ1))
            N = t.Nc * t.Np
            vbar = (phi.transpose(1, 2) @ rb["a"])[..., 0].reshape(B, t.Np, t.Nc) / (math.sqrt(N) * t.lam1)
            Z = rb["Ainv"] @ phi  # A⁻¹Φ (B, P, F)
            X = torch.einsum("bpic,bpjc->bcij", phi4, Z.reshape(phi4.shape))  # Φ_cᵀA⁻¹Φ_c (B, Nc, Np, Np)
            eye = torch.eye(t.Np, dtype=phi.dtype, device=phi.device)
            # Q_ij = λ1/Nc Σ_c E[v_ci v_cj] = λ1/Nc Σ_c v̄_ci v̄_cj + δ_ij − Σ_c X_c,ij/(Nc N λ1)
            out["Q"] = (t.lam1 * vbar @ vbar.transpose(1, 2) / t.Nc + eye
                        - X.sum(1) / (t.Nc * N * t.lam1))
            # K_v = (1/N) Σ_c [g_c g_cᵀ + Φ_c Cov_c Φ_cᵀ], g_c = Φ_c v̄_c
            g = torch.einsum("bpic,bic->bpc", phi4, vbar)
            PX = torch.einsum("bpic,bcij->bpjc", phi4, X).reshape(B, t.P, -1)
            Kv = (g @ g.transpose(1, 2) + (phi @ phi.transpose(1, 2) - PX @ phi.transpose(1, 2) / (N * t.lam1))
                  / t.lam1) / N
            _geometry_dict(Kv, self.labels, "", out)
            _geometry_dict(rb["K"] * t.lam1, self.labels, "hidden_", out)
            scalars = dict(readout_second_moment=rb["v2"] / (N * t.lam1),
                           train_error=((t.Y - out["f"]) ** 2).sum((1, 2)) / t.P,
                           centroid_distance=out["centroid_distance"],
                           unit_class_radius=out["unit_class_radius"].mean(1),
                           hidden_centroid_distance=out["hidden_centroid_distance"])
            out["readout_second_moment"] = scalars["readout_second_moment"]
        return out, scalars


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchitectureSample:
    """Posterior averages at one temperature for a deep FC network or the CNN (single output, ±1).

    ``estimates[name]`` an :class:`Estimate` (mean over chains of each chain's time average, standard
    error over the independent chains; jackknife for the errors of the mean predictor). Names:
    ``train_mean``, ``train_error``, ``train_variance``, ``Q`` (deep: (L,), CNN: (Np, Np)),
    ``readout_second_moment`` (mean E[v²], ×λ_out = Q_L or tr Q/Np), the geometry measures with
    prefix ``layer<ℓ>_`` (deep) or none (CNN readout-weighted kernel K_v) and ``hidden_`` (CNN
    hidden Gram); with a test set ``test_mean``, ``test_error`` = ``test_bias2`` + ``test_variance``,
    ``test_prediction_variance``.
    """

    temperature: float
    architecture: str
    widths: tuple[int, ...]
    activation: str
    replicas: int
    n_measurements: int
    acceptance: float
    step_size: float
    wall_time_s: float
    estimates: dict[str, Estimate]
    diagnostics: SamplerDiagnostics
    settings: dict = field(default_factory=dict, repr=False)

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics.converged)

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]


def _summarise(acc, k: int, R: int, y, yt) -> dict[str, Estimate]:
    """Estimates at ladder slot k (the chains k·R … k·R + R − 1) from the measured round's per-chain
    averages: the predictor through sampling.predictor_estimates, every other measure mean ± s.e."""
    sl = slice(k * R, (k + 1) * R)
    m = {name: v[sl] for name, v in acc.means().items() if not name.startswith("_")}
    res = predictor_estimates(m, y, yt)
    for name, v in m.items():
        if name not in ("f", "f2", "ft", "ft2"):
            res[name] = Estimate(*geometry.mean_se(v))
    return res


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check(x_train, y_train, x_test, y_test, temperatures, activation, prior_w):
    x, y, xt, yt, _ = inputs.data_set(x_train, y_train, x_test, y_test, labels="pm1")
    T = inputs.temperatures(temperatures)
    if activation not in ARCH_SAMPLER_ACTIVATIONS:
        raise ValueError(f"activation: must be one of {list(ARCH_SAMPLER_ACTIVATIONS)}, got {activation!r}")
    inputs.number("prior_w", prior_w)
    return x, y, xt, yt, T


def _int_list(value, name: str) -> tuple[int, ...]:
    vals = list(value) if np.ndim(value) == 1 else [value]
    if not vals or any(isinstance(v, bool) or not float(v).is_integer() or v < 1 for v in vals):
        raise ValueError(f"{name}: must be integers >= 1, got {value!r}")
    return tuple(int(v) for v in vals)


def _priors(prior_v, L: int) -> tuple[float, ...]:
    vals = [prior_v] * L if np.ndim(prior_v) == 0 else list(prior_v)
    if len(vals) != L or not all(np.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"prior_v: one λ > 0 or a list of {L} (λ_1..λ_L), got {prior_v!r}")
    return tuple(float(v) for v in vals)


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------
def sample_architecture(
    x_train,
    y_train,
    temperatures,
    *,
    width,
    architecture: str = "fc",
    patch_size: int | None = None,
    image_shape: Sequence[int] | None = None,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float | Sequence[float] = 1.0,
    x_test=None,
    y_test=None,
    settings: SamplerSettings | None = None,
) -> list[ArchitectureSample]:
    """Sample the exact posterior of a deep FC network (``width=[N1, ..., NL]``) or the one-hidden-layer
    CNN (``architecture="cnn"``, ``width=Nc``, ``patch_size=m``, ``image_shape=(C, H, W)``, inputs
    flattened channels-last) at every temperature, in one batched run (see the module docstring).

    ``prior_w`` = λ0; ``prior_v`` = λ (every later layer) or [λ_1, ..., λ_L] (deep) / λ1 (CNN).
    ``settings``: :class:`~equilibrium.sampling.SamplerSettings` (method must be ``"hmc"``; the
    span reduction applies to the deep network's first layer). One :class:`ArchitectureSample` per
    requested temperature; warns (:class:`SamplingConvergenceWarning`) naming the unconverged ones.
    """
    s = settings if settings is not None else SamplerSettings()
    s.check()
    if s.method != "hmc":
        raise ValueError(f"settings.method: the deep-FC / CNN sampler is collapsed HMC only, got {s.method!r}")
    if architecture not in ("fc", "cnn"):
        raise ValueError(f"architecture: must be 'fc' or 'cnn', got {architecture!r}")
    x, y, xt, yt, T_req = _check(x_train, y_train, x_test, y_test, temperatures, activation, prior_w)
    if architecture == "cnn":
        if np.ndim(width) != 0:
            raise ValueError(f"width: for architecture='cnn' the number of channels Nc (one integer), got {width!r}")
        if patch_size is None or image_shape is None:
            raise ValueError("patch_size/image_shape: architecture='cnn' needs patch_size=m and image_shape=(C, H, W)")
        widths = _int_list(width, "width")
        priors = _priors(prior_v, 1)
    else:
        if patch_size is not None or image_shape is not None:
            raise ValueError("patch_size/image_shape: only for architecture='cnn'")
        widths = _int_list(width, "width")
        priors = _priors(prior_v, len(widths))
    if s.tempering:
        ladder, where = ladder_temperatures(T_req, s.max_temperature_ratio)
    else:
        ladder, where = np.unique(T_req), np.searchsorted(np.unique(T_req), T_req)
    t0 = time.perf_counter()
    device = torch.device(s.device) if s.device is not None else torch.device("cpu")
    kw = dict(device=device, dtype=s.dtype)
    nT, R = len(ladder), int(s.replicas)
    chain_T = np.repeat(ladder, R)  # temperature-major: chain b = k·R + r
    gen = torch.Generator(device=device).manual_seed(int(s.seed))

    def randn(*shape):
        return torch.randn(*shape, generator=gen, **kw)

    labels = inputs.class_labels(y)
    if architecture == "cnn":
        tgt = _ConvTarget(x, y, xt, widths[0], patch_size, image_shape, activation, prior_w, priors[0], chain_T, kw)
        measure = _ConvMeasure(tgt, labels)
    else:
        tgt = _DeepTarget(x, y, xt, widths, activation, prior_w, priors, chain_T, s.reduce, kw)
        measure = _DeepMeasure(tgt, labels, randn)
    W = tgt.initial(randn, nT * R)
    mover = _HMCMover(tgt, W, s, nT, R, False, gen, randn)
    last, diag, stop_reason = _run_rounds(mover, measure, s, ladder, R, False, t0)
    warn_unconverged(diag, ladder, where, s, stop_reason)
    wall = time.perf_counter() - t0
    info = dict(settings=s, prior_w=float(prior_w), prior_v=priors, patch_size=patch_size,
                image_shape=None if image_shape is None else tuple(image_shape), stop_reason=stop_reason,
                data=geometry.data_fingerprint(x, y))
    return [ArchitectureSample(
        temperature=float(ladder[k]), architecture=architecture, widths=widths, activation=activation, replicas=R,
        n_measurements=last.n, acceptance=diag[k].acceptance, step_size=diag[k].step_size, wall_time_s=wall,
        estimates=_summarise(last, int(k), R, y, yt), diagnostics=diag[int(k)],
        settings=info) for k in where]


# ---------------------------------------------------------------------------------------------
# the sampled level of equilibrium.temperature_curve for these architectures
# ---------------------------------------------------------------------------------------------
def sampled_architecture_curve(curve_cls, x_train, y_train, temperatures, *, width, architecture: str = "fc",
                               patch_size=None, image_shape=None, activation: str = "erf", prior_w: float = 1.0,
                               prior_v=1.0, x_test=None, y_test=None, sampler: SamplerSettings | None = None,
                               device=None):
    """``temperature_curve(..., level="sampled")`` for the deep FC network and the CNN: the layout of
    ``equilibrium.architectures.architecture_curve`` (top-level fields = the last hidden layer for
    deep FC, the readout-weighted kernel K_v for the CNN; per-layer arrays in ``layer_fields``) with
    ``standard_errors`` for every field and ``diagnostics`` per temperature."""
    from .weights import weight_directions

    if sampler is not None and not isinstance(sampler, SamplerSettings):
        raise ValueError(f"sampler: must be an equilibrium.SamplerSettings or None, got {type(sampler).__name__}")
    if sampler is None:
        sampler = SamplerSettings(device=None if device is None else str(device))
    T = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if x_test is not None and y_test is None:
        x_test = None
    samples = sample_architecture(x_train, y_train, T, width=width, architecture=architecture, patch_size=patch_size,
                                  image_shape=image_shape, activation=activation, prior_w=prior_w, prior_v=prior_v,
                                  x_test=x_test, y_test=y_test, settings=sampler)
    nT = len(T)
    vals: dict[str, np.ndarray] = {}
    ses: dict[str, np.ndarray] = {}
    for name in samples[0].estimates:
        vals[name] = np.stack([np.asarray(p.estimates[name].mean, dtype=np.float64) for p in samples])
        ses[name] = np.stack([np.asarray(p.estimates[name].se, dtype=np.float64) for p in samples])
    nan = np.full(nT, np.nan)
    widths = samples[0].widths
    priors = samples[0].settings["prior_v"]
    layer_fields: dict[str, np.ndarray] = {"Q": vals["Q"]}
    if architecture == "cnn":
        top = {k: vals[k] for k in MEASURES}
        top_se = {k: ses[k] for k in MEASURES}
        layer_fields.update(patch_size=np.asarray(patch_size), image_shape=np.asarray(tuple(image_shape)))
        layer_fields.update({k: vals[k] for k in vals if k.startswith("hidden_")})
        width_top, prior_top = float(widths[0]), float(priors[0])
    else:
        L = len(widths)
        top = {k: vals[f"layer{L}_{k}"] for k in MEASURES}
        top_se = {k: ses[f"layer{L}_{k}"] for k in MEASURES}
        layer_fields.update(widths=np.asarray(widths), priors=np.asarray(priors),
                            weight_second_moment=vals["Q"] / np.asarray(priors)[None])
        ses["weight_second_moment"] = ses["Q"] / np.asarray(priors)[None]
        for k in MEASURES:  # (nT, L, ...) as the theory's layer_fields
            layer_fields[k] = np.stack([vals[f"layer{l + 1}_{k}"] for l in range(L)], 1)
            ses[k + "_layers"] = np.stack([ses[f"layer{l + 1}_{k}"] for l in range(L)], 1)
        width_top, prior_top = float(widths[-1]), float(priors[-1])
    errors = dict(ses)
    errors.update(top_se)
    if "test_mean" in ses:
        errors["test_prediction"] = ses["test_mean"]
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    diags = tuple(p.diagnostics for p in samples)
    E = weight_directions(torch.as_tensor(x))
    readout = vals["readout_second_moment"]
    return curve_cls(
        temperature=T, Q=vals["Q"], train_error=vals["train_error"], train_variance=vals["train_variance"],
        test_error=vals.get("test_error", nan), test_bias2=vals.get("test_bias2", nan),
        test_variance=vals.get("test_variance", nan), readout_second_moment=readout,
        centroid_shift=nan.copy(), **top,
        weight_moments=np.full((nT, E.shape[0], E.shape[0]), np.nan), weight_label_moment=nan.copy(),
        weight_directions=E,
        converged=np.array([d.converged for d in diags]), n_minima=np.zeros(nT, np.int64), width=width_top,
        activation=activation, prior_w=float(prior_w), prior_v=prior_top, level="sampled",
        data_fingerprint=geometry.data_fingerprint(x, y), n_outputs=1,
        test_prediction=vals.get("test_mean"), test_prediction_variance=vals.get("test_prediction_variance"),
        in_regime=np.array([bool(d.converged) for d in diags]),
        regime_reason=tuple("" if d.converged else "sampler diagnostics did not pass" for d in diags),
        architecture=architecture, layer_fields=layer_fields, standard_errors=errors, diagnostics=diags,
        mean_kernel_approximations=(),
    )
