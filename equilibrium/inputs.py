"""Input checks shared by every equilibrium entry point (theory levels, architectures, samplers).

One home for them, so every entry point refuses bad input the same way: one ``ValueError`` that starts
with the parameter's name and states the allowed range, raised before any work.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def real_array(value, name: str) -> np.ndarray:
    """``value`` as a finite float64 array (tensors are copied to the CPU)."""
    a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{name}: must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    return a


def number(name: str, value, *, above: float | None = 0.0, at_least: float | None = None) -> float:
    """A finite real number (not a bool) that is > ``above`` (default 0) or, if given, ≥ ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name}: must be ≥ {at_least:g}, got {value}")
    if at_least is None and above is not None and value <= above:
        raise ValueError(f"{name}: must be > {above:g}, got {value}")
    return float(value)


def temperatures(values, name: str = "temperatures") -> np.ndarray:
    """A non-empty 1-d float64 array of finite temperatures > 0."""
    T = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    T = T.reshape(-1)
    if T.size == 0 or not np.all(np.isfinite(T)) or np.any(T <= 0):
        raise ValueError(f"{name}: must be a non-empty array of finite values > 0, got {T[:5].tolist()}")
    return T


def design_matrix(x, name: str = "x_train", *, n_features: int | None = None) -> np.ndarray:
    """Inputs of shape (P, N0) with P ≥ 2 (``x_train``) or (P_test, N0) matching the training inputs."""
    X = real_array(x, name)
    if n_features is None and (X.ndim != 2 or X.shape[0] < 2):
        raise ValueError(f"{name}: must have shape (P, N0) with P ≥ 2, got {X.shape}")
    if n_features is not None and (X.ndim != 2 or X.shape[1] != n_features):
        raise ValueError(f"{name}: must have shape (P_test, {n_features}), got {X.shape}")
    return X


def outputs(y: np.ndarray, name: str, n: int, n_in_name: str, *, labels: str = "classes") -> int:
    """Check a target array against its inputs' n rows; returns the number of outputs D.

    ``labels``: "pm1" ±1 of shape (P,); "classes" ±1 of shape (P,) or one-hot (P, D ≥ 2); "real" any finite
    (P,) or (P, D) (regression targets; class-manifold measures then use sign / argmax).
    """
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{name}: has shape {y.shape} but {n_in_name} has {n} rows")
    if labels == "real":
        return 1 if y.ndim == 1 else y.shape[1]
    if y.ndim == 2 and y.shape[1] == 1 and labels == "pm1":
        y = y.reshape(-1)
    if y.ndim == 1:
        if not np.all(np.abs(y) == 1):
            raise ValueError(f"{name}: a 1-d label array must be ±1 (binary task), got values {np.unique(y)[:5]}")
        return 1
    if labels == "pm1":
        raise ValueError(f"{name}: this model takes ±1 labels of shape ({n},) (single output), got shape {y.shape}")
    if y.shape[1] >= 2 and np.all((y == 0) | (y == 1)) and np.all(y.sum(1) == 1):
        return y.shape[1]
    raise ValueError(f"{name}: must be ±1 of shape (P,) or one-hot of shape (P, D) with D ≥ 2, got shape {y.shape}")


def class_labels(y: np.ndarray) -> np.ndarray:
    """Integer class of each row: argmax of a one-hot/multi-output target, else the sign of a scalar one."""
    return y.argmax(1) if y.ndim == 2 and y.shape[1] > 1 else (y.reshape(len(y)) > 0).astype(np.int64)


def data_set(x_train, y_train, x_test=None, y_test=None, *, labels: str = "classes", test_labels: bool = True):
    """(X, Y, X_test, Y_test, D): checked training and (optional) test data, float64.

    Training data need both classes present (the class-manifold measures); test data have the training
    data's layout, and need both arrays or neither (``test_labels=False``: x_test alone is allowed).
    """
    X = design_matrix(x_train)
    Y = real_array(y_train, "y_train")
    D = outputs(Y, "y_train", X.shape[0], "x_train", labels=labels)
    if labels == "pm1":
        Y = Y.reshape(-1)
    if len(np.unique(class_labels(Y))) < 2:
        raise ValueError("y_train: needs at least two classes present (the class-manifold measures)")
    if y_test is not None and x_test is None:
        raise ValueError("y_test: given without x_test")
    if test_labels and x_test is not None and y_test is None:
        raise ValueError("x_test/y_test: give both or neither")
    Xt = Yt = None
    if x_test is not None:
        Xt = design_matrix(x_test, "x_test", n_features=X.shape[1])
    if y_test is not None:
        Yt = real_array(y_test, "y_test")
        if labels == "pm1":
            Yt = Yt.reshape(-1)
        Dt = outputs(Yt, "y_test", Xt.shape[0], "x_test", labels=labels)
        if Dt != D:
            raise ValueError(f"y_test: has {Dt} outputs but y_train has {D}")
    return X, Y, Xt, Yt, D
