"""Small, deterministic batches of preprocessed images for validation and smoke runs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from volo_deploy.data.layouts import IMAGE_SUFFIXES
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.errors import DataError


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive, suffix in any case, each real folder once), sorted."""
    from volo_deploy.data.layouts import scan_images

    root = Path(root)
    if not root.exists():
        raise DataError(f"data {root}: not found")
    if root.is_file():
        return [root]
    return [root / rel for rel, _ in scan_images(root, sizes=False)]


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
    return _readable_stack([files[i] for i in subset_indices(len(files), n)], tf, data)


_WARNED: set[str] = set()  # unreadable validation images already warned about (one warning each per process)


def _readable_stack(files: list[Path], tf: EvalTransform, data) -> np.ndarray:
    """The readable ``files`` through ``tf``; unreadable ones skipped (warned once), DataError when none is left."""
    from volo_deploy.data.dataset import try_decode

    arrs, bad = [], []
    for f in files:
        arr, why, _ = try_decode(f, tf)
        if arr is None:
            bad.append(f"{f} ({why})")
        else:
            arrs.append(arr)
    new = [b for b in bad if b not in _WARNED]
    if new:
        _WARNED.update(new)
        logging.getLogger(__name__).warning("validation: %d unreadable image(s) skipped: %s", len(new), "; ".join(new))
    if not arrs:
        raise DataError(f"data {data}: none of the {len(files)} validation image(s) could be read (e.g. {bad[0]})")
    return np.stack(arrs)
