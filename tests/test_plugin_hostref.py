"""CPU check of the CUDA kernel's algorithm: the host replay (compiled from the kernel's own index
code, outlookAttentionCommon.cuh) against the PyTorch reference ``outlook_core_reference``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from volo_deploy.models.outlook import OutlookParams, outlook_core_reference
from volo_deploy.plugins_native import HostReference, build_host_reference

RTOL = 1e-5  # max|diff| / max|ref|, float32 on CPU


@pytest.fixture(scope="module")
def hostref(tmp_path_factory: pytest.TempPathFactory) -> HostReference:
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no host C++ compiler (g++/c++/clang++) to build the host replay")
    return HostReference(build_host_reference(tmp_path_factory.mktemp("hostref")))


def _inputs(b: int, hh: int, ww: int, heads: int, hd: int, p: OutlookParams, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = -(-hh // p.stride), -(-ww // p.stride)
    v = torch.randn(b, hh, ww, heads * hd, generator=g, dtype=torch.float64)
    attn = 3 * torch.randn(b, h, w, heads * p.kernel_size**4, generator=g, dtype=torch.float64)
    ref = outlook_core_reference(v, attn, p).float().numpy()
    return v.float().numpy(), attn.float().numpy(), ref


def _rel(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))


VOLO = dict(kernel_size=3, padding=1, stride=2)
CASES = [
    # (b, H, W, heads, head_dim, params)
    (2, 28, 28, 6, 8, VOLO),
    (1, 27, 27, 2, 8, VOLO),
    (1, 27, 26, 3, 4, VOLO),
    (3, 14, 14, 2, 4, VOLO),
    (1, 1, 1, 1, 4, VOLO),
    (1, 2, 3, 2, 2, VOLO),
    (1, 15, 9, 2, 4, dict(kernel_size=5, padding=2, stride=2)),
    (1, 9, 10, 2, 4, dict(kernel_size=3, padding=1, stride=1)),
    (1, 10, 12, 1, 4, dict(kernel_size=2, padding=0, stride=2)),
    (1, 14, 11, 2, 4, dict(kernel_size=4, padding=1, stride=3)),
    (1, 7, 5, 2, 2, dict(kernel_size=1, padding=0, stride=1)),
    (1, 14, 13, 1, 2, dict(kernel_size=3, padding=1, stride=3)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}_{c[1]}x{c[2]}_h{c[3]}_d{c[4]}_k{c[5]['kernel_size']}s{c[5]['stride']}p{c[5]['padding']}")
def test_host_tiled_matches_reference(hostref: HostReference, case) -> None:
    b, hh, ww, heads, hd, kw = case
    p = OutlookParams(num_heads=heads, scale=hd**-0.5, **kw)
    v, attn, ref = _inputs(b, hh, ww, heads, hd, p)
    # Default plan, then tiny tiles (every tile border / halo path), then every channel vector width.
    for max_cells in (8, 1, 2, 3):
        for vec in (1, 2, 4):
            if hd % vec:
                continue
            out, plan = hostref.tiled(v, attn, p, max_cells=max_cells, vec=vec)
            assert max(plan) <= max_cells
            assert _rel(out, ref) <= RTOL, (max_cells, vec, plan, _rel(out, ref))


@pytest.mark.parametrize("case", CASES[:4] + CASES[6:], ids=lambda c: f"{c[1]}x{c[2]}_k{c[5]['kernel_size']}s{c[5]['stride']}")
def test_host_direct_matches_reference(hostref: HostReference, case) -> None:
    b, hh, ww, heads, hd, kw = case
    p = OutlookParams(num_heads=heads, scale=hd**-0.5, **kw)
    v, attn, ref = _inputs(b, hh, ww, heads, hd, p, seed=1)
    assert _rel(hostref.direct(v, attn, p), ref) <= RTOL


def test_volo_d1_plan_fits_48k(hostref: HostReference) -> None:
    """VOLO-D1 stage-1 shape with FP32 smem sizing: 10x10-pixel tiles fit the 48 KiB budget."""
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _inputs(1, 28, 28, 6, 32, p, seed=2)
    out, plan = hostref.tiled(v, attn, p, vec=4)
    assert plan == (5, 5)  # FP32: 10x10-pixel tiles fit in 48 KiB (FP16 gets 7x7, see the GPU test)
    assert _rel(out, ref) <= RTOL


def test_plan_that_does_not_fit_is_reported(hostref: HostReference) -> None:
    p = OutlookParams(7, 3, 1, 1, 1.0)
    v, attn, _ = _inputs(1, 4, 4, 1, 4, p)
    with pytest.raises(ValueError):
        hostref.tiled(v, attn, p, smem_budget=1024)


def test_host_rejects_wrong_attn_grid(hostref: HostReference) -> None:
    p = OutlookParams(3, 1, 2, 1, 1.0)
    v = np.zeros((1, 8, 8, 4), np.float32)
    attn = np.zeros((1, 5, 4, 81), np.float32)
    with pytest.raises(ValueError):
        hostref.direct(v, attn, p)
