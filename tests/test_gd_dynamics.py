"""gd_dynamics training: models, replicas, Langevin against an exact Gaussian posterior, resume, wandb,
bad input. Each test checks numbers against an independent computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf
from training_helpers import Interrupt

from gdeq import geometry
from gdeq.gd_dynamics import load_task, train
from gdeq.gd_dynamics.callbacks import log_schedule
from gdeq.gd_dynamics.models import ReplicaFC
from gdeq.gd_dynamics.seeds import replica_seed

QUIET = dict(wandb=None, progress_bar=False)


@pytest.fixture(scope="module")
def pair():
    """A small real MNIST pair (embedded subset): 3 vs 5, P = 60."""
    return load_task("mnist", (3, 5), n_train=60, n_test=40, seed=1)


def _state(run_dir: str) -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", weights_only=False)


# --------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------
def test_one_hidden_layer_matches_theory_formula():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 13))
    m = ReplicaFC(13, (5,), 1, "erf", replicas=2, seeds=[3, 4])
    f = m(torch.as_tensor(x)).detach().numpy()
    for r in range(2):
        W, v = m.weights[0][r].detach().numpy(), m.weights[1][r, 0].detach().numpy()
        expect = erf(x @ W.T / np.sqrt(13)) @ v / np.sqrt(5)  # f = Σ v_i σ(w_i·x/√N0)/√N1
        np.testing.assert_allclose(f[r], expect, rtol=1e-12)
    # prior init: variance 1/λ per layer
    big = ReplicaFC(400, (300,), 1, "erf", replicas=1, prior_precisions=(4.0, 0.25))
    assert big.weights[0].var().item() == pytest.approx(0.25, rel=0.02)
    assert big.weights[1].var().item() == pytest.approx(4.0, rel=0.35)


def test_pytorch_init_is_nn_linear_convention():
    m = ReplicaFC(50, (20,), 2, "tanh", replicas=1, bias=True, init="pytorch", seeds=[0])
    W = m.weights[0][0]
    assert W.abs().max() <= 1 / np.sqrt(50) and W.std().item() == pytest.approx(1 / np.sqrt(3 * 50), rel=0.1)
    lin = torch.nn.Linear(50, 20).double()
    with torch.no_grad():
        lin.weight.copy_(W), lin.bias.copy_(m.biases[0][0])
    x = torch.randn(4, 50, dtype=torch.float64)
    torch.testing.assert_close(m.hidden_features(x)[0][0], torch.tanh(lin(x)))


def test_exact_reduction_keeps_inner_products():
    rng = np.random.default_rng(1)
    x, xt = rng.standard_normal((10, 40)), rng.standard_normal((6, 40))
    red = geometry.span_reduction(x, xt)
    assert red.rank == 10
    np.testing.assert_allclose(red.x_train @ red.x_train.T, x @ x.T, atol=1e-10)
    # test inputs: projection plus remainder keep all test-test and train-test inner products
    np.testing.assert_allclose(red.x_test @ red.x_test.T + red.test_remainder @ red.test_remainder.T, xt @ xt.T, atol=1e-10)
    np.testing.assert_allclose(red.x_train @ red.x_test.T, x @ xt.T, atol=1e-10)


# --------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------
def test_gd_lowers_loss_and_logged_centroid_distance_matches_numpy(pair, tmp_path):
    traj = train(pair, width=30, lr=0.02, steps=60, replicas=2, output_dir=tmp_path, run_name="gd",
                 checkpoint_every=60, **QUIET)
    assert traj.step[0] == 0 and traj.step[-1] == 60 and len(traj.step) >= 50
    assert np.all(traj.train_loss[-1] < 0.3 * traj.train_loss[0])
    state = _state(traj.run_dir)
    assert state["global_step"] == 60
    W = state["state_dict"]["model.weights.0"].numpy()
    v = state["state_dict"]["model.weights.1"].numpy()
    x, y = pair.x_train, pair.y_train
    for r in range(2):
        phi = erf(x @ W[r].T / np.sqrt(x.shape[1]))
        K = phi @ phi.T / phi.shape[1]
        c = np.where(pair.labels_train == 1, 1 / np.sum(pair.labels_train == 1), -1 / np.sum(pair.labels_train == 0))
        assert traj.centroid_distance[-1, r] == pytest.approx(c @ K @ c, rel=1e-10)
        f = phi @ v[r, 0] / np.sqrt(phi.shape[1])
        assert traj.train_loss[-1, r] == pytest.approx(0.5 * np.sum((y - f) ** 2), rel=1e-10)
        np.testing.assert_allclose(traj.train_predictions[-1, r], f, rtol=1e-10)
    saved = type(traj).load(Path(traj.run_dir) / "trajectory")
    np.testing.assert_array_equal(saved.centroid_distance, traj.centroid_distance)
    assert saved.data_fingerprint == geometry.data_fingerprint(pair.x_train, pair.y_train)


def test_trajectory_geometry_is_on_the_whole_training_set_with_a_small_probe(pair, tmp_path):
    traj = train(pair, width=16, lr=0.02, steps=5, replicas=2, probe_size=20, output_dir=tmp_path, run_name="probe",
                 checkpoint_every=5, **QUIET)
    W = _state(traj.run_dir)["state_dict"]["model.weights.0"].numpy()
    phi = erf(pair.x_train @ W[1].T / np.sqrt(pair.x_train.shape[1]))
    unit = phi / np.linalg.norm(phi, axis=1, keepdims=True)
    for feats, field, squared in ((phi / np.sqrt(16), "centroid_distance", True), (unit, "unit_centroid_distance", False)):
        mu = [feats[pair.labels_train == c].mean(0) for c in (0, 1)]
        d2 = np.sum((mu[0] - mu[1]) ** 2)
        assert getattr(traj, field)[-1, 1] == pytest.approx(d2 if squared else np.sqrt(d2), rel=1e-10)
        r0 = np.sqrt(np.mean(np.sum((feats[pair.labels_train == 0] - mu[0]) ** 2, 1)))
        assert (traj.unit_class_radius if field.startswith("unit") else traj.class_radius)[-1, 1, 0] == pytest.approx(r0, rel=1e-10)
    probe_value = traj.measures["train/L1/centroid_distance"][-1, 1]
    assert probe_value != pytest.approx(traj.centroid_distance[-1, 1], rel=1e-6)  # the 20-point probe differs


@pytest.mark.parametrize("optimizer,extra", [("gd", {}), ("adam", {}), ("langevin", {"temperature": 0.05}),
                                             ("sgd", {"batch_size": 20})])
def test_batched_replicas_equal_separate_runs(pair, tmp_path, optimizer, extra):
    """Replica r of a batched run equals a one-replica run given replica r's recorded seed."""
    kw = dict(width=12, lr=0.01, steps=12, optimizer=optimizer, log_points=5, output_dir=tmp_path, **extra, **QUIET)
    batched = train(pair, replicas=3, seed=5, run_name="b", **kw)
    assert batched.seeds == [replica_seed(5, r) for r in range(3)]
    for r in range(3):
        single = train(pair, replicas=1, seed=[batched.seeds[r]], run_name=f"s{r}", **kw)
        for name in ("train_loss", "test_loss", "centroid_distance", "unit_class_radius"):
            np.testing.assert_allclose(getattr(batched, name)[:, r], getattr(single, name)[:, 0], rtol=1e-9, atol=1e-12)


