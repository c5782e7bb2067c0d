"""Is the class-manifold distance a non-monotonic function of T in the exact posterior? (docs/findings.md)

For each task and α = P/N1, the exact posterior is sampled at every temperature of one ladder
(``equilibrium.temperature_curve(level="sampled")``, adaptive length with R̂/ESS diagnostics) and
the theory levels (nngp, gaussian) are computed beside it. Every (task, α) is cached in its own
JSON file under ``benchmarks/results/phase_diagram/`` with the full config, the command and the git
commit (resumable: cached points are skipped). ``--report`` prints the table and, per (task, α),
where the raw and unit-sphere centroid distances peak in T and how far the peak lies above the
lowest-T value, in combined standard errors.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/phase_diagram.py --tasks mnist:3,5 --alphas 2 20 --n-train 60
    python benchmarks/phase_diagram.py --report

Tasks: ``mnist:3,5``, ``mnist:4,9``, ``cifar10:3,5`` (CIFAR-10 cat vs dog, grey; needs ``--data-dir``
or ``$GDEQ_DATA_DIR`` with the CIFAR-10 npz files). Inputs: centred, |x|² = N0 (load_task's default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "phase_diagram"
MEASURES = ("centroid_distance", "unit_centroid_distance", "readout_second_moment", "train_error", "test_error")


def _task(spec: str, n_train: int, n_test: int, data_dir):
    from gdeq.gd_dynamics import Preprocessing, load_task

    name, classes = spec.split(":")
    classes = tuple(int(c) for c in classes.split(","))
    pre = Preprocessing(grayscale=True) if name == "cifar10" else None
    return load_task(name, classes, n_train=n_train, n_test=n_test, seed=0, data_dir=data_dir, preprocessing=pre)


def _key(spec: str, n_train: int, alpha: float) -> str:
    return f"{spec.replace(':', '_').replace(',', 'v')}_P{n_train}_alpha{alpha:g}"


def run(args) -> None:
    from gdeq.equilibrium import SamplerSettings, SamplingConvergenceWarning, temperature_curve

    RESULTS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    temps = np.geomspace(args.t_max, args.t_min, args.n_temperatures)
    for spec in args.tasks:
        task = _task(spec, args.n_train, args.n_test, args.data_dir)
        for alpha in args.alphas:
            path = RESULTS / f"{_key(spec, args.n_train, alpha)}.json"
            if path.exists() and not args.force:
                print(f"{path.name}: cached")
                continue
            width = max(1, int(round(args.n_train / alpha)))
            st = SamplerSettings(replicas=args.replicas, tempering=args.tempering, max_trajectories=args.max_trajectories,
                                 max_seconds=args.max_seconds, seed=args.seed)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SamplingConvergenceWarning)
                curve = temperature_curve(task.x_train, task.y_train, temps, width=width, x_test=task.x_test,
                                          y_test=task.y_test, level="sampled", sampler=st)
            seconds = time.perf_counter() - t0
            theory = {lv: temperature_curve(task.x_train, task.y_train, temps, width=width, x_test=task.x_test,
                                            y_test=task.y_test, level=lv) for lv in ("nngp", "gaussian")}
            row = dict(
                config=dict(task=spec, n_train=args.n_train, n_test=args.n_test, alpha=alpha, width=width,
                            temperatures=temps.tolist(), activation="erf", prior_w=1.0, prior_v=1.0, data_seed=0,
                            sampler={k: (v if isinstance(v, (int, float, bool, str, type(None))) else str(v))
                                     for k, v in asdict(st).items()}),
                command=" ".join(["python", "benchmarks/phase_diagram.py", *sys.argv[1:]]), commit=commit,
                seconds=seconds, warnings=[str(w.message) for w in caught],
                sampled={m: dict(mean=np.asarray(getattr(curve, m)).tolist(), se=np.asarray(curve.sem(m)).tolist())
                         for m in MEASURES},
                class_radius=dict(mean=curve.class_radius.tolist(), se=curve.sem("class_radius").tolist()),
                converged=curve.converged.tolist(),
                diagnostics=[dict(T=d.temperature, rhat=d.rhat, ess_bulk=d.ess_bulk, ess_tail=d.ess_tail,
                                  acceptance=d.acceptance, swap_acceptance=d.swap_acceptance, burn_in=d.burn_in,
                                  n_draws=d.n_draws) for d in curve.diagnostics],
                theory={lv: {m: np.asarray(getattr(c, m)).tolist() for m in MEASURES} for lv, c in theory.items()},
            )
            path.write_text(json.dumps(row, indent=1, default=float))
            print(f"{path.name}: {seconds:.0f} s, converged {sum(row['converged'])}/{len(temps)}", flush=True)


def peak_summary(row: dict, measure: str) -> dict:
    """Where the sampled measure peaks in T and the peak's height above the lowest-T value in combined s.e."""
    T = np.asarray(row["config"]["temperatures"])
    m, se = np.asarray(row["sampled"][measure]["mean"]), np.asarray(row["sampled"][measure]["se"])
    low = int(np.argmin(T))
    top = int(np.argmax(m))
    z = (m[top] - m[low]) / np.hypot(se[top], se[low]) if top != low else 0.0
    return dict(T_peak=float(T[top]), peak=float(m[top]), low_T=float(T[low]), low=float(m[low]), z=float(z),
                interior=bool(top != low and top != int(np.argmax(T))))


def report(args) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not rows:
        print("no cached results under", RESULTS)
        return
    print("| task | P | α | N1 | converged | measure | T of max | max | value at lowest T | (max − low)/s.e. | interior max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["config"]
        for measure in ("centroid_distance", "unit_centroid_distance"):
            s = peak_summary(r, measure)
            print(f"| {c['task']} | {c['n_train']} | {c['alpha']:g} | {c['width']} | {sum(r['converged'])}/{len(r['converged'])} "
                  f"| {measure} | {s['T_peak']:.3g} | {s['peak']:.4g} | {s['low']:.4g} (T={s['low_T']:.3g}) "
                  f"| {s['z']:.1f} | {'yes' if s['interior'] else 'no'} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for r in rows:
            c = r["config"]
            T = np.asarray(c["temperatures"])
            for ax, measure in zip(axes, ("centroid_distance", "unit_centroid_distance")):
                m, se = np.asarray(r["sampled"][measure]["mean"]), np.asarray(r["sampled"][measure]["se"])
                ok = np.asarray(r["converged"], bool)
                line = ax.errorbar(T, m, yerr=se, marker="o", ms=3, capsize=2,
                                   label=f"{c['task']} α={c['alpha']:g} (N1={c['width']})")
                color = line[0].get_color()
                ax.plot(T[~ok], m[~ok], "o", ms=7, mfc="white", color=color, zorder=3)  # diagnostics failed
                ax.plot(T, r["theory"]["gaussian"][measure], ls="--", color=color, lw=1)
                ax.set_xscale("log")
                ax.set_xlabel("T")
                ax.set_title(measure.replace("_", " "))
        fig.suptitle("sampled ± s.e. (open: R̂/ESS failed); dashed: gaussian level", fontsize=9)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print("wrote", args.plot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["mnist:3,5", "mnist:4,9", "cifar10:3,5"])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1, 2, 5, 20])
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--t-max", type=float, default=3.0)
    ap.add_argument("--t-min", type=float, default=0.003)
    ap.add_argument("--n-temperatures", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--tempering", action="store_true")
    ap.add_argument("--max-trajectories", type=int, default=1640)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--plot", default=None, help="with --report: write the figure here")
    args = ap.parse_args()
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
