"""Cost of the ``single_neuron`` level next to its floor (kernel + one eigh + the gaussian level).

    python benchmarks/bench_single_neuron.py [--P 1000] [--temperatures 30] [--threads 2]

Prints wall times side by side for MNIST 3 vs 5 (erf, N1 = P/2): the gaussian-level temperature
curve, the single_neuron level with saddle fields, and with self-consistent fields (on a few
temperatures, extrapolated per temperature), plus peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, default=1000)
    ap.add_argument("--temperatures", type=int, default=30)
    ap.add_argument("--sc-temperatures", type=int, default=3)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.single_neuron import single_neuron_curve
    from gdeq.gd_dynamics import load_task

    t = load_task("mnist", (3, 5), n_train=a.P, n_test=2, seed=0)
    temps = np.logspace(-2, 1, a.temperatures)
    n1 = a.P // 2
    t0 = time.perf_counter()
    g = temperature_curve(t.x_train, t.y_train, temps, width=n1)
    t_gauss = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = single_neuron_curve(t.x_train, t.y_train, temps, g.Q, width=n1, samples=a.samples, self_consistent=False)
    t_saddle = time.perf_counter() - t0
    sub = temps[-a.sc_temperatures:]
    t0 = time.perf_counter()
    rs = single_neuron_curve(t.x_train, t.y_train, sub, g.Q[-a.sc_temperatures:], width=n1, samples=a.samples)
    t_sc = (time.perf_counter() - t0) / len(sub)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"P = {a.P}, N1 = {n1}, {a.temperatures} temperatures, {r.samples} samples, {a.threads} threads")
    print(f"gaussian level (kernel + eigh + curve):         {t_gauss:8.1f} s   (1.0x)")
    print(f"single_neuron, saddle fields:                   {t_saddle:8.1f} s   ({t_saddle / t_gauss:.0f}x)")
    print(f"single_neuron, self-consistent (per T, {len(sub)} hottest T, "
          f"{rs.iterations.mean():.0f} iterations avg): {t_sc:.1f} s -> {t_sc * a.temperatures:.0f} s for all")
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
