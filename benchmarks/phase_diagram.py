"""Is the class-manifold distance a non-monotonic function of T in the exact posterior? (docs/findings.md)

For each task and α = P/N1 three things are computed and cached in one JSON file per (task, α) under
``benchmarks/results/phase_diagram/`` (resumable: a file's parts that exist are skipped; every part
carries the command and the git commit that made it, written as soon as it is done):

1. ``sampled``: the exact posterior at every temperature of one ladder
   (``equilibrium.temperature_curve(level="sampled")``, adaptive length with split-R̂/ESS diagnostics;
   temperatures whose diagnostics fail are ``converged=False`` and are not results).
2. ``theory``: every theory level of ``equilibrium.temperature_curve`` on the same data and width
   (``--levels``, default nngp, gaussian, single_neuron, cavity).
3. ``gd``: the GD end point: the same network (erf, no biases, prior init λ0 = λ1 = 1, squared loss
   summed over samples; the model identity ``bridge.identity`` accepts for these curves) trained with
   full-batch GD by ``gd_dynamics.train`` (several replicas) until the training loss has stopped
   moving; its measures at the last step and the temperature each corresponds to on the converged part
   of the sampled curve (``bridge.maps.map_observable``: monotone inversion, no extrapolation).

``--report`` prints the markdown tables of docs/findings.md and, per (task, α), where the centroid
distances peak in T over the converged temperatures and how far the peak lies above the value at
the coldest converged temperature, in combined standard errors; ``--plot`` draws one panel per
(task, α).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/phase_diagram.py --tasks mnist:4,9 --alphas 20 2
    python benchmarks/phase_diagram.py --report --plot docs/phase_diagram.png

Tasks: ``mnist:3,5``, ``mnist:4,9``, ``cifar10:3,5`` (CIFAR-10 cat vs dog, grey; needs ``--data-dir``
or ``$GDEQ_DATA_DIR`` with the CIFAR-10 npz files). Inputs: centred, |x|² = N0 (load_task's default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "phase_diagram"
#: sampled scalar measures (per temperature, mean and s.e.)
MEASURES = ("centroid_distance", "unit_centroid_distance", "readout_second_moment", "train_error", "test_error")
#: sampled per-class measures (per temperature and class)
CLASS_MEASURES = ("class_radius", "unit_class_radius")
LEVELS = ("nngp", "gaussian", "single_neuron", "cavity")
THEORY_MEASURES = (*MEASURES, "class_radius")
#: GD end-point measures (per replica at the last logged step; class radii per class)
GD_MEASURES = ("centroid_distance", "unit_centroid_distance", "readout_second_moment", "train_error", "test_error",
               "train_loss")
#: run observable -> sampled-curve field it is matched to for the GD end point's temperature
GD_MAPS = dict(mean_predictor_train_error="train_error", centroid_distance="centroid_distance",
               unit_centroid_distance="unit_centroid_distance", readout_second_moment="readout_second_moment")


#: --source choices: where load_task takes the images from (they pick DIFFERENT examples for the same seed)
SOURCES = ("embedded", "data-dir")


def _task(spec: str, n_train: int, n_test: int, data_dir, source: str | None = None):
    """load_task for a phase-diagram spec. ``source``: ``"embedded"`` (the package's MNIST subset; the data
    dir and $GDEQ_DATA_DIR are ignored), ``"data-dir"`` (``data_dir`` or $GDEQ_DATA_DIR, required) or None
    (load_task's own choice: the data dir when one is given or set, else the embedded subset)."""
    from gdeq.gd_dynamics import Preprocessing, load_task

    if source not in (None, *SOURCES):
        raise ValueError(f"source: must be one of {SOURCES} or None, got {source!r}")
    name, classes = spec.split(":")
    classes = tuple(int(c) for c in classes.split(","))
    pre = Preprocessing(grayscale=True) if name == "cifar10" else None
    if source == "data-dir" and not (data_dir or os.environ.get("GDEQ_DATA_DIR")):
        raise ValueError("source: 'data-dir' needs --data-dir or $GDEQ_DATA_DIR")
    if source == "embedded":
        if name != "mnist":
            raise ValueError(f"source: 'embedded' exists for MNIST only, not {name!r}")
        saved = {k: os.environ.pop(k, None) for k in ("GDEQ_DATA_DIR",)}
        offline = os.environ.get("GDEQ_OFFLINE")
        os.environ["GDEQ_OFFLINE"] = "1"  # no torchvision download attempt: the embedded subset or nothing
        try:
            task = load_task(name, classes, n_train=n_train, n_test=n_test, seed=0, data_dir=None, preprocessing=pre)
        finally:
            os.environ.update({k: v for k, v in saved.items() if v is not None})
            if offline is None:
                os.environ.pop("GDEQ_OFFLINE", None)
            else:
                os.environ["GDEQ_OFFLINE"] = offline
        if task.source != "embedded MNIST subset":
            raise RuntimeError(f"source 'embedded' asked for, load_task used {task.source!r}")
        return task
    return load_task(name, classes, n_train=n_train, n_test=n_test, seed=0, data_dir=data_dir, preprocessing=pre)


#: the slices' fingerprints are geometry.data_fingerprint rounded to 9 decimals (the last bits of a
#: preprocessing sum never change them); every cached config.data was recorded so
FINGERPRINT_DECIMALS = 9


def data_record(task) -> dict:
    """What a slice's numbers were computed on: load_task's source (file names only, no directories) and
    fingerprints of the data actually used (train inputs + labels; test inputs + labels):
    ``geometry.data_fingerprint(x, y, decimals=FINGERPRINT_DECIMALS)``."""
    from gdeq import geometry

    source = " | ".join(Path(s.strip()).name if "/" in s else s.strip() for s in str(task.source).split("|"))
    fp = lambda x, y: geometry.data_fingerprint(x, y, decimals=FINGERPRINT_DECIMALS)  # noqa: E731
    return dict(source=source, fingerprint=fp(task.x_train, task.y_train), test_fingerprint=fp(task.x_test, task.y_test))


def check_same_data(row: dict, task, what: str) -> None:
    """Refuse to add a part computed on other data than the slice's sampled part (e.g. resumed with another
    $GDEQ_DATA_DIR): the data sources select different examples."""
    want = row["config"].get("data")
    if want is None:
        raise RuntimeError(f"{what}: the cached slice records no data fingerprint; run --backfill-data first")
    got = data_record(task)
    if (got["fingerprint"], got["test_fingerprint"]) != (want["fingerprint"], want["test_fingerprint"]):
        raise RuntimeError(f"{what}: the data loaded now ({got['source']}, {got['fingerprint']}) is not the data of "
                           f"the cached slice ({want['source']}, {want['fingerprint']}); pass the matching --source "
                           "/ $GDEQ_DATA_DIR")


def _key(spec: str, n_train: int, alpha: float) -> str:
    return f"{spec.replace(':', '_').replace(',', 'v')}_P{n_train}_alpha{alpha:g}"


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()


def _command() -> str:
    return " ".join(["python", "benchmarks/phase_diagram.py", *sys.argv[1:]])


def _write(path: Path, row: dict) -> None:
    """Atomic write (a crash never leaves half a file)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=1, default=float))
    os.replace(tmp, path)


def _settings(args):
    from gdeq.equilibrium import SamplerSettings

    return SamplerSettings(replicas=args.replicas, tempering=args.tempering, max_trajectories=args.max_trajectories,
                           max_seconds=args.max_seconds, seed=args.seed)


# ------------------------------------------------------------------------------------------------
# the three parts of a (task, α) file
# ------------------------------------------------------------------------------------------------
def sample_slice(task, spec: str, alpha: float, args) -> dict:
    """The sampled curve with its diagnostics (part 1)."""
    from gdeq.equilibrium import SamplingConvergenceWarning, temperature_curve

    temps = np.geomspace(args.t_max, args.t_min, args.n_temperatures)
    width = max(1, int(round(args.n_train / alpha)))
    st = _settings(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingConvergenceWarning)
        curve = temperature_curve(task.x_train, task.y_train, temps, width=width, x_test=task.x_test,
                                  y_test=task.y_test, level="sampled", sampler=st)
    seconds = time.perf_counter() - t0
    return dict(
        config=dict(task=spec, n_train=args.n_train, n_test=args.n_test, alpha=alpha, width=width,
                    temperatures=temps.tolist(), activation="erf", prior_w=1.0, prior_v=1.0, data_seed=0,
                    data=data_record(task),
                    sampler={k: (v if isinstance(v, (int, float, bool, str, type(None))) else str(v))
                             for k, v in asdict(st).items()}),
        command=_command(), commit=_commit(), seconds=seconds, warnings=[str(w.message) for w in caught],
        sampled={m: dict(mean=np.asarray(getattr(curve, m)).tolist(), se=np.asarray(curve.sem(m)).tolist())
                 for m in MEASURES},
        **{m: dict(mean=np.asarray(getattr(curve, m)).tolist(), se=np.asarray(curve.sem(m)).tolist())
           for m in CLASS_MEASURES},
        converged=curve.converged.tolist(),
        diagnostics=[dict(T=d.temperature, rhat=d.rhat, ess_bulk=d.ess_bulk, ess_tail=d.ess_tail,
                          acceptance=d.acceptance, swap_acceptance=d.swap_acceptance, burn_in=d.burn_in,
                          n_draws=d.n_draws) for d in curve.diagnostics],
        theory={},
    )


def theory_level(row: dict, task, level: str) -> dict:
    """One theory level on the slice's data, width and temperatures (part 2)."""
    from gdeq.equilibrium import temperature_curve

    c = row["config"]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curve = temperature_curve(task.x_train, task.y_train, np.asarray(c["temperatures"]), width=c["width"],
                                  x_test=task.x_test, y_test=task.y_test, level=level)
    out = {m: np.asarray(getattr(curve, m)).tolist() for m in THEORY_MEASURES}
    out.update(in_regime=None if curve.in_regime is None else np.asarray(curve.in_regime).tolist(),
               regime_reason=list(curve.regime_reason), saddle_converged=np.asarray(curve.converged).tolist(),
               mean_kernel_approximations=list(getattr(curve, "mean_kernel_approximations", ()) or ()),
               warnings=sorted({str(w.message) for w in caught}),
               provenance=dict(command=_command(), commit=_commit(), seconds=time.perf_counter() - t0),
               data_fingerprint=data_record(task)["fingerprint"])
    return out


def _converged_curve(row: dict, field: str):
    """(T, mean, se) of a sampled field over the converged temperatures only."""
    ok = np.asarray(row["converged"], bool)
    T = np.asarray(row["config"]["temperatures"])[ok]
    return T, np.asarray(row["sampled"][field]["mean"])[ok], np.asarray(row["sampled"][field]["se"])[ok]


def gd_temperatures(row: dict, end: dict, final_step: float) -> dict:
    """Where each GD end-point observable lies on the CONVERGED part of the row's sampled curve
    (``bridge.maps.map_observable``: monotone inversion in log T, no extrapolation)."""
    from gdeq.bridge.maps import map_observable

    maps = {}
    for run_name, field in GD_MAPS.items():
        T, g, _ = _converged_curve(row, field)
        v = end[run_name]
        if len(T) < 2:
            maps[run_name] = dict(curve_field=field, T=None, low=None, high=None, status="no-map",
                                  notes=["fewer than two converged sampled temperatures"])
            continue
        mp = map_observable(np.array([final_step]), np.array([v["mean"]]), T, g, run_value_se=np.array([v["se"]]),
                            observable=run_name, curve_field=field, level="sampled")
        f = lambda a: None if not np.isfinite(a[0]) else float(a[0])  # noqa: E731
        maps[run_name] = dict(curve_field=field, T=f(mp.temperature), low=f(mp.temperature_low),
                              high=f(mp.temperature_high), status=str(mp.status[0]), notes=list(mp.notes),
                              converged_T_range=[float(T.min()), float(T.max())])
    return maps


def gd_end_point(row: dict, task, args) -> dict:
    """Full-batch GD of the same network to its end point, and where that lies on the sampled curve (part 3)."""
    from gdeq import equilibrium
    from gdeq.bridge.experiments import default_learning_rate
    from gdeq.bridge.identity import check_compatible
    from gdeq.bridge.maps import mean_predictor_error
    from gdeq.geometry import mean_se
    from gdeq.gd_dynamics import train

    c = row["config"]
    width = int(c["width"])
    lr = args.gd_lr_factor * default_learning_rate(task.x_train, activation="erf", prior_w=1.0, prior_v=1.0,
                                                   seed=args.gd_seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        traj = train(task, width=width, activation="erf", optimizer="gd", lr=lr, steps=args.gd_steps,
                     replicas=args.gd_replicas, prior_precisions=(1.0, 1.0), init="prior", loss="mse",
                     reduction="sum", bias=False, seed=args.gd_seed, log_points=args.gd_log_points, output_dir=tmp,
                     run_name="gd", wandb=None, progress_bar=False, clustering_indices=False,
                     reduce_inputs=task.n_train < task.input_dim, probe_size=max(task.n_train, len(task.x_test)))
    seconds = time.perf_counter() - t0
    # the bridge's identity check: same data, width, activation, priors and model as the curves
    check_compatible(traj, equilibrium.temperature_curve(task.x_train, task.y_train, [1.0], width=width,
                                                         level="nngp"))
    end = {}
    for m in GD_MEASURES:
        mean, se = mean_se(np.asarray(getattr(traj, m))[-1], axis=0)
        end[m] = dict(mean=float(mean), se=float(se))
    for m in CLASS_MEASURES:
        mean, se = mean_se(np.asarray(getattr(traj, m))[-1], axis=0)
        end[m] = dict(mean=np.asarray(mean).tolist(), se=np.asarray(se).tolist())
    for split in ("train", "test"):
        v, se = mean_predictor_error(np.asarray(getattr(traj, f"{split}_predictions"))[-1:],
                                     np.asarray(getattr(traj, f"y_{split}")))
        end[f"mean_predictor_{split}_error"] = dict(mean=float(v[0]), se=float(se[0]))
    # stopped moving? relative change of the replica-mean loss and centroid distance over the last
    # tenth of the steps (logged steps are log-spaced: compare the last step with the last one ≤ 0.9·steps)
    steps = np.asarray(traj.step, dtype=np.float64)
    if steps[-1] < args.gd_steps:  # e.g. the trainer stopped on a signal: not an end point
        raise RuntimeError(f"GD stopped at step {steps[-1]:.0f} of {args.gd_steps}; nothing cached")
    k = int(np.flatnonzero(steps <= 0.9 * steps[-1])[-1])  # the last logged step at or before 0.9·steps
    loss = np.asarray(traj.train_loss).mean(1)
    cd = np.asarray(traj.centroid_distance).mean(1)
    # (the loss itself decays to 0 when the nets interpolate: its change is reported absolutely)
    drift = dict(from_step=float(steps[k]), to_step=float(steps[-1]), train_loss_from=float(loss[k]),
                 train_loss_to=float(loss[-1]), centroid_distance=float((cd[-1] - cd[k]) / abs(cd[k])))
    maps = gd_temperatures(row, end, float(steps[-1]))
    return dict(
        config=dict(optimizer="gd", lr=lr, lr_factor=args.gd_lr_factor, steps=args.gd_steps,
                    replicas=args.gd_replicas, seed=args.gd_seed, width=width, activation="erf", init="prior",
                    prior_precisions=[1.0, 1.0], loss="mse", reduction="sum", bias=False,
                    reduce_inputs=bool(task.n_train < task.input_dim), model_identity=dict(traj.model_identity)),
        command=_command(), commit=_commit(), seconds=seconds, end=end, drift=drift, T_eff=maps,
        final_step=float(steps[-1]), data_fingerprint=data_record(task)["fingerprint"],
    )


def run(args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for spec in args.tasks:
        task = None
        load = lambda: _task(spec, args.n_train, args.n_test, args.data_dir, args.source)  # noqa: E731
        for alpha in args.alphas:
            path = RESULTS / f"{_key(spec, args.n_train, alpha)}.json"
            row = json.loads(path.read_text()) if path.exists() else None
            if row is None or (args.force and not args.skip_sampling):
                if args.skip_sampling:
                    print(f"{path.name}: not sampled yet, skipped")
                    continue
                task = task or load()
                row = sample_slice(task, spec, alpha, args)
                if path.exists():  # re-sampled: the theory levels do not depend on the sampler, keep them
                    old = json.loads(path.read_text())  # (only if they were computed on the same data)
                    if old["config"].get("data", {}).get("fingerprint") == row["config"]["data"]["fingerprint"]:
                        row["theory"] = old.get("theory", {})
                        if "gd" in old and old["gd"].get("data_fingerprint", row["config"]["data"]["fingerprint"]) \
                                == row["config"]["data"]["fingerprint"]:
                            # GD does not depend on the sampler either: keep its end point, re-map it on
                            # the new curve (old GD parts predate their fingerprint: the file's data was
                            # checked above, and within a file all parts were made on one source)
                            g = old["gd"]
                            g["T_eff"] = gd_temperatures(row, g["end"], g["final_step"])
                            g["T_eff_provenance"] = dict(command=_command(), commit=_commit(),
                                                         note="re-mapped on the re-sampled curve")
                            row["gd"] = g
                _write(path, row)
                print(f"{path.name}: sampled in {row['seconds']:.0f} s, converged {sum(row['converged'])}/"
                      f"{len(row['converged'])}", flush=True)
            else:
                print(f"{path.name}: sampled part cached")
            for level in args.levels:
                # old files have nngp/gaussian without class radii or provenance: recompute those
                if "provenance" in row["theory"].get(level, {}):
                    continue
                task = task or load()
                check_same_data(row, task, f"{path.name}: level {level}")
                part = theory_level(row, task, level)
                row = json.loads(path.read_text())  # another process may have written meanwhile: merge
                row["theory"][level] = part
                _write(path, row)
                print(f"{path.name}: level {level} in {row['theory'][level]['provenance']['seconds']:.0f} s", flush=True)
            redo = args.redo_gd and row.get("gd", {}).get("config", {}).get("steps") != args.gd_steps
            if args.gd and ("gd" not in row or redo):
                task = task or load()
                check_same_data(row, task, f"{path.name}: GD end point")
                part = gd_end_point(row, task, args)
                fresh = json.loads(path.read_text())
                if fresh["commit"] != row["commit"] or fresh["seconds"] != row["seconds"]:
                    print(f"{path.name}: re-sampled meanwhile; GD end point left for the next pass", flush=True)
                    continue
                row = fresh
                row["gd"] = part
                _write(path, row)
                g = row["gd"]
                print(f"{path.name}: GD end point in {g['seconds']:.0f} s: centroid "
                      f"{g['end']['centroid_distance']['mean']:.4g}, T_eff(train error) "
                      f"{g['T_eff']['mean_predictor_train_error']['status']}", flush=True)


def backfill_data(args) -> None:
    """Record the data of slices cached before the fingerprint existed, WITHOUT re-sampling: load the task
    from ``--source`` and accept it only if it reproduces the slice's cached ``nngp`` level (cᵀKc and the
    test error at every temperature depend on nothing but the train and test data) to 1e-9 relative;
    otherwise refuse (that source is not the one the slice was made with)."""
    from gdeq.equilibrium import temperature_curve

    for spec in args.tasks:
        task = None
        for alpha in args.alphas:
            path = RESULTS / f"{_key(spec, args.n_train, alpha)}.json"
            if not path.exists():
                continue
            row = json.loads(path.read_text())
            if "data" in row["config"] and not args.force:
                print(f"{path.name}: data already recorded ({row['config']['data']['source']}, "
                      f"{row['config']['data']['fingerprint']})")
                continue
            task = task or _task(spec, args.n_train, args.n_test, args.data_dir, args.source)
            c, cached = row["config"], row["theory"]["nngp"]
            curve = temperature_curve(task.x_train, task.y_train, np.asarray(c["temperatures"]), width=c["width"],
                                      x_test=task.x_test, y_test=task.y_test, level="nngp")
            worst = 0.0
            for m in ("centroid_distance", "test_error"):
                a, b = np.asarray(getattr(curve, m), dtype=np.float64), np.asarray(cached[m], dtype=np.float64)
                worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b))))
            if not worst < 1e-9:
                raise RuntimeError(f"{path.name}: source {args.source!r} does not reproduce the cached nngp level "
                                   f"(relative deviation {worst:.2g}); this slice was made from other data")
            c["data"] = data_record(task)
            row["data_backfill"] = dict(command=_command(), commit=_commit(), check=(
                f"nngp centroid_distance and test_error recomputed from this source equal the cached ones "
                f"(max relative deviation {worst:.1g})"))
            _write(path, row)
            print(f"{path.name}: data {c['data']['source']}, {c['data']['fingerprint']} (nngp reproduced to {worst:.1g})")


