"""Independent random streams per replica (numpy ``SeedSequence``), defined once for training.

A run with integer ``seed`` and R replicas gives replica r the sequence
``SeedSequence(seed).spawn(R)[r]`` (= ``SeedSequence(entropy=seed, spawn_key=(r,))``). Every random
choice of replica r comes from a child of its own sequence, one per :data:`STREAMS` entry: initial
weights, Langevin noise, the prior draw of the test-input remainder, and the minibatch order. Runs
with seeds 0 and 1 therefore share no network and no batch order (``seed + r`` made them share
R − 1), and replica r of a batched run equals a one-replica run given ``seed=[replica_seed(seed, r)]``.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

__all__ = ["SEED_SCHEME", "STREAMS", "SeedSpec", "replica_seed", "replica_seed_sequences", "seed_spec",
           "stream_seed", "stream_rng"]

#: The random streams of one replica, in spawn-key order.
STREAMS: tuple[str, ...] = ("init", "noise", "test_remainder", "batch_order")

#: What ``Trajectory.seeds`` holds (recorded in every trajectory).
SEED_SCHEME = ("numpy SeedSequence: replica r = SeedSequence(entropy, spawn_key) as recorded in seeds[r] "
               "(an integer seed s gives entropy=s, spawn_key=(r,)); its streams init, noise, test_remainder, "
               "batch_order are the children spawn_key + (0|1|2|3,)")

#: One replica's seed: a ``numpy.random.SeedSequence`` or its record ``{"entropy": int, "spawn_key": [...]}``.
SeedSpec = Union[np.random.SeedSequence, dict]


def replica_seed(seed: int, replica: int) -> dict:
    """The record of replica ``replica`` of a run with integer ``seed``."""
    return {"entropy": int(seed), "spawn_key": [int(replica)]}


def _as_sequence(spec: SeedSpec) -> np.random.SeedSequence:
    if isinstance(spec, np.random.SeedSequence):
        return spec
    if isinstance(spec, dict) and set(spec) == {"entropy", "spawn_key"}:
        return np.random.SeedSequence(int(spec["entropy"]), spawn_key=tuple(int(k) for k in spec["spawn_key"]))
    raise ValueError(f"seed: a replica seed must be a SeedSequence or {{'entropy': int, 'spawn_key': [...]}}, got {spec!r}")


def seed_spec(spec: SeedSpec) -> dict:
    """The JSON record ``{"entropy", "spawn_key"}`` of a replica seed."""
    ss = _as_sequence(spec)
    return {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]}


def replica_seed_sequences(seed: int | Sequence[SeedSpec], replicas: int) -> list[np.random.SeedSequence]:
    """One independent ``SeedSequence`` per replica: ``SeedSequence(seed).spawn(R)`` for an integer
    ``seed``, or the ``replicas`` given sequences/records (a run reproducing chosen replicas)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {seed}")
        return np.random.SeedSequence(int(seed)).spawn(int(replicas))
    specs = list(seed) if isinstance(seed, (list, tuple)) else None
    if specs is None or len(specs) != replicas:
        raise ValueError(f"seed: an integer or one replica seed per replica ({replicas}), got {seed!r}")
    return [_as_sequence(s) for s in specs]


def _child(spec: SeedSpec, stream: str, *extra: int) -> np.random.SeedSequence:
    ss = _as_sequence(spec)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, STREAMS.index(stream), *extra))


def stream_seed(spec: SeedSpec, stream: str) -> int:
    """A 63-bit integer seed (for ``torch.Generator.manual_seed``) of one replica's ``stream``."""
    return int(_child(spec, stream).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def stream_rng(spec: SeedSpec, stream: str, *extra: int) -> np.random.Generator:
    """A numpy Generator of one replica's ``stream`` (``extra`` keys, e.g. the epoch, make sub-streams)."""
    return np.random.default_rng(_child(spec, stream, *extra))
