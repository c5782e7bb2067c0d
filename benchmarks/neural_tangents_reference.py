"""Reference arrays from neural-tangents 0.6.5 for gdeq's NTK and lazy dynamics (tests/test_lazy.py).

Runs ONLY inside the isolated environment built by ``benchmarks/neural_tangents_env.sh`` (jax 0.4.26,
numpy < 2; these pins must never enter gdeq's environment). It imports nothing from gdeq and writes
``tests/data/ntk_reference.npz``:

    bash benchmarks/neural_tangents_env.sh            # (re)builds the venv if needed, then runs this

The equivalent stax network. gdeq's f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1 with w ~ N(0, I/λ0),
v ~ N(0, 1/λ1) (docs/conventions.md §1) is, as a function, neural-tangents' ``parameterization="ntk"``
network ``Dense(N1, W_std=1/√λ0) -> σ -> Dense(1, W_std=1/√λ1)`` (no biases) with weights W = √λ0 w,
V = √λ1 v ~ N(0, 1). Its NNGP kernel is gdeq's K/λ1 exactly. Gradients differ by the same factors,
∂f/∂w = √λ0 ∂f/∂W and ∂f/∂v = √λ1 ∂f/∂V, so with nt's NTK Θ_nt = K/λ1 (readout part = nt's nngp)
+ C K̇/λ1 (first layer):

    Θ_gdeq = λ1 · nngp_nt + λ0 · (Θ_nt − nngp_nt),   in particular Θ_gdeq = λ Θ_nt when λ0 = λ1 = λ.

Time. nt's ``gradient_descent_mse_ensemble`` is gradient flow on the MEAN loss ½ (1/(P D)) Σ (f − y)²
at ``learning_rate`` lr_nt: it evaluates e^{−Θ_nt lr_nt t / (P D)}. gdeq's lazy theory is on the SUM
loss ½ Σ (f − y)² (as ``gd_dynamics.train``), e^{−Θ_gdeq τ} with τ = η·steps. For λ0 = λ1 = λ the two
agree when lr_nt t / (P D) = λ τ; the file stores gdeq's τ and nt's (lr_nt, t).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "ntk_reference.npz"
P, PT, N0 = 24, 6, 8
TAUS = np.array([0.05, 0.5, 2.0, 20.0])  # gdeq continuous times τ = η·steps
NT_LR = 1.0

# name -> (nt activation layer, λ0, λ1, ensemble dynamics?)
CASES = {
    "erf": (stax.Erf(), 1.0, 1.0, True),
    "relu": (stax.Relu(), 2.0, 2.0, True),
    "identity": (stax.Identity(), 1.0, 1.0, True),
    "gelu": (stax.Gelu(approximate=False), 1.0, 1.0, False),
    "erf_mixed": (stax.Erf(), 2.0, 0.5, False),  # λ0 ≠ λ1: kernels only (see the module docstring)
}


def main() -> None:
    rng = np.random.default_rng(20190218)
    x_train = rng.normal(size=(P, N0))
    x_test = rng.normal(size=(PT, N0))
    y_train = np.sign(x_train[:, 0] + 0.5 * x_train[:, 1])[:, None]
    out: dict[str, np.ndarray] = dict(x_train=x_train, x_test=x_test, y_train=y_train[:, 0], taus=TAUS,
                                      versions=np.array([f"neural-tangents {nt.__version__}", f"jax {jax.__version__}"]))
    for name, (act, lam0, lam1, dynamics) in CASES.items():
        _, _, kernel_fn = stax.serial(
            stax.Dense(512, W_std=1.0 / np.sqrt(lam0), parameterization="ntk"), act,
            stax.Dense(1, W_std=1.0 / np.sqrt(lam1), parameterization="ntk"))
        kernel_fn = jax.jit(kernel_fn, static_argnames="get")
        xtr, xte = jnp.asarray(x_train), jnp.asarray(x_test)
        blocks = dict(train=kernel_fn(xtr, None, ("nngp", "ntk")), test_train=kernel_fn(xte, xtr, ("nngp", "ntk")),
                      test=kernel_fn(xte, None, ("nngp", "ntk")))
        out[f"{name}/prior"] = np.array([lam0, lam1])
        for block, k in blocks.items():
            nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
            out[f"{name}/nngp_{block}"] = nngp
            out[f"{name}/ntk_{block}"] = lam1 * nngp + lam0 * (ntk - nngp)  # gdeq's Θ (module docstring)
        if not dynamics:
            continue
        assert lam0 == lam1
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, xtr, jnp.asarray(y_train), learning_rate=NT_LR)
        t_nt = TAUS * lam0 * y_train.size / NT_LR  # lr_nt t / (P D) = λ τ
        test = predict(t=jnp.asarray(t_nt), x_test=xte, get="ntk", compute_cov=True)
        train = predict(t=jnp.asarray(t_nt), x_test=None, get="ntk", compute_cov=True)
        out[f"{name}/t_nt"] = t_nt
        out[f"{name}/test_mean"] = np.asarray(test.mean)[..., 0]
        out[f"{name}/test_cov"] = np.asarray(test.covariance)
        out[f"{name}/train_mean"] = np.asarray(train.mean)[..., 0]
        out[f"{name}/train_cov"] = np.asarray(train.covariance)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {sorted(out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
