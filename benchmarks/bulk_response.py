"""How much of the Gaussian-equivalent N1·centroid shift error is the Wick approximation, and how noisy is the
exact-activation response's Monte Carlo (docs/theory.md B.12)?

    python benchmarks/bulk_response.py                              # MNIST 3 v 5, erf, λ0 = λ1 = 1; ~2 min CPU
    python benchmarks/bulk_response.py --noise --data-dir DATA      # its Monte-Carlo error; ~10 min CPU

To O(1/N1) every unit's ⟨φφᵀ⟩ is K + Cov_p0(φφᵀ, ½φᵀJφ), J the single-unit tilt of docs/conventions.md §4. The
`gaussian` level evaluates that covariance with Wick's theorem as if φ were Gaussian (K J K); the default mode
evaluates it with the exact erf features by Monte Carlo over prior weights (10 × 20000 draws; control variate:
the linear part s⊙h of φ, s = E[σ'(h)], whose Wick value is exact) at the `gaussian` level's own J and Q*, and
prints N1·(cᵀ⟨K_W⟩c − cᵀKc) for both with the Monte-Carlo s.e. The sampled references are in docs/validation.md.

``--noise``: the same estimator's centroid projection, centred as the `condensate` level computes it,
N1·[((cᵀφ)² − cᵀKc)(q − E q) − ((cᵀℓ)² − cᵀLc)(q_ℓ − E q_ℓ)], q = ½φᵀJφ, at four points (MNIST 3 v 5 and CIFAR-10
grey cat v dog from --data-dir, P = 100 and 1000; 8 × 16384 draws): its per-draw standard deviation and s.e. at
16384 draws; the rank-one part of J's (along m = A⁻¹y) share of the variance; the correlation of the estimate with
the linear control variate and with the second-chaos projection of φφᵀ (exact value O(P³): the Hermite terms
E[φ'_aφ'_b](h_ah_b − C_ab) and E[φ''_aφ_b](h_a² − C_aa)), and the second chaos's value.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

POINTS = ((100, 200, 1.0), (100, 200, 0.3), (100, 200, 0.1), (100, 200, 0.03), (200, 100, 1.0), (200, 100, 0.1))
NOISE_POINTS = (("cifar10", 100, 200, 0.01), ("mnist", 100, 200, 0.03), ("cifar10", 1000, 50, 0.3),
                ("mnist", 1000, 50, 0.1))
kw = dict(dtype=torch.float64)


def gaussian_tilt(x: np.ndarray, y: np.ndarray, N1: int, T: float) -> dict:
    """The `gaussian` level's tilt at one point: J = (Q*/N1)(m mᵀ − A⁻¹), A = T + Q*K, m = A⁻¹y (λ1 = 1), with K,
    the input covariance C, the slopes s = E[erf'(h)], the linear part's covariance L = S C S and the centroid c."""
    from gdeq import geometry
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.kernels import nngp_kernels

    g = temperature_curve(x, y, [T], level="gaussian", width=N1)
    kb = nngp_kernels(x, None, activation="erf", prior_w=1.0)
    K = kb.train
    kappa, U = torch.linalg.eigh(K)
    Q = float(np.asarray(g.Q)[0])
    z = 1.0 / (T + Q * kappa.clamp_min(0.0))
    m = U @ (z * (U.T @ torch.as_tensor(y, **kw)))
    J_rank, J_inv = (Q / N1) * torch.outer(m, m), -(Q / N1) * (U @ torch.diag(z) @ U.T)
    Xs = torch.as_tensor(x, **kw) / math.sqrt(x.shape[1])
    C = Xs @ Xs.T
    s = kb.slope_train
    return dict(g=g, K=K, J=J_rank + J_inv, J_rank=J_rank, Xs=Xs, C=C, s=s, L=s[:, None] * C * s[None, :],
                c=torch.as_tensor(geometry.centroid_vector(y), **kw).reshape(-1))


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


def wick_against_exact() -> None:
    from gdeq.gd_dynamics import load_task

    for P, N1, T in POINTS:
        t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
        x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
        tl = gaussian_tilt(x, y, N1, T)
        J, c, Xs, s, L = tl["J"], tl["c"], tl["Xs"], tl["s"], tl["L"]
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
              f"{float(tl['g'].centroid_shift[0]):.3f}, exact erf response {np.mean(est):.3f} ± "
              f"{np.std(est) / math.sqrt(10):.3f}", flush=True)


def response_noise(data_dir: Path) -> None:
    from gdeq.gd_dynamics import Preprocessing, load_task

    for ds, P, N1, T in NOISE_POINTS:
        t = load_task(ds, (3, 5), n_train=P, n_test=100, seed=0,
                      preprocessing=Preprocessing(grayscale=True) if ds == "cifar10" else None,
                      data_dir=data_dir if ds == "cifar10" else None)
        x, y = np.asarray(t.x_train, dtype=np.float64), np.asarray(t.y_train, dtype=np.float64)
        tl = gaussian_tilt(x, y, N1, T)
        K, J, J1, c, Xs, C, s, L = (tl[k] for k in ("K", "J", "J_rank", "c", "Xs", "C", "s", "L"))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", action="store_true", help="the response's Monte-Carlo error (needs --data-dir)")
    ap.add_argument("--data-dir", type=Path, help="directory with the CIFAR-10 files (SOURCES.md)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.noise and args.data_dir is None:
        ap.error("--data-dir: --noise needs the CIFAR-10 files")
    torch.set_num_threads(args.threads)
    if args.noise:
        response_noise(args.data_dir)
    else:
        wick_against_exact()


if __name__ == "__main__":
    main()
