"""The lazy (infinite-width, NTK) baseline of a GD run (Lee et al. 2019, arXiv 1902.06720).

At infinite width full-batch GD from the prior on L = ½ Σ_μ (y^μ − f(x^μ))² (a SUM over the P
training samples, step size η per step — exactly as ``gd_dynamics.train`` counts steps and scales the
loss) is GD of the network linearised around its initialisation: its tangent kernel Θ stays at its
initial value and the ensemble of networks stays Gaussian. With the prior output covariance
𝒦 = K/λ1 (the NNGP kernel) and the NTK Θ on the training inputs X (``equilibrium.tangent_kernels``),
f_{t+1}(X) = f_t(X) − η Θ (f_t(X) − y) gives, after t steps, with A_t = (I − ηΘ)^t,

    train:  f_t(X)  = (I − A_t) y + A_t f_0(X),
    test:   f_t(x*) = f_0(x*) + M_t (y − f_0(X)),   M_t = Θ(x*, X) Θ⁻¹ (I − A_t)
                                                         (= η Θ(x*, X) Σ_{s<t} A_s, defined for singular Θ),

so with f_0 ~ GP(0, 𝒦):

    mean:        E f_t(X) = (I − A_t) y,             E f_t(x*) = M_t y,
    covariance:  Cov_t(X) = A_t 𝒦 A_t,              Cov_t(x*) = 𝒦** − M_t 𝒦_X* − 𝒦*X M_tᵀ + M_t 𝒦 M_tᵀ.

Continuous time (gradient flow, η → 0 at fixed τ = η t) replaces A_t by e^{−Θτ} (Lee et al. 2019,
eqs. 15–16). Everything follows from ONE eigendecomposition Θ = U diag(λ) Uᵀ: A_t = U diag(a_t) Uᵀ
with a_t = (1 − ηλ)^t (or e^{−λτ}) and Θ⁻¹(I − A_t) = U diag(c_t) Uᵀ, c_t = (1 − a_t)/λ (→ ηt at
λ = 0). Means, errors and total variances then cost O(P²) per logged step; per-point variances
cost one P×P×P product per step (``point_variance=False`` skips them).

Errors (per logged step, summed over outputs): ``train_error`` = (1/P) Σ_μ |y^μ − E f_t(x^μ)|² is
the error of the ensemble-mean predictor (the bias², what ``bridge.maps.mean_predictor_error``
estimates from replicas); ``train_variance`` = (1/P) Σ_μ Var f_t(x^μ); their sum is the expected
error of a single network (a replica's ``Trajectory.train_error``). The same on the test set.

The lazy limit does not depend on the width N1; ``width`` is recorded so that the result can be
checked against, and compared with, a finite-width run. Only the kernels depend on the architecture
(``equilibrium.tangent_kernels``): ``width=[N1, .., NL]`` gives the deep fully connected network's
recursion, ``architecture="cnn"`` with ``patch_size`` and ``image_shape`` the one-hidden-layer CNN
with non-overlapping patches; everything above is kernel-agnostic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from gdeq import geometry
from gdeq.equilibrium import TangentKernels, tangent_kernels
from gdeq.equilibrium.ntk import NTK_ACTIVATIONS
from gdeq.gd_dynamics.callbacks import log_schedule

__all__ = ["THREE_WAY_OBSERVABLES", "LazyDynamics", "LazyTrajectory", "ThreeWay", "lazy_baseline", "lazy_dynamics", "lazy_not_covered",
           "lazy_trajectory", "symmetric_eigh", "three_way"]


def symmetric_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric float64 matrix: the same solver as the
    rest of equilibrium (``equilibrium.linalg.eigh``: LAPACK's divide-and-conquer driver through scipy
    on CPU, ``torch.linalg.eigh`` elsewhere)."""
    from gdeq.equilibrium.linalg import eigh

    return eigh(matrix)


