"""Deterministic, scale-aware weights keyed by state-dict name.

The golden-tensor script fills timm's VOLO with these and our tests fill ours the
same way, so both hold identical numbers without shipping large weight files.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn


def deterministic_tensor(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 array for state-dict entry ``name``, a function of name, shape and seed only."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), seed])
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf == "running_mean":
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if len(shape) == 1 and leaf == "weight":  # LayerNorm / BatchNorm scale
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if len(shape) == 1:  # biases
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    if name in ("pos_embed", "cls_token"):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def deterministic_state_dict(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict of ``model`` with every float tensor replaced by :func:`deterministic_tensor`."""
    out = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            out[k] = torch.from_numpy(deterministic_tensor(k, tuple(v.shape), seed))
        else:
            out[k] = v.clone()
    return out


def fill_deterministic(model: nn.Module, seed: int = 0) -> nn.Module:
    """Load :func:`deterministic_state_dict` into ``model`` (strict) and return it."""
    model.load_state_dict(deterministic_state_dict(model, seed), strict=True)
    return model


def golden_input(batch: int, img_size: int, seed: int = 0) -> torch.Tensor:
    """The normalized-image-like input the golden logits were computed on."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((batch, 3, img_size, img_size)).astype(np.float32))
