"""Shared test fixtures: the real data beside the clone, offline mode, wandb offline."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

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


@functools.lru_cache(maxsize=None)
def _benchmark_module(name: str) -> ModuleType:
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a script's dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("phase_diagram")``: benchmarks/phase_diagram.py imported as a module (the scripts are not
    a package), executed once per session. Tests that change its attributes use monkeypatch."""
    return _benchmark_module


@pytest.fixture(scope="module")
def deepbays():
    """deepbays 0.1.11 (dev extra) with a CPU stand-in for cupy; skipped when it is not installed."""
    from deepbays_stub import import_deepbays

    try:
        return import_deepbays()
    except ImportError:
        pytest.skip("deepbays (dev extra) not installed")