def data_mixing(rows: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """Per task, the distinct (source, train fingerprint) pairs of its slices, where there is more than one
    (a slice without a data record counts as ('unrecorded', '?'))."""
    seen: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        d = r["config"].get("data") or dict(source="unrecorded", fingerprint="?")
        pair = (d["source"], d["fingerprint"])
        if pair not in seen.setdefault(r["config"]["task"], []):
            seen[r["config"]["task"]].append(pair)
    return {t: pairs for t, pairs in seen.items() if len(pairs) > 1 or pairs[0][1] == "?"}


# ------------------------------------------------------------------------------------------------
# analysis and report
# ------------------------------------------------------------------------------------------------
def peak_summary(row: dict, measure: str) -> dict:
    """Where the sampled measure peaks in T over the CONVERGED temperatures, and the peak's height above the
    value at the coldest converged temperature in combined standard errors (z = (max − low)/√(se_max² + se_low²)).

    ``reversals``: steps between neighbouring converged temperatures (hot to cold) where the measure
    falls by more than 2 combined s.e. as T decreases — evidence of non-monotonicity anywhere on the curve.
    """
    T, m, se = _converged_curve(row, measure)
    if len(T) == 0:
        return dict(n=0, T_peak=None, peak=None, low_T=None, low=None, z=None, interior=False, reversals=[],
                    last_step_z=None, last_step_T=None)
    order = np.argsort(-T)  # hot to cold
    T, m, se = T[order], m[order], se[order]
    top, low = int(np.argmax(m)), len(T) - 1
    z = float((m[top] - m[low]) / np.hypot(se[top], se[low])) if top != low else 0.0
    rev = [dict(T_hot=float(T[i]), T_cold=float(T[i + 1]), drop_se=float((m[i] - m[i + 1]) / np.hypot(se[i], se[i + 1])))
           for i in range(len(T) - 1) if m[i] - m[i + 1] > 2 * np.hypot(se[i], se[i + 1])]
    # the last converged step towards T → 0: how the measure still moves at the cold end (in s.e.)
    last = None if low == 0 else float((m[low] - m[low - 1]) / np.hypot(se[low], se[low - 1]))
    return dict(n=len(T), T_peak=float(T[top]), peak=float(m[top]), peak_se=float(se[top]), low_T=float(T[low]),
                low=float(m[low]), low_se=float(se[low]), z=z, interior=bool(0 < top < low), reversals=rev,
                last_step_z=last, last_step_T=None if low == 0 else float(T[low - 1]))


def theory_values(part: dict, measure: str) -> np.ndarray:
    """A theory level's cached curve, NaN where its self-consistent fields did not converge: the last iterate of a
    failed solve is not a result (docs/theory.md B.6). Caches written before the levels returned NaN there carry
    the iterate; their ``regime_reason`` says so."""
    v = np.array(part[measure], dtype=np.float64)
    failed = np.array(["did not converge" in str(w) for w in part.get("regime_reason") or [""] * len(v)])
    if failed.shape[:1] == v.shape[:1]:
        v[failed] = np.nan
    return v


def theory_peak(row: dict, level: str, measure: str = "centroid_distance") -> dict:
    """Where a theory level's curve peaks in T over the temperatures where it has a result (its fixed point
    converged), and the peak's height above its coldest such value (relative); ``T_range`` those temperatures."""
    T = np.asarray(row["config"]["temperatures"])
    v = theory_values(row["theory"][level], measure)
    flags = row["theory"][level].get("in_regime")
    inside = np.ones(len(T), bool) if flags is None else np.asarray(flags, bool)
    order = np.argsort(-T)
    T, v, inside = T[order], v[order], inside[order]
    ok = np.isfinite(v)
    if ok.sum() < 2:
        return dict(T_peak=None, rel=None)
    T, v, inside = T[ok], v[ok], inside[ok]
    top = int(np.argmax(v))
    rel = float(v[top] / v[-1] - 1.0) if v[-1] > 0 else float("nan")
    return dict(T_peak=float(T[top]), rel=rel, interior=bool(0 < top < len(T) - 1), in_regime=bool(inside[top]),
                T_range=(float(T.min()), float(T.max())), partial=bool(not ok.all()))


def _fmt(m, se=None, digits=4):
    if m is None or not np.isfinite(m):
        return "—"
    if se is None or not np.isfinite(se):
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {se:.2g}"


def _rows():
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def _title(c: dict, short: bool = False) -> str:
    names = {"mnist:3,5": "MNIST 3 vs 5", "mnist:4,9": "MNIST 4 vs 9", "cifar10:3,5": "CIFAR-10 grey cat vs dog"}
    if short:
        names = {"mnist:3,5": "MNIST 3v5", "mnist:4,9": "MNIST 4v9", "cifar10:3,5": "CIFAR cat v dog"}
    d = c.get("data")
    src = "" if d is None else (", embedded MNIST" if d["source"].startswith("embedded") else ", data dir")
    if short:
        return f"{names.get(c['task'], c['task'])}, α = {c['alpha']:g} (N1 = {c['width']}){src.replace(' MNIST', '')}"
    return f"{names.get(c['task'], c['task'])}, P = {c['n_train']}, α = {c['alpha']:g} (N1 = {c['width']}){src}"


def _out_of_regime(part: dict, i: int) -> str:
    """'†' where the level is outside the regime where it was validated (TemperatureCurve.in_regime)."""
    flags = part.get("in_regime")
    return "" if flags is None or flags[i] else " †"


def slice_table(r: dict) -> list[str]:
    """The markdown table of one (task, α): sampled measures per temperature, theory levels' centroid distance."""
    c = r["config"]
    levels = [lv for lv in LEVELS if lv in r["theory"]]
    s = r["sampled"]
    out = [f"#### {_title(c)}", "",
           "| T | converged (max R̂ / min ESS) | centroid distance cᵀ⟨K_W⟩c | unit-sphere centroid distance | class radii "
           "(raw) | unit-sphere class radii | λ1⟨v²⟩ | train error | test error |"
           + "".join(f" `{lv}` |" for lv in levels),
           "|" + "---|" * (9 + len(levels))]
    for i, T in enumerate(c["temperatures"]):
        d = r["diagnostics"][i]
        ess = min(min(d["ess_bulk"].values()), min(d["ess_tail"].values()))
        conv = ("yes" if r["converged"][i] else "**no**") + f" ({max(d['rhat'].values()):.3f} / {ess:.0f})"
        radii = lambda key: ("—" if key not in r else ", ".join(  # noqa: E731
            _fmt(m, e, 3) for m, e in zip(r[key]["mean"][i], r[key]["se"][i])))
        cells = [f"{T:.3g}", conv,
                 _fmt(s["centroid_distance"]["mean"][i], s["centroid_distance"]["se"][i]),
                 _fmt(s["unit_centroid_distance"]["mean"][i], s["unit_centroid_distance"]["se"][i]),
                 radii("class_radius"), radii("unit_class_radius"),
                 _fmt(s["readout_second_moment"]["mean"][i], s["readout_second_moment"]["se"][i], 3),
                 _fmt(s["train_error"]["mean"][i], None, 2), _fmt(s["test_error"]["mean"][i], None, 3)]
        cells += [_fmt(theory_values(r["theory"][lv], "centroid_distance")[i]) + _out_of_regime(r["theory"][lv], i) for lv in levels]
        out.append("| " + " | ".join(cells) + " |")
    g = r.get("gd")
    if g is not None:
        e = g["end"]
        te = g["T_eff"]
        where = "; ".join(
            f"{name.replace('mean_predictor_', '')}: " + (f"T ≈ {m['T']:.3g}" if m["status"] == "ok" else m["status"])
            for name, m in te.items())
        radii = lambda key: ", ".join(_fmt(m, s_, 3) for m, s_ in zip(e[key]["mean"], e[key]["se"]))  # noqa: E731
        out.append(f"| GD end ({g['config']['replicas']} nets, {g['final_step']:.0f} steps) | T on the sampled curve — {where} | "
                   f"{_fmt(e['centroid_distance']['mean'], e['centroid_distance']['se'])} | "
                   f"{_fmt(e['unit_centroid_distance']['mean'], e['unit_centroid_distance']['se'])} | "
                   f"{radii('class_radius')} | {radii('unit_class_radius')} | "
                   f"{_fmt(e['readout_second_moment']['mean'], e['readout_second_moment']['se'], 3)} | "
                   f"{_fmt(e['train_error']['mean'], None, 2)} (mean predictor {_fmt(e['mean_predictor_train_error']['mean'], None, 2)}) | "
                   f"{_fmt(e['test_error']['mean'], None, 3)} (mean predictor {_fmt(e['mean_predictor_test_error']['mean'], None, 3)}) |"
                   + "".join(" |" for _ in levels))
    out.append("")
    out.append("(theory columns: cᵀ⟨K_W⟩c of each level; † = outside the level's validated regime.)")
    out.append(f"(sampled: {c['sampler']['replicas']} chains per temperature, budget "
               f"{c['sampler']['max_trajectories']} trajectories / {c['sampler']['max_seconds']} s, "
               f"{r['seconds']:.0f} s wall; `{r['command']}` at {r['commit'][:7]})")
    d = c.get("data")
    s_ = c["sampler"]
    out.append(f"(data: {'unrecorded' if d is None else d['source'] + ', train fingerprint ' + d['fingerprint']}"
               + ("" if "data_backfill" not in r else " (recorded afterwards, checked against the cached nngp level)")
               + f"; sampler: {s_.get('integrator', 'leapfrog')} integrator, trajectory length "
               f"{float(s_['trajectory_length']):.3g}, forces {s_.get('force_dtype') or s_['dtype']})")
    return out


def _data_cell(r: dict, mixed: dict) -> str:
    d = r["config"].get("data")
    if d is None:
        return "unrecorded ⚠"
    src = "embedded" if d["source"].startswith("embedded") else "data dir"
    return f"{src} `{d['fingerprint'][:8]}`" + (" ⚠" if r["config"]["task"] in mixed else "")


def summary_table(rows: list[dict], mixed: dict | None = None) -> list[str]:
    mixed = mixed or {}
    out = ["| task | α (N1) | data | converged T | measure | T of max (converged) | max | value at coldest converged T "
           "| (max − cold)/s.e. | interior max | last converged step towards T → 0, in s.e. | drops > 2 s.e. as T falls (in s.e.) | `gaussian`: interior max at T, above its coldest value "
           "| `single_neuron` | `cavity` |",
           "|" + "---|" * 15]
    for r in rows:
        c = r["config"]
        data = _data_cell(r, mixed)
        for measure in ("centroid_distance", "unit_centroid_distance", "readout_second_moment"):
            p = peak_summary(r, measure)
            th = []
            for lv in ("gaussian", "single_neuron", "cavity"):
                if lv in r["theory"] and measure in r["theory"][lv]:
                    q = theory_peak(r, lv, measure)
                    th.append("—" if q["T_peak"] is None else
                              f"{q['T_peak']:.3g}, {100 * q['rel']:+.2f} %{'' if q['in_regime'] else ' †'}" if q["interior"] else "none")
                    if q["T_peak"] is not None and q["partial"]:  # converged only down to T_range[0]
                        th[-1] += f" (T ≥ {q['T_range'][0]:.3g})"
                else:
                    th.append("—")
            if p["n"] == 0:
                out.append(f"| {c['task']} | {c['alpha']:g} ({c['width']}) | {data} | 0/{len(r['converged'])} | {measure} "
                           "| — | — | — | — | — | — | — | " + " | ".join(th) + " |")
                continue
            step = "—" if p["last_step_z"] is None else f"{p['last_step_T']:.3g}→{p['low_T']:.3g}: {p['last_step_z']:+.1f}"
            rev = ", ".join(f"{x['T_hot']:.3g}→{x['T_cold']:.3g} ({x['drop_se']:.1f})" for x in p["reversals"]) or "none"
            out.append(f"| {c['task']} | {c['alpha']:g} ({c['width']}) | {data} | {p['n']}/{len(r['converged'])} | {measure} "
                       f"| {p['T_peak']:.3g} | {_fmt(p['peak'], p['peak_se'])} | {_fmt(p['low'], p['low_se'])} "
                       f"(T = {p['low_T']:.3g}) | {p['z']:.1f} | {'yes' if p['interior'] else 'no'} | {step} | {rev} | "
                       + " | ".join(th) + " |")
    return out


def answer_table(rows: list[dict]) -> list[str]:
    """One line per slice with ≥ 2 converged temperatures: the raw distance from the hottest to the coldest
    converged temperature (and their ratio), the last converged step towards T → 0 in s.e., the largest
    converged value above the coldest one in s.e., and λ1⟨v²⟩'s interior maximum if it has one."""
    out = ["| slice | converged | raw distance: hottest → coldest converged T (ratio) | last step towards T → 0 "
           "(s.e.) | max − coldest (s.e.) | unit sphere: last step, max − coldest (s.e.) "
           "| λ1⟨v²⟩: interior max at T (s.e. above coldest) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p, u, v = (peak_summary(r, m) for m in ("centroid_distance", "unit_centroid_distance", "readout_second_moment"))
        if p["n"] < 2:
            continue
        T, m, se = _converged_curve(r, "centroid_distance")
        hot = int(np.argmax(T))
        lam = f"{v['T_peak']:.3g} ({v['z']:.0f})" if v["interior"] else "none"
        out.append(f"| {_title(r['config'], short=True)} | {p['n']}/{len(r['converged'])} | "
                   f"{_fmt(m[hot], se[hot])} (T = {T[hot]:.3g}) → {_fmt(p['low'], p['low_se'])} (T = {p['low_T']:.3g}) "
                   f"(×{p['low'] / m[hot]:.2f}) | {p['last_step_z']:+.1f} | {p['z']:.1f} | "
                   f"{u['last_step_z']:+.1f}, {u['z']:.1f} | {lam} |")
    return out


def gd_table(rows: list[dict]) -> list[str]:
    """The GD end point of every slice beside where it lies on the converged sampled curve."""
    out = ["| slice | GD centroid distance | T on the sampled curve (raw / unit sphere) | GD λ1⟨v²⟩ "
           "| GD test error (mean predictor) |", "|---|---|---|---|---|"]
    for r in rows:
        g = r.get("gd")
        if g is None:
            continue
        e, te = g["end"], g["T_eff"]
        where = lambda m: f"{m['T']:.3g}" if m["status"] == "ok" else m["status"]  # noqa: E731
        out.append(f"| {_title(r['config'])}, {g['final_step']:.0f} steps | "
                   f"{_fmt(e['centroid_distance']['mean'], e['centroid_distance']['se'])} | "
                   f"{where(te['centroid_distance'])} / {where(te['unit_centroid_distance'])} "
                   f"(train error: {where(te['mean_predictor_train_error'])}) | "
                   f"{_fmt(e['readout_second_moment']['mean'], e['readout_second_moment']['se'], 3)} | "
                   f"{_fmt(e['test_error']['mean'], None, 3)} ({_fmt(e['mean_predictor_test_error']['mean'], None, 3)}) |")
    return out


def plot(rows: list[dict], path: str, measure: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the phase diagram's grid: one row per task, one column per α (empty where no slice is cached)
    tasks = list(dict.fromkeys(r["config"]["task"] for r in rows))
    alphas = sorted({r["config"]["alpha"] for r in rows})
    nrow, ncol = len(tasks), len(alphas)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.1 * nrow), squeeze=False)
    styles = dict(nngp=(":", "0.5"), gaussian=("--", "C1"), single_neuron=("-.", "C2"), cavity=("-", "C3"))
    used = set()
    for r in rows:
        used.add((tasks.index(r["config"]["task"]), alphas.index(r["config"]["alpha"])))
        ax = axes[tasks.index(r["config"]["task"]), alphas.index(r["config"]["alpha"])]
        c = r["config"]
        T = np.asarray(c["temperatures"])
        m, se = np.asarray(r["sampled"][measure]["mean"]), np.asarray(r["sampled"][measure]["se"])
        ok = np.asarray(r["converged"], bool)
        ax.errorbar(T[ok], m[ok], yerr=se[ok], fmt="o", ms=4, capsize=2, color="k", label="sampled (converged)")
        if (~ok).any():
            ax.errorbar(T[~ok], m[~ok], yerr=se[~ok], fmt="o", ms=5, mfc="white", capsize=2, color="k",
                        label="sampled, R̂/ESS failed")
        for lv, (ls, col) in styles.items():
            if lv in r["theory"] and measure in r["theory"][lv]:
                th = r["theory"][lv]
                v = theory_values(th, measure)
                ax.plot(T, v, ls=ls, color=col, lw=1.0, alpha=0.35)  # the whole curve, faint
                inside = np.asarray(th.get("in_regime") or np.ones(len(T), bool), bool)
                ax.plot(T, np.where(inside, v, np.nan), ls=ls, color=col, lw=1.6, label=f"{lv} (bold: in its regime)")
        g = r.get("gd")
        if g is not None:
            e = g["end"][measure]
            te = g["T_eff"]["mean_predictor_train_error"]
            # off the grid on the side where its training error lies ("no-map": too few converged
            # temperatures to invert; GD interpolates, so that is the cold side too)
            x = te["T"] if te["status"] == "ok" else (T.max() * 1.8 if te["status"] == "hotter" else T.min() / 1.8)
            ax.errorbar([x], [e["mean"]], yerr=[e["se"]], fmt="*", ms=11, color="C4",
                        label=f"GD end point ({g['config']['replicas']} nets, ± s.e.)")
        # y range from the sample and GD (a theory level far outside it is clipped, not rescaling the panel)
        ys = [m - se, m + se] + ([np.array([e["mean"] - e["se"], e["mean"] + e["se"]])] if g is not None else [])
        lo, hi = float(np.nanmin(np.concatenate(ys))), float(np.nanmax(np.concatenate(ys)))
        ax.set_ylim(lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo))
        ax.set_xscale("log")
        ax.set_xlabel("T")
        ax.set_title(_title(c, short=True), fontsize=8)
        ax.set_ylabel(measure.replace("_", " "), fontsize=8)
    for i in range(nrow):
        for j in range(ncol):
            if (i, j) not in used:
                axes[i, j].axis("off")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab.split(" (at T_eff")[0] if lab.startswith("GD end") else lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(f"{measure.replace('_', ' ')}: exact posterior (sampled ± s.e.; open = diagnostics failed, not a "
                 "result), theory levels (clipped to the sampled range), GD end point (★ at its T_eff by train error, off-grid "
                 "if outside)", fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)


