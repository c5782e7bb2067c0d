"""Inversion of class manifolds in training time (arXiv 2303.05161) and its stragglers.

Three detectors, each per replica on a logged observable of a :class:`Trajectory`
(:func:`find_inversions`):

- ``rule="bootstrap"`` (the default, :func:`bootstrap_turning`) — a significance test and an effect
  size. For a fall-then-rise (``kind="min"``) the statistic is the largest rise of the curve's running
  mean (``window`` logged points) after its lowest point, S = max_j (s_j − min_{i≤j} s_i); the null
  hypothesis is a non-increasing mean plus independent Gaussian noise of the curve's own scale,
  estimated robustly from its second differences (σ̂ = 1.4826 MAD(Δ²x)/√6, which a smooth trend or a
  turn hardly moves). For any non-increasing mean S is at most the S of the noise alone, so the
  least favourable null is a flat curve: p = (1 + #{S_null ≥ S}) / (n_boot + 1) over a parametric
  bootstrap of σ̂ × white noise, and an inversion needs p ≤ ``alpha``. The effect size is S itself (in
  the observable's units) and S / |value at the turn| (relative). This is the detector for SGD,
  Langevin, float32 or any other noisy run: on a monotone curve plus white noise its false-positive
  rate is at most ``alpha``, where the paper's rule fires on almost every noisy curve. (Noise that is
  correlated from one logged point to the next is not covered: log fewer points.)
- ``rule="paper"`` (:func:`paper_rule`) — the paper's rule: after a burn-in, the first logged step at
  which the observable stops decreasing (x[t+1] ≥ x[t]). Exact on the noise-free full-batch float64
  curves it was made for (it reproduces arXiv 2303.05161); any noise trips it.
- ``rule="turning_point"`` (:func:`turning_point`) — smoothed and patient: smooth the curve (running
  median then mean over a window of logged points), take its extremum after the burn-in, and accept it
  only if the curve moved towards it by at least ``min_amplitude`` (fraction of the smoothed curve's
  range) before, and away from it by at least that much after, over at least ``patience`` logged
  points. No significance test: a relative amplitude of a noise-dominated range passes.

``kind="min"`` looks for a radius that falls then rises, ``"max"`` for a distance or ratio that rises
then falls. Across replicas, :meth:`Inversion.summary` gives the number of replicas with a significant
inversion, the binomial p-value of that count under the null (each replica a false positive with
probability ≤ ``alpha``), and the effect size mean ± s.e. over replicas.

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
from scipy.stats import binom

from gdeq.geometry import mean_se

from .trajectory import Trajectory

__all__ = ["paper_rule", "turning_point", "bootstrap_turning", "TurningTest", "Inversion", "find_inversions",
           "RULES", "StragglerReport", "stragglers", "misclassified", "hypergeometric_overlap_z",
           "retrain_without_stragglers"]

RULES = ("bootstrap", "paper", "turning_point")
#: per-replica significance level of the bootstrap detector
DEFAULT_ALPHA = 0.01


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


@dataclass(frozen=True)
class TurningTest:
    """A bootstrap test of one curve for a turn (see the module docstring).

    ``index``: logged-step index of the turn (the lowest point of the running mean before its largest
    rise, for ``kind="min"``), or None when not significant; ``effect``: that rise S (observable units);
    ``relative_effect``: S / |running mean at the turn|; ``p_value``; ``noise``: σ̂.
    """

    index: int | None
    effect: float
    relative_effect: float
    p_value: float
    noise: float


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Means of ``window`` consecutive points along the last axis (length n − window + 1)."""
    c = np.cumsum(np.concatenate([np.zeros(x.shape[:-1] + (1,)), x], axis=-1), axis=-1)
    return (c[..., window:] - c[..., :-window]) / window


def _largest_rise(s: np.ndarray) -> np.ndarray:
    """max_j (s_j − min_{i≤j} s_i) along the last axis."""
    return (s - np.minimum.accumulate(s, axis=-1)).max(-1)


