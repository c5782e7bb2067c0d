"""Theory levels: each level is a function that returns the posterior hidden kernel ⟨K_W⟩(T).

A level receives the solved problem (:class:`LevelContext`: kernels, eigenbasis, temperatures,
saddle point) and returns :class:`PosteriorKernels` — the train block of ⟨K_W⟩(T) and, with a
test set, the test×test block, either in the spectral form
:class:`~equilibrium.posterior.TiltedKernel` (cheap levels) or as dense tensors (nT, n, n). All
geometry is then computed from these kernels by shared code (``equilibrium.curve``).

Levels:

- ``nngp``: infinite width. Q = 1, ⟨K_W⟩ = K, weights at their prior moments.
- ``gaussian``: Q = Q*(T) from the effective action; ⟨K_W⟩ = K + K J K − (μᵀJμ)μμᵀ (docs/conventions.md §4,
  docs/theory.md §4): leading order in 1/N1 with Gaussian-equivalent single-neuron statistics.
- ``single_neuron``: the single-neuron effective measure with the exact non-linear activation
  (``equilibrium.single_neuron``). Contract:
  ``equilibrium.single_neuron.posterior_kernel(x_train, y_train, x_test, temperatures, Q, *,
  width, activation, prior_w, prior_v) -> (train (nT, P, P), test (nT, Pt, Pt) | None)``
  (numpy or torch, float64), test = the test×test block of ⟨K_W⟩ when ``x_test`` is given.
- ``cavity``: the single-unit cavity measure with self-consistent fields (``equilibrium.cavity``,
  docs/theory.md B.5); returns its own predictor, λ1⟨v²⟩ and weight moments in
  ``PosteriorKernels.observables`` and its regime indicator in ``PosteriorKernels.regime``.
- ``cavity_fluct``: the same measure with the cavity covariance closed on the fluctuating cavity mean
  (``cavity_curve(closure="fluct")``, docs/theory.md B.10: Σ⁻¹ = T + c·K_post/λ1 in every direction of the basis).
  Measured, not the default: as good as ``cavity`` in regime, and its fixed point runs away in the corner
  (α ≥ 2, T ≤ 0.1) where ``cavity`` fails.
- ``condensate``: one unit sampled exactly (HMC) on a Gaussian-equivalent bulk whose readout scale relaxes with it
  (``equilibrium.condensate``, docs/theory.md B.12): the readout condensation onto one unit at α > 1, low T, that
  every single-unit closure misses; its own predictor, λ1⟨v²⟩, ⟨K_W⟩ and weights; reduces to ``gaussian`` where no
  unit condenses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .action import Spectrum
from .kernels import KernelBlocks
from .posterior import Tilt, TiltedKernel, gaussian_tilt, zero_tilt
from .cavity import cavity_curve
from .condensate import condensate_curve
from .single_neuron import single_neuron_curve

__all__ = ["LEVELS", "LevelContext", "PosteriorKernels", "Level", "available_levels"]


@dataclass(frozen=True)
class LevelContext:
    """Everything a level may use (torch float64 on one device; ``Q`` numpy, (nT,) or (nT, D, D))."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    kernels: KernelBlocks
    spectrum: Spectrum
    temperatures: np.ndarray
    Q: np.ndarray
    width: float
    activation: Any
    prior_w: float
    prior_v: float
    test_rotated: torch.Tensor | None = None  # K(X_test, X) U, when already computed
    y_test: torch.Tensor | None = None  # test labels, for levels with their own predictor


