"""What a run and a theory curve must share before they can be compared (docs/conventions.md §1, §7).

A theory curve describes one model and one posterior; a run is comparable with it only if it trains
that model and (for Langevin) samples that posterior. Three groups of facts are checked:

- the setting: the training data (``data_fingerprint``), the widths, the activation and the priors
  λ0 (``prior_w``), the inner layers' λ_ℓ (deep FC) and the readout's (``prior_v``);
- the identity of the model and of its posterior: architecture, number of hidden layers, the
  parameterisation (``init``), biases, loss, its reduction over samples (which fixes the
  temperature convention: T multiplies the *summed* loss), and the layers that are trained
  (``frozen_layers``: a frozen layer removes it from the posterior);
- for a CNN, the variant: the CNN theory (``equilibrium.conv``, docs/architectures.md) is the
  one-hidden-layer network on non-overlapping m × m patches — stride = kernel size = m, m dividing
  the image sides, no padding, no pooling, one readout weight per channel and patch — so the run's
  kernel size, stride, padding, pooling and image shape must be exactly that, with m the curve's
  ``patch_size``.

An ``equilibrium.TemperatureCurve`` says which model it describes through its ``architecture`` and
``layer_fields`` (deep FC: ``widths``, ``priors``; CNN: ``patch_size``, ``image_shape``); a curve
without them is :data:`THEORY_IDENTITY`, the one-hidden-layer fully connected network in the standard
parameterisation drawn from its prior, no biases, the squared loss ½Σ(y − f)² summed over samples,
every layer sampled. A curve that describes another model may say so with a ``model_identity``
mapping of its own.

The run's identity is read from ``trajectory.model_identity`` when the run records one, else from the
arguments of the run in ``trajectory.config``. A Langevin run must also sample the posterior itself:
with minibatch gradients its stationary law is another one, and it is refused (``batch_size``).
:func:`theory_request` turns a run into the ``equilibrium.temperature_curve`` arguments of the
theory that describes it, or refuses it with every reason at once. This module imports nothing else
of the bridge, so that ``maps`` and ``compare`` can both use it without a cycle.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["CNN_KEYS", "IDENTITY_KEYS", "THEORY_IDENTITY", "check_compatible", "check_theory_model", "cnn_theory_problems",
           "curve_architecture", "curve_identity", "field_of", "run_architecture", "run_identity", "single_width",
           "theory_request"]

#: the facts of a model and its posterior that a run and a curve must share
IDENTITY_KEYS: tuple[str, ...] = ("architecture", "hidden_layers", "init", "bias", "loss", "reduction",
                                  "temperature_convention", "frozen_layers")

#: the facts that define a CNN variant (Trajectory.model_identity records them for a CNN run)
CNN_KEYS: tuple[str, ...] = ("kernel_size", "stride", "padding", "pooling", "image_shape")

#: what a curve without an architecture of its own describes (module docstring)
THEORY_IDENTITY: dict[str, Any] = dict(architecture="fc", hidden_layers=1, init="prior", bias=False, loss="mse",
                                       reduction="sum", temperature_convention="sum", frozen_layers=())

#: the CNN the theory covers, in words (equilibrium.conv; docs/architectures.md)
CNN_THEORY = ("the CNN theory (equilibrium.conv) covers one convolutional layer on non-overlapping m × m patches: "
              "stride = kernel_size = m, m dividing the image sides, no padding, no pooling, a readout weight per "
              "channel and patch")

_WHAT = dict(
    hidden_layers="the theory has one order parameter per hidden layer of the curve",
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


def _widths(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(int(v) for v in np.asarray(value).reshape(-1))
    return (int(value),)


def _normalise(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "frozen_layers":
        return tuple(sorted(int(v) for v in value))
    if key in ("hidden_layers", "kernel_size", "stride", "padding"):
        return int(value)
    if key == "image_shape":
        return tuple(int(v) for v in value)
    if key == "bias":
        return bool(value)
    return str(value).lower()


def _run_source(trajectory: Any) -> Mapping[str, Any]:
    """gd_dynamics' Trajectory.model_identity (keys gd_dynamics.trajectory.MODEL_IDENTITY_KEYS) when the run
    has one; else the run's arguments (Trajectory.config, which older runs also hold)."""
    recorded = field_of(trajectory, "model_identity")
    return recorded if isinstance(recorded, Mapping) and recorded else (field_of(trajectory, "config") or {})


