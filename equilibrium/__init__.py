"""equilibrium: kernels, effective action and posterior observables of one-hidden-layer networks.

Entry point: :func:`temperature_curve` (-> :class:`TemperatureCurve`). Lower-level pieces:
NNGP kernels (:func:`nngp_kernels`), the neural tangent kernel (:func:`tangent_kernels`),
the effective action and its saddle point
(:func:`factorise`, :func:`solve_saddle`; ±1 targets give a scalar order parameter, one-hot
targets a D×D one, through the same functions), the GP predictor
(:func:`gp_predictor`), the gaussian-level tilt and spectral posterior kernel, and the level
registry :data:`LEVELS`. Conventions: docs/conventions.md §1 (as in deepbays); derivations: docs/theory.md.
"""

from .action import SaddlePoint, Spectrum, action_gradient, effective_action, factorise, solve_saddle
from .curve import TemperatureCurve, temperature_curve
from .kernels import ACTIVATIONS, KernelBlocks, kernel_from_covariance, nngp_kernels
from .levels import LEVELS, LevelContext, PosteriorKernels, available_levels
from .ntk import NTK_ACTIVATIONS, TangentKernels, derivative_kernel, tangent_kernels
from .posterior import Tilt, TiltedKernel, class_measures, gaussian_tilt
from .predictor import Prediction, gp_predictor
from .sampling import (PosteriorSample, SamplerDiagnostics, SamplerSettings, SamplingConvergenceWarning,
                       sample_posterior, sample_temperatures)
from .weights import measure_weight_moments, weight_directions, weight_moment_projections

__all__ = [
    "ACTIVATIONS", "LEVELS", "KernelBlocks", "LevelContext", "PosteriorKernels", "Prediction", "SaddlePoint",
    "Spectrum", "TemperatureCurve", "Tilt", "TiltedKernel", "action_gradient", "available_levels",
    "class_measures", "effective_action", "factorise", "gaussian_tilt", "gp_predictor", "kernel_from_covariance",
    "measure_weight_moments", "nngp_kernels", "solve_saddle", "temperature_curve", "weight_directions",
    "weight_moment_projections",
    "PosteriorSample", "SamplerDiagnostics", "SamplerSettings", "SamplingConvergenceWarning", "sample_posterior",
    "sample_temperatures",
    # neural tangent kernel (equilibrium/ntk.py)
    "NTK_ACTIVATIONS", "TangentKernels", "derivative_kernel", "tangent_kernels",
]
