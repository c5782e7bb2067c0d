"""Reproduce arXiv 2303.05161's headline on real MNIST, and scan the equilibrium setting for inversions.

Run 1 (``paper``): parity labels, the first 8,192 training images (and first 2,000 test images),
per-pixel standardisation, one hidden layer of 20 tanh units with biases and PyTorch default
initialisation, 2 logits, cross-entropy (mean over samples, as nn.CrossEntropyLoss), full-batch GD
at lr 0.1 for 500 epochs, 10 initialisations (batched replicas). Questions: does every
initialisation show an inversion of the first class's unit-sphere radius R_0 (the paper's rule:
after a 20-epoch burn-in, the first epoch at which R_0 stops decreasing; and our smoothed, patient
turning-point detector)? What is the training error at the inversion (mean ± std)? Are the
stragglers (misclassified at the inversion) stable across initialisations (hypergeometric z)?
Does retraining each initialisation from the same initial weights without its stragglers remove
the inversion?

Run 2 (``scan``): MNIST 3 vs 5, P = 400 (balanced draw, centred, |x|² = N0), erf, ½Σ(y − f)², full-batch GD
until every replica fits the training set, R = 8, N1 ∈ {20, 50, 400}: which first-layer measures
(raw and unit-sphere) rise then fall (or fall then rise), at which step ± s.e.?

    python benchmarks/inversion_paper.py [paper|scan|all] [--out benchmarks/results]

Results go to ``<out>/inversion_paper.json`` / ``<out>/inversion_scan.json`` (default out:
docs/gd_dynamics_data) and are printed as
markdown; docs/gd_dynamics.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("GDEQ_OFFLINE", "1")
from gdeq.gd_dynamics import Preprocessing, drop_train_points, load_task, train  # noqa: E402
from gdeq.gd_dynamics.inversion import find_inversions, stragglers  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RUNS = Path(os.environ.get("GDEQ_BENCH_RUNS", Path(tempfile.gettempdir()) / "gdeq_bench_runs"))


def _fmt(m: float, s: float, digits: int = 3) -> str:
    return f"{m:.{digits}g} ± {s:.2g}" if np.isfinite(s) else f"{m:.{digits}g}"


def paper(out: Path, replicas: int = 10, epochs: int = 500) -> dict:
    data_dir = SHARED if (SHARED / "mnist_train.npz").is_file() else None
    task = load_task("mnist", "parity", n_train=8192, n_test=2000, selection="first", data_dir=data_dir,
                     preprocessing=Preprocessing.inversion_paper())
    # every epoch early (the paper's rule compares consecutive epochs), sparser later
    log_steps = np.unique(np.r_[np.arange(0, 151), np.arange(150, 300, 2), np.arange(300, epochs + 1, 5), epochs])
    common = dict(width=20, activation="tanh", bias=True, init="pytorch", loss="cross_entropy", reduction="mean",
                  optimizer="gd", lr=0.1, steps=epochs, log_steps=log_steps, probe_size=256, wandb=None,
                  progress_bar=False, checkpoint_every=epochs)
    t0 = time.perf_counter()
    traj = train(task, replicas=replicas, seed=0, output_dir=RUNS, run_name="paper", **common)
    t_train = time.perf_counter() - t0
    key = "train_full/L1/unit_class_radius_0"
    inv = find_inversions(traj, key, rule="paper", burn_in=20)
    turn = find_inversions(traj, key, rule="turning_point", kind="min", burn_in=20)
    rep = stragglers(traj, inv)
    rep.save(Path(traj.run_dir) / "stragglers")
    # retrain every initialisation from its own initial weights without its stragglers
    retrained = []
    for r in range(replicas):
        t_r = drop_train_points(task, rep.sets[r])
        tr = train(t_r, replicas=1, seed=[traj.seeds[r]], output_dir=RUNS, run_name=f"paper_retrain{r}",
                   clustering_indices=False, **common)
        i_p = find_inversions(tr, key, rule="paper", burn_in=20)
        i_t = find_inversions(tr, key, rule="turning_point", kind="min", burn_in=20)
        r0 = tr.measure(key)[:, 0]
        after = r0[tr.step >= 20]
        retrained.append(dict(
            replica=r, removed=len(rep.sets[r]), paper_rule_step=float(i_p.step[0]), turning_point_step=float(i_t.step[0]),
            monotone_after_burn_in=bool(np.all(np.diff(after) <= 0)),
            r0_rise_after_min=float(after[np.argmin(after):].max() - after.min()),
            final_train_accuracy=float(tr.train_accuracy[-1, 0])))
    R0 = traj.measure(key)
    res = dict(
        setup="MNIST parity, first 8192 train / 2000 test, per-pixel standardised, 20 tanh + bias, PyTorch init, "
              "2 logits, CE (mean), full-batch GD lr 0.1, 500 epochs, 10 inits",
        wall_seconds_batched_run=t_train, geometry_seconds=traj.config["geometry_seconds"],
        paper_rule=inv.summary(), turning_point=turn.summary(),
        paper_rule_steps=inv.step.tolist(), turning_point_steps=turn.step.tolist(),
        train_error_at_inversion=inv.train_error.tolist(),
        r0_initial=R0[0].tolist(), r0_min=R0.min(0).tolist(), r0_final=R0[-1].tolist(),
        r0_rise_after_min=[float(R0[np.argmin(R0[:, r]):, r].max() - R0[:, r].min()) for r in range(replicas)],
        unit_centroid_distance_initial=traj.measure("train_full/L1/unit_centroid_distance")[0].tolist(),
        unit_centroid_distance_final=traj.measure("train_full/L1/unit_centroid_distance")[-1].tolist(),
        final_train_error=(1 - traj.train_accuracy[-1]).tolist(), final_test_error=(1 - traj.test_accuracy[-1]).tolist(),
        stragglers_per_replica=[len(s) for s in rep.sets], straggler_overlap_z=rep.overlap_z,
        retrained=retrained, run_dir=traj.run_dir,
    )
    (out / "inversion_paper.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("retrained",)}, indent=1))
    print(json.dumps(retrained, indent=1))
    return res


SCAN_MEASURES = (
    "centroid_distance", "class_radius_0", "class_radius_1", "distance_ratio", "inter_distance", "intra_distance",
    "alignment", "centered_alignment", "participation_ratio", "knn_purity", "calinski_harabasz", "davies_bouldin",
    "unit_centroid_distance", "unit_class_radius_0", "unit_class_radius_1",
)


def scan(out: Path, widths=(20, 50, 400), replicas: int = 8, max_steps: int = 20000) -> dict:
    task = load_task("mnist", (3, 5), n_train=400, n_test=400, seed=0)
    results = dict(setup="MNIST 3 vs 5, P=400 (balanced, seed 0), centred, |x|²=N0, erf, ½Σ(y−f)², full-batch GD "
                         "lr 0.01 until every replica fits the training set, R=8, prior init λ=1",
                   widths={})
    for N1 in widths:
        t0 = time.perf_counter()
        # the exact reduction (docs/conventions.md §6) is exact for GD too: same train pre-activations, the
        # orthogonal weight components never move; test inputs get their prior remainder term
        traj = train(task, width=N1, activation="erf", optimizer="gd", lr=0.01, steps=max_steps, replicas=replicas,
                     seed=0, reduce_inputs=True, stop_at_fit=True, log_points=150, probe_size=None, output_dir=RUNS,
                     run_name=f"scan_N{N1}", wandb=None, progress_bar=False, checkpoint_every=max_steps)
        entry = dict(fit_step=int(traj.step[-1]), wall_seconds=time.perf_counter() - t0,
                     geometry_seconds=traj.config["geometry_seconds"], measures={})
        entry["final_test_accuracy"] = float(traj.test_accuracy[-1].mean())
        for split in ("train", "test"):
            for m in SCAN_MEASURES:
                key = f"{split}/L1/{m}"
                vals = traj.measure(key)
                row = dict(start=float(vals[0].mean()), end=float(vals[-1].mean()))
                for kind in ("max", "min"):
                    inv = find_inversions(traj, key, rule="turning_point", kind=kind, burn_in=0)
                    s = inv.summary()
                    row[kind] = dict(found=s["found"], step=_fmt(s["step_mean"], s["step_sem"]),
                                     step_mean=s["step_mean"], step_sem=s["step_sem"],
                                     train_error=_fmt(s["train_error_mean"], s["train_error_sem"]))
                    # size of the excursion relative to the net change (is the turn more than a wiggle?)
                    mean_curve = vals.mean(1)
                    ext = mean_curve.max() if kind == "max" else mean_curve.min()
                    row[kind]["excursion_of_mean"] = float(abs(ext - mean_curve[-1]))
                entry["measures"][key] = row
        results["widths"][str(N1)] = entry
        print(f"N1={N1}: fit at step {entry['fit_step']} ({entry['wall_seconds']:.0f} s)")
        for key, row in entry["measures"].items():
            flags = [f"rise-then-fall {row['max']['found']}/{replicas} at {row['max']['step']}" if row["max"]["found"] else "",
                     f"fall-then-rise {row['min']['found']}/{replicas} at {row['min']['step']}" if row["min"]["found"] else ""]
            print(f"  {key:36s} {row['start']:.4g} -> {row['end']:.4g}  {'; '.join(f for f in flags if f) or 'monotone'}")
        sys.stdout.flush()
    (out / "inversion_scan.json").write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="?", default="all", choices=["paper", "scan", "all"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "gd_dynamics_data"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.which in ("scan", "all"):
        scan(out)
    if args.which in ("paper", "all"):
        paper(out)


if __name__ == "__main__":
    main()
