"""Ground-truth sampler of the exact posterior of a one-hidden-layer network (docs/conventions.md §1, §6).

Network and posterior (standard parameterisation, conventions of docs/conventions.md §1)::

    f(x) = Σ_i v_i σ(w_i·x/√N0) / √N1,      w_i ~ N(0, I/λ0),  v_i ~ N(0, 1/λ1),
    p(W, v | D) ∝ exp(−(1/2T) Σ_μ |y^μ − f(x^μ)|² − (λ0/2)|W|² − (λ1/2)|v|²).

R replicas (independent chains) run in ONE batched computation. Two samplers, both exact in the
limit of small step size, the second exact at any step size:

``method="langevin"``
    Plain unadjusted Langevin on (W, v) jointly, in the units of docs/conventions.md §6:
    θ ← θ − η ∇U(θ) + √(2η) ξ with U = (1/2T)Σ|y − f|² + (λ0/2)|W|² + (λ1/2)|v|².
    Default η = 0.05·T/κ_max (κ_max: top eigenvalue of the prior hidden kernel, estimated from
    prior draws). Observables are measured on the raw samples. Check step-size bias by halving η.

``method="hmc"`` (default)
    The readout is integrated out exactly: given W, v is Gaussian (docs/conventions.md §5), so W has the
    collapsed density p(W) ∝ p0(W) det(A_W)^(−D/2) exp(−½ tr Yᵀ A_W⁻¹ Y), A_W = T·I + K_W/λ1,
    K_W = ΦΦᵀ/N1. W is sampled with Metropolis-adjusted Hamiltonian Monte Carlo (no step-size
    bias; per-replica step size tuned during burn-in to an acceptance near 0.8, then frozen). All
    readout-dependent observables are Rao–Blackwellised through v | W:
    E[v | W] = √N1 M⁻¹ΦᵀY, Cov[v | W] = T·N1·M⁻¹ per output, M = T·N1·λ1·I + ΦᵀΦ.
    The collapse removes the 1/T-stiff readout direction, so at low T (and at N1 ≥ P, where the
    collapsed density has a finite T → 0 limit) this is orders of magnitude cheaper than plain
    Langevin. It is validated against ``"langevin"`` in tests/test_langevin.py.

Exact reduction (docs/conventions.md §6, ``reduce=True``): the likelihood sees w_i only through its
component in the span of the training inputs. With X = U S Vᵀ (thin SVD, rank r) the sampled
weights are the r coordinates of w_i in that span (training inputs become Z = U S, keeping every
inner product); the orthogonal part is exactly the prior. A test input x gets its projection on the
same span plus the contribution of its orthogonal remainder, w_⊥·x_⊥/√N0, whose weight components
are drawn fresh from the prior at every measurement (jointly over test points: the remainders are
expressed in their own orthonormal basis, so their correlations are kept).

Time units: ``burn_in`` and ``sampling_time`` are in units of docs/conventions.md §6's U-time (the prior
relaxes on a time 1/λ); an HMC trajectory of integration time L counts as L time units.

First-layer weight moments (the observable shared with the equilibrium theory)
------------------------------------------------------------------------------
Ω = (1/N1) Σ_i h_i h_iᵀ,   h_i = X w_i / √N0   (P×P pre-activation Gram on the training inputs).
Its prior value is C = XXᵀ/(N0 λ0). For a direction a ∈ R^P of sample space, with the matching
unit input direction e_a = Xᵀa/|Xᵀa|, aᵀΩa / aᵀCa = λ0·⟨(e_a·w)²⟩ averaged over units: the
second moment of the first-layer weights along e_a relative to the prior (1 in the prior). Reported:

* ``weight_moment_label``: a = y (one value per output column);
* ``weight_moment_pcs``: the k×k matrix u_kᵀΩu_l / √(c_k c_l) on the top-k eigenvectors u_k of C
  (eigenvalues c_k): diagonal = weight second moments along the top data principal directions
  relative to the prior, off-diagonal = correlations between those weight components (0 in the prior).

:func:`weight_moment_projections` computes both from any Ω (sampled or theoretical).

Same numbers as ``equilibrium.TemperatureCurve``: ``weight_moment_pcs`` = λ0 ×
``TemperatureCurve.weight_moments`` (directions e_j = Xᵀu_j/|Xᵀu_j| = ``equilibrium.weight_directions``,
each with its largest-magnitude component positive) and
``weight_moment_label`` = λ0 × ``TemperatureCurve.weight_label_moment`` (e_y = Xᵀy/|Xᵀy|).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from gdeq import geometry

__all__ = ["Estimate", "PosteriorSample", "sample_posterior", "weight_moment_projections", "SAMPLER_ACTIVATIONS"]

SAMPLER_ACTIVATIONS = ("erf", "relu", "tanh", "identity")
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _activation(name: str):
    """σ and σ' as one function h -> (σ(h), σ'(h))."""

    def erf(h):
        return torch.erf(h), _TWO_OVER_SQRT_PI * torch.exp(-h * h)

    def relu(h):
        return torch.relu(h), (h > 0).to(h.dtype)

    def tanh(h):
        t = torch.tanh(h)
        return t, 1.0 - t * t

    def identity(h):
        return h, torch.ones_like(h)

    return {"erf": erf, "relu": relu, "tanh": tanh, "identity": identity}[name]


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A posterior average: mean over replicas of each chain's time average, and its standard error.

    Replicas are independent chains, so ``se`` is the replica-to-replica standard deviation / √R
    (jackknife over replicas for non-linear functions of averages, e.g. the error of the mean predictor).
    """

    mean: np.ndarray | float
    se: np.ndarray | float

    def __repr__(self) -> str:  # compact for scalars
        if np.ndim(self.mean) == 0:
            return f"{float(self.mean):.6g} ± {float(self.se):.2g}"
        return f"Estimate(shape={np.shape(self.mean)})"


