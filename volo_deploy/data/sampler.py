"""Deterministic stratified subsets and the manifest that lets a calibration be repeated exactly.

A :class:`SubsetManifest` records the chosen files (relative paths), their labels, the
classes, how they were chosen (method, size, seed), the dataset layout and a fingerprint
of the dataset root. :func:`resolve` applies it to a root and refuses a root whose
fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from volo_deploy.data.layouts import LabeledImages, paths_fingerprint, root_fingerprint, scan_images
from volo_deploy.errors import DataError

MANIFEST_FORMAT = "volo_deploy.calib_manifest/1"
#: Default calibration size for ``total`` sampling: see calibration/README.md.
DEFAULT_CALIB_MIN, DEFAULT_CALIB_MAX = 300, 1000
DEMO_MANIFEST_NAME = "calib_demo_digits_train_300.json"

Verify = Literal["full", "paths", "none"]


def default_calib_size(num_classes: int) -> int:
    """300 (NNCF's default) or one image per class, at most 1000: 300 for the demo, 1000 for ImageNet."""
    return int(min(DEFAULT_CALIB_MAX, max(DEFAULT_CALIB_MIN, num_classes)))


@dataclass
class SubsetManifest:
    """A reproducible image subset. ``items`` are (posix path relative to the root, label)."""

    items: list[tuple[str, int]]
    classes: list[str]
    seed: int
    method: str  # "per_class" or "total"
    size: int  # images per class, or images in total
    layout: str
    fingerprint: str  # root_fingerprint of the whole dataset root
    paths_fingerprint: str  # the same over paths only (sizes ignored)
    dataset_images: int  # images under the root when sampled
    root: str | None = None  # where it was sampled (informative; resolve() may use another root)
    notes: list[str] = field(default_factory=list)
    format: str = MANIFEST_FORMAT

    def __len__(self) -> int:
        return len(self.items)

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "method": self.method,
            "size": self.size,
            "seed": self.seed,
            "layout": self.layout,
            "root": self.root,
            "fingerprint": self.fingerprint,
            "paths_fingerprint": self.paths_fingerprint,
            "dataset_images": self.dataset_images,
            "num_images": len(self.items),
            "notes": list(self.notes),
            "classes": list(self.classes),
            "items": [[p, int(lab)] for p, lab in self.items],
        }

    def content_hash(self) -> str:
        """sha256 of what decides the calibration (files, labels, classes, dataset fingerprint),
        not of where the root lives: a key for calibration caches."""
        d = self.to_json()
        d.pop("root")
        d.pop("notes")
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def write(self, path: str | Path) -> Path:
        return write_manifest(self, path)


# ---------------------------------------------------------------- sampling


def _quotas_total(counts: list[int], total: int, rng: np.random.Generator) -> list[int]:
    """Spread ``total`` as evenly as the per-class counts allow; leftovers go to seeded-random classes."""
    k = len(counts)
    quota = [0] * k
    left = total
    while left > 0:
        open_ = [c for c in range(k) if quota[c] < counts[c]]
        if not open_:
            break
        share, extra = divmod(left, len(open_))
        lucky = set(rng.permutation(open_)[:extra].tolist())
        for c in open_:
            add = min(share + (c in lucky), counts[c] - quota[c])
            quota[c] += add
            left -= add
    return quota


def _per_class_quota(data: LabeledImages, counts: list[int], per_class: int) -> list[int]:
    """``per_class`` of every class; DataError naming the classes that have fewer."""
    if per_class < 1:
        raise DataError(f"subset: per_class must be >= 1, got {per_class}")
    short = [(data.classes[c], n) for c, n in enumerate(counts) if n < per_class]
    if short:
        raise DataError(
            f"subset of {data.root}: {per_class} images per class requested but {len(short)} class(es) have "
            f"fewer: {', '.join(f'{n} ({c})' for n, c in short[:8])}{' ...' if len(short) > 8 else ''}"
        )
    return [per_class] * len(counts)