@dataclass(frozen=True)
class LazyTrajectory:
    """The lazy ensemble at every listed step (n = steps, P = train, Pt = test points, [D] outputs).

    - ``step`` (n,): GD steps; ``time`` (n,): η·step (continuous time τ);
    - ``train_mean`` (n, P[, D]): ensemble-mean prediction E f_t(x^μ) on the training inputs;
    - ``train_point_variance`` (n, P): Var f_t(x^μ) (per output; None with ``point_variance=False``);
    - ``train_error`` (n,): (1/P) Σ|y − E f_t|² (mean predictor = bias²), ``train_variance`` (n,):
      (1/P) Σ_μ Var f_t(x^μ) summed over outputs; ``train_gibbs_error`` = the two together;
    - ``test_*``: the same on the test set (None without one);
    - ``ntk_eigenvalues`` (P,): spectrum of Θ on the training set; ``stable``: η λ_max < 2 (else
      discrete GD diverges along the top eigendirections); metadata as in a run.
    """

    step: np.ndarray
    time: np.ndarray
    train_mean: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    train_point_variance: np.ndarray | None
    test_mean: np.ndarray | None
    test_error: np.ndarray | None
    test_variance: np.ndarray | None
    test_point_variance: np.ndarray | None
    ntk_eigenvalues: np.ndarray
    lr: float
    width: int | tuple[int, ...]
    activation: str
    prior_w: float
    prior_v: float | tuple[float, ...]
    continuous: bool
    stable: bool
    data_fingerprint: str
    notes: tuple[str, ...] = field(default=())
    architecture: str = "fc"

    @property
    def train_bias2(self) -> np.ndarray:
        """(1/P) Σ|y − E f_t|² (the same as ``train_error``)."""
        return self.train_error

    @property
    def train_gibbs_error(self) -> np.ndarray:
        """Expected single-network training MSE: bias² + variance."""
        return self.train_error + self.train_variance

    @property
    def test_bias2(self) -> np.ndarray | None:
        return self.test_error

    @property
    def test_gibbs_error(self) -> np.ndarray | None:
        return None if self.test_error is None else self.test_error + self.test_variance

    @property
    def n_logged(self) -> int:
        return len(self.step)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _as_float64(x, device: torch.device) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    return x.to(device=device, dtype=torch.float64)


def _apply(B: torch.Tensor, coef: torch.Tensor, y_eig: torch.Tensor) -> torch.Tensor:
    """out[n] = B diag(coef[n]) ỹ for every step n, as ONE (m×P)·(P×nD) product: (n, m, D)."""
    n, P = coef.shape
    D = y_eig.shape[1]
    G = (coef[:, :, None] * y_eig[None]).permute(1, 0, 2).reshape(P, n * D)
    return (B @ G).reshape(B.shape[0], n, D).permute(1, 0, 2)


