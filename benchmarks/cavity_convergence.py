"""Where the ``cavity`` level's fixed point converges, at α = 0.5, 2 and 5 down to T = 0.003 (docs/theory.md B.8).

    OMP_NUM_THREADS=1 python benchmarks/cavity_convergence.py

MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=P, n_test=100, seed=0)``), erf, λ0 = λ1 = 1, the
gaussian level's Q* as input; (P, N1) = (100, 200), (200, 100), (250, 50); T = 1, 0.3, 0.1, 0.03, 0.01,
0.003 (α = 0.5: 1, 0.1, 0.01, 0.003, the validation's ladder). Prints, per point, CPU time, which
temperatures converged and are in regime, λ1⟨v²⟩, train and test error and the e_y weight moment. It
uses only ``cavity_curve``'s public arguments, so it runs unchanged against an older checkout of the
package (that is how the "before" numbers of B.8 were made: commit fe81783).
"""

from __future__ import annotations

import time

import numpy as np
import torch


def main() -> None:
    torch.set_num_threads(1)
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
