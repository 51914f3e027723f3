"""Checkpoint reading: official sail-sg/volo and timm files, training wrappers, variant
detection from tensor shapes, and pos_embed resizing across resolutions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from volo_deploy.errors import CheckpointError
from volo_deploy.models.configs import FAMILIES, VoloConfig

SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin", ".safetensors")
_WRAPPERS = ("state_dict", "model", "state_dict_ema", "model_ema")
_EMA_FIRST = ("state_dict_ema", "model_ema", "state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")
_REQUIRED = ("patch_embed.conv.0.weight", "network.0.0.attn.attn.weight", "pos_embed", "head.weight")


@dataclass
class CheckpointInfo:
    """What was found in a checkpoint file (reported to the user)."""

    path: str
    wrapper: str | None
    family: str
    img_size: int
    num_classes: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        src = f" (from '{self.wrapper}')" if self.wrapper else ""
        return f"{self.path}{src}: {self.family}, trained at {self.img_size}px, {self.num_classes} classes"


def read_state_dict(path: str | Path, use_ema: bool = False) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load a raw state dict from ``path``, unwrapping training checkpoints and prefixes."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: file not found")
    if not p.name.endswith(SUFFIXES):
        raise CheckpointError(f"checkpoint {p}: expected one of {', '.join(SUFFIXES)}, found '{p.suffix or p.name}'")
    try:
        if p.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj: object = load_file(str(p))
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for corrupt files
        raise CheckpointError(f"checkpoint {p}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {p}: expected a state dict, found {type(obj).__name__}")
    wrapper = None
    for key in _EMA_FIRST if use_ema else _WRAPPERS:
        if isinstance(obj.get(key), dict):
            obj, wrapper = obj[key], key
            break
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        for pre in _PREFIXES:
            while k.startswith(pre):
                k = k[len(pre) :]
        sd[k] = v
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        sample = ", ".join(list(sd)[:4]) or "no tensors"
        raise CheckpointError(
            f"checkpoint {p}: not a VOLO state dict; expected keys {', '.join(_REQUIRED)}, "
            f"missing {', '.join(missing)} (found {len(sd)} tensors, e.g. {sample})"
        )
    return sd, wrapper


def _stage_depths(sd: dict[str, torch.Tensor]) -> dict[int, int]:
    depths: dict[int, int] = {}
    for k in sd:
        m = re.match(r"network\.(\d+)\.(\d+)\.norm1\.weight$", k)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depths[s] = max(depths.get(s, 0), b + 1)
    return depths


def detect_config(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> VoloConfig:
    """Infer the VOLO configuration (family, size, classes) from tensor shapes."""
    depths = _stage_depths(sd)
    stages = sorted(depths)
    if not stages or stages[0] != 0 or "network.1.proj.weight" not in sd:
        raise CheckpointError(f"{source}: not a VOLO state dict (no outlooker stage / downsample found)")
    layers = tuple(depths[s] for s in stages)
    dims = tuple(int(sd[f"network.{s}.0.norm1.weight"].shape[0]) for s in stages)
    stem = int(sd["patch_embed.conv.0.weight"].shape[0])
    mlp = sd["network.0.0.mlp.fc1.weight"].shape[0] / dims[0]
    grid = int(sd["pos_embed"].shape[1])
    num_classes = int(sd["head.weight"].shape[0])
    outlook_heads = int(sd["network.0.0.attn.attn.weight"].shape[0]) // 81
    family = next(
        (
            f
            for f, c in FAMILIES.items()
            if (c.layers, c.embed_dims, c.stem_hidden_dim, c.mlp_ratio) == (layers, dims, stem, mlp)
        ),
        None,
    )
    if family is not None:
        base = FAMILIES[family]
    else:  # a custom VOLO: transformer heads are not visible in shapes; VOLO uses head_dim 32
        base = VoloConfig("volo_custom", layers, dims, (outlook_heads,) + tuple(d // 32 for d in dims[1:]))
        base = base.with_(mlp_ratio=mlp, stem_hidden_dim=stem)
    num_post = len({k.split(".")[1] for k in sd if k.startswith("post_network.")})
    return base.with_(
        img_size=grid * base.patch_size * base.pooling_scale, num_classes=num_classes, num_post_layers=num_post
    )


def describe_config(cfg: VoloConfig) -> str:
    return f"{cfg.family} (layers {cfg.layers}, dims {cfg.embed_dims}, stem {cfg.stem_hidden_dim}, mlp {cfg.mlp_ratio:g})"


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resize of a channels-last (1, g, g, C) pos_embed, as the official loader does."""
    if pos_embed.shape[1] == grid and pos_embed.shape[2] == grid:
        return pos_embed
    x = pos_embed.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(pos_embed.dtype)


def adapt_state_dict(
    sd: dict[str, torch.Tensor], found: VoloConfig, want: VoloConfig, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Check that ``sd`` (detected as ``found``) fits ``want`` and resize pos_embed if needed."""
    if (found.layers, found.embed_dims, found.stem_hidden_dim, found.mlp_ratio) != (
        want.layers,
        want.embed_dims,
        want.stem_hidden_dim,
        want.mlp_ratio,
    ):
        raise CheckpointError(
            f"{source}: expected {describe_config(want)} weights for --model {want.name}, "
            f"found {describe_config(found)}"
        )
    notes = []
    sd = dict(sd)
    if found.grid_size != want.grid_size:
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], want.grid_size)
        notes.append(
            f"pos_embed resized {found.grid_size}x{found.grid_size} -> {want.grid_size}x{want.grid_size} "
            f"(trained at {found.img_size}px, running at {want.img_size}px, bicubic)"
        )
    return sd, notes
