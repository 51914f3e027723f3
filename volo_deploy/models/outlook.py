"""Outlook attention, in one place: the reference form and export-friendly forms.

The *core* of outlook attention is everything between the two input Linear layers
and ``proj``: scale + softmax of the attention logits, the weighted unfold and the
fold. All forms take and return channels-last tensors:

* ``v``:    (B, H, W, C)            output of the ``v`` Linear
* ``attn``: (B, h, w, heads*k**4)   output of the ``attn`` Linear (logits, unscaled),
            with h = ceil(H / stride), w = ceil(W / stride)
* result:   (B, H, W, C)            folded values, input of ``proj``

The attention logits are indexed ``((head * k*k) + out_pos) * k*k + src_pos``,
channels ``head * head_dim + d``: exactly the layout of the official code and timm.

Forms (selected by name on the model, see :func:`set_outlook_form`):

* ``reference``: ``F.unfold`` / ``F.fold``, the published code.
* ``slice``: strided slices for unfold, pads + sums on the coarse grid for fold.
  No Col2Im, no k*k-times wider convolutions; the default for ONNX.
* ``conv``: one-hot grouped ``conv2d`` / ``conv_transpose2d``.
* ``fused`` (``outlook_onnx``): the custom op ``volo::outlook_attention``, our CUDA kernel on a GPU
  (the ``slice`` form on the CPU), one opaque node for ``torch.compile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from volo_deploy.models.layers import TokenLinear


@dataclass(frozen=True)
class OutlookParams:
    """Static attributes of one outlook-attention core (match the ONNX node / plugin)."""

    kernel_size: int = 3
    padding: int = 1
    stride: int = 2
    num_heads: int = 6
    scale: float = 32**-0.5


CoreFn = Callable[[torch.Tensor, torch.Tensor, OutlookParams], torch.Tensor]
OUTLOOK_FORMS: dict[str, CoreFn] = {}


def register_form(name: str) -> Callable[[CoreFn], CoreFn]:
    """Register an outlook-attention core implementation under ``name``."""

    def wrap(fn: CoreFn) -> CoreFn:
        OUTLOOK_FORMS[name] = fn
        return fn

    return wrap


def get_form(name: str) -> CoreFn:
    """Return the core implementation called ``name``; unknown names list the known."""
    try:
        return OUTLOOK_FORMS[name]
    except KeyError:
        known = ", ".join(sorted(OUTLOOK_FORMS))
        raise ValueError(f"unknown outlook-attention form {name!r}; known: {known}") from None


def _softmax_attn(attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """(B, h, w, heads*kk*kk) logits -> (B, heads, h*w, kk, kk) probabilities."""
    b, h, w, _ = attn.shape
    kk = p.kernel_size * p.kernel_size
    a = attn.reshape(b, h * w, p.num_heads, kk, kk).permute(0, 2, 1, 3, 4)
    return (a * p.scale).softmax(dim=-1)


@register_form("reference")
def outlook_core_reference(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """The published computation (unfold -> attn @ v -> fold)."""
    b, hh, ww, c = v.shape
    h, w = attn.shape[1], attn.shape[2]
    k, kk = p.kernel_size, p.kernel_size * p.kernel_size
    vu = F.unfold(v.permute(0, 3, 1, 2), k, padding=p.padding, stride=p.stride)
    vu = vu.reshape(b, p.num_heads, c // p.num_heads, kk, h * w).permute(0, 1, 4, 3, 2)
    o = (_softmax_attn(attn, p) @ vu).permute(0, 1, 4, 3, 2).reshape(b, c * kk, h * w)
    o = F.fold(o, output_size=(hh, ww), kernel_size=k, padding=p.padding, stride=p.stride)
    return o.permute(0, 2, 3, 1)


def _windows_weighted(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """Unfold ``v`` with strided slices and apply the attention: (B, h, w, kk, C)."""
    b, hh, ww, c = v.shape
    h, w = attn.shape[1], attn.shape[2]
    k, s, pad = p.kernel_size, p.stride, p.padding
    need_h, need_w = s * (h - 1) + k, s * (w - 1) + k
    vp = F.pad(v, (0, 0, pad, max(need_w - ww - pad, 0), pad, max(need_h - hh - pad, 0)))
    cols = [
        vp[:, di : di + s * (h - 1) + 1 : s, dj : dj + s * (w - 1) + 1 : s, :]
        for di in range(k)
        for dj in range(k)
    ]
    vu = torch.stack(cols, dim=3)  # (B, h, w, kk, C)
    vu = vu.reshape(b, h * w, k * k, p.num_heads, c // p.num_heads).permute(0, 3, 1, 2, 4)
    o = _softmax_attn(attn, p) @ vu  # (B, heads, L, kk, hd)
    return o.permute(0, 2, 3, 1, 4).reshape(b, h, w, k * k, c)


@register_form("slice")
def outlook_core_slice(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """Pad/slice form. Fold groups kernel offsets by their residue modulo the stride:
    offset ``d = s*q + r`` lands on canvas row ``s*(i+q) + r``, so each residue class is
    a sum of coarse-grid shifts (pads), and the residues interleave with one reshape."""
    b, hh, ww, c = v.shape
    h, w = attn.shape[1], attn.shape[2]
    k, s, pad = p.kernel_size, p.stride, p.padding
    o = _windows_weighted(v, attn, p)
    nq = math.ceil(k / s)
    rows = []
    for ri in range(s):
        cols = []
        for rj in range(s):
            acc = None
            for qi in range(nq):
                for qj in range(nq):
                    di, dj = s * qi + ri, s * qj + rj
                    if di >= k or dj >= k:
                        continue
                    shifted = F.pad(o[:, :, :, di * k + dj, :], (0, 0, qj, nq - 1 - qj, qi, nq - 1 - qi))
                    acc = shifted if acc is None else acc + shifted
            if acc is None:
                acc = v.new_zeros(b, h + nq - 1, w + nq - 1, c)
            cols.append(acc)
        rows.append(torch.stack(cols, dim=3))  # (B, h+nq-1, w+nq-1, s, C)
    canvas = torch.stack(rows, dim=2)  # (B, h+nq-1, s, w+nq-1, s, C)
    canvas = canvas.reshape(b, (h + nq - 1) * s, (w + nq - 1) * s, c)
    need_h, need_w = pad + hh, pad + ww
    if canvas.shape[1] < need_h or canvas.shape[2] < need_w:
        canvas = F.pad(canvas, (0, 0, 0, max(need_w - canvas.shape[2], 0), 0, max(need_h - canvas.shape[1], 0)))
    return canvas[:, pad : pad + hh, pad : pad + ww, :]


def _one_hot_kernel(c: int, k: int, like: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(k * k, dtype=like.dtype, device=like.device).reshape(k * k, 1, k, k)
    return eye.repeat(c, 1, 1, 1)  # (C*kk, 1, k, k), channel index c*kk + kk_pos


@register_form("conv")
def outlook_core_conv(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """One-hot grouped conv2d for unfold and conv_transpose2d for fold."""
    b, hh, ww, c = v.shape
    h, w = attn.shape[1], attn.shape[2]
    k, s, pad, kk = p.kernel_size, p.stride, p.padding, p.kernel_size**2
    weight = _one_hot_kernel(c, k, v)
    vu = F.conv2d(v.permute(0, 3, 1, 2), weight, stride=s, padding=pad, groups=c)  # (B, C*kk, h, w)
    vu = vu.reshape(b, p.num_heads, c // p.num_heads, kk, h * w).permute(0, 1, 4, 3, 2)
    o = (_softmax_attn(attn, p) @ vu).permute(0, 1, 4, 3, 2).reshape(b, c * kk, h, w)
    out_pad = (hh - ((h - 1) * s - 2 * pad + k), ww - ((w - 1) * s - 2 * pad + k))
    o = F.conv_transpose2d(o, weight, stride=s, padding=pad, output_padding=out_pad, groups=c)
    return o.permute(0, 2, 3, 1)


def ceil_avg_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``AvgPool2d(stride, stride, ceil_mode=True)`` on channels-first ``x``.

    Sizes divisible by ``stride`` use a plain pool (bit-identical). Other sizes are
    zero-padded and rescaled by the true window count, because ONNX AveragePool's
    ceil_mode divisor differs between runtimes.
    """
    hh, ww = x.shape[-2], x.shape[-1]
    if hh % stride == 0 and ww % stride == 0:
        return F.avg_pool2d(x, stride, stride)
    ph, pw = (-hh) % stride, (-ww) % stride
    pooled = F.avg_pool2d(F.pad(x, (0, pw, 0, ph)), stride, stride)
    ones = torch.ones(1, 1, hh, ww, dtype=x.dtype, device=x.device)
    counts = F.avg_pool2d(F.pad(ones, (0, pw, 0, ph)), stride, stride)
    return pooled / counts


class OutlookAttention(nn.Module):
    """Outlook attention (channels-last in and out) with a switchable core form."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 2,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        head_dim = dim // num_heads
        self.params = OutlookParams(kernel_size, padding, stride, num_heads, head_dim**-0.5)
        self.v = TokenLinear(dim, dim, bias=qkv_bias)
        self.attn = TokenLinear(dim, kernel_size**4 * num_heads)
        self.proj = TokenLinear(dim, dim)
        self.form = "reference"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v(x)
        pooled = ceil_avg_pool(x.permute(0, 3, 1, 2), self.params.stride).permute(0, 2, 3, 1)
        attn = self.attn(pooled)
        return self.proj(self.core(v, attn))

    def core(self, v: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Run the core in the selected form (an export hook may replace this)."""
        return get_form(self.form)(v, attn, self.params)


def set_outlook_form(model: nn.Module, form: str) -> nn.Module:
    """Switch every outlook-attention module of ``model`` to ``form``; returns ``model``."""
    get_form(form)
    for m in model.modules():
        if isinstance(m, OutlookAttention):
            m.form = form
    return model
