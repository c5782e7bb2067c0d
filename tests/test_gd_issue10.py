"""Regression tests of issue 10 on the gd_dynamics / CLI side (items 1, 4, 5, 7, 10, 15, 18, 19, 21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gdeq.gd_dynamics import load_task, train
from gdeq.gd_dynamics.trajectory import MODEL_IDENTITY_KEYS, TEMPERATURE_CONVENTION, Trajectory

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