def report(args) -> None:
    rows = _rows()
    if args.tasks_filter:
        rows = [r for r in rows if r["config"]["task"] in args.tasks_filter]
    if not rows:
        print("no cached results under", RESULTS)
        return
    order = {t: i for i, t in enumerate(["mnist:3,5", "mnist:4,9", "cifar10:3,5"])}
    rows.sort(key=lambda r: (order.get(r["config"]["task"], 9), r["config"]["alpha"]))
    mixed = data_mixing(rows)
    if mixed:
        lines = [f"  {t}: " + "; ".join(f"{src} ({fp})" for src, fp in pairs) for t, pairs in mixed.items()]
        if not args.allow_mixed_data:
            raise SystemExit("refused: slices of one task were computed on different data (load_task's sources "
                             "select different examples), or record none:\n" + "\n".join(lines)
                             + "\nre-sample them from one --source, or pass --allow-mixed-data to show them flagged")
        print("**Mixed data (flagged):** the slices of these tasks use different training sets; compare α only "
              "within one fingerprint (column `data`):\n" + "\n".join(lines) + "\n")
    print("\n".join(summary_table(rows, mixed)))
    print()
    print("\n".join(gd_table(rows)))
    print()
    print("\n".join(answer_table(rows)))
    print()
    for r in rows:
        print("\n".join(slice_table(r)))
    if args.plot:
        plot(rows, args.plot, "centroid_distance")
        stem = Path(args.plot)
        plot(rows, str(stem.with_name(stem.stem + "_unit" + stem.suffix)), "unit_centroid_distance")


