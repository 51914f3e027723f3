"""Benchmark the fused outlook-attention kernel on the VOLO-D1 stage-1 core shape.

    python benchmarks/outlook_kernel.py [--lib build/libvolo_outlook_kernel.so] [--iters 100]

Compares our kernel, eager ``outlook_core_reference`` and ``torch.compile`` of it (FP16, FP32),
with CUDA-event timing (median of --iters after warm-up), against the memory roofline: bytes of
v + attn + out over the device-to-device copy bandwidth measured in the same run (and over the
H200 anchor of 4.3 TB/s from REFERENCE.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

H200_ANCHOR_BPS = 4.3e12


def time_cuda(fn: Callable[[], object], iters: int, warmup: int) -> float:
    """Median milliseconds of ``fn`` over ``iters`` calls, each timed with its own CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(iters: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), 1 GiB buffers."""
    import torch

    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src), iters=max(iters // 2, 20), warmup=5)
    del src, dst
    return 2 * n / (ms * 1e-3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", type=Path, help="prebuilt libvolo_outlook_kernel.so (default: build into a temp dir)")
    ap.add_argument("--iters", type=int, default=100, help="timed iterations (>= 50)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = ap.parse_args(argv)
    if args.iters < 50:
        ap.error("--iters must be >= 50")

    import torch

    if not torch.cuda.is_available():
        print("outlook_kernel benchmark: unavailable: no CUDA GPU (torch.cuda.is_available() is False); nothing run")
        return 0

    from volo_deploy.models.outlook import OutlookParams, outlook_core_reference
    from volo_deploy.plugins_native import build_kernel_library, load_kernel

    if args.lib is None:
        major, minor = torch.cuda.get_device_capability()
        lib = build_kernel_library(Path(tempfile.mkdtemp(prefix="volo_outlook_")), archs=f"{major}{minor}")
    else:
        lib = args.lib
    kernel = load_kernel(lib)

    b, hh, ww, c, heads = args.batch, 28, 28, 192, 6
    p = OutlookParams(3, 1, 2, heads, (c // heads) ** -0.5)
    h, w = -(-hh // 2), -(-ww // 2)
    bw = copy_bandwidth(args.iters)
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, kernel lib {lib}")
    print(f"shape: v ({b},{hh},{ww},{c}), attn ({b},{h},{w},{heads * 81}), k=3 pad=1 stride=2 heads={heads}")
    print(f"measured D2D copy bandwidth: {bw / 1e12:.2f} TB/s (H200 anchor {H200_ANCHOR_BPS / 1e12:.1f} TB/s)")
    print(f"timing: median of {args.iters} iterations after {args.warmup} warm-up, CUDA events")
    header = f"{'dtype':5} {'impl':14} {'ms':>9} {'x roofline':>11} {'x H200 4.3TB/s':>15} {'vs ours':>8}"
    print(header)
    print("-" * len(header))

    for dtype in (torch.float16, torch.float32):
        g = torch.Generator(device="cuda").manual_seed(0)
        v = torch.randn(b, hh, ww, c, device="cuda", generator=g).to(dtype)
        attn = torch.randn(b, h, w, heads * 81, device="cuda", generator=g).to(dtype)
        out = torch.empty_like(v)
        nbytes = (v.numel() * 2 + attn.numel()) * v.element_size()
        roof_ms = nbytes / bw * 1e3
        anchor_ms = nbytes / H200_ANCHOR_BPS * 1e3
        ref = outlook_core_reference(v.float(), attn.float(), p)
        ours_out = kernel.outlook_attention(v, attn, p, out=out)
        torch.cuda.synchronize()
        err = ((ours_out.float() - ref).abs().max() / ref.abs().max()).item()
        name = "fp16" if dtype == torch.float16 else "fp32"
        print(f"{name}: {nbytes / 1e6:.1f} MB moved, roofline {roof_ms * 1e3:.1f} us measured / "
              f"{anchor_ms * 1e3:.1f} us at 4.3 TB/s; ours vs eager max rel diff {err:.2e}")

        impls: dict[str, Callable[[], object]] = {
            "ours": lambda: kernel.outlook_attention(v, attn, p, out=out),
            "eager": lambda: outlook_core_reference(v, attn, p),
        }
        if not args.no_compile:
            try:
                compiled = torch.compile(outlook_core_reference)
                compiled(v, attn, p)
                impls["torch.compile"] = lambda: compiled(v, attn, p)
            except Exception as exc:  # noqa: BLE001 - report and keep benchmarking the others
                print(f"  torch.compile: unavailable: {type(exc).__name__}: {str(exc)[:200]}")
        results = {k: time_cuda(fn, args.iters, args.warmup) for k, fn in impls.items()}
        for impl, ms in results.items():
            print(f"{name:5} {impl:14} {ms:9.4f} {ms / roof_ms:11.2f} {ms / anchor_ms:15.2f} "
                  f"{ms / results['ours']:8.2f}")
        print(f"{name}: ours / roofline = {results['ours'] / roof_ms:.2f}x, eager / ours = "
              f"{results['eager'] / results['ours']:.1f}x"
              + (f", torch.compile / ours = {results['torch.compile'] / results['ours']:.1f}x"
                 if "torch.compile" in results else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