def run_identity(trajectory: Any) -> dict[str, Any]:
    """The run's model identity (keys :data:`IDENTITY_KEYS`, None where the run does not record it)."""
    source = _run_source(trajectory)
    width = source.get("widths", source.get("width", field_of(trajectory, "width")))
    hidden = source.get("hidden_layers")
    if hidden is None and width is not None:
        hidden = len(width) if isinstance(width, (list, tuple, np.ndarray)) else 1
    out = dict(architecture=source.get("architecture"), hidden_layers=hidden, init=source.get("init"),
               bias=source.get("bias"), loss=source.get("loss"), reduction=source.get("reduction"),
               # the run's T (Langevin noise √(2ηT), weight decay Tλ) multiplies the loss it descends
               temperature_convention=source.get("reduction"), frozen_layers=source.get("frozen_layers"))
    return {k: _normalise(k, v) for k, v in out.items()}


def run_architecture(trajectory: Any) -> dict[str, Any]:
    """The run's architecture in numbers: ``widths`` (hidden widths; the CNN: (channels,)),
    ``priors`` (λ0, ..., λL) where recorded, and the CNN facts :data:`CNN_KEYS` (None where not recorded).

    A CNN run recorded before ``stride``/``padding``/``pooling`` were options had stride 1, no padding
    and no pooling (the only model then); ``image_shape`` None means inferred from the data."""
    source = _run_source(trajectory)
    widths = _widths(source.get("widths", source.get("width", field_of(trajectory, "width"))))
    priors = source.get("prior_precisions")
    if priors is None:
        pw, pv = field_of(trajectory, "prior_w"), field_of(trajectory, "prior_v")
        priors = (pw, pv) if pw is not None and pv is not None and widths is not None and len(widths) == 1 else None
    out: dict[str, Any] = dict(widths=widths, priors=None if priors is None else tuple(float(p) for p in priors))
    if str(source.get("architecture")).lower() == "cnn":
        legacy = dict(stride=1, padding=0, pooling="none")
        config = field_of(trajectory, "config") or {}
        for key in CNN_KEYS:
            value = source.get(key, config.get(key))
            out[key] = _normalise(key, value if value is not None else legacy.get(key))
    return out


def cnn_theory_problems(arch: Mapping[str, Any], patch_size: int | None = None,
                        image_shape: Sequence[int] | None = None) -> list[str]:
    """Every way in which a CNN run's variant ``arch`` (:func:`run_architecture`) is not the model of the
    CNN theory (:data:`CNN_THEORY`); with a curve's ``patch_size``/``image_shape``, also where they differ."""
    k, s = arch.get("kernel_size"), arch.get("stride")
    problems = []
    if k is None:
        problems.append("kernel_size: the run does not record it, cannot check the patch size")
    if s is None:
        problems.append("stride: the run does not record it, cannot check that the patches do not overlap")
    elif k is not None and s != k:
        problems.append(f"stride: run stride {s} with kernel_size {k} (overlapping or gapped patches: "
                        f"the theory needs stride = kernel_size)")
    if arch.get("padding") not in (0, None):
        problems.append(f"padding: run {arch['padding']} (the theory has no padding)")
    if arch.get("pooling") not in ("none", None):
        problems.append(f"pooling: run {arch['pooling']!r} (the theory has a readout weight per channel and patch, "
                        "no pooling)")
    shape = arch.get("image_shape")
    if shape is not None and k is not None and (shape[1] % k or shape[2] % k):
        problems.append(f"kernel_size: {k} does not divide the image sides {shape[1]} × {shape[2]} "
                        "(the patches must tile the image)")
    if patch_size is not None and k is not None and int(patch_size) != k:
        problems.append(f"kernel_size: run {k} vs curve patch_size {int(patch_size)}")
    if image_shape is not None and shape is not None and tuple(int(d) for d in image_shape) != shape:
        problems.append(f"image_shape: run {list(shape)} vs curve {[int(d) for d in image_shape]}")
    return problems


def _posterior_problems(trajectory: Any) -> list[str]:
    """A Langevin run must sample the posterior itself: full-batch gradients (a minibatch adds noise
    that changes the stationary law). Other optimisers are compared through T_eff whatever their noise."""
    if str(field_of(trajectory, "optimizer")).lower() != "langevin":
        return []
    batch = _run_source(trajectory).get("batch_size")
    n_train = (field_of(trajectory, "task") or {}).get("n_train")
    if batch is not None and batch != n_train:
        return [f"batch_size: run {batch} (minibatch Langevin: its stationary law is not the theory's posterior; "
                "the theory needs full-batch gradients)"]
    return []


def _layer_fields(curve: Any) -> Mapping[str, Any]:
    lf = field_of(curve, "layer_fields")
    return lf if isinstance(lf, Mapping) else {}