def _total_quota(
    data: LabeledImages, counts: list[int], total: int, rng: np.random.Generator, min_per_class: int | None
) -> list[int]:
    """``total`` spread over classes; DataError when a class gets fewer than the floor."""
    k = len(counts)
    if total < 1:
        raise DataError(f"subset: total must be >= 1, got {total}")
    if total > len(data):
        raise DataError(f"subset of {data.root}: {total} images requested, the dataset has {len(data)}")
    quota = _quotas_total(counts, total, rng)
    floor = (1 if total >= k else 0) if min_per_class is None else min_per_class
    short = [(data.classes[c], quota[c], counts[c]) for c in range(k) if quota[c] < floor]
    if short:
        raise DataError(
            f"subset of {data.root}: at least {floor} image(s) per class required but "
            f"{len(short)} class(es) get fewer: "
            + ", ".join(f"{n} ({q} of {c} available)" for n, q, c in short[:8])
            + (" ..." if len(short) > 8 else "")
        )
    return quota


def _pick(data: LabeledImages, quota: list[int], seed: int) -> list[tuple[str, int]]:
    """The seeded choice of ``quota[c]`` files of each class c (a class's draw does not depend on the others)."""
    by_class: list[list[str]] = [[] for _ in quota]
    for p, lab in data.items:
        by_class[lab].append(Path(p).as_posix())
    items: list[tuple[str, int]] = []
    for c, q in enumerate(quota):
        if q:
            paths = sorted(by_class[c])
            pick = np.random.default_rng([seed, c]).permutation(len(paths))[:q]
            items.extend((paths[i], c) for i in sorted(pick.tolist()))
    return items


def sample_subset(
    data: LabeledImages,
    *,
    per_class: int | None = None,
    total: int | None = None,
    seed: int = 0,
    min_per_class: int | None = None,
    listing: list[tuple[str, int]] | None = None,
) -> SubsetManifest:
    """Pick a stratified subset: ``per_class`` images of every class, or ``total`` images spread
    evenly over classes (default :func:`default_calib_size`). Same inputs and seed -> same subset.

    Raises DataError before any image is read when a class has too few images: fewer than
    ``per_class``, or (``total`` mode) fewer than ``min_per_class`` chosen (default 1 when
    ``total >= classes``, else 0). ``listing`` is :func:`scan_images` of ``data.root`` when the
    caller already has it (the root is then not scanned again).
    """
    if per_class is not None and total is not None:
        raise DataError("subset: give per_class or total, not both")
    counts = data.class_counts()
    rng = np.random.default_rng(seed)
    if per_class is not None:
        quota, method, size = _per_class_quota(data, counts, per_class), "per_class", per_class
    else:
        total = default_calib_size(len(counts)) if total is None else total
        quota, method, size = _total_quota(data, counts, total, rng, min_per_class), "total", total
    listing = scan_images(data.root) if listing is None else listing
    return SubsetManifest(
        items=_pick(data, quota, seed),
        classes=list(data.classes),
        seed=seed,
        method=method,
        size=size,
        layout=data.layout,
        fingerprint=root_fingerprint(data.root, listing),
        paths_fingerprint=paths_fingerprint([p for p, _ in listing]),
        dataset_images=len(listing),
        root=str(Path(data.root).resolve()),
        notes=list(data.notes),
    )


# ---------------------------------------------------------------- files


def write_manifest(manifest: SubsetManifest, path: str | Path) -> Path:
    """Write ``manifest`` as JSON, atomically."""
    from volo_deploy.artifacts import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, manifest.to_json())


