"""Installed import names are gdeq's own (issue 10, item 20)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys


def test_distribution_adds_only_the_gdeq_top_level_name():
    dist = importlib.metadata.distribution("gdeq")
    assert dist.read_text("top_level.txt").split() == ["gdeq"]
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"gdeq": "gdeq.cli.cli:main"}


def test_generic_names_are_not_importable_outside_the_repository(tmp_path):
    # run from a directory that is not the repository, so the checkout's folders are not on sys.path
    code = ("import importlib.util as u, gdeq.geometry, gdeq.gd_dynamics, gdeq.equilibrium, gdeq.bridge, gdeq.cli.cli;"
            "print([n for n in ('geometry', 'gd_dynamics', 'equilibrium', 'bridge', 'scripts') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
