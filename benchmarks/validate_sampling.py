"""Acceptance of the sampled level (issue 8): defaults reproduce across seeds and against a 10x longer run.

MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=100, n_test=100, seed=0)``), N1 = 50, T = 0.01, erf,
λ0 = λ1 = 1. Runs ``equilibrium.sample_posterior`` with default :class:`SamplerSettings` at seeds 0 and
1, then one run ten times longer per chain (fixed length: 10x the trajectories per chain that the
seed-0 run used, half of them burn-in; 8 chains) at seed 2, and writes every estimate ± s.e. and the
diagnostics to ``benchmarks/results/sampling_acceptance/<run>.json`` with the full config, the
command and the git commit (resumable: cached runs are skipped).
``tests/test_sampling.py::test_cached_acceptance_runs_agree`` checks the cached numbers.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_sampling.py --run default_seed0 default_seed1
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_sampling.py --run long

The data are whatever ``load_task`` finds (the embedded MNIST subset when no data dir is set); the
source is recorded in each file (``data_source``): another source selects other examples.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gdeq.equilibrium import SamplerSettings, sample_posterior
from gdeq.gd_dynamics import load_task

OBSERVABLES = ("readout_second_moment", "train_error", "centroid_distance", "unit_centroid_distance", "test_error")
CONFIG = dict(dataset="mnist", classes=(3, 5), n_train=100, n_test=100, data_seed=0, width=50, temperature=0.01,
              activation="erf", prior_w=1.0, prior_v=1.0)


def _row(s, seed: int, settings: SamplerSettings, seconds: float) -> dict:
    d = s.diagnostics
    return dict(
        seed=seed, seconds=seconds, converged=s.converged, burn_in=d.burn_in, n_draws=d.n_draws,
        acceptance=d.acceptance, rhat=d.rhat, ess_bulk=d.ess_bulk, ess_tail=d.ess_tail,
        settings={k: (str(v) if not isinstance(v, (int, float, bool, type(None), str)) else v)
                  for k, v in asdict(settings).items()},
        values={k: [float(getattr(s, k).mean), float(getattr(s, k).se)] for k in OBSERVABLES},
    )


RESULTS = Path(__file__).parent / "results" / "sampling_acceptance"
RUNS = ("default_seed0", "default_seed1", "long")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", choices=RUNS, nargs="+", default=list(RUNS),
                    help="which runs (each cached in its own file; done runs are skipped unless --force)")
    ap.add_argument("--factor", type=float, default=10.0, help="length of the long run relative to seed 0's")
    ap.add_argument("--base-length", type=int, default=None,
                    help="trajectories per chain after tuning of the default seed-0 run (default: read its cache)")
    ap.add_argument("--long-replicas", type=int, default=8, help="chains of the long run")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    c = CONFIG
    task = load_task(c["dataset"], c["classes"], n_train=c["n_train"], n_test=c["n_test"], seed=c["data_seed"])
    kw = dict(width=c["width"], temperature=c["temperature"], activation=c["activation"], prior_w=c["prior_w"],
              prior_v=c["prior_v"], x_test=task.x_test, y_test=task.y_test)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "unknown"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for run in args.run:
        path = RESULTS / f"{run}.json"
        if path.exists() and not args.force:
            print(f"{run}: cached in {path}")
            continue
        extra = {}
        if run == "long":
            base = args.base_length
            if base is None:
                seed0 = json.loads((RESULTS / "default_seed0.json").read_text())["run"]
                base = seed0["burn_in"] + seed0["n_draws"]
            length = args.factor * base * SamplerSettings().trajectory_length
            st = SamplerSettings(seed=2, replicas=args.long_replicas, burn_in=length / 2, sampling_time=length / 2)
            extra = dict(factor=args.factor, base_length=base)
            seed = 2
        else:
            seed = int(run[-1])
            st = SamplerSettings(seed=seed)
        t0 = time.perf_counter()
        s = sample_posterior(task.x_train, task.y_train, settings=st, **kw)
        row = _row(s, seed, st, time.perf_counter() - t0)
        print(f"{run}: {row['values']} converged={s.converged} burn-in={s.diagnostics.burn_in} "
              f"draws={s.diagnostics.n_draws} {row['seconds']:.0f}s", flush=True)
        command = f"OMP_NUM_THREADS=1 python benchmarks/validate_sampling.py --run {run}" + (
            f" --factor {args.factor:g} --long-replicas {args.long_replicas}" if run == "long" else "")
        path.write_text(json.dumps(dict(config=c, data_source=task.source, command=command, commit=commit, run=row, **extra), indent=1,
                                   default=lambda o: np.asarray(o).tolist()))
        print("wrote", path)


if __name__ == "__main__":
    main()