@dataclass(frozen=True)
class PosteriorKernels:
    """⟨K_W⟩(T): ``train`` (TiltedKernel or (nT, P, P)), ``test`` (TiltedKernel, (nT, Pt, Pt) or
    None); ``tilt`` the single-neuron tilt J(T) when the level has one in spectral form (it gives
    the weight observables), else None."""

    train: TiltedKernel | torch.Tensor
    test: TiltedKernel | torch.Tensor | None
    tilt: Tilt | None
    # a level with its own predictor (``cavity``) returns it here, by TemperatureCurve field name
    # (train_error, train_variance, test_error, test_bias2, test_variance, test_prediction,
    # test_prediction_variance, readout_second_moment, weight_moments, weight_label_moment); a level that
    # keeps the Q* predictor but measures the weights (``single_neuron``) returns only the last two
    observables: dict[str, np.ndarray] | None = None
    # the level's own regime indicator: (in_regime (nT,) bool, reasons per temperature)
    regime: tuple[np.ndarray, tuple[str, ...]] | None = None
    # convergence of the level's own self-consistent fields per temperature (None: no solver of its own);
    # the curve's ``converged`` carries it, and where it is False every observable is NaN (docs/theory.md B.6)
    converged: np.ndarray | None = None
    # a Monte-Carlo level's standard errors, by TemperatureCurve field name (``curve.sem(name)``)
    standard_errors: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Level:
    """A named theory level: ``posterior(ctx)`` and whether it uses the saddle point Q*."""

    name: str
    description: str
    uses_saddle: bool
    posterior: Callable[[LevelContext], PosteriorKernels]


def _spectral(ctx: LevelContext, tilt: Tilt) -> PosteriorKernels:
    """⟨K_W⟩ = K + K J K − (μᵀJμ) μμᵀ on the train rows (K = U diag κ Uᵀ, so K J K = F J̃ Fᵀ with
    F = U diag κ) and on the test rows (F0 = K0X U)."""
    sp, kb = ctx.spectrum, ctx.kernels
    F = sp.U * sp.kappa
    F0 = ctx.test_rotated if ctx.test_rotated is not None else (
        None if kb.test_train is None else kb.test_train @ sp.U)
    mean = mean0 = gamma = None
    if kb.has_mean:
        mean, mean0 = kb.mean_train, kb.mean_test
        gamma = tilt.quadratic((sp.U.T @ mean)[:, None])[:, 0, 0]
    train = TiltedKernel(kb.train, F, tilt, mean, gamma)
    test = None if F0 is None else TiltedKernel(kb.test, F0, tilt, mean0, gamma)
    return PosteriorKernels(train=train, test=test, tilt=tilt)


def _nngp(ctx: LevelContext) -> PosteriorKernels:
    return _spectral(ctx, zero_tilt(ctx.spectrum.U, len(ctx.temperatures)))


def _gaussian(ctx: LevelContext) -> PosteriorKernels:
    return _spectral(ctx, gaussian_tilt(ctx.spectrum, ctx.temperatures, ctx.Q, width=ctx.width))


def _single_neuron(ctx: LevelContext) -> PosteriorKernels:
    to = lambda a: None if a is None else torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a,  # noqa: E731
                                                         dtype=torch.float64, device=ctx.x_train.device)
    r = single_neuron_curve(
        ctx.x_train.cpu().numpy(), ctx.y_train.cpu().numpy(), ctx.temperatures, ctx.Q,
        x_test=None if ctx.x_test is None else ctx.x_test.cpu().numpy(),
        width=ctx.width, activation=ctx.activation, prior_w=ctx.prior_w, prior_v=ctx.prior_v,
    )
    # its predictor and λ1⟨v²⟩ are the Q* GP's (the level's definition); the weights come from its measure
    return PosteriorKernels(train=to(r.hidden_gram), test=to(r.hidden_gram_test), tilt=None,
                            observables=dict(weight_moments=r.weight_moments, weight_label_moment=r.weight_label_moment),
                            regime=(r.in_regime, r.regime_reason), converged=r.converged)


def _cavity(ctx: LevelContext, closure: str = "shape") -> PosteriorKernels:
    """Level ``cavity`` (equilibrium.cavity): ⟨K_W⟩, predictor, λ1⟨v²⟩ and weights from one measure;
    ``closure`` of the cavity covariance ("fluct": level ``cavity_fluct``)."""
    if ctx.y_train.ndim != 1:
        raise ValueError("level: 'cavity' needs ±1 labels of shape (P,) (binary task); use 'gaussian' for one-hot")
    to = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64, device=ctx.x_train.device)  # noqa: E731
    r = cavity_curve(
        ctx.x_train.cpu().numpy(), ctx.y_train.cpu().numpy(), ctx.temperatures, ctx.Q, width=ctx.width,
        activation=ctx.activation, prior_w=ctx.prior_w, prior_v=ctx.prior_v,
        x_test=None if ctx.x_test is None else ctx.x_test.cpu().numpy(),
        y_test=None if ctx.y_test is None else ctx.y_test.cpu().numpy(), device=ctx.x_train.device,
        closure=closure,
    )
    obs = dict(train_error=r.train_error, train_variance=r.train_variance, test_error=r.test_error,
               test_bias2=r.test_bias2, test_variance=r.test_variance, test_prediction=r.test_mean,
               test_prediction_variance=r.test_point_variance, readout_second_moment=r.readout_second_moment,
               weight_moments=r.weight_moments, weight_label_moment=r.weight_label_moment)
    return PosteriorKernels(train=to(r.hidden_gram), test=to(r.hidden_gram_test), tilt=None, observables=obs,
                            regime=(r.in_regime, r.regime_reason), converged=r.converged)


