"""Temperature curves of the one-hidden-layer Bayesian posterior: the public entry point.

``temperature_curve`` computes the NNGP kernel once, eigendecomposes it once, solves the saddle
point for every temperature (O(P) each), evaluates the GP predictor and the chosen level's
posterior hidden kernel ⟨K_W⟩(T), and measures class-manifold geometry and weight moments on it
with shared code. Conventions: docs/conventions.md §1 (same as deepbays); derivations: docs/theory.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from gdeq import geometry

from . import inputs
from .action import factorise, solve_saddle
from .condensate import ZERO_MEAN_ACTIVATIONS
from .cavity import gaussian_sigma_trace, rank_bound, regime_flags, width_check
from .kernels import ACTIVATIONS, KernelBlocks, nngp_kernels
from .levels import LevelContext, PosteriorKernels, available_levels
from .posterior import MEASURES, Tilt, TiltedKernel, class_measures, class_measures_dense
from .predictor import gp_predictor
from .architectures import architecture_curve, is_other_architecture
from .sampling import SamplerDiagnostics, SamplerSettings, sampled_curve_fields
from .unit_sphere import prior_neuron_samples, unit_sphere_measures
from .weights import tilted_weight_moments, weight_directions

__all__ = ["TemperatureCurve", "temperature_curve"]

@dataclass(frozen=True)
class TemperatureCurve:
    """Posterior observables over temperature (numpy arrays; leading axis = temperature).

    Predictor (docs/conventions.md §3): ``Q`` (nT,) or (nT, D, D); ``train_error`` = (1/P) Σ (y − f̄)²;
    ``train_variance`` mean posterior variance on the training inputs; ``test_error`` =
    ``test_bias2`` + ``test_variance`` (means over test points, summed over outputs for D > 1;
    NaN without test labels); ``test_prediction``/``test_prediction_variance`` per point.

    Collective (docs/conventions.md §4), measured on the level's ⟨K_W⟩(T) with the definitions of
    :func:`geometry.class_geometry`: ``centroid_distance`` squared class-centroid distance cᵀ⟨K_W⟩c
    (NaN for more than two classes; then see ``centroid_distance_matrix`` (nT, C, C));
    ``centroid_shift`` = N1·(centroid_distance − cᵀKc); ``class_radius`` (nT, C);
    ``inter_distance``/``intra_distance`` mean squared inter/intra-class pair distances and their
    ``distance_ratio``; ``unit_centroid_distance`` (Euclidean) and ``unit_class_radius`` (nT, C) on the
    unit sphere: non-linear in K_W, so the saddle-point levels give the mean-kernel value plus the
    delta-method correction from the O(1/N1) kernel fluctuations (equilibrium.unit_sphere,
    docs/theory.md §4.3). ``test_*`` the same on the test×test block. ``reference``
    holds the infinite-width (NNGP) value of every measure; ``shift(name)`` = N1·(value − reference).

    Microscopic (docs/conventions.md §5): ``readout_second_moment`` = (1/N1) Σ_i ⟨v_i²⟩ (per output, averaged
    over outputs) = Q*/λ1 (tr Q*/(D λ1)); ``weight_moments`` (nT, r, r) with EXACT definition

        weight_moments[t, j, l] = (1/N1) Σ_i ⟨(e_j·w_i)(e_l·w_i)⟩,   e_j = weight_directions[j],

    where ``weight_directions`` (r, N0) are the top-r (r ≤ 8) right singular vectors of the
    training inputs X (orthonormal rows, largest component positive; see :func:`weight_directions`; use
    :func:`measure_weight_moments` on sampled first-layer weights W (N1, N0) to measure the same
    thing). Prior value δ_jl/λ0; ``weight_label_moment`` the same second moment along the label
    direction e_y = Xᵀy/|Xᵀy| (mean over outputs for D > 1). NaN for levels without a tilt.

    Regime (docs/theory.md B.6): ``in_regime`` (nT,) bool, whether the level is inside the regime
    where it was validated at that temperature, and ``regime_reason`` (per temperature, '' when in
    regime, else the failed checks): importance-weight degeneracy and convergence of the sampled
    levels, the exact rank bound T·TrΣ/P ≥ 1 − (N1 − 1)/P on the level's cavity covariance, N1 ≥ 50.
    Levels with their own predictor (``cavity``) report it in the predictor fields and
    ``readout_second_moment``/``weight_*`` (instead of the Q* GP).

    Metadata: ``width``, ``activation``, ``prior_w``, ``prior_v``, ``level``, ``data_fingerprint``
    (= geometry.data_fingerprint(x_train, y_train)), ``n_minima`` of the saddle point and ``converged``:
    the saddle point converged AND, for the levels with self-consistent fields of their own (``cavity``,
    ``cavity_fluct``, ``single_neuron``), their fixed point was found; where it was not, every result of
    that temperature is NaN (``Q`` keeps the saddle point) and ``regime_reason`` says so (B.6).
    ``mean_kernel_approximations``: the measures this curve computes from the mean kernel ⟨K_W⟩ alone
    although they are non-linear in K_W: empty for ``level="sampled"`` (every measure per posterior
    sample), for ``nngp`` (K_W = K at infinite width) and for the saddle-point levels where the delta
    method is trusted; the unit-sphere fields otherwise (a callable activation, Var L/L̄² > 1/4).

    Sampled level (``level="sampled"``, equilibrium.sampling): every value is a posterior average
    over samples; ``standard_errors[name]`` (same shape; ``sem(name)``) its standard error,
    ``diagnostics`` one :class:`~equilibrium.sampling.SamplerDiagnostics` per temperature (R̂, ESS,
    acceptance, burn-in) and ``converged`` whether those diagnostics passed (``n_minima`` is 0).
    """

    temperature: np.ndarray
    Q: np.ndarray
    train_error: np.ndarray
    train_variance: np.ndarray
    test_error: np.ndarray
    test_bias2: np.ndarray
    test_variance: np.ndarray
    readout_second_moment: np.ndarray
    centroid_distance: np.ndarray
    centroid_shift: np.ndarray
    centroid_distance_matrix: np.ndarray
    class_radius: np.ndarray
    inter_distance: np.ndarray
    intra_distance: np.ndarray
    distance_ratio: np.ndarray
    unit_centroid_distance: np.ndarray
    unit_class_radius: np.ndarray
    weight_moments: np.ndarray
    weight_label_moment: np.ndarray
    weight_directions: np.ndarray
    converged: np.ndarray
    n_minima: np.ndarray
    width: float
    activation: str
    prior_w: float
    prior_v: float
    level: str
    data_fingerprint: str
    n_outputs: int
    test_geometry: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    test_prediction: np.ndarray | None = None
    test_prediction_variance: np.ndarray | None = None
    in_regime: np.ndarray | None = None
    regime_reason: tuple[str, ...] = ()
    # deep FC / CNN (equilibrium/architectures.py): the fields above describe the last hidden
    # layer; per-layer (per-patch) arrays live in layer_fields, e.g. layer_fields["Q"] (nT, L)
    architecture: str = "fc"
    layer_fields: dict[str, np.ndarray] = field(default_factory=dict)
    standard_errors: dict[str, np.ndarray] = field(default_factory=dict)
    diagnostics: tuple[SamplerDiagnostics, ...] = ()
    mean_kernel_approximations: tuple[str, ...] = ("unit_centroid_distance", "unit_class_radius")

    def sem(self, name: str) -> np.ndarray:
        """Standard error of a field (``test_<measure>`` for the test geometry): sampling error of the
        sampled level; the Monte-Carlo error of a theory level that has one (``condensate``: centroid distance,
        N1·shift, weight label moment); zeros otherwise (deterministic numbers, not error-free ones)."""
        if name in self.standard_errors:
            return self.standard_errors[name]
        value = self.test_geometry[name[5:]] if name.startswith("test_") and name[5:] in self.test_geometry \
            else getattr(self, name)
        if self.level == "sampled":
            raise KeyError(f"{name}: the sampled level has no standard error for it")
        return np.zeros_like(np.asarray(value, dtype=np.float64))

    def shift(self, name: str) -> np.ndarray:
        """Scaled finite-width shift N1·(value − infinite-width value) of a geometry measure
        (``test_<name>`` for the test set)."""
        value = self.test_geometry[name[5:]] if name.startswith("test_") else getattr(self, name)
        return self.width * (value - self.reference[name])


# ------------------------------------------------------------------------------------------
# validation: one clear ValueError before any work
# ------------------------------------------------------------------------------------------
def _validate(x_train, y_train, temperatures, width, activation, prior_w, prior_v, x_test, y_test, level):
    T = inputs.temperatures(temperatures)
    inputs.number("width", width, at_least=1.0)
    inputs.number("prior_w", prior_w)
    inputs.number("prior_v", prior_v)
    if not (callable(activation) or activation in ACTIVATIONS):
        raise ValueError(f"activation: must be one of {ACTIVATIONS} or a callable, got {activation!r}")
    levels = (*available_levels(), "sampled")
    if level not in levels:
        raise ValueError(f"level: must be one of {levels}, got {level!r}")
    X, Y, Xt, Yt, D = inputs.data_set(x_train, y_train, x_test, y_test, test_labels=False)
    if level in ("cavity", "cavity_fluct", "condensate") and (D != 1 or width < 2):
        raise ValueError(f"level: '{level}' needs ±1 labels of shape (P,) and width ≥ 2, got {D} outputs, width {width}")
    if level == "condensate" and activation not in ZERO_MEAN_ACTIVATIONS:
        raise ValueError(f"activation: level 'condensate' needs a zero-mean activation {ZERO_MEAN_ACTIVATIONS}, "
                         f"got {activation!r}")
    return T, X, Y, Xt, Yt, D


# ------------------------------------------------------------------------------------------
# the curve
# ------------------------------------------------------------------------------------------
def _reference(K: torch.Tensor, labels) -> dict[str, np.ndarray]:
    """Infinite-width values: the measures of K itself (spectral path with a zero tilt)."""
    z = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=K.device)  # noqa: E731
    zero = Tilt(U=z(0, 0), j=z(1, 0), R=z(1, 0, 0), W=z(1, 0, 0))
    return class_measures(TiltedKernel(K, z(K.shape[0], 0), zero), labels)


def _geometry(G, labels) -> dict[str, np.ndarray]:
    if isinstance(G, TiltedKernel):
        return class_measures(G, labels)
    return class_measures_dense(G, labels)


def temperature_curve(
    x_train,
    y_train,
    temperatures,
    *,
    width: float,
    activation: str = "erf",
    prior_w: float = 1.0,
    prior_v: float = 1.0,
    x_test=None,
    y_test=None,
    level: str = "gaussian",
    device: str | torch.device | None = None,
    architecture: str = "fc",
    patch_size: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
    sampler: SamplerSettings | None = None,
) -> TemperatureCurve:
    """Posterior observables of a one-hidden-layer network of width N1 = ``width`` over temperatures.

    ``width=[N1, ..., NL]`` (L ≥ 2) gives the deep FC network and ``architecture="cnn"`` with
    ``width=Nc``, ``patch_size=m``, ``image_shape=(C, H, W)`` the one-hidden-layer CNN (see
    equilibrium/architectures.py and docs/architectures.md); an int width stays this theory.

    Inputs are validated first (one ValueError naming the parameter). Then: NNGP kernel blocks
    (``equilibrium.kernels``), one eigendecomposition of K_c (``equilibrium.action.factorise``),
    the saddle point Q*(T) for all temperatures, the GP predictor, and the level's ⟨K_W⟩(T) with
    geometry and weight moments (see :class:`TemperatureCurve`). ``y_train`` is ±1 (P,) or one-hot
    (P, D). ``device`` (extra, optional) runs the torch work there (e.g. ``"cuda"``).

    Cost after the eigendecomposition: O(P) per temperature for the saddle point and training
    error, O(P·P_test) for the test predictor, O(P²) per temperature for the diagonal-dependent
    geometry (radii, unit sphere) of the spectral levels.

    ``level="sampled"``: the exact posterior sampled at every temperature (equilibrium.sampling, with
    ``sampler`` settings; default: adaptive length until R̂ < 1.01 and ESS ≥ 200), every value with a
    standard error (``curve.sem(name)``) and per-temperature diagnostics (``curve.diagnostics``).
    """
    if is_other_architecture(width, architecture):
        return architecture_curve(TemperatureCurve, x_train, y_train, temperatures, width=width,
                                  architecture=architecture, patch_size=patch_size, image_shape=image_shape,
                                  activation=activation, prior_w=prior_w, prior_v=prior_v, x_test=x_test,
                                  y_test=y_test, level=level, device=device, sampler=sampler)
    if patch_size is not None or image_shape is not None:
        raise ValueError("patch_size/image_shape: only for architecture='cnn'")
    if np.ndim(width) == 1 and len(width) == 1:  # [N1]: one hidden layer
        width = width[0]
    T, X, Y, Xt, Yt, D = _validate(x_train, y_train, temperatures, width, activation, prior_w, prior_v,
                                   x_test, y_test, level)
    if sampler is not None and not isinstance(sampler, SamplerSettings):
        raise ValueError(f"sampler: must be an equilibrium.SamplerSettings or None, got {type(sampler).__name__}")
    if level == "sampled":
        return _sampled_curve(T, X, Y, Xt, Yt, D, width=width, activation=activation, prior_w=prior_w,
                              prior_v=prior_v, sampler=sampler, device=device)
    lev = available_levels()[level]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    Xd = torch.as_tensor(X, device=dev)
    Yd = torch.as_tensor(Y, device=dev)
    Xtd = None if Xt is None else torch.as_tensor(Xt, device=dev)
    Ytd = None if Yt is None else torch.as_tensor(Yt, device=dev)
    kb: KernelBlocks = nngp_kernels(Xd, Xtd, activation=activation, prior_w=prior_w, device=dev)
    nT = len(T)
    # one path for any number of outputs: ±1 labels give a scalar Q (the fast scan), one-hot a D×D Q
    sp = factorise(kb.train, Yd, prior_v=prior_v)
    F0 = None if kb.test_train is None else kb.test_train @ sp.U  # test rows in K's eigenbasis, once
    if lev.uses_saddle:
        sad = solve_saddle(sp, T, width=width)
        Q, conv, nmin = sad.Q, sad.converged, sad.n_minima
    else:  # infinite width: Q = 1 (the identity for D outputs)
        Q = np.ones(nT) if D == 1 else np.broadcast_to(np.eye(D), (nT, D, D)).copy()
        conv, nmin = np.ones(nT, bool), np.ones(nT, np.int64)
    predict = gp_predictor(sp, kb.test_train, kb.test_diagonal, Ytd, test_rotated=F0)
    readout = Q / prior_v if D == 1 else np.trace(Q, axis1=1, axis2=2) / (D * prior_v)
    pred = predict(T, Q)
    ctx = LevelContext(x_train=Xd, y_train=Yd, x_test=Xtd, kernels=kb, spectrum=sp, temperatures=T, Q=Q,
                       width=float(width), activation=activation, prior_w=float(prior_w), prior_v=float(prior_v),
                       test_rotated=F0, y_test=Ytd)
    post = lev.posterior(ctx)
    # the level's own fixed point (cavity closures, single_neuron): where it failed, nothing is a result (B.6)
    failed = np.zeros(nT, bool) if post.converged is None else ~np.asarray(post.converged, dtype=bool)
    in_regime, regime_reason = _regime(post, T, Q, sp, X.shape[0], float(width), float(prior_v),
                                       linear=isinstance(activation, str) and activation == "identity", failed=failed)
    geo = _geometry(post.train, Y)
    reference = {k: v[0] for k, v in _reference(kb.train, Y).items()}
    test_geo: dict[str, np.ndarray] = {}
    if post.test is not None and Yt is not None and len(np.unique(Yt if D == 1 else Yt.argmax(1))) >= 2:
        test_geo = _geometry(post.test, Yt)
        reference.update({f"test_{k}": v[0] for k, v in _reference(kb.test, Yt).items()})
    approximations = _correct_unit_sphere(geo, test_geo, post, Xd, Y, Xtd, Yt, activation, prior_w, width, lev)
    E = weight_directions(Xd)
    if post.tilt is None:  # levels without a spectral tilt carry no closed-form weight moments
        wm, wl = np.full((nT, E.shape[0], E.shape[0]), np.nan), np.full(nT, np.nan)
    else:
        wm, wl = tilted_weight_moments(post.tilt, sp.U, kb.slope_train, Xd, Yd, E, prior_w=float(prior_w))
    nan = np.full(nT, np.nan)
    own = post.observables or {}  # a level with its own predictor (cavity) replaces the Q* GP's
    if "train_error" in own:
        pred = replace(pred, **{k: own[k] for k in ("train_error", "train_variance", "test_error", "test_bias2")},
                       test_variance_mean=own["test_variance"], test_mean=own["test_prediction"],
                       test_variance=own["test_prediction_variance"])
        readout = own["readout_second_moment"]
    if "weight_moments" in own:  # levels without a spectral tilt that measure the weights (single_neuron, cavity)
        wm, wl = own["weight_moments"], own["weight_label_moment"]
    curve = TemperatureCurve(
        temperature=T, Q=np.asarray(Q), train_error=pred.train_error, train_variance=pred.train_variance,
        test_error=pred.test_error if pred.test_error is not None else nan,
        test_bias2=pred.test_bias2 if pred.test_bias2 is not None else nan,
        test_variance=pred.test_variance_mean if pred.test_variance_mean is not None else nan,
        readout_second_moment=np.asarray(readout, dtype=np.float64),
        centroid_shift=float(width) * (geo["centroid_distance"] - reference["centroid_distance"]),
        **{k: geo[k] for k in MEASURES},
        weight_moments=wm, weight_label_moment=wl, weight_directions=E,
        converged=np.asarray(conv, dtype=bool) & ~failed, n_minima=np.asarray(nmin),
        width=float(width), activation=activation if isinstance(activation, str) else getattr(activation, "__name__", "callable"),
        prior_w=float(prior_w), prior_v=float(prior_v), level=level,
        data_fingerprint=geometry.data_fingerprint(X, Y), n_outputs=D,
        test_geometry=test_geo, reference=reference,
        test_prediction=pred.test_mean, test_prediction_variance=pred.test_variance,
        in_regime=in_regime, regime_reason=regime_reason, mean_kernel_approximations=approximations,
        standard_errors=dict(post.standard_errors or {}),
    )
    return _blank(curve, failed) if failed.any() else curve


# the per-temperature results of a TemperatureCurve (leading axis = temperature); Q is the saddle point's
_RESULT_FIELDS = ("train_error", "train_variance", "test_error", "test_bias2", "test_variance", "readout_second_moment",
                  "centroid_shift", *MEASURES, "weight_moments", "weight_label_moment", "test_prediction",
                  "test_prediction_variance")


def _blank(curve: TemperatureCurve, failed: np.ndarray) -> TemperatureCurve:
    """NaN in every result at the temperatures ``failed`` whose fixed point was not found: the last iterate of a
    failed solve depends on the solver's path and is not a result (docs/theory.md B.6, item 2)."""
    def rows(a):
        a = np.array(a, dtype=np.float64)
        a[failed] = np.nan
        return a

    values = {k: rows(getattr(curve, k)) for k in _RESULT_FIELDS if getattr(curve, k) is not None}
    return replace(curve, **values, test_geometry={k: rows(v) for k, v in curve.test_geometry.items()})


