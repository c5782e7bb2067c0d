"""Speed and memory of equilibrium.temperature_curve, side by side with its floor and deepbays.

    python benchmarks/bench_equilibrium.py                       # P = 2000, 100 temperatures, CPU
    python benchmarks/bench_equilibrium.py --device cuda --P 20000 --temps 200 --deepbays-temps 0
    python benchmarks/bench_equilibrium.py --eigh-drivers --P 1500 --threads 1   # which eigh is fastest

Prints, measured in one run:
  floor     NNGP kernel + one float64 eigh of K (the O(P³) step nothing can avoid), with the SAME
            eigh the curve uses (equilibrium.linalg.eigh: LAPACK 'evd' through scipy on CPU, torch on
            CUDA); the torch.linalg.eigh time of the same K is printed next to it for reference
  curve     temperature_curve(level="gaussian") for all temperatures (kernel, eigh, saddle points,
            predictor, ⟨K_W⟩ geometry, weight moments) — target ≤ 1.5× floor
  deepbays  deepbays 0.1.11 FC_1HL (preprocess, optimize, predict, averageLoss) per temperature,
            timed on --deepbays-temps temperatures and extrapolated per temperature to the full
            set (it redoes its O(P³) work at every temperature) — target curve ≥ 100× faster
and the peak memory of each stage, each stage in its own process (peak RSS from getrusage; on
CUDA also torch.cuda.max_memory_allocated). Data: sphere-normalised Gaussian inputs with
teacher labels (any P), or --data mnist (parity task, P ≤ 8192). ``--json PATH`` also writes every
number with the full config (arguments, thread count, git commit) that produced it.
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

        t = load_task("mnist", parity_groups(), n_train=P, n_test=max(n_test, 2), seed=0)  # ≥ 1 per class
        return (t.x_train, t.y_train, t.x_test, t.y_test) if n_test else (t.x_train, t.y_train, None, None)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P + n_test, N0))
    X *= np.sqrt(N0) / np.linalg.norm(X, axis=1, keepdims=True)
    teacher = rng.standard_normal(N0)
    y = np.sign(np.tanh(X @ teacher / np.sqrt(N0)) + 0.3 * rng.standard_normal(P + n_test))
    return X[:P], y[:P], X[P:], y[P:]


def _balanced_subset(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to n rows with the classes interleaved (the first rows of a task may hold one class)."""
    labels = y if y.ndim == 1 else y.argmax(1)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [i for group in zip(*per_class) for i in group]
    return np.asarray(order[:n])


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        # "+dirty": the code this benchmark runs differs from the commit
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "equilibrium", "geometry",
                                "benchmarks/bench_equilibrium.py"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _stage(args) -> dict:
    import torch

    from gdeq import equilibrium as eq
    from gdeq.equilibrium.linalg import eigh

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
    eigh(w @ w.T)
    warm = _balanced_subset(y, 64)  # both classes, whatever the order of the rows
    eq.temperature_curve(x[warm], y[warm], temps[:4], width=32, device=dev)

    def kernel():
        return eq.nngp_kernels(torch.as_tensor(x, device=dev), torch.as_tensor(xt, device=dev) if args.n_test else None,
                               activation="erf")

    def floor():
        eigh(kernel().train)  # the eigh temperature_curve itself uses

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
        K = kernel().train
        torch_eigh = []
        for _ in range(args.repeat):
            tf, _ = timed(floor)
            tc, _ = timed(curve)
            te, _ = timed(lambda: torch.linalg.eigh(K))
            pairs.append((tf, tc))
            torch_eigh.append(te)
        out["pairs"] = pairs
        out["torch_eigh_seconds"] = torch_eigh
        out["helper_eigh_seconds"] = [timed(lambda: eigh(K))[0] for _ in range(args.repeat)]
    elif args.stage == "drivers":  # every LAPACK driver and torch on the same K, interleaved
        import scipy.linalg

        K = kernel().train
        a = K.cpu().numpy()
        fns = {"torch.linalg.eigh": lambda: torch.linalg.eigh(K), "numpy.linalg.eigh": lambda: np.linalg.eigh(a)}
        for drv in ("evd", "evr", "ev"):
            fns[f"scipy driver={drv}"] = (lambda d: lambda: scipy.linalg.eigh(a, driver=d, check_finite=False))(drv)
        times: dict = {k: [] for k in fns}
        for _ in range(args.repeat):
            for k, fn in fns.items():
                times[k].append(timed(fn)[0])
        out["driver_seconds"] = times
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
    p.add_argument("--eigh-drivers", action="store_true",
                   help="only time torch, numpy and scipy's LAPACK drivers (evd, evr, ev) on the kernel K")
    p.add_argument("--json", type=Path, default=None, help="also write the results and full config here")
    p.add_argument("--stage", choices=("timing", "floor", "curve", "deepbays", "drivers"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(_stage(args)))
        return
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "stage"}
    config.update(git_commit=_git_commit(), command=" ".join([Path(sys.executable).name, *sys.argv]))
    env = os.environ.copy()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    results = {}
    stages = ["timing", "floor", "curve"] + (["deepbays"] if args.deepbays_temps > 0 else [])
    if args.eigh_drivers:
        stages = ["drivers"]
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    for stage in stages:
        proc = subprocess.run(base + ["--stage", stage], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"stage {stage} failed")
        results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
    config["load_average_1min_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=1))
    if args.eigh_drivers:
        times = results["drivers"]["driver_seconds"]
        best = {k: min(v) for k, v in times.items()}
        ref = best["torch.linalg.eigh"]
        print(f"P = {args.P}, N0 = {args.N0}, threads {args.threads or torch_threads()}, eigh of the erf kernel, "
              f"best of {args.repeat} (interleaved); commit {config['git_commit']}")
        for k, v in sorted(best.items(), key=lambda kv: kv[1]):
            print(f"  {k:20s} {v:8.3f} s   torch / this {ref / v:5.2f}")
        return
    pairs = np.array(results["timing"]["pairs"])
    floor, curve = pairs[:, 0].min(), pairs[:, 1].min()
    ratios = pairs[:, 1] / pairs[:, 0]
    print(f"P = {args.P}, N0 = {args.N0}, {args.temps} temperatures, {args.n_test} test points, device {args.device}, "
          f"data {args.data}, threads {args.threads or torch_threads()}; floor and curve alternated {args.repeat}× in one process (best of each shown)")
    t_torch = min(results["timing"]["torch_eigh_seconds"])
    t_helper = min(results["timing"]["helper_eigh_seconds"])
    print(f"  commit {config['git_commit']}")
    print(f"  eigh of K alone: equilibrium.linalg.eigh {t_helper:.3f} s, torch.linalg.eigh {t_torch:.3f} s "
          f"(torch / helper {t_torch / t_helper:.2f})")
    print(f"  floor  (kernel + 1 eigh)      {floor:9.3f} s   peak RSS {results['floor']['peak_rss_mb']:8.0f} MB"
          + (f"   CUDA {results['floor']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in results["floor"] else ""))
    print(f"  temperature_curve (gaussian)  {curve:9.3f} s   peak RSS {results['curve']['peak_rss_mb']:8.0f} MB"
          + (f"   CUDA {results['curve']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in results["curve"] else "")
          + f"   converged {results['curve']['converged']}")
    print(f"  ratio curve / floor           {curve / floor:9.2f}    (best/best; median of per-pair ratios "
          f"{np.median(ratios):.2f}; per pair {', '.join(f'{r:.2f}' for r in ratios)}; target ≤ 1.5)")
    print(f"  load average at the end       {os.getloadavg()[0]:9.1f}    (timings are only comparable on an idle machine)")
    if "deepbays" in results:
        per = results["deepbays"]["seconds_per_temperature"]
        total = per * args.temps
        print(f"  deepbays FC_1HL               {per:9.3f} s per temperature, timed on "
              f"{results['deepbays']['temperatures_timed']} and extrapolated: {total:9.1f} s for {args.temps}"
              f"   peak RSS {results['deepbays']['peak_rss_mb']:8.0f} MB")
        print(f"  speed-up over deepbays        {total / curve:9.1f}×   (target ≥ 100)")


if __name__ == "__main__":
    main()
