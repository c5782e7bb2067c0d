"""The fluctuating-cavity-mean closure (docs/theory.md B.10) against exact sampling and the other levels.

    python benchmarks/validate_cavity_fluct.py sample-trace   # one new sampled point: the train posterior variance
    python benchmarks/validate_cavity_fluct.py trace           # the sampled trace next to each closure's
    python benchmarks/validate_cavity_fluct.py [--data-dir DATA] compare  # level cavity_fluct vs cavity, gaussian, sampling

``sample-trace``: the exact identity Cov f(X) = T − T²·Cov(t) (docs/theory.md B.5) turns the sampled mean train
posterior variance into T·Tr Cov(t)/P = 1 − (train variance)/T, the quantity every Gaussian cavity closure
models with its Σ (B.9, B.10). The cached sampled rows carry no train variance, so it is sampled here at
MNIST 3 vs 5, P = 100, N1 = 50 (α = 2; the phase-diagram slice), T = 0.1 and 0.03 (adaptive sampler, 16 chains,
≤ 240 s each on the shared CPU). Cached in benchmarks/results/cavity_fluct_trace.json with config, command, commit.

``compare``: every observable of closure "fluct" next to ``cavity`` (closure "shape"), ``gaussian`` and the
cached converged sampled points (cavity_validation_samples.json, validation_samples.json,
cavity_validation_extra.json, phase_diagram/*.json). Results: benchmarks/results/cavity_fluct_table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
TRACE = RESULTS / "cavity_fluct_trace.json"


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent).stdout.strip()


def cmd_sample_trace(args) -> None:
    from gdeq.equilibrium.sampling import SamplerSettings, sample_temperatures
    from gdeq.gd_dynamics import load_task

    torch.set_num_threads(args.threads)
    P, n1, act = args.n_train, args.width, args.activation
    t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
    rows = json.loads(TRACE.read_text())["rows"] if TRACE.exists() else {}
    for T in args.temperatures:
        k = f"{act}_P{P}_N{n1}_T{T:g}"
        if k in rows and not args.force:
            continue
        settings = SamplerSettings(replicas=16, trajectory_length=1.0, max_trajectories=args.trajectories,
                                   max_seconds=args.seconds, seed=1)
        t0 = time.time()
        s = sample_temperatures(t.x_train, t.y_train, [T], width=n1, activation=act, settings=settings)[0]
        est = lambda e: [float(np.asarray(e.mean)), float(np.asarray(e.se))]  # noqa: E731
        tv = est(s.train_variance)
        rows[k] = dict(
            activation=act, n_train=P, width=n1, temperature=T, max_trajectories=args.trajectories,
            command=("python benchmarks/validate_cavity_fluct.py sample-trace --activation "
                     f"{act} --n-train {P} --width {n1} --temperatures {T:g} --trajectories {args.trajectories}"), converged=bool(s.converged), rhat_max=float(max(s.diagnostics.rhat.values())),
            n_measurements=s.n_measurements, wall_time_s=time.time() - t0,
            train_variance=tv, train_error=est(s.train_error), readout_second_moment=est(s.readout_second_moment),
            centroid_distance=est(s.centroid_distance),
            # exact: Cov f(X) = T − T²·Cov(t), so T·Tr Cov(t)/P = 1 − (mean train variance)/T
            sigma_trace=[1.0 - tv[0] / T, tv[1] / T])
        TRACE.write_text(json.dumps(dict(
            config=dict(task="mnist:3,5 (load_task n_test=100, seed=0)", prior_w=1.0, prior_v=1.0,
                        sampler=dict(replicas=16, trajectory_length=1.0, max_seconds=args.seconds, seed=1)),
            command="python benchmarks/validate_cavity_fluct.py sample-trace (per row: 'command')", commit=_commit(),
            rows=rows), indent=1))
        print(f"{k}: {rows[k]}", flush=True)


LEVELS = ("gaussian", "cavity", "cavity_fluct")


def _validate_cavity():
    """benchmarks/validate_cavity.py as a module (its cached sampled entries and task loader)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("validate_cavity", Path(__file__).resolve().parent / "validate_cavity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return sys.modules[spec.name]


def _corner(alpha: float, T: float) -> bool:
    """Issue 11's corner, where every level missed before B.10: α ≥ 2 at T ≤ 0.1, and α ≥ 5."""
    return alpha >= 5 or (alpha >= 2 and T <= 0.1 + 1e-12)


def cmd_compare(args) -> None:
    """Every observable of the three levels at every converged sampled reference of benchmarks/validate_cavity.py
    ``table`` (the same references, data sources identified the same way); deviation statistics where ``cavity``
    flags itself in regime and in the corner; how often each level's fixed point converged there."""
    from dataclasses import replace

    from gdeq import geometry
    from gdeq.equilibrium import temperature_curve

    torch.set_num_threads(args.threads)
    vc = _validate_cavity()
    vc.DATA_DIR = args.data_dir
    refs = []
    for r in vc._references():
        if not args.data_dir and r.dataset != "mnist":
            continue
        if r.source == "unknown":  # a phase-diagram slice: the source whose data reproduces its own record
            source = vc._identify_source(r)
            if source is None:
                continue
            r = replace(r, source=source)
        refs.append(r)
    groups: dict[tuple, list] = {}
    for r in refs:
        groups.setdefault(r.group, []).append(r)
    obs = tuple(o for o in vc.OBSERVABLES if o not in vc.CLASS_OBSERVABLES)  # scalars
    head = ["pair", "P", "N1", "α", "T"] + [f"{o}: sampled / " + " / ".join(LEVELS) for o in obs] + ["in regime / converged"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    dev: dict[tuple[str, str, str], list[float]] = {}
    conv_count: dict[tuple[str, str], list[bool]] = {}
    for g in sorted(groups, key=lambda g: (g[2] / g[4], g)):
        dataset, pair, P, Pt, n1, source = g
        t = vc._task_cached(dataset, pair, P, Pt, source)
        es, _ = vc.select_references(groups[g], geometry.data_fingerprint(t.x_train, t.y_train))  # converged only
        if not es:
            continue
        temps = np.array(sorted({e.temperature for e in es}, reverse=True))
        th = {lev: temperature_curve(t.x_train, t.y_train, temps, width=n1, x_test=t.x_test, y_test=t.y_test, level=lev)
              for lev in LEVELS}
        base = float(th["gaussian"].reference["centroid_distance"])
        for e in es:
            i = int(np.argmin(np.abs(temps - e.temperature)))
            T, alpha = float(e.temperature), P / n1
            region = "corner" if _corner(alpha, T) else ("regime" if th["cavity"].in_regime[i] else "other")
            cells = [("CIFAR " if dataset == "cifar10" else "") + f"{pair[0]} v {pair[1]}"
                     + (" (full MNIST)" if dataset == "mnist" and source == "data_dir" else ""), str(P), str(n1),
                     f"{alpha:g}", f"{T:.3g}"]
            for o in obs:
                sv = vc._sampled(e, o, base)
                if sv is None:
                    cells.append("–")
                    continue
                mean, se = sv
                vals = [float(getattr(th[lev], o)[i]) for lev in LEVELS]
                if abs(mean) > 0:
                    for lev, v in zip(LEVELS, vals):
                        dev.setdefault((lev, o, region), []).append(abs(v - mean) / abs(mean))
                        if region == "corner" and "converge" not in th[lev].regime_reason[i]:
                            dev.setdefault((lev, o, "corner, own fixed point converged"), []).append(
                                abs(v - mean) / abs(mean))
                cells.append(f"{mean:.4g} ± {se:.1g} / " + " / ".join(f"{v:.4g}" for v in vals))
            for lev in ("cavity", "cavity_fluct"):
                conv_count.setdefault((lev, region), []).append("converge" not in th[lev].regime_reason[i])
            cells.append(" / ".join(("y" if th[lev].in_regime[i] else "n") for lev in LEVELS) + " ; "
                         + " / ".join(("n.c." if "converge" in th[lev].regime_reason[i] else "c")
                                      for lev in ("cavity", "cavity_fluct")))
            rows.append("| " + " | ".join(cells) + " |")
        print("\n".join(rows[-len(es):]), flush=True)
    notes = ["", "|rel. dev.| = |theory − sampled|/|sampled|, converged sampled points only; max / median. "
             "regime: points where `cavity` flags itself in regime; corner: α ≥ 2 at T ≤ 0.1, and α ≥ 5.", "",
             "corner, own fixed point converged: only the corner points where that level's fixed point converged "
             "(n per level in brackets; a non-converged fixed point is flagged and is not a result).", "",
             "| observable | region | n | " + " | ".join(LEVELS) + " |", "|---|---|---|" + "---|" * len(LEVELS)]
    for o in obs:
        for region in ("regime", "corner", "corner, own fixed point converged"):
            d = [dev.get((lev, o, region), []) for lev in LEVELS]
            n_all = len(dev.get((LEVELS[0], o, "corner" if region.startswith("corner") else region), []))
            if not n_all:
                continue
            own = region.endswith("converged")
            notes.append(f"| {o} | {region} | {n_all} | " + " | ".join(
                (f"{100 * max(x):.0f} % / {100 * np.median(x):.1f} %" + (f" ({len(x)})" if own else "")) if x else "–"
                for x in d) + " |")
    notes.append("")
    for (lev, region), c in sorted(conv_count.items()):
        notes.append(f"fixed point converged ({lev}, {region}): {sum(c)}/{len(c)}")
    notes.append("in regime: y/n per level (gaussian / cavity / cavity_fluct); converged: c / n.c. (cavity / cavity_fluct)")
    notes.append("sampled references: the converged ones only (R̂/ESS passed), as counted by validate_cavity.py table")
    notes.append(f"command: python benchmarks/validate_cavity_fluct.py compare{' --data-dir DATA' if args.data_dir else ''}"
                 f" (DATA: the directory with the MNIST/CIFAR-10 npz files); commit {_commit()}")
    text = "\n".join(rows + notes) + "\n"
    print("\n".join(notes))
    (RESULTS / "cavity_fluct_table.md").write_text(text)


def cmd_trace(args) -> None:
    """The sampled T·Tr Cov(t)/P (cavity_fluct_trace.json) next to each closure's T·TrΣ/P, λ1⟨v²⟩ and train error
    (n.c.: that closure's fixed point did not converge; its value is not a result). Written to
    benchmarks/results/cavity_fluct_trace.md."""
    from gdeq.equilibrium import nngp_kernels, temperature_curve
    from gdeq.equilibrium.cavity import cavity_curve, gaussian_sigma_trace
    from gdeq.gd_dynamics import load_task

    torch.set_num_threads(args.threads)
    rows = json.loads(TRACE.read_text())["rows"]
    lines = ["| σ | P | N1 | T | observable | sampled | gaussian (Q*) | cavity (shape) | fluct | shape, rank = P | "
             "trace (B.9) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows.values():
        groups.setdefault((r["activation"], r["n_train"], r["width"]), []).append(r)
    print("\n".join(lines))
    for (act, P, n1), rs in sorted(groups.items()):
        t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
        temps = np.array(sorted({r["temperature"] for r in rs}, reverse=True))
        g = temperature_curve(t.x_train, t.y_train, temps, width=n1, activation=act)
        kap = torch.linalg.eigvalsh(nngp_kernels(t.x_train, activation=act).train)
        trg = gaussian_sigma_trace(temps, g.Q, kap, prior_v=1.0, width=n1)
        cl = {c: cavity_curve(t.x_train, t.y_train, temps, g.Q, width=n1, activation=act, closure=c)
              for c in ("shape", "fluct")}
        # the shape closure with K_post's shape measured in every eigen-direction of K (default: the top 32)
        cl["full"] = cavity_curve(t.x_train, t.y_train, temps, g.Q, width=n1, activation=act, rank=P)
        cl["trace"] = cavity_curve(t.x_train, t.y_train, temps, g.Q, width=n1, activation=act, closure="trace")
        for r in sorted(rs, key=lambda r: -r["temperature"]):
            i = int(np.argmin(np.abs(temps - r["temperature"])))
            flag = ("" if r["converged"] else f" ‡ (R̂ {r['rhat_max']:.3f})") + f" (rank bound {max(0.0, 1 - (n1 - 1) / P):.2f})"
            nc = {c: ("" if cl[c].converged[i] else " n.c.") for c in cl}
            for name, sv, gv, key in (("T·TrΣ/P", r["sigma_trace"], trg[i], "sigma_trace"),
                                      ("λ1⟨v²⟩", r["readout_second_moment"], g.readout_second_moment[i],
                                       "readout_second_moment"),
                                      ("train error", r["train_error"], g.train_error[i], "train_error")):
                lines.append(f"| {act} | {P} | {n1} | {r['temperature']:g}{flag} | {name} | {sv[0]:.4g} ± {sv[1]:.1g} | "
                             f"{gv:.4g} | " + " | ".join(f"{getattr(cl[c], key)[i]:.4g}{nc[c]}" for c in cl) + " |")
                print(lines[-1], flush=True)
    lines += ["", "sampled T·TrΣ/P = 1 − (mean train posterior variance)/T (exact: Cov f(X) = T − T²·Cov(t)); ‡: sampler "
              "diagnostics failed; n.c.: fixed point not converged (flagged, not a result)",
              f"command: python benchmarks/validate_cavity_fluct.py trace; commit {_commit()}"]
    (RESULTS / "cavity_fluct_trace.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample-trace")
    s.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.03])
    s.add_argument("--activation", default="erf")
    s.add_argument("--n-train", type=int, default=100)
    s.add_argument("--width", type=int, default=50)
    s.add_argument("--trajectories", type=int, default=1600)
    s.add_argument("--seconds", type=float, default=240.0)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_sample_trace)
    c = sub.add_parser("compare")
    c.add_argument("--data-dir", default=None, help="directory with the CIFAR-10 files (else the CIFAR rows are skipped)")
    c.set_defaults(fn=cmd_compare)
    sub.add_parser("trace").set_defaults(fn=cmd_trace)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
