"""What a run and a theory curve must share before they can be compared (docs/conventions.md §1, §7).

A theory curve describes one model and one posterior; a run is comparable with it only if it trains
that model and (for Langevin) samples that posterior. Two groups of facts are checked:

- the setting: the training data (``data_fingerprint``), the width N1, the activation and the priors
  λ0 (``prior_w``) and λ1 (``prior_v``);
- the identity of the model and of its posterior: architecture, number of hidden layers, the
  parameterisation (``init``), biases, loss, its reduction over samples (which fixes the
  temperature convention: T multiplies the *summed* loss), and the layers that are trained
  (``frozen_layers``: a frozen layer removes it from the posterior).

Every ``equilibrium.TemperatureCurve`` describes :data:`THEORY_IDENTITY`: a one-hidden-layer fully
connected network in the standard parameterisation drawn from its prior, no biases, the squared
loss ½Σ(y − f)² summed over samples, every layer sampled. A curve that describes another model may
say so with a ``model_identity`` mapping of its own.

The run's identity is read from ``trajectory.model_identity`` when the run records one, else from the
arguments of the run in ``trajectory.config``. A Langevin run must also sample the posterior itself:
with minibatch gradients its stationary law is another one, and it is refused (``batch_size``). This module imports nothing else of the bridge, so that
``maps`` and ``compare`` can both use it without a cycle.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["IDENTITY_KEYS", "THEORY_IDENTITY", "check_compatible", "check_theory_model", "curve_identity", "field_of", "run_identity",
           "single_width"]

#: the facts of a model and its posterior that a run and a curve must share
IDENTITY_KEYS: tuple[str, ...] = ("architecture", "hidden_layers", "init", "bias", "loss", "reduction",
                                  "temperature_convention", "frozen_layers")

#: what every equilibrium.TemperatureCurve describes (module docstring)
THEORY_IDENTITY: dict[str, Any] = dict(architecture="fc", hidden_layers=1, init="prior", bias=False, loss="mse",
                                       reduction="sum", temperature_convention="sum", frozen_layers=())

_WHAT = dict(
    architecture="the theory is for fully connected networks",
    hidden_layers="the theory is for one hidden layer",
    init="the theory's prior is the standard parameterisation w ~ N(0, I/λ0), v ~ N(0, 1/λ1)",
    bias="the theory's networks have no biases",
    loss="the theory's posterior is for the squared loss ½Σ(y − f)²",
    reduction="the theory's loss is summed over samples",
    temperature_convention="the theory's T multiplies the summed loss",
    frozen_layers="the theory samples every layer",
)


def field_of(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` has (attribute or mapping key) and is not None, else None."""
    for n in names:
        if hasattr(obj, n):
            value = getattr(obj, n)
            if value is not None:
                return value
        if isinstance(obj, Mapping) and obj.get(n) is not None:
            return obj[n]
    return None


def single_width(value: Any, who: str) -> int:
    """N1 of a one-hidden-layer width (an int or a one-element list); ValueError otherwise."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != 1:
            raise ValueError(
                f"width: the equilibrium theory is for one hidden layer; the {who} has widths {list(value)}"
            )
        value = value[0]
    return int(value)


def _normalise(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "frozen_layers":
        return tuple(sorted(int(v) for v in value))
    if key == "hidden_layers":
        return int(value)
    if key == "bias":
        return bool(value)
    return str(value).lower()


def run_identity(trajectory: Any) -> dict[str, Any]:
    """The run's model identity (keys :data:`IDENTITY_KEYS`, None where the run does not record it)."""
    recorded = field_of(trajectory, "model_identity")
    # gd_dynamics' Trajectory.model_identity (keys gd_dynamics.trajectory.MODEL_IDENTITY_KEYS) when the run
    # has one; else the run's arguments (Trajectory.config, which older runs also hold)
    source = recorded if isinstance(recorded, Mapping) and recorded else (field_of(trajectory, "config") or {})
    width = source.get("widths", source.get("width", field_of(trajectory, "width")))
    hidden = source.get("hidden_layers")
    if hidden is None and width is not None:
        hidden = len(width) if isinstance(width, (list, tuple, np.ndarray)) else 1
    out = dict(architecture=source.get("architecture"), hidden_layers=hidden, init=source.get("init"),
               bias=source.get("bias"), loss=source.get("loss"), reduction=source.get("reduction"),
               # the run's T (Langevin noise √(2ηT), weight decay Tλ) multiplies the loss it descends
               temperature_convention=source.get("reduction"), frozen_layers=source.get("frozen_layers"))
    return {k: _normalise(k, v) for k, v in out.items()}


