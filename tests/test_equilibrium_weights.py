"""equilibrium.weights: the one definition of the first-layer weight moments, and the structure of the
equilibrium package (no import cycles, no hidden imports)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import re

import numpy as np
import pytest
import torch

from gdeq.equilibrium import linalg, weights

PACKAGE = Path(weights.__file__).resolve().parent


@pytest.mark.parametrize("shape", [(20, 50), (60, 12)])  # P < N0 (eigh of XXᵀ) and P > N0 (eigh of XᵀX)
def test_projections_of_omega_equal_measured_weight_moments(shape):
    """From Ω = (1/N1) Σ h_i h_iᵀ the projections equal λ0 × (1/N1) Σ (e_j·w)(e_l·w) measured on W directly,
    and λ0 e_yᵀ M_w e_y along e_y = Xᵀy/|Xᵀy| (two independent computations of the same moments)."""
    rng = np.random.default_rng(0)
    P, N0 = shape
    x = rng.normal(size=(P, N0)) * np.linspace(0.3, 2.0, N0)
    y = np.where(rng.random(P) < 0.5, -1.0, 1.0)
    lam0, N1 = 1.7, 9
    W = rng.normal(size=(N1, N0)) * (1 + rng.random(N0))
    h = x @ W.T / math.sqrt(N0)
    label, pcs = weights.weight_moment_projections(h @ h.T / N1, x, y, prior_w=lam0, n_components=6)
    E = weights.weight_directions(x, 6)
    np.testing.assert_allclose(E @ E.T, np.eye(E.shape[0]), atol=1e-12)
    np.testing.assert_allclose(pcs, lam0 * weights.measure_weight_moments(W, E), rtol=1e-9, atol=1e-12)
    ey = x.T @ y / np.linalg.norm(x.T @ y)
    np.testing.assert_allclose(label[0], lam0 * np.mean((W @ ey) ** 2), rtol=1e-10)
    # the directions are the top right singular vectors of X, largest component positive
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(np.abs(E), np.abs(vt[:6]), atol=1e-9)
    assert np.all(E[np.arange(len(E)), np.abs(E).argmax(1)] > 0)


def test_prior_weight_moments_are_isotropic():
    """Zero tilt (infinite width): M_w = I/λ0 along any orthonormal directions and along e_y."""
    from gdeq.equilibrium.posterior import zero_tilt

    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(15, 30)))
    y = torch.as_tensor(np.where(rng.random(15) < 0.5, -1.0, 1.0))
    U = torch.linalg.qr(torch.as_tensor(rng.normal(size=(15, 15))))[0]
    E = weights.weight_directions(x, 4)
    wm, wl = weights.tilted_weight_moments(zero_tilt(U, 3), U, torch.ones(15, dtype=torch.float64), x, y, E,
                                           prior_w=2.5)
    np.testing.assert_allclose(wm, np.broadcast_to(np.eye(4) / 2.5, (3, 4, 4)), atol=1e-14)
    np.testing.assert_allclose(wl, 1 / 2.5, rtol=1e-14)


def test_eigh_matches_torch_and_refuses_bad_input():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 40))
    A = torch.as_tensor(a @ a.T)
    w, V = linalg.eigh(A)
    w_ref = torch.linalg.eigvalsh(A)
    np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose((V * w) @ V.T, A.numpy(), atol=1e-10)
    np.testing.assert_allclose(V.T @ V, np.eye(40), atol=1e-12)
    with pytest.raises(ValueError, match="A:"):
        linalg.eigh(A.float())
    with pytest.raises(ValueError, match="A:"):
        linalg.eigh(A[:, :3])


def _local_imports(path: Path) -> set[str]:
    """Modules of the equilibrium package imported by ``path`` (relative or absolute imports)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                names = [mod] if mod else [a.name for a in node.names]
                out.update(n.split(".")[0] for n in names)
            elif mod.startswith("gdeq.equilibrium."):
                out.add(mod.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("gdeq.equilibrium."))
    return {m for m in out if (PACKAGE / f"{m}.py").is_file()}


def test_equilibrium_has_no_import_cycle_and_no_hidden_imports():
    """Regression: curve -> levels -> single_neuron -> curve was a cycle, hidden behind importlib and a
    function-level import. Every module's imports (at any depth of the file) form an acyclic graph."""
    graph = {p.stem: _local_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for name in graph:
        source = (PACKAGE / f"{name}.py").read_text()
        assert "importlib" not in source, f"equilibrium/{name}.py imports through importlib"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_one_home_per_concept_in_equilibrium():
    """Regression (issue 10, item 15): equilibrium keeps no copy of the activation table, of the span
    reduction, or of the weight-moment projections; every P-sized eigh goes through linalg.eigh."""
    from gdeq import geometry
    from gdeq.equilibrium import kernels

    assert kernels.ACTIVATIONS is geometry.ACTIVATIONS and kernels.ODD_ACTIVATIONS is geometry.ODD_ACTIVATIONS
    assert not hasattr(kernels, "activation_function")
    with pytest.raises(ValueError, match="activation"):
        kernels.nngp_kernels(np.ones((3, 2)), activation="swish")
    sources = {p.stem: p.read_text() for p in PACKAGE.glob("*.py")}
    # an SVD of the inputs (or of the test inputs' remainder) is the span reduction written again; an SVD of
    # other matrices (an orthonormal basis of a few directions) is not
    span_copies = [k for k, s in sources.items() if re.search(r"linalg\.svd\((x|xt|x_train|x_test|resid)\b", s)]
    assert span_copies == [], "span reduction: use geometry.span_reduction"
    assert [k for k, s in sources.items() if "def weight_moment_projections" in s or "def weight_directions" in s] \
        == ["weights"]
    assert [k for k, s in sources.items() if "torch.linalg.eigh(K" in s or "np.linalg.eigh(C" in s] == []


def test_top_eigenpairs_equal_the_full_decomposition():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(60, 30))
    A = torch.as_tensor(a @ a.T)
    w, V = linalg.eigh(A)
    wt, Vt = linalg.eigh(A, top=5)
    np.testing.assert_allclose(wt.numpy(), w[-5:].numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.abs((Vt.T @ V[:, -5:]).numpy()), np.eye(5), atol=1e-10)
    with pytest.raises(ValueError, match="top"):
        linalg.eigh(A, top=0)
