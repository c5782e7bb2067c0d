"""Shared test fixtures: the real data beside the clone, offline mode, wandb offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests use small matrices: one thread each avoids oversubscribing the 2 CI cores (measured:
# the Langevin round-trip test took 220 s with torch's default threads under load, 33 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread settings)

torch.set_num_threads(1)

# Tests never touch the network: no torchvision downloads, wandb offline.
os.environ.setdefault("GDEQ_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` beside the clone (full MNIST, CIFAR-10 subsets)."""
    if not (SHARED_DATA / "mnist_train.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def deepbays():
    """deepbays 0.1.11 (dev extra) with a CPU stand-in for cupy; skipped when it is not installed."""
    from deepbays_stub import import_deepbays

    try:
        return import_deepbays()
    except ImportError:
        pytest.skip("deepbays (dev extra) not installed")
