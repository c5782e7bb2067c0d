"""Unit-sphere measures: delta method (equilibrium.unit_sphere) vs mean kernel vs exact averages.

1. At the prior (T → ∞), MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=P, n_test=4, seed=0)``),
   erf, λ0 = 1: an exact Monte Carlo of the per-sample unit-sphere centroid distance and radii
   (``--draws`` independent draws of N1 prior neurons, ``geometry.class_geometry`` on each) against
   the delta method on the NNGP kernel and the mean-kernel value, for (P, N1) = (100, 50), (40, 10).
2. At finite T, P = 40, N1 ∈ {10, 20}, T ∈ {1, 0.1}: the exact sampler (``sample_temperatures``, default
   adaptive settings with 16 chains) gives the per-sample averages and the posterior mean kernel ⟨K_W⟩;
   the delta method applied to THAT ⟨K_W⟩ isolates the fluctuation correction from any level's error on
   ⟨K_W⟩ itself. The `gaussian` level's (corrected) values are listed beside them.

Writes ``benchmarks/results/unit_sphere.json`` (config, command, commit, every number ± s.e.);
``tests/test_unit_sphere.py::test_cached_unit_sphere_validation`` checks it; docs/theory.md §4.3 and
docs/sampling.md quote it.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_unit_sphere.py
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from gdeq import geometry
from gdeq.equilibrium import SamplerSettings, sample_temperatures, temperature_curve
from gdeq.equilibrium.kernels import nngp_kernels
from gdeq.equilibrium.unit_sphere import prior_neuron_samples, unit_sphere_measures
from gdeq.gd_dynamics import load_task

RESULT = Path(__file__).parent / "results" / "unit_sphere.json"
COMMAND = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_unit_sphere.py"


def _task(P: int):
    return load_task("mnist", (3, 5), n_train=P, n_test=4, seed=0)


def _mean_kernel(K: torch.Tensor, y) -> list[float]:
    return [float(geometry.centroid_distance(K, y, unit_sphere=True)) ** 0.5,
            *map(float, np.asarray(geometry.class_radius(K, y, unit_sphere=True)))]


def _delta(K: torch.Tensor, x, y, width: int) -> list[float]:
    out, ok = unit_sphere_measures(K[None], y, prior_neuron_samples(x), width=width)
    return [float(out["unit_centroid_distance"][0]), *map(float, out["unit_class_radius"][0])]


def prior_row(P: int, width: int, draws: int) -> dict:
    task = _task(P)
    kb = nngp_kernels(task.x_train)
    lam, V = torch.linalg.eigh(kb.cov_train)
    root = V * lam.clamp_min(0.0).sqrt()
    gen = torch.Generator().manual_seed(1)
    vals = []
    for start in range(0, draws, 1000):
        n = min(1000, draws - start)
        s = torch.erf(torch.randn(n, width, P, generator=gen, dtype=torch.float64) @ root.T)
        geo = geometry.class_geometry(s.transpose(-1, -2) @ s / width, task.y_train)
        vals.append(np.column_stack([np.asarray(geo.unit_centroid_distance), np.asarray(geo.unit_class_radius)]))
    v = np.concatenate(vals)
    return dict(P=P, width=width, draws=draws, names=["unit_centroid_distance", "unit_class_radius_0", "unit_class_radius_1"],
                exact=v.mean(0).tolist(), exact_se=(v.std(0, ddof=1) / math.sqrt(len(v))).tolist(),
                delta=_delta(kb.train, task.x_train, task.y_train, width), mean_kernel=_mean_kernel(kb.train, task.y_train))


def finite_t_rows(P: int, width: int, temperatures, replicas: int) -> list[dict]:
    task = _task(P)
    t0 = time.perf_counter()
    res = sample_temperatures(task.x_train, task.y_train, temperatures, width=width,
                              settings=SamplerSettings(replicas=replicas, seed=0))
    seconds = time.perf_counter() - t0
    gauss = temperature_curve(task.x_train, task.y_train, temperatures, width=width, level="gaussian")
    rows = []
    for i, s in enumerate(res):
        K = torch.as_tensor(s.hidden_gram.mean, dtype=torch.float64)
        rows.append(dict(
            P=P, width=width, temperature=float(s.temperature), converged=bool(s.converged), seconds=seconds,
            sampled=[float(s.unit_centroid_distance.mean), *map(float, s.unit_class_radius.mean)],
            sampled_se=[float(s.unit_centroid_distance.se), *map(float, s.unit_class_radius.se)],
            delta_on_sampled_kernel=_delta(K, task.x_train, task.y_train, width),
            mean_kernel_of_sampled_kernel=_mean_kernel(K, task.y_train),
            gaussian_level=[float(gauss.unit_centroid_distance[i]), *map(float, gauss.unit_class_radius[i])],
        ))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20000, help="exact Monte Carlo draws at the prior")
    ap.add_argument("--replicas", type=int, default=16, help="sampler chains at finite T")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    prior = [prior_row(100, 50, args.draws), prior_row(40, 10, args.draws)]
    for r in prior:
        print(f"prior P={r['P']} N1={r['width']}: exact {np.round(r['exact'], 5)} ± {np.round(r['exact_se'], 5)}, "
              f"delta {np.round(r['delta'], 5)}, mean kernel {np.round(r['mean_kernel'], 5)}", flush=True)
    finite = finite_t_rows(40, 10, [1.0, 0.1], args.replicas) + finite_t_rows(40, 20, [1.0, 0.1], args.replicas)
    for r in finite:
        print(f"P={r['P']} N1={r['width']} T={r['temperature']}: sampled {np.round(r['sampled'], 5)} ± "
              f"{np.round(r['sampled_se'], 5)}, delta(<K_W>) {np.round(r['delta_on_sampled_kernel'], 5)}, "
              f"mean kernel(<K_W>) {np.round(r['mean_kernel_of_sampled_kernel'], 5)}, gaussian "
              f"{np.round(r['gaussian_level'], 5)}, converged {r['converged']}", flush=True)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(dict(
        config=dict(dataset="mnist", classes=[3, 5], data_seed=0, activation="erf", prior_w=1.0, prior_v=1.0,
                    draws=args.draws, replicas=args.replicas, sampler="SamplerSettings(replicas, seed=0) adaptive"),
        command=COMMAND, commit=commit, prior=prior, finite_temperature=finite), indent=2))
    print(f"written {RESULT}")


if __name__ == "__main__":
    main()
