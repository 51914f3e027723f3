"""Layers with an export-friendly mode that computes the same numbers.

``TokenLinear`` flattens (..., C) to 2-D before the matmul so ONNX gets a ``Gemm``
with its bias fused (ONNX Runtime fuses MatMul+Add only for 2-D inputs); ``Gelu``
spells out ``x * 0.5 * (1 + erf(x / sqrt 2))`` in the order ONNX Runtime's Gelu
fusion recognises. Switch with :func:`set_export_friendly`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TokenLinear(nn.Linear):
    """``nn.Linear`` (same state dict); in export mode runs as a 2-D ``Gemm``."""

    export_friendly = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.export_friendly or x.dim() == 2:
            return super().forward(x)
        lead = x.shape[:-1]
        y = super().forward(x.reshape(-1, x.shape[-1]))
        return y.reshape(*lead, y.shape[-1])


class Gelu(nn.GELU):
    """Exact (erf) GELU; in export mode written out as ONNX Runtime fuses it."""

    export_friendly = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.export_friendly:
            return super().forward(x)
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def set_export_friendly(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch every :class:`TokenLinear` and :class:`Gelu` of ``model``; returns ``model``."""
    for m in model.modules():
        if isinstance(m, (TokenLinear, Gelu)):
            m.export_friendly = enabled
    return model
