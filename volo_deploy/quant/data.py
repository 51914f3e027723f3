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
    from volo_deploy.data.sampler import sample_subset

    if size is None or size >= len(data):
        return data, None
    from volo_deploy.data.sampler import resolve

    manifest = sample_subset(data, total=size, seed=seed)
    return resolve(manifest, data.root, verify="paths"), manifest.content_hash()


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
        data = sampler.demo_calibration_data()
        sha = sampler.read_manifest(sampler.demo_calibration_manifest()).content_hash()
        data, sub = _subset(data, size, seed)
        return _load(cfg, data, f"demo manifest {sampler.DEMO_MANIFEST_NAME}", sub or sha, "calibration images")
    from volo_deploy.data.dataset import open_images

    data = open_images(source, layout=layout)
    sha = None
    if Path(source).suffix.lower() == ".json":
        sha = sampler.read_manifest(source).content_hash()
    elif size is None:
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
