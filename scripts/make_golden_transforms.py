"""Golden outputs of timm's eval transform for VOLO (run by hand where timm is installed).

    /tmp/timm_venv/bin/python scripts/make_golden_transforms.py

Writes tests/data/golden_transforms.npz: for each model, timm's transform applied to a
deterministic 300x400 RGB image, subsampled every 7th pixel to stay small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
from PIL import Image
from timm.data import create_transform, resolve_data_config

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("volo_d1_224", "volo_d1_384", "volo_d4_448")


def golden_image() -> Image.Image:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((400, 300), Image.BILINEAR)  # smooth, non-square


def main() -> None:
    out = {}
    for name in MODELS:
        model = timm.create_model(name, pretrained=False)
        cfg = resolve_data_config({}, model=model)
        tf = create_transform(**cfg)
        arr = tf(golden_image()).numpy()
        out[name] = arr[:, ::7, ::7].copy()
        print(name, cfg, arr.shape)
    np.savez_compressed(ROOT / "tests" / "data" / "golden_transforms.npz", **out)


if __name__ == "__main__":
    main()
