"""The per-variant eval transform, the one place every backend and the calibrator use.

Matches timm's eval pipeline for VOLO: resize the shorter side to
``floor(img_size / crop_pct)`` with bicubic, center crop ``img_size`` (zero padding
when crop_pct > 1 makes the crop larger than the image, as torchvision does), scale
to [0, 1], normalize by mean/std. Pillow + numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from volo_deploy.errors import DataError


@dataclass(frozen=True)
class EvalTransform:
    """Image -> float32 (3, S, S) array, normalized."""

    img_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_config(cls, cfg) -> "EvalTransform":  # cfg: VoloConfig (kept untyped to avoid importing torch)
        return cls(cfg.img_size, cfg.crop_pct, tuple(cfg.mean), tuple(cfg.std))

    @property
    def resize_size(self) -> int:
        return math.floor(self.img_size / self.crop_pct)

    def __call__(self, img: Image.Image) -> np.ndarray:
        return eval_preprocess(img, self.img_size, self.resize_size, self.mean, self.std)

    def load(self, path: str | Path) -> np.ndarray:
        """Open ``path`` and transform it; raises :class:`DataError` if unreadable."""
        try:
            with Image.open(path) as img:
                img.load()
                return self(img)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"image {path}: cannot be read ({exc})") from None


# eval_preprocess and _center_crop need only numpy and Pillow: the TensorRT deployment bundle copies
# their source verbatim (volo_deploy.export.jetson_bundle), so keep them free of other imports.
def eval_preprocess(img: Image.Image, img_size: int, resize_size: int, mean, std) -> np.ndarray:
    """Shorter side -> ``resize_size`` (bicubic), center crop ``img_size``, /255, (x - mean) / std; CHW float32."""
    img = img.convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (h, w, 3)
    arr = _center_crop(arr, img_size)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h < size or w < size:  # torchvision pads with zeros before cropping
        ph, pw = max(size - h, 0), max(size - w, 0)
        arr = np.pad(arr, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return arr[top : top + size, left : left + size]
