"""Real-data layer: MNIST, Fashion-MNIST, CIFAR-10 and a synthetic teacher, as binary (±1),
grouped (±1) or k-class (one-hot) tasks, with switchable, recorded preprocessing.

Sources:

- an explicit data dir (``data_dir=`` or ``$GDEQ_DATA_DIR``) holding ``.npz`` archives with keys
  ``images`` and ``labels`` (e.g. ``mnist_train.npz``, ``mnist_test.npz``, ``cifar10_*.npz``) or
  torchvision's on-disk layout. When a data dir is given it is the ONLY source: a directory that
  does not exist, lacks the dataset or has too few examples is an error naming it (never a silent
  fallback to other data), and an archive that cannot be read is reported as corrupt, by name.
- With no data dir, the first of these that has the requested examples wins: torchvision's
  datasets under ``$GDEQ_TORCHVISION_ROOT`` (default ``~/.cache/gdeq/torchvision``), downloaded
  when online (set ``GDEQ_OFFLINE=1`` to skip the download attempt); then the embedded default, a
  real MNIST subset shipped with gdeq (the first 8,192 training and the first 5,000 test images of
  the official sets; provenance in ``data_files/PROVENANCE.md``).

Conventions follow docs/conventions.md §1: after preprocessing each input is a row of ``x`` (float64) and,
by default, centred with the training mean and normalised to ``|x|² = N0``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

__all__ = ["DATASETS", "Preprocessing", "Task", "load_task", "parity_groups"]

DATASETS = ("mnist", "fashion-mnist", "cifar10", "teacher")
_N_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "teacher": 10}

# npz file names looked for in a data dir, best first (lossless CIFAR before JPEG-decoded).
_NPZ_CANDIDATES = {
    ("mnist", "train"): ("mnist_train.npz",),
    ("mnist", "test"): ("mnist_test.npz",),
    ("fashion-mnist", "train"): ("fashion-mnist_train.npz", "fashion_mnist_train.npz"),
    ("fashion-mnist", "test"): ("fashion-mnist_test.npz", "fashion_mnist_test.npz"),
    ("cifar10", "train"): ("cifar10_train.npz", "cifar10_lossless_train4k.npz", "cifar10_train_subset.npz"),
    ("cifar10", "test"): ("cifar10_test.npz", "cifar10_lossless_test1k.npz", "cifar10_subset.npz"),
}


def parity_groups() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """MNIST parity as in arXiv 2303.05161: even digits (+1) versus odd digits (-1)."""
    return (0, 2, 4, 6, 8), (1, 3, 5, 7, 9)


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing steps, applied in the order of the fields; recorded with every Task.

    ``standardize`` is per-pixel standardisation with the training block's statistics (the
    inversion paper's choice; it includes centring). ``center`` subtracts the training mean.
    ``pca_components`` projects onto the top-k principal components of the training inputs.
    ``normalize="sphere"`` rescales every sample to ``|x|² = N0`` (docs/conventions.md conventions).
    """

    flatten: bool = True
    grayscale: bool = False
    scale_to_unit: bool = True  # pixels / 255
    center: bool = True
    standardize: bool = False
    pca_components: int | None = None
    normalize: Literal["sphere", "none"] = "sphere"

    def __post_init__(self) -> None:
        if self.normalize not in ("sphere", "none"):
            raise ValueError(f"normalize: must be 'sphere' or 'none', got {self.normalize!r}")
        if self.pca_components is not None and self.pca_components < 1:
            raise ValueError(f"pca_components: must be a positive integer or None, got {self.pca_components}")
        if self.pca_components is not None and not self.flatten:
            raise ValueError("pca_components: requires flatten=True")

    @classmethod
    def inversion_paper(cls) -> "Preprocessing":
        """arXiv 2303.05161: per-pixel standardisation, no sphere normalisation."""
        return cls(center=False, standardize=True, normalize="none")