class LazyDynamics:
    """Θ and 𝒦 on a data set with Θ's eigendecomposition, ready to evaluate any number of times.

    Build with :func:`lazy_dynamics`; :meth:`trajectory` gives the ensemble at listed steps,
    :meth:`covariance` the full covariance matrices at one step.
    """

    def __init__(self, kernels: TangentKernels, y_train: torch.Tensor, y_test: torch.Tensor | None, *,
                 lr: float, width: int | tuple[int, ...], fingerprint: str, squeeze: bool = False) -> None:
        self.kernels, self.lr, self.fingerprint = kernels, float(lr), fingerprint
        self.width = int(width) if isinstance(width, (int, np.integer)) else tuple(int(w) for w in width)
        self.squeeze = squeeze  # targets were (P,): return (n, P) means
        self.y_train, self.y_test = y_train, y_test
        t0 = time.perf_counter()
        lam, U = symmetric_eigh(kernels.ntk_train)
        t1 = time.perf_counter()
        self.eigenvalues = lam.clamp_min(0.0)  # Θ is PSD; round-off negatives would grow under GD
        self.U = U
        self._y_eig = U.T @ y_train  # (P, D)
        self._theta_eig = None if kernels.ntk_test_train is None else kernels.ntk_test_train @ U  # Θ(x*, X) U
        #: wall seconds of the eigendecomposition and of the basis changes (benchmarks/bench_lazy.py)
        self.seconds = dict(eigh=t1 - t0, basis=time.perf_counter() - t1)
        self._K_eig_cache: torch.Tensor | None = None
        self._cross_eig_cache: torch.Tensor | None = None

    # the variances need 𝒦 in Θ's eigenbasis: two more P×P×P products, made only when asked for
    @property
    def _K_eig(self) -> torch.Tensor:
        """Uᵀ 𝒦 U, (P, P)."""
        if self._K_eig_cache is None:
            self._K_eig_cache = self.U.T @ (self.kernels.nngp_train @ self.U)
        return self._K_eig_cache

    @property
    def _cross_eig(self) -> torch.Tensor:
        """𝒦(x*, X) U, (Pt, P)."""
        if self._cross_eig_cache is None:
            self._cross_eig_cache = self.kernels.nngp_test_train @ self.U
        return self._cross_eig_cache

    # --- the two spectral factors ------------------------------------------------------------------
    def factors(self, steps: torch.Tensor, continuous: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """a = (1 − ηλ)^t (or e^{−λτ}) and c = (1 − a)/λ (→ ηt at λ = 0), each (n, P)."""
        t = steps.to(self.eigenvalues)[:, None]
        lam = self.eigenvalues[None, :].expand(t.shape[0], -1)
        eta = self.lr
        positive = lam > 0
        safe = torch.where(positive, lam, torch.ones_like(lam))
        if continuous:
            tau = eta * t
            a = torch.exp(-lam * tau)
            c = torch.where(positive, -torch.expm1(-lam * tau) / safe, tau.expand_as(lam).clone())
            return a, c
        x = eta * lam
        a = torch.pow(1.0 - x, t)  # integer t: well defined for 1 − ηλ < 0 as well
        small = x < 1.0  # accurate 1 − a for small ηλ: −expm1(t log1p(−ηλ))
        one_minus_a = torch.where(small, -torch.expm1(t * torch.log1p(-x.clamp_max(1.0 - 1e-16))), 1.0 - a)
        c = torch.where(positive, one_minus_a / safe, (eta * t).expand_as(lam).clone())
        return a, c

    def trajectory(self, steps: Sequence[int] | np.ndarray, *, continuous: bool = False,
                   variance: bool = True, point_variance: bool = True) -> LazyTrajectory:
        """The lazy ensemble after each of ``steps`` GD steps (see :class:`LazyTrajectory`).

        ``variance=False`` skips the variances (NaN; saves two P×P×P products: then the cost after the
        eigendecomposition is O(P²) per step); ``point_variance=False`` only the per-point ones."""
        st = np.asarray(steps)
        _check(st.ndim == 1 and len(st) >= 1 and np.all(st >= 0) and np.all(np.mod(st, 1) == 0),
               f"steps: must be non-negative integers, got {steps!r}")
        st = st.astype(np.int64)
        a, c = self.factors(torch.as_tensor(st, dtype=torch.float64, device=self.U.device), continuous)
        U, y, P = self.U, self.y_train, self.y_train.shape[0]
        D = y.shape[1]
        point_variance = point_variance and variance
        # mean: U ((1 − a) ∘ ỹ), all steps in one product
        g = 1.0 - a  # (n, P)
        train_mean = _apply(U, g, self._y_eig)
        train_error = ((y[None] - train_mean) ** 2).sum((1, 2)) / P
        train_variance = torch.full_like(train_error, float("nan"))
        if variance:
            train_variance = D * (a * a * torch.diagonal(self._K_eig)[None]).sum(1) / P  # tr(A 𝒦 A)/P per output
        train_pv = None
        if point_variance:
            train_pv = torch.stack([((U * ai) @ self._K_eig * (U * ai)).sum(1) for ai in a])
        test = dict(test_mean=None, test_error=None, test_variance=None, test_point_variance=None)
        if self._theta_eig is not None:
            Th, yt = self._theta_eig, self.y_test
            Pt = Th.shape[0]
            test_mean = _apply(Th, c, self._y_eig)
            test_variance = torch.full((len(st),), float("nan"), dtype=torch.float64, device=U.device)
            if variance:
                # Var f_t(x*) = 𝒦** − 2 [M 𝒦_X*]_** + [M 𝒦 Mᵀ]_**, M = Th diag(c) Uᵀ
                Cr = self._cross_eig
                prior = torch.diagonal(self.kernels.nngp_test)  # (Pt,)
                cross = c @ (Th * Cr).sum(0)  # Σ_i diag(M 𝒦_X*)_i, (n,)
                W = (Th.T @ Th) * self._K_eig  # Σ_i [M 𝒦 Mᵀ]_ii = cᵀ W c
                quad = ((c @ W) * c).sum(1)
                test_variance = D * (prior.sum() - 2.0 * cross + quad) / Pt
            test["test_mean"] = test_mean
            test["test_variance"] = test_variance
            if yt is not None:
                test["test_error"] = ((yt[None] - test_mean) ** 2).sum((1, 2)) / Pt
            if point_variance:
                test["test_point_variance"] = torch.stack([
                    prior - 2.0 * (Th * ci * Cr).sum(1) + ((Th * ci) @ self._K_eig * (Th * ci)).sum(1) for ci in c])
        to_np = lambda v: None if v is None else v.detach().cpu().numpy()  # noqa: E731
        mean_np = to_np(train_mean)
        test_mean_np = to_np(test["test_mean"])
        if self.squeeze:
            mean_np = mean_np[..., 0]
            test_mean_np = None if test_mean_np is None else test_mean_np[..., 0]
        lam_max = float(self.eigenvalues.max())
        stable = continuous or self.lr * lam_max < 2.0
        notes = () if stable else (
            f"lr·λ_max(Θ) = {self.lr * lam_max:.3g} ≥ 2: discrete GD diverges along the top NTK eigendirections",)
        return LazyTrajectory(
            step=st, time=self.lr * st.astype(np.float64), train_mean=mean_np, train_error=to_np(train_error),
            train_variance=to_np(train_variance), train_point_variance=to_np(train_pv), test_mean=test_mean_np,
            test_error=to_np(test["test_error"]), test_variance=to_np(test["test_variance"]),
            test_point_variance=to_np(test["test_point_variance"]), ntk_eigenvalues=to_np(self.eigenvalues),
            lr=self.lr, width=self.width, activation=self.kernels.activation, prior_w=self.kernels.prior_w,
            prior_v=self.kernels.prior_v, continuous=bool(continuous), stable=bool(stable),
            data_fingerprint=self.fingerprint, notes=notes, architecture=self.kernels.architecture,
        )

    def propagators(self, step: int, *, continuous: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """A_t (P, P) and M_t (Pt, P) at one step: a network that starts at f_0 ends, in the lazy limit, at
        f_t(X) = (I − A_t) y + A_t f_0(X) and f_t(x*) = f_0(x*) + M_t (y − f_0(X))."""
        a, c = self.factors(torch.tensor([float(step)], dtype=torch.float64, device=self.U.device), continuous)
        A = (self.U * a[0]) @ self.U.T
        M = None if self._theta_eig is None else (self._theta_eig * c[0]) @ self.U.T
        return A.cpu().numpy(), None if M is None else M.cpu().numpy()

    def covariance(self, step: int, *, continuous: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Full covariance matrices (per output) of f_t on train (P, P) and test (Pt, Pt) at one step."""
        a, c = self.factors(torch.tensor([float(step)], dtype=torch.float64, device=self.U.device), continuous)
        A = (self.U * a[0]) @ self.U.T
        train = A @ self.kernels.nngp_train @ A
        if self._theta_eig is None:
            return train.cpu().numpy(), None
        M = (self._theta_eig * c[0]) @ self.U.T
        KX0 = self.kernels.nngp_test_train.T
        test = self.kernels.nngp_test - M @ KX0 - KX0.T @ M.T + M @ self.kernels.nngp_train @ M.T
        return train.cpu().numpy(), test.cpu().numpy()


def _is_width(w: Any) -> bool:
    return isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1


def lazy_dynamics(x_train, y_train, *, lr: float, width: int | Sequence[int], activation: str = "erf",
                  prior_w: float = 1.0, prior_v: float | Sequence[float] = 1.0, x_test=None, y_test=None,
                  architecture: str = "fc", patch_size: int | None = None, image_shape=None,
                  device: str | torch.device | None = None, nodes: int = 64) -> LazyDynamics:
    """Kernels and the eigendecomposition of Θ for :func:`lazy_trajectory` (arguments as there)."""
    _check(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, f"lr: must be a finite number > 0, got {lr!r}")
    _check(_is_width(width) or (isinstance(width, (list, tuple)) and len(width) >= 1 and all(map(_is_width, width))),
           f"width: must be a positive integer or a non-empty list of them, got {width!r}")
    _check(isinstance(activation, str) and activation in NTK_ACTIVATIONS,
           f"activation: must be one of {list(NTK_ACTIVATIONS)}, got {activation!r}")
    dev = torch.device(device) if device is not None else (
        x_train.device if isinstance(x_train, torch.Tensor) else torch.device("cpu"))
    X = _as_float64(x_train, dev)
    _check(X.ndim == 2 and X.shape[0] >= 1, f"x_train: must be a non-empty (P, N0) array, got shape {tuple(X.shape)}")
    Y = _as_float64(y_train, dev)
    _check(Y.ndim in (1, 2) and Y.shape[0] == X.shape[0],
           f"y_train: must have shape ({X.shape[0]},) or ({X.shape[0]}, D) like x_train, got {tuple(Y.shape)}")
    squeeze = Y.ndim == 1
    Y2 = Y[:, None] if squeeze else Y
    Yt = None
    if y_test is not None:
        _check(x_test is not None, "y_test: given without x_test")
        Yt = _as_float64(y_test, dev)
        n_test = np.shape(x_test)[0]
        _check(Yt.shape[0] == n_test and Yt.ndim == Y.ndim and Yt.shape[1:] == Y.shape[1:],
               f"y_test: must have shape ({n_test},{'' if squeeze else f' {Y.shape[1]}'}) like y_train, got {tuple(Yt.shape)}")
        Yt = Yt[:, None] if squeeze else Yt
    kernels = tangent_kernels(X, x_test, activation=activation, prior_w=prior_w, prior_v=prior_v, width=width,
                              architecture=architecture, patch_size=patch_size, image_shape=image_shape,
                              device=dev, nodes=nodes)
    return LazyDynamics(kernels, Y2, Yt, lr=lr, width=width, squeeze=squeeze,
                        fingerprint=geometry.data_fingerprint(x_train, y_train))


def lazy_trajectory(x_train, y_train, *, steps: int | Sequence[int], lr: float, width: int | Sequence[int],
                    activation: str = "erf", prior_w: float = 1.0, prior_v: float | Sequence[float] = 1.0,
                    x_test=None, y_test=None, architecture: str = "fc", patch_size: int | None = None,
                    image_shape=None, continuous: bool = False,
                    point_variance: bool = True, variance: bool = True, log_points: int = 100, device: str | torch.device | None = None,
                    nodes: int = 64) -> LazyTrajectory:
    """Mean, variance and errors of the infinite-width GD ensemble at every listed step (module docstring).

    Args:
        x_train, y_train: (P, N0) inputs and (P,) or (P, D) targets (numpy or torch).
        steps: the GD steps to report (a sequence of non-negative integers), or one integer S: the same
            ``log_points`` log-spaced steps in 0..S as ``gd_dynamics.train``'s default schedule.
        lr: learning rate η per step on ½Σ(y − f)² (as ``gd_dynamics.train``).
        width: N1 of the run this baseline accompanies (recorded; the lazy limit does not depend on it);
            a list [N1, .., NL] selects the deep fully connected network (its number of layers matters),
            with ``architecture="cnn"`` the number of channels Nc.
        activation, prior_w, prior_v: σ, λ0, λ1 (docs/conventions.md §1); deep: ``prior_v`` one λ or the
            list λ_1..λ_L (λ_L the readout's).
        architecture, patch_size, image_shape: "fc", or "cnn" with non-overlapping ``patch_size`` ×
            ``patch_size`` patches of (C, H, W) images (the model of ``equilibrium.conv``).
        x_test, y_test: optional test inputs (and targets, for the test error).
        continuous: gradient flow at time τ = η·step instead of the discrete steps.
        point_variance: also the per-point variances (one P×P×P product per step).
        variance: the variances at all (False: means and errors only, O(P²) per step after the eigh).
        device: where the float64 computation runs (default: the input's device).
    """
    if isinstance(steps, (int, np.integer)):
        _check(steps >= 1, f"steps: must be ≥ 1 (or a list of steps), got {steps!r}")
        _check(log_points >= 2, f"log_points: must be ≥ 2, got {log_points!r}")
        steps = log_schedule(int(steps), log_points, "log")
    else:
        arr = np.asarray(steps)
        _check(arr.ndim == 1 and len(arr) >= 1 and np.all(np.mod(arr, 1) == 0) and np.all(arr >= 0),
               f"steps: must be an integer ≥ 1 or a list of non-negative integers, got {steps!r}")
    dyn = lazy_dynamics(x_train, y_train, lr=lr, width=width, activation=activation, prior_w=prior_w, prior_v=prior_v,
                        x_test=x_test, y_test=y_test, architecture=architecture, patch_size=patch_size,
                        image_shape=image_shape, device=device, nodes=nodes)
    return dyn.trajectory(steps, continuous=continuous, variance=variance, point_variance=point_variance)


# ------------------------------------------------------------------------------------------------
# beside a run: the lazy baseline at the run's own steps, and the three-way comparison
# ------------------------------------------------------------------------------------------------
#: observables GD, the lazy theory and equilibrium all have: name -> (description, run side, lazy side,
#: equilibrium side as a function of the curve)
THREE_WAY_OBSERVABLES: dict[str, str] = {
    "train_error": "training error of the mean predictor (1/P)Σ|y − f̄|² (bias²)",
    "test_error": "test error of the mean predictor (bias²)",
    "gibbs_train_error": "expected training error of one network (bias² + variance)",
    "gibbs_test_error": "expected test error of one network (bias² + variance)",
    "train_variance": "variance of f over the ensemble, mean over training points",
    "test_variance": "variance of f over the ensemble, mean over test points",
}


def lazy_not_covered(trajectory: Any) -> str | None:
    """Why the lazy theory has no kernel for this run's network (None: it has): a CNN must cut its
    images into non-overlapping patches (stride = kernel size, or kernel size 1)."""
    identity = _attr(trajectory, "model_identity") or {}
    config = _attr(trajectory, "config") or {}
    if str(identity.get("architecture") or config.get("architecture") or "fc") != "cnn":
        return None
    k = int(identity.get("kernel_size") or config.get("kernel_size") or 0)
    stride = int(identity.get("stride") or config.get("stride", 1) or 1)
    if k != 1 and stride != k:
        return (f"the lazy CNN theory covers non-overlapping patches (stride = kernel_size); the run has "
                f"kernel_size={k}, stride={stride}")
    padding = int(identity.get("padding") or config.get("padding") or 0)
    pooling = str(identity.get("pooling") or config.get("pooling") or "none")
    if padding or pooling != "none":
        return f"the lazy CNN theory has no padding and no pooling; the run has padding={padding}, pooling={pooling!r}"
    return None


def lazy_baseline(trajectory: Any, x_train, y_train, x_test=None, y_test=None, *, continuous: bool = False,
                  point_variance: bool = False) -> LazyTrajectory:
    """The lazy theory at a run's logged steps, learning rate, width, activation and priors.

    The inputs must be the run's (checked with ``geometry.data_fingerprint``). The lazy limit describes
    full-batch GD from the prior; for other optimizers the result is returned with a note saying so.
    """
    fingerprint = _attr(trajectory, "data_fingerprint")
    if fingerprint and geometry.data_fingerprint(x_train, y_train) != fingerprint:
        raise ValueError("x_train: not the run's training data (data_fingerprint differs)")
    width = _attr(trajectory, "width")
    identity = _attr(trajectory, "model_identity") or {}
    config = _attr(trajectory, "config") or {}
    architecture = str(identity.get("architecture") or config.get("architecture") or "fc")
    prior_v: float | list[float] = float(_attr(trajectory, "prior_v"))
    arch: dict[str, Any] = {}
    if isinstance(width, (list, tuple)) and len(width) > 1 and architecture == "fc":
        width = [int(w) for w in width]  # deep FC: the recursion over every layer, each with its own λ
        lams = identity.get("prior_precisions") or []
        if len(lams) == len(width) + 1:
            prior_v = [float(l) for l in lams[1:]]
    else:
        width = int(width[0] if isinstance(width, (list, tuple)) else width)
    if architecture == "cnn":
        reason = lazy_not_covered(trajectory)
        if reason:
            raise ValueError(f"trajectory: {reason}")
        k = int(identity.get("kernel_size") or config.get("kernel_size"))
        arch = dict(architecture="cnn", patch_size=k, image_shape=tuple(identity.get("image_shape") or config.get("image_shape")))
    lt = lazy_trajectory(x_train, y_train, steps=np.asarray(_attr(trajectory, "step")), lr=float(_attr(trajectory, "lr")),
                         width=width, activation=str(_attr(trajectory, "activation")),
                         prior_w=float(_attr(trajectory, "prior_w")), prior_v=prior_v, **arch,
                         x_test=x_test, y_test=y_test, continuous=continuous, point_variance=point_variance)
    optimizer = str(_attr(trajectory, "optimizer") or "gd")
    caveats = []
    if optimizer != "gd":
        caveats.append(f"the run used optimizer={optimizer!r}; the lazy theory describes full-batch GD")
    if config.get("init", "prior") != "prior":
        caveats.append("the run did not start from the prior; the lazy ensemble does")
    if config.get("bias"):
        caveats.append("the run's network has biases; the lazy theory's does not")
    if caveats:
        from dataclasses import replace

        lt = replace(lt, notes=lt.notes + tuple(caveats))
    return lt


def _attr(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


@dataclass(frozen=True)
class ThreeWay:
    """One observable along a run: GD (replica mean ± s.e.), the lazy theory at the same steps, and
    equilibrium at T_eff(t) per theory level (T_eff from that level's map). Arrays (n,) per logged step."""

    observable: str
    description: str
    step: np.ndarray
    run: np.ndarray
    run_se: np.ndarray
    lazy: np.ndarray
    equilibrium: dict[str, np.ndarray]

    def agreement(self, n_se: float = 3.0) -> dict[str, int]:
        """Logged steps where GD lies within n_se s.e. of the lazy theory and of each level."""
        out = {"lazy": int(np.sum(np.abs(self.run - self.lazy) <= n_se * self.run_se))}
        for lv, v in self.equilibrium.items():
            out[lv] = int(np.sum(np.abs(self.run - v) <= n_se * self.run_se))
        return out


def _run_side(trajectory: Any, observable: str) -> tuple[np.ndarray, np.ndarray]:
    from gdeq.geometry import jackknife, mean_se

    from .maps import mean_predictor_error

    if observable in ("train_error", "test_error"):
        split = observable.split("_")[0]
        return mean_predictor_error(_attr(trajectory, f"{split}_predictions"), _attr(trajectory, f"y_{split}"))
    if observable.startswith("gibbs_"):
        return mean_se(np.asarray(_attr(trajectory, observable[len("gibbs_"):]), dtype=np.float64), axis=1)
    preds = np.asarray(_attr(trajectory, f"{observable.split('_')[0]}_predictions"), dtype=np.float64)
    P = preds.shape[2]

    def variance(f: np.ndarray) -> np.ndarray:  # unbiased over replicas, mean over points, summed over outputs
        return f.var(axis=1, ddof=1).reshape(f.shape[0], -1).sum(1) / P

    return jackknife(variance, preds, axis=1)


def three_way(trajectory: Any, lazy: LazyTrajectory, curves: dict[str, Any], maps: dict[str, Any]
              ) -> dict[str, ThreeWay]:
    """GD vs lazy theory vs equilibrium at T_eff(t) for every observable in :data:`THREE_WAY_OBSERVABLES`
    that the run, the lazy result and the curves all have (test observables need a test set)."""
    from .maps import interpolate_curve

    steps = np.asarray(_attr(trajectory, "step"))
    if lazy.step.shape != steps.shape or np.any(lazy.step != steps):
        raise ValueError("lazy: not computed at the run's logged steps (use bridge.lazy.lazy_baseline)")
    lazy_side = dict(train_error=lazy.train_error, test_error=lazy.test_error,
                     gibbs_train_error=lazy.train_gibbs_error, gibbs_test_error=lazy.test_gibbs_error,
                     train_variance=lazy.train_variance, test_variance=lazy.test_variance)

    def eq_side(curve: Any, observable: str) -> np.ndarray | None:
        get = lambda k: None if getattr(curve, k, None) is None else np.asarray(getattr(curve, k), float)  # noqa: E731
        if observable == "gibbs_train_error":
            a, b = get("train_error"), get("train_variance")
            return None if a is None or b is None else a + b
        field_name = {"test_error": "test_bias2", "gibbs_test_error": "test_error"}.get(observable, observable)
        return get(field_name)

    out: dict[str, ThreeWay] = {}
    for name, description in THREE_WAY_OBSERVABLES.items():
        lz = lazy_side[name]
        if lz is None or np.all(np.isnan(lz)):
            continue
        split = "test" if "test" in name else "train"
        if _attr(trajectory, f"{split}_predictions") is None or (
                "error" in name and _attr(trajectory, f"y_{split}") is None):
            continue
        try:
            run, se = _run_side(trajectory, name)
        except (ValueError, TypeError):
            continue
        eq = {}
        for lv, curve in curves.items():
            g = eq_side(curve, name)
            if g is not None and np.isfinite(g).any() and lv in maps:
                eq[lv] = interpolate_curve(np.asarray(curve.temperature, float), g, maps[lv].temperature)
        out[name] = ThreeWay(name, description, steps.astype(np.float64), np.asarray(run, float),
                             np.asarray(se, float), np.asarray(lz, float), eq)
    return out
