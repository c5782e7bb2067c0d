"""Regression tests of issue 10 on the gd_dynamics / CLI side (items 1, 4, 5, 7, 10, 15, 18, 19, 21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from training_helpers import Interrupt
import torch

from gdeq.gd_dynamics import load_task, train
from gdeq.gd_dynamics.trajectory import MODEL_IDENTITY_KEYS, TEMPERATURE_CONVENTION, Trajectory, posterior_deviations

QUIET = dict(wandb=None, progress_bar=False)


@pytest.fixture(scope="module")
def pair():
    return load_task("mnist", (3, 5), n_train=40, n_test=20, seed=1)


# --- item 1: the trajectory records the model and the posterior it samples --------------------------------
@pytest.mark.parametrize("extra,bad_keys", [
    (dict(), []),
    (dict(init="pytorch", bias=True), ["parameterisation", "init", "bias"]),
    (dict(reduction="mean"), ["reduction"]),
    (dict(frozen_layers=(1,)), ["frozen_layers"]),
    (dict(batch_size=10), ["batch_size"]),
])
def test_langevin_run_records_whether_it_samples_the_documented_posterior(pair, tmp_path, extra, bad_keys):
    traj = train(pair, width=6, optimizer="langevin", temperature=0.1, lr=0.001, steps=2, replicas=1, log_points=2,
                 output_dir=tmp_path, run_name="lv", **extra, **QUIET)
    assert tuple(traj.model_identity) == MODEL_IDENTITY_KEYS
    if "batch_size" in extra:  # a batch of every point is the full batch
        assert posterior_deviations(traj.model_identity, n_train=extra["batch_size"]) == [
            n for n in traj.posterior_notes if not n.startswith("batch_size")]
    assert traj.model_identity["temperature_convention"] == TEMPERATURE_CONVENTION
    assert traj.model_identity["widths"] == [6] and traj.model_identity["architecture"] == "fc"
    assert traj.samples_documented_posterior is (not bad_keys)
    assert [n.split("=")[0] for n in traj.posterior_notes] == bad_keys
    loaded = Trajectory.load(Path(traj.run_dir) / "trajectory")
    assert loaded.model_identity == traj.model_identity and loaded.posterior_notes == traj.posterior_notes


def test_gd_and_cnn_runs_record_their_identity(pair, tmp_path):
    gd = train(pair, width=5, lr=0.01, steps=1, log_points=2, output_dir=tmp_path, run_name="gd", **QUIET)
    assert gd.samples_documented_posterior is None and gd.model_identity["temperature_convention"] == "none"
    cnn = train(pair, width=2, architecture="cnn", kernel_size=5, optimizer="langevin", temperature=0.1, lr=1e-3,
                steps=1, log_points=2, output_dir=tmp_path, run_name="cnn", **QUIET)
    ident = cnn.model_identity
    assert ident["architecture"] == "cnn" and ident["widths"] == [2]
    assert ident["kernel_size"] == 5 and ident["image_shape"] == [1, 28, 28]
    assert cnn.samples_documented_posterior is False and cnn.posterior_notes[0].startswith("architecture='cnn'")


# --- item 4: independent replica streams -------------------------------------------------------------------
def _module(seed, replicas=4, **kw):
    from gdeq.gd_dynamics.config import TrainConfig
    from gdeq.gd_dynamics.module import GDModule

    cfg = TrainConfig(width=5, lr=0.1, steps=1, replicas=replicas, seed=seed, **kw)
    return GDModule(cfg, input_dim=12, n_outputs=1, n_train=10)


def test_runs_with_seeds_0_and_1_share_no_initial_network():
    """With seed + r, replica r of seed 0 was replica r − 1 of seed 1 (R − 1 shared networks)."""
    a, b = _module(0).model.weights[0].detach(), _module(1).model.weights[0].detach()
    for i in range(4):
        for j in range(4):
            assert not torch.equal(a[i], b[j]), (i, j)
    # and within a run every replica differs; the same seed reproduces the same networks
    assert all(not torch.equal(a[i], a[j]) for i in range(4) for j in range(i))
    assert torch.equal(a, _module(0).model.weights[0].detach())


def test_replica_seed_records_reproduce_a_replica_and_bad_ones_are_refused():
    from gdeq.gd_dynamics.seeds import replica_seed

    batched = _module(3, replicas=3).model.weights[0].detach()
    alone = _module([replica_seed(3, 2)], replicas=1).model.weights[0].detach()
    assert torch.equal(batched[2], alone[0])
    spawned = np.random.SeedSequence(3).spawn(3)[2]  # the documented scheme: SeedSequence(seed).spawn(R)
    assert torch.equal(_module([spawned], replicas=1).model.weights[0].detach()[0], batched[2])
    with pytest.raises(ValueError, match="seed"):
        _module([replica_seed(3, 0)], replicas=2)
    with pytest.raises(ValueError, match="seed"):
        _module(-1)


class _BatchRecorder(pl.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch[0].clone())


def test_sgd_replicas_draw_their_own_minibatch_order(pair, tmp_path):
    """Each replica passes over its own permutation (before: one order shared by all replicas)."""
    rec = _BatchRecorder()
    P, b = pair.n_train, 10
    traj = train(pair, width=4, optimizer="sgd", batch_size=b, lr=1e-3, steps=2 * P // b, replicas=2, seed=0,
                 log_points=2, output_dir=tmp_path, run_name="sgd", callbacks=[rec], **QUIET)
    x = torch.as_tensor(pair.x_train)
    rows = [[int(torch.nonzero((x == xi).all(1))[0]) for xi in batch[r]] for batch in rec.batches for r in range(2)]
    order = np.array(rows).reshape(len(rec.batches), 2, b).transpose(1, 0, 2).reshape(2, -1)  # (R, steps·b)
    epochs = order.reshape(2, 2, P)  # (R, epoch, P): every epoch of every replica is a permutation of 0..P-1
    assert all(sorted(epochs[r, e]) == list(range(P)) for r in range(2) for e in range(2))
    assert not np.array_equal(epochs[0, 0], epochs[1, 0])  # replicas differ
    assert not np.array_equal(epochs[0, 0], epochs[0, 1])  # epochs differ
    assert traj.seed_scheme.startswith("numpy SeedSequence")


def test_shared_batch_order_biases_the_mean_predictor_error_independent_orders_do_not():
    """The issue's simulation in closed form: R replicas f_r = g + e_r, where e_r is SGD's noise. With
    a shared batch order the e_r share a component c, so the replica mean keeps c and the bias-corrected
    mean-predictor error E|f̄ − y|² − Var_r/R is biased by |c|²; with independent orders it is not.
    Here, the noise comes from the per-replica batch orders of the data module itself."""
    from gdeq.gd_dynamics.datamodule import ReplicaEpochPermutation
    from gdeq.gd_dynamics.seeds import replica_seed_sequences

    P, b, R, trials = 40, 8, 4, 400

    def estimate(seeds_of_trial):
        errs = []
        for t in range(trials):
            perm = ReplicaEpochPermutation(P, b, seeds_of_trial(t)).permutations()  # (R, P)
            first = perm[:, :b]  # each replica's first minibatch: its SGD noise is where it looked
            f = np.zeros((R, P))
            for r in range(R):
                f[r, first[r]] += 1.0  # a unit update on the points of its batch
            fbar = f.mean(0)
            corrected = np.mean((fbar - f.mean()) ** 2) - f.var(0, ddof=1).mean() / R
            errs.append(corrected)
        return np.mean(errs), np.std(errs, ddof=1) / np.sqrt(trials)

    indep, indep_se = estimate(lambda t: replica_seed_sequences(t, R))
    shared, shared_se = estimate(lambda t: [replica_seed_sequences(t, R)[0]] * R)
    # the infinite-R mean predictor is b/P at every point: the corrected error of independent replicas is
    # unbiased (≈ 0); shared orders make all replicas equal, so it keeps the full (b/P)(1 − b/P) = 0.16
    assert abs(indep) < 4 * indep_se + 1e-3, (indep, indep_se)
    assert shared == pytest.approx((b / P) * (1 - b / P), rel=1e-12)
    assert shared > indep + 10 * max(shared_se, indep_se), (shared, indep)


# --- item 5: an explicit data dir is the only source ---------------------------------------------------------
def test_missing_or_empty_data_dir_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match=r"data_dir: /nonexistent does not exist"):
        load_task(data_dir="/nonexistent")
    with pytest.raises(ValueError, match=rf"data_dir: {tmp_path} has no mnist train data"):
        load_task(data_dir=tmp_path)
    monkeypatch.setenv("GDEQ_DATA_DIR", "/nonexistent-env-dir")  # the environment variable is explicit too
    with pytest.raises(ValueError, match="data_dir: /nonexistent-env-dir does not exist"):
        load_task()


def test_corrupt_archive_is_reported_as_corrupt_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    (tmp_path / "mnist_train.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match=rf"data_dir: {tmp_path / 'mnist_train.npz'} is corrupt"):
        load_task(data_dir=tmp_path)
    np.savez(tmp_path / "mnist_train.npz", pixels=np.zeros((4, 28, 28), np.uint8))  # wrong keys
    with pytest.raises(ValueError, match="is corrupt or not an npz archive with keys 'images' and 'labels'"):
        load_task(data_dir=tmp_path)


def test_short_data_dir_does_not_fall_back_to_the_embedded_set(tmp_path, monkeypatch):
    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.savez(tmp_path / f"mnist_{split}.npz", images=rng.integers(0, 255, (30, 28, 28), dtype=np.uint8),
                 labels=np.repeat(np.arange(10), 3))
    task = load_task("mnist", (3, 5), 4, 4, data_dir=tmp_path)
    assert task.source.startswith(str(tmp_path))
    with pytest.raises(ValueError, match=rf"n_train: not enough mnist train examples in data_dir {tmp_path}"):
        load_task("mnist", (3, 5), 400, 4, data_dir=tmp_path)  # the embedded set has 400; it must not be used


# --- item 7: the CNN's image shape has one home -----------------------------------------------------------------
def test_image_shape_is_inferred_by_the_model():
    from gdeq.gd_dynamics.models import infer_image_shape

    assert infer_image_shape(3 * 32 * 32) == (3, 32, 32)
    assert infer_image_shape(32 * 32) == (1, 32, 32)
    assert infer_image_shape(28 * 28) == (1, 28, 28)


def test_cli_trains_a_cnn_on_colour_cifar10(tmp_path, monkeypatch):
    """Before: the CLI passed (1, 32, 32) for colour CIFAR-10 and crashed with a size mismatch."""
    from gdeq.cli.cli import run

    monkeypatch.delenv("GDEQ_DATA_DIR", raising=False)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        np.savez(tmp_path / f"cifar10_{split}.npz", images=rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
                 labels=np.repeat(np.arange(10), n // 10))
    summary = run(["train", "--data.dataset=cifar10", f"--data.data_dir={tmp_path}", "--data.n_train=8",
                   "--data.n_test=4", "--architecture=cnn", "--width=2", "--steps=3", "--replicas=2",
                   "--log_points=2", "--lr=0.001", "--wandb=disabled", "--progress=false",
                   f"--output_dir={tmp_path}", "--run_name=cnn"])
    traj = Trajectory.load(Path(summary["run_dir"]) / "trajectory")
    assert traj.model_identity["image_shape"] == [3, 32, 32] and traj.model_identity["kernel_size"] == 5
    assert np.all(np.isfinite(traj.train_loss)) and traj.step[-1] == 3


def test_cnn_reads_channels_last_colour_images_like_conv2d():
    """ReplicaCNN on a flattened (H, W, C) image equals torch's conv2d on the (C, H, W) image."""
    from gdeq.gd_dynamics.models import ReplicaCNN

    torch.manual_seed(0)
    img = torch.randn(3, 3, 8, 8, dtype=torch.float64)  # (P, C, H, W)
    flat = img.permute(0, 2, 3, 1).reshape(3, -1)  # load_task's channels-last flattening
    net = ReplicaCNN((3, 8, 8), 4, 1, "identity", kernel_size=3, replicas=2, seeds=[1, 2])
    h = net.hidden_features(flat)[0]  # (R, P, C·H'·W')
    for r in range(2):
        ref = torch.nn.functional.conv2d(img, net.conv[r]) / np.sqrt(3 * 9)
        torch.testing.assert_close(h[r], ref.reshape(3, -1))
    # per-replica inputs (R, B, N0): replica r sees its own images
    per = torch.stack([flat, flat.flip(0)])
    h2 = net.hidden_features(per)[0]
    torch.testing.assert_close(h2[0], h[0])
    torch.testing.assert_close(h2[1], h[1].flip(0))


