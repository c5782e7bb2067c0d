"""Speed and memory of equilibrium.temperature_curve, side by side with its floor and deepbays.

    python benchmarks/bench_equilibrium.py                       # P = 2000, 100 temperatures, CPU
    python benchmarks/bench_equilibrium.py --device cuda --P 20000 --temps 200 --deepbays-temps 0

Prints, measured in one run:
  floor     NNGP kernel + one float64 eigh of K (the O(P³) step nothing can avoid)
  curve     temperature_curve(level="gaussian") for all temperatures (kernel, eigh, saddle points,
            predictor, ⟨K_W⟩ geometry, weight moments) — target ≤ 1.5× floor
  deepbays  deepbays 0.1.11 FC_1HL (preprocess, optimize, predict, averageLoss) per temperature,
            timed on --deepbays-temps temperatures and extrapolated per temperature to the full
            set (it redoes its O(P³) work at every temperature) — target curve ≥ 100× faster
and the peak memory of each stage, each stage in its own process (peak RSS from getrusage; on
CUDA also torch.cuda.max_memory_allocated). Data: sphere-normalised Gaussian inputs with
teacher labels (any P), or --data mnist (parity task, P ≤ 8192).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # deepbays_stub


def _data(P: int, N0: int, data: str, n_test: int):
    if data == "mnist":
        from gdeq.gd_dynamics.data import load_task, parity_groups

        t = load_task("mnist", parity_groups(), n_train=P, n_test=n_test, seed=0)
        return t.x_train, t.y_train, t.x_test, t.y_test
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P + n_test, N0))
    X *= np.sqrt(N0) / np.linalg.norm(X, axis=1, keepdims=True)
    teacher = rng.standard_normal(N0)
    y = np.sign(np.tanh(X @ teacher / np.sqrt(N0)) + 0.3 * rng.standard_normal(P + n_test))
    return X[:P], y[:P], X[P:], y[P:]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _stage(args) -> dict:
    import torch

    from gdeq import equilibrium as eq

    torch.set_default_dtype(torch.float64)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, xt, yt = _data(args.P, args.N0, args.data, args.n_test)
    temps = np.logspace(-3, 1, args.temps)
    width = args.width or args.P // 2
    dev = args.device
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out: dict = {"stage": args.stage}
    # warm-up: thread pools and LAPACK workspaces (the first eigh of a process is several times slower)
    w = torch.randn(256, 256, dtype=torch.float64, device=dev)
    torch.linalg.eigh(w @ w.T)
    eq.temperature_curve(x[:64], y[:64], temps[:4], width=32, device=dev)
    def floor():
        kb = eq.nngp_kernels(torch.as_tensor(x, device=dev), torch.as_tensor(xt, device=dev) if args.n_test else None,
                             activation="erf")
        torch.linalg.eigh(kb.train)

    def curve():
        return eq.temperature_curve(x, y, temps, width=width, activation="erf", x_test=xt if args.n_test else None,
                                    y_test=yt if args.n_test else None, device=dev)

    def timed(fn):
        _sync(dev)
        t0 = time.perf_counter()
        res = fn()
        _sync(dev)
        return time.perf_counter() - t0, res

    if args.stage == "floor":  # memory of the floor alone
        out["seconds"], _ = timed(floor)
    elif args.stage == "curve":  # memory of the curve alone
        out["seconds"], c = timed(curve)
        out["converged"] = bool(c.converged.all())
    elif args.stage == "timing":  # floor and curve alternately in one process: contention hits both alike
        pairs = []
        for _ in range(args.repeat):
            tf, _ = timed(floor)
            tc, _ = timed(curve)
            pairs.append((tf, tc))
        out["pairs"] = pairs
    elif args.stage == "deepbays":
        from deepbays_stub import import_deepbays

        db = import_deepbays()
        sub = temps[np.linspace(0, len(temps) - 1, args.deepbays_temps).round().astype(int)]
        t0 = time.perf_counter()
        for T in sub:
            m = db.rkgp.FC_1HL(width, float(T), act="erf")
            m.preprocess(x, y)
            m.optimize()
            if args.n_test:
                m.predict(xt)
                m.averageLoss(yt)
        out["seconds_per_temperature"] = (time.perf_counter() - t0) / len(sub)
        out["temperatures_timed"] = len(sub)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def torch_threads() -> str:
    import torch

    return f"default ({torch.get_num_threads()})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--P", type=int, default=2000)
    p.add_argument("--N0", type=int, default=784)
    p.add_argument("--temps", type=int, default=100)
    p.add_argument("--n-test", type=int, default=500, help="test points (0: no test set)")
    p.add_argument("--width", type=int, default=0, help="N1 (default P/2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", choices=("synthetic", "mnist"), default="synthetic")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs for floor and curve")
    p.add_argument("--deepbays-temps", type=int, default=2, help="temperatures to time deepbays on (0: skip)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch and BLAS (0: library default). On a shared machine 1 thread "
                        "avoids the multi-second stalls of 2 threads under contention")
    p.add_argument("--stage", choices=("timing", "floor", "curve", "deepbays"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(_stage(args)))
        return
    env = os.environ.copy()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    results = {}
    stages = ["timing", "floor", "curve"] + (["deepbays"] if args.deepbays_temps > 0 else [])
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    for stage in stages:
        proc = subprocess.run(base + ["--stage", stage], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"stage {stage} failed")
        results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
    pairs = np.array(results["timing"]["pairs"])
    floor, curve = pairs[:, 0].min(), pairs[:, 1].min()
    ratios = pairs[:, 1] / pairs[:, 0]
    print(f"P = {args.P}, N0 = {args.N0}, {args.temps} temperatures, {args.n_test} test points, device {args.device}, "
          f"data {args.data}, threads {args.threads or torch_threads()}; floor and curve alternated {args.repeat}× in one process (best of each shown)")
    print(f"  floor  (kernel + 1 eigh)      {floor:9.3f} s   peak RSS {results['floor']['peak_rss_mb']:8.0f} MB"
          + (f"   CUDA {results['floor']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in results["floor"] else ""))
    print(f"  temperature_curve (gaussian)  {curve:9.3f} s   peak RSS {results['curve']['peak_rss_mb']:8.0f} MB"
          + (f"   CUDA {results['curve']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in results["curve"] else "")
          + f"   converged {results['curve']['converged']}")
    print(f"  ratio curve / floor           {curve / floor:9.2f}    (best/best; per-pair ratios "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; target ≤ 1.5)")
    if "deepbays" in results:
        per = results["deepbays"]["seconds_per_temperature"]
        total = per * args.temps
        print(f"  deepbays FC_1HL               {per:9.3f} s per temperature, timed on "
              f"{results['deepbays']['temperatures_timed']} and extrapolated: {total:9.1f} s for {args.temps}"
              f"   peak RSS {results['deepbays']['peak_rss_mb']:8.0f} MB")
        print(f"  speed-up over deepbays        {total / curve:9.1f}×   (target ≥ 100)")


if __name__ == "__main__":
    main()