def _correct_unit_sphere(geo, test_geo, post, X, Y, Xt, Yt, activation, prior_w, width, lev) -> tuple[str, ...]:
    """Replace the mean-kernel unit-sphere measures by their delta-method posterior averages
    (equilibrium.unit_sphere, docs/theory.md §4.3), in place; returns the fields still computed from
    the mean kernel: all of them for a callable activation, the infinite-width level (no 1/N1
    fluctuations to correct: its K_W is deterministic) or where the expansion is not trusted."""
    names = ("unit_centroid_distance", "unit_class_radius")
    if not isinstance(activation, str):
        return names
    if not lev.uses_saddle:  # nngp: K_W = K exactly at infinite width, nothing to correct
        return ()
    trusted = True
    for g, x, y, block in ((geo, X, Y, post.train), (test_geo, Xt, Yt, post.test)):
        if not g or block is None:
            continue
        ns = prior_neuron_samples(x, activation=activation, prior_w=float(prior_w))
        corrected, ok = unit_sphere_measures(block, y, ns, width=float(width))
        for k in names:  # keep the mean-kernel value where the expansion is not trusted
            g[k] = np.where(ok.reshape((-1,) + (1,) * (corrected[k].ndim - 1)), corrected[k], g[k])
        trusted = trusted and bool(ok.all())
    return () if trusted else names


