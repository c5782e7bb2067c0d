"""The sweep's scale-out engine: one submitit job per cell, resumable, results assembled by rerunning.

The cells here are stand-ins (a few lines of Python, no training) so that the jobs run in a second
each under submitit's LOCAL executor (real subprocesses, as on a cluster node); the real cell
function is exercised by tests/test_cli_bridge.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")
cloudpickle = pytest.importorskip("cloudpickle")

# the job processes unpickle the stand-in cell function by value (this test module is not importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def stand_in_cell(cell: dict, *, output_dir: str) -> dict:
    """Logs every start; the cell marked ``kill`` dies by SIGKILL half-way through its first attempt."""
    log = Path(output_dir) / f"started-{cell['width']}.log"
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if cell.get("kill") and not (Path(output_dir) / "killed-once").exists():
        (Path(output_dir) / "killed-once").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)  # the node dies mid-cell: no row, no exception
    return dict(architecture=cell["architecture"], width=cell["width"], square=cell["width"] ** 2)


def _cells():
    from gdeq.bridge.experiments import expand_grid

    cells = expand_grid(["fc1"], [2, 3, 5], ["erf"], ["mnist"], [[3, 5]])
    cells[1]["kill"] = True
    return cells


def _starts(tmp_path: Path) -> dict[int, int]:
    return {w: len((tmp_path / f"started-{w}.log").read_text().split()) if (tmp_path / f"started-{w}.log").exists()
            else 0 for w in (2, 3, 5)}


def test_a_cell_killed_midway_reruns_alone_under_the_local_executor(tmp_path):
    from gdeq.bridge.experiments import cell_id, make_executor, sweep_status

    cells = _cells()
    executor = make_executor(tmp_path / "submitit", cluster="local", timeout_min=5)
    first = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, progress=False)
    assert sorted(first.submitted) == sorted(cell_id(c) for c in cells)
    assert list(first.failed) == [cell_id(cells[1])]  # the killed job left no row, and is reported
    assert [r["width"] for r in first.rows] == [2, 5] and not first.complete
    assert not list((tmp_path / "cells").glob("*.tmp"))  # nothing half-written
    assert json.loads((tmp_path / "sweep.json").read_text()) == first.rows  # the partial table is assembled

    again = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, progress=False)
    assert again.submitted == [cell_id(cells[1])] and again.complete  # only the killed cell ran again
    assert _starts(tmp_path) == {2: 1, 3: 2, 5: 1}  # the other cells were not recomputed
    assert [r["square"] for r in again.rows] == [4, 9, 25]  # grid order, every cell
    assert [r["config"] for r in again.rows] == cells

    third = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, progress=False)
    assert third.submitted == [] and third.rows == again.rows and _starts(tmp_path) == {2: 1, 3: 2, 5: 1}


def test_a_cell_whose_job_is_still_queued_is_not_submitted_twice(tmp_path, monkeypatch):
    """Without waiting (the cluster workflow), a rerun leaves cells with a PENDING/RUNNING job alone."""
    from gdeq.bridge import experiments
    from gdeq.bridge.experiments import cell_id, make_executor, sweep_status

    cells = [c for c in _cells() if not c.get("kill")]
    executor = make_executor(tmp_path / "submitit", cluster="debug")  # in-process jobs, run on result()
    first = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, wait=False,
                         progress=False)
    assert sorted(first.submitted) == sorted(cell_id(c) for c in cells) and first.rows == []
    assert sorted(p.stem for p in (tmp_path / "jobs").glob("*.json")) == sorted(first.submitted)
    monkeypatch.setattr(experiments, "_recorded_job_state", lambda ex, record: "RUNNING")
    second = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, progress=False)
    assert second.submitted == [] and sorted(second.pending) == sorted(first.submitted)
    monkeypatch.setattr(experiments, "_recorded_job_state", lambda ex, record: "FAILED")
    third = sweep_status(cells, output_dir=tmp_path, cell_fn=stand_in_cell, executor=executor, progress=False)
    assert sorted(third.submitted) == sorted(first.submitted) and third.complete
    assert [r["square"] for r in third.rows] == [4, 25]


def test_bad_engine_options_are_refused_before_any_work(tmp_path):
    from gdeq.bridge.experiments import make_executor, parse_architecture

    with pytest.raises(ValueError, match="cluster: must be"):
        make_executor(tmp_path, cluster="pbs")
    with pytest.raises(ValueError, match="timeout_min"):
        make_executor(tmp_path, cluster="local", timeout_min=0)
    with pytest.raises(ValueError, match="architectures: each must be"):
        parse_architecture("resnet")
    assert parse_architecture("fc") == ("fc", 1) and parse_architecture("FC3") == ("fc", 3)
    assert parse_architecture("cnn") == ("cnn", 1)
    with pytest.raises(ValueError, match="architectures"):
        parse_architecture("fc0")
    from gdeq.bridge.experiments import expand_grid

    with pytest.raises(ValueError, match="activations: the cnn theory has"):
        expand_grid(["fc1", "cnn"], [4], ["tanh"], ["mnist"], [[3, 5]])  # before any cell trains


def test_one_table_and_one_figure_per_measure_across_architectures(tmp_path):
    """Rows of two architectures: the table says 'none (<shape>)' where a side has no turning point (never
    a made-up number), and every measure gets its own figure."""
    from gdeq.bridge.experiments import SWEEP_FIGURES, sweep_figures, sweep_markdown

    base = dict(activation="erf", dataset="mnist", classes=[3, 5], replicas=4, theory_converged=True)
    rows = [dict(base, architecture="fc1", width=20, inversion="dip", inversion_step=120.0, inversion_step_se=8.0,
                 inversion_relative_excursion=0.05, replicas_turning=3, replicas_turning_fraction=0.75,
                 T_eff_at_inversion=0.2, distance_shape="peak", peak_distance_step=49.0, theory_shape="peak",
                 theory_peak_T=0.17, theory_radius_shape="dip", theory_radius_T=0.13, final_test_error=0.58,
                 theory_test_error_at_T_eff=0.7, theory_level="gaussian"),
            dict(base, architecture="cnn", width=20, inversion="decreasing", inversion_step=float("nan"),
                 replicas_turning=0, replicas_turning_fraction=0.0, distance_shape="increasing",
                 peak_distance_step=2000.0, theory_shape="dip", theory_peak_T=float("nan"),
                 theory_radius_shape="increasing", final_test_error=0.57, theory_test_error_at_T_eff=0.62,
                 theory_level="renormalised", theory_converged=False)]
    table = sweep_markdown(rows).splitlines()
    assert len(table) == 4
    assert "| 120 ± 8 |" in table[2] and "| 3/4 |" in table[2] and "| 49 |" in table[2] and "| 0.17 |" in table[2]
    assert "none (decreasing)" in table[3] and "none (increasing)" in table[3] and "none (dip)" in table[3]
    assert "NOT converged" in table[3] and "2e+03" not in table[3]  # a monotone run has no peak step
    paths = sweep_figures(rows, tmp_path)
    assert set(paths) == set(SWEEP_FIGURES) and all(p.stat().st_size > 1000 for p in paths.values())
