"""Theory vs exact sampling for the deep FC network (L = 2) and the one-hidden-layer CNN.

One cell = (dataset, architecture, α): the kernel-renormalisation theory (equilibrium.deep /
equilibrium.conv through ``temperature_curve``) and the exact posterior sampler
(``equilibrium.sampling_arch``, adaptive length with a time budget) at T ∈ {1, 0.1, 0.01}, on
``load_task(dataset, (3, 5), n_train=P, n_test=Pt, seed)`` (CIFAR-10 in grey: classes 3 = cat,
5 = dog). Widths: deep N1 = N2 = P/α; CNN Nc = P/α channels. Each cell is cached as JSON (config,
command, commit, theory, sampled mean ± s.e., diagnostics) in benchmarks/results/architectures_validation/;
rerunning the same command skips finished cells (resumable); ``--table`` writes table.md from the cache.

    GDEQ_DATA_DIR=<data> OMP_NUM_THREADS=1 nice -n 10 python benchmarks/validate_architectures.py --run all
    python benchmarks/validate_architectures.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gdeq.equilibrium import SamplerSettings, temperature_curve
from gdeq.equilibrium.sampling_arch import sample_architecture
from gdeq.gd_dynamics import load_task
from gdeq.gd_dynamics.data import Preprocessing

OUT = Path(__file__).resolve().parent / "results" / "architectures_validation"
TEMPERATURES = (1.0, 0.1, 0.01)
DATASETS = {"mnist": dict(side=28, mask=14), "cifar10": dict(side=32, mask=16)}
CELLS = [f"{d}-{a}-a{al:g}" for d in DATASETS for a in ("fc2", "cnn") for al in (2.0, 0.5)]


def _commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def _parse(cell: str):
    ds, arch, al = cell.split("-")
    if ds not in DATASETS or arch not in ("fc2", "cnn") or not al.startswith("a"):
        raise ValueError(f"cell: expected <mnist|cifar10>-<fc2|cnn>-a<alpha>, got {cell!r}")
    return ds, arch, float(al[1:])


def _f(e):
    return np.asarray(e, dtype=np.float64).tolist()


def run_cell(cell: str, args) -> dict:
    commit = _commit()  # the code this cell runs with (taken before the work)
    ds, arch, alpha = _parse(cell)
    geo = DATASETS[ds]
    pre = Preprocessing(grayscale=True) if ds == "cifar10" else None
    task = load_task(ds, (3, 5), n_train=args.P, n_test=args.n_test, seed=args.seed, preprocessing=pre,
                     data_dir=os.environ.get("GDEQ_DATA_DIR"))
    N = int(round(args.P / alpha))
    T = np.asarray(TEMPERATURES)
    if arch == "fc2":
        kw = dict(width=[N, N])
    else:
        kw = dict(width=N, architecture="cnn", patch_size=geo["mask"], image_shape=(1, geo["side"], geo["side"]))
    data = dict(x_test=task.x_test, y_test=task.y_test)
    t0 = time.perf_counter()
    th = temperature_curve(task.x_train, task.y_train, T, **kw, **data)
    t_theory = time.perf_counter() - t0
    s = SamplerSettings(replicas=args.replicas, max_seconds=args.max_seconds, max_trajectories=args.max_trajectories,
                        seed=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = sample_architecture(task.x_train, task.y_train, T, **kw, **data, settings=s)
    t_sample = time.perf_counter() - t0
    theory: dict = dict(test_error=th.test_error, train_error=th.train_error, converged=th.converged,
                        n_minima=th.n_minima)
    sampled: dict = {}

    def put(name, e):
        sampled[name] = dict(mean=_f(e[0]), se=_f(e[1]))

    for name in ("test_error", "train_error", "readout_second_moment", "Q"):
        put(name, _est_stack(samples, name))
    if arch == "fc2":
        lf = th.layer_fields
        theory.update(Q=lf["Q"], centroid_distance_layers=lf["centroid_distance"],
                      reference_centroid_distance_layers=lf["reference_centroid_distance"])
        put("centroid_distance_layers", _stack2(samples, ["layer1_centroid_distance", "layer2_centroid_distance"]))
    else:
        Q = th.layer_fields["Q"]
        Np = Q.shape[-1]
        off = ~np.eye(Np, dtype=bool)
        theory.update(readout_scale=np.trace(Q, axis1=1, axis2=2) / Np, Q_offdiag_mean=Q[:, off].mean(1),
                      centroid_distance=th.centroid_distance, reference_centroid_distance=th.reference["centroid_distance"],
                      hidden_centroid_distance=np.full(len(T), th.reference["centroid_distance"]))  # λ1 = 1
        q = _est_stack(samples, "Q")
        sampled["readout_scale"] = dict(mean=_f(np.trace(q[0], axis1=1, axis2=2) / Np), se=None)
        sampled["Q_offdiag_mean"] = dict(mean=_f(q[0][:, off].mean(1)), se=None)
        put("centroid_distance", _est_stack(samples, "centroid_distance"))
        put("hidden_centroid_distance", _est_stack(samples, "hidden_centroid_distance"))
        # s.e. of the readout scale: that of the readout second moment (λ1 = 1: the same number)
        sampled["readout_scale"]["se"] = sampled["readout_second_moment"]["se"]
    diag = []
    for p in samples:
        d = p.diagnostics
        diag.append(dict(temperature=p.temperature, converged=d.converged, max_rhat=max(d.rhat.values()),
                         min_ess=min(min(d.ess_bulk.values()), min(d.ess_tail.values())), acceptance=d.acceptance,
                         step_size=d.step_size, burn_in=d.burn_in, n_draws=d.n_draws,
                         failing=d.failing(s.rhat_max, s.ess_min)))
    return dict(
        cell=cell, config=dict(dataset=ds, classes=[3, 5], grayscale=ds == "cifar10", architecture=arch, alpha=alpha,
                               P=args.P, n_test=args.n_test, seed=args.seed, width=N, temperatures=list(TEMPERATURES),
                               activation="erf", prior_w=1.0, prior_v=1.0,
                               patch_size=None if arch == "fc2" else geo["mask"],
                               replicas=args.replicas, max_seconds=args.max_seconds,
                               max_trajectories=args.max_trajectories, rhat_max=s.rhat_max, ess_min=s.ess_min),
        command=" ".join(["GDEQ_DATA_DIR=<directory of the MNIST/CIFAR-10 .npz files>", "OMP_NUM_THREADS=1", "nice -n 10", "python", "benchmarks/validate_architectures.py",
                          *sys.argv[1:]]),
        commit=commit, machine="2-core CPU shared with other jobs (wall times are inflated)", wall_theory_s=t_theory,
        wall_sampling_s=t_sample, stop_reason=samples[0].settings["stop_reason"],
        warnings=[str(w.message) for w in caught],
        theory={k: _f(v) for k, v in theory.items()}, sampled=sampled, diagnostics=diag)


def _est_stack(samples, name):
    return (np.stack([np.asarray(p[name].mean) for p in samples]), np.stack([np.asarray(p[name].se) for p in samples]))


def _stack2(samples, names):
    m = np.stack([[np.asarray(p[n].mean) for n in names] for p in samples])
    e = np.stack([[np.asarray(p[n].se) for n in names] for p in samples])
    return m, e


def _fmt(theory, mean, se, conv=True):
    txt = f"{theory:.4g} / {mean:.4g} ± {se:.2g}" if se is not None else f"{theory:.4g} / {mean:.4g}"
    z = abs(mean - theory) / se if se else float("nan")
    flag = "" if conv else " †"
    return txt + flag + (f" ({z:.1f}σ)" if np.isfinite(z) else "")


def table(out: Path) -> str:
    rows = []
    files = sorted(out.glob("*.json"))
    for f in files:
        r = json.loads(f.read_text())
        c, th, sm = r["config"], r["theory"], r["sampled"]
        for k, T in enumerate(c["temperatures"]):
            dg = r["diagnostics"][k]
            conv = dg["converged"]
            st = lambda name, j=None: (sm[name]["mean"][k] if j is None else sm[name]["mean"][k][j],  # noqa: E731
                                       None if sm[name]["se"] is None else
                                       (sm[name]["se"][k] if j is None else sm[name]["se"][k][j]))
            cells = [c["dataset"], "FC L=2" if c["architecture"] == "fc2" else f"CNN m={c['patch_size']}",
                     f"{c['alpha']:g}", f"{c['width']}", f"{T:g}",
                     _fmt(th["test_error"][k], *st("test_error"), conv), _fmt(th["train_error"][k], *st("train_error"), conv)]
            if c["architecture"] == "fc2":
                cells += [_fmt(th["Q"][k][0], *st("Q", 0), conv), _fmt(th["Q"][k][1], *st("Q", 1), conv),
                          _fmt(th["centroid_distance_layers"][k][0], *st("centroid_distance_layers", 0), conv),
                          _fmt(th["centroid_distance_layers"][k][1], *st("centroid_distance_layers", 1), conv)]
            else:
                cells += [_fmt(th["Q_offdiag_mean"][k], st("Q_offdiag_mean")[0], None, conv),
                          _fmt(th["readout_scale"][k], *st("readout_scale"), conv),
                          _fmt(th["hidden_centroid_distance"][k], *st("hidden_centroid_distance"), conv),
                          _fmt(th["centroid_distance"][k], *st("centroid_distance"), conv)]
            cells.append(f"{dg['max_rhat']:.3f} / {dg['min_ess']:.0f}{'' if conv else ' (not converged)'}")
            rows.append("| " + " | ".join(cells) + " |")
    head = ("| data | network | α | width | T | test error | train error "
            "| FC: Q_1 / CNN: mean off-diagonal Q_ij | FC: Q_2 (readout) / CNN: tr Q/Np (readout) "
            "| FC: layer-1 centroid / CNN: hidden-Gram centroid | FC: layer-2 centroid / CNN: K_R (theory) vs K_v "
            "centroid | max R̂ / min ESS |\n" + "|---" * 12 + "|")
    return head + "\n" + "\n".join(rows) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", nargs="*", default=[], help=f"cells to run ('all' = {CELLS})")
    ap.add_argument("--table", action="store_true", help="write table.md from the cached cells")
    ap.add_argument("--force", action="store_true", help="rerun cells that are cached")
    ap.add_argument("--P", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--max-trajectories", type=int, default=3200)
    ap.add_argument("--out", type=Path, default=OUT)
    return ap


def main(argv=None) -> None:
    ap = parser()
    args = ap.parse_args(argv)
    cells = CELLS if args.run == ["all"] else args.run
    args.out.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        _parse(cell)
        path = args.out / f"{cell}.json"
        if path.exists() and not args.force:
            print(f"{cell}: cached ({path.name})", flush=True)
            continue
        res = run_cell(cell, args)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, path)  # a killed run leaves no half-written cell
        print(f"{cell}: done, sampling {res['wall_sampling_s']:.0f} s, stop: {res['stop_reason']}", flush=True)
    if args.table:
        (args.out / "table.md").write_text(table(args.out))
        print(table(args.out))


if __name__ == "__main__":
    main()
