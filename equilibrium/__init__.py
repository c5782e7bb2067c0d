"""equilibrium: kernels, effective action and posterior observables of one-hidden-layer networks.

Entry point: :func:`temperature_curve` (-> :class:`TemperatureCurve`). Lower-level pieces:
NNGP kernels (:func:`nngp_kernels`), the effective action and its saddle point
(:func:`factorise`, :func:`solve_saddle`, and the D×D versions), the GP predictor
(:func:`gp_predictor`), the gaussian-level tilt and spectral posterior kernel, and the level
registry :data:`LEVELS`. Conventions: docs/conventions.md §1 (as in deepbays); derivations: docs/theory.md.
"""

from .action import (
    MultiSpectrum,
    SaddlePoint,
    Spectrum,
    action_gradient,
    action_gradient_multi,
    effective_action,
    effective_action_multi,
    factorise,
    factorise_multi,
    solve_saddle,
    solve_saddle_multi,
)
from .curve import TemperatureCurve, measure_weight_moments, temperature_curve, weight_directions
from .kernels import ACTIVATIONS, KernelBlocks, kernel_from_covariance, nngp_kernels
from .levels import LEVELS, LevelContext, PosteriorKernels, available_levels
from .posterior import Tilt, TiltedKernel, class_measures, gaussian_tilt, gaussian_tilt_multi
from .predictor import Prediction, gp_predictor, gp_predictor_multi
from .sampling import (PosteriorSample, SamplerDiagnostics, SamplerSettings, SamplingConvergenceWarning,
                       sample_posterior, sample_temperatures)

__all__ = [
    "ACTIVATIONS", "LEVELS", "KernelBlocks", "LevelContext", "MultiSpectrum", "PosteriorKernels", "Prediction",
    "SaddlePoint", "Spectrum", "TemperatureCurve", "Tilt", "TiltedKernel", "action_gradient",
    "action_gradient_multi", "available_levels", "class_measures", "effective_action", "effective_action_multi",
    "factorise", "factorise_multi", "gaussian_tilt", "gaussian_tilt_multi", "gp_predictor", "gp_predictor_multi",
    "kernel_from_covariance", "measure_weight_moments", "nngp_kernels", "solve_saddle", "solve_saddle_multi",
    "temperature_curve", "weight_directions",
    "PosteriorSample", "SamplerDiagnostics", "SamplerSettings", "SamplingConvergenceWarning", "sample_posterior",
    "sample_temperatures",
]
