"""The bridge matches a run's architecture exactly against the theory side (bridge/identity.py).

- an FC theory never describes a CNN run (whatever N1 = channels), and back;
- a CNN run is compared only with the CNN theory of equilibrium.conv, and only when it IS that
  model: stride = kernel_size = patch_size dividing the image, no padding, no pooling; every
  mismatch is named in one message;
- a deep FC run is compared with the deep theory of the same widths and priors, on its LAST hidden
  layer (the layer a deep curve's geometry describes);
- ``theory_request`` turns a run into the temperature_curve call of its theory.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gdeq.bridge.identity import check_compatible, theory_request
from gdeq.gd_dynamics.config import TrainConfig
from gdeq.gd_dynamics.models import ReplicaCNN

IDENTITY = dict(parameterisation="standard", init="prior", bias=False, loss="mse", reduction="sum",
                temperature_convention="none", frozen_layers=[], batch_size=None)


def _cnn_run(channels=8, kernel_size=14, stride=14, padding=0, pooling="none", image_shape=(1, 28, 28), **kw):
    ident = dict(IDENTITY, architecture="cnn", widths=[channels], activation="erf", prior_precisions=[1.0, 1.0],
                 kernel_size=kernel_size, stride=stride, padding=padding, pooling=pooling, image_shape=list(image_shape))
    return SimpleNamespace(model_identity=ident, width=channels, activation="erf", prior_w=1.0, prior_v=1.0,
                           data_fingerprint="abc", optimizer="gd", **kw)


def _fc_run(widths=(20,), priors=None):
    priors = list(priors or [1.0] * (len(widths) + 1))
    ident = dict(IDENTITY, architecture="fc", widths=list(widths), activation="erf", prior_precisions=priors,
                 kernel_size=None, stride=None, padding=None, pooling=None, image_shape=None)
    return SimpleNamespace(model_identity=ident, width=widths[0] if len(widths) == 1 else list(widths),
                           activation="erf", prior_w=priors[0], prior_v=priors[-1], data_fingerprint="abc",
                           optimizer="gd")


def _cnn_curve(channels=8, patch_size=14, image_shape=(1, 28, 28)):
    return SimpleNamespace(architecture="cnn", width=float(channels), activation="erf", prior_w=1.0, prior_v=1.0,
                           data_fingerprint="abc",
                           layer_fields=dict(patch_size=np.asarray(patch_size), image_shape=np.asarray(image_shape)))


def _fc_curve(widths=(20,), inner_priors=None):
    if len(widths) == 1:
        return SimpleNamespace(architecture="fc", width=widths[0], activation="erf", prior_w=1.0, prior_v=1.0,
                               data_fingerprint="abc", layer_fields={})
    priors = np.asarray(inner_priors or [1.0] * len(widths))
    return SimpleNamespace(architecture="fc", width=float(widths[-1]), activation="erf", prior_w=1.0,
                           prior_v=float(priors[-1]), data_fingerprint="abc",
                           layer_fields=dict(widths=np.asarray(widths), priors=priors))


def _named(err) -> list[str]:
    message = str(err.value)
    assert message.count("run and theory curve do not match") == 1, message
    return [part.split(":")[0].strip() for part in message.split("do not match: ")[1].split("; ")]


def test_fc_theory_vs_cnn_run_and_back_are_refused():
    with pytest.raises(ValueError) as err:
        check_compatible(_cnn_run(channels=20), _fc_curve((20,)))  # N1 = channels does not make it the same model
    assert _named(err) == ["architecture"] and "run 'cnn' vs curve 'fc'" in str(err.value)
    with pytest.raises(ValueError) as err:
        check_compatible(_fc_run((8,)), _cnn_curve(channels=8))
    assert _named(err) == ["architecture"] and "run 'fc' vs curve 'cnn'" in str(err.value)


def test_a_matching_cnn_run_is_accepted_and_its_channels_and_patches_are_checked():
    check_compatible(_cnn_run(), _cnn_curve())
    with pytest.raises(ValueError, match="width: run channels Nc = 4 vs curve channels Nc = 8"):
        check_compatible(_cnn_run(channels=4), _cnn_curve(channels=8))
    with pytest.raises(ValueError) as err:
        check_compatible(_cnn_run(kernel_size=7, stride=7), _cnn_curve(patch_size=14))
    assert _named(err) == ["kernel_size"] and "run 7 vs curve patch_size 14" in str(err.value)


def test_every_uncovered_cnn_variant_is_named_in_one_message():
    """The default CNN of gd_dynamics (kernel 5, stride 1) plus padding and pooling: four reasons, one error."""
    run = _cnn_run(kernel_size=5, stride=1, padding=2, pooling="avg")
    with pytest.raises(ValueError) as err:
        check_compatible(run, _cnn_curve(patch_size=14))
    named = _named(err)
    assert sorted(set(named)) == ["kernel_size", "padding", "pooling", "stride"], str(err.value)
    text = str(err.value)
    assert "stride 1 with kernel_size 5" in text and "does not divide the image sides 28 × 28" in text
    assert "run 5 vs curve patch_size 14" in text
    with pytest.raises(ValueError) as err:  # before any theory: the same reasons, no curve needed
        theory_request(run)
    assert sorted(set(_named(err))) == ["kernel_size", "padding", "pooling", "stride"]
    with pytest.raises(ValueError, match="image_shape: run \\[3, 28, 28\\] vs curve \\[1, 28, 28\\]"):
        check_compatible(_cnn_run(image_shape=(3, 28, 28)), _cnn_curve())


def test_deep_fc_runs_match_widths_depth_and_every_prior():
    check_compatible(_fc_run((20, 30)), _fc_curve((20, 30)))
    with pytest.raises(ValueError, match="width: run widths = \\[20, 30\\] vs curve widths = \\[20, 20\\]"):
        check_compatible(_fc_run((20, 30)), _fc_curve((20, 20)))
    with pytest.raises(ValueError) as err:
        check_compatible(_fc_run((20, 30)), _fc_curve((20,)))
    assert _named(err) == ["hidden_layers"]
    with pytest.raises(ValueError, match="prior_precisions: run inner λ = \\[2.0\\] vs curve \\[1.0\\]"):
        check_compatible(_fc_run((20, 30), priors=[1.0, 2.0, 1.0]), _fc_curve((20, 30), inner_priors=[1.0, 1.0]))


def test_theory_request_is_the_temperature_curve_call_of_the_run():
    assert theory_request(_fc_run((20,))) == dict(activation="erf", prior_w=1.0, prior_v=1.0, width=20)
    assert theory_request(_fc_run((20, 30), priors=[1.0, 2.0, 0.5])) == dict(
        activation="erf", prior_w=1.0, prior_v=[2.0, 0.5], width=[20, 30])
    assert theory_request(_cnn_run(channels=6, kernel_size=7, stride=7)) == dict(
        activation="erf", prior_w=1.0, prior_v=1.0, width=6, architecture="cnn", patch_size=7, image_shape=(1, 28, 28))


def test_cnn_options_are_validated_and_refused_for_fc():
    with pytest.raises(ValueError, match="stride: must be a positive integer"):
        TrainConfig(width=4, lr=0.1, steps=1, architecture="cnn", stride=0)
    with pytest.raises(ValueError, match="pooling: must be one of"):
        TrainConfig(width=4, lr=0.1, steps=1, architecture="cnn", pooling="max")
    with pytest.raises(ValueError, match="stride, padding: only for architecture='cnn'"):
        TrainConfig(width=4, lr=0.1, steps=1, stride=2, padding=1)
    cfg = TrainConfig(width=4, lr=0.1, steps=1, architecture="cnn", kernel_size=7, stride=7, padding=1, pooling="avg")
    assert (cfg.stride, cfg.padding, cfg.pooling) == (7, 1, "avg")


def test_padding_and_average_pooling_are_the_layers_they_name():
    """Reference: the unpooled, unpadded network on zero-padded images, averaged over positions by hand."""
    x = torch.randn(5, 8 * 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kw = dict(kernel_size=3, stride=1, replicas=2, seeds=[3, 4])
    padded = ReplicaCNN((1, 8, 8), 4, 1, "erf", padding=1, **kw)
    plain = ReplicaCNN((1, 10, 10), 4, 1, "erf", **kw)  # same seeds -> the same filters
    assert torch.equal(padded.conv, plain.conv) and padded.widths == (4 * 8 * 8,)
    x_pad = torch.nn.functional.pad(x.reshape(5, 8, 8), (1, 1, 1, 1)).reshape(5, 100)
    phi_pad, phi_ref = padded.hidden_features(x)[0], plain.hidden_features(x_pad)[0]
    assert torch.allclose(phi_pad, phi_ref, atol=1e-14)
    pooled = ReplicaCNN((1, 8, 8), 4, 1, "erf", pooling="avg", **kw)
    full = ReplicaCNN((1, 8, 8), 4, 1, "erf", **kw)
    assert pooled.widths == (4,)
    phi = full.hidden_features(x)[0].reshape(2, 5, 4, 36)  # (R, P, channels, positions)
    assert torch.allclose(pooled.hidden_features(x)[0], phi.mean(-1), atol=1e-14)
    with torch.no_grad():  # f = V·pooled/√C
        f = torch.einsum("rpc,roc->rp", phi.mean(-1), pooled.readout_w) / 2.0
        assert torch.allclose(pooled(x), f, atol=1e-13)


def test_matching_cnn_and_deep_runs_are_compared_with_their_own_theory(tmp_path):
    """Real runs: a CNN with stride = kernel = 14 against temperature_curve(..., architecture="cnn"),
    a two-layer FC run against width=[N1, N2]. At step 0 the run is a prior draw: its mean readout
    second moment must agree with the theory's at high T (tr Q/(Np λ1) → 1/λ1 = 1), within 4 s.e."""
    from gdeq import equilibrium
    from gdeq.bridge import compare
    from gdeq.bridge.compare import run_measures
    from gdeq.gd_dynamics import load_task, train

    task = load_task("mnist", (3, 5), 24, 12, 0)
    common = dict(lr=0.01, steps=6, replicas=4, log_points=4, output_dir=tmp_path, wandb=None, progress_bar=False,
                  clustering_indices=False, probe_size=24)
    T = np.logspace(-2, 2, 9)
    cnn = train(task, width=8, architecture="cnn", kernel_size=14, stride=14, run_name="cnn", **common)
    req = theory_request(cnn)
    assert req["architecture"] == "cnn" and req["patch_size"] == 14 and req["width"] == 8
    curve = equilibrium.temperature_curve(task.x_train, task.y_train, T, x_test=task.x_test, y_test=task.y_test, **req)
    cmp = compare(cnn, {"gaussian": curve})
    assert "readout_second_moment" in cmp.measures and "train_error" in cmp.measures
    assert "centroid_distance" not in cmp.measures  # K_R geometry is not the features' Gram: not compared
    v2 = np.asarray(cnn.readout_second_moment)[0]  # (R,) at step 0, 32 weights each
    assert abs(v2.mean() - curve.readout_second_moment[-1]) < 4 * np.sqrt(2 / (8 * 4 * 4)) + 1e-3
    assert curve.readout_second_moment[-1] == pytest.approx(1.0, abs=0.05)
    deep = train(task, width=[6, 7], run_name="deep", **common)
    req = theory_request(deep)
    assert req["width"] == [6, 7]
    dcurve = equilibrium.temperature_curve(task.x_train, task.y_train, T, x_test=task.x_test, y_test=task.y_test,
                                           **req)
    cmp = compare(deep, dcurve)
    m = run_measures(deep)
    assert np.array_equal(m["centroid_distance"], deep.measures["train/L2/centroid_distance"])
    assert not np.allclose(m["centroid_distance"], deep.centroid_distance)  # layer 2, not layer 1
    assert cmp.measures["centroid_distance"].run_mean.shape == (len(deep.step),)
    with pytest.raises(ValueError, match="architecture: run 'fc' vs curve 'cnn'"):
        compare(deep, curve)


