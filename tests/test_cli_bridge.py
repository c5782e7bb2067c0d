"""The `gdeq` subcommands: help text for every option, YAML configs, clear errors, a resumable sweep."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from gdeq.cli.cli import commands, run as main

SUBCOMMANDS = ("train", "equilibrium", "compare", "validate", "sweep", "demo", "data")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help_text(name, capsys):
    fn = commands()[name]
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--config" in text
    doc = inspect.getdoc(fn)
    for param in inspect.signature(fn).parameters:
        assert f"--{param}" in text, param
        assert f"    {param}:" in doc, f"{name}: option {param} has no docstring help"


def test_bad_input_is_one_clear_error_before_any_work(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--replicas", "[2]", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "replicas" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was started
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--sample_min_temperature", "0", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "sample_min_temperature" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(["equilibrium", "--t_min", "0", "--output", str(tmp_path / "c")])
    assert "t_min" in capsys.readouterr().err


def test_equilibrium_from_a_yaml_config_matches_the_library(tmp_path, capsys):
    from gdeq import equilibrium
    from gdeq.gd_dynamics import load_task

    cfg = tmp_path / "eq.yaml"
    out = tmp_path / "curves"
    cfg.write_text(
        f"data:\n  n_train: 60\n  n_test: 40\nwidth: 30\nlevels: [gaussian]\nt_min: 0.01\nt_max: 10.0\n"
        f"n_temperatures: 7\noutput: {out}\n"
    )
    peaks = main(["equilibrium", "--config", str(cfg)])
    assert "centroid_distance" in capsys.readouterr().out
    rows = json.loads(out.with_suffix(".json").read_text())
    task = load_task("mnist", (3, 5), 60, 40, 0)
    ref = equilibrium.temperature_curve(task.x_train, task.y_train, np.logspace(-2, 1, 7), width=30,
                                        x_test=task.x_test, y_test=task.y_test, level="gaussian")
    np.testing.assert_allclose([r["centroid_distance"] for r in rows], ref.centroid_distance, rtol=1e-10)
    np.testing.assert_allclose([r["train_error"] for r in rows], ref.train_error, rtol=1e-10)
    # the turning-point table: one row per level and measure, with the shape the curve has
    assert isinstance(peaks, list) and {p["level"] for p in peaks} == {"gaussian"}
    by_measure = {p["measure"]: p for p in peaks}
    assert {"train_error", "test_error", "centroid_distance"} <= set(by_measure)
    # the mean predictor's training error T²|A⁻¹y|²/P grows with T (closed form): monotone, no T*
    assert np.all(np.diff(ref.train_error) > 0)
    assert by_measure["train_error"]["shape"] == "increasing" and by_measure["train_error"]["T_star"] is None
    for p in peaks:
        assert (p["T_star"] is not None) == (p["shape"] in ("peak", "dip"))
        if p["T_star"] is not None:
            assert 0.01 <= p["T_star"] <= 10.0
    written = json.loads(out.with_name("curves_turning_points").with_suffix(".json").read_text())
    assert written == json.loads(json.dumps(peaks))


class Interrupted(Exception):
    pass


def test_sweep_killed_halfway_resumes_without_redoing_finished_cells(tmp_path):
    from gdeq.bridge.experiments import expand_grid, run_sweep, sweep_cell

    cells = expand_grid(["fc"], [8, 16], ["erf"], ["mnist"], [[3, 5], [4, 9]])
    for c in cells:
        c.update(n_train=40, n_test=40, steps=30, replicas=3, log_points=12)
    calls: list[dict] = []

    def counting(cell, *, output_dir, kill_after=None):
        calls.append(cell)
        if kill_after is not None and len(calls) > kill_after:
            raise Interrupted("killed")
        return sweep_cell(cell, output_dir=output_dir)

    with pytest.raises(Interrupted):
        run_sweep(cells, output_dir=tmp_path, cell_fn=lambda c, output_dir: counting(c, output_dir=output_dir,
                                                                                    kill_after=2), progress=False)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2  # two finished cells on disk, nothing half-written
    assert not list((tmp_path / "cells").glob("*.tmp"))
    calls.clear()
    rows = run_sweep(cells, output_dir=tmp_path, cell_fn=lambda c, output_dir: counting(c, output_dir=output_dir),
                     progress=False)
    assert len(calls) == 2 and calls == cells[2:]  # only the unfinished cells ran
    assert len(rows) == 4 and [r["config"] for r in rows] == cells
    for r in rows:  # a real table: T_eff and the theory's turning point per cell
        assert r["theory_shape"] in ("peak", "dip", "increasing", "decreasing", "flat")
        assert 0 <= r["final_test_error"] < 2 and r["peak_distance"] > 0
    assert (tmp_path / "sweep.csv").is_file()
    calls.clear()
    run_sweep(cells, output_dir=tmp_path, cell_fn=lambda c, output_dir: counting(c, output_dir=output_dir),
              progress=False)
    assert calls == []


def test_sweep_command_runs_a_single_cell_as_a_wandb_agent_would(tmp_path, capsys):
    argv = ["sweep", "--architectures=fc", "--widths=8", "--activations=erf", "--datasets=mnist",
            "--class_pairs=[3, 5]", "--n_train=40", "--n_test=40", "--steps=20", "--replicas=3",
            f"--output_dir={tmp_path}", "--wandb=disabled", "--progress=false"]
    rows = main(argv)
    assert len(rows) == 1 and rows[0]["width"] == 8 and rows[0]["classes"] == [3, 5]
    assert len(list((tmp_path / "cells").glob("*.json"))) == 1
    assert "table:" in capsys.readouterr().out


@pytest.mark.slow
def test_full_demo_command_writes_its_report(tmp_path, capsys):
    """The README's main command with its defaults (a few minutes on 2 cores)."""
    result = main(["demo", f"--output_dir={tmp_path}", "--progress=false"])
    out = capsys.readouterr().out
    assert "demo finished" in out and "N1 = 20" in out and "N1 = 400" in out
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "Where each side is non-monotonic" in report and "Theory vs sampling" in report
    doc = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert [w["width"] for w in doc["widths"]] == [20, 400]
    assert result["seconds"] > 0


