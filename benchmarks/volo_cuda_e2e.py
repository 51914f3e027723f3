"""VOLO-D1 end to end on a CUDA GPU: images/s of four ways to run the model in PyTorch.

    python benchmarks/volo_cuda_e2e.py [--batch 64] [--dtype fp16] [--iters 30] [--json out.json]

* ``eager``: our ``reference`` outlook form (the published unfold/fold code, as timm runs it);
* ``compile``: ``torch.compile`` of that model;
* ``fused``: the ``fused`` form: ``volo::outlook_attention`` on our CUDA kernel, eager;
* ``fused+compile``: ``torch.compile`` of the fused model (the op stays one opaque node).

Random weights (speed only), 224x224 inputs. Timing: CUDA events around ``--iters`` forward passes
after warm-up (a batch-64 pass is milliseconds of GPU work, so the host runs ahead and launch
overhead stays hidden; eager FP16 at small batch would be host-bound). Targets (issue 11): fused
>= 1.4x eager and >= compile at batch 64 FP16. Prints one line per variant and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def time_model(fn, x, iters: int, warmup: int = 5) -> float:
    """Median milliseconds per forward pass over 3 runs of ``iters`` passes."""
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        torch.cuda.synchronize()
        runs = []
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn(x)
            end.record()
            end.synchronize()
            runs.append(start.elapsed_time(end) / iters)
    return statistics.median(runs)


def variants(batch: int, dtype):
    """(name, callable, compile seconds) for the four variants."""
    import torch

    from volo_deploy.models import create_model, set_outlook_form

    torch.manual_seed(0)
    ref = create_model("volo_d1_224").cuda().to(dtype).eval()
    fused = set_outlook_form(create_model("volo_d1_224").cuda().to(dtype).eval(), "fused")
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
    out = [("eager", ref, 0.0), ("fused", fused, 0.0)]
    for name, model in (("compile", ref), ("fused+compile", fused)):
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        with torch.no_grad():
            compiled(x)
        torch.cuda.synchronize()
        out.append((name, compiled, time.perf_counter() - t0))
    return out, x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("volo_cuda_e2e: unavailable: no CUDA GPU (torch.cuda.is_available() is False); nothing run")
        return 0
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    runs, x = variants(args.batch, dtype)
    with torch.no_grad():
        ref_logits = runs[0][1](x).float()
    results = {}
    for name, fn, compile_s in runs:
        ms = time_model(fn, x, args.iters)
        with torch.no_grad():
            agree = (fn(x).float().argmax(1) == ref_logits.argmax(1)).float().mean().item()
        results[name] = {"ms": ms, "img_per_s": args.batch / ms * 1e3, "compile_s": compile_s, "top1_agreement": agree}
        print(f"D1 224 batch {args.batch} {args.dtype} {name:14s} {ms:8.2f} ms  {args.batch / ms * 1e3:8.0f} img/s"
              f"  (compile {compile_s:.0f} s, top-1 agreement with eager {agree:.3f})")
    e, c, f, fc = (results[k]["ms"] for k in ("eager", "compile", "fused", "fused+compile"))
    print(f"fused / eager speed-up {e / f:.2f}x (target >= 1.4x); fused vs compile {c / f:.2f}x (target >= 1.0x); "
          f"fused+compile vs compile {c / fc:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(0), "batch": args.batch,
                                         "dtype": args.dtype, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