def _regime(post: PosteriorKernels, T, Q, sp, n_train: int, width: float, prior_v: float, *, linear: bool = False,
            failed: np.ndarray | None = None):
    """Regime indicator per temperature (docs/theory.md B.6): the level's own checks (importance-weight
    degeneracy, convergence, its cavity rank bound) when it has them; otherwise the rank bound
    T·TrΣ/P ≥ 1 − (N1 − 1)/P on the Gaussian-equivalent cavity field Σ = (T + Q K/λ1)⁻¹; and N1 ≥ 50.
    At the temperatures ``failed`` (the level's fixed point not found) the only reason is the level's own
    non-convergence, as in equilibrium.cavity: a result that does not exist is not checked further.
    ``linear`` (identity activation): no rank-bound check — the Q* theory is exact there to O(1/N1) although
    its Σ breaks the bound (docs/theory.md B.9: the bound constrains E[A_∖i⁻¹], not the Σ of the measure)."""
    if post.regime is not None:
        ok, why = post.regime
        own_sigma = post.observables is not None and "train_error" in post.observables  # cavity: its own Σ
        extra = [] if (own_sigma or linear) else [rank_bound(gaussian_sigma_trace(T, Q, sp.kappa, prior_v=prior_v,
                                                                             width=width), n_train, width)]
        if not own_sigma:  # levels with their own predictor (cavity: N1 ≥ 50, condensate: N1 ≥ 5) check the width themselves
            extra.append(width_check(width, len(T)))
        if failed is not None:
            extra = [(np.asarray(mask, bool) | failed, reason) for mask, reason in extra]
        if not extra:
            return np.asarray(ok, dtype=bool), tuple(why)
        ok2, why2 = regime_flags(np.full(len(T), np.inf), np.ones(len(T), bool), extra=extra)
        return (np.asarray(ok, bool) & ok2,
                tuple("; ".join(r for r in (a, b) if r) for a, b in zip(why, why2)))
    checks = ([] if linear else [rank_bound(gaussian_sigma_trace(T, Q, sp.kappa, prior_v=prior_v, width=width),
                                             n_train, width)]) + [width_check(width, len(T))]
    return regime_flags(np.full(len(T), np.inf), np.ones(len(T), bool), extra=checks)


