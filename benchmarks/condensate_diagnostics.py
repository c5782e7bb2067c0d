"""Readout condensation in exact posterior draws (docs/theory.md B.12).

For each (P, N1, T) on MNIST 3 v 5 (``load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)``, erf,
λ0 = λ1 = 1) the exact sampler is run and the first-layer weights it measures are recorded. On every draw W and
unit j the exact cavity quantities are computed from A_W = T + ΦΦᵀ/(λ1N1) by Sherman–Morrison:

    a_j = φ_jᵀA_∖j⁻¹φ_j/(λ1N1),  g_j = yᵀA_∖j⁻¹φ_j/√(λ1N1),  λ1⟨v_j²⟩ = 1/(1 + a_j) + g_j²/(1 + a_j)²

(the last one exact given W; its unit average is checked against the sampler's λ1⟨v²⟩). Printed per point: how
many units per network have λ1⟨v_j²⟩ > 1, the share of Σ_j g_j²/(1 + a_j)² carried by the top 1 % and 5 % of
units, the largest unit's λ1⟨v_j²⟩ and |cos(φ_j, y)|, and the median a_j. One condensed unit (count 1, top share
≈ 1, λ1⟨v_c²⟩ = O(N1), |cos| → 1) is what the ``condensate`` level models; without it the units are alike.

    python benchmarks/condensate_diagnostics.py            # the default points, cached in results/
    python benchmarks/condensate_diagnostics.py --points 250,50,0.1
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from gdeq.equilibrium import sampling
from gdeq.equilibrium.sampling import SamplerSettings, sample_temperatures, scaled_inputs
from gdeq.gd_dynamics.data import load_task

RESULTS = Path(__file__).resolve().parent / "results" / "condensate_diagnostics.json"
POINTS = ((250, 50, 1.0), (250, 50, 0.3), (250, 50, 0.1), (100, 50, 0.3), (100, 50, 0.03), (100, 200, 0.01))
KEEP = 200  # measured draws kept (the last ones), each with all chains


def unit_statistics(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, T: float, lam1: float = 1.0) -> dict:
    """Exact per-unit cavity quantities on draws W (S, r, N1) with inputs X (P, r) (h = X w), labels y (P,)."""
    N1 = W.shape[-1]
    phi = torch.erf(X @ W)  # (S, P, N1)
    G = phi.transpose(1, 2) @ phi
    M = G + T * N1 * lam1 * torch.eye(N1, dtype=phi.dtype)
    AinvPhi = (phi - phi @ torch.linalg.solve(M, G)) / T  # A_W⁻¹Φ (push-through)
    aW = (phi * AinvPhi).sum(1) / (lam1 * N1)
    gW = (y[None, :, None] * AinvPhi).sum(1) / math.sqrt(lam1 * N1)
    a, g = aW / (1 - aW), gW / (1 - aW)  # Sherman–Morrison: the cavity A_∖j from the full A_W
    omega = 1 / (1 + a) + g * g / (1 + a) ** 2
    label = (g * g / (1 + a) ** 2).flatten().sort(descending=True).values
    share = label.cumsum(0) / label.sum()
    top = omega.argmax(1)
    rows = torch.arange(W.shape[0])
    cos = (phi[rows, :, top] @ y).abs() / (phi[rows, :, top].norm(dim=1) * y.norm())
    q = lambda v: [float(x) for x in np.quantile(v.numpy(), [0.1, 0.5, 0.9])]  # noqa: E731
    return dict(readout_second_moment_identity=float(omega.mean()),
                units_above_one=q((omega > 1).sum(1).double()),
                top_share_1pct=float(share[max(0, int(0.01 * len(share)) - 1)]),
                top_share_5pct=float(share[max(0, int(0.05 * len(share)) - 1)]),
                largest_unit_readout=q(omega.max(1).values), largest_unit_label_cosine=q(cos),
                median_a=float(a.median()))


def run_point(P: int, N1: int, T: float, max_seconds: float) -> dict:
    task = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
    recorded: list[torch.Tensor] = []
    measure = sampling._Measure.__call__

    def record(self, W, v):  # the draws the sampler measures, i.e. the posterior samples it averages
        recorded.append(W.detach().clone())
        del recorded[:-KEEP]
        return measure(self, W, v)

    t0 = time.perf_counter()
    with mock.patch.object(sampling._Measure, "__call__", record):
        res = sample_temperatures(task.x_train, task.y_train, [T], width=N1, x_test=task.x_test, y_test=task.y_test,
                                  settings=SamplerSettings(replicas=8, max_trajectories=3200, max_seconds=max_seconds,
                                                           seed=1))[0]
    X, _, _ = scaled_inputs(np.asarray(task.x_train, dtype=np.float64), None, True, math.sqrt(task.x_train.shape[1]),
                            dict(dtype=torch.float64))
    W = torch.cat(recorded)  # (draws · chains, r, N1)
    stats = unit_statistics(W, X, torch.as_tensor(np.asarray(task.y_train, dtype=np.float64)), T)
    return dict(P=P, N1=N1, temperature=T, alpha=P / N1, data=f"load_task('mnist', (3, 5), n_train={P}, n_test=100, "
                "seed=0)", converged=bool(res.diagnostics.converged), rhat=res.diagnostics.rhat,
                test_error=[float(res.test_error.mean), float(res.test_error.se)],
                readout_second_moment=[float(res.readout_second_moment.mean), float(res.readout_second_moment.se)],
                draws=int(W.shape[0]), wall_time_s=time.perf_counter() - t0, **stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", nargs="+", default=[f"{p},{n},{t:g}" for p, n, t in POINTS], help="P,N1,T")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("P N1 T | sampled test error, λ1<v²> (identity) | units with λ1<v_j²> > 1 (10/50/90 %) | top 1 % / 5 % share"
          " | largest λ1<v_j²> | its |cos(φ, y)| | median a")
    for spec in args.points:
        p, n, t = spec.split(",")
        row = run_point(int(p), int(n), float(t), args.max_seconds)
        row.update(command="python benchmarks/condensate_diagnostics.py --points " + spec, commit=commit,
                   threads=args.threads)
        cache[f"P{p}_N{n}_T{float(t):g}"] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(cache, indent=1))
        flag = "" if row["converged"] else " (sampler NOT converged)"
        print(f"{p} {n} {t} | {row['test_error'][0]:.4f}, {row['readout_second_moment'][0]:.4f} "
              f"({row['readout_second_moment_identity']:.4f}) | {row['units_above_one']} | "
              f"{row['top_share_1pct']:.2f} / {row['top_share_5pct']:.2f} | {row['largest_unit_readout'][1]:.1f} | "
              f"{row['largest_unit_label_cosine'][1]:.3f} | {row['median_a']:.2f}{flag}", flush=True)


if __name__ == "__main__":
    main()