def _posterior_problems(trajectory: Any) -> list[str]:
    """A Langevin run must sample the posterior itself: full-batch gradients (a minibatch adds noise
    that changes the stationary law). Other optimisers are compared through T_eff whatever their noise."""
    if str(field_of(trajectory, "optimizer")).lower() != "langevin":
        return []
    recorded = field_of(trajectory, "model_identity")
    source = recorded if isinstance(recorded, Mapping) and recorded else (field_of(trajectory, "config") or {})
    batch = source.get("batch_size")
    n_train = (field_of(trajectory, "task") or {}).get("n_train")
    if batch is not None and batch != n_train:
        return [f"batch_size: run {batch} (minibatch Langevin: its stationary law is not the theory's posterior; "
                "the theory needs full-batch gradients)"]
    return []


def curve_identity(curve: Any) -> dict[str, Any]:
    """The model identity a theory curve describes (its own ``model_identity``, else :data:`THEORY_IDENTITY`)."""
    recorded = field_of(curve, "model_identity")
    source = recorded if isinstance(recorded, Mapping) else THEORY_IDENTITY
    return {k: _normalise(k, source.get(k)) for k in IDENTITY_KEYS}


def _identity_problems(mine: Mapping[str, Any], theirs: Mapping[str, Any], explain: bool) -> list[str]:
    problems = []
    for key in IDENTITY_KEYS:
        if mine[key] is None:
            problems.append(f"{key}: the run does not record it, cannot check it against the curve's {theirs[key]!r}")
        elif mine[key] != theirs[key]:
            why = f" ({_WHAT[key]})" if explain else ""
            problems.append(f"{key}: run {mine[key]!r} vs curve {theirs[key]!r}{why}")
    return problems


def check_theory_model(trajectory: Any) -> None:
    """Raise one ValueError naming every fact in which the run's model differs from :data:`THEORY_IDENTITY`
    (what every equilibrium curve describes); cheap, so callers run it before computing any curve."""
    problems = _identity_problems(run_identity(trajectory), curve_identity(None), explain=True)
    problems += _posterior_problems(trajectory)
    if problems:
        raise ValueError("run and theory curve do not match: " + "; ".join(problems))


def check_compatible(trajectory: Any, curve: Any, *, rtol: float = 1e-9) -> None:
    """Raise one ValueError naming every fact in which a run and a theory curve differ (module docstring).

    Compared: the model identity (:data:`IDENTITY_KEYS`: architecture, hidden layers, init, bias, loss,
    reduction, temperature convention, frozen layers), the data fingerprint, the width N1, the
    activation and the priors λ0 (``prior_w``) and λ1 (``prior_v``). A fact the run does not record
    counts as a mismatch: it cannot be checked.
    """
    mine, theirs = run_identity(trajectory), curve_identity(curve)
    problems = _identity_problems(mine, theirs, explain=not isinstance(field_of(curve, "model_identity"), Mapping))
    problems += _posterior_problems(trajectory)
    fp_run, fp_curve = field_of(trajectory, "data_fingerprint"), field_of(curve, "data_fingerprint")
    if not fp_run or not fp_curve:
        problems.append("data_fingerprint: missing on the run or the curve, cannot check the data match")
    elif fp_run != fp_curve:
        problems.append(f"data_fingerprint: run {fp_run} vs curve {fp_curve} (different training data)")
    if mine["hidden_layers"] in (None, 1) and mine["architecture"] in (None, theirs["architecture"]):
        w_run, w_curve = single_width(field_of(trajectory, "width"), "run"), single_width(field_of(curve, "width"), "curve")
        if w_run != w_curve:
            problems.append(f"width: run N1 = {w_run} vs curve N1 = {w_curve}")
    a_run, a_curve = str(field_of(trajectory, "activation")).lower(), str(field_of(curve, "activation")).lower()
    if a_run != a_curve:
        problems.append(f"activation: run {a_run!r} vs curve {a_curve!r}")
    for name, symbol in (("prior_w", "λ0"), ("prior_v", "λ1")):
        p_run, p_curve = field_of(trajectory, name), field_of(curve, name)
        if p_run is None or p_curve is None or not math.isclose(float(p_run), float(p_curve), rel_tol=rtol):
            problems.append(f"{name}: run {symbol} = {p_run} vs curve {symbol} = {p_curve}")
    if problems:
        raise ValueError("run and theory curve do not match: " + "; ".join(problems))