@dataclass(frozen=True)
class PosteriorSample:
    """Posterior averages from :func:`sample_posterior` (shapes: P train, Pt test, D outputs).

    Outputs are squeezed to (P,) / scalars for a single-output (±1) task.
    """

    temperature: float
    width: int
    activation: str
    method: str
    replicas: int
    n_measurements: int
    step_size: float  # mean over replicas (HMC: tuned leapfrog step; Langevin: η)
    acceptance: float  # HMC mean acceptance rate during sampling (1.0 for Langevin)
    reduced_dim: int  # number of sampled first-layer coordinates per unit (N0 without reduction)
    wall_time_s: float
    train_mean: Estimate  # posterior mean predictor f̄ on training inputs, (P,) or (P, D)
    train_error: Estimate  # (1/P) Σ_μ |y − f̄|² (summed over outputs)
    readout_second_moment: Estimate  # (1/(N1 D)) Σ_i ⟨|v_i|²⟩; λ1 × this ≈ Q* (docs/conventions.md §5)
    readout_moment_matrix: Estimate  # (D, D): (1/N1) Σ_i ⟨v_i v_iᵀ⟩
    hidden_gram: Estimate  # ⟨K_W⟩ on the training set, (P, P)
    centroid_distance: Estimate  # ⟨cᵀ K_W c⟩ (two classes; NaN otherwise)
    centroid_distance_matrix: Estimate  # (C, C) squared class-centroid distances
    class_radius: Estimate  # (C,) raw-feature class radius
    unit_centroid_distance: Estimate  # unit-sphere centroid distance (arXiv 2303.05161), averaged
    unit_class_radius: Estimate  # (C,) unit-sphere class radius, averaged
    weight_moments: Estimate  # Ω = (1/N1) Σ_i h_i h_iᵀ, (P, P) (see module docstring)
    weight_moment_label: Estimate  # (D,) aᵀΩa / aᵀCa for a = each label column
    weight_moment_pcs: Estimate  # (k, k) Ω on the top-k principal directions, prior = identity
    test_mean: Estimate | None = None  # (Pt,) or (Pt, D)
    test_error: Estimate | None = None  # bias² + variance
    test_bias2: Estimate | None = None  # (1/Pt) Σ |y_t − f̄_t|²
    test_variance: Estimate | None = None  # (1/Pt) Σ Var f(x_t) (summed over outputs)
    hidden_gram_test: Estimate | None = None  # ⟨K_W⟩ test×train block, (Pt, P)
    hidden_gram_test_diag: Estimate | None = None  # (Pt,)
    settings: dict = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------------------------