def test_batched_cnn_replicas_equal_separate_runs(pair, tmp_path):
    kw = dict(width=3, architecture="cnn", kernel_size=7, lr=0.005, steps=4, log_points=3, output_dir=tmp_path, **QUIET)
    batched = train(pair, replicas=2, seed=0, run_name="b", **kw)
    single = train(pair, replicas=1, seed=[replica_seed(0, 1)], run_name="s", **kw)
    np.testing.assert_allclose(batched.train_loss[:, 1], single.train_loss[:, 0], rtol=1e-9)
    assert batched.train_loss[-1].mean() < batched.train_loss[0].mean()


def test_langevin_samples_exact_gaussian_posterior_of_readout(pair, tmp_path):
    """Frozen first layer: v | W is Gaussian. Euler–Maruyama on the quadratic potential
    U_T = ½|y − Φv/√N1|² + (Tλ1/2)|v|² (Hessian A) has mean A⁻¹Φᵀy/√N1 and, per eigenmode a_k of A,
    variance (T/a_k)/(1 − ηa_k/2): the posterior's T/a_k up to the step-size factor. Standardised
    test predictions z = (f − mean)/std must have ⟨z⟩ = 0 and ⟨z²⟩ = 1."""
    T, eta, N1, R, burn = 0.5, 0.015, 8, 64, 800  # slowest mean relaxation 1/(η T λ1) ≈ 133 steps
    steps = burn + 1000
    log_steps = np.arange(burn, steps + 1, 10)
    traj = train(pair, width=N1, optimizer="langevin", temperature=T, lr=eta, steps=steps, replicas=R,
                 frozen_layers=(1,), reduce_inputs=False, log_steps=log_steps, layer_geometry=False,
                 output_dir=tmp_path, run_name="lv", checkpoint_every=steps, **QUIET)
    W = _state(traj.run_dir)["state_dict"]["model.weights.0"].numpy()
    x, y, xt = pair.x_train, pair.y_train, pair.x_test
    z_chain = []
    for r in range(R):
        phi, phit = erf(x @ W[r].T / np.sqrt(x.shape[1])), erf(xt @ W[r].T / np.sqrt(x.shape[1]))
        A = phi.T @ phi / N1 + T * np.eye(N1)
        mean_v = np.linalg.solve(A, phi.T @ y / np.sqrt(N1))
        a, U = np.linalg.eigh(A)
        cov_chain = (U * (T / a / (1 - eta * a / 2))) @ U.T
        u = phit / np.sqrt(N1)
        mu, sd = u @ mean_v, np.sqrt(np.einsum("pi,ij,pj->p", u, cov_chain, u))
        z = (traj.test_predictions[:, r] - mu) / sd  # (n_logged, P_test)
        z_chain.append(z)
    assert traj.step[0] == burn
    z = np.stack(z_chain, 1)  # (n, R, Pt)
    per_rep_mean, per_rep_sq = z.mean((0, 2)), (z**2).mean((0, 2))
    m, m_se = per_rep_mean.mean(), per_rep_mean.std(ddof=1) / np.sqrt(R)
    s, s_se = per_rep_sq.mean(), per_rep_sq.std(ddof=1) / np.sqrt(R)
    assert abs(m) < 4 * m_se + 0.02, (m, m_se)
    assert abs(s - 1) < 4 * s_se + 0.02, (s, s_se)
    assert s_se < 0.05  # the test has power


