"""The evaluation images of a bench run: read, subset, preprocess, fingerprint.

The one adapter between the harness and the dataset readers of :mod:`volo_deploy.data`
(``dataset.open_images``: ImageFolder, ImageNet val + devkit GT, Kaggle LOC, list files,
subset manifests; ``dataset.load_images``: the eval transform, corrupt images skipped).
With no ``--data`` the demo digits ``val`` split is written to the cache and used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import DataError


@dataclass
class EvalSet:
    """Preprocessed images (N, 3, S, S) with labels (or ``None``) and what identifies them."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str
    layout: str
    items: list[tuple[str, int]]  # (path relative to the data root, label)
    num_classes: int | None
    total_available: int
    skipped: list[str] = field(default_factory=list)  # unreadable images (path: reason)
    notes: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the ordered (relative path, label) list actually used."""
        return items_fingerprint(self.items)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "layout": self.layout,
            "n_images": len(self.items),
            "total_available": self.total_available,
            "labeled": self.labels is not None,
            "num_classes": self.num_classes,
            "fingerprint": self.fingerprint,
            "skipped_images": self.skipped,
            "notes": self.notes,
        }


def items_fingerprint(items: list[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for rel, label in items:
        h.update(f"{rel}\t{label}\n".encode())
    return f"sha256:{h.hexdigest()}"


def subset_indices(n_total: int, limit: int | None) -> np.ndarray:
    """Evenly spaced indices (deterministic; covers every class of a sorted val set), all when ``limit`` is None."""
    if limit is None or limit >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, limit).round().astype(np.int64))


def demo_data_dir() -> Path:
    """The demo digits ``val`` tree (ImageFolder), written once into the cache."""
    from volo_deploy.data.digits import default_demo_dir, write_digits_tree

    return write_digits_tree(default_demo_dir(), "val")


def _open(source: Path, num_classes: int, root: Path | None = None, layout: str | None = None):
    """LabeledImages-like object (root, items, classes, layout, notes) for ``source`` (``layout``: None detects)."""
    try:
        from volo_deploy.data.dataset import open_images
    except ImportError:  # dataset readers absent in this tree: ImageFolder only
        return _fallback_imagefolder(source)
    return open_images(source, layout=layout, root=root, expect_classes=num_classes)


def _fallback_imagefolder(source: Path):
    from types import SimpleNamespace

    from volo_deploy.data.samples import list_images

    if not source.is_dir():
        raise DataError(f"data {source}: list files and manifests need volo_deploy.data.dataset")
    classes = sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"data {source}: no class sub-folders")
    items = [(p.relative_to(source), i) for i, c in enumerate(classes) for p in list_images(source / c)]
    return SimpleNamespace(root=source, items=items, classes=classes, layout="imagefolder", notes=[])


def _load(cfg, root: Path, items: list[tuple[str, int]], progress: bool) -> tuple[np.ndarray, list, list[str]]:
    """(x, used items, skipped 'path: reason') through the shared loader (corrupt images skipped)."""
    from volo_deploy.data.transforms import EvalTransform

    tf = EvalTransform.for_config(cfg)
    try:
        from volo_deploy.data.dataset import load_images
        from volo_deploy.data.layouts import LabeledImages
    except ImportError:
        load_images = None
    if load_images is not None:
        data = LabeledImages(root, [(Path(p), lab) for p, lab in items], [], "subset")
        loaded = load_images(data, tf, progress=progress, desc="load data")
        by_path = dict(items)
        return loaded.x, [(p, by_path[p]) for p in loaded.paths], [f"{p}: {why}" for p, why in loaded.skipped]
    xs, used, skipped = [], [], []
    for rel, label in items:
        try:
            xs.append(tf.load(root / rel))
            used.append((rel, label))
        except DataError as exc:
            skipped.append(str(exc))
    if not used:
        raise DataError(f"data {root}: none of the {len(items)} selected images could be read")
    return np.stack(xs), used, skipped


def load_eval_set(
    cfg,
    source: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    root: str | Path | None = None,
    layout: str | None = None,
) -> EvalSet:
    """Labeled images for ``cfg`` (VoloConfig) from ``source`` (folder, list file or subset
    manifest, whose paths are relative to ``root`` when given, read as ``layout`` or detected; the
    demo digits val split when None), ``limit`` evenly spaced ones when given.

    Unreadable images are skipped and listed; they never enter the fingerprint.
    """
    src = Path(source) if source is not None else demo_data_dir()
    if not src.exists():
        raise DataError(f"data {src}: not found")
    ds = _open(src, cfg.num_classes, Path(root) if root is not None else None, layout)
    items = [(Path(p).as_posix(), int(lab)) for p, lab in ds.items]
    if not items:
        raise DataError(f"data {src}: no images found")
    picked = [items[i] for i in subset_indices(len(items), limit)]
    x, used, skipped = _load(cfg, Path(ds.root), picked, progress)
    return EvalSet(
        x=np.ascontiguousarray(x, dtype=np.float32),
        labels=np.asarray([lab for _, lab in used], dtype=np.int64),
        source=str(src) if source is not None else f"demo digits val ({src})",
        layout=str(ds.layout),
        items=used,
        num_classes=len(ds.classes) or None,
        total_available=len(items),
        skipped=skipped,
        notes=list(getattr(ds, "notes", []) or []),
    )
