"""bridge: training time <-> temperature maps, comparisons and reports.

The only package that imports both ``gd_dynamics`` (runs) and ``equilibrium`` (theory curves);
neither of them imports it.

- :mod:`bridge.identity`: what a run and a theory curve must share (model, posterior, data, width,
  activation, priors) before they are compared;
- :mod:`bridge.lazy`: the lazy (infinite-width NTK) GD ensemble, :func:`lazy_trajectory`;
- :mod:`bridge.maps`: T_eff(t) by monotone observable matching (docs/conventions.md §7);
- :mod:`bridge.thermal`: two-thermometer consistency (is a stretch of training thermal?);
- :mod:`bridge.thermometers`: SGD gradient-noise temperature and the fluctuation–dissipation
  thermometer (Yaida 2018);
- :mod:`bridge.compare`: turning points (t*, T*), run-vs-theory comparison,
  the Langevin consistency check;
- :mod:`bridge.report`: report.md, PNG plots, CSV/JSON metrics, wandb offline run;
- :mod:`bridge.experiments`: the pipelines behind ``gdeq demo``, ``sweep``, ``validate``.
"""

from .compare import (
    Comparison,
    ConsistencyCheck,
    MeasureComparison,
    Turning,
    check_compatible,
    compare,
    langevin_consistency,
    turning_point,
)
from .identity import THEORY_IDENTITY, check_theory_model, run_identity, theory_request
from .lazy import LazyDynamics, LazyTrajectory, lazy_dynamics, lazy_trajectory
from .maps import OBSERVABLES, TemperatureMap, effective_temperature, map_observable, mean_predictor_error
from .thermal import ThermalCheck, thermometer_consistency
from .thermometers import (
    ThermometerReading,
    fdt_monitor,
    fluctuation_dissipation_temperature,
    gradient_noise_temperature,
    gradient_noise_temperature_from_moments,
    one_hidden_layer_gradient_moments,
    potential_gradient_terms,
)

__all__ = [
    "LazyDynamics",
    "LazyTrajectory",
    "lazy_dynamics",
    "lazy_trajectory",
    "OBSERVABLES",
    "THEORY_IDENTITY",
    "Comparison",
    "ConsistencyCheck",
    "MeasureComparison",
    "TemperatureMap",
    "ThermalCheck",
    "ThermometerReading",
    "Turning",
    "check_compatible",
    "check_theory_model",
    "theory_request",
    "compare",
    "effective_temperature",
    "fdt_monitor",
    "fluctuation_dissipation_temperature",
    "gradient_noise_temperature",
    "gradient_noise_temperature_from_moments",
    "langevin_consistency",
    "map_observable",
    "mean_predictor_error",
    "one_hidden_layer_gradient_moments",
    "potential_gradient_terms",
    "run_identity",
    "thermometer_consistency",
    "turning_point",
]