def _sampled_curve(T, X, Y, Xt, Yt, D, *, width, activation, prior_w, prior_v, sampler, device) -> TemperatureCurve:
    """The sampled level: posterior averages per sample (equilibrium.sampling) in a TemperatureCurve."""
    if isinstance(width, float) and not float(width).is_integer():
        raise ValueError(f"width: the sampled level needs an integer width, got {width}")
    if not isinstance(activation, str):
        raise ValueError("activation: the sampled level needs an activation name, not a callable")
    if sampler is None:
        sampler = SamplerSettings(device=None if device is None else str(device))
    if Yt is None:
        Xt = None
    values, errors, diags = sampled_curve_fields(X, Y, T, width=int(width), activation=activation, prior_w=prior_w,
                                                 prior_v=prior_v, x_test=Xt, y_test=Yt, settings=sampler)
    kb = nngp_kernels(torch.as_tensor(X), None if Xt is None else torch.as_tensor(Xt), activation=activation,
                      prior_w=prior_w)
    reference = {k: v[0] for k, v in _reference(kb.train, Y).items()}
    test_geo = {k[5:]: v for k, v in values.items() if k.startswith("test_") and k[5:] in MEASURES}
    if test_geo:
        reference.update({f"test_{k}": v[0] for k, v in _reference(kb.test, Yt).items()})
    nT = len(T)
    nan = np.full(nT, np.nan)
    values["centroid_shift"] = float(width) * (values["centroid_distance"] - reference["centroid_distance"])
    errors["centroid_shift"] = float(width) * errors["centroid_distance"]
    return TemperatureCurve(
        temperature=T, Q=values["Q"], train_error=values["train_error"], train_variance=values["train_variance"],
        test_error=values.get("test_error", nan), test_bias2=values.get("test_bias2", nan),
        test_variance=values.get("test_variance", nan), readout_second_moment=values["readout_second_moment"],
        centroid_shift=values["centroid_shift"], **{k: values[k] for k in MEASURES},
        weight_moments=values["weight_moments"], weight_label_moment=values["weight_label_moment"],
        weight_directions=weight_directions(torch.as_tensor(X)),
        converged=np.array([d.converged for d in diags]), n_minima=np.zeros(nT, np.int64),
        width=float(width), activation=activation, prior_w=float(prior_w), prior_v=float(prior_v), level="sampled",
        data_fingerprint=geometry.data_fingerprint(X, Y), n_outputs=D, test_geometry=test_geo, reference=reference,
        test_prediction=values.get("test_prediction"), test_prediction_variance=values.get("test_prediction_variance"),
        standard_errors=errors, diagnostics=diags, mean_kernel_approximations=(),
        in_regime=np.array([bool(d.converged) for d in diags]),
        regime_reason=tuple("" if d.converged else "sampler diagnostics did not pass" for d in diags),
    )
