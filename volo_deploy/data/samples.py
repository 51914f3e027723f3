"""Small, deterministic batches of preprocessed images for validation and smoke runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from volo_deploy.data.layouts import IMAGE_SUFFIXES, is_image
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.errors import DataError


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive, suffix in any case), sorted."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data {root}: not found")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if is_image(p.name) and p.is_file())


def subset_indices(n_total: int, limit: int | None) -> np.ndarray:
    """Evenly spaced indices (deterministic; covers every class of a sorted val set), all when ``limit`` is None."""
    if limit is None or limit >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, limit).round().astype(np.int64))


def synthetic_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random RGB images (upsampled noise): natural-ish statistics, no dataset needed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        out.append(Image.fromarray(base).resize((int(size * 1.33), size), Image.BILINEAR))
    return out


def validation_batch(cfg, data: str | Path | None = None, n: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed images for ``cfg``: from ``data`` (evenly spaced), the demo digits
    for the demo model, or synthetic images otherwise."""
    tf = EvalTransform.for_config(cfg)
    if data is None and cfg.family == "volo_demo":
        from volo_deploy.data.digits import load_digits_arrays

        images, _ = load_digits_arrays("val")
        pick = np.linspace(0, len(images) - 1, n).round().astype(int)
        return np.stack([tf(Image.fromarray(images[i], mode="L")) for i in pick])
    if data is None:
        return np.stack([tf(img) for img in synthetic_images(n, cfg.img_size, seed)])
    files = list_images(data)
    if not files:
        raise DataError(f"data {data}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, any case)")
    return np.stack([tf.load(files[i]) for i in subset_indices(len(files), n)])
