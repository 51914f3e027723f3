"""Benchmark the fused outlook-attention kernel on the VOLO-D1 stage-1 core shape.

    python benchmarks/outlook_kernel.py [--lib build/libvolo_outlook_kernel.so] [--iters 100]
    python benchmarks/outlook_kernel.py --static      # no GPU: SASS-based estimate (outlook_sass.py)

GPU mode compares our kernel, eager ``outlook_core_reference`` and ``torch.compile`` of it (FP16, FP32)
against the memory roofline (bytes of v + attn + out over the device-to-device copy bandwidth
measured in the same run, and over the H200's 4.3 TB/s HBM3e). Two choices make the numbers mean
device time at DRAM speed:

* timing: N calls are captured in one CUDA graph and the graph is replayed between two CUDA events,
  so no Python or ctypes host time falls inside the timed window (``--no-graph``: events around a
  loop of calls, host overhead included; used as a fallback when capture fails);
* inputs: the calls rotate over input sets whose total size is >= 4x the L2 cache (read from the
  device properties), so every call reads v and attn from DRAM, not from L2.

Static mode prints per-phase SASS instruction counts times the launch plan's trip counts for
sm_90 (H200) and sm_87 (Orin), shared-memory wavefronts, bytes moved and occupancy; the last line is
``issue floor X us (roofline 11.8 us)``. The model and its assumptions: ``benchmarks/outlook_sass.py``.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Anchors of the core alone on an H200, batch 64 FP16 (issue 11): eager unfold/fold and torch.compile.
ANCHOR_EAGER_MS, ANCHOR_COMPILE_MS = 1.364, 0.596
H200_HBM_BPS = 4.3e12  # the H200 roofline figure used throughout (HBM3e; datasheet peak 4.8 TB/s)
L2_FACTOR = 4


def run_static(batch: int, dtype: str) -> int:
    """Print the SASS-based estimate for the D1 stage-1 shape (sm_87 first, sm_90 last)."""
    import outlook_sass

    results = {}
    for arch in ("87", "90"):
        try:
            results[arch] = outlook_sass.estimate(arch, batch, 28, 28, 6, dtype)
        except (RuntimeError, FileNotFoundError) as exc:
            print(f"sm_{arch}: static estimate unavailable: {exc}")
            if arch == "90":
                return 1
            continue
        print("\n".join(outlook_sass.report(results[arch])))
    e = results["90"]
    print(f"D1 stage-1 core, batch {batch} {dtype}: bytes moved {e['dram_bytes'] / 1e6:.1f} MB (DRAM, unique); "
          f"occupancy {e['resident']} blocks/SM x {e['plan'].threads} threads; smem floor {e['smem_us']:.1f} us")
    print(f"issue floor {e['issue_us']:.1f} us (roofline {e['roofline_us']:.1f} us)")
    return 0


def time_graph(calls: list[Callable[[], object]], reps: int) -> float:
    """Median device milliseconds per call: ``calls`` captured once in a CUDA graph, replayed ``reps`` times."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in calls[:3]:  # warm-up outside capture (allocator, lazy init, autotuning)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in calls:
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(calls))
    return statistics.median(times)


