"""The CUDA outlook-attention kernel against ``outlook_core_reference`` (float64 ground truth).

Tolerances, max|out - ref| / max|ref|: FP32 <= 1e-5; FP16 <= 2e-3 (inputs are the same fp16
values; the kernel accumulates in float and rounds the output once to fp16, 2^-11 relative).
"""

from __future__ import annotations

import pytest
import torch

from volo_deploy.models.outlook import OutlookParams, outlook_core_reference
from volo_deploy.plugins_native import NativeKernelError, OutlookKernel, build_kernel_library, load_kernel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> OutlookKernel:
    major, minor = torch.cuda.get_device_capability()
    lib = build_kernel_library(tmp_path_factory.mktemp("outlook_build"), archs=f"{major}{minor}")
    return load_kernel(lib)


def _case(b: int, hh: int, ww: int, heads: int, hd: int, p: OutlookParams, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    h, w = -(-hh // p.stride), -(-ww // p.stride)
    v = torch.randn(b, hh, ww, heads * hd, device="cuda", generator=g).to(dtype)
    attn = (3 * torch.randn(b, h, w, heads * p.kernel_size**4, device="cuda", generator=g)).to(dtype)
    ref = outlook_core_reference(v.double(), attn.double(), p)
    return v, attn, ref


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("size", [(28, 28), (27, 27), (24, 24), (14, 14)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_volo_shapes(kernel: OutlookKernel, batch: int, size: tuple[int, int], dtype: torch.dtype) -> None:
    for heads in (6, 8, 12, 16):
        p = OutlookParams(3, 1, 2, heads, 32**-0.5)
        v, attn, ref = _case(batch, *size, heads, 32, p, dtype, seed=heads)
        out = kernel.outlook_attention(v, attn, p)
        torch.cuda.synchronize()
        assert out.dtype == dtype and out.shape == v.shape
        assert _rel(out, ref) <= TOL[dtype], (heads, _rel(out, ref))


GENERAL = [
    # (b, H, W, heads, head_dim, k, pad, stride)
    (2, 15, 9, 2, 32, 5, 2, 2),
    (2, 14, 14, 4, 32, 3, 1, 1),
    (3, 14, 11, 2, 16, 4, 1, 3),
    (2, 10, 12, 3, 8, 2, 0, 2),
    (2, 13, 7, 3, 6, 3, 1, 2),   # head_dim 6: fp16 half2 / fp32 float2 vectors
    (2, 9, 9, 5, 3, 3, 1, 2),    # head_dim 3: scalar path
    (1, 9, 8, 1, 32, 7, 3, 1),   # k=7, s=1: tiles do not fit 48 KiB -> generic kernel
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", GENERAL, ids=lambda c: f"{c[1]}x{c[2]}_h{c[3]}d{c[4]}_k{c[5]}p{c[6]}s{c[7]}")
def test_general_params(kernel: OutlookKernel, case, dtype: torch.dtype) -> None:
    b, hh, ww, heads, hd, k, pad, s = case
    p = OutlookParams(k, pad, s, heads, hd**-0.5)
    v, attn, ref = _case(b, hh, ww, heads, hd, p, dtype)
    out = kernel.outlook_attention(v, attn, p)
    torch.cuda.synchronize()
    assert _rel(out, ref) <= TOL[dtype], _rel(out, ref)


def test_misaligned_views_and_stream(kernel: OutlookKernel) -> None:
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _case(2, 28, 28, 6, 32, p, torch.float16)
    # v starting 2 bytes past a 16-byte boundary: the launcher must pick a narrower vector.
    buf = torch.empty(v.numel() + 1, dtype=v.dtype, device="cuda")
    v_off = buf[1:].view_as(v)
    v_off.copy_(v)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = kernel.outlook_attention(v_off, attn, p, stream=stream)
    stream.synchronize()
    assert _rel(out, ref) <= TOL[torch.float16]


def test_errors(kernel: OutlookKernel) -> None:
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, _ = _case(1, 28, 28, 6, 32, p, torch.float32)
    with pytest.raises(ValueError):
        kernel.outlook_attention(v, attn[:, :13].contiguous(), p)
    with pytest.raises(ValueError):
        kernel.outlook_attention(v, attn.half(), p)
    with pytest.raises(ValueError):
        kernel.outlook_attention(v.permute(0, 2, 1, 3), attn, p)
    # Launcher-side validation: bad scale reaches C and comes back as cudaErrorInvalidValue.
    with pytest.raises(NativeKernelError) as err:
        kernel.outlook_attention(v, attn, OutlookParams(3, 1, 2, 6, float("nan")))
    assert err.value.code == 1


def test_matches_across_batch(kernel: OutlookKernel) -> None:
    """Same image inside a batch of 64 and alone gives bit-identical results (no cross-block races)."""
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, _ = _case(64, 28, 28, 6, 32, p, torch.float16)
    full = kernel.outlook_attention(v, attn, p)
    one = kernel.outlook_attention(v[5:6].contiguous(), attn[5:6].contiguous(), p)
    torch.cuda.synchronize()
    assert torch.equal(full[5:6], one)


# ---- VOLO path (k=3, s=2, pad=1, head dim 32) and the launcher's plan choice --------------------
# Outlooker stage of VOLO d1-d5 at 224 / 384 (28x28, 48x48; heads 6/8/12) and odd sizes.
VOLO_PLANS = [(64, 28, 28, 6), (8, 28, 28, 8), (8, 28, 28, 12), (4, 48, 48, 6), (2, 48, 48, 12), (3, 27, 26, 3),
              (2, 15, 9, 1), (1, 1, 1, 1), (2, 64, 30, 2)]


@pytest.fixture(scope="module")
def hostref(tmp_path_factory: pytest.TempPathFactory):
    from volo_deploy.plugins_native import HostReference, build_host_reference

    return HostReference(build_host_reference(tmp_path_factory.mktemp("hostref")))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", VOLO_PLANS, ids=lambda c: f"b{c[0]}_{c[1]}x{c[2]}_h{c[3]}")
def test_volo_path_matches_reference_and_host_replay(kernel: OutlookKernel, hostref, case, dtype) -> None:
    """The kernel against float64 ground truth, and against its CPU replay (same plan, same staging):
    they differ only by FMA contraction and ex2/rcp approximations (<= 1e-6 relative in FP32)."""
    b, hh, ww, heads = case
    p = OutlookParams(3, 1, 2, heads, 32**-0.5)
    v, attn, ref = _case(b, hh, ww, heads, 32, p, dtype, seed=hh + ww)
    out = kernel.outlook_attention(v, attn, p)
    torch.cuda.synchronize()
    assert _rel(out, ref) <= TOL[dtype], _rel(out, ref)
    replay, _ = hostref.volo(v.cpu().numpy(), attn.cpu().numpy(), p)
    diff = _rel(out.cpu(), torch.from_numpy(replay).double())
    assert diff <= (2e-6 if dtype == torch.float32 else 1e-3), diff


def test_volo_path_misaligned_v_falls_back(kernel: OutlookKernel) -> None:
    """v not 16-byte aligned: the launcher takes the older tiled kernel, same numbers within tolerance."""
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _case(2, 28, 28, 6, 32, p, torch.float32)
    buf = torch.empty(v.numel() + 1, dtype=v.dtype, device="cuda")
    v_off = buf[1:].view_as(v)
    v_off.copy_(v)
    out = kernel.outlook_attention(v_off, attn, p)
    torch.cuda.synchronize()
    assert _rel(out, ref) <= TOL[torch.float32]


# ---- the PyTorch op on CUDA ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_op_on_cuda_runs_our_kernel(kernel: OutlookKernel, dtype, monkeypatch) -> None:
    import volo_deploy.plugins_native as native

    native.default_kernel.cache_clear()
    monkeypatch.setenv(native.KERNEL_LIB_ENV, str(kernel.path))
    p = OutlookParams(3, 1, 2, 6, 32**-0.5)
    v, attn, ref = _case(4, 28, 28, 6, 32, p, dtype)
    out = torch.ops.volo.outlook_attention(v, attn, 3, 1, 2, 6, p.scale)
    torch.cuda.synchronize()
    assert out.is_cuda and out.dtype == dtype and _rel(out, ref) <= TOL[dtype]
    native.default_kernel.cache_clear()


@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compile"])
def test_fused_model_on_cuda_matches_reference(kernel: OutlookKernel, compile_model: bool, monkeypatch) -> None:
    import volo_deploy.plugins_native as native
    from volo_deploy.models import create_model, set_outlook_form

    native.default_kernel.cache_clear()
    monkeypatch.setenv(native.KERNEL_LIB_ENV, str(kernel.path))
    torch.manual_seed(0)
    name, size = ("volo_demo_64", 64) if compile_model else ("volo_d1_224", 224)  # small graph to compile
    model = create_model(name).cuda().half().eval()
    x = torch.randn(8, 3, size, size, device="cuda").half()
    with torch.no_grad():
        ref = model(x).float()
        fused = set_outlook_form(model, "fused")
        out = (torch.compile(fused) if compile_model else fused)(x).float()
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel <= 2e-2, rel
    assert (out.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.75
    native.default_kernel.cache_clear()


def test_torch_backend_fp16_on_cuda(tmp_path) -> None:
    from volo_deploy.backends.base import ExportRequest
    from volo_deploy.backends.torch_backend import TorchBackend, TorchOptions
    from volo_deploy.jobs.export import export_model

    opts = TorchOptions(device="cuda")
    result = export_model("torch", ExportRequest(output_dir=tmp_path / "t", precision="fp16", options=opts),
                          model_name="volo_demo_64")
    runner = TorchBackend().load(result.model_file, opts)
    assert runner.device.type == "cuda" and runner.dtype == torch.float16
    assert result.validation["cosine_min"] >= 0.999