# weight-moment projections (shared definition, see module docstring)
# ---------------------------------------------------------------------------------------------
def weight_moment_projections(
    omega: np.ndarray, x_train: np.ndarray, y_train: np.ndarray, *, prior_w: float = 1.0, n_components: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Project Ω (..., P, P) on the label direction(s) and the top data principal directions.

    Returns ``(label, pcs)``: label (..., D) = aᵀΩa / aᵀCa for each label column a, and
    pcs (..., k, k) = u_kᵀΩu_l / √(c_k c_l), with C = XXᵀ/(N0 λ0) = Σ c_k u_k u_kᵀ. Both equal 1 / the
    identity in the prior.
    """
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(x.shape[0], -1)
    n0 = x.shape[1]
    C = x @ x.T / (n0 * prior_w)
    c, u = np.linalg.eigh(C)
    order = np.argsort(c)[::-1][:n_components]
    order = order[c[order] > c.max() * 1e-12]  # only directions the data actually span
    c, u = c[order], u[:, order]
    e = x.T @ u  # input-space directions e_k ∝ Xᵀu_k: sign fixed by their largest-magnitude component
    u = u * np.sign(e[np.abs(e).argmax(0), np.arange(e.shape[1])])
    om = np.asarray(omega, dtype=np.float64)
    label = np.einsum("pd,...pq,qd->...d", y, om, y) / np.einsum("pd,pq,qd->d", y, C, y)
    pcs = np.einsum("pk,...pq,ql->...kl", u, om, u) / np.sqrt(c[:, None] * c[None, :])
    return label, pcs


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_inputs(x_train, y_train, x_test, y_test, width, temperature, activation, prior_w, prior_v, replicas,
                  method, step_size, burn_in, sampling_time, measure_every, trajectory_length):
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x_train: expected shape (P, N0), got {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y_train: expected shape ({x.shape[0]},) or ({x.shape[0]}, D), got {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x_train/y_train: must be finite (found NaN or inf)")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test/y_test: give both or neither")
    if x_test is not None:
        xt, yt = np.asarray(x_test, dtype=np.float64), np.asarray(y_test, dtype=np.float64)
        if xt.ndim != 2 or xt.shape[1] != x.shape[1]:
            raise ValueError(f"x_test: expected shape (Pt, {x.shape[1]}), got {xt.shape}")
        if yt.shape[:1] != xt.shape[:1] or yt.ndim != y.ndim or (y.ndim == 2 and yt.shape[1] != y.shape[1]):
            raise ValueError(f"y_test: expected the layout of y_train with {xt.shape[0]} rows, got {yt.shape}")
        if not (np.all(np.isfinite(xt)) and np.all(np.isfinite(yt))):
            raise ValueError("x_test/y_test: must be finite (found NaN or inf)")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width: must be an integer >= 1, got {width!r}")
    if not isinstance(replicas, (int, np.integer)) or replicas < 1:
        raise ValueError(f"replicas: must be an integer >= 1, got {replicas!r}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature: must be finite and > 0 for sampling, got {temperature!r}")
    if activation not in SAMPLER_ACTIVATIONS:
        raise ValueError(f"activation: must be one of {list(SAMPLER_ACTIVATIONS)}, got {activation!r}")
    for name, value in (("prior_w", prior_w), ("prior_v", prior_v)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    if method not in ("hmc", "langevin"):
        raise ValueError(f"method: must be 'hmc' or 'langevin', got {method!r}")
    if step_size is not None and (not np.isfinite(step_size) or step_size <= 0):
        raise ValueError(f"step_size: must be > 0 (or None for the default), got {step_size!r}")
    if not np.isfinite(burn_in) or burn_in < 0:
        raise ValueError(f"burn_in: must be >= 0 (time units), got {burn_in!r}")
    if not np.isfinite(sampling_time) or sampling_time <= 0:
        raise ValueError(f"sampling_time: must be > 0 (time units), got {sampling_time!r}")
    if measure_every is not None and (not np.isfinite(measure_every) or measure_every <= 0):
        raise ValueError(f"measure_every: must be > 0 (time units) or None, got {measure_every!r}")
    if not np.isfinite(trajectory_length) or trajectory_length <= 0:
        raise ValueError(f"trajectory_length: must be > 0, got {trajectory_length!r}")
    return x, y


def _class_labels(y: np.ndarray) -> np.ndarray:
    return y.argmax(1) if y.ndim == 2 and y.shape[1] > 1 else (y.reshape(len(y)) > 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------
class _Problem:
    """Tensors shared by both samplers: (reduced) inputs, targets, priors."""

    def __init__(self, x, y, x_test, width, temperature, activation, prior_w, prior_v, reduce, device, dtype):
        P, n0 = x.shape
        self.P, self.n0, self.N1, self.T = P, n0, int(width), float(temperature)
        self.lam0, self.lam1 = float(prior_w), float(prior_v)
        self.D = 1 if y.ndim == 1 else y.shape[1]
        self.act = _activation(activation)
        self.identity = activation == "identity"
        kw = dict(device=device, dtype=dtype)
        if reduce:
            # orthonormal basis of span(x_train): X = U S Vᵀ, coordinates Z = U S keep all inner products
            _, s, vt = np.linalg.svd(x, full_matrices=False)
            r = int(np.sum(s > s[0] * max(P, n0) * np.finfo(np.float64).eps)) if s[0] > 0 else 1
            basis = vt[:r]
            z = x @ basis.T
        else:
            basis, z, r = None, x, n0
        self.r = r
        self.X = torch.as_tensor(z / math.sqrt(n0), **kw)  # h = X w, (P, r)
        self.Y = torch.as_tensor(y.reshape(P, self.D), **kw)
        self.Xt = self.Xt_perp = None
        if x_test is not None:
            if basis is not None:
                zt = x_test @ basis.T
                resid = x_test - zt @ basis
                _, s2, vt2 = np.linalg.svd(resid, full_matrices=False)
                r2 = int(np.sum(s2 > max(s2[0], 1e-300) * 1e-10)) if s2.size and s2[0] > 1e-12 else 0
                self.Xt_perp = torch.as_tensor(resid @ vt2[:r2].T / math.sqrt(n0), **kw) if r2 > 0 else None
            else:
                zt = x_test
            self.Xt = torch.as_tensor(zt / math.sqrt(n0), **kw)

    # ---- collapsed (readout integrated out) density of W: value and gradient ----------------
    def collapsed(self, W: torch.Tensor, need_grad: bool = True):
        """U(W) = (λ0/2)|W|² + (D/2) log det A_W + ½ tr YᵀA_W⁻¹Y and ∇U, batched over replicas."""
        T, N1, lam1, D = self.T, self.N1, self.lam1, self.D
        h = self.X @ W  # (R, P, N1)
        phi, dphi = self.act(h)
        if N1 <= self.P:  # push-through: work with the N1×N1 matrix M = T N1 λ1 I + ΦᵀΦ
            M = phi.transpose(1, 2) @ phi
            M.diagonal(dim1=1, dim2=2).add_(T * N1 * lam1)
            L, info = torch.linalg.cholesky_ex(M)
            S = torch.cholesky_solve(phi.transpose(1, 2) @ self.Y, L)  # M⁻¹ΦᵀY
            Rv = (self.Y - phi @ S) / T  # A⁻¹Y
            logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1) + (self.P - N1) * math.log(T)
            if need_grad:
                phiMinv = torch.cholesky_solve(phi.transpose(1, 2), L).transpose(1, 2)  # Φ M⁻¹
        else:
            A = phi @ phi.transpose(1, 2) / (N1 * lam1)
            A.diagonal(dim1=1, dim2=2).add_(T)
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

    # ---- joint (W, v) potential gradient for plain Langevin ----------------------------------
    def joint_grad(self, W: torch.Tensor, v: torch.Tensor):
        h = self.X @ W
        phi, dphi = self.act(h)
        sq = math.sqrt(self.N1)
        resid = phi @ v / sq - self.Y  # (R, P, D)
        g_v = phi.transpose(1, 2) @ resid / (self.T * sq) + self.lam1 * v
        g_phi = resid @ v.transpose(1, 2) / (self.T * sq)
        g_W = self.X.T @ (g_phi * dphi) + self.lam0 * W
        return g_W, g_v


class _Accumulator:
    """Per-replica running sums of every observable (time averages per chain)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            v = v.to(torch.float64)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.n += 1

    def means(self) -> dict[str, np.ndarray]:
        return {k: (v / self.n).cpu().numpy() for k, v in self.sums.items()}


def _estimate(per_replica: np.ndarray) -> Estimate:
    R = per_replica.shape[0]
    mean = per_replica.mean(0)
    se = per_replica.std(0, ddof=1) / math.sqrt(R) if R > 1 else np.full_like(mean, np.nan)
    return Estimate(mean, se)


def _jackknife(per_replica: dict[str, np.ndarray], fn) -> Estimate:
    """Estimate of fn(replica-averaged quantities) with a jackknife standard error over replicas."""
    R = next(iter(per_replica.values())).shape[0]
    full = fn({k: v.mean(0) for k, v in per_replica.items()})
    if R < 2:
        return Estimate(full, np.nan * np.asarray(full))
    sums = {k: v.sum(0) for k, v in per_replica.items()}
    leave = np.array([fn({k: (sums[k] - per_replica[k][i]) / (R - 1) for k in sums}) for i in range(R)])
    se = np.sqrt((R - 1) / R * ((leave - leave.mean(0)) ** 2).sum(0))
    return Estimate(full, se)


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
    replicas: int = 64,
    method: Literal["hmc", "langevin"] = "hmc",
    step_size: float | None = None,
    burn_in: float = 5.0,
    sampling_time: float = 10.0,
    measure_every: float | None = None,
    trajectory_length: float = 1.0,
    reduce: bool = True,
    first_layer=None,
    n_components: int = 8,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> PosteriorSample:
    """Sample the exact posterior of f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1 at temperature T.

    Args:
        x_train, y_train: (P, N0) inputs, targets ±1 (P,) or one-hot (P, D).
        width: N1. temperature: T > 0. activation: erf, relu, tanh or identity.
        prior_w, prior_v: prior precisions λ0, λ1.
        x_test, y_test: optional held-out set for the test predictor and the test rows of ⟨K_W⟩.
        replicas: R independent chains, batched.
        method: ``"hmc"`` (collapsed readout + Metropolis-adjusted HMC on W, default) or
            ``"langevin"`` (plain Langevin on (W, v)); see the module docstring.
        step_size: Langevin η in U-time (default 0.05·T/κ_max); HMC initial leapfrog step (tuned).
        burn_in, sampling_time: in time units (U-time, docs/conventions.md §6).
        measure_every: Langevin measurement interval in time units (default 0.05); HMC measures
            after every trajectory.
        trajectory_length: HMC integration time per trajectory (jittered ±20 % per trajectory).
        reduce: use docs/conventions.md §6's exact span reduction (sample only the span of x_train).
        first_layer: optional fixed first-layer weights (N1, N0) shared by all replicas: then only v
            is sampled (Bayesian linear regression on fixed features, an exactly Gaussian posterior).
        n_components: number of data principal directions for ``weight_moment_pcs``.
        seed: fixes every random draw (same device and dtype → same result).
        device, dtype: where and in which precision to run (float64 default).
        progress: show a tqdm progress bar.
    """
    x, y = _check_inputs(x_train, y_train, x_test, y_test, width, temperature, activation, prior_w, prior_v,
                         replicas, method, step_size, burn_in, sampling_time, measure_every, trajectory_length)
    xt = None if x_test is None else np.asarray(x_test, dtype=np.float64)
    yt = None if y_test is None else np.asarray(y_test, dtype=np.float64)
    labels = _class_labels(y)
    if len(np.unique(labels)) < 2:
        raise ValueError("y_train: the class-manifold measures need at least two classes")
    device = torch.device(device) if device is not None else torch.device("cpu")
    t0 = time.perf_counter()
    if first_layer is not None:
        first_layer = np.asarray(first_layer, dtype=np.float64)
        if first_layer.shape != (int(width), x.shape[1]) or not np.all(np.isfinite(first_layer)):
            raise ValueError(f"first_layer: expected finite weights of shape ({width}, {x.shape[1]}), got {first_layer.shape}")
        reduce = False
    prob = _Problem(x, y, xt, width, temperature, activation, prior_w, prior_v, reduce, device, dtype)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    R, N1, D, P = int(replicas), prob.N1, prob.D, prob.P
    kw = dict(device=device, dtype=dtype)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, **kw)

    W = randn(R, prob.r, N1) / math.sqrt(prob.lam0)
    frozen = first_layer is not None
    if frozen:
        W = torch.as_tensor(first_layer.T, **kw).expand(R, -1, -1).contiguous()
    acc = _Accumulator()
    lab_t = torch.as_tensor(labels, device=device)
    n_classes = len(np.unique(labels))

    def measure(W: torch.Tensor, v: torch.Tensor | None) -> None:
        h = prob.X @ W
        phi, _ = prob.act(h)
        KW = phi @ phi.transpose(1, 2) / N1
        out: dict[str, torch.Tensor] = dict(KW=KW, Omega=h @ h.transpose(1, 2) / N1)
        phi_t = None
        if prob.Xt is not None:
            ht = prob.Xt @ W
            if prob.Xt_perp is not None:  # orthogonal remainder: fresh prior draw of those weight components
                ht = ht + prob.Xt_perp @ (randn(R, prob.Xt_perp.shape[1], N1) / math.sqrt(prob.lam0))
            phi_t, _ = prob.act(ht)
            out["KWt"] = phi_t @ phi.transpose(1, 2) / N1
            out["KWt_diag"] = (phi_t * phi_t).sum(-1) / N1
        if v is not None:  # raw samples (plain Langevin)
            sq = math.sqrt(N1)
            f = phi @ v / sq
            out.update(f=f, vv=v.transpose(1, 2) @ v / N1)
            if phi_t is not None:
                ft = phi_t @ v / sq
                out.update(ft=ft, ft2=ft * ft)
        else:  # Rao–Blackwell through v | W ~ N(√N1 M⁻¹ΦᵀY, T N1 M⁻¹)
            M = phi.transpose(1, 2) @ phi
            M.diagonal(dim1=1, dim2=2).add_(prob.T * N1 * prob.lam1)
            L = torch.linalg.cholesky(M)
            S = torch.cholesky_solve(phi.transpose(1, 2) @ prob.Y, L)  # M⁻¹ΦᵀY = v̄/√N1
            Minv_diag = torch.diagonal(torch.cholesky_inverse(L), dim1=1, dim2=2)
            vbar = S * math.sqrt(N1)
            vv = vbar.transpose(1, 2) @ vbar / N1
            vv = vv + torch.eye(D, **kw) * (prob.T * Minv_diag.sum(1))[:, None, None]
            out.update(f=phi @ S, vv=vv)
            if phi_t is not None:
                ft = phi_t @ S
                var = prob.T * (phi_t * torch.cholesky_solve(phi_t.transpose(1, 2), L).transpose(1, 2)).sum(-1)
                out.update(ft=ft, ft2=ft * ft + var[..., None])
        G = KW
        out["cd_matrix"] = geometry.centroid_distance_matrix(G, lab_t)
        out["radius"] = geometry.class_radius(G, lab_t)
        out["unit_cd"] = geometry.centroid_distance_matrix(G, lab_t, unit_sphere=True)[..., 0, 1].clamp_min(0).sqrt()
        out["unit_radius"] = geometry.class_radius(G, lab_t, unit_sphere=True)
        acc.add(**out)

    # -------------------------------------------------------------------------------------------
    if method == "langevin":
        v = randn(R, N1, D) / math.sqrt(prob.lam1)
        if step_size is None:
            kappa = _prior_kernel_top_eigenvalue(prob, gen, kw)
            step_size = 0.05 * prob.T / kappa
        eta = float(min(step_size, 0.05 / max(prob.lam0, prob.lam1)))
        every = measure_every if measure_every is not None else 0.05
        n_burn, n_samp = int(math.ceil(burn_in / eta)), int(math.ceil(sampling_time / eta))
        k_every = max(1, int(round(every / eta)))
        noise = math.sqrt(2 * eta)
        bar = _bar(n_burn + n_samp, progress, f"Langevin T={prob.T:g}")
        for step in range(n_burn + n_samp):
            gW, gv = prob.joint_grad(W, v)
            if not frozen:
                W = W - eta * gW + noise * randn(*W.shape)
            v = v - eta * gv + noise * randn(*v.shape)
            if step >= n_burn and (step - n_burn + 1) % k_every == 0:
                measure(W, v)
            if bar is not None and step % 200 == 0:
                bar.update(min(200, n_burn + n_samp - step))
        if bar is not None:
            bar.close()
        if not torch.isfinite(W).all():
            raise FloatingPointError(f"Langevin diverged at T={prob.T:g}: reduce step_size (was {eta:.3g})")
        eps_mean, acc_rate = eta, 1.0
    else:
        eps = torch.full((R,), float(step_size) if step_size is not None else 0.1, device=device, dtype=torch.float64)
        U, grad = prob.collapsed(W)
        # phase 1: tune the per-replica step with short trajectories (10 leapfrog steps)
        n_tune = 40
        n_burn = int(math.ceil(burn_in / trajectory_length))
        n_samp = int(math.ceil(sampling_time / trajectory_length))
        bar = _bar(n_tune + n_burn + n_samp, progress, f"HMC T={prob.T:g}")
        accepted, tried = torch.zeros(R, dtype=torch.float64, device=device), 0
        for it in range(n_tune + n_burn + n_samp):
            jitter = 0.8 + 0.4 * torch.rand((), generator=gen, device=device, dtype=torch.float64)
            if it < n_tune:
                n_leap = 10
            else:
                n_leap = max(1, int(math.ceil(float(trajectory_length * jitter) / float(eps.median()))))
            e = (eps * (jitter if it < n_tune else float(trajectory_length * jitter) / (n_leap * float(eps.median()))))
            e = e.to(dtype)[:, None, None]
            if frozen:  # nothing to sample: v | W is integrated exactly
                a = torch.ones(R, dtype=torch.float64, device=device)
            else:
                W, U, grad, a = _hmc_trajectory(prob, W, U, grad, e, n_leap, randn, gen)
            if it < n_tune + n_burn // 2:  # adapt during tuning and the first half of burn-in only
                eps = eps * torch.exp(0.6 * (a - 0.8)).clamp(0.5, 1.5)
            elif it >= n_tune + n_burn:
                accepted += a
                tried += 1
                measure(W, None)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        eps_mean, acc_rate = float(eps.mean()), float((accepted / max(tried, 1)).mean())

    # -------------------------------------------------------------------------------------------
    m = acc.means()
    squeeze = (lambda a: a[..., 0]) if y.ndim == 1 else (lambda a: a)
    Yn = y.reshape(P, D)
    res: dict = dict(
        train_mean=_estimate(squeeze(m["f"])),
        train_error=_jackknife({"f": m["f"]}, lambda d: float(((Yn - d["f"]) ** 2).sum() / P)),
        readout_second_moment=_estimate(np.trace(m["vv"], axis1=1, axis2=2) / D),
        readout_moment_matrix=_estimate(m["vv"]),
        hidden_gram=_estimate(m["KW"]),
        centroid_distance=_estimate(m["cd_matrix"][:, 0, 1] if n_classes == 2 else np.full(R, np.nan)),
        centroid_distance_matrix=_estimate(m["cd_matrix"]),
        class_radius=_estimate(m["radius"]),
        unit_centroid_distance=_estimate(m["unit_cd"]),
        unit_class_radius=_estimate(m["unit_radius"]),
        weight_moments=_estimate(m["Omega"]),
    )
    lab_proj, pcs_proj = weight_moment_projections(m["Omega"], x, Yn, prior_w=prob.lam0, n_components=n_components)
    res.update(weight_moment_label=_estimate(lab_proj), weight_moment_pcs=_estimate(pcs_proj))
    if xt is not None:
        Ytn = yt.reshape(len(yt), D)
        Pt = len(yt)
        bias2 = lambda d: float(((Ytn - d["ft"]) ** 2).sum() / Pt)  # noqa: E731
        variance = lambda d: float((d["ft2"] - d["ft"] ** 2).sum() / Pt)  # noqa: E731
        pair = {"ft": m["ft"], "ft2": m["ft2"]}
        res.update(
            test_mean=_estimate(squeeze(m["ft"])),
            test_bias2=_jackknife(pair, bias2),
            test_variance=_jackknife(pair, variance),
            test_error=_jackknife(pair, lambda d: bias2(d) + variance(d)),
            hidden_gram_test=_estimate(m["KWt"]),
            hidden_gram_test_diag=_estimate(m["KWt_diag"]),
        )
    settings = dict(burn_in=burn_in, sampling_time=sampling_time, trajectory_length=trajectory_length,
                    reduce=reduce, seed=seed, dtype=str(dtype), device=str(device), prior_w=prior_w, prior_v=prior_v,
                    data=geometry.data_fingerprint(x, y))
    return PosteriorSample(
        temperature=prob.T, width=N1, activation=activation, method=method, replicas=R, n_measurements=acc.n,
        step_size=eps_mean, acceptance=acc_rate, reduced_dim=prob.r, wall_time_s=time.perf_counter() - t0,
        settings=settings, **res,
    )


