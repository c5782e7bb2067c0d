"""Thermometers for a running chain: gradient-noise temperature (SGD) and the
fluctuation–dissipation thermometer (Yaida 2018, arXiv 1810.00004).

Convention (docs/conventions.md §6, the "sum" convention). With the loss summed over the P training points,
L(θ) = ½ Σ_μ (y^μ − f(x^μ))², and a weight decay γ_l per layer, the potential is

    V(θ) = L(θ) + Σ_l (γ_l/2) |θ_l|²,

and Langevin at temperature T is GD on V with γ_l = T λ_l plus noise:

    θ ← θ − η ∇V(θ) + √(2 η T) ξ,   ξ ~ N(0, I).

Its stationary law (η → 0) is the posterior exp(−V/T) of docs/conventions.md §1.

Gradient-noise temperature of SGD. A minibatch B of size b drawn uniformly without replacement
estimates ∇L by ĝ = (P/b) Σ_{μ∈B} g_μ, g_μ = ∇ℓ_μ, ℓ_μ = ½(y^μ − f(x^μ))². Its covariance is

    Cov(ĝ) = (P²/b) · (P − b)/(P − 1) · C,   C = (1/P) Σ_μ (g_μ − ḡ)(g_μ − ḡ)ᵀ

(with replacement the finite-population factor (P − b)/(P − 1) is 1). The SGD update −η ĝ carries
noise of covariance η² Cov(ĝ); matching its trace to Langevin's 2ηT·I over the d parameters gives
the isotropic-equivalent temperature

    T_SGD = η tr Cov(ĝ) / (2 d).

Factor P between conventions: with the *mean* loss L/P and learning rate η_m, the same dynamics has
η = η_m / P, and T_mean = η_m tr Cov(ĝ/P)/(2d) = T_SGD / P. So T (sum convention, comparable with the
equilibrium curves) = P × T (mean convention); the often-quoted "lr·tr Σ/(2B)" is the mean convention
summed, not averaged, over parameters. SGD noise is anisotropic; T_SGD is only its trace.

Fluctuation–dissipation thermometer. For any update θ' = θ − η(∇V(θ) + ζ) with noise ζ of zero mean
given θ (SGD: ζ = ĝ − ∇L; Langevin: ζ = −√(2T/η) ξ), stationarity of ⟨|θ|²⟩ gives exactly, for the
discrete chain,

    ⟨θ·∇V⟩ − (η/2) ⟨|∇V|²⟩ = (η/2) ⟨|ζ|²⟩,

so T̂ = (⟨θ·∇V⟩ − (η/2)⟨|∇V|²⟩) / d equals T for Langevin (any η) and ⟨T_SGD⟩ for SGD — Yaida's
first relation. ∇V is the full-batch, noise-free gradient of the potential the run actually descends
(with its weight decay). Away from stationarity T̂ drifts: a diagnostic of whether a sampler or an
SGD run is at the temperature claimed. In continuous time the η-term vanishes and the relation is the
virial theorem ⟨θ·∇V⟩ = d T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gdeq.geometry import activation as activation_fn
from gdeq.geometry import activation_derivative, mean_se

__all__ = [
    "ThermometerReading",
    "fdt_monitor",
    "fluctuation_dissipation_temperature",
    "gradient_noise_temperature",
    "gradient_noise_temperature_from_moments",
    "one_hidden_layer_gradient_moments",
    "potential_gradient_terms",
]


@dataclass(frozen=True)
class ThermometerReading:
    """A temperature estimate with its standard error (over replicas, or batch means if R = 1)."""

    temperature: float
    se: float
    naive: float  # ⟨θ·∇V⟩/d without the discretisation term (the continuous-time virial estimate)
    n_samples: int
    replicas: int
    per_replica: np.ndarray

    def agrees_with(self, temperature: float, n_se: float = 3.0) -> bool:
        return bool(abs(self.temperature - temperature) <= n_se * self.se)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


def gradient_noise_temperature_from_moments(
    mean_sq_norm: float | np.ndarray,
    mean_grad_sq_norm: float | np.ndarray,
    *,
    n_params: int,
    n_train: int,
    lr: float,
    batch_size: int,
    loss: str = "sum",
    replacement: bool = False,
) -> float | np.ndarray:
    """T_SGD from per-sample gradient moments (module docstring).

    Args:
        mean_sq_norm: (1/P) Σ_μ |g_μ|², g_μ the gradient of ℓ_μ = ½(y^μ − f^μ)².
        mean_grad_sq_norm: |ḡ|², ḡ = (1/P) Σ_μ g_μ.
        n_params: d, the number of trained parameters.
        n_train: P.
        lr: learning rate in the ``loss`` convention.
        batch_size: b, 1 ≤ b ≤ P.
        loss: ``"sum"`` (update −lr·(P/b)Σ_B g_μ; T in docs/conventions.md units) or ``"mean"`` (update
            −lr·(1/b)Σ_B g_μ; T in mean-loss units, = T_sum / P).
        replacement: minibatches drawn with replacement (no finite-population factor).
    """
    _check_positive("lr", lr)
    if not (1 <= batch_size <= n_train):
        raise ValueError(f"batch_size: must be in [1, n_train = {n_train}], got {batch_size}")
    if loss not in ("sum", "mean"):
        raise ValueError(f"loss: must be 'sum' or 'mean', got {loss!r}")
    tr_C = np.asarray(mean_sq_norm, float) - np.asarray(mean_grad_sq_norm, float)
    fpc = 1.0 if replacement or n_train == 1 else (n_train - batch_size) / (n_train - 1)
    scale = n_train**2 if loss == "sum" else 1.0
    T = lr * scale * fpc * tr_C / (batch_size * 2.0 * n_params)
    return float(T) if np.ndim(T) == 0 else T


def gradient_noise_temperature(
    per_sample_grads: np.ndarray | torch.Tensor,
    *,
    lr: float,
    batch_size: int,
    loss: str = "sum",
    replacement: bool = False,
) -> float:
    """T_SGD from explicit per-sample gradients ``(P, d)`` of ℓ_μ = ½(y^μ − f^μ)² (module docstring)."""
    g = torch.as_tensor(per_sample_grads, dtype=torch.float64)
    if g.ndim != 2:
        raise ValueError(f"per_sample_grads: expected shape (P, d), got {tuple(g.shape)}")
    P, d = g.shape
    return gradient_noise_temperature_from_moments(
        float((g**2).sum(1).mean()), float((g.mean(0) ** 2).sum()), n_params=d, n_train=P, lr=lr,
        batch_size=batch_size, loss=loss, replacement=replacement,
    )


def one_hidden_layer_gradient_moments(
    W: np.ndarray | torch.Tensor,
    v: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    activation: str = "erf",
) -> dict[str, np.ndarray]:
    """Per-sample gradient moments of f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1 under ℓ_μ = ½(y^μ − f^μ)².

    Closed form, O(R P N1 N0), without materialising the (P, d) per-sample gradients:
    |g_μ|² = r_μ² [Σ_i σ(h_iμ)²/N1 + |x_μ|² Σ_i v_i² σ'(h_iμ)²/(N1 N0)], r_μ = y^μ − f^μ.

    Args:
        W: (R, N1, N0) or (N1, N0) first-layer weights; v: (R, N1) or (N1,) readout (scalar output).
        x: (P, N0) inputs; y: (P,) targets.

    Returns:
        dict of arrays over replicas: ``mean_sq_norm`` (1/P)Σ|g_μ|², ``mean_grad_sq_norm`` |ḡ|²,
        and ``n_params``.
    """
    sigma, sigma_prime = activation_fn(activation), activation_derivative(activation)  # unknown names raise
    W = torch.as_tensor(W, dtype=torch.float64)
    v = torch.as_tensor(v, dtype=torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if W.ndim == 2:
        W, v = W[None], v[None]
    R, N1, N0 = W.shape
    P = x.shape[0]
    H = torch.einsum("rin,pn->rpi", W, x) / math.sqrt(N0)  # (R, P, N1)
    Phi = sigma(H)
    dPhi = sigma_prime(H)
    f = torch.einsum("rpi,ri->rp", Phi, v) / math.sqrt(N1)
    r = y[None] - f  # (R, P)
    x2 = (x * x).sum(1)  # (P,)
    sq = r**2 * ((Phi**2).sum(-1) / N1 + x2[None] * ((v[:, None, :] * dPhi) ** 2).sum(-1) / (N1 * N0))
    gbar_v = -torch.einsum("rpi,rp->ri", Phi, r) / (P * math.sqrt(N1))
    gbar_W = -torch.einsum("ri,rpi,rp,pn->rin", v, dPhi, r, x) / (P * math.sqrt(N1 * N0))
    gbar_sq = (gbar_v**2).sum(-1) + (gbar_W**2).sum((-1, -2))
    return dict(
        mean_sq_norm=sq.mean(-1).numpy(), mean_grad_sq_norm=gbar_sq.numpy(), n_params=N1 * N0 + N1
    )


def potential_gradient_terms(
    W: np.ndarray | torch.Tensor,
    v: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    activation: str = "erf",
    weight_decay_w: float = 0.0,
    weight_decay_v: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """θ·∇V and |∇V|² per replica for the one-hidden-layer network of docs/conventions.md §1.

    V = ½ Σ_μ (y^μ − f(x^μ))² + (γ_W/2)|W|² + (γ_v/2)|v|²; for Langevin at temperature T,
    γ_W = T λ0 and γ_v = T λ1 (docs/conventions.md §6). Shapes as in :func:`one_hidden_layer_gradient_moments`.

    Returns ``(theta_dot_grad (R,), grad_sq (R,), n_params)``.
    """
    sigma = activation_fn(activation)  # an unknown name raises here, before any work
    W = torch.as_tensor(W, dtype=torch.float64).clone()
    v = torch.as_tensor(v, dtype=torch.float64).clone()
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if W.ndim == 2:
        W, v = W[None], v[None]
    N1, N0 = W.shape[1:]
    W.requires_grad_(True)
    v.requires_grad_(True)
    H = torch.einsum("rin,pn->rpi", W, x) / math.sqrt(N0)
    f = torch.einsum("rpi,ri->rp", sigma(H), v) / math.sqrt(N1)
    V = 0.5 * ((y[None] - f) ** 2).sum(-1) + 0.5 * weight_decay_w * (W**2).sum((-1, -2)) + 0.5 * weight_decay_v * (
        v**2
    ).sum(-1)
    gW, gv = torch.autograd.grad(V.sum(), (W, v))  # replicas are independent: per-replica gradients
    theta_dot_grad = (W * gW).sum((-1, -2)) + (v * gv).sum(-1)
    grad_sq = (gW**2).sum((-1, -2)) + (gv**2).sum(-1)
    return theta_dot_grad.detach().numpy(), grad_sq.detach().numpy(), N1 * N0 + N1


def fluctuation_dissipation_temperature(
    theta_dot_grad: np.ndarray,
    grad_sq: np.ndarray,
    *,
    lr: float,
    n_params: int,
    n_batches: int = 10,
) -> ThermometerReading:
    """Yaida's thermometer T̂ = (⟨θ·∇V⟩ − (η/2)⟨|∇V|²⟩)/d from samples along a stationary chain.

    Args:
        theta_dot_grad, grad_sq: θ·∇V and |∇V|² at stationary samples, shape (samples,) or
            (samples, replicas); ∇V is the full-batch gradient of the potential the chain descends
            (sum loss plus its weight decay; module docstring).
        lr: the step size η of the chain (sum convention).
        n_params: d.
        n_batches: with one replica, the s.e. comes from this many consecutive batch means.
    """
    _check_positive("lr", lr)
    a = np.asarray(theta_dot_grad, dtype=np.float64)
    b = np.asarray(grad_sq, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"grad_sq: shape {b.shape} differs from theta_dot_grad's {a.shape}")
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    S, R = a.shape
    per_sample = (a - 0.5 * lr * b) / n_params
    per_replica = per_sample.mean(0)
    if R > 1:
        se = mean_se(per_replica)[1]
    else:  # one chain: s.e. from consecutive batch means
        k = max(2, min(n_batches, S))
        se = mean_se(np.array([c.mean() for c in np.array_split(per_sample[:, 0], k)]))[1]
    return ThermometerReading(
        temperature=float(per_sample.mean()), se=float(se), naive=float(a.mean() / n_params),
        n_samples=S, replicas=R, per_replica=per_replica,
    )


def fdt_monitor(every: int = 10, start_fraction: float = 0.5):
    """A Lightning callback for ``gd_dynamics.train(..., callbacks=[monitor])`` that records, every
    ``every`` steps after ``start_fraction`` of the run, θ·∇V and |∇V|² per replica, with V the
    full-batch loss the module descends plus the optimizer's weight decay (Tλ per layer for Langevin,
    none for GD/SGD). ``monitor.reading()`` is then Yaida's T̂ (module docstring), in the units of that
    loss (docs/conventions.md's for the default summed loss).
    """
    import pytorch_lightning as pl

    class FluctuationDissipationMonitor(pl.Callback):
        def __init__(self) -> None:
            self.theta_dot_grad: list[np.ndarray] = []
            self.grad_sq: list[np.ndarray] = []
            self.lr = float("nan")
            self.n_params = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if step < start_fraction * trainer.max_steps or step % every:
                return
            dm = trainer.datamodule
            groups = trainer.optimizers[0].param_groups
            params = [p for g in groups for p in g["params"] if p.requires_grad]
            decay = [float(g.get("weight_decay", 0.0)) for g in groups for p in g["params"] if p.requires_grad]
            with torch.enable_grad():
                loss = pl_module.losses(pl_module.model(dm.x_train), dm.targets("train")).sum()
                grads = torch.autograd.grad(loss, params)  # replicas are independent: each its own gradient
            a = b = 0.0
            with torch.no_grad():
                for p, g, wd in zip(params, grads, decay):
                    full = (g + wd * p).reshape(p.shape[0], -1)
                    theta = p.reshape(p.shape[0], -1)
                    a = a + (theta * full).sum(-1)
                    b = b + (full * full).sum(-1)
            self.theta_dot_grad.append(a.detach().cpu().numpy())
            self.grad_sq.append(b.detach().cpu().numpy())
            self.lr = float(groups[0]["lr"])
            self.n_params = int(sum(p[0].numel() for p in params))

        def reading(self) -> ThermometerReading:
            if not self.theta_dot_grad:
                raise ValueError("fdt_monitor: no samples were recorded (run longer or lower start_fraction/every)")
            return fluctuation_dissipation_temperature(np.stack(self.theta_dot_grad), np.stack(self.grad_sq),
                                                       lr=self.lr, n_params=self.n_params)

    if every < 1 or not 0 <= start_fraction < 1:
        raise ValueError(f"every/start_fraction: need every ≥ 1 and 0 ≤ start_fraction < 1, got {every}, {start_fraction}")
    return FluctuationDissipationMonitor()
