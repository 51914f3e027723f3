"""scikit-learn's handwritten digits as an ImageNet-style folder tree (the demo data).

1,797 grey 8x8 images, 10 classes. The held-out split is fixed: every fifth image
(index % 5 == 0, 360 images) is ``val``, the rest (1,437) is ``train``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val")


def load_digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 8, 8), labels int64 (N,)) of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    idx = np.arange(len(images))
    keep = idx % 5 == 0 if split == "val" else idx % 5 != 0
    return images[keep], d.target[keep].astype(np.int64)


def write_digits_tree(root: str | Path, split: str = "val") -> Path:
    """Write ``root/<split>/<class>/<index>.png`` (ImageFolder layout); returns the split dir.

    Existing complete trees are reused. Files are written to a temp dir and renamed.
    """
    root = Path(root)
    out = root / split
    images, labels = load_digits_arrays(split)
    if out.is_dir() and sum(1 for _ in out.glob("*/*.png")) == len(images):
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=root))
    for i, (img, label) in enumerate(zip(images, labels)):
        d = tmp / str(int(label))
        d.mkdir(exist_ok=True)
        Image.fromarray(img, mode="L").save(d / f"digit_{i:04d}.png")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def default_demo_dir() -> Path:
    """Where the CLIs write the demo tree when given no data (a per-user cache dir)."""
    from volo_deploy.cache import cache_dir

    return cache_dir("digits")