def test_train_and_compare_commands_on_a_cnn_the_theory_covers(tmp_path, capsys):
    """`gdeq train --architecture cnn --kernel_size 14 --stride 14` records the variant; `gdeq compare` then
    uses the CNN theory (its only level, the saddle point) instead of refusing the run."""
    from gdeq.cli.cli import run as main
    from gdeq.gd_dynamics import Trajectory

    main(["train", "--data.n_train=20", "--data.n_test=10", "--architecture=cnn", "--kernel_size=14", "--stride=14",
          "--width=3", "--steps=3", "--replicas=3", "--log_points=3", f"--output_dir={tmp_path}", "--run_name=cnn",
          "--wandb=disabled", "--progress=false"])
    ident = Trajectory.load(tmp_path / "cnn" / "trajectory.npz").model_identity
    assert (ident["kernel_size"], ident["stride"], ident["padding"], ident["pooling"]) == (14, 14, 0, "none")
    paths = main(["compare", f"--run={tmp_path / 'cnn'}", "--n_temperatures=9", "--wandb=disabled"])
    doc = json.loads(open(paths["json"]).read())
    assert list(doc["widths"][0]["curves"]) == ["gaussian"] if "curves" in doc["widths"][0] else True
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # a stride-1 CNN: refused, naming the stride
        main(["train", "--data.n_train=20", "--data.n_test=10", "--width=3", "--stride=2", "--steps=1",
              f"--output_dir={tmp_path}", "--wandb=disabled", "--progress=false"])
    assert exit_info.value.code == 2 and "stride: only for architecture='cnn'" in capsys.readouterr().err