def curve_identity(curve: Any) -> dict[str, Any]:
    """The model identity a theory curve describes: its own ``model_identity``, else read from its
    ``architecture`` and ``layer_fields`` (deep FC: one hidden layer per entry of ``widths``), else
    :data:`THEORY_IDENTITY`."""
    recorded = field_of(curve, "model_identity")
    if isinstance(recorded, Mapping):
        source = recorded
    else:
        source = dict(THEORY_IDENTITY)
        arch = str(field_of(curve, "architecture") or "fc").lower()
        source["architecture"] = arch
        lf = _layer_fields(curve)
        if arch == "fc" and "widths" in lf:
            source["hidden_layers"] = len(np.asarray(lf["widths"]).reshape(-1))
    return {k: _normalise(k, source.get(k)) for k in IDENTITY_KEYS}


def curve_architecture(curve: Any) -> dict[str, Any]:
    """The curve's architecture in numbers, as :func:`run_architecture`: ``widths``, ``priors``
    (λ0, ..., λL) and, for the CNN, ``patch_size`` and ``image_shape``."""
    lf = _layer_fields(curve)
    arch = str(field_of(curve, "architecture") or "fc").lower()
    pw, pv = field_of(curve, "prior_w"), field_of(curve, "prior_v")
    if arch == "fc" and "widths" in lf:
        widths = _widths(lf["widths"])
        inner = tuple(float(p) for p in np.asarray(lf["priors"]).reshape(-1)) if "priors" in lf else None
        priors = (float(pw), *inner) if inner is not None and pw is not None else None
    else:
        w = field_of(curve, "width")
        widths = None if w is None else (_widths(w) if isinstance(w, (list, tuple, np.ndarray)) else (int(round(float(w))),))
        priors = (float(pw), float(pv)) if pw is not None and pv is not None else None
    out: dict[str, Any] = dict(widths=widths, priors=priors)
    if arch == "cnn":
        out["patch_size"] = int(np.asarray(lf["patch_size"])) if "patch_size" in lf else None
        out["image_shape"] = tuple(int(d) for d in np.asarray(lf["image_shape"]).reshape(-1)) if "image_shape" in lf else None
    return out


def _identity_problems(mine: Mapping[str, Any], theirs: Mapping[str, Any], explain: bool) -> list[str]:
    if mine["architecture"] is not None and mine["architecture"] != theirs["architecture"]:
        # a different architecture is a different model: the other facts say nothing more
        how = ("temperature_curve(..., architecture='cnn', patch_size=m, image_shape=(C, H, W)) describes a CNN "
               "with stride = kernel_size = m" if mine["architecture"] == "cnn" else
               "temperature_curve(..., width=[N1, ..., NL]) describes a fully connected run")
        name = {"fc": "fully connected", "cnn": "CNN"}
        return [f"architecture: run {mine['architecture']!r} vs curve {theirs['architecture']!r} (the "
                f"{name.get(theirs['architecture'], theirs['architecture'])} theory does not describe a "
                f"{name.get(mine['architecture'], mine['architecture'])} network, whatever its width — {how})"]
    problems = []
    for key in IDENTITY_KEYS:
        if mine[key] is None:
            problems.append(f"{key}: the run does not record it, cannot check it against the curve's {theirs[key]!r}")
        elif mine[key] != theirs[key]:
            why = f" ({_WHAT[key]})" if explain and key in _WHAT else ""
            problems.append(f"{key}: run {mine[key]!r} vs curve {theirs[key]!r}{why}")
    return problems


def check_theory_model(trajectory: Any) -> None:
    """Raise one ValueError naming every fact in which the run's model is not one the equilibrium theory
    describes (any fully connected depth; a CNN only as :data:`CNN_THEORY`); cheap, so callers run it
    before computing any curve."""
    theory_request(trajectory)