@dataclass(frozen=True)
class Task:
    """A supervised task as float64 arrays plus everything needed to reproduce it.

    ``y_*`` is ±1 with shape (P,) for two classes or two groups (first one +1), one-hot (P, k)
    for k > 2 classes. ``labels_*`` holds the task class index (0 = first class or group).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray
    labels_test: np.ndarray
    dataset: str
    classes: tuple
    source: str
    preprocessing: Preprocessing
    seed: int
    selection: str
    indices_train: np.ndarray = field(repr=False)
    indices_test: np.ndarray = field(repr=False)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def n_outputs(self) -> int:
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]

    def metadata(self) -> dict:
        """JSON-ready description (for wandb configs and reports)."""
        return dict(
            dataset=self.dataset,
            classes=[list(c) if isinstance(c, tuple) else c for c in self.classes],
            source=self.source,
            preprocessing=asdict(self.preprocessing),
            seed=self.seed,
            selection=self.selection,
            n_train=self.n_train,
            n_test=int(self.x_test.shape[0]),
            input_dim=self.input_dim,
            n_outputs=self.n_outputs,
        )


# ---------------------------------------------------------------------------------------------
# raw sources
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Raw:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3), or float for the teacher
    labels: np.ndarray  # int64 (N,)
    source: str


def _embedded_path() -> Path:
    return Path(str(resources.files("gdeq.gd_dynamics") / "data_files" / "mnist_embedded.npz"))


def _load_embedded(split: str) -> _Raw:
    with np.load(_embedded_path()) as data:
        return _Raw(data[f"{split}_images"], data[f"{split}_labels"].astype(np.int64), "embedded MNIST subset")


def _load_npz_dir(dataset: str, split: str, data_dir: Path) -> list[_Raw]:
    """Every candidate archive present in ``data_dir``; an unreadable one is a ValueError naming it."""
    found = []
    for name in _NPZ_CANDIDATES.get((dataset, split), ()):
        path = data_dir / name
        if path.is_file():
            try:
                with np.load(path) as data:
                    found.append(_Raw(np.asarray(data["images"]), data["labels"].astype(np.int64), str(path)))
            except Exception as err:  # a present file that cannot be read is corrupt, not missing
                raise ValueError(f"data_dir: {path} is corrupt or not an npz archive with keys 'images' and "
                                 f"'labels' ({type(err).__name__}: {err})") from None
    return found


def _load_torchvision(dataset: str, split: str, root: Path, download: bool, why: list[str] | None = None) -> _Raw | None:
    """torchvision's copy under ``root`` (None if absent; the reason is appended to ``why``)."""
    try:
        from torchvision import datasets as tv
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    cls = {"mnist": tv.MNIST, "fashion-mnist": tv.FashionMNIST, "cifar10": tv.CIFAR10}[dataset]
    try:
        ds = cls(root=str(root), train=(split == "train"), download=download)
    except Exception as err:  # missing files, or no network for the download
        if why is not None:
            why.append(f"torchvision {cls.__name__} at {root}: {err}")
        return None
    images = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
    labels = np.asarray(ds.targets, dtype=np.int64)
    return _Raw(np.asarray(images, dtype=np.uint8), labels, f"torchvision {cls.__name__} at {root}")


def _teacher(split: str, n: int, seed: int, input_dim: int, n_classes: int) -> _Raw:
    """Gaussian inputs labelled by a random one-hidden-layer erf teacher (fixed by ``seed``)."""
    from scipy.special import erf

    rng_teacher = np.random.default_rng([seed, 0])
    hidden = 2 * input_dim
    w = rng_teacher.standard_normal((hidden, input_dim))
    v = rng_teacher.standard_normal((hidden, max(n_classes, 2)))
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    x = rng.standard_normal((n, input_dim))
    out = erf(x @ w.T / np.sqrt(input_dim)) @ v / np.sqrt(hidden)
    labels = (out[:, 0] > 0).astype(np.int64) if n_classes == 2 else out.argmax(1)
    return _Raw(x, labels, f"teacher(seed={seed}, input_dim={input_dim})")


