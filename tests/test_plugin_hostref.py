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


def _inputs(b: int, hh: int, ww: int, heads: int, hd: int, p: OutlookParams, seed: int = 0, dtype=np.float32):
    """(v, attn) in ``dtype`` and the float64 reference computed from those very (rounded) values."""
    g = torch.Generator().manual_seed(seed)
    h, w = -(-hh // p.stride), -(-ww // p.stride)
    tdtype = torch.float16 if dtype == np.float16 else torch.float32
    v = torch.randn(b, hh, ww, heads * hd, generator=g, dtype=torch.float64).to(tdtype)
    attn = (3 * torch.randn(b, h, w, heads * p.kernel_size**4, generator=g, dtype=torch.float64)).to(tdtype)
    ref = outlook_core_reference(v.double(), attn.double(), p).numpy()
    return v.numpy(), attn.numpy(), ref


TOL_BY_DTYPE = {np.float32: RTOL, np.float16: 2e-3}  # fp16: one rounding of the output (2^-11)


def _rel(out: np.ndarray, ref: np.ndarray) -> float:
    out = out.astype(np.float64)
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


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}_{c[1]}x{c[2]}_h{c[3]}_d{c[4]}_k{c[5]['kernel_size']}s{c[5]['stride']}p{c[5]['padding']}")
def test_host_tiled_matches_reference(hostref: HostReference, case, dtype) -> None:
    b, hh, ww, heads, hd, kw = case
    p = OutlookParams(num_heads=heads, scale=hd**-0.5, **kw)
    v, attn, ref = _inputs(b, hh, ww, heads, hd, p, dtype=dtype)
    # Default plan, then tiny tiles (every tile border / halo path), then every channel vector width.
    for max_cells in (8, 1, 2, 3):
        for vec in (1, 2, 4):
            if hd % vec:
                continue
            out, plan = hostref.tiled(v, attn, p, max_cells=max_cells, vec=vec)
            assert max(plan) <= max_cells and out.dtype == dtype
            assert _rel(out, ref) <= TOL_BY_DTYPE[dtype], (max_cells, vec, plan, _rel(out, ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES[:4] + CASES[6:], ids=lambda c: f"{c[1]}x{c[2]}_k{c[5]['kernel_size']}s{c[5]['stride']}")
def test_host_direct_matches_reference(hostref: HostReference, case, dtype) -> None:
    b, hh, ww, heads, hd, kw = case
    p = OutlookParams(num_heads=heads, scale=hd**-0.5, **kw)
    v, attn, ref = _inputs(b, hh, ww, heads, hd, p, seed=1, dtype=dtype)
    out = hostref.direct(v, attn, p)
    assert out.dtype == dtype and _rel(out, ref) <= TOL_BY_DTYPE[dtype]


@pytest.mark.parametrize("dtype, cells", [(np.float32, (5, 5)), (np.float16, (7, 7))], ids=["fp32", "fp16"])
def test_tiled_d1_plan_fits_48k(hostref: HostReference, dtype, cells) -> None:
    """The tiled path's plan for the VOLO-D1 stage-1 shape (taken when the VOLO path cannot, e.g. a
    misaligned v): FP32 smem sizing gives 10x10-pixel tiles in 48 KiB, FP16 14x14."""
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _inputs(1, 28, 28, 6, 32, p, seed=2, dtype=dtype)
    out, plan = hostref.tiled(v, attn, p, vec=4)
    assert plan == cells
    assert _rel(out, ref) <= TOL_BY_DTYPE[dtype]


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


# ---- VOLO path (k=3, s=2, pad=1, head dim 32): the launcher's plan for every VOLO shape ----------
# Outlooker stage of VOLO d1-d5 at 224/384 (img/8: 28x28, 48x48; heads 6/8/12), odd sizes, batches.
VOLO_PATH_CASES = [
    # (b, H, W, heads)
    (2, 28, 28, 6),   # d1 224
    (1, 28, 28, 8),   # d2/d3 224
    (1, 28, 28, 12),  # d4/d5 224
    (1, 48, 48, 6),   # d1 384
    (1, 48, 48, 12),  # d4/d5 384
    (1, 27, 27, 2),
    (2, 27, 26, 3),
    (1, 15, 9, 1),
    (1, 1, 1, 1),
    (1, 2, 3, 2),
    (3, 14, 14, 2),
    (1, 64, 30, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", VOLO_PATH_CASES, ids=lambda c: f"b{c[0]}_{c[1]}x{c[2]}_h{c[3]}")
def test_host_volo_path_matches_reference(hostref: HostReference, case, dtype) -> None:
    b, hh, ww, heads = case
    p = OutlookParams(3, 1, 2, heads, 32**-0.5)
    v, attn, ref = _inputs(b, hh, ww, heads, 32, p, seed=hh * 100 + ww, dtype=dtype)
    out, plan = hostref.volo(v, attn, p)
    assert out.dtype == dtype
    cells = (-(-hh // 2), -(-ww // 2))
    assert plan.tcy * plan.tiles_y >= cells[0] and plan.tcx * plan.tiles_x >= cells[1]
    assert plan.tcy <= 7 and plan.tcx <= 7 and plan.threads % 32 == 0 and plan.threads <= 416
    assert _rel(out, ref) <= TOL_BY_DTYPE[dtype], _rel(out, ref)


def test_host_volo_plan_d1_stage1(hostref: HostReference) -> None:
    """D1 stage-1 (28x28): 7x7-cell (14x14-pixel) tiles, 2x2 per image, 416 threads, 63 KiB smem."""
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _inputs(1, 28, 28, 6, 32, p, seed=3)
    out, plan = hostref.volo(v, attn, p)
    assert (plan.tcy, plan.tcx, plan.tiles_y, plan.tiles_x, plan.threads) == (7, 7, 2, 2, 416)
    assert plan.smem_bytes == (49 * 108 + 17 * 20 * 32) * 4  # sP + sV (17 x 17 pixels, rows padded to 20)
    assert _rel(out, ref) <= RTOL


@pytest.mark.parametrize("max_cells", [1, 2, 3, 5])
def test_host_volo_small_tiles(hostref: HostReference, max_cells: int) -> None:
    """Tiny tiles: every tile border, halo window and image edge of the VOLO path."""
    p = OutlookParams(3, 1, 2, 2, 32**-0.5)
    v, attn, ref = _inputs(2, 19, 22, 2, 32, p, seed=max_cells)
    out, plan = hostref.volo(v, attn, p, max_cells=max_cells)
    assert max(plan.tcy, plan.tcx) <= max_cells
    assert _rel(out, ref) <= RTOL


def test_host_volo_rejects_other_shapes(hostref: HostReference) -> None:
    p = OutlookParams(3, 1, 2, 6, 16**-0.5)  # head dim 16: not the VOLO path
    v, attn, _ = _inputs(1, 8, 8, 6, 16, p)
    with pytest.raises(ValueError):
        hostref.volo(v, attn, p)
