"""Geometry measures against direct computations on explicit features (loops over points)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdeq import geometry


def _features(seed: int, replicas: int = 3, p: int = 13, n: int = 7):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 6 + [1] * (p - 6))
    phi = rng.standard_normal((replicas, p, n)) + 0.8 * labels[None, :, None]
    return phi, labels


def _direct(phi_r: np.ndarray, labels: np.ndarray, unit: bool = False) -> dict:
    """Reference numbers from explicit feature vectors, one replica, plain loops."""
    z = phi_r / np.linalg.norm(phi_r, axis=1, keepdims=True) if unit else phi_r / np.sqrt(phi_r.shape[1])
    mu = {c: z[labels == c].mean(0) for c in np.unique(labels)}
    radius = {c: np.sqrt(np.mean([np.sum((zi - mu[c]) ** 2) for zi in z[labels == c]])) for c in mu}
    inter, intra = [], []
    for i, j in itertools.combinations(range(len(z)), 2):
        d2 = np.sum((z[i] - z[j]) ** 2)
        (intra if labels[i] == labels[j] else inter).append(d2)
    return dict(dist=np.sum((mu[1] - mu[0]) ** 2), radius=[radius[0], radius[1]],
                inter=np.mean(inter), intra=np.mean(intra), inter_d=np.mean(np.sqrt(inter)))


def test_gram_measures_match_direct_feature_computation():
    phi, labels = _features(0)
    G = geometry.feature_gram(phi)
    dist = geometry.centroid_distance(G, labels)
    radius = geometry.class_radius(G, labels)
    inter, intra = geometry.mean_pair_distances(G, labels)
    inter_d, _ = geometry.mean_pair_distances(G, labels, squared=False)
    unit_dist = geometry.centroid_distance(G, labels, unit_sphere=True)
    unit_radius = geometry.class_radius(G, labels, unit_sphere=True)
    for r in range(phi.shape[0]):
        ref = _direct(phi[r], labels)
        ref_unit = _direct(phi[r], labels, unit=True)
        assert dist[r] == pytest.approx(ref["dist"], rel=1e-12)
        np.testing.assert_allclose(radius[r], ref["radius"], rtol=1e-12)
        assert inter[r] == pytest.approx(ref["inter"], rel=1e-12)
        assert intra[r] == pytest.approx(ref["intra"], rel=1e-12)
        assert inter_d[r] == pytest.approx(ref["inter_d"], rel=1e-12)
        assert unit_dist[r] == pytest.approx(ref_unit["dist"], rel=1e-12)
        np.testing.assert_allclose(unit_radius[r], ref_unit["radius"], rtol=1e-12)


def test_feature_versions_agree_with_gram_versions_and_torch_matches_numpy():
    phi, labels = _features(1)
    G = geometry.feature_gram(phi)
    for unit in (False, True):
        np.testing.assert_allclose(
            geometry.centroid_distance_from_features(phi, labels, unit_sphere=unit),
            geometry.centroid_distance(G, labels, unit_sphere=unit), rtol=1e-12)
        np.testing.assert_allclose(
            geometry.class_radius_from_features(phi, labels, unit_sphere=unit),
            geometry.class_radius(G, labels, unit_sphere=unit), rtol=1e-12)
    # float32 torch input is promoted to float64 and returns a tensor with the numpy value
    out = geometry.centroid_distance(torch.as_tensor(G, dtype=torch.float32), labels)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), geometry.centroid_distance(G, labels), rtol=1e-6)


def test_centroid_vector_is_the_binary_contrast_and_gives_the_same_distance():
    phi, labels = _features(2, replicas=1)
    G = geometry.feature_gram(phi)[0]
    c = geometry.centroid_vector(labels)
    assert c.sum() == pytest.approx(0.0, abs=1e-15)
    assert c @ G @ c == pytest.approx(geometry.centroid_distance(G, labels), rel=1e-12)
    # ±1 labels and one-hot labels name the same classes
    pm = np.where(labels == 1, 1.0, -1.0)
    onehot = np.eye(2)[labels]
    assert geometry.centroid_distance(G, pm) == pytest.approx(geometry.centroid_distance(G, onehot), rel=1e-14)


def test_centroid_matrix_for_many_classes_matches_direct_means():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2, 3], 5)
    phi = rng.standard_normal((20, 9)) + labels[:, None]
    M = geometry.centroid_distance_matrix(geometry.feature_gram(phi), labels)
    z = phi / 3.0
    for a, b in itertools.product(range(4), repeat=2):
        ref = np.sum((z[labels == a].mean(0) - z[labels == b].mean(0)) ** 2)
        assert M[a, b] == pytest.approx(ref, abs=1e-12)


def test_alignment_and_participation_ratio_against_definitions():
    rng = np.random.default_rng(4)
    phi = rng.standard_normal((30, 5))
    y = np.sign(rng.standard_normal(30))
    G = phi @ phi.T / 5
    yy = np.outer(y, y)
    assert geometry.kernel_target_alignment(G, y) == pytest.approx(
        np.sum(G * yy) / (np.linalg.norm(G) * np.linalg.norm(yy)), rel=1e-12)
    H = np.eye(30) - 1 / 30
    Gc, Yc = H @ G @ H, H @ yy @ H
    assert geometry.kernel_target_alignment(G, y, centered=True) == pytest.approx(
        np.sum(Gc * Yc) / (np.linalg.norm(Gc) * np.linalg.norm(Yc)), rel=1e-12)
    # one-hot targets (D = 3), against the dense definition
    Y3 = np.eye(3)[rng.integers(0, 3, 30)]
    T3 = Y3 @ Y3.T
    T3c = H @ T3 @ H
    assert geometry.kernel_target_alignment(G, Y3) == pytest.approx(
        np.sum(G * T3) / (np.linalg.norm(G) * np.linalg.norm(T3)), rel=1e-12)
    assert geometry.kernel_target_alignment(G, Y3, centered=True) == pytest.approx(
        np.sum(Gc * T3c) / (np.linalg.norm(Gc) * np.linalg.norm(T3c)), rel=1e-12)
    # PR from the covariance spectrum of the centred features
    cov = np.cov(phi.T, bias=True)
    ev = np.linalg.eigvalsh(cov)
    assert geometry.participation_ratio(G) == pytest.approx(ev.sum() ** 2 / (ev**2).sum(), rel=1e-10)
    # limits: isotropic features in k dims give PR -> k; the target kernel itself has alignment 1
    assert geometry.kernel_target_alignment(yy, y) == pytest.approx(1.0, rel=1e-14)


def test_class_geometry_bundles_consistent_values():
    phi, labels = _features(5)
    geo = geometry.class_geometry_from_features(phi, labels)
    G = geometry.feature_gram(phi)
    np.testing.assert_allclose(geo.centroid_distance, geometry.centroid_distance(G, labels), rtol=1e-12)
    np.testing.assert_allclose(geo.unit_centroid_distance ** 2,
                               geometry.centroid_distance(G, labels, unit_sphere=True), rtol=1e-12)
    np.testing.assert_allclose(geo.distance_ratio, geo.inter_distance / geo.intra_distance, rtol=1e-14)
    assert set(geo.scalars()) >= {"centroid_distance", "class_radius_0", "unit_class_radius_1"}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_scaling_laws(seed, scale):
    """Squared distances scale with the Gram matrix; unit-sphere measures are scale-free."""
    phi, labels = _features(seed, replicas=1)
    G = geometry.feature_gram(phi)[0]
    assert geometry.centroid_distance(scale * G, labels) == pytest.approx(
        scale * geometry.centroid_distance(G, labels), rel=1e-10)
    np.testing.assert_allclose(geometry.class_radius(scale * G, labels, unit_sphere=True),
                               geometry.class_radius(G, labels, unit_sphere=True), rtol=1e-10)


def test_bad_labels_raise_clear_errors():
    G = np.eye(4)
    with pytest.raises(ValueError, match="labels: need at least two classes"):
        geometry.centroid_distance(G, np.zeros(4))
    with pytest.raises(ValueError, match="labels: length 3"):
        geometry.centroid_distance(G, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="two classes"):
        geometry.centroid_distance(G, np.array([0, 1, 2, 2]))
