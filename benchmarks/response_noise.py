"""The Monte-Carlo error of the `condensate` level's bulk response on N1·shift (docs/theory.md B.12).

    python benchmarks/response_noise.py --data-dir DATA      # ~10 min on 2 CPU cores

At the `gaussian` level's tilt J (Q*, A = T + Q*K) the exact-activation response's centroid projection is the mean
over prior draws of N1·[((cᵀφ)² − cᵀKc)(q − E q) − ((cᵀℓ)² − cᵀLc)(q_ℓ − E q_ℓ)], q = ½φᵀJφ, ℓ = s⊙h the linear
part. Per point this prints that value with its per-draw standard deviation and s.e. at 16384 draws; the share of
the rank-one part of J (along m = A⁻¹y) against the A⁻¹ part; the correlation of the estimate with the linear control
variate and with the second-chaos projection of φφᵀ (exact value O(P³): the Hermite terms E[φ'_aφ'_b](h_ah_b − C_ab)
and E[φ''_aφ_b](h_a² − C_aa)), and the second chaos's share of the value. Data: MNIST 3 v 5 (embedded) and CIFAR-10
grey cat v dog from --data-dir, `load_task(..., n_train=P, n_test=100, seed=0)`, erf, λ0 = λ1 = 1; 8 × 16384 draws.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

POINTS = (("cifar10", 100, 200, 0.01), ("mnist", 100, 200, 0.03), ("cifar10", 1000, 50, 0.3), ("mnist", 1000, 50, 0.1))


def erf_hermite_terms(C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[φ'_aφ'_b] and E[φ''_aφ_b] for φ = erf, h ~ N(0, C) (Price's theorem on K = (2/π) arcsin(2C_ab/√(d_a d_b)),
    d = 1 + 2 diag C: ∂K/∂C_ab = E[φ'φ'], ∂K/∂C_aa = ½E[φ''_aφ_b]; on the diagonal E[φφ''] = dK_aa/dC_aa − E[φ'²])."""
    P = C.shape[0]
    d = 1 + 2 * torch.diagonal(C)
    dd = torch.outer(d, d)
    u = 2 * C / dd.sqrt()
    Kp = (4 / math.pi) / torch.sqrt(dd - 4 * C * C)
    D = -(4 / math.pi) * u / (d[:, None] * torch.sqrt(1 - u * u))
    Cd = torch.diagonal(C)
    dKdC = (2 / math.pi) / torch.sqrt(1 - (2 * Cd / (1 + 2 * Cd)) ** 2) * (2 / (1 + 2 * Cd) ** 2)
    D[range(P), range(P)] = dKdC - torch.diagonal(Kp)
    return Kp, D


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="directory with the CIFAR-10 files (SOURCES.md)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from gdeq import geometry
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.kernels import nngp_kernels
    from gdeq.gd_dynamics import Preprocessing, load_task

    kw = dict(dtype=torch.float64)
    for ds, P, N1, T in POINTS:
        t = load_task(ds, (3, 5), n_train=P, n_test=100, seed=0,
                      preprocessing=Preprocessing(grayscale=True) if ds == "cifar10" else None,
                      data_dir=args.data_dir if ds == "cifar10" else None)
        x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
        Q = float(np.asarray(temperature_curve(x, y, [T], level="gaussian", width=N1).Q)[0])
        kb = nngp_kernels(x, None, activation="erf", prior_w=1.0)
        K = torch.as_tensor(kb.train, **kw)
        kappa, U = torch.linalg.eigh(K)
        z = 1.0 / (T + Q * kappa.clamp_min(0.0))
        m = U @ (z * (U.T @ torch.as_tensor(y, **kw)))
        J1, J2 = (Q / N1) * torch.outer(m, m), -(Q / N1) * (U @ torch.diag(z) @ U.T)
        J = J1 + J2
        c = torch.as_tensor(geometry.centroid_vector(y), **kw).reshape(-1)
        Xs = torch.as_tensor(x, **kw) / math.sqrt(x.shape[1])
        C = Xs @ Xs.T
        s = torch.as_tensor(kb.slope_train, **kw)
        L = s[:, None] * C * s[None, :]
        Kp, D = erf_hermite_terms(C)
        Hf = 2 * torch.outer(c, c) * Kp + 2 * torch.diag(c * (D @ c))  # E[∇²(cᵀφ)²]
        Hq = J * Kp + torch.diag((J * D).sum(1))  # E[∇²q]
        chaos2 = 0.5 * float(torch.trace(Hf @ C @ Hq @ C))
        Eq, Eq1, Eql = (0.5 * float((A * B).sum()) for A, B in ((J, K), (J1, K), (J, L)))
        cKc, cLc = float(c @ K @ c), float(c @ L @ c)
        gen = torch.Generator().manual_seed(5)
        est, lin, ch2, rank1 = [], [], [], []
        for _ in range(8):
            h = torch.randn(16384, x.shape[1], generator=gen, **kw) @ Xs.T
            phi, ell = torch.erf(h), s * h
            q = 0.5 * ((phi @ J) * phi).sum(1) - Eq
            ql = 0.5 * ((ell @ J) * ell).sum(1) - Eql
            f = (phi @ c) ** 2 - cKc
            est.append(N1 * f * q)
            lin.append(N1 * ((ell @ c) ** 2 - cLc) * ql)
            rank1.append(N1 * f * (0.5 * ((phi @ J1) * phi).sum(1) - Eq1))
            ch2.append(N1 * 0.25 * (((h @ Hf) * h).sum(1) - float((Hf * C).sum()))
                       * (((h @ Hq) * h).sum(1) - float((Hq * C).sum())))
        e, li, c2, r1 = (torch.cat(a) for a in (est, lin, ch2, rank1))
        val = float((e - li).mean()) + N1 * float(c @ L @ J @ L @ c)
        sd = float((e - li).std())
        corr = lambda a, b: float(torch.corrcoef(torch.stack([a, b]))[0, 1])  # noqa: E731
        print(f"{ds} 3 v 5, P = {P}, N1 = {N1}, T = {T:g}: N1·cᵀRc {val:.3f}, s.d. per draw {sd:.2f} "
              f"(s.e. at 16384 draws {sd / 128:.3f}); rank-one part of J: variance share "
              f"{float(r1.var() / e.var()):.3f}; correlation with the linear control variate {corr(e, li):.2f}, "
              f"with the second chaos {corr(e, c2):.2f}; second chaos's exact value {N1 * chaos2:.3f}", flush=True)


if __name__ == "__main__":
    main()
