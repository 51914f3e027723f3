"""VOLO architecture configurations and the model-name registry."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from volo_deploy.errors import ModelNameError


@dataclass(frozen=True)
class VoloConfig:
    """Everything that fixes a VOLO network's shapes (inference only)."""

    family: str
    layers: tuple[int, ...]
    embed_dims: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratio: float = 3.0
    stem_hidden_dim: int = 64
    img_size: int = 224
    num_classes: int = 1000
    crop_pct: float = 0.96
    patch_size: int = 8
    pooling_scale: int = 2
    in_chans: int = 3
    num_post_layers: int = 2
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def name(self) -> str:
        return f"{self.family}_{self.img_size}"

    @property
    def grid_size(self) -> int:
        """Side of the token grid after the downsample (the pos_embed grid)."""
        return self.img_size // self.patch_size // self.pooling_scale

    def with_(self, **changes: object) -> "VoloConfig":
        return replace(self, **changes)


FAMILIES: dict[str, VoloConfig] = {
    "volo_d1": VoloConfig("volo_d1", (4, 4, 8, 2), (192, 384, 384, 384), (6, 12, 12, 12)),
    "volo_d2": VoloConfig("volo_d2", (6, 4, 10, 4), (256, 512, 512, 512), (8, 16, 16, 16)),
    "volo_d3": VoloConfig("volo_d3", (8, 8, 16, 4), (256, 512, 512, 512), (8, 16, 16, 16)),
    "volo_d4": VoloConfig("volo_d4", (8, 8, 16, 4), (384, 768, 768, 768), (12, 16, 16, 16)),
    "volo_d5": VoloConfig(
        "volo_d5", (12, 12, 20, 4), (384, 768, 768, 768), (12, 16, 16, 16), mlp_ratio=4.0, stem_hidden_dim=128
    ),
    # The bundled demo: same code path, 64x64 grey digits rendered as RGB, 10 classes.
    "volo_demo": VoloConfig(
        "volo_demo",
        (2, 1, 1, 1),
        (64, 96, 96, 96),
        (2, 3, 3, 3),
        mlp_ratio=2.0,
        stem_hidden_dim=16,
        img_size=64,
        num_classes=10,
        crop_pct=1.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}

# Published resolutions (VOLO paper, Yuan et al. 2021) and timm's eval crop_pct (timm/models/volo.py default_cfgs;
# the official sail-sg/volo config uses 0.96 for d1-d3 and 1.15 for d4-d5 at every size).
PUBLISHED: dict[str, float] = {
    "volo_d1_224": 0.96,
    "volo_d1_384": 1.0,
    "volo_d2_224": 0.96,
    "volo_d2_384": 1.0,
    "volo_d3_224": 0.96,
    "volo_d3_448": 1.0,
    "volo_d4_224": 0.96,
    "volo_d4_448": 1.15,
    "volo_d5_224": 0.96,
    "volo_d5_448": 1.15,
    "volo_d5_512": 1.15,
    "volo_demo_64": 1.0,
}

DEMO_MODEL = "volo_demo_64"
_NAME = re.compile(r"^(volo_(?:d[1-5]|demo))(?:_(\d+))?$")


def list_models() -> list[str]:
    """Names of the published variants (any ``<family>_<size>`` is also accepted)."""
    return sorted(PUBLISHED)


def get_config(name: str, img_size: int | None = None, num_classes: int | None = None) -> VoloConfig:
    """Config for ``volo_d1_224``-style names; ``volo_d1`` alone means its smallest size.

    A custom size (``volo_d2_320`` or ``img_size=320``) must be a multiple of 16.
    """
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ModelNameError(f"unknown model {name!r}; known: {', '.join(list_models())} (or <family>_<size>)")
    family, size = m.group(1), m.group(2)
    base = FAMILIES[family]
    size_i = int(img_size or size or base.img_size)
    unit = base.patch_size * base.pooling_scale
    if size_i <= 0 or size_i % unit:
        raise ModelNameError(f"image size for {family} must be a positive multiple of {unit}, got {size_i}")
    crop = PUBLISHED.get(f"{family}_{size_i}", base.crop_pct if size_i == base.img_size else 1.0)
    cfg = base.with_(img_size=size_i, crop_pct=crop)
    if num_classes is not None:
        cfg = cfg.with_(num_classes=int(num_classes))
    return cfg
