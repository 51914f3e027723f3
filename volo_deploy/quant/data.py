"""The one adapter between the quantizer and :mod:`volo_deploy.data`: images -> arrays.

Calibration and evaluation sets are read through ``open_images`` (folders of any
supported layout, list files, subset manifests), subsampled with the stratified
``sample_subset`` and preprocessed with the model's one ``EvalTransform``; unreadable
images are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import QuantizationError

DEFAULT_EVAL_SIZE = 1000  # stratified eval subset of a larger set (the demo uses its 360 val images)


@dataclass
class ImageSet:
    x: np.ndarray  # float32 (N, 3, S, S)
    labels: np.ndarray  # int64 (N,)
    source: str
    manifest_sha256: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "images": int(len(self.x)),
            "skipped": len(self.skipped),
            "manifest_sha256": self.manifest_sha256,
        }


def _load(cfg, data, source: str, manifest_sha: str | None, desc: str) -> ImageSet:
    from volo_deploy.data.dataset import load_images
    from volo_deploy.data.transforms import EvalTransform

    loaded = load_images(data, EvalTransform.for_config(cfg), desc=desc)
    return ImageSet(loaded.x, loaded.labels, source, manifest_sha, loaded.skipped)


def _subset(data, size: int | None, seed: int):
    """A stratified ``size``-image subset of ``data`` (all of it when None or larger) and its manifest hash.

    The subset's files come from ``data``, listed a moment ago: they are not checked against the root again.
    """
    from volo_deploy.data.sampler import sample_subset, subset_images

    if size is None or size >= len(data):
        return data, None
    manifest = sample_subset(data, total=size, seed=seed)
    return subset_images(manifest, data.root), manifest.content_hash()


def _open_source(source: str | Path, layout: str | None):
    """(images, content hash when ``source`` is a subset manifest): a manifest is read once, its root scanned once."""
    from volo_deploy.data import sampler
    from volo_deploy.data.dataset import open_images

    is_json = Path(source).suffix.lower() == ".json"
    if is_json and layout in (None, "manifest"):
        manifest = sampler.read_manifest(source)
        return sampler.resolve(manifest, verify="full"), manifest.content_hash()
    data = open_images(source, layout=layout)
    return data, sampler.read_manifest(source).content_hash() if is_json else None


def calibration_set(
    cfg, source: str | Path | None = None, size: int | None = None, seed: int = 0, layout: str | None = None
) -> ImageSet:
    """Calibration images for ``cfg``: ``source`` (folder, list file or manifest, read as ``layout``
    or detected; a stratified ``size``-image subset of it, default 300-1000 by class count), or the
    shipped demo manifest (digits train, 300 images) for the demo model."""
    from volo_deploy.data import sampler

    if source is None:
        if cfg.family != "volo_demo":
            raise QuantizationError("INT8 needs calibration images: pass --calib-data (folder, list file or manifest)")
        manifest = sampler.read_manifest(sampler.demo_calibration_manifest())
        data = sampler.demo_calibration_data(manifest=manifest)
        data, sub = _subset(data, size, seed)
        desc = f"demo manifest {sampler.DEMO_MANIFEST_NAME}"
        return _load(cfg, data, desc, sub or manifest.content_hash(), "calibration images")
    data, sha = _open_source(source, layout)
    if sha is None and size is None:
        size = sampler.default_calib_size(len(data.classes))
    data, sub = _subset(data, size, seed)
    return _load(cfg, data, str(source), sub or sha, "calibration images")


def eval_set(cfg, source: str | Path | None = None, size: int | None = DEFAULT_EVAL_SIZE, seed: int = 1) -> ImageSet:
    """Held-out images to measure the top-1 drop on: ``source`` (stratified subset of ``size``)
    or, for the demo model, the digits val split (360 images)."""
    from volo_deploy.data.dataset import open_images

    if source is None:
        if cfg.family != "volo_demo":
            raise QuantizationError("--max-drop needs held-out labeled images: pass --eval-data")
        from volo_deploy.data.digits import default_demo_dir, write_digits_tree

        source = write_digits_tree(default_demo_dir(), "val")
        size = None
    data, sub = _subset(open_images(source), size, seed)
    return _load(cfg, data, str(source), sub, "eval images")
