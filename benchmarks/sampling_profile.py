"""Where the exact sampler's time goes and why T = 0.1 mixes slowly (docs/sampling.md, "Speed").

On the benchmark's target (MNIST 3 vs 5, ``load_task(..., n_train=200, seed=0)``, N1 = 100, erf,
λ0 = λ1 = 1, span-reduced), prints and caches:

1. CPU seconds of one collapsed energy + gradient for 12 chains, float64 and float32 (one thread);
2. per temperature, after tuning and ``--trajectories`` default HMC trajectories (``--chains`` each):
   the tuned step size, the posterior variance of W per span coordinate (pooled over units, chains
   and the last half of the draws: min / median / max), T·σ_E with E_T = ∂U_T/∂T (within-chain
   spread, last half; the quantity the replica-exchange ladder is spaced by) and the train error of
   each chain in blocks of 10 trajectories (metastable branches show as jumps between levels).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sampling_profile.py --json benchmarks/results/sampling_profile.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gdeq.equilibrium import inputs, sampling  # noqa: E402
from gdeq.equilibrium.sampling import SamplerSettings  # noqa: E402
from gdeq.gd_dynamics import load_task  # noqa: E402

torch.set_num_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.01, 0.06, 0.1, 0.15, 1.0])
    ap.add_argument("--chains", type=int, default=3)
    ap.add_argument("--trajectories", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    task = load_task("mnist", (3, 5), n_train=200, n_test=10, seed=0)
    out: dict = {}

    def problem(chain_T, dtype=torch.float64):
        return sampling._Problem(task.x_train, task.y_train, None, 100, chain_T, "erf", 1.0, 1.0, True,
                                 torch.device("cpu"), dtype)

    for dt in (torch.float64, torch.float32):  # 1. cost of one energy + gradient, 12 chains
        prob = problem(np.repeat([1.0, 0.1, 0.01], 4), dt)
        W = torch.randn(12, prob.r, 100, dtype=dt, generator=torch.Generator().manual_seed(0))
        prob.collapsed(W)
        t0 = time.process_time()
        for _ in range(20):
            prob.collapsed(W)
        out[f"gradient_cpu_s_12_chains_{str(dt)[6:]}"] = (time.process_time() - t0) / 20
        print(f"energy+gradient, 12 chains, {dt}: {out[f'gradient_cpu_s_12_chains_{str(dt)[6:]}'] * 1e3:.1f} ms")

    temps, R, n = list(args.temperatures), args.chains, args.trajectories  # 2. per temperature
    nT = len(temps)
    chain_T = torch.tensor(np.repeat(temps, R), dtype=torch.float64)
    prob = problem(chain_T)
    measure = sampling._Measure(prob, inputs.class_labels(task.y_train), None, None)
    gen = torch.Generator().manual_seed(args.seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    mover = sampling._HMCMover(prob, randn(nT * R, prob.r, 100), SamplerSettings(replicas=R), nT, R, False, gen, randn)
    mover.tune()
    err, E, W2 = [], [], 0.0
    for i in range(n):
        mover.move(i < n // 4)
        err.append(measure(mover.W, None)[1]["train_error"])
        if i >= n // 2:
            E.append(prob.temperature_derivative(mover.W))
            W2 = W2 + mover.W ** 2
    err = torch.stack(err, 1).view(nT, R, n).numpy()
    E = torch.stack(E, 1).view(nT, R, -1)
    var = (W2 / len(E[0, 0])).view(nT, R, prob.r, 100).mean((1, 3))  # per span coordinate
    rows = {}
    for k, T in enumerate(temps):
        rows[str(T)] = dict(
            step_size=float(mover.eps.view(nT, R)[k].mean()),
            w_variance_min_median_max=[float(var[k].min()), float(var[k].median()), float(var[k].max())],
            T_sigma_E=float(T * E[k].var(1).mean().sqrt()),
            train_error_blocks=err[k, :, : n // 10 * 10].reshape(R, -1, 10).mean(-1).round(4).tolist())
        r = rows[str(T)]
        print(f"T={T:g}: step {r['step_size']:.3f}, Var w per coordinate {np.round(r['w_variance_min_median_max'], 3)}, "
              f"T·σ_E {r['T_sigma_E']:.2f}\n  train error in blocks of 10 trajectories: {r['train_error_blocks']}")
    out["temperatures"] = rows
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        config = dict(vars(args), git_commit=commit, threads=1, data="mnist 3v5 n_train=200 seed=0", width=100,
                      command="OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sampling_profile.py --json " + args.json)
        Path(args.json).write_text(json.dumps(dict(config=config, results=out), indent=1))
        print("wrote", args.json)


if __name__ == "__main__":
    main()
