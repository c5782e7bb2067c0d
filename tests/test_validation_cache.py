"""Every cached validation row states the sampler config that produced it, and its stated command
reproduces that config (regression: rows made with seed 3 / R = 24 while the script hard-coded seed 1 /
R = 16, with nothing in the cache saying so)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "results" / "validation_samples.json"


ROWS = json.loads(CACHE.read_text())


@pytest.mark.parametrize("key", sorted(ROWS))
def test_row_carries_its_config_and_command(key, benchmark_script):
    script = benchmark_script("validate_equilibrium")
    row = ROWS[key]
    cfg = row["config"]
    for field in ("seed", "replicas", "burn_in", "sampling_time", "method", "data_seed", "code_version", "command",
                  "source"):
        assert field in cfg, f"{key}: config lacks {field}"
    assert cfg["replicas"] == row["replicas"], key  # the config agrees with what the sampler reported
    if row.get("n_measurements") is not None and cfg["sampling_time"] is not None:
        assert row["n_measurements"] == round(cfg["sampling_time"] / cfg["trajectory_length"]), key
    unknown = [f for f in ("seed", "burn_in", "sampling_time", "code_version") if cfg[f] is None]
    if unknown or cfg["command"] is None:
        assert "not recoverable" in cfg["source"], f"{key}: unknown {unknown} must be marked as not recoverable"
        return
    argv = shlex.split(cfg["command"])
    assert argv[:2] == ["python", "benchmarks/validate_equilibrium.py"], cfg["command"]
    args = script.parser().parse_args(argv[2:])
    assert args.only == key
    point = next(p for p in script.grid(full=True) if script.key(p) == key)
    rebuilt = script.sampler_config(point, args)
    for field in ("seed", "replicas", "burn_in", "sampling_time", "method", "data_seed"):
        assert rebuilt[field] == cfg[field], f"{key}: the command gives {field} = {rebuilt[field]}, row says {cfg[field]}"


def test_every_cached_gd_dynamics_file_has_its_provenance():
    folder = REPO / "docs" / "gd_dynamics_data"
    prov = json.loads((folder / "provenance.json").read_text())
    for path in folder.glob("*.json"):
        if path.name == "provenance.json":
            continue
        entry = prov.get(path.name)
        assert entry is not None, f"{path.name}: no provenance"
        assert entry["command"].startswith("python benchmarks/") and entry["cached_in"] and entry["config"]
        assert "not_recoverable" in entry  # what was not recorded is said, not implied


def test_benchmark_jsons_carry_config_and_commit():
    for path in (REPO / "benchmarks" / "results").glob("bench_*.json"):
        cfg = json.loads(path.read_text())["config"]
        assert cfg["git_commit"] and cfg["command"] and "threads" in cfg, path.name


def test_benchmark_scripts_are_loaded_by_the_conftest_fixture_only(benchmark_script):
    """Importing a benchmarks/*.py script as a module is written once, in tests/conftest.py (``benchmark_script``;
    it was copied into five test files): executed once per session, registered under its name."""
    import sys

    needle = "spec_from_" "file_location"  # split, so that this file does not hold it
    copies = [p.name for p in sorted(Path(__file__).resolve().parent.glob("*.py"))
              if p.name != "conftest.py" and needle in p.read_text()]
    assert copies == []
    module = benchmark_script("validate_equilibrium")
    assert benchmark_script("validate_equilibrium") is module and sys.modules["validate_equilibrium"] is module
    assert Path(module.__file__) == REPO / "benchmarks" / "validate_equilibrium.py"