def read_manifest(path: str | Path) -> SubsetManifest:
    """Read and check a manifest written by :func:`write_manifest`."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"manifest {path}: not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"manifest {path}: not readable JSON ({exc})") from None
    fmt = d.get("format") if isinstance(d, dict) else None
    if fmt != MANIFEST_FORMAT:
        raise DataError(f"manifest {path}: format {fmt!r}, expected {MANIFEST_FORMAT!r}")
    try:
        m = SubsetManifest(
            items=[(str(p), int(lab)) for p, lab in d["items"]],
            classes=[str(c) for c in d["classes"]],
            seed=int(d["seed"]),
            method=str(d["method"]),
            size=int(d["size"]),
            layout=str(d["layout"]),
            fingerprint=str(d["fingerprint"]),
            paths_fingerprint=str(d["paths_fingerprint"]),
            dataset_images=int(d["dataset_images"]),
            root=d.get("root"),
            notes=list(d.get("notes", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"manifest {path}: missing or malformed field ({exc!r})") from None
    n = len(m.classes)
    bad = [(p, lab) for p, lab in m.items if not 0 <= lab < n]
    if bad:
        raise DataError(f"manifest {path}: label {bad[0][1]} of {bad[0][0]} outside 0..{n - 1}")
    if len({p for p, _ in m.items}) != len(m.items):
        raise DataError(f"manifest {path}: duplicate paths")
    if d.get("num_images", len(m.items)) != len(m.items):
        raise DataError(f"manifest {path}: num_images {d['num_images']} but {len(m.items)} items")
    return m


def resolve(manifest: SubsetManifest, root: str | Path | None = None, *, verify: Verify = "full") -> LabeledImages:
    """The manifest's images under ``root`` (default: the recorded root), after checking that
    root's fingerprint: ``full`` (paths + sizes), ``paths`` (paths only) or ``none``."""
    root_s = root if root is not None else manifest.root
    if root_s is None:
        raise DataError("manifest has no recorded root; pass root= (the folder its paths are relative to)")
    root_p = Path(root_s)
    if not root_p.is_dir():
        raise DataError(f"manifest root {root_p}: not a folder")
    if verify != "none":
        listing = scan_images(root_p)
        if verify == "full":
            want, got = manifest.fingerprint, root_fingerprint(root_p, listing)
        else:
            want, got = manifest.paths_fingerprint, paths_fingerprint([p for p, _ in listing])
        if want != got:
            raise DataError(
                f"manifest does not match {root_p}: dataset fingerprint ({verify}) is {got} "
                f"({len(listing)} images) but the manifest was made from {want} "
                f"({manifest.dataset_images} images). Different or modified dataset: make a new manifest."
            )
    else:
        missing = [p for p, _ in manifest.items if not (root_p / p).is_file()]
        if missing:
            raise DataError(f"manifest: {len(missing)} file(s) missing under {root_p} (e.g. {missing[0]})")
    return subset_images(manifest, root_p)


def subset_images(manifest: SubsetManifest, root: Path) -> LabeledImages:
    """The manifest's images under ``root``, unchecked: for a root already checked (or just sampled)."""
    items = [(Path(p), lab) for p, lab in manifest.items]
    notes = [*manifest.notes, f"subset: {manifest.method} {manifest.size}, seed {manifest.seed}"]
    return LabeledImages(Path(root), items, list(manifest.classes), f"manifest:{manifest.layout}", notes)


# ---------------------------------------------------------------- the shipped demo manifest


def demo_calibration_manifest() -> Path:
    """Path of the shipped demo manifest (digits train, 30 per class, seed 0; package data)."""
    return Path(__file__).resolve().parent.parent / "assets" / DEMO_MANIFEST_NAME


def demo_calibration_data(root: str | Path | None = None, manifest: SubsetManifest | None = None) -> LabeledImages:
    """The demo calibration images: writes the digits train tree under ``root`` (default the
    demo cache dir) if needed and resolves the shipped manifest (``manifest`` when already read) against it.

    Checked by paths only: the pixels come from scikit-learn's digits, but PNG byte sizes
    depend on the zlib build Pillow ships with.
    """
    from volo_deploy.data.digits import default_demo_dir, write_digits_tree

    train = write_digits_tree(default_demo_dir() if root is None else root, "train")
    manifest = read_manifest(demo_calibration_manifest()) if manifest is None else manifest
    return resolve(manifest, train, verify="paths")
