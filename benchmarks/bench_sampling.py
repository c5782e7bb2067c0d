"""ESS per CPU-second of the exact sampler against NumPyro and Pyro NUTS, side by side on one target.

Target: the collapsed posterior of the first-layer weights (readout integrated out exactly,
equilibrium.sampling), U_T(W) = (λ0/2)|W|² + (D/2) log det A_W + ½ YᵀA_W⁻¹Y, A_W = T·I + K_W/λ1, on
MNIST 3 vs 5 (``load_task("mnist", (3, 5), n_train=P, n_test=..., seed=0)``, span-reduced inputs), erf.
The JAX copy of U_T used by NumPyro is checked against the torch one before anything runs.

Samplers, each at every temperature of ``--temperatures``:

(a) ``ours-independent``: equilibrium.sample_temperatures with its default settings (split HMC with
    float32 forces, trajectory length π/2), ``--chains`` chains per T, fixed length (``--trajectories``
    after 40 tuning trajectories, half burn-in);
    ``ours-ladder``: the same with replica exchange over a ladder whose helper temperatures are placed
    from the measured energy spread for a swap acceptance ≈ 0.25 (``swap_target``);
    ``ours-leapfrog``: the previous default (plain leapfrog, float64 forces, trajectory length 1), same
    chains and trajectories, for the before/after comparison;
(b) ``numpyro``: NumPyro NUTS, ``--nuts-chains`` chains vectorised (``chain_method="vectorized"``);
(c) ``pyro``: Pyro NUTS, ``--nuts-chains`` chains run one after the other in this process.

Measured: for each diagnostic observable (equilibrium.sampling.DIAGNOSTIC_OBSERVABLES, evaluated by the
same code on every draw) the bulk ESS (arviz) over the kept draws, divided by the CPU seconds
(``time.process_time``, one thread: warm-up/burn-in/tuning and measurement included) that sampler
spent on that temperature (for the ladder: its total CPU time split evenly over the requested
temperatures). The table gives min-over-observables ESS/CPU-s per sampler and temperature and the
ratio of (a) to the better of (b) and (c).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_sampling.py --chains 6 --trajectories 120 \
        --nuts-chains 2 --nuts-warmup 40 --nuts-draws 40 --max-tree-depth 6 --json benchmarks/results/bench_sampling.json

(the cached run's exact command and commit are in the JSON; docs/sampling.md gives the table).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gdeq.equilibrium import inputs, sampling  # noqa: E402
from gdeq.equilibrium.sampling import DIAGNOSTIC_OBSERVABLES, SamplerSettings, chain_diagnostics  # noqa: E402
from gdeq.gd_dynamics import load_task  # noqa: E402

torch.set_num_threads(1)


def _problem(task, width, temperatures):
    return sampling._Problem(task.x_train, task.y_train, None, width, np.asarray(temperatures, dtype=np.float64),
                             "erf", 1.0, 1.0, True, torch.device("cpu"), torch.float64)


def _traces(task, width, T, W_draws: np.ndarray) -> dict[str, np.ndarray]:
    """Diagnostic observables of draws W (chains, draws, r, N1) with the sampler's own measurement code."""
    C, n = W_draws.shape[:2]
    prob = _problem(task, width, np.full(C * n, T))
    labels = inputs.class_labels(task.y_train)
    measure = sampling._Measure(prob, labels, None, None)
    _, scalars = measure(torch.as_tensor(np.array(W_draws.reshape(C * n, *W_draws.shape[2:]))), None)
    return {k: v.numpy().reshape(C, n) for k, v in scalars.items()}


def _ess_rate(traces: dict[str, np.ndarray], cpu: float) -> dict:
    _, bulk, _ = chain_diagnostics(traces)
    return dict(cpu_s=cpu, ess_bulk=bulk, ess_per_cpu_s={k: bulk[k] / cpu for k in bulk},
                min_ess_per_cpu_s=min(bulk[k] / cpu for k in bulk))