def _condensate(ctx: LevelContext) -> PosteriorKernels:
    """Level ``condensate`` (equilibrium.condensate): a condensed unit sampled on a Gaussian-equivalent bulk."""
    if ctx.y_train.ndim != 1:
        raise ValueError("level: 'condensate' needs ±1 labels of shape (P,) (binary task); use 'gaussian' for one-hot")
    to = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64, device=ctx.x_train.device)  # noqa: E731
    r = condensate_curve(
        ctx.x_train.cpu().numpy(), ctx.y_train.cpu().numpy(), ctx.temperatures, width=ctx.width,
        activation=ctx.activation, prior_w=ctx.prior_w, prior_v=ctx.prior_v,
        x_test=None if ctx.x_test is None else ctx.x_test.cpu().numpy(),
        y_test=None if ctx.y_test is None else ctx.y_test.cpu().numpy(), device=ctx.x_train.device,
        kernels=ctx.kernels, spectrum=ctx.spectrum,  # the curve's own: not computed twice
    )
    obs = dict(train_error=r.train_error, train_variance=r.train_variance, test_error=r.test_error,
               test_bias2=r.test_bias2, test_variance=r.test_variance, test_prediction=r.test_mean,
               test_prediction_variance=r.test_point_variance, readout_second_moment=r.readout_second_moment,
               weight_moments=r.weight_moments, weight_label_moment=r.weight_label_moment)
    # no fixed point of its own: a sampling disagreement (crossover) is a regime flag, not a missing result
    se = {"centroid_shift": r.centroid_shift_se, "centroid_distance": r.centroid_shift_se / ctx.width,
          "weight_label_moment": r.weight_label_moment_se}
    return PosteriorKernels(train=to(r.hidden_gram), test=to(r.hidden_gram_test), tilt=None, observables=obs,
                            regime=(r.in_regime, r.regime_reason), converged=None, standard_errors=se)


_ALL: dict[str, Level] = {
    "nngp": Level("nngp", "infinite width: Q = 1, <K_W> = K (NNGP)", False, _nngp),
    "gaussian": Level("gaussian", "Q* saddle point; <K_W> = K + K J K - (mu J mu) mu mu^T to O(1/N1), Gaussian-equivalent "
                      "single-neuron tilt (docs/conventions.md §4)", True, _gaussian),
    "single_neuron": Level("single_neuron", "Q* saddle point; <K_W> from the single-neuron measure with the exact "
                           "non-linear activation (equilibrium.single_neuron)", True, _single_neuron),
    "cavity": Level("cavity", "single-unit cavity measure with self-consistent fields; predictor, lambda1<v^2>, <K_W> "
                    "and weights all from that measure (equilibrium.cavity; binary tasks)", True, _cavity),
    "cavity_fluct": Level("cavity_fluct", "cavity level with the covariance closed on the fluctuating cavity mean "
                          "(cavity_curve(closure='fluct'), docs/theory.md B.10; measured, not the default)", True,
                          lambda ctx: _cavity(ctx, closure="fluct")),
    "condensate": Level("condensate", "one condensed unit sampled exactly on a Gaussian-equivalent bulk whose Q relaxes "
                        "with it (equilibrium.condensate, docs/theory.md B.12; binary tasks, zero-mean activations)", True,
                        _condensate),
}


def available_levels() -> dict[str, Level]:
    """The theory levels, by name."""
    return dict(_ALL)


LEVELS: Mapping[str, str] = {k: v.description for k, v in available_levels().items()}
"""Names (and one-line descriptions) of the available theory levels."""
