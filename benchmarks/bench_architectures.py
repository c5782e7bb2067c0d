"""Speed of the deep-FC and CNN equilibrium theory, side by side with one eigendecomposition and deepbays.

    nice -n 10 python benchmarks/bench_architectures.py                     # defaults below, CPU
    python benchmarks/bench_architectures.py --only deep --deep-P 300 --temps 10   # quick look

Measured in one run (MNIST 3 vs 5, float64, one process, wall-clock):

deep (L = 2, widths [N, N], erf; P = --deep-P, default 1000)
  floor     kernel recursion at Q = 1 and one float64 eigh of the final kernel K_L (second of two runs)
  ours      equilibrium.deep.deep_temperature_curve for all --temps temperatures, the outputs deepbays
            gives (saddle points by the profile over Q1, predictor and test error; no layer geometry);
            also timed with the per-layer geometry (ours_with_layer_geometry_s)
  newton    the previous general solver (Newton continuation) on --newton-temps temperatures: time per
            temperature and the largest relative difference in Q*
  ours-relu the same with ReLU (exact one-eigendecomposition path)
  deepbays  rkgp.FC_deep (preprocess, optimize, predict, averageLoss) timed on --deepbays-temps
            temperatures spread over the range and extrapolated per temperature to all of them
cnn (one hidden layer, mask --mask, default 7 → 16 patches, Nc = --channels, erf; P = --cnn-P, default 500)
  floor     one float64 eigh of the final renormalised kernel K_R (P × P)
  ours      equilibrium.conv.conv_temperature_curve for all temperatures (pair kernels, saddle
            points, predictor, geometry)
  deepbays  rkgp.CONV_1HL: its fsolve over the Np² entries of Q builds a forward-difference
            Jacobian first, i.e. at least Np² + 1 gradient evaluations per temperature; this
            script times --deepbays-evals of its gradient evaluations (computeActionGrad) and
            reports (Np² + 1) × that per temperature as a LOWER BOUND (a full deepbays solve at
            this size takes tens of minutes per temperature on one core)

interp (--only interp) the error of answering from the profile nodes alone (no factorisation per
          temperature): cubic Hermite interpolant of the exact L = 2 profile on uniform log Q1 nodes

Results are printed and written to benchmarks/results/bench_architectures.json; with --only, the
other sections' previous numbers are kept there with their own config ("cnn_config", ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # deepbays_stub


def _task(P: int, n_test: int):
    from gdeq.gd_dynamics.data import load_task

    return load_task("mnist", (3, 5), n_train=P, n_test=n_test, seed=0)


def bench_deep(args, temps) -> dict:
    import torch

    from gdeq.equilibrium import deep

    t = _task(args.deep_P, args.n_test)
    widths = [args.deep_width] * 2
    out: dict = {"P": args.deep_P, "widths": widths, "temperatures": len(temps)}
    from gdeq.equilibrium.linalg import eigh

    pb = deep.deep_problem(t.x_train, t.y_train, width=widths, activation="erf")
    floor = []
    for _ in range(2):  # the second run: imports and first-call set-up excluded
        t0 = time.perf_counter()
        _, K = deep.deep_kernels(pb.C, np.ones(2), pb.priors, "erf")
        eigh(K[-1])  # the eigendecomposition the solvers use (LAPACK divide and conquer on CPU)
        floor.append(time.perf_counter() - t0)
    out["floor_s"] = floor[-1]
    # what deepbays computes (Q*, predictor on the test points, test loss): no layer geometry
    t0 = time.perf_counter()
    cur = deep.deep_temperature_curve(t.x_train, t.y_train, temps, width=widths, activation="erf",
                                      x_test=t.x_test, y_test=t.y_test, geometry_measures=False)
    out["ours_s"] = time.perf_counter() - t0
    sad = cur.saddle
    out.update(ours_method=sad.method, ours_evaluations=int(sad.n_evaluations), ours_hessians=int(sad.n_hessians),
               ours_eigendecompositions=int(sad.n_eigendecompositions), ours_converged=bool(cur.converged.all()),
               ours_max_minima=int(cur.n_minima.max()))
    # the per-temperature floor of an exact answer: one evaluation at Q* (kernel pair, Cholesky, inverse)
    G1 = deep.deep_kernels(pb.C, np.ones(2), pb.priors, "erf")[0][0]
    pick = np.linspace(0, len(temps) - 1, 3).round().astype(int)
    t0 = time.perf_counter()
    evs = [deep._exact_l2(pb, G1, float(temps[i]), np.log(cur.Q[i])) for i in pick]
    out["exact_evaluation_s"] = (time.perf_counter() - t0) / len(pick)
    t0 = time.perf_counter()
    for ev in evs:
        deep._exact_l2_hessian(pb, G1, ev)
    out["exact_hessian_s"] = (time.perf_counter() - t0) / len(pick)
    del evs
    t0 = time.perf_counter()
    deep.deep_temperature_curve(t.x_train, t.y_train, temps, width=widths, activation="erf", x_test=t.x_test,
                                y_test=t.y_test)
    out["ours_with_layer_geometry_s"] = time.perf_counter() - t0
    if args.newton_temps > 0:  # the previous general solver (Newton continuation) on a few temperatures
        pick = temps[np.linspace(0, len(temps) - 1, args.newton_temps).round().astype(int)]
        idx = [int(np.argmin(np.abs(temps - T))) for T in pick]
        t0 = time.perf_counter()
        old = deep.solve_deep_saddle(pb, pick, method="newton", both_directions=False)
        out["newton_per_T_s"] = (time.perf_counter() - t0) / len(pick)
        out["newton_max_rel_Q_difference"] = float(np.max(np.abs(old.Q / cur.Q[idx] - 1)))
    t0 = time.perf_counter()
    cur_r = deep.deep_temperature_curve(t.x_train, t.y_train, temps, width=widths, activation="relu",
                                        x_test=t.x_test, y_test=t.y_test, geometry_measures=False)
    out["ours_relu_s"] = time.perf_counter() - t0
    out["ours_relu_converged"] = bool(cur_r.converged.all())
    if args.deepbays_temps > 0:
        from deepbays_stub import import_deepbays

        db = import_deepbays()
        pick = temps[np.linspace(0, len(temps) - 1, args.deepbays_temps).round().astype(int)]
        t0 = time.perf_counter()
        Qdb = []
        for T in pick:
            m = db.rkgp.FC_deep(2, args.deep_width, float(T), priors=[1.0, 1.0, 1.0], act="erf")
            m.preprocess(t.x_train, torch.tensor(t.y_train))
            m.optimize()
            m.predict(t.x_test)
            m.averageLoss(t.y_test)
            Qdb.append(m.optQ)
        per_T = (time.perf_counter() - t0) / len(pick)
        idx = [int(np.argmin(np.abs(temps - T))) for T in pick]
        out["deepbays_per_T_s"] = per_T
        out["deepbays_s_extrapolated"] = per_T * len(temps)
        out["deepbays_max_rel_Q_difference"] = float(np.max(np.abs(np.array(Qdb) / cur.Q[idx] - 1)))
        out["speedup_vs_deepbays"] = out["deepbays_s_extrapolated"] / out["ours_s"]
        out["speedup_relu_vs_deepbays_erf"] = out["deepbays_s_extrapolated"] / out["ours_relu_s"]
    out["ours_over_floor"] = out["ours_s"] / out["floor_s"]
    out["ours_relu_over_floor"] = out["ours_relu_s"] / out["floor_s"]
    return out


def bench_interpolation(args) -> dict:
    """How far the profile nodes alone (no factorisation per temperature) would get: the largest and
    median error in log Q1* of the cubic Hermite interpolant of the exact profile on uniform nodes
    (P = --interp-P, widths P/2, 20 temperatures in [1e-3, 10]), against the exact solver."""
    from gdeq.equilibrium import deep

    t = _task(args.interp_P, args.n_test)
    P = args.interp_P
    pb = deep.deep_problem(t.x_train, t.y_train, width=[P // 2, P // 2], activation="erf")
    T = np.logspace(-3, 1, 20)
    exact = np.log(deep.solve_deep_saddle(pb, T).Q[:, 0])
    G1 = deep.deep_kernels(pb.C, np.ones(2), pb.priors, "erf")[0][0]
    out: dict = {"P": P, "temperatures": 20, "rows": []}
    for h in (0.25, 0.125, 0.0625):
        us = np.arange(-0.0625, exact.max() + h, h)
        nodes = [deep._profile_node(pb, G1, float(u), T) for u in us]
        err = []
        for i in range(len(T)):
            c = [m[0] for j in range(len(us) - 1) for m in deep._hermite_minima(nodes[j], nodes[j + 1], i)]
            err.append(min((abs(u - exact[i]) for u in c), default=np.inf))
        out["rows"].append({"spacing": h, "nodes": len(us), "max_error_log_Q1": float(np.max(err)),
                            "median_error_log_Q1": float(np.median(err))})
    return out


def bench_cnn(args, temps) -> dict:
    import torch

    from gdeq.equilibrium import conv

    t = _task(args.cnn_P, args.n_test)
    out: dict = {"P": args.cnn_P, "mask": args.mask, "channels": args.channels, "temperatures": len(temps)}
    t0 = time.perf_counter()
    cur = conv.conv_temperature_curve(t.x_train, t.y_train, temps, width=args.channels, patch_size=args.mask,
                                      image_shape=(1, 28, 28), x_test=t.x_test, y_test=t.y_test)
    out["ours_s"] = time.perf_counter() - t0
    out["ours_evaluations"] = int(cur.saddle.n_evaluations)
    out["ours_hessians"] = int(cur.saddle.n_hessians)
    out["ours_converged"] = bool(cur.converged.all())
    # floor: one eigh of the final kernel K_R (rebuilt outside the timing)
    pb = conv.conv_problem(t.x_train, t.y_train, channels=args.channels, patch_size=args.mask,
                           image_shape=(1, 28, 28))
    KR = torch.tensordot(torch.as_tensor(pb.q_vector(cur.Q[-1])), pb.B, dims=1)
    t0 = time.perf_counter()
    torch.linalg.eigh(KR)
    out["floor_s"] = time.perf_counter() - t0
    out["ours_over_floor"] = out["ours_s"] / out["floor_s"]
    if args.deepbays_evals > 0:
        from deepbays_stub import import_deepbays

        db = import_deepbays()
        m = db.rkgp.CONV_1HL(args.channels, float(temps[len(temps) // 2]), args.mask, args.mask, act="erf")
        m.preprocess(t.x_train, torch.tensor(t.y_train))
        Q0 = np.eye(m.numPatches).ravel()
        t0 = time.perf_counter()
        for _ in range(args.deepbays_evals):
            m.computeActionGrad(Q0)
        per_eval = (time.perf_counter() - t0) / args.deepbays_evals
        per_T = per_eval * (m.numPatches**2 + 1)
        out["deepbays_gradient_eval_s"] = per_eval
        out["deepbays_per_T_lower_bound_s"] = per_T
        out["deepbays_s_lower_bound"] = per_T * len(temps)
        out["speedup_vs_deepbays_lower_bound"] = out["deepbays_s_lower_bound"] / out["ours_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["deep", "cnn", "both", "interp"], default="both")
    p.add_argument("--interp-P", type=int, default=300, help="--only interp: training points")
    p.add_argument("--temps", type=int, default=50)
    p.add_argument("--deep-P", type=int, default=1000)
    p.add_argument("--deep-width", type=int, default=500)
    p.add_argument("--cnn-P", type=int, default=500)
    p.add_argument("--mask", type=int, default=7)
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--deepbays-temps", type=int, default=3)
    p.add_argument("--deepbays-evals", type=int, default=2)
    p.add_argument("--newton-temps", type=int, default=3, help="temperatures for the previous Newton solver (0: skip)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_architectures.json"))
    args = p.parse_args()
    temps = np.logspace(-3, 1, args.temps)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ)
    command = (f"{env} nice -n {os.nice(0)} " if os.nice(0) else f"{env} ").lstrip() \
        + "python benchmarks/bench_architectures.py " + " ".join(sys.argv[1:])
    result = {"config": {"git_commit": commit, "command": command.strip(),
                         "threads": os.environ.get("OMP_NUM_THREADS", "default"),
                         "load_average": os.getloadavg(), "temperature_range": [1e-3, 10.0],
                         **{k: v for k, v in vars(args).items() if k != "out"}}}
    if args.only in ("deep", "both"):
        result["deep"] = bench_deep(args, temps)
        print(json.dumps({"deep": result["deep"]}, indent=1), flush=True)
    if args.only in ("cnn", "both"):
        result["cnn"] = bench_cnn(args, temps)
        print(json.dumps({"cnn": result["cnn"]}, indent=1), flush=True)
    if args.only == "interp":
        result["interp"] = bench_interpolation(args)
        print(json.dumps({"interp": result["interp"]}, indent=1), flush=True)
    result["config"]["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    if out.exists() and args.only != "both":  # keep the other sections' last numbers (and their configs)
        previous = json.loads(out.read_text())
        for other in ("deep", "cnn", "interp"):
            if other not in result and other in previous:
                result[other] = previous[other]
                result[f"{other}_config"] = previous.get(f"{other}_config", previous["config"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
