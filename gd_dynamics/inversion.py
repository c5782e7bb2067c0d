"""Inversion of class manifolds in training time (arXiv 2303.05161) and its stragglers.

Two detectors, both per replica on a logged observable of a :class:`Trajectory`:

- :func:`paper_rule` — the paper's rule: after a burn-in, the first logged step at which the
  unit-sphere radius of the first class stops decreasing (R_0[t+1] ≥ R_0[t]).
- :func:`turning_point` — smoothed and patient: smooth the curve (running median then mean over a
  window of logged points), take its extremum after the burn-in, and accept it only if the curve
  moved towards it by at least ``min_amplitude`` (fraction of the smoothed curve's range) before, and
  away from it by at least that much after, over at least ``patience`` logged points. Works on any
  observable: ``kind="min"`` for a radius that falls then rises, ``"max"`` for a distance or ratio
  that rises then falls.

Stragglers: the training points a replica misclassifies at its inversion; their stability across
replicas is the overlap of two replicas' sets against the hypergeometric null (z-score, averaged over
pairs); per point, the last logged step at which it turned from wrong to right.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .trajectory import Trajectory

__all__ = ["paper_rule", "turning_point", "Inversion", "find_inversions", "StragglerReport", "stragglers",
           "misclassified", "hypergeometric_overlap_z", "retrain_without_stragglers"]


def paper_rule(values: np.ndarray, steps: np.ndarray, burn_in: int = 20) -> int | None:
    """Index of the first logged step ≥ ``burn_in`` after which ``values`` stops decreasing, or None."""
    for i in range(len(values) - 1):
        if steps[i] >= burn_in and values[i + 1] >= values[i]:
            return i
    return None


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return values.astype(float)
    half = window // 2
    padded = np.pad(values.astype(float), half, mode="edge")
    med = np.array([np.median(padded[i : i + window]) for i in range(len(values))])
    padded = np.pad(med, half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")[: len(values)]


def turning_point(values: np.ndarray, steps: np.ndarray, kind: Literal["min", "max"] = "min", *,
                  burn_in: int = 0, window: int = 5, patience: int = 3, min_amplitude: float = 0.05) -> int | None:
    """Index of a significant interior minimum (``"min"``) or maximum (``"max"``), or None."""
    if kind not in ("min", "max"):
        raise ValueError(f"kind: must be 'min' or 'max', got {kind!r}")
    s = _smooth(np.asarray(values), window)
    s = -s if kind == "max" else s
    valid = np.flatnonzero(np.asarray(steps) >= burn_in)
    if len(valid) < 2 * patience + 1:
        return None
    start = valid[0]
    i = start + int(np.argmin(s[start:]))
    span = s[start:].max() - s[start:].min()
    if span <= 0 or i - start < patience or len(s) - 1 - i < patience:
        return None
    before, after = s[start:i].max() - s[i], s[i + 1 :].max() - s[i]
    return int(i) if before >= min_amplitude * span and after >= min_amplitude * span else None


def misclassified(traj: Trajectory, index: int) -> np.ndarray:
    """Boolean (R, P): replica r misclassifies training point μ at logged step ``index``."""
    pred = traj.train_predictions[index]
    if pred.ndim == 3:  # (R, P, D): logits or one-hot outputs
        return pred.argmax(-1) != traj.labels_train[None]
    return np.sign(pred) != traj.y_train[None]


def hypergeometric_overlap_z(a: np.ndarray, b: np.ndarray, population: int) -> float:
    """z-score of |a ∩ b| against drawing |b| of ``population`` items without replacement with |a| marked."""
    K, n, N = len(a), len(b), population
    k = len(np.intersect1d(a, b))
    mean = n * K / N
    var = n * K * (N - K) * (N - n) / (N**2 * (N - 1)) if N > 1 else 0.0
    return float((k - mean) / np.sqrt(var)) if var > 0 else float("nan")


@dataclass(frozen=True)
class Inversion:
    """Per-replica inversion of one observable; NaN/-1 where a replica shows none."""

    observable: str
    rule: str
    index: np.ndarray  # (R,) logged-step index, -1 if none
    step: np.ndarray  # (R,) float, NaN if none
    train_error: np.ndarray  # (R,) misclassification rate at the inversion
    train_mse: np.ndarray  # (R,) MSE (1/P)Σ|y − f|² at the inversion

    @property
    def found(self) -> np.ndarray:
        return self.index >= 0

    def summary(self) -> dict:
        """Fraction of replicas with an inversion, and mean ± s.e. (and std) over those that have one."""
        out = dict(observable=self.observable, rule=self.rule, found=int(self.found.sum()), replicas=len(self.index))
        for name in ("step", "train_error", "train_mse"):
            v = getattr(self, name)[self.found]
            out[f"{name}_mean"] = float(v.mean()) if len(v) else float("nan")
            out[f"{name}_std"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            out[f"{name}_sem"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        return out


def find_inversions(traj: Trajectory, observable: str = "train/L1/unit_class_radius_0", *,
                    rule: Literal["paper", "turning_point"] = "paper", kind: Literal["min", "max"] = "min",
                    burn_in: int = 20, **detector) -> Inversion:
    """Apply a detector to ``observable`` (any Trajectory measure key) of every replica."""
    values = traj.measure(observable)
    idx = np.full(values.shape[1], -1)
    for r in range(values.shape[1]):
        if rule == "paper":
            i = paper_rule(values[:, r], traj.step, burn_in)
        elif rule == "turning_point":
            i = turning_point(values[:, r], traj.step, kind, burn_in=burn_in, **detector)
        else:
            raise ValueError(f"rule: must be 'paper' or 'turning_point', got {rule!r}")
        idx[r] = -1 if i is None else i
    rows = np.arange(len(idx))
    safe = np.where(idx >= 0, idx, 0)
    err = 1.0 - traj.train_accuracy[safe, rows]
    mse = traj.train_error[safe, rows]
    found = idx >= 0
    return Inversion(observable, rule, idx, np.where(found, traj.step[safe], np.nan),
                     np.where(found, err, np.nan), np.where(found, mse, np.nan))


@dataclass(frozen=True)
class StragglerReport:
    """Stragglers at each replica's inversion and their stability across replicas."""

    sets: list  # per replica: training-point positions misclassified at its inversion (empty if none)
    overlap_z: float  # mean over replica pairs of the hypergeometric overlap z-score
    overlap_z_pairs: list  # (r, s, overlap, z) per pair
    last_fix_step: np.ndarray  # (R, P): last logged step at which the point turned wrong→right, -1 never
    n_train: int

    def save(self, path: str | Path) -> Path:
        """``<path>.json`` (sets, z-scores) and ``<path>.npz`` (last_fix_step)."""
        path = Path(path).with_suffix("")
        d = asdict(self)
        np.savez_compressed(path.with_suffix(".npz"), last_fix_step=d.pop("last_fix_step"))
        d["sets"] = [list(map(int, s)) for s in self.sets]
        path.with_suffix(".json").write_text(json.dumps(d, indent=1, default=float))
        return path.with_suffix(".json")

    def union(self) -> np.ndarray:
        return np.unique(np.concatenate([np.asarray(s, int) for s in self.sets])) if self.sets else np.array([], int)


