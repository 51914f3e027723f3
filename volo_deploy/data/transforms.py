"""The per-variant eval transform, the one place every backend and the calibrator use.

Matches timm's eval pipeline for VOLO: resize the shorter side to
``floor(img_size / crop_pct)`` with bicubic, center crop ``img_size`` (zero padding
when crop_pct > 1 makes the crop larger than the image, as torchvision does), scale
to [0, 1], normalize by mean/std. Pillow + numpy only.

For extreme aspect ratios only the region the crop keeps is resampled (Pillow's
``resize(box=...)``), so memory stays bounded by the crop: a 1x40000 image no longer becomes
a 233x9,320,000 intermediate. 16-bit grey images are scaled to 8 bits (Pillow's
own conversion clips them to white). EXIF orientation is ignored, as timm does
(``exif_transpose=True`` applies it).
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
    exif_transpose: bool = False  # rotate/flip by the EXIF orientation tag first (timm does not)

    @classmethod
    def for_config(cls, cfg) -> "EvalTransform":  # cfg: VoloConfig (kept untyped to avoid importing torch)
        return cls(cfg.img_size, cfg.crop_pct, tuple(cfg.mean), tuple(cfg.std))

    @property
    def resize_size(self) -> int:
        return math.floor(self.img_size / self.crop_pct)

    def __call__(self, img: Image.Image) -> np.ndarray:
        if self.exif_transpose:
            from PIL import ImageOps

            img = ImageOps.exif_transpose(img)
        return eval_preprocess(img, self.img_size, self.resize_size, self.mean, self.std)

    def load(self, path: str | Path) -> np.ndarray:
        """Open ``path`` and transform it; raises :class:`DataError` if unreadable."""
        try:
            with Image.open(path) as img:
                img.load()
                return self(img)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"image {path}: cannot be read ({exc})") from None


# eval_preprocess, _resize_kept_region, _kept_span and _center_crop need only numpy and Pillow: the TensorRT
# deployment bundle copies their source verbatim (volo_deploy.export.jetson_bundle), so keep them free of other imports.
def eval_preprocess(img: Image.Image, img_size: int, resize_size: int, mean, std) -> np.ndarray:
    """Shorter side -> ``resize_size`` (bicubic), center crop ``img_size``, /255, (x - mean) / std; CHW float32.

    Past a 16:1 aspect ratio only the part of the image the crop keeps is resampled (bounded memory).
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey: scale, do not clip, to 8 bits
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    img = img.convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = _resize_kept_region(img, new_w, new_h, img_size) if new_long > 16 * new_short else (
            img.resize((new_w, new_h), Image.BICUBIC))
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (h, w, 3)
    arr = _center_crop(arr, img_size)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _resize_kept_region(img: Image.Image, new_w: int, new_h: int, size: int) -> Image.Image:
    """``img`` resized to (new_w, new_h), but only the center ``size`` crop of it (Pillow's ``resize(box=...)``):
    memory bounded by the crop. Used for extreme aspect ratios only (a 1x40000 PNG): it equals resize-then-crop
    up to Pillow's fixed-point rounding of shifted filter positions (a few 1/255 steps on some pixels), while
    ordinary images take the plain resize, bit for bit what timm computes."""
    (x0, x1, out_w), (y0, y1, out_h) = _kept_span(img.size[0], new_w, size), _kept_span(img.size[1], new_h, size)
    return img.resize((out_w, out_h), Image.BICUBIC, box=(x0, y0, x1, y1))


def _kept_span(src: int, resized: int, size: int) -> tuple[float, float, int]:
    """Along one axis: (source start, source stop, output length) of the part of a ``src`` -> ``resized`` resize
    that a center crop of ``size`` keeps (all of it when ``resized <= size``: the crop then pads)."""
    if resized <= size:
        return 0.0, float(src), resized
    offset = int(round((resized - size) / 2.0))  # the crop offset _center_crop takes
    scale = src / resized
    return offset * scale, (offset + size) * scale, size


def _center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h < size or w < size:  # torchvision pads with zeros before cropping
        ph, pw = max(size - h, 0), max(size - w, 0)
        arr = np.pad(arr, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return arr[top : top + size, left : left + size]
