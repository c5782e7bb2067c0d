"""Import deepbays 0.1.11 on a machine without CUDA.

deepbays imports ``cupy`` and ``from cupy.cuda import Device`` at import time (for its CUDA
variants, which the parity tests never use). This helper — the only place that does so — puts a
stand-in module for exactly those two names into ``sys.modules`` before importing deepbays, and
only when the real cupy is not importable. Nothing of the stand-in is ever called.
"""

from __future__ import annotations

import importlib
import sys
import types


def import_deepbays():
    """Return the ``deepbays`` module (stand-in ``cupy``/``cupy.cuda.Device`` if cupy is missing)."""
    try:
        importlib.import_module("cupy")
    except Exception:  # no cupy (or no CUDA): install the stand-in
        cupy = types.ModuleType("cupy")
        cuda = types.ModuleType("cupy.cuda")

        class Device:  # noqa: D401 - placeholder, never used by the CPU code paths
            def __init__(self, *args, **kwargs):
                raise RuntimeError("cupy stand-in: CUDA is not available in the gdeq test suite")

        cuda.Device = Device
        cupy.cuda = cuda
        cupy.pi = 3.141592653589793
        sys.modules.setdefault("cupy", cupy)
        sys.modules.setdefault("cupy.cuda", cuda)
    return importlib.import_module("deepbays")