def bootstrap_turning(values: np.ndarray, steps: np.ndarray, kind: Literal["min", "max"] = "min", *,
                      burn_in: int = 0, window: int = 5, alpha: float = DEFAULT_ALPHA, n_boot: int = 500,
                      seed: int = 0) -> TurningTest:
    """Test one curve for a significant fall-then-rise (``"min"``) or rise-then-fall (``"max"``).

    Module docstring: statistic S = largest rise of the ``window``-point running mean after its lowest
    point; least favourable null = a flat curve + N(0, σ̂²) noise; p-value from ``n_boot`` parametric
    bootstrap curves (fixed ``seed``: a run's verdict is reproducible).
    """
    if kind not in ("min", "max"):
        raise ValueError(f"kind: must be 'min' or 'max', got {kind!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha!r}")
    if window < 1 or n_boot < 1:
        raise ValueError(f"window/n_boot: must be ≥ 1, got {window}, {n_boot}")
    x = np.asarray(values, dtype=np.float64)
    valid = np.flatnonzero((np.asarray(steps) >= burn_in) & np.isfinite(x))
    nan = float("nan")
    if len(valid) < window + 2 or np.any(np.diff(valid) != 1):
        return TurningTest(None, nan, nan, nan, nan)
    x = x[valid] * (1.0 if kind == "min" else -1.0)  # now: is there a fall then a rise?
    s = _running_mean(x, window)
    low = np.minimum.accumulate(s)
    j = int(np.argmax(s - low))
    effect = float(s[j] - low[j])
    i = int(np.argmin(s[: j + 1]))
    index = int(valid[0] + i + window // 2)  # the centre of the running-mean window
    relative = effect / abs(s[i]) if s[i] != 0 else nan
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    noise = float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0))
    if effect <= 0:
        return TurningTest(None, 0.0, 0.0, 1.0, noise)
    # least favourable null: for any non-increasing mean μ, the rise of (μ + noise) is at most that of
    # the noise alone (μ̄_j − μ̄_i ≤ 0 for i ≤ j), so a flat mean bounds the false-positive rate by alpha
    rng = np.random.default_rng(seed)
    null = noise * rng.standard_normal((n_boot, len(x)))
    p = float((1 + np.sum(_largest_rise(_running_mean(null, window)) >= effect)) / (n_boot + 1))
    return TurningTest(index if p <= alpha else None, effect, float(relative), p, noise)


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
    """Per-replica inversion of one observable; NaN/-1 where a replica shows none.

    For ``rule="bootstrap"`` also, per replica (found or not): ``effect`` (the rise after the turn, in
    the observable's units), ``relative_effect`` (effect / |value at the turn|) and ``p_value``, with
    ``alpha`` the level a replica's p-value had to reach; None for the other rules.
    """

    observable: str
    rule: str
    index: np.ndarray  # (R,) logged-step index, -1 if none
    step: np.ndarray  # (R,) float, NaN if none
    train_error: np.ndarray  # (R,) misclassification rate at the inversion
    train_mse: np.ndarray  # (R,) MSE (1/P)Σ|y − f|² at the inversion
    effect: np.ndarray | None = None  # (R,)
    relative_effect: np.ndarray | None = None  # (R,)
    p_value: np.ndarray | None = None  # (R,)
    alpha: float = float("nan")

    @property
    def found(self) -> np.ndarray:
        return self.index >= 0

    def summary(self) -> dict:
        """Fraction of replicas with an inversion, and mean ± s.e. (and std) over those that have one.

        With a significance test (``rule="bootstrap"``) also: the effect size and relative effect size
        mean ± s.e. over all replicas, and ``replica_p_value``, the probability of at least this many
        significant replicas if none had an inversion (binomial, each a false positive with
        probability ≤ alpha).
        """
        found = int(self.found.sum())
        out = dict(observable=self.observable, rule=self.rule, found=found, replicas=len(self.index))
        for name in ("step", "train_error", "train_mse"):
            v = getattr(self, name)[self.found]
            out[f"{name}_mean"] = float(v.mean()) if len(v) else float("nan")
            out[f"{name}_std"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            out[f"{name}_sem"] = float(mean_se(v)[1]) if len(v) > 1 else float("nan")
        if self.p_value is not None:
            for name in ("effect", "relative_effect"):
                m, se = mean_se(getattr(self, name))
                out[f"{name}_mean"], out[f"{name}_sem"] = float(m), float(se)
            out["alpha"] = self.alpha
            out["replica_p_value"] = float(binom.sf(found - 1, len(self.index), self.alpha)) if found else 1.0
        return out

    def describe(self) -> str:
        """One line with the count, the significance and the effect size."""
        s = self.summary()
        text = f"{s['found']}/{s['replicas']} replicas invert ({self.rule} rule)"
        if self.p_value is not None:
            text += (f", p = {s['replica_p_value']:.2g} across replicas (each at α = {self.alpha:g}); "
                     f"effect {s['effect_mean']:.3g} ± {s['effect_sem']:.2g} "
                     f"= {100 * s['relative_effect_mean']:.3g} % of the value")
        if s["found"]:
            text += f"; at step {s['step_mean']:.4g} ± {s['step_sem']:.2g}"
        return text


def find_inversions(traj: Trajectory, observable: str = "train/L1/unit_class_radius_0", *,
                    rule: Literal["bootstrap", "paper", "turning_point"] = "bootstrap",
                    kind: Literal["min", "max"] = "min", burn_in: int = 20, **detector) -> Inversion:
    """Apply a detector (module docstring) to ``observable`` (any Trajectory measure key) of every replica.

    The default, ``rule="bootstrap"``, tests each replica's turn for significance and reports its effect
    size (``detector``: ``window``, ``alpha``, ``n_boot``, ``seed`` of :func:`bootstrap_turning`). Use
    ``rule="paper"`` only on noise-free full-batch float64 GD curves (it fires on any noise), and
    ``rule="turning_point"`` with care (no significance test).
    """
    if rule not in RULES:
        raise ValueError(f"rule: must be one of {list(RULES)}, got {rule!r}")
    if rule == "paper" and kind != "min":
        raise ValueError(f"kind: the paper's rule looks for a fall then a rise ('min'), got {kind!r}")
    values = traj.measure(observable)
    R = values.shape[1]
    idx = np.full(R, -1)
    tests = []
    for r in range(R):
        if rule == "paper":
            i = paper_rule(values[:, r], traj.step, burn_in)
        elif rule == "turning_point":
            i = turning_point(values[:, r], traj.step, kind, burn_in=burn_in, **detector)
        else:
            test = bootstrap_turning(values[:, r], traj.step, kind, burn_in=burn_in, **detector)
            tests.append(test)
            i = test.index
        idx[r] = -1 if i is None else i
    rows = np.arange(len(idx))
    safe = np.where(idx >= 0, idx, 0)
    err = 1.0 - traj.train_accuracy[safe, rows]
    mse = traj.train_error[safe, rows]
    found = idx >= 0
    extra = {}
    if tests:
        extra = dict(effect=np.array([t.effect for t in tests]), relative_effect=np.array([t.relative_effect for t in tests]),
                     p_value=np.array([t.p_value for t in tests]), alpha=float(detector.get("alpha", DEFAULT_ALPHA)))
    return Inversion(observable, rule, idx, np.where(found, traj.step[safe], np.nan),
                     np.where(found, err, np.nan), np.where(found, mse, np.nan), **extra)


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
