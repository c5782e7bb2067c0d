"""How much of the Gaussian-equivalent N1·centroid shift error is the Wick approximation (docs/theory.md B.12)?

    python benchmarks/bulk_response.py            # MNIST 3 v 5, erf, λ0 = λ1 = 1; ~2 min CPU

To O(1/N1) every unit's ⟨φφᵀ⟩ is K + Cov_p0(φφᵀ, ½φᵀJφ), J the single-unit tilt of docs/conventions.md §4. The
`gaussian` level evaluates that covariance with Wick's theorem as if φ were Gaussian (K J K); this script
evaluates it with the exact erf features by Monte Carlo over prior weights (10 × 20000 draws; control variate:
the linear part s⊙h of φ, s = E[σ'(h)], whose Wick value is exact) at the `gaussian` level's own J and Q*, and
prints N1·(cᵀ⟨K_W⟩c − cᵀKc) for both with the Monte-Carlo s.e. The sampled references are in docs/validation.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch

POINTS = ((100, 200, 1.0), (100, 200, 0.3), (100, 200, 0.1), (100, 200, 0.03), (200, 100, 1.0), (200, 100, 0.1))


def main() -> None:
    torch.set_num_threads(1)
    from gdeq import geometry
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.kernels import nngp_kernels
    from gdeq.gd_dynamics import load_task

    kw = dict(dtype=torch.float64)
    for P, N1, T in POINTS:
        t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
        x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
        g = temperature_curve(x, y, [T], level="gaussian", width=N1)
        K = nngp_kernels(x, None, activation="erf", prior_w=1.0).train
        kappa, U = torch.linalg.eigh(K)
        Q = float(np.asarray(g.readout_second_moment)[0])  # = Q* at this level
        z = 1.0 / (T + Q * kappa.clamp_min(0.0))
        m = U @ (z * (U.T @ torch.as_tensor(y, **kw)))
        J = (Q / N1) * (torch.outer(m, m) - U @ torch.diag(z) @ U.T)
        c = torch.as_tensor(geometry.centroid_vector(y), **kw).reshape(-1)
        Xs = torch.as_tensor(x, **kw) / math.sqrt(x.shape[1])
        C = Xs @ Xs.T
        s = 2.0 / math.sqrt(math.pi) / torch.sqrt(1.0 + 2.0 * torch.diagonal(C))  # E[erf'(h)], h ~ N(0, C_aa)
        L = s[:, None] * C * s[None, :]  # covariance of the linear part
        gen = torch.Generator().manual_seed(2)
        est = []
        for _ in range(10):
            w = torch.randn(20000, x.shape[1], generator=gen, **kw)
            h = w @ Xs.T
            phi, lin = torch.erf(h), s * h
            q = 0.5 * ((phi @ J) * phi).sum(1)
            ql = 0.5 * ((lin @ J) * lin).sum(1)
            est.append(N1 * (float(((phi @ c) ** 2 * (q - q.mean())).mean())
                             - float(((lin @ c) ** 2 * (ql - ql.mean())).mean()) + float(c @ L @ J @ L @ c)))
        print(f"P = {P}, N1 = {N1} (α = {P / N1:g}), T = {T:g}: N1·shift Wick (gaussian level) "
              f"{float(g.centroid_shift[0]):.3f}, exact erf response {np.mean(est):.3f} ± {np.std(est) / math.sqrt(10):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