def time_events(calls: list[Callable[[], object]], reps: int) -> float:
    """Fallback: CUDA events around a loop of the calls (includes host launch overhead)."""
    import torch

    for fn in calls[:3]:
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for fn in calls:
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(calls))
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), 1 GiB buffers, graph-timed."""
    import torch

    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_graph([lambda: dst.copy_(src)] * 4, reps=10)
    del src, dst
    return 2 * n / (ms * 1e-3)


def input_sets(batch: int, dtype, heads: int, l2_bytes: int) -> tuple[list, int]:
    """Rotating (v, attn, out) sets whose total is >= L2_FACTOR x L2; returns (sets, bytes per set)."""
    import torch

    hh = ww = 28
    c, h = heads * 32, 14
    g = torch.Generator(device="cuda").manual_seed(0)
    one = (batch * hh * ww * c * 2 + batch * h * h * heads * 81) * torch.finfo(dtype).bits // 8
    n = max(2, -(-L2_FACTOR * l2_bytes // one))
    sets = []
    for _ in range(n):
        v = torch.randn(batch, hh, ww, c, device="cuda", generator=g).to(dtype)
        attn = torch.randn(batch, h, h, heads * 81, device="cuda", generator=g).to(dtype)
        sets.append((v, attn, torch.empty_like(v)))
    return sets, one


def bench_dtype(kernel, dtype, args, bw: float, l2: int) -> None:
    """Time ours / eager / torch.compile on rotating inputs of one dtype and print the table rows."""
    import torch

    from volo_deploy.models.outlook import OutlookParams, outlook_core_reference

    heads = 6
    p = OutlookParams(3, 1, 2, heads, 32**-0.5)
    sets, one = input_sets(args.batch, dtype, heads, l2)
    name = "fp16" if dtype == torch.float16 else "fp32"
    v, attn, out = sets[0]
    err = ((kernel.outlook_attention(v, attn, p, out=out).float() - outlook_core_reference(v.float(), attn.float(), p))
           .abs().max() / out.float().abs().max()).item()
    print(f"{name}: {one / 1e6:.1f} MB per call, {len(sets)} rotating sets = {len(sets) * one / 1e6:.0f} MB "
          f"(>= {L2_FACTOR} x L2 {l2 / 1e6:.0f} MB); roofline {one / bw * 1e6:.1f} us measured-copy / "
          f"{one / H200_HBM_BPS * 1e6:.1f} us at 4.3 TB/s; ours vs eager max rel diff {err:.2e}")
    reps = max(1, args.iters // len(sets))
    impls: dict[str, Callable[[tuple], Callable[[], object]]] = {
        "ours": lambda s: (lambda: kernel.outlook_attention(s[0], s[1], p, out=s[2])),
        "eager": lambda s: (lambda: outlook_core_reference(s[0], s[1], p)),
    }
    if not args.no_compile:
        compiled = torch.compile(outlook_core_reference)
        impls["torch.compile"] = lambda s: (lambda: compiled(s[0], s[1], p))
    results = {}
    for impl, make in impls.items():
        calls = [make(s) for s in sets] * max(1, 64 // len(sets))
        try:
            ms = time_events(calls, reps) if args.no_graph else time_graph(calls, reps)
            how = "events" if args.no_graph else "graph"
        except Exception as exc:  # noqa: BLE001 - capture can fail for some impls: fall back, say so
            print(f"  {impl}: CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:120]}); events fallback")
            ms, how = time_events(calls, reps), "events"
        results[impl] = ms
        print(f"{name:5} {impl:14} {ms * 1e3:9.1f} us {ms * 1e-3 / (one / bw):7.2f}x roof "
              f"{ms * 1e-3 / (one / H200_HBM_BPS):7.2f}x 4.3TB/s  [{how}]")
    summary = ", ".join(f"{k} / ours = {v / results['ours']:.1f}x" for k, v in results.items() if k != "ours")
    anchors = ""
    if dtype == torch.float16 and args.batch == 64:
        anchors = (f"; anchors: eager {ANCHOR_EAGER_MS} ms = {ANCHOR_EAGER_MS / results['ours']:.0f}x ours, "
                   f"compile {ANCHOR_COMPILE_MS} ms = {ANCHOR_COMPILE_MS / results['ours']:.0f}x ours")
    print(f"{name}: ours {results['ours'] * 1e3:.1f} us = {results['ours'] * 1e-3 / (one / H200_HBM_BPS):.2f}x "
          f"the 4.3 TB/s roofline; {summary}{anchors}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--static", action="store_true", help="no GPU: estimate from the SASS (sm_90, sm_87)")
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="static mode dtype")
    ap.add_argument("--lib", type=Path, help="prebuilt libvolo_outlook_kernel.so (default: build into a temp dir)")
    ap.add_argument("--iters", type=int, default=100, help="timed graph replays x sets (>= 20)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--no-graph", action="store_true", help="time with events around a call loop instead")
    args = ap.parse_args(argv)
    if args.static:
        return run_static(args.batch, args.dtype)
    if args.iters < 20:
        ap.error("--iters must be >= 20")

    import torch

    if not torch.cuda.is_available():
        print("outlook_kernel benchmark: unavailable: no CUDA GPU (torch.cuda.is_available() is False); "
              "nothing run (try --static)")
        return 0
    from volo_deploy.plugins_native import build_kernel_library, load_kernel

    if args.lib is None:
        major, minor = torch.cuda.get_device_capability()
        lib = build_kernel_library(Path(tempfile.mkdtemp(prefix="volo_outlook_")), archs=f"{major}{minor}")
    else:
        lib = args.lib
    kernel = load_kernel(lib)
    props = torch.cuda.get_device_properties(0)
    l2 = int(getattr(props, "L2_cache_size", 0)) or 60 * 2**20
    bw = copy_bandwidth()
    print(f"device: {props.name}, {props.multi_processor_count} SMs, L2 {l2 / 2**20:.0f} MiB, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, kernel lib {lib} (version {kernel.version})")
    print(f"shape: v ({args.batch},28,28,192), attn ({args.batch},14,14,486), k=3 pad=1 stride=2 heads=6")
    print(f"measured D2D copy bandwidth: {bw / 1e12:.2f} TB/s (H200 anchor {H200_HBM_BPS / 1e12:.1f} TB/s)")
    print("timing note: " + ("CUDA events around a loop of calls (host overhead included)" if args.no_graph else
                             "calls captured in one CUDA graph, device time only (no Python/ctypes in the window)")
          + f"; inputs rotate over sets totalling >= {L2_FACTOR} x L2 so each call reads DRAM")
    for dtype in (torch.float16, torch.float32):
        bench_dtype(kernel, dtype, args, bw, l2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