# ---------------------------------------------------------------------------------------------
# task assembly
# ---------------------------------------------------------------------------------------------
def _normalise_classes(dataset: str, classes: Sequence) -> tuple[tuple[tuple[int, ...], ...], bool]:
    """Return the label groups (one tuple of source classes per task class) and whether grouped."""
    if isinstance(classes, str):
        if classes != "parity":
            raise ValueError(f"classes: the only named grouping is 'parity', got {classes!r}")
        classes = parity_groups()
    classes = tuple(classes)
    grouped = any(isinstance(c, (tuple, list)) for c in classes)
    groups = tuple(tuple(int(x) for x in c) if isinstance(c, (tuple, list)) else (int(c),) for c in classes)
    if len(groups) < 2:
        raise ValueError(f"classes: need at least two classes or groups, got {classes!r}")
    if grouped and len(groups) != 2:
        raise ValueError(f"classes: grouped tasks take exactly two groups, got {len(groups)}")
    flat = [c for g in groups for c in g]
    n_classes = _N_CLASSES[dataset]
    bad = [c for c in flat if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"classes: {dataset} has classes 0..{n_classes - 1}, got {bad}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"classes: each class may appear once, got {classes!r}")
    return groups, grouped


def _split_counts(n: int, k: int, per_class: bool) -> list[int]:
    if per_class:
        return [n] * k
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _select(raw: _Raw, groups, n: int, per_class: bool, selection: str, rng: np.random.Generator) -> np.ndarray | str:
    """Indices of the chosen examples, or a message saying what is short."""
    membership = [np.flatnonzero(np.isin(raw.labels, g)) for g in groups]
    if selection == "first":
        pool = np.sort(np.concatenate(membership))
        total = n * len(groups) if per_class else n
        if len(pool) < total:
            return f"{len(pool)} examples of classes {list(groups)} in {raw.source}, {total} requested"
        return pool[:total]
    counts = _split_counts(n, len(groups), per_class)
    chosen = []
    for g, members, count in zip(groups, membership, counts):
        if len(members) < count:
            return f"class {g if len(g) > 1 else g[0]} has {len(members)} examples in {raw.source}, {count} requested"
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.concatenate(chosen)


def _resolve(dataset, split, groups, n, per_class, selection, seed, data_dir, teacher_dim) -> tuple[_Raw, np.ndarray]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    if dataset == "teacher":
        k = max(c for g in groups for c in g) + 1  # the teacher has as many outputs as class ids
        total = (n * len(groups) if per_class else n) * (k + 4)  # ample pool for balanced picks
        raw = _teacher(split, total, seed, teacher_dim, max(k, 2))
        idx = _select(raw, groups, n, per_class, selection, rng)
        if isinstance(idx, str):
            raise ValueError(f"n_{split}: the teacher produced too few examples ({idx})")
        return raw, idx

    data_dir = data_dir or os.environ.get("GDEQ_DATA_DIR")
    if data_dir:
        return _from_data_dir(dataset, split, groups, n, per_class, selection, rng, Path(data_dir).expanduser())
    tried: list[str] = []
    candidates: list = []
    root = Path(os.environ.get("GDEQ_TORCHVISION_ROOT", "~/.cache/gdeq/torchvision")).expanduser()
    download = os.environ.get("GDEQ_OFFLINE", "0") in ("", "0")
    candidates.append(lambda: _load_torchvision(dataset, split, root, download=download))
    tried.append(f"torchvision at {root}" + (" (download attempted)" if download else " (offline, no download)"))
    if dataset == "mnist":
        candidates.append(lambda: _load_embedded(split))
        tried.append("the embedded MNIST subset (8,192 train / 5,000 test)")

    shortages = []
    for cand in candidates:
        raw = cand()
        if raw is None:
            continue
        idx = _select(raw, groups, n, per_class, selection, rng)
        if not isinstance(idx, str):
            return raw, idx
        shortages.append(idx)
    detail = "; ".join(shortages) if shortages else "no source had the data"
    raise ValueError(
        f"n_{split}: not enough {dataset} {split} examples ({detail}). Sources tried: {'; '.join(tried)}. "
        f"Put {_NPZ_CANDIDATES[(dataset, split)][0]} (keys 'images', 'labels') in a directory and pass "
        "data_dir= / --data_dir or set GDEQ_DATA_DIR, or go online so torchvision can download it."
    )


def _from_data_dir(dataset, split, groups, n, per_class, selection, rng, d: Path) -> tuple[_Raw, np.ndarray]:
    """The explicit data dir is the only source: missing, lacking or short is an error naming it."""
    if not d.is_dir():
        raise ValueError(f"data_dir: {d} does not exist (or is not a directory); pass a directory holding "
                         f"{_NPZ_CANDIDATES[(dataset, split)][0]} or torchvision's layout, or no data_dir")
    why: list[str] = []
    sources = _load_npz_dir(dataset, split, d) or [_load_torchvision(dataset, split, d, download=False, why=why)]
    sources = [s for s in sources if s is not None]
    if not sources:
        raise ValueError(f"data_dir: {d} has no {dataset} {split} data: none of {list(_NPZ_CANDIDATES[(dataset, split)])} "
                         f"and no torchvision layout ({'; '.join(why) or 'not found'})")
    shortages = []
    for raw in sources:
        idx = _select(raw, groups, n, per_class, selection, rng)
        if not isinstance(idx, str):
            return raw, idx
        shortages.append(idx)
    raise ValueError(f"n_{split}: not enough {dataset} {split} examples in data_dir {d} ({'; '.join(shortages)})")


def _to_features(images: np.ndarray, prep: Preprocessing, is_pixels: bool) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if prep.grayscale and x.ndim == 4 and x.shape[-1] == 3:
        x = x @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma, as PIL's convert("L")
    if prep.scale_to_unit and is_pixels:
        x = x / 255.0
    if prep.flatten:
        x = x.reshape(len(x), -1)
    return x


def _preprocess(x_train: np.ndarray, x_test: np.ndarray, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    if prep.standardize:
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 0, std, 1.0)  # constant pixels (MNIST borders) stay at zero
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    elif prep.center:
        mean = x_train.mean(0)
        x_train, x_test = x_train - mean, x_test - mean
    if prep.pca_components is not None:
        k = prep.pca_components
        if k > min(x_train.shape):
            raise ValueError(f"pca_components: at most min(n_train, input_dim) = {min(x_train.shape)}, got {k}")
        mean = x_train.mean(0)
        _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
        x_train, x_test = (x_train - mean) @ vt[:k].T, (x_test - mean) @ vt[:k].T
    if prep.normalize == "sphere":
        n0 = np.prod(x_train.shape[1:])

        def sphere(x):
            norms = np.sqrt((x.reshape(len(x), -1) ** 2).sum(1)).reshape((-1,) + (1,) * (x.ndim - 1))
            return x * np.sqrt(n0) / np.where(norms > 0, norms, 1.0)

        x_train, x_test = sphere(x_train), sphere(x_test)
    return x_train, x_test


def load_task(
    dataset: str = "mnist",
    classes: Sequence = (3, 5),
    n_train: int = 200,
    n_test: int = 200,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    *,
    per_class: bool = False,
    selection: Literal["balanced", "first"] = "balanced",
    preprocessing: Preprocessing | None = None,
    teacher_dim: int = 100,
) -> Task:
    """Load a real (or teacher) classification task as float64 numpy arrays.

    Args:
        dataset: one of ``DATASETS``.
        classes: two classes (±1, first +1), two groups of classes (e.g. ``parity_groups()`` or
            ``"parity"``; ±1, first group +1), or k > 2 classes (one-hot, D = k outputs).
        n_train, n_test: number of examples, in total (default) or per class (``per_class=True``).
        seed: fixes the balanced draw (train and test draws are independent streams).
        data_dir: a directory with ``.npz`` files or torchvision's layout (else ``$GDEQ_DATA_DIR``).
        selection: ``"balanced"`` draws equal numbers per class (group) at random;
            ``"first"`` takes the first examples of the chosen classes in the source's own order
            (arXiv 2303.05161 uses the first 8,192 MNIST training images).
        preprocessing: see :class:`Preprocessing`; default centring plus ``|x|² = N0``.
        teacher_dim: input dimension of the synthetic ``teacher`` dataset.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: must be one of {list(DATASETS)}, got {dataset!r}")
    for name, value in (("n_train", n_train), ("n_test", n_test), ("teacher_dim", teacher_dim)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    if selection not in ("balanced", "first"):
        raise ValueError(f"selection: must be 'balanced' or 'first', got {selection!r}")
    groups, grouped = _normalise_classes(dataset, classes)
    if not per_class and selection == "balanced" and min(n_train, n_test) < len(groups):
        raise ValueError(f"n_train/n_test: need at least one example per class ({len(groups)} classes)")
    prep = preprocessing or Preprocessing()

    raw_tr, idx_tr = _resolve(dataset, "train", groups, n_train, per_class, selection, seed, data_dir, teacher_dim)
    raw_te, idx_te = _resolve(dataset, "test", groups, n_test, per_class, selection, seed, data_dir, teacher_dim)

    is_pixels = dataset != "teacher"
    x_tr = _to_features(raw_tr.images[idx_tr], prep, is_pixels)
    x_te = _to_features(raw_te.images[idx_te], prep, is_pixels)
    x_tr, x_te = _preprocess(x_tr, x_te, prep)

    lookup = {c: k for k, g in enumerate(groups) for c in g}
    lab_tr = np.array([lookup[int(c)] for c in raw_tr.labels[idx_tr]], dtype=np.int64)
    lab_te = np.array([lookup[int(c)] for c in raw_te.labels[idx_te]], dtype=np.int64)
    if len(groups) == 2:
        y_tr, y_te = 1.0 - 2.0 * lab_tr, 1.0 - 2.0 * lab_te  # first class/group -> +1
    else:
        y_tr, y_te = np.eye(len(groups))[lab_tr], np.eye(len(groups))[lab_te]
    task_classes = tuple(g if grouped else g[0] for g in groups)
    source = raw_tr.source if raw_tr.source == raw_te.source else f"{raw_tr.source} | {raw_te.source}"
    return Task(
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
        labels_train=lab_tr, labels_test=lab_te,
        dataset=dataset, classes=task_classes, source=source, preprocessing=prep, seed=seed,
        selection=selection, indices_train=idx_tr, indices_test=idx_te,
    )
