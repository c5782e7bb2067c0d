"""Cost of the lazy (NTK) prediction at 100 logged steps, side by side with its baselines.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice python benchmarks/bench_lazy.py [--P 2000] [--test 200] [--no-nt]

One process, one data set (teacher inputs, N0 = 100), same thread count for everything; the rows are timed
interleaved, best of ``--repeats``. Rows:

- ``eigh``: ONE eigendecomposition of the P×P NTK Θ (``bridge.lazy.symmetric_eigh`` = ``equilibrium.linalg.eigh``: scipy's
  divide-and-conquer driver on CPU) — the floor any spectral method pays;
- ``lazy``: everything ``lazy_trajectory`` does after the kernels for the prediction — that eigh,
  the basis changes, then train/test mean and error at 100 logged steps (``variance=False``); the
  goal is ≤ 1.5× ``eigh``;
- ``lazy+var``: the same plus the train/test total variances (two more P×P×P products for 𝒦 in Θ's
  eigenbasis);
- ``lazy+points`` (``--points``): the same with per-point variances (one P×P×P product per step);
- ``kernels``: NNGP + NTK blocks (train and test);
- ``neural-tangents``: ``nt.predict.gradient_descent_mse_ensemble`` (analytic stax kernel of the
  same network) at the same 100 times, mean only and mean + covariance, run in its own venv
  (benchmarks/neural_tangents_env.sh; skipped with ``--no-nt``), including its kernel evaluation;
  compared with gdeq's kernels + lazy. Times are the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _nt_worker(data_path: str, repeats: int) -> None:
    """Runs inside the neural-tangents venv: prints a JSON line of timings."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    d = np.load(data_path)
    x, y, xt, taus = (jnp.asarray(d[k]) for k in ("x_train", "y_train", "x_test", "taus"))
    _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.0, parameterization="ntk"), stax.Erf(),
                                  stax.Dense(1, W_std=1.0, parameterization="ntk"))
    t_nt = taus * y.size  # learning_rate 1 on nt's mean loss (benchmarks/neural_tangents_reference.py)

    def run(cov: bool):
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x, y[:, None], learning_rate=1.0)
        out = predict(t=t_nt, x_test=xt, get="ntk", compute_cov=cov)
        jax.block_until_ready(out)

    run(False)  # compile
    print(json.dumps(dict(nt_mean=_best(lambda: run(False), repeats), nt_cov=_best(lambda: run(True), repeats))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=2000)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-nt", action="store_true")
    ap.add_argument("--points", action="store_true", help="also time the per-point variances (O(P³) per step)")
    ap.add_argument("--nt-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nt_worker:
        _nt_worker(args.nt_worker, args.repeats)
        return

    import torch

    from gdeq.bridge.lazy import LazyDynamics, symmetric_eigh
    from gdeq.equilibrium import tangent_kernels
    from gdeq.gd_dynamics import load_task
    from gdeq.gd_dynamics.callbacks import log_schedule

    task = load_task("teacher", (0, 1), args.P, args.test, 0, teacher_dim=100)
    x, y, xt, yt = task.x_train, task.y_train, task.x_test, task.y_test
    Y, Yt = torch.as_tensor(y)[:, None], torch.as_tensor(yt)[:, None]
    kern = tangent_kernels(x, xt)
    lr = 1.0 / float(torch.linalg.eigvalsh(kern.ntk_train)[-1])
    sched = log_schedule(20_000, args.steps, "log")  # 0..20000 steps at η λ_max = 1
    steps = sched[np.round(np.linspace(0, len(sched) - 1, args.steps)).astype(int)]  # exactly args.steps of them
    rows: dict[str, float] = {}

    def lazy(variance: bool, points: bool = False):
        dyn = LazyDynamics(kern, Y, Yt, lr=lr, width=1, fingerprint="", squeeze=True)
        return dyn.trajectory(steps, variance=variance, point_variance=points)

    # interleaved repeats, best of each: the machine is shared, so a slow moment hits all rows alike
    jobs = {"kernels": lambda: tangent_kernels(x, xt), "eigh": lambda: symmetric_eigh(kern.ntk_train),
            "lazy": lambda: lazy(False), "lazy+var": lambda: lazy(True)}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            rows[name] = min(rows.get(name, float("inf")), _best(job, 1))
    # the same ratio from inside ONE call (immune to the load changing between rows): the eigh that
    # LazyDynamics itself runs vs everything it does after it
    inside = []
    for _ in range(args.repeats):
        dyn = LazyDynamics(kern, Y, Yt, lr=lr, width=1, fingerprint="", squeeze=True)
        t0 = time.perf_counter()
        dyn.trajectory(steps, variance=False)
        after = dyn.seconds["basis"] + time.perf_counter() - t0
        inside.append((dyn.seconds["eigh"] + after) / dyn.seconds["eigh"])
    if args.points:
        rows["lazy+points"] = _best(lambda: lazy(True, True), 1)
    threads = torch.get_num_threads()
    print(f"P = {args.P}, test = {args.test}, {len(steps)} logged steps, N0 = 100, erf, torch threads = {threads}, "
          f"OMP_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'what':<34}{'seconds':>10}{'ratio':>10}")
    print(f"{'eigh of Θ (baseline)':<34}{rows['eigh']:>10.3f}{1.0:>10.2f}")
    print(f"{'lazy mean+errors (incl. eigh)':<34}{rows['lazy']:>10.3f}{rows['lazy'] / rows['eigh']:>10.2f}")
    print(f"{'  same, within one call (median)':<34}{'':>10}{float(np.median(inside)):>10.2f}")
    print(f"{'lazy + total variances':<34}{rows['lazy+var']:>10.3f}{rows['lazy+var'] / rows['eigh']:>10.2f}")
    if args.points:
        print(f"{'lazy + per-point variances':<34}{rows['lazy+points']:>10.3f}{rows['lazy+points'] / rows['eigh']:>10.2f}")
    print(f"{'kernels (train+test)':<34}{rows['kernels']:>10.3f}{rows['kernels'] / rows['eigh']:>10.2f}")
    if args.no_nt:
        return
    gdeq_total = rows["kernels"] + rows["lazy+var"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, x_train=x, y_train=y, x_test=xt, taus=lr * steps.astype(np.float64))
        env = dict(os.environ, XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "neural_tangents_env.sh"), str(Path(__file__).resolve()),
                               "--nt-worker", str(data), "--repeats", str(args.repeats)],
                              capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print("neural-tangents: failed\n" + proc.stderr[-2000:], file=sys.stderr)
        return
    nt_times = json.loads(lines[-1])
    print(f"{'gdeq kernels + lazy + variances':<34}{gdeq_total:>10.3f}{1.0:>10.2f}")
    print(f"{'neural-tangents, mean only':<34}{nt_times['nt_mean']:>10.3f}{nt_times['nt_mean'] / gdeq_total:>10.2f}")
    print(f"{'neural-tangents, mean + cov':<34}{nt_times['nt_cov']:>10.3f}{nt_times['nt_cov'] / gdeq_total:>10.2f}")


if __name__ == "__main__":
    main()
