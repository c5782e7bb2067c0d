"""`gdeq data`: load a task and print what was loaded (sources, sizes, preprocessing)."""

from __future__ import annotations

import json

from gdeq.gd_dynamics import Preprocessing, load_task


def data(
    dataset: str = "mnist",
    classes: list = [3, 5],  # noqa: B006 - jsonargparse reads the default from here
    n_train: int = 400,
    n_test: int = 400,
    seed: int = 0,
    data_dir: str | None = None,
    per_class: bool = False,
    selection: str = "balanced",
    preprocessing: str = "default",
) -> dict:
    """Load a task and print its summary as JSON.

    Args:
        dataset: mnist, fashion-mnist, cifar10 or teacher.
        classes: two classes (±1), two groups like [[0,2,4,6,8],[1,3,5,7,9]] or "parity", or k classes (one-hot).
        n_train: training examples, in total (or per class with --per_class true).
        n_test: test examples, in total (or per class).
        seed: seed of the balanced draw.
        data_dir: directory with .npz files or torchvision's layout (default $GDEQ_DATA_DIR, torchvision, embedded MNIST).
        per_class: whether n_train/n_test count per class.
        selection: "balanced" (random, equal per class) or "first" (source order).
        preprocessing: "default" (centre, |x|² = N0) or "inversion-paper" (per-pixel standardisation).
    """
    prep = {"default": Preprocessing(), "inversion-paper": Preprocessing.inversion_paper()}.get(preprocessing)
    if prep is None:
        raise ValueError(f"preprocessing: must be 'default' or 'inversion-paper', got {preprocessing!r}")
    task = load_task(dataset, classes, n_train, n_test, seed, data_dir,
                     per_class=per_class, selection=selection, preprocessing=prep)
    summary = task.metadata()
    print(json.dumps(summary, indent=2))
    return summary
