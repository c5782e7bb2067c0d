"""`gdeq validate` with the sampled level as the reference: error bars, diagnostics, convergence flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gdeq.cli.cli import run as main
from gdeq.equilibrium import SamplingConvergenceWarning

TINY = ["--data.n_train=12", "--data.n_test=6", "--widths=[3]", "--replicas=8"]


def test_validate_at_the_prior_agrees_with_the_infinite_width_level_and_writes_table_and_plot(tmp_path, capsys):
    """T = 10⁴ (the posterior is the prior): the adaptive sampler converges, and the raw centroid distance
    (linear in K_W, so exactly the NNGP value at the prior) agrees with the nngp level within 4 s.e.;
    every row carries the diagnostics; table and plot are written."""
    out = tmp_path / "v"
    rows = main(["validate", *TINY, "--temperatures=[10000]", "--levels=[nngp,sampled]", f"--output={out}"])
    text = capsys.readouterr().out
    assert {r["measure"] for r in rows} >= {"centroid_distance", "unit_centroid_distance", "unit_class_radius_0",
                                            "readout_second_moment", "test_bias2"}
    assert all(r["converged"] and r["rhat_max"] < 1.01 and r["ess_min"] >= 200 for r in rows)
    assert "NOT CONVERGED" not in text
    cd = next(r for r in rows if r["measure"] == "centroid_distance")
    assert cd["se"] > 0 and abs(cd["z[nngp]"]) < 4, cd
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["measure"] for r in saved] == [r["measure"] for r in rows]
    assert out.with_suffix(".png").stat().st_size > 1000 and out.with_suffix(".csv").exists()


def test_starved_validate_run_flags_every_row_and_the_printout(tmp_path, capsys):
    """A budget too small to reach R̂ < 1.01 and ESS ≥ 200 (max_trajectories = 44 per chain, tuning
    included): every row says converged = False and the printout marks it as not a result."""
    with pytest.warns(SamplingConvergenceWarning, match="T=0.05"):
        rows = main(["validate", *TINY, "--temperatures=[0.05]", "--levels=[gaussian]", "--max_trajectories=44",
                     f"--output={tmp_path / 's'}"])
    text = capsys.readouterr().out
    assert rows and not any(r["converged"] for r in rows)
    assert all(np.isfinite(r["z[gaussian]"]) for r in rows)
    assert "NOT CONVERGED (not a result)" in text and "N1 = 3, T = 0.05" in text


def test_validate_rejects_bad_sampler_settings_before_sampling(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate", *TINY, "--burn_in=3"])
    assert info.value.code == 2 and "burn_in/sampling_time" in capsys.readouterr().err
