"""`gdeq data`: load a task and print what was loaded (sources, sizes, preprocessing)."""

from __future__ import annotations

import json

from gdeq.cli.common import DataOptions
from gdeq.gd_dynamics import Preprocessing


def data(
    data: DataOptions = DataOptions(),  # noqa: B008 - frozen: a safe default
    per_class: bool = False,
    selection: str = "balanced",
    preprocessing: str = "default",
) -> dict:
    """Load a task and print its summary as JSON.

    Args:
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed, --data.data_dir).
        per_class: whether data.n_train/data.n_test count per class.
        selection: "balanced" (random, equal per class) or "first" (source order).
        preprocessing: "default" (centre, |x|² = N0) or "inversion-paper" (per-pixel standardisation).
    """
    prep = {"default": Preprocessing(), "inversion-paper": Preprocessing.inversion_paper()}.get(preprocessing)
    if prep is None:
        raise ValueError(f"preprocessing: must be 'default' or 'inversion-paper', got {preprocessing!r}")
    task = data.load(per_class=per_class, selection=selection, preprocessing=prep)
    summary = task.metadata()
    print(json.dumps(summary, indent=2))
    return summary
