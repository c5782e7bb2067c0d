"""The exact input reduction of a network whose first layer sees the inputs only linearly.

The likelihood of a first layer h_i = w_i·x/√N0 sees each w_i only through its component in the span
of the training inputs. With X = U S Vᵀ (thin SVD, numerical rank r), the coordinates Z = X V_r keep
every inner product among training inputs, so sampling (or training) the r span coordinates of w_i
with the original 1/√N0 scale is exact; the orthogonal components keep their prior. A test input
splits into its projection on the span and a remainder, whose pre-activation term w_⊥·x_⊥/√N0 is
Gaussian with covariance x_⊥·x'_⊥/(N0 λ0) under the prior: ``test_remainder`` holds the remainders
in their own orthonormal basis (P_test × k), so that term is ``test_remainder @ z / √N0`` with
z ~ N(0, I_k/λ0). Defined once here and used by the GD data module, the exact sampler and the
single-neuron theory level (one rank tolerance for all of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpanReduction", "span_reduction", "numerical_rank_tolerance"]


def numerical_rank_tolerance(singular_values: np.ndarray, shape: tuple[int, int]) -> float:
    """LAPACK's numerical-rank threshold s_max · max(m, n) · eps (as ``numpy.linalg.matrix_rank``)."""
    s_max = float(singular_values[0]) if singular_values.size else 0.0
    return s_max * max(shape) * np.finfo(np.float64).eps


@dataclass(frozen=True)
class SpanReduction:
    """Training inputs rotated onto an orthonormal basis of their span (see the module docstring).

    ``basis`` (N0, r) orthonormal columns; ``x_train`` (P, r) = X·basis; ``x_test`` (P_test, r) the
    test projections; ``test_remainder`` (P_test, k) the orthogonal remainders in their own basis
    (k = 0 when the test inputs lie in the span); ``input_dim`` the original N0.
    """

    basis: np.ndarray
    x_train: np.ndarray
    x_test: np.ndarray | None
    test_remainder: np.ndarray | None
    input_dim: int

    @property
    def rank(self) -> int:
        return self.basis.shape[1]


def span_reduction(x_train, x_test=None) -> SpanReduction:
    """Rotate ``x_train`` (P, N0) onto its span and split ``x_test`` into projection + remainder.

    One tolerance (:func:`numerical_rank_tolerance` of the training inputs) decides both the rank of
    the training span and which remainder directions of the test inputs are kept.
    """
    x = np.asarray(x_train, dtype=np.float64)
    x = x.reshape(len(x), -1)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    tol = numerical_rank_tolerance(s, x.shape)
    rank = max(1, int((s > tol).sum()))
    basis = vt[:rank].T
    if x_test is None:
        return SpanReduction(basis, x @ basis, None, None, x.shape[1])
    xt = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    if xt.shape[1] != x.shape[1]:
        raise ValueError(f"x_test: expected {x.shape[1]} input dimensions like x_train, got {xt.shape[1]}")
    proj = xt @ basis
    remainder = xt - proj @ basis.T
    if remainder.size:
        u2, s2, _ = np.linalg.svd(remainder, full_matrices=False)
        k = int((s2 > tol).sum())
        rem = u2[:, :k] * s2[:k]
    else:
        rem = np.zeros((len(xt), 0))
    return SpanReduction(basis, x @ basis, proj, rem, x.shape[1])
