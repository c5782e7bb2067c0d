"""The fluctuating-cavity-mean closure (docs/theory.md B.10) against exact sampling and the other levels.

    python benchmarks/validate_cavity_fluct.py sample-trace   # one new sampled point: the train posterior variance
    python benchmarks/validate_cavity_fluct.py compare         # closure "fluct" vs cavity, gaussian, sampling

``sample-trace``: the exact identity Cov f(X) = T − T²·Cov(t) (docs/theory.md B.5) turns the sampled mean train
posterior variance into T·Tr Cov(t)/P = 1 − (train variance)/T, the quantity every Gaussian cavity closure
models with its Σ (B.9, B.10). The cached sampled rows carry no train variance, so it is sampled here at
MNIST 3 vs 5, P = 100, N1 = 50 (α = 2; the phase-diagram slice), T = 0.1 and 0.03 (adaptive sampler, 16 chains,
≤ 240 s each on the shared CPU). Cached in benchmarks/results/cavity_fluct_trace.json with config, command, commit.

``compare``: every observable of closure "fluct" next to ``cavity`` (closure "shape"), ``gaussian`` and the
cached converged sampled points (cavity_validation_samples.json, validation_samples.json,
cavity_validation_extra.json, phase_diagram/*.json). Results: benchmarks/results/cavity_fluct_table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
TRACE = RESULTS / "cavity_fluct_trace.json"


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent).stdout.strip()


def cmd_sample_trace(args) -> None:
    from gdeq.equilibrium.sampling import SamplerSettings, sample_temperatures
    from gdeq.gd_dynamics import load_task

    torch.set_num_threads(args.threads)
    P, n1, act = args.n_train, args.width, args.activation
    t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
    rows = json.loads(TRACE.read_text())["rows"] if TRACE.exists() else {}
    for T in args.temperatures:
        k = f"{act}_P{P}_N{n1}_T{T:g}"
        if k in rows and not args.force:
            continue
        settings = SamplerSettings(replicas=16, trajectory_length=1.0, max_trajectories=args.trajectories,
                                   max_seconds=args.seconds, seed=1)
        t0 = time.time()
        s = sample_temperatures(t.x_train, t.y_train, [T], width=n1, activation=act, settings=settings)[0]
        est = lambda e: [float(np.asarray(e.mean)), float(np.asarray(e.se))]  # noqa: E731
        tv = est(s.train_variance)
        rows[k] = dict(
            activation=act, n_train=P, width=n1, temperature=T, max_trajectories=args.trajectories,
            command=("python benchmarks/validate_cavity_fluct.py sample-trace --activation "
                     f"{act} --n-train {P} --width {n1} --temperatures {T:g} --trajectories {args.trajectories}"), converged=bool(s.converged), rhat_max=float(max(s.diagnostics.rhat.values())),
            n_measurements=s.n_measurements, wall_time_s=time.time() - t0,
            train_variance=tv, train_error=est(s.train_error), readout_second_moment=est(s.readout_second_moment),
            centroid_distance=est(s.centroid_distance),
            # exact: Cov f(X) = T − T²·Cov(t), so T·Tr Cov(t)/P = 1 − (mean train variance)/T
            sigma_trace=[1.0 - tv[0] / T, tv[1] / T])
        TRACE.write_text(json.dumps(dict(
            config=dict(task="mnist:3,5 (load_task n_test=100, seed=0)", prior_w=1.0, prior_v=1.0,
                        sampler=dict(replicas=16, trajectory_length=1.0, max_seconds=args.seconds, seed=1)),
            command="python benchmarks/validate_cavity_fluct.py sample-trace (per row: 'command')", commit=_commit(),
            rows=rows), indent=1))
        print(f"{k}: {rows[k]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample-trace")
    s.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.03])
    s.add_argument("--activation", default="erf")
    s.add_argument("--n-train", type=int, default=100)
    s.add_argument("--width", type=int, default=50)
    s.add_argument("--trajectories", type=int, default=1600)
    s.add_argument("--seconds", type=float, default=240.0)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_sample_trace)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
