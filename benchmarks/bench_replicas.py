"""Batched replicas versus sequential runs, and the cost of geometry logging — ratios side by side.

1. Throughput: R = 32 replicas of the same networks (replica seeds SeedSequence(0).spawn(32)) trained in ONE batched module
   versus 32 sequential one-replica runs, both through ``gd_dynamics.train`` (end to end, Lightning
   included) with only the two end measurements logged. Prints both wall times and the ratio, and
   checks that the two give the same final losses.
2. Geometry overhead: a run with the default schedule (≥ 100 log-spaced measurements, all layer
   measures on train and test probes) — the fraction of the wall time spent measuring.

    python benchmarks/bench_replicas.py [--device auto] [--steps 300] [--width 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("GDEQ_OFFLINE", "1")
from gdeq.gd_dynamics import load_task, train  # noqa: E402

RUNS = Path(os.environ.get("GDEQ_BENCH_RUNS", Path(tempfile.gettempdir()) / "gdeq_bench_runs"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overhead-steps", type=int, default=3000)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--probe-size", type=int, default=None, help="default: train()'s default")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task("mnist", (3, 5), n_train=args.n_train, n_test=400, seed=0)
    common = dict(width=args.width, activation="erf", optimizer="gd", lr=0.01, steps=args.steps, log_points=2,
                  layer_geometry=False, wandb=None, progress_bar=False, device=args.device, dtype=args.dtype,
                  checkpoint_every=args.steps, output_dir=RUNS)
    R = args.replicas
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    result = dict(device=dev, dtype=args.dtype, n_train=args.n_train, width=args.width)
    if not args.skip_throughput:
        result.update(_throughput(task, common, args, R, dev))
    if args.skip_overhead:
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return
    _overhead(task, args, result)


def _throughput(task, common, args, R, dev) -> dict:
    train(task, replicas=1, seed=0, run_name="warmup", **common)  # imports, kernels, caches
    t0 = time.perf_counter()
    batched = train(task, replicas=R, seed=0, run_name="batched", **common)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq_loss = []
    for r in range(R):
        # replica r of the batched run is SeedSequence(0).spawn(R)[r]: the same network alone
        seq_loss.append(train(task, replicas=1, seed=[batched.seeds[r]], run_name=f"seq{r}", **common).train_loss[-1, 0])
    t_seq = time.perf_counter() - t0
    agree = float(np.max(np.abs(np.array(seq_loss) - batched.train_loss[-1]) / np.abs(batched.train_loss[-1])))
    print(f"device {dev}, {args.dtype}, P={args.n_train}, N1={args.width}, {args.steps} full-batch GD steps, R={R}")
    print(f"{'':24s}{'wall s':>10s}{'replica-steps/s':>18s}")
    print(f"{'batched (1 module)':24s}{t_batched:10.2f}{R * args.steps / t_batched:18.0f}")
    print(f"{'sequential (R runs)':24s}{t_seq:10.2f}{R * args.steps / t_seq:18.0f}")
    print(f"throughput ratio batched/sequential: {t_seq / t_batched:.1f}x   (max rel. diff of final losses {agree:.1e})")

    return dict(steps=args.steps, replicas=R, batched_s=t_batched, sequential_s=t_seq, ratio=t_seq / t_batched,
                max_rel_loss_diff=agree)


def _overhead(task, args, result: dict) -> None:
    """Geometry logging with the default schedule and probe sets."""
    probe = {} if args.probe_size is None else dict(probe_size=args.probe_size)
    t0 = time.perf_counter()
    traj = train(task, width=args.width, activation="erf", optimizer="gd", lr=0.01, steps=args.overhead_steps,
                 replicas=8, seed=0, wandb=None, progress_bar=False, device=args.device, dtype=args.dtype,
                 checkpoint_every=args.overhead_steps, output_dir=RUNS, run_name="overhead", **probe)
    p_probe = traj.config["probe_size"]
    wall = time.perf_counter() - t0
    frac = traj.config["geometry_seconds"] / traj.config["wall_seconds"]
    print(f"geometry logging: {len(traj.step)} measurements over {args.overhead_steps} steps (R=8, probe_size={p_probe}): "
          f"{traj.config['geometry_seconds']:.2f} s of {traj.config['wall_seconds']:.2f} s fit = {100 * frac:.1f} % "
          f"(end to end {wall:.2f} s)")
    if args.out:
        result.update(overhead_steps=args.overhead_steps, n_measurements=len(traj.step), probe_size=p_probe,
                      geometry_s=traj.config["geometry_seconds"], fit_s=traj.config["wall_seconds"], geometry_fraction=frac)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