def _hmc_trajectory(prob: _Problem, W, U, grad, eps, n_leap, randn, gen):
    """One Metropolis-adjusted leapfrog trajectory per replica (unit mass). Returns new state and acceptance prob."""
    p = randn(*W.shape)
    H0 = U + 0.5 * (p * p).sum((1, 2)).to(U.dtype)
    Wn, pn = W, p - 0.5 * eps * grad
    for k in range(n_leap):
        Wn = Wn + eps * pn
        Un, gn = prob.collapsed(Wn)
        if k < n_leap - 1:
            pn = pn - eps * gn
    pn = pn - 0.5 * eps * gn
    H1 = Un + 0.5 * (pn * pn).sum((1, 2)).to(Un.dtype)
    log_a = (H0 - H1).to(torch.float64)
    log_a = torch.where(torch.isfinite(log_a), log_a, torch.full_like(log_a, -float("inf")))
    a = torch.exp(log_a.clamp(max=0.0))
    u = torch.rand(a.shape, generator=gen, device=a.device, dtype=torch.float64)
    take = u < a
    tw = take[:, None, None]
    return torch.where(tw, Wn, W), torch.where(take, Un, U), torch.where(tw, gn, grad), a


def _prior_kernel_top_eigenvalue(prob: _Problem, gen, kw) -> float:
    """κ_max of K = E_prior[σ(h)σ(h)ᵀ], estimated from ≥ 4096 prior units (for the default step size)."""
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