def stragglers(traj: Trajectory, inversion: Inversion) -> StragglerReport:
    """Training points misclassified at each replica's inversion, their overlap z-score, last fixes."""
    P = traj.train_predictions.shape[2]
    sets = []
    for r, i in enumerate(inversion.index):
        sets.append(np.flatnonzero(misclassified(traj, int(i))[r]) if i >= 0 else np.array([], int))
    pairs = []
    for a, b in itertools.combinations(range(len(sets)), 2):
        if inversion.index[a] >= 0 and inversion.index[b] >= 0:
            ov = len(np.intersect1d(sets[a], sets[b]))
            pairs.append((a, b, ov, hypergeometric_overlap_z(sets[a], sets[b], P)))
    zs = [p[3] for p in pairs if np.isfinite(p[3])]
    wrong = np.stack([misclassified(traj, i) for i in range(traj.n_logged)])  # (n, R, P)
    fixed = wrong[:-1] & ~wrong[1:]  # wrong at log i, right at log i+1
    last = np.full(wrong.shape[1:], -1, dtype=np.int64)
    for i in range(fixed.shape[0]):
        last[fixed[i]] = traj.step[i + 1]
    return StragglerReport(sets, float(np.mean(zs)) if zs else float("nan"), pairs, last, P)


_RETRAIN_ARGS = ("width", "activation", "optimizer", "lr", "steps", "temperature", "architecture", "loss", "reduction",
                 "batch_size", "bias", "init", "prior_precisions", "reduce_inputs", "frozen_layers", "dtype",
                 "probe_size", "data_seed")


def retrain_without_stragglers(task, traj: Trajectory, report: StragglerReport, replica: int, **overrides) -> Trajectory:
    """Retrain replica ``replica`` from its own initial weights (same seed) without its stragglers.

    The run's arguments come from ``traj.config``; ``overrides`` replace any of them (or add output
    options such as ``output_dir``, ``run_name``, ``log_steps``, ``wandb``).
    """
    from .run import drop_train_points, train

    kwargs = {k: traj.config[k] for k in _RETRAIN_ARGS if k in traj.config and traj.config[k] is not None}
    kwargs.update(overrides)
    return train(drop_train_points(task, report.sets[replica]), replicas=1, seed=[traj.seeds[replica]], **kwargs)
