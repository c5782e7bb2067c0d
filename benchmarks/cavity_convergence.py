"""Where the ``cavity`` level's fixed point converges, at α = 0.5, 2 and 5 down to T = 0.003 (docs/theory.md B.8).

    OMP_NUM_THREADS=1 python benchmarks/cavity_convergence.py

MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)``), erf, λ0 = λ1 = 1, the
gaussian level's Q* as input; (P, N1) = (100, 200), (200, 100), (250, 50); T = 1, 0.3, 0.1, 0.03, 0.01,
0.003 (α = 0.5: 1, 0.1, 0.01, 0.003, the validation's ladder). Prints, per point, CPU time, which
temperatures converged and are in regime, λ1⟨v²⟩, train and test error and the e_y weight moment. It
uses only ``cavity_curve``'s public arguments, so it runs unchanged against an older checkout of the
package (that is how the "before" numbers of B.8 were made: commit fe81783).

    OMP_NUM_THREADS=1 python benchmarks/cavity_convergence.py --alpha20

Why the continuation stops at α = 20 (docs/theory.md B.5 "What is left"): P = 1000, N1 = 50, the ladder
10 … 0.3, with the default importance samples, four times as many, and wider proposal stretches. Prints per
temperature whether the fixed point converged, the Pareto k̂ and Kish ESS of the importance weights,
λ1⟨v²⟩ and the test error: where k̂ > 0.7 the estimates move with the sample size.

    OMP_NUM_THREADS=1 python benchmarks/cavity_convergence.py --resample-move

Is it the sampler or the closure (docs/theory.md B.11)? MNIST 3 vs 5 at N1 = 50: α = 20 (P = 1000, T = 1,
0.3, 0.1) and α = 5 (P = 250, T = 1 … 0.03), the averages over the single-unit measure taken by importance
sampling and by resample-move HMC (``cavity_curve(measure="resample-move")``), beside the exact sampled
values cached by ``benchmarks/validate_cavity.py`` (groups a20-mnist35, a5-mnist35; "n/a" where that run
did not converge).
"""

from __future__ import annotations

import time

import numpy as np
import torch


def alpha20() -> None:
    """The importance weights at the α = 20 bench point along the hot part of the ladder (module docstring)."""
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.cavity import cavity_curve
    from gdeq.gd_dynamics import load_task

    temps = np.array([10, 5, 3, 2, 1.5, 1, 0.7, 0.5, 0.4, 0.35, 0.3], dtype=np.float64)
    t = load_task("mnist", (3, 5), n_train=1000, n_test=100, seed=0)
    g = temperature_curve(t.x_train, t.y_train, temps, width=50, level="gaussian")
    for label, kw in [("default samples (8388), stretches (1, 1.6, 2.5, 4)", {}),
                      ("samples 32768", dict(samples=32768)),
                      ("stretches (1, 2, 4, 8)", dict(stretches=(1.0, 2.0, 4.0, 8.0)))]:
        t0 = time.process_time()
        r = cavity_curve(t.x_train, t.y_train, temps, g.Q, width=50, x_test=t.x_test, y_test=t.y_test, **kw)
        print(f"P = 1000, N1 = 50 (α = 20), {label}: {time.process_time() - t0:.1f} s CPU")
        print("   T       converged  k̂      ESS     λ1<v²>   test error")
        for i, T in enumerate(temps):
            print(f"   {T:<7g} {bool(r.converged[i])!s:9s} {r.pareto_k[i]:6.2f} {r.ess[i]:7.0f} "
                  f"{r.readout_second_moment[i]:8.4f} {r.test_error[i]:8.4f}")


def resample_move() -> None:
    """α = 20 and α = 5 with both measures beside exact sampling (module docstring)."""
    import json
    from pathlib import Path

    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.cavity import cavity_curve
    from gdeq.gd_dynamics import load_task

    cache = json.loads((Path(__file__).parent / "results" / "cavity_validation_adaptive.json").read_text())
    names = ("readout_second_moment", "train_error", "test_error", "test_bias2", "test_variance", "weight_label_moment")
    for P, temps in [(1000, [1.0, 0.3, 0.1]), (250, [1.0, 0.3, 0.1, 0.03])]:
        temps = np.array(temps)
        t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
        g = temperature_curve(t.x_train, t.y_train, temps, width=50, x_test=t.x_test, y_test=t.y_test,
                              level="gaussian")
        rows = {}
        for measure in ("importance", "resample-move"):
            t0 = time.process_time()
            rows[measure] = cavity_curve(t.x_train, t.y_train, temps, g.Q, width=50, x_test=t.x_test,
                                         y_test=t.y_test, measure=measure)
            print(f"P = {P}, N1 = 50 (α = {P / 50:g}), cavity, measure {measure}: {time.process_time() - t0:.1f} s CPU")
        for i, T in enumerate(temps):
            ref = cache.get(f"mnist_3v5_P{P}_N50_T{T:g}")
            rm = rows["resample-move"]
            print(f"T = {T:g}: converged importance {bool(rows['importance'].converged[i])} (k̂ "
                  f"{rows['importance'].pareto_k[i]:.2f}), resample-move {bool(rm.converged[i])} "
                  f"(helpers {rm.helper_temperatures[i]}; {rm.regime_reason[i] or 'in regime'})")
            print(f"   {'observable':22s} {'sampled ± s.e.':>18s} {'gaussian':>9s} {'importance':>11s} "
                  f"{'resample-move':>14s}")
            for name in names:
                s = f"{ref[name][0]:.4f} ± {ref[name][1]:.4f}" if ref and ref.get("converged") else "n/a"
                print(f"   {name:22s} {s:>18s} {float(getattr(g, name)[i]):9.4f} "
                      f"{float(getattr(rows['importance'], name)[i]):11.4f} {float(getattr(rm, name)[i]):14.4f}")


def main() -> None:
    import sys

    torch.set_num_threads(1)
    if "--alpha20" in sys.argv[1:]:
        return alpha20()
    if "--resample-move" in sys.argv[1:]:
        return resample_move()
    from gdeq.equilibrium import temperature_curve
    from gdeq.equilibrium.cavity import cavity_curve
    from gdeq.gd_dynamics import load_task

    np.set_printoptions(precision=6, linewidth=140)
    for P, N1, temps in [(100, 200, [1, 0.1, 0.01, 0.003]), (200, 100, [1, 0.3, 0.1, 0.03, 0.01, 0.003]),
                         (250, 50, [1, 0.3, 0.1, 0.03, 0.01, 0.003])]:
        temps = np.array(temps, dtype=np.float64)
        t = load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)
        g = temperature_curve(t.x_train, t.y_train, temps, width=N1, level="gaussian")
        t0 = time.process_time()
        r = cavity_curve(t.x_train, t.y_train, temps, g.Q, width=N1, x_test=t.x_test, y_test=t.y_test)
        print(f"P = {P}, N1 = {N1} (α = {P / N1:g}), T = {temps.tolist()}: {time.process_time() - t0:.1f} s CPU, "
              f"converged {int(np.sum(r.converged))}/{len(temps)} {r.converged.astype(int)}, "
              f"in regime {r.in_regime.astype(int)}")
        for name in ("readout_second_moment", "train_error", "test_error", "weight_label_moment"):
            print(f"   {name:22s}", np.asarray(getattr(r, name)))


if __name__ == "__main__":
    main()
