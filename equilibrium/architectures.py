"""Architecture dispatch of :func:`equilibrium.temperature_curve`: deep FC and one-hidden-layer CNN.

``temperature_curve(x, y, T, width=[N1, ..., NL], ...)`` (a list of L ≥ 2 widths) runs the deep
FC theory of :mod:`equilibrium.deep`; ``temperature_curve(x, y, T, width=Nc, architecture="cnn",
patch_size=m, image_shape=(C, H, W), ...)`` the CNN theory of :mod:`equilibrium.conv`. Both return
a :class:`~equilibrium.TemperatureCurve` whose top-level fields describe the LAST hidden layer
(deep: the activation Gram G_L of layer L and its width N_L; CNN: the renormalised kernel K_R),
with ``architecture`` set and the per-layer / per-patch arrays in ``layer_fields``:

- deep: ``widths`` (L,), ``priors`` (L,) λ_1..λ_L, ``Q`` (nT, L), ``weight_second_moment``
  (nT, L) = Q_ℓ/λ_ℓ (D outputs: the last column is tr Q_L/D, and ``Q_readout`` (nT, D, D) is Q_L), every geometry measure per layer (nT, L[, C[, C]]) and its infinite-width
  value ``reference_<measure>`` (L[, C[, C]]), ``test_<measure>`` on the test blocks;
- cnn: ``Q`` (nT, Np, Np), ``patch_<measure>`` (Np[, C[, C]]) of every patch's NNGP kernel K_ii,
  ``patch_size``, ``image_shape``.

Level: both theories are the kernel-renormalisation (saddle-point) level: the predictor uses Q*,
the layer Grams are the renormalised kernels without the O(1/N) tilt of the one-hidden-layer
``gaussian`` level; ``level`` must be "gaussian" (the default, meaning the saddle point) and is
recorded as "renormalised". Weight moments are not derived for these architectures (NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import conv, deep

__all__ = ["ARCHITECTURES", "is_other_architecture", "architecture_curve"]

ARCHITECTURES: tuple[str, ...] = ("fc", "cnn")


def is_other_architecture(width: Any, architecture: str) -> bool:
    """True when ``temperature_curve`` must dispatch here: a CNN, or a list of ≥ 2 FC widths."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture: must be one of {ARCHITECTURES}, got {architecture!r}")
    if architecture == "cnn":
        return True
    return np.ndim(width) == 1 and len(width) >= 2


def _nan(*shape) -> np.ndarray:
    return np.full(shape, np.nan)


