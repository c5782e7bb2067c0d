"""Cost of the ``cavity`` and ``condensate`` levels next to the ``gaussian`` level, one run, same data and temperatures.

    python benchmarks/bench_cavity.py [--P 1000] [--width 50] [--temperatures 30] [--threads 2] [--levels cavity condensate]

MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)``), erf, λ0 = λ1 = 1,
temperatures log-spaced from 10 down to 0.003. Prints wall and CPU (process) time of
``temperature_curve(level="gaussian")`` and of each of ``--levels`` (every observable, test set included),
their ratio, at how many temperatures the level's result exists (a cavity fixed point that did not
converge is NaN), how many temperatures are in regime, and peak RSS.
CPU time is printed because the machine is shared: wall time then measures the neighbours too.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--P", type=int, default=1000)
    ap.add_argument("--width", type=int, default=50)
    ap.add_argument("--temperatures", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--levels", nargs="+", default=["cavity", "condensate"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from gdeq.equilibrium import temperature_curve
    from gdeq.gd_dynamics import load_task

    t = load_task("mnist", (3, 5), n_train=a.P, n_test=100, seed=0)
    temps = np.logspace(1, np.log10(0.003), a.temperatures)
    kw = dict(width=a.width, x_test=t.x_test, y_test=t.y_test, device=a.device)
    g, gw, gc = _timed(lambda: temperature_curve(t.x_train, t.y_train, temps, level="gaussian", **kw))
    runs = {lev: _timed(lambda lev=lev: temperature_curve(t.x_train, t.y_train, temps, level=lev, **kw))
            for lev in a.levels}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"P = {a.P}, N1 = {a.width} (α = {a.P / a.width:g}), {a.temperatures} temperatures 10 ... 0.003, "
          f"{a.threads} threads, device {a.device or 'cpu'}")
    print(f"{'gaussian':10s} level: {gw:7.1f} s wall {gc:7.1f} s CPU   (1.0x)")
    for lev, (c, cw, cc) in runs.items():
        print(f"{lev:10s} level: {cw:7.1f} s wall {cc:7.1f} s CPU   ({cw / gw:.0f}x wall, {cc / max(gc, 1e-9):.0f}x CPU)")
    for lev, (c, _, _) in runs.items():
        # a result exists where the saddle point and the level's own fixed point converged (B.6)
        conv = np.asarray(c.converged, dtype=bool) & np.isfinite(c.test_error)
        print(f"{lev}: result at {int(conv.sum())}/{len(temps)} temperatures"
              + (f" (coldest T = {temps[conv].min():.3g}; the others NaN)" if conv.any() else "")
              + f"; in regime at {int(c.in_regime.sum())}/{len(temps)}")
    print(f"gaussian in regime at {int(g.in_regime.sum())}/{len(temps)}; peak RSS {peak:.0f} MiB")
    for i in (0, len(temps) // 2, len(temps) - 1):
        print(f"  T = {temps[i]:.3g}: λ1<v²> gaussian {g.readout_second_moment[i]:.3f} "
              + " ".join(f"{lev} {c.readout_second_moment[i]:.3f}" for lev, (c, _, _) in runs.items())
              + f"; test error gaussian {g.test_error[i]:.3f} "
              + " ".join(f"{lev} {c.test_error[i]:.3f}" for lev, (c, _, _) in runs.items()))

if __name__ == "__main__":
    main()