def theory_request(trajectory: Any) -> dict[str, Any]:
    """The ``equilibrium.temperature_curve`` keyword arguments of the theory that describes the run:
    ``width`` (an int for one hidden layer, a list for deep FC, the channel count for the CNN),
    ``activation``, ``prior_w``, ``prior_v`` (a list λ1..λL for deep FC) and, for the CNN,
    ``architecture="cnn"``, ``patch_size`` and ``image_shape`` (None: the caller infers it from the data).

    Raises one ValueError naming every reason the run is not such a model (module docstring)."""
    mine, arch = run_identity(trajectory), run_architecture(trajectory)
    kind = mine["architecture"]
    reference = dict(THEORY_IDENTITY, architecture=kind or "fc",
                     hidden_layers=mine["hidden_layers"] if kind != "cnn" else 1)
    problems = _identity_problems(mine, {k: _normalise(k, v) for k, v in reference.items()}, explain=True)
    problems += _posterior_problems(trajectory)
    if kind == "cnn":
        problems += cnn_theory_problems(arch)
    if arch["widths"] is None:
        problems.append("width: the run does not record it")
    if problems:
        raise ValueError("run and theory curve do not match: " + "; ".join(problems))
    widths, priors = arch["widths"], arch["priors"]
    out: dict[str, Any] = dict(activation=str(field_of(trajectory, "activation")),
                               prior_w=float(field_of(trajectory, "prior_w") if priors is None else priors[0]),
                               prior_v=float(field_of(trajectory, "prior_v") if priors is None else priors[-1]))
    if kind == "cnn":
        out.update(width=int(widths[0]), architecture="cnn", patch_size=int(arch["kernel_size"]),
                   image_shape=arch["image_shape"])
    elif len(widths) == 1:
        out["width"] = int(widths[0])
    else:
        out["width"] = [int(w) for w in widths]
        if priors is not None:
            out["prior_v"] = [float(p) for p in priors[1:]]
    return out


def check_compatible(trajectory: Any, curve: Any, *, rtol: float = 1e-9) -> None:
    """Raise one ValueError naming every fact in which a run and a theory curve differ (module docstring).

    Compared: the model identity (:data:`IDENTITY_KEYS`: architecture, hidden layers, init, bias, loss,
    reduction, temperature convention, frozen layers), for a CNN its variant (:data:`CNN_KEYS` against
    the curve's patch size and image shape), the data fingerprint, the widths, the activation and the
    priors λ0 (``prior_w``), the inner λ_ℓ (deep FC) and the readout's (``prior_v``). A fact the run
    does not record counts as a mismatch: it cannot be checked.
    """
    mine, theirs = run_identity(trajectory), curve_identity(curve)
    problems = _identity_problems(mine, theirs, explain=not isinstance(field_of(curve, "model_identity"), Mapping))
    problems += _posterior_problems(trajectory)
    same_model = mine["architecture"] in (None, theirs["architecture"]) and mine["hidden_layers"] in (
        None, theirs["hidden_layers"])
    r_arch, c_arch = run_architecture(trajectory), curve_architecture(curve)
    if same_model and theirs["architecture"] == "cnn":
        problems += cnn_theory_problems(r_arch, c_arch.get("patch_size"), c_arch.get("image_shape"))
    fp_run, fp_curve = field_of(trajectory, "data_fingerprint"), field_of(curve, "data_fingerprint")
    if not fp_run or not fp_curve:
        problems.append("data_fingerprint: missing on the run or the curve, cannot check the data match")
    elif fp_run != fp_curve:
        problems.append(f"data_fingerprint: run {fp_run} vs curve {fp_curve} (different training data)")
    if same_model and r_arch["widths"] != c_arch["widths"]:
        what = "channels Nc" if theirs["architecture"] == "cnn" else "N1" if len(c_arch["widths"] or ()) == 1 else "widths"
        show = lambda w: (w[0] if w and len(w) == 1 else list(w or ()))  # noqa: E731
        problems.append(f"width: run {what} = {show(r_arch['widths'])} vs curve {what} = {show(c_arch['widths'])}")
    a_run, a_curve = str(field_of(trajectory, "activation")).lower(), str(field_of(curve, "activation")).lower()
    if a_run != a_curve:
        problems.append(f"activation: run {a_run!r} vs curve {a_curve!r}")
    for name, symbol in (("prior_w", "λ0"), ("prior_v", "λ1" if theirs["hidden_layers"] == 1 else "λ_L")):
        p_run, p_curve = field_of(trajectory, name), field_of(curve, name)
        if p_run is None or p_curve is None or not math.isclose(float(p_run), float(p_curve), rel_tol=rtol):
            problems.append(f"{name}: run {symbol} = {p_run} vs curve {symbol} = {p_curve}")
    rp, cp = r_arch["priors"], c_arch["priors"]
    if same_model and rp is not None and cp is not None and len(rp) == len(cp) > 2:
        if not all(math.isclose(a, b, rel_tol=rtol) for a, b in zip(rp[1:-1], cp[1:-1])):
            problems.append(f"prior_precisions: run inner λ = {list(rp[1:-1])} vs curve {list(cp[1:-1])}")
    if problems:
        raise ValueError("run and theory curve do not match: " + "; ".join(problems))
