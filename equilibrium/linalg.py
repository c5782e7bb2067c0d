"""The symmetric eigendecomposition every equilibrium computation goes through (float64).

Why a helper: on CPU, ``torch.linalg.eigh`` is 1.3–1.8× slower than LAPACK's divide-and-conquer
driver called through scipy on the same array (P = 1500–2000, one thread; measured by
``benchmarks/bench_equilibrium.py``, which uses this same function for its floor). On CUDA torch's
own solver is the one to use. So: CPU tensors go through ``scipy.linalg.eigh`` on the numpy view (no
copy), every other device through ``torch.linalg.eigh``. Eigenvalues ascending, eigenvectors in
columns, as ``torch.linalg.eigh``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

__all__ = ["CPU_EIGH_DRIVER", "eigh"]

#: LAPACK driver used on CPU. "evd" (divide and conquer, ?syevd) was the fastest of evd/evr/ev at
#: P = 1500 and 2000 on one thread (benchmarks/bench_equilibrium.py --eigh-drivers prints all three).
CPU_EIGH_DRIVER = "evd"


def eigh(A: torch.Tensor, *, top: int | None = None, driver: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of the symmetric float64 matrix A.

    CPU: ``scipy.linalg.eigh(A.numpy(), driver=CPU_EIGH_DRIVER)`` (lower triangle, as torch);
    other devices: ``torch.linalg.eigh``. ``top=k`` returns only the k largest eigenpairs (still
    ascending): on CPU LAPACK's ?syevr computes just those (exact to working precision, 2–3× faster
    than the full decomposition for k ≪ n, e.g. 8 of 784). Raises ValueError for a non-square or
    non-float64 input or ``top`` outside [1, n].
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A: must be a square matrix, got shape {tuple(A.shape)}")
    if A.dtype != torch.float64:
        raise ValueError(f"A: must be float64 (theory is computed in double precision), got {A.dtype}")
    n = A.shape[0]
    if top is not None and not 1 <= top <= n:
        raise ValueError(f"top: must be in [1, {n}], got {top}")
    if A.device.type != "cpu":
        w, V = torch.linalg.eigh(A)
        return (w, V) if top is None else (w[n - top:], V[:, n - top:])
    a = A.detach().numpy()
    if not np.all(np.isfinite(a)):
        raise ValueError("A: contains non-finite values (NaN or inf)")
    if top is not None and top < n:
        w, V = scipy.linalg.eigh(a, lower=True, driver="evr", subset_by_index=(n - top, n - 1), check_finite=False)
    else:
        w, V = scipy.linalg.eigh(a, lower=True, driver=driver or CPU_EIGH_DRIVER, check_finite=False)
    return torch.from_numpy(w), torch.from_numpy(V)
