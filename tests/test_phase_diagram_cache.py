"""The phase-diagram caches (benchmarks/results/phase_diagram/*.json, docs/findings.md) state what made them,
their stated commands reproduce their configs, their convergence flags follow from their own diagnostics, and
the analysis in the script computes what docs/findings.md says it computes."""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "phase_diagram.py"
FILES = sorted((REPO / "benchmarks" / "results" / "phase_diagram").glob("*.json"))


def _row(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_cached_slices():
    assert len(FILES) >= 3


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_sampled_part_carries_a_command_that_reproduces_its_config(path, benchmark_script):
    script, row = benchmark_script("phase_diagram"), _row(path)
    c = row["config"]
    assert len(row["commit"]) == 40 and row["seconds"] > 0
    argv = shlex.split(row["command"])
    assert argv[:2] == ["python", "benchmarks/phase_diagram.py"], row["command"]
    args = script.parser().parse_args(argv[2:])
    assert c["task"] in args.tasks and c["alpha"] in args.alphas
    assert path.stem == script._key(c["task"], c["n_train"], c["alpha"])
    assert (args.n_train, args.n_test) == (c["n_train"], c["n_test"])
    assert c["width"] == max(1, round(c["n_train"] / c["alpha"]))
    np.testing.assert_allclose(c["temperatures"], np.geomspace(args.t_max, args.t_min, args.n_temperatures))
    assert len(c["temperatures"]) >= 10 and max(c["temperatures"]) >= 3 and min(c["temperatures"]) <= 0.003
    s = c["sampler"]
    for name in ("replicas", "max_trajectories", "max_seconds", "seed", "tempering"):
        assert s[name] == getattr(args, name), f"{path.name}: the command gives {name} = {getattr(args, name)}, row says {s[name]}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_converged_flags_follow_from_the_stored_diagnostics(path):
    """converged ⇔ every observable's R̂ < rhat_max and bulk and tail ESS ≥ ess_min (recomputed here)."""
    row = _row(path)
    s = row["config"]["sampler"]
    for flag, d in zip(row["converged"], row["diagnostics"], strict=True):
        ok = all(d["rhat"][k] < s["rhat_max"] and min(d["ess_bulk"][k], d["ess_tail"][k]) >= s["ess_min"]
                 for k in d["rhat"])
        assert flag == ok, f"{path.name}, T = {d['T']:.3g}: flag {flag}, diagnostics say {ok}"
    # every unconverged temperature is named in the sampler's warning
    if not all(row["converged"]):
        assert any("not converged" in w for w in row["warnings"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_theory_levels_describe_the_same_setting(path):
    row = _row(path)
    T = np.asarray(row["config"]["temperatures"])
    for level, part in row["theory"].items():
        if "provenance" in part:
            assert len(part["provenance"]["commit"]) == 40 and part["provenance"]["command"].startswith(
                "python benchmarks/phase_diagram.py")
        assert len(part["centroid_distance"]) == len(T)
    # infinite width: cᵀKc does not depend on T
    nngp = np.asarray(row["theory"]["nngp"]["centroid_distance"])
    np.testing.assert_allclose(nngp, nngp[0], rtol=1e-10)
    # at the hottest temperature the prior dominates: the leading-order level and the sample agree to a few %
    hot = int(np.argmax(T))
    sampled = row["sampled"]["centroid_distance"]["mean"][hot]
    assert abs(row["theory"]["gaussian"]["centroid_distance"][hot] / sampled - 1) < 0.05


@pytest.mark.parametrize("path", [p for p in FILES if "gd" in _row(p)], ids=lambda p: p.stem)
def test_gd_end_point_is_the_theory_model_and_its_temperatures_invert_the_sampled_curve(path, benchmark_script):
    script, row = benchmark_script("phase_diagram"), _row(path)
    g = row["gd"]
    cfg = g["config"]
    assert (cfg["optimizer"], cfg["activation"], cfg["init"], cfg["loss"], cfg["reduction"], cfg["bias"]) == (
        "gd", "erf", "prior", "mse", "sum", False)
    assert cfg["width"] == row["config"]["width"] and cfg["prior_precisions"] == [1.0, 1.0]
    assert g["command"].startswith("python benchmarks/phase_diagram.py") and len(g["commit"]) == 40
    for run_name, m in g["T_eff"].items():
        field = script.GD_MAPS[run_name]
        T, values, _ = script._converged_curve(row, field)
        value = g["end"][run_name]["mean"]
        if m["status"] == "ok":
            # a monotone inverse: T_eff lies between the two converged temperatures whose values bracket
            # the GD value (the interpolant between them is PCHIP, so only the bracket is checked)
            order = np.argsort(T)
            T, values = T[order], values[order]
            i = next(i for i in range(len(T) - 1) if min(values[i], values[i + 1]) <= value <= max(values[i], values[i + 1]))
            assert T[i] * (1 - 1e-9) <= m["T"] <= T[i + 1] * (1 + 1e-9), (run_name, m["T"], T[i], T[i + 1])
        elif m["status"] in ("colder", "hotter"):  # outside the converged range of the curve
            assert value < values.min() or value > values.max()


def test_peak_summary_on_a_constructed_curve(benchmark_script):
    """A curve with a known interior maximum: T of the max, its height over the coldest value in s.e.,
    unconverged temperatures ignored, drops counted."""
    script = benchmark_script("phase_diagram")
    T = [3.0, 1.0, 0.3, 0.1, 0.03]
    mean = [1.0, 2.0, 3.0, 2.5, 9.0]  # the last (coldest) is unconverged and must not count
    se = [0.1, 0.1, 0.1, 0.2, 0.1]
    row = dict(config=dict(temperatures=T), converged=[True, True, True, True, False],
               sampled=dict(centroid_distance=dict(mean=mean, se=se)))
    p = script.peak_summary(row, "centroid_distance")
    assert p["n"] == 4 and p["T_peak"] == 0.3 and p["low_T"] == 0.1 and p["interior"]
    assert p["z"] == pytest.approx(0.5 / np.hypot(0.1, 0.2))
    assert [(r["T_hot"], r["T_cold"]) for r in p["reversals"]] == [(0.3, 0.1)]
    # the last converged step towards T → 0 (0.3 → 0.1): down by 0.5 over √(0.1² + 0.2²)
    assert p["last_step_T"] == 0.3 and p["last_step_z"] == pytest.approx(-0.5 / np.hypot(0.1, 0.2))
    # monotone rise as T falls: the max is at the coldest converged temperature, z = 0, no interior max
    row["sampled"]["centroid_distance"]["mean"] = [1.0, 2.0, 3.0, 4.0, 0.0]
    p = script.peak_summary(row, "centroid_distance")
    assert p["T_peak"] == 0.1 and p["z"] == 0.0 and not p["interior"] and p["reversals"] == []


def test_theory_peak_ignores_the_iterates_of_failed_solves(benchmark_script):
    """A cached theory curve whose fixed point failed at the two coldest temperatures (older caches kept the
    last iterate, with the reason): those values are blanked, and the peak is taken over the converged part."""
    script = benchmark_script("phase_diagram")
    T = [3.0, 1.0, 0.3, 0.1, 0.03]
    fail = "self-consistent fields did not converge"
    part = dict(centroid_distance=[1.0, 2.0, 1.5, 80.0, 7.0], in_regime=[True, True, True, False, False],
                regime_reason=["", "", "", fail, f"importance weights heavy-tailed (Pareto k > 0.7); {fail}"])
    v = script.theory_values(part, "centroid_distance")
    np.testing.assert_array_equal(np.isnan(v), [False, False, False, True, True])
    q = script.theory_peak(dict(config=dict(temperatures=T), theory=dict(cavity=part)), "cavity")
    assert q["T_peak"] == 1.0 and q["interior"] and q["partial"] and q["T_range"] == (0.3, 3.0)
    assert q["rel"] == pytest.approx(2.0 / 1.5 - 1.0) and q["in_regime"]
    # without the reason every value is a result: the spike at T = 0.1 is the peak
    part["regime_reason"] = [""] * 5
    q = script.theory_peak(dict(config=dict(temperatures=T), theory=dict(cavity=part)), "cavity")
    assert q["T_peak"] == 0.1 and not q["partial"]


# ------------------------------------------------------------------------------------------------
# data provenance: load_task's sources (embedded MNIST subset, a data dir) select different examples
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_slice_records_the_data_it_was_computed_on(path, benchmark_script):
    script, row = benchmark_script("phase_diagram"), _row(path)
    d = row["config"]["data"]
    assert d["source"] and "/" not in d["source"]  # file names only, never a machine path
    for key in ("fingerprint", "test_fingerprint"):
        assert len(d[key]) == 16 and int(d[key], 16) >= 0
    # parts made after the fingerprint existed carry their own: the same data as the sampled part
    for part in [*row["theory"].values(), row.get("gd", {})]:
        if "data_fingerprint" in part:
            assert part["data_fingerprint"] == d["fingerprint"]
    if "data_backfill" in row:  # recorded afterwards: checked against the cached nngp level by its command
        assert row["data_backfill"]["command"].startswith("python benchmarks/phase_diagram.py --backfill-data")
        assert len(row["data_backfill"]["commit"]) == 40
    else:  # recorded by the sampling run: a --source in its command must be the recorded one
        src = script.parser().parse_args(shlex.split(row["command"])[2:]).source
        if src is not None:
            assert d["source"].startswith("embedded") == (src == "embedded")


def test_embedded_slices_fingerprint_is_the_embedded_subset(benchmark_script):
    """Recomputed here from the package's embedded MNIST subset (no data dir needed)."""
    script = benchmark_script("phase_diagram")
    rows = [_row(p) for p in FILES if _row(p)["config"]["data"]["source"].startswith("embedded")]
    assert rows, "no slice uses the embedded subset"
    for spec in sorted({r["config"]["task"] for r in rows}):
        task = script._task(spec, 100, 100, None, "embedded")
        rec = script.data_record(task)
        for r in rows:
            if r["config"]["task"] == spec and (r["config"]["n_train"], r["config"]["n_test"]) == (100, 100):
                assert (r["config"]["data"]["fingerprint"], r["config"]["data"]["test_fingerprint"]) == (
                    rec["fingerprint"], rec["test_fingerprint"])


def test_fingerprint_sees_the_examples_not_the_last_bits(benchmark_script):
    from gdeq.geometry import data_fingerprint

    script = benchmark_script("phase_diagram")
    fp9 = functools.partial(data_fingerprint, decimals=script.FINGERPRINT_DECIMALS)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)), np.array([1.0, -1, 1, -1, 1, -1])
    fp = fp9(x, y)
    assert fp9(x * (1 + 1e-14), y) == fp  # rounding noise of a preprocessing sum
    assert data_fingerprint(x * (1 + 1e-14), y) != data_fingerprint(x, y)  # the exact default sees it
    assert fp9(x[[1, 0, 2, 3, 4, 5]], y) != fp  # other order of examples
    assert fp9(x, -y) != fp  # other labels
    assert fp9(x[:5], y[:5]) != fp
    z = np.zeros(3)
    assert fp9(-z, y) == fp9(z, y)


def test_the_slices_fingerprint_is_geometrys(benchmark_script):
    """One data fingerprint in gdeq (regression: the script hashed with a copy of its own): the slice's data
    record is geometry.data_fingerprint with the script's rounding, the hash is sha256 of shape and float64
    bytes (computed here by hand), and the script holds no hashing of its own."""
    import hashlib
    from types import SimpleNamespace

    from gdeq.geometry import data_fingerprint

    script = benchmark_script("phase_diagram")
    rng = np.random.default_rng(2)
    task = SimpleNamespace(source="x | y", x_train=rng.standard_normal((5, 3)), y_train=np.sign(rng.standard_normal(5)),
                           x_test=rng.standard_normal((2, 3)), y_test=np.ones(2))
    rec = script.data_record(task)
    assert rec["fingerprint"] == data_fingerprint(task.x_train, task.y_train, decimals=9)
    assert rec["test_fingerprint"] == data_fingerprint(task.x_test, task.y_test, decimals=9)

    def by_hand(*arrays):
        h = hashlib.sha256()
        for a in arrays:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    assert rec["fingerprint"] == by_hand(np.round(task.x_train, 9), task.y_train)
    assert data_fingerprint(task.x_train, task.y_train) == by_hand(task.x_train, task.y_train)  # exact: the bridge's
    assert "hashlib" not in SCRIPT.read_text()
    with pytest.raises(ValueError, match="decimals"):
        data_fingerprint(task.x_train, task.y_train, decimals=1e-9)


def _fake_row(task: str, alpha: float, fingerprint: str | None) -> dict:
    T = [3.0, 0.3, 0.03]
    c = dict(task=task, alpha=alpha, width=10, n_train=100, temperatures=T)
    if fingerprint is not None:
        c["data"] = dict(source="embedded MNIST subset", fingerprint=fingerprint, test_fingerprint="0" * 16)
    m = dict(mean=[1.0, 2.0, 3.0], se=[0.1, 0.1, 0.1])
    return dict(config=c, converged=[True] * 3, sampled={k: m for k in ("centroid_distance", "unit_centroid_distance",
                                                                          "readout_second_moment")}, theory={})


def test_report_refuses_slices_of_one_task_on_different_data(monkeypatch, capsys, benchmark_script):
    script = benchmark_script("phase_diagram")
    same = [_fake_row("mnist:3,5", 1, "a" * 16), _fake_row("mnist:3,5", 2, "a" * 16), _fake_row("mnist:4,9", 2, "b" * 16)]
    assert script.data_mixing(same) == {}
    mixed = [*same, _fake_row("mnist:3,5", 5, "c" * 16)]
    assert script.data_mixing(mixed) == {"mnist:3,5": [("embedded MNIST subset", "a" * 16),
                                                      ("embedded MNIST subset", "c" * 16)]}
    assert set(script.data_mixing([_fake_row("cifar10:3,5", 2, None)])) == {"cifar10:3,5"}  # unrecorded
    monkeypatch.setattr(script, "_rows", lambda: [dict(r) for r in mixed])
    monkeypatch.setattr(script, "slice_table", lambda r: [])
    with pytest.raises(SystemExit, match="(?s)refused.*mnist:3,5"):
        script.report(script.parser().parse_args(["--report"]))
    script.report(script.parser().parse_args(["--report", "--allow-mixed-data"]))
    out = capsys.readouterr().out
    assert "Mixed data (flagged)" in out
    rows35 = [ln for ln in out.splitlines() if ln.startswith("| mnist:3,5 |")]
    rows49 = [ln for ln in out.splitlines() if ln.startswith("| mnist:4,9 |")]
    assert len(rows35) == 3 * 3 and len(rows49) == 3  # 3 slices × 3 measures; 1 × 3
    assert all("⚠" in ln for ln in rows35) and not any("⚠" in ln for ln in rows49)


def test_parts_are_refused_on_other_data_than_the_sampled_part(benchmark_script):
    from types import SimpleNamespace

    script = benchmark_script("phase_diagram")
    rng = np.random.default_rng(1)
    task = SimpleNamespace(source="embedded MNIST subset", x_train=rng.standard_normal((4, 3)),
                           y_train=np.ones(4), x_test=rng.standard_normal((2, 3)), y_test=np.ones(2))
    row = dict(config=dict(data=script.data_record(task)))
    script.check_same_data(row, task, "same")  # no error
    other = SimpleNamespace(**{**vars(task), "y_train": -np.ones(4)})
    with pytest.raises(RuntimeError, match="not the data of the cached slice"):
        script.check_same_data(row, other, "other")
    with pytest.raises(RuntimeError, match="no data fingerprint"):
        script.check_same_data(dict(config={}), task, "old")
