"""VOLO-D1 224 FP32 on OpenVINO CPU: our IR vs the naive timm -> dynamo ONNX graph.

    python benchmarks/openvino_vs_naive.py [--timm-python /work/timm_venv/bin/python | --naive-onnx PATH]
                                           [--iters 10] [--batch-sizes 1,8] [--threads N]

Both graphs hold the same deterministic weights (volo_deploy.models.init). Ours is
exported by ``volo_deploy`` (``openvino`` backend, dynamic batch); the naive ONNX is read
by OpenVINO directly (it has no local functions, 4 Col2Im). Each is reshaped to a
static batch and compiled with the same settings (LATENCY hint); runs are interleaved
(ours, naive, ours, ...) and the medians compared. Target: ours <= 0.8x naive at batch 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive import export_in_subprocess, interleaved_medians, naive_onnx  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="volo_d1_224")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--threads", type=int, default=None, help="OpenVINO inference threads (default: all cores)")
    ap.add_argument("--timm-python", default=None, help="python of a venv with timm + onnxscript")
    ap.add_argument("--naive-onnx", type=Path, default=None, help="a naive ONNX exported earlier")
    args = ap.parse_args()

    import openvino as ov
    from safetensors.torch import save_file

    from volo_deploy.cli.common import quiet_third_party
    from volo_deploy.models import create_model
    from volo_deploy.models.init import deterministic_state_dict

    quiet_third_party()
    work = Path(tempfile.mkdtemp(prefix="volo_ov_bench_"))
    ckpt = work / f"{args.model}.safetensors"
    save_file(deterministic_state_dict(create_model(args.model)), str(ckpt))
    ours = export_in_subprocess("ours:openvino", args.model, work / "ours", ckpt)
    ours_xml = Path(ours["path"])
    naive, source = naive_onnx(args.model, work / "naive.onnx", ckpt, args.timm_python, args.naive_onnx)

    core = ov.Core()
    from volo_deploy.runtime import inference_config

    config = {"PERFORMANCE_HINT": "LATENCY", **inference_config("fp32")}  # true FP32 (bf16 by default on bf16 CPUs)
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = str(args.threads)
    print(f"model {args.model}, OpenVINO {ov.get_version()} CPU, naive = {source}")
    print(f"  ours  export {ours['seconds']:.1f} s (incl. validation), peak RSS {ours['peak_rss_mb']:.0f} MB -> {ours_xml.name}")
    print(f"  naive export {naive['seconds']:.1f} s, peak RSS {naive['peak_rss_mb']:.0f} MB")
    rows = []
    size = create_model(args.model).cfg.img_size
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        reqs = {}
        for name, path in (("ours", str(ours_xml)), ("naive", naive["path"])):
            m = core.read_model(path)
            try:
                m.reshape([bs, 3, size, size])
            except RuntimeError:  # a batch-1 dynamo export bakes batch 1 into its Reshapes
                print(f"  {name}: {path} cannot be reshaped to batch {bs} (fixed batch); skipping batch {bs}")
                break
            reqs[name] = core.compile_model(m, "CPU", config).create_infer_request()
        if len(reqs) < 2:
            continue
        x = np.random.default_rng(0).standard_normal((bs, 3, size, size)).astype(np.float32)
        outs = {k: np.array(r.infer({0: x})[0]) for k, r in reqs.items()}
        diff = float(np.abs(outs["ours"] - outs["naive"]).max())
        med = interleaved_medians({k: (lambda r=r: r.infer({0: x})) for k, r in reqs.items()}, args.iters)
        rows.append((bs, med["ours"] * 1e3, med["naive"] * 1e3, med["ours"] / med["naive"], diff))
        del reqs
    print(f"{'batch':>5} {'ours ms':>9} {'naive ms':>9} {'ours/naive':>10} {'max|diff|':>10}")
    for bs, o, n, r, d in rows:
        print(f"{bs:>5} {o:>9.1f} {n:>9.1f} {r:>10.3f} {d:>10.2e}")
    r1 = rows[0][3]
    print(f"target: ours/naive <= 0.8 at batch {rows[0][0]} -> {'MET' if r1 <= 0.8 else 'NOT MET'} ({r1:.3f})")


if __name__ == "__main__":
    main()