def test_compare_command_on_a_saved_langevin_run_reports_the_consistency_check(tmp_path, capsys):
    main(["train", "--data.n_train=40", "--data.n_test=40", "--width=20", "--optimizer=langevin", "--temperature=1.0",
          "--steps=1500", "--replicas=8", "--log_points=20", f"--output_dir={tmp_path}", "--run_name=lgv",
          "--wandb=disabled", "--progress=false"])
    paths = main(["compare", f"--run={tmp_path / 'lgv'}", "--levels=[gaussian]", "--n_temperatures=25",
                  "--wandb=disabled"])
    out = capsys.readouterr().out
    assert "consistency [gaussian]: Langevin at T0 = 1" in out
    doc = json.loads(open(paths["json"]).read())
    check = doc["widths"][0]["consistency"]["gaussian"]
    assert check["claimed_temperature"] == 1.0 and check["temperature"] is not None
    # a Langevin run at T0 = 1 maps back to T0: the check passes (not just printed)
    assert check["passed"] is True, check["message"]
    assert check["within_error_bars"] or abs(check["relative_deviation"]) <= 0.1
    assert ": consistent" in check["message"]
    with pytest.raises(SystemExit) as exit_info:  # a path that is not a run: one clear error
        main(["compare", f"--run={tmp_path / 'nothing'}"])
    assert exit_info.value.code == 2


