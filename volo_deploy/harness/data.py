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

from volo_deploy.data.dataset import load_images, open_images
from volo_deploy.data.layouts import LabeledImages
from volo_deploy.data.samples import subset_indices
from volo_deploy.data.transforms import EvalTransform
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
        return describe_data(self.source, self.layout, self.items, self.skipped, self.total_available,
                             self.labels is not None, self.num_classes, self.notes)


def describe_data(
    source: str, layout: str, used: list[tuple[str, int]], skipped: list[str], total_available: int,
    labeled: bool, num_classes: int | None, notes: list[str],
) -> dict[str, object]:
    """The report's ``data`` section (schema in :mod:`volo_deploy.harness.report`)."""
    return {
        "source": source,
        "layout": layout,
        "n_images": len(used),
        "total_available": total_available,
        "labeled": labeled,
        "num_classes": num_classes,
        "fingerprint": items_fingerprint(used),
        "skipped": {"count": len(skipped), "paths": [s.split(": ", 1)[0] for s in skipped]},
        "skipped_images": skipped,
        "notes": notes,
    }


def items_fingerprint(items: list[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for rel, label in items:
        h.update(f"{rel}\t{label}\n".encode())
    return f"sha256:{h.hexdigest()}"


def demo_data_dir() -> Path:
    """The demo digits ``val`` tree (ImageFolder), written once into the cache."""
    from volo_deploy.data.digits import default_demo_dir, write_digits_tree

    return write_digits_tree(default_demo_dir(), "val")


def _load(cfg, root: Path, items: list[tuple[str, int]], progress: bool) -> tuple[np.ndarray, list, list[str]]:
    """(x, used items, skipped 'path: reason') through the shared loader (corrupt images skipped)."""
    data = LabeledImages(root, [(Path(p), lab) for p, lab in items], [], "subset")
    loaded = load_images(data, EvalTransform.for_config(cfg), progress=progress, desc="load data")
    by_path = dict(items)
    return loaded.x, [(p, by_path[p]) for p in loaded.paths], [f"{p}: {why}" for p, why in loaded.skipped]


@dataclass
class EvalItems:
    """The selected images of a run, not yet decoded: what streaming evaluation walks through."""

    root: Path
    items: list[tuple[str, int]]  # (path relative to root, label), before unreadable ones are known
    source: str
    layout: str
    num_classes: int | None
    total_available: int
    notes: list[str] = field(default_factory=list)

    def content_key(self) -> str:
        """``sha256:<hex>`` of (path, label, size, mtime) of every selected file: a replaced image changes it."""
        h = hashlib.sha256()
        for rel, label in self.items:
            try:
                st = (self.root / rel).stat()
                h.update(f"{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{rel}\t{label}\tmissing\n".encode())
        return f"sha256:{h.hexdigest()}"

    def describe(self, used: list[tuple[str, int]], skipped: list[str]) -> dict[str, object]:
        """The report's ``data`` section once the ``used`` images (readable ones) are known."""
        return describe_data(self.source, self.layout, used, skipped, self.total_available, True, self.num_classes,
                             self.notes)


def open_eval_items(
    cfg,
    source: str | Path | None = None,
    limit: int | None = None,
    root: str | Path | None = None,
    layout: str | None = None,
    exclude: frozenset[str] = frozenset(),
) -> EvalItems:
    """The images :func:`load_eval_set` would use, listed but not decoded (see it for the arguments);
    ``exclude``: paths (posix, relative to the root) left out before the ``limit`` subset is taken
    (volo-bench's INT8 calibration images)."""
    src = Path(source) if source is not None else demo_data_dir()
    if not src.exists():
        raise DataError(f"data {src}: not found")
    ds = open_images(src, layout=layout, root=Path(root) if root is not None else None, expect_classes=cfg.num_classes)
    items = [(Path(p).as_posix(), int(lab)) for p, lab in ds.items]
    items = [it for it in items if it[0] not in exclude] if exclude else items
    if not items:
        raise DataError(f"data {src}: no images found")
    return EvalItems(
        root=Path(ds.root),
        items=[items[i] for i in subset_indices(len(items), limit)],
        source=str(src) if source is not None else f"demo digits val ({src})",
        layout=str(ds.layout),
        num_classes=len(ds.classes) or None,
        total_available=len(items),
        notes=list(ds.notes),
    )


def load_eval_set(
    cfg,
    source: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    root: str | Path | None = None,
    layout: str | None = None,
) -> EvalSet:
    """Labeled images for ``cfg`` (VoloConfig) from ``source`` (folder, list file or subset
    manifest, whose paths are relative to ``root`` when given, read as ``layout`` or detected; the demo digits val split when
    None), ``limit`` evenly spaced ones when given, all in memory (for large sets,
    :func:`open_eval_items` + :func:`volo_deploy.data.dataset.decode_batches` stream them).

    Unreadable images are skipped and listed; they never enter the fingerprint.
    """
    sel = open_eval_items(cfg, source, limit, root, layout)
    x, used, skipped = _load(cfg, sel.root, sel.items, progress)
    return EvalSet(
        x=np.ascontiguousarray(x, dtype=np.float32),
        labels=np.asarray([lab for _, lab in used], dtype=np.int64),
        source=sel.source,
        layout=sel.layout,
        items=used,
        num_classes=sel.num_classes,
        total_available=sel.total_available,
        skipped=skipped,
        notes=sel.notes,
    )
