"""The shared leaf of gdeq: class-manifold geometry and the numerics both sides need.

Imported by ``gd_dynamics`` (logging), ``equilibrium`` (theory and the exact sampler) and ``bridge``;
it imports none of them.

- :mod:`~gdeq.geometry.measures`: class-manifold measures of a Gram matrix or of features;
- :mod:`~gdeq.geometry.activations`: σ and σ' by name;
- :mod:`~gdeq.geometry.span`: the exact span reduction of the first layer's inputs;
- :mod:`~gdeq.geometry.stats`: replica mean ± s.e., jackknife, :class:`Estimate`.
"""

from .activations import (ACTIVATIONS, ODD_ACTIVATIONS, activation, activation_and_derivative,
                          activation_derivative, activation_name, check_activation)
from .measures import *  # noqa: F401,F403
from .measures import __all__ as _measures_all
from .span import SpanReduction, span_reduction
from .stats import Estimate, jackknife, jackknife_se, leave_one_out, mean_se

__all__ = [*_measures_all, "ACTIVATIONS", "ODD_ACTIVATIONS", "Estimate", "SpanReduction", "activation",
           "activation_and_derivative", "activation_derivative", "activation_name", "check_activation",
           "jackknife", "jackknife_se", "leave_one_out", "mean_se", "span_reduction"]