def test_resume_reproduces_metric_trajectory(pair, tmp_path):
    kw = dict(width=10, optimizer="langevin", temperature=0.02, lr=0.01, steps=30, replicas=2, log_points=30,
              checkpoint_every=1, **QUIET)
    full = train(pair, output_dir=tmp_path, run_name="full", **kw)
    with pytest.raises(RuntimeError, match="simulated"):
        train(pair, output_dir=tmp_path, run_name="cut", callbacks=[Interrupt(17)], **kw)
    resumed = train(pair, output_dir=tmp_path, run_name="cut", resume=True, **kw)
    np.testing.assert_array_equal(resumed.step, full.step)
    for name in ("train_loss", "test_loss", "centroid_distance", "unit_centroid_distance", "train_predictions"):
        np.testing.assert_allclose(getattr(resumed, name), getattr(full, name), rtol=1e-12, atol=1e-14)


def _wandb_records(path: Path):
    """Records of a wandb transaction log (.wandb: LevelDB-log framing of protobuf Records)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    b, pos, buf, block = path.read_bytes(), 7, b"", 32768  # 7-byte header ":W&B" + magic + version
    while pos + 7 <= len(b):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", b[pos : pos + 7])
        data, pos = b[pos + 7 : pos + 7 + n], pos + 7 + n
        buf = data if kind in (1, 2) else buf + data
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec


def test_wandb_offline_run_holds_logged_keys(pair, tmp_path):
    traj = train(pair, width=8, lr=0.01, steps=5, log_points=6, output_dir=tmp_path, run_name="wb",
                 wandb="offline", wandb_group="tests", wandb_tags=["ci"], progress_bar=False)
    runs = list((Path(traj.run_dir) / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    history, run, config_keys = {}, None, []
    for rec in _wandb_records(runs[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
        elif kind == "run":
            run = rec.run
            config_keys += [item.key for item in rec.run.config.update]
        elif kind == "config":  # Lightning's log_hyperparams of the module's saved hyperparameters
            config_keys += [item.key for item in rec.config.update]
    for key in ("train_loss/mean", "train/L1/centroid_distance/mean", "test/L1/knn_purity/sem",
                "weights/L1/displacement/r0", "weights/weight_moment_label/mean"):
        assert key in history, key
    np.testing.assert_allclose(history["train_loss/r0"], traj.train_loss[:, 0], rtol=1e-12)
    assert run.run_group == "tests" and list(run.tags) == ["ci"]
    assert config_keys.count("lr") == 1 and "data_fingerprint" in config_keys  # recorded once
    csv = next((Path(traj.run_dir) / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "train/L1/unit_class_radius_0/mean" in csv


def test_log_schedule():
    s = log_schedule(10_000, 100)
    assert s[0] == 0 and s[-1] == 10_000 and len(s) >= 100 and np.all(np.diff(s) > 0)
    assert np.array_equal(log_schedule(20, 100), np.arange(21))


def test_divergence_stops_with_clear_message(pair, tmp_path):
    with pytest.raises(FloatingPointError, match=r"step \d+.*learning rate"):
        train(pair, width=10, lr=50.0, steps=50, activation="identity", output_dir=tmp_path, run_name="nan",
              checkpoint_every=1, **QUIET)
    state = _state(tmp_path / "nan")
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


@pytest.mark.parametrize("kwargs,param", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(steps=0), "steps"), (dict(replicas=0), "replicas"),
    (dict(optimizer="langevin", temperature=-0.1), "temperature"), (dict(width=0), "width"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(activation="gelu"), "activation"),
    (dict(architecture="transformer"), "architecture"), (dict(optimizer="sgd", batch_size=61), "batch_size"),
    (dict(probe_size=1), "probe_size"), (dict(optimizer="langevin"), "temperature"),
    (dict(frozen_layers=(3,)), "frozen_layers"), (dict(temperature=0.1), "temperature"),
])
def test_bad_input_raises_before_training(pair, tmp_path, kwargs, param):
    args = dict(width=5, lr=0.1, steps=3, output_dir=tmp_path, **QUIET) | kwargs
    with pytest.raises(ValueError, match=param):
        train(pair, **args)
    assert not list(Path(tmp_path).rglob("*.ckpt"))