# --- item 10: a diverging run is one line and a non-zero exit ---------------------------------------------------
def test_cli_diverging_run_prints_one_line_and_exits_1(tmp_path, capsys):
    from gdeq.cli.cli import run

    with pytest.raises(SystemExit) as exit_info:
        run(["train", "--data.n_train=20", "--data.n_test=10", "--width=4", "--steps=50", "--replicas=1",
             "--lr=1e6", "--log_points=2", "--wandb=disabled", "--progress=false", f"--output_dir={tmp_path}"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gdeq: diverged: non-finite") and "lr=1000000" in err[0]
    with pytest.raises(SystemExit) as exit_info:  # bad input: one line, code 2
        run(["train", "--data.data_dir=/nonexistent", "--progress=false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gdeq: error: data_dir: /nonexistent")


# --- item 18: one validated configuration ---------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,param", [
    (dict(lr=float("nan")), "lr"), (dict(steps=1.5), "steps"), (dict(knn=0), "knn"),
    (dict(log_spacing="cubic"), "log_spacing"), (dict(prior_precisions=(1.0,)), "prior_precisions"),
    (dict(image_shape=(3, 32)), "image_shape"), (dict(data_seed=-2), "data_seed"), (dict(loss="hinge"), "loss"),
    (dict(width=(4, 4), architecture="cnn"), "width"), (dict(reduce_inputs=True, width=(3, 3)), "reduce_inputs"),
])
def test_train_config_names_the_bad_parameter(kwargs, param):
    from gdeq.gd_dynamics.config import TrainConfig

    with pytest.raises(ValueError, match=rf"^{param}:"):
        TrainConfig(**(dict(width=5, lr=0.1, steps=3) | kwargs))


def test_train_accepts_a_config_and_it_is_the_same_run(pair, tmp_path):
    import dataclasses

    from gdeq.gd_dynamics.config import TrainConfig

    cfg = TrainConfig(width=[5], lr=0.01, steps=4, replicas=2, log_points=3, seed=2)
    assert cfg.width == (5,) and cfg.reduction == "sum"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    a = train(pair, config=cfg, output_dir=tmp_path, run_name="a", **QUIET)
    b = train(pair, width=[5], lr=0.01, steps=4, replicas=2, log_points=3, seed=2, output_dir=tmp_path, run_name="b",
              **QUIET)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert a.config["lr"] == 0.01 and a.config["data_fingerprint"] == b.config["data_fingerprint"]
    with pytest.raises(ValueError, match="batch_size: must be in 1..40"):
        train(pair, config=dataclasses.replace(cfg, optimizer="sgd", batch_size=41), output_dir=tmp_path, **QUIET)


def test_sgd_resume_mid_epoch_is_bit_exact(pair, tmp_path):
    """Per-replica batch orders depend on (replica seed, epoch) only, so a resumed SGD run replays them."""
    kw = dict(width=6, optimizer="sgd", batch_size=10, lr=1e-3, steps=12, replicas=2, log_points=13,
              checkpoint_every=1, **QUIET)
    full = train(pair, output_dir=tmp_path, run_name="full", **kw)
    with pytest.raises(RuntimeError, match="simulated"):
        # the last checkpoint is at step 7: mid-way through the second epoch of 4 batches
        train(pair, output_dir=tmp_path, run_name="cut", callbacks=[Interrupt(8)], **kw)
    resumed = train(pair, output_dir=tmp_path, run_name="cut", resume=True, **kw)
    np.testing.assert_array_equal(resumed.step, full.step)
    np.testing.assert_array_equal(resumed.train_predictions, full.train_predictions)


# --- item 21: one progress bar per stage, not one line per "epoch" ------------------------------------------------
def test_a_training_run_draws_one_labelled_bar_a_few_times(pair, tmp_path, capfd):
    """Into a log file every redraw is a line; Lightning's default bar restarted every 100-step epoch
    and redrew at every step (600 lines here)."""
    train(pair, width=4, lr=1e-3, steps=600, log_points=3, layer_geometry=False, output_dir=tmp_path,
          run_name="bar", wandb=None, progress_bar=True)
    out = capfd.readouterr().out
    redraws = [seg for seg in out.replace("\r", "\n").split("\n") if seg.strip()]
    assert redraws and all(seg.startswith("bar:") for seg in redraws)
    assert len(redraws) <= 12, len(redraws)
    assert "600/600" in redraws[-1]


@pytest.mark.slow
def test_demo_progress_output_is_a_few_lines(tmp_path, capfd):
    """Every redraw of a bar is a line in a log file ('\\r' or '\\n'); before, Lightning redrew a
    per-epoch bar at every step (hundreds of lines for these 500 steps)."""
    from gdeq.cli.cli import run

    run(["demo", "--data.n_train=30", "--data.n_test=30", "--widths=[6, 12]", "--steps=[300, 200]",
         "--replicas=[3, 3]", "--levels=[nngp]", "--n_temperatures=5", "--sample_temperatures=[]",
         "--wandb=disabled", f"--output_dir={tmp_path}"])
    captured = capfd.readouterr()
    text = captured.out + captured.err
    lines = [seg for seg in text.replace("\r", "\n").split("\n") if seg.strip()]
    bars = [seg for seg in lines if seg.startswith(("gd-N6", "gd-N12"))]
    assert {seg.split(":")[0] for seg in bars} == {"gd-N6", "gd-N12"}  # one labelled bar per training run
    assert len(bars) <= 2 * 12, len(bars)
    assert len(lines) < 80, len(lines)
    assert "demo finished" in captured.out


# --- item 19: Lightning / torchmetrics idioms ----------------------------------------------------------------------
def test_replica_class_geometry_metric_accumulates_points_and_matches_the_shared_geometry():
    from gdeq import geometry
    from gdeq.gd_dynamics.callbacks import ReplicaClassGeometry

    rng = np.random.default_rng(0)
    R, p, N = 3, 24, 7
    phi = torch.as_tensor(rng.standard_normal((R, p, N)))
    labels = np.repeat([0, 1], p // 2)
    y = torch.as_tensor(np.where(labels == 1, 1.0, -1.0))
    metric = ReplicaClassGeometry(knn=3, replica_chunk=2)
    metric.update(phi[:, :10], torch.as_tensor(labels[:10]), y[:10])  # points arrive in two batches
    metric.update(phi[:, 10:], torch.as_tensor(labels[10:]), y[10:])
    got = metric.compute()
    for r in range(R):
        f = phi[r].numpy()
        ref = geometry.class_geometry(f @ f.T / N, labels, y.numpy())
        mu = [f[labels == c].mean(0) / np.sqrt(N) for c in (0, 1)]
        assert float(got["centroid_distance"][r]) == pytest.approx(np.sum((mu[0] - mu[1]) ** 2), rel=1e-12)
        assert float(got["distance_ratio"][r]) == pytest.approx(float(ref.distance_ratio), rel=1e-12)
    assert got["knn_purity"].shape == (R,) and got["calinski_harabasz"].shape == (R,)
    metric.reset()
    assert metric.features == []


def test_finite_check_reads_the_losses_the_hook_receives(pair, tmp_path):
    """FiniteCheck uses ``outputs`` of on_train_batch_end (the module no longer stashes ``last_loss``)."""
    from gdeq.gd_dynamics.callbacks import DivergenceError, FiniteCheck

    class Module:
        lr, n_train = 0.1, 4

        def parameters(self):
            return [torch.zeros(2)]

    trainer = type("T", (), {"global_step": 7, "checkpoint_callbacks": []})()
    FiniteCheck().on_train_batch_end(trainer, Module(), {"loss": 1.0, "per_replica": torch.tensor([1.0, 2.0])}, None, 0)
    with pytest.raises(DivergenceError, match=r"non-finite loss at step 7 \(replicas \[1\]\)"):
        FiniteCheck().on_train_batch_end(trainer, Module(), {"per_replica": torch.tensor([1.0, float("inf")])}, None, 0)
    from gdeq.gd_dynamics.module import GDModule

    assert not hasattr(GDModule, "last_loss")


def test_measurements_reach_the_loggers_through_lightning_once_per_step(pair, tmp_path):
    """Every measured step (here all of 0..6, more states than Lightning has batches) reaches the CSV
    logger exactly once, at its own step, with the trajectory's float64 values."""
    import csv

    traj = train(pair, width=5, lr=0.01, steps=6, replicas=2, log_points=7, output_dir=tmp_path, run_name="csv",
                 **QUIET)
    assert traj.step.tolist() == list(range(7))
    rows = list(csv.DictReader(next((Path(traj.run_dir) / "csv").rglob("metrics.csv")).open()))
    logged = [(int(r["step"]), float(r["train_loss/r1"])) for r in rows if r.get("train_loss/r1")]
    assert [s for s, _ in logged] == list(range(7))
    np.testing.assert_allclose([v for _, v in logged], traj.train_loss[:, 1], rtol=1e-15)
    mean = [float(r["train/L1/centroid_distance/mean"]) for r in rows if r.get("train/L1/centroid_distance/mean")]
    np.testing.assert_allclose(mean, traj.measures["train/L1/centroid_distance"].mean(1), rtol=1e-15)