def architecture_curve(curve_cls, x_train, y_train, temperatures, *, width, architecture: str = "fc",
                       patch_size: int | None = None, image_shape=None, activation: str = "erf",
                       prior_w: float = 1.0, prior_v=1.0, x_test=None, y_test=None, level: str = "gaussian",
                       device=None, sampler=None):
    """Run the deep-FC or CNN theory and pack it into ``curve_cls`` (TemperatureCurve);
    ``level="sampled"``: the exact posterior sampled instead (equilibrium.sampling_arch, ``sampler``
    settings), in the same layout with standard errors and diagnostics."""
    from .weights import weight_directions

    if level == "sampled":
        from .sampling_arch import sampled_architecture_curve

        return sampled_architecture_curve(curve_cls, x_train, y_train, temperatures, width=width,
                                          architecture=architecture, patch_size=patch_size, image_shape=image_shape,
                                          activation=activation, prior_w=prior_w, prior_v=prior_v, x_test=x_test,
                                          y_test=y_test, sampler=sampler, device=device)
    if level != "gaussian":
        raise ValueError(f"level: the deep-FC and CNN theories have the saddle-point level only (pass "
                         f"level='gaussian', the default) and the exact sampler (level='sampled'), got {level!r}")
    T = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if T.size == 0 or not np.all(np.isfinite(T)) or np.any(T <= 0):
        raise ValueError(f"temperatures: must be a non-empty array of finite values > 0, got {T[:5]}")
    nT = len(T)
    if architecture == "cnn":
        if np.ndim(width) != 0:
            raise ValueError(f"width: for architecture='cnn' the number of channels Nc (one number), got {width!r}")
        if patch_size is None or image_shape is None:
            raise ValueError("patch_size/image_shape: architecture='cnn' needs patch_size=m and image_shape=(C, H, W)")
        if not (np.ndim(prior_v) == 0):
            raise ValueError(f"prior_v: one readout prior λ1 for the CNN, got {prior_v!r}")
        cc = conv.conv_temperature_curve(x_train, y_train, T, width=width, patch_size=patch_size,
                                         image_shape=tuple(image_shape), activation=activation, prior_w=prior_w,
                                         prior_v=prior_v, x_test=x_test, y_test=y_test, device=device)
        geo, ref = cc.kernel_geometry, cc.reference
        layer_fields = {"Q": cc.Q, "patch_size": np.asarray(cc.patch_size), "image_shape": np.asarray(cc.image_shape)}
        layer_fields.update({f"patch_{k}": v for k, v in cc.patch_geometry.items()})
        common = dict(Q=cc.Q, readout_second_moment=cc.readout_second_moment, width=float(cc.channels),
                      prior_v=float(cc.prior_v), test_geometry={}, reference=dict(ref))
        src = cc
    else:
        if patch_size is not None or image_shape is not None:
            raise ValueError("patch_size/image_shape: only for architecture='cnn'")
        dc = deep.deep_temperature_curve(x_train, y_train, T, width=list(width), activation=activation,
                                         prior_w=prior_w, prior_v=prior_v, x_test=x_test, y_test=y_test,
                                         device=device)
        geo = {k: v[:, -1] for k, v in dc.layer_geometry.items()}
        ref = {k: v[-1] for k, v in dc.reference.items()}
        if not geo:  # (P, D) targets that are not one-hot: no class labels, no class geometry
            geo = {k: _nan(nT) for k in deep.GEOMETRY_MEASURES}
            ref = {k: np.nan for k in deep.GEOMETRY_MEASURES}
        test_geo = {k: v[:, -1] for k, v in dc.test_layer_geometry.items()}
        layer_fields = {"widths": np.asarray(dc.widths), "priors": np.asarray(dc.priors), "Q": dc.Q,
                        "weight_second_moment": dc.weight_second_moment}
        if dc.Q_readout is not None:  # D outputs: the D×D readout order parameter Q_L
            layer_fields["Q_readout"] = dc.Q_readout
        layer_fields.update(dc.layer_geometry)
        layer_fields.update({f"reference_{k}": v for k, v in dc.reference.items()})
        layer_fields.update({f"test_{k}": v for k, v in dc.test_layer_geometry.items()})
        common = dict(Q=dc.Q, readout_second_moment=dc.weight_second_moment[:, -1], width=float(dc.widths[-1]),
                      prior_v=float(dc.priors[-1]), test_geometry=test_geo, reference=dict(ref))
        src = dc
    E = weight_directions(np.asarray(x_train, dtype=np.float64))
    r = E.shape[0]
    return curve_cls(
        temperature=T, train_error=src.train_error, train_variance=src.train_variance, test_error=src.test_error,
        test_bias2=src.test_bias2, test_variance=src.test_variance,
        centroid_shift=common["width"] * (geo["centroid_distance"] - ref["centroid_distance"]),
        **{k: geo[k] for k in deep.GEOMETRY_MEASURES},
        weight_moments=_nan(nT, r, r), weight_label_moment=_nan(nT), weight_directions=E,
        converged=src.converged, n_minima=src.n_minima, activation=activation, prior_w=float(prior_w),
        level="renormalised", data_fingerprint=src.data_fingerprint,
        n_outputs=1 if getattr(src, "Q_readout", None) is None else int(src.Q_readout.shape[-1]),
        test_prediction=src.test_prediction, test_prediction_variance=src.test_prediction_variance,
        architecture=architecture, layer_fields=layer_fields, **common,
    )