# ---------------------------------------------------------------------------------------------
def run_ours(task, width, temps, args, tempering: bool, integrator: str = "split") -> dict:
    # the previous default (plain leapfrog, trajectory length 1) is kept as "ours-leapfrog" for comparison
    length = SamplerSettings().trajectory_length if integrator == "split" else 1.0
    st = SamplerSettings(replicas=args.chains, tempering=tempering, max_temperature_ratio=args.ladder_ratio,
                         integrator=integrator, trajectory_length=length,
                         force_dtype=SamplerSettings().force_dtype if integrator == "split" else None,
                         burn_in=length * args.trajectories / 2,
                         sampling_time=length * args.trajectories / 2, seed=args.seed)
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sampling.SamplingConvergenceWarning)
        res = sampling.sample_temperatures(task.x_train, task.y_train, temps, width=width, settings=st)
    cpu = (time.process_time() - t0) / len(temps)
    out = {}
    for T, s in zip(temps, res):
        d = s.diagnostics
        out[str(T)] = dict(_ess_rate(d.traces, cpu), acceptance=d.acceptance, swap_acceptance=d.swap_acceptance,
                           rhat=d.rhat)
    if tempering:  # the ladder actually used (placed from the measured energy spread)
        out["ladder"] = [float(t) for t in res[0].settings["ladder"]]
    for T in temps:
        print(f"  ours{'-ladder' if tempering else ''}-{integrator} T={T:g}: {out[str(T)]['min_ess_per_cpu_s']:.3g} ESS/CPU-s", flush=True)
    return out


def _jax_potential(task, width, T):
    import jax.numpy as jnp
    from jax.scipy.special import erf

    prob = _problem(task, width, [T])
    X, Y = jnp.asarray(prob.X.numpy()), jnp.asarray(prob.Y.numpy())
    P, N1, D, lam0, lam1 = prob.P, prob.N1, prob.D, prob.lam0, prob.lam1

    def potential(W):
        phi = erf(X @ W)
        if N1 <= P:
            M = phi.T @ phi + T * N1 * lam1 * jnp.eye(N1)
            L = jnp.linalg.cholesky(M)
            S = jax_cho_solve(L, phi.T @ Y)
            Rv = (Y - phi @ S) / T
            logdet = 2 * jnp.log(jnp.diag(L)).sum() + (P - N1) * jnp.log(T) - N1 * math.log(N1 * lam1)
        else:
            A = phi @ phi.T / (N1 * lam1) + T * jnp.eye(P)
            L = jnp.linalg.cholesky(A)
            Rv = jax_cho_solve(L, Y)
            logdet = 2 * jnp.log(jnp.diag(L)).sum()
        return 0.5 * lam0 * (W * W).sum() + 0.5 * D * logdet + 0.5 * (Y * Rv).sum()

    def jax_cho_solve(L, B):
        from jax.scipy.linalg import cho_solve

        return cho_solve((L, True), B)

    return potential, prob


def run_numpyro(task, width, temps, args) -> dict:
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)
    out = {}
    for i, T in enumerate(temps):
        potential, prob = _jax_potential(task, width, T)
        W0 = np.random.default_rng(args.seed + i).normal(size=(args.nuts_chains, prob.r, prob.N1))
        U_torch, _ = prob.collapsed(torch.as_tensor(W0[:1]), need_grad=False)
        assert abs(float(potential(jnp.asarray(W0[0]))) - float(U_torch[0])) < 1e-8 * abs(float(U_torch[0])) + 1e-8, \
            "the JAX target differs from the torch one"
        kernel = NUTS(potential_fn=potential, max_tree_depth=args.max_tree_depth)
        mcmc = MCMC(kernel, num_warmup=args.nuts_warmup, num_samples=args.nuts_draws, num_chains=args.nuts_chains,
                    chain_method="vectorized", progress_bar=False)
        t0 = time.process_time()
        mcmc.run(jax.random.PRNGKey(args.seed + i), init_params=jnp.asarray(W0), extra_fields=("num_steps",))
        draws = np.asarray(mcmc.get_samples(group_by_chain=True))
        cpu = time.process_time() - t0
        steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
        out[str(T)] = dict(_ess_rate(_traces(task, width, T, draws), cpu), mean_leapfrog_steps=float(steps.mean()))
        print(f"  numpyro T={T:g}: {out[str(T)]['min_ess_per_cpu_s']:.3g} ESS/CPU-s", flush=True)
    return out