def test_compare_command_refuses_a_run_of_another_model_before_computing_theory(tmp_path, capsys, monkeypatch):
    """A CNN run (width = channels) used to get a fully connected theory curve; now one clear error: the
    default CNN (kernel 5, stride 1: overlapping patches) is not the model of the CNN theory."""
    from gdeq.bridge import experiments
    from gdeq.gd_dynamics import load_task, train

    task = load_task("mnist", (3, 5), 20, 10, 0)
    train(task, width=4, architecture="cnn", lr=1e-3, steps=1, replicas=1, log_points=2, output_dir=tmp_path,
          run_name="cnn", wandb=None, progress_bar=False, clustering_indices=False, layer_geometry=False)
    computed = []
    monkeypatch.setattr(experiments, "theory_curves", lambda *a, **k: computed.append(1))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", f"--run={tmp_path / 'cnn'}", "--wandb=disabled"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "stride: run stride 1 with kernel_size 5" in err and "Traceback" not in err
    assert "kernel_size: 5 does not divide the image sides 28 × 28" in err
    assert computed == []  # refused before any theory curve


def test_sweep_cell_trains_a_cnn_on_colour_cifar10(tmp_path, shared_data_dir):
    """The sweep used to pass its own image shape (1, 32, 32) for colour CIFAR-10 (3 × 32 × 32 inputs) and
    crash with a tensor size mismatch; the model infers the shape from the data, and the cell gets the CNN
    theory of that model (3 channels, 16 × 16 patches)."""
    from gdeq.bridge.experiments import sweep_cell

    row = sweep_cell(dict(architecture="cnn", width=4, activation="erf", dataset="cifar10", classes=[3, 5],
                          n_train=40, n_test=20, steps=5, replicas=2, log_points=4, data_dir=str(shared_data_dir)),
                     output_dir=tmp_path)
    assert row["theory_level"] == "renormalised" and row["image_shape"] == [3, 32, 32] and row["patch_size"] == 16
    assert 0 <= row["final_test_error"] < 4


@pytest.mark.slow
def test_sweep_command_compares_architectures_each_with_its_own_theory(tmp_path, capsys):
    """fc2 and cnn cells through the submitit engine (debug executor: in this process; ~1 min): each row carries
    the theory of its own architecture; T_eff(final) and the theory's test error there are checked against
    an independently computed curve of the same model."""
    from gdeq import equilibrium
    from gdeq.gd_dynamics import load_task

    argv = ["sweep", "--architectures=[fc2, cnn]", "--widths=6", "--class_pairs=[3, 5]", "--n_train=30", "--n_test=20",
            "--steps=15", "--replicas=3", "--log_points=6", f"--output_dir={tmp_path}", "--wandb=disabled",
            "--progress=false", "--engine=submitit", "--cluster=debug"]
    rows = main(argv)
    assert [(r["architecture"], r["hidden_layers"]) for r in rows] == [("fc2", 2), ("cnn", 1)]
    assert all(r["theory_level"] == "renormalised" for r in rows) and rows[1]["patch_size"] == 14
    task = load_task("mnist", [3, 5], 30, 20, 0)
    for r, kw in zip(rows, (dict(width=[6, 6]), dict(width=6, architecture="cnn", patch_size=14,
                                                       image_shape=(1, 28, 28)))):
        T = np.logspace(-4, 2, 49)
        curve = equilibrium.temperature_curve(task.x_train, task.y_train, T, x_test=task.x_test, y_test=task.y_test,
                                              **kw)
        assert np.isfinite(r["T_eff_final"]) and T[0] <= r["T_eff_final"] <= T[-1]
        expected = np.interp(np.log(r["T_eff_final"]), np.log(T), curve.test_error)
        assert r["theory_test_error_at_T_eff"] == pytest.approx(expected, rel=0.02)
    assert (tmp_path / "sweep.md").read_text().count("| renormalised |") == 2
    assert len(list((tmp_path / "figures").glob("sweep_*.png"))) == 7
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["command"].startswith("gdeq sweep --architectures") and prov["cells_finished"] == 2
    assert "2 of 2 cells finished" in capsys.readouterr().out