def parser() -> argparse.ArgumentParser:
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
    ap.add_argument("--levels", nargs="*", default=list(LEVELS), help="theory levels beside the sampled curve")
    ap.add_argument("--skip-sampling", action="store_true", help="only add theory levels / GD to sampled files")
    ap.add_argument("--gd", action=argparse.BooleanOptionalAction, default=True, help="the GD end point")
    ap.add_argument("--gd-steps", type=int, default=3000)
    ap.add_argument("--redo-gd", action="store_true", help="recompute a cached GD end point made with other --gd-steps")
    ap.add_argument("--gd-replicas", type=int, default=4)
    ap.add_argument("--gd-lr-factor", type=float, default=1.0, help="lr = factor / λ_max(tangent kernel at init)")
    ap.add_argument("--gd-log-points", type=int, default=40)
    ap.add_argument("--gd-seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--source", choices=SOURCES, default=None,
                    help="embedded: the package's MNIST subset (ignores the data dir); data-dir: --data-dir or "
                         "$GDEQ_DATA_DIR (required); default: load_task's choice (data dir if set, else embedded)")
    ap.add_argument("--force", action="store_true", help="re-sample cached slices")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--allow-mixed-data", action="store_true",
                    help="with --report: show tasks whose slices use different data, flagged (default: refuse)")
    ap.add_argument("--backfill-data", action="store_true",
                    help="record --source's data in cached slices that lack it, checked against their nngp level")
    ap.add_argument("--tasks-filter", nargs="*", default=None, help="with --report: only these tasks")
    ap.add_argument("--plot", default=None, help="with --report: write the figures here (and *_unit.png)")
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.report:
        report(args)
    elif args.backfill_data:
        backfill_data(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