def run_pyro(task, width, temps, args) -> dict:
    import pyro
    from pyro.infer.mcmc import MCMC, NUTS

    out = {}
    for i, T in enumerate(temps):
        prob = _problem(task, width, [T])

        def potential(params):
            U, _ = prob.collapsed(params["W"][None], need_grad=False)
            return U[0]

        chains = []
        t0 = time.process_time()
        for c in range(args.nuts_chains):
            pyro.set_rng_seed(args.seed + 100 * i + c)
            W0 = torch.randn(prob.r, prob.N1, dtype=torch.float64)
            kernel = NUTS(potential_fn=potential, max_tree_depth=args.max_tree_depth)
            mcmc = MCMC(kernel, num_samples=args.nuts_draws, warmup_steps=args.nuts_warmup,
                        initial_params={"W": W0}, disable_progbar=True)
            mcmc.run()
            chains.append(mcmc.get_samples()["W"].numpy())
        cpu = time.process_time() - t0
        out[str(T)] = _ess_rate(_traces(task, width, T, np.stack(chains)), cpu)
        print(f"  pyro T={T:g}: {out[str(T)]['min_ess_per_cpu_s']:.3g} ESS/CPU-s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    ap.add_argument("--chains", type=int, default=16, help="our chains per temperature")
    ap.add_argument("--trajectories", type=int, default=200, help="our trajectories per chain (half burn-in)")
    ap.add_argument("--ladder-ratio", type=float, default=SamplerSettings().max_temperature_ratio,
                    help="cap on neighbouring ladder ratios (helpers are placed for swap_target)")
    ap.add_argument("--nuts-chains", type=int, default=4)
    ap.add_argument("--nuts-warmup", type=int, default=100)
    ap.add_argument("--nuts-draws", type=int, default=100)
    ap.add_argument("--max-tree-depth", type=int, default=10)
    ap.add_argument("--samplers", nargs="+", default=["ours-independent", "ours-ladder", "numpyro", "pyro"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    task = load_task("mnist", (3, 5), n_train=args.n_train, n_test=10, seed=0)
    temps = list(args.temperatures)
    runners = {"ours-independent": lambda: run_ours(task, args.width, temps, args, False),
               "ours-ladder": lambda: run_ours(task, args.width, temps, args, True),
               "ours-leapfrog": lambda: run_ours(task, args.width, temps, args, False, "leapfrog"),
               "numpyro": lambda: run_numpyro(task, args.width, temps, args),
               "pyro": lambda: run_pyro(task, args.width, temps, args)}
    results = {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()

    def save(partial: bool, ratios=None):
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            config = dict(vars(args), git_commit=commit, threads=1,
                          command="OMP_NUM_THREADS=1 python benchmarks/bench_sampling.py " + " ".join(os.sys.argv[1:]))
            Path(args.json).write_text(json.dumps(dict(config=config, partial=partial, results=results, ratios=ratios),
                                                  indent=1, default=float))

    for name in args.samplers:
        print(f"{name} ...", flush=True)
        results[name] = runners[name]()
        save(partial=True)
    print(f"\nMNIST 3v5, P = {args.n_train}, N1 = {args.width}: min over {list(DIAGNOSTIC_OBSERVABLES)} "
          f"of bulk ESS per CPU-second (one thread)")
    print(f"{'T':>8} " + " ".join(f"{n:>17}" for n in results) + "  ratio ours/best NUTS")
    ratios = {}
    for T in temps:
        row = {n: results[n][str(T)]["min_ess_per_cpu_s"] for n in results}
        nuts = [row[n] for n in ("numpyro", "pyro") if n in row]
        ours = [row[n] for n in ("ours-independent", "ours-ladder") if n in row]  # the current sampler
        ratio = max(ours) / max(nuts) if nuts and ours and max(nuts) > 0 else float("nan")
        ratios[str(T)] = ratio
        print(f"{T:>8g} " + " ".join(f"{row[n]:>17.4g}" for n in results) + f"  {ratio:.3g}")
    save(partial=False, ratios=ratios)
    if args.json:
        print("wrote", args.json)


if __name__ == "__main__":
    main()
