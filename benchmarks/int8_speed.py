"""FP32 vs bf16 vs INT8 latency of VOLO-D1 224 on OpenVINO CPU and onnxruntime CPU, side by side.

    python benchmarks/int8_speed.py [--iters 10] [--batch-sizes 1,8] [--weight-bits auto] [--profile] [--nncf]

One dynamic-batch FP32 portable ONNX (deterministic weights) is quantized with the
``onnxruntime`` and ``openvino`` Q/DQ profiles (calibration: 16 synthetic images; speed
does not depend on the ranges; weight bits by this CPU unless ``--weight-bits``). Each runtime
gets a static-shape model per batch size, compiled as the backends do: true FP32 (OpenVINO
``INFERENCE_PRECISION_HINT`` f32, checked on the compiled model), bf16 where the CPU has it,
INT8 with FP32 float parts; "int8+bf16" (OpenVINO INT8 with bf16 float parts, what its CPU
default gives on bf16 CPUs) is timed for comparison only. Calls of all variants are
interleaved and the medians compared as ratios to true FP32. ``--profile`` prints where the
time goes per op type: onnxruntime ``enable_profiling`` and OpenVINO ``PERF_COUNT``
(``get_profiling_info``, with the kernel each node ran). ``--nncf`` adds NNCF's native
OpenVINO INT8. Targets: without VNNI, OpenVINO INT8 >= 1.3x faster than FP32 at batch 8; with
VNNI, INT8 >= 2.5x faster than true FP32 at batch 8.

Zen 5 (2-core AMD EPYC family 26 model 2: avx512f/bw/vl, avx512_vnni, avx_vnni, avx512_bf16;
8-bit weights), shared with ~6 other jobs (load average 12-19: absolute times ~10x idle; ratios
only), batch 8, median of 5 interleaved calls, ``--batch-sizes 8 --iters 5 --profile``::

    before (main)      : onnxruntime int8 1.80x | openvino bf16 1.61x, int8 2.09x, int8+bf16 1.74x  (load 14-17)
    after  (perf_20)   : onnxruntime int8 1.95x | openvino bf16 1.51x, int8 1.74x, int8+bf16 1.84x  (load 3-7)
    (the two runs' loads differ: compare each run's ratios, not before with after; the ORT Conv
    change alone, old and new INT8 interleaved in one run: 3% faster)

    per op type, ms per call, fp32 | int8 (before; same load)
    ORT       Gemm 4548 | QGemm 1704 (+ Gemm 59 heads); Conv 928 | QLinearConv 235 + Conv 186 (two convs
              left float: their float outputs stopped the QLinearConv fusion); MatMul 441 | 513 and
              FusedMatMul 390 | 347 (attention, kept float); Transpose 261 | 326; Gelu 257 | 223;
              Softmax 224 | 223; total 7892 | 4715
    OpenVINO  FullyConnected f32 4456 | FullyConnectedQuantizedLegacy [brgemm_avx512_i8] 1442;
              Subgraph (fused eltwise) 1009 | 976; Convolution 773 | 205 (I8); Transpose 274 | 332;
              Reorder 247 | 172; ReduceMean 206 | 210; Softmax 230 | 157; total 7819 | 3997
    after (load 3-7): ORT QGemm 514, QLinearConv 71 (all 5 convs), Conv 0, QuantizeLinear 110, MatMul 199 +
              FusedMatMul 100 (attention, float), Transpose 136; total 2642 | 1594. OpenVINO int8: FC i8 653,
              Subgraph 385, Convolution I8 99, Transpose 81; total 2988 | 1586

Measured on the 2-core AMD EPYC Zen 4 box (avx512_vnni, avx512_bf16; 8-bit weights), shared
with other jobs (load average 3-7: absolute times are inflated and moved 3.5x between runs at
batch 8; ratios are what count), median of 10 (runs 1, 2) or 15 (run 3) interleaved calls, ms
(x = true fp32 / it)::

    run 1, batch 1: onnxruntime fp32  387.5 int8  179.8 (2.16x) | openvino fp32  434.8 bf16  252.0 (1.73x) int8  195.8 (2.22x)
           batch 8: onnxruntime fp32 3683.9 int8 1932.0 (1.91x) | openvino fp32 3634.8 bf16 2019.3 (1.80x) int8 1819.7 (2.00x)
    run 2, batch 1: onnxruntime fp32  397.4 int8  212.9 (1.87x) | openvino fp32  438.6 bf16  261.4 (1.68x) int8  208.0 (2.11x)
                                                                   int8+bf16 192.3 (2.28x)
           batch 8: onnxruntime fp32 1047.6 int8  511.8 (2.05x) | openvino fp32  967.6 bf16  628.8 (1.54x) int8  407.9 (2.37x)
                                                                   int8+bf16 335.8 (2.88x)
    run 3, batch 1: onnxruntime fp32  289.9 int8  147.1 (1.97x) | openvino fp32  326.2 bf16  207.7 (1.57x) int8  165.5 (1.97x)
                                                                   int8+bf16 144.0 (2.27x)
           batch 8: onnxruntime fp32 2276.3 int8 1163.4 (1.96x) | openvino fp32 2231.8 bf16 1320.1 (1.69x) int8 1203.5 (1.85x)
                                                                   int8+bf16 1004.6 (2.22x)

onnxruntime bf16: n/a (no bf16 kernels on x86). The 2.5x INT8 target at batch 8 is NOT met
with FP32 float parts under this load (OpenVINO 1.85-2.37x, onnxruntime 1.91-2.05x); OpenVINO's
own default on this CPU (INT8 with bf16 float parts) gives 2.22-2.88x, at the cost of bf16
error in the unquantized layers. The same box idle (load average ~1), median of 10 interleaved calls::

    batch 1: onnxruntime fp32   85.2 int8   46.0 (1.85x) | openvino fp32  76.5 bf16  45.6 (1.68x) int8  33.7 (2.27x)
                                                            int8+bf16  32.0 (2.39x)
    batch 8: onnxruntime fp32  700.0 int8  374.9 (1.87x) | openvino fp32 631.7 bf16 350.0 (1.80x) int8 291.7 (2.17x)
                                                            int8+bf16 254.6 (2.48x)

so idle too the target is not met (best 2.17x at batch 8). Where the time goes
(``--profile``, batch 8, one run, ms per call, fp32 | int8)::

    OpenVINO  FullyConnected  [gemm_mlas_f32 + brgconv_avx512_1x1_f32 + brgemm_avx512_f32] 976 |
                              [brgemm_avx512_i8 (VNNI)] 317 (+ 15 float heads)
              Convolution     [brgconv_avx512_f32] 212 | [brgconv_avx512_I8] 59
              Subgraph (fused eltwise) 196 | 209; Transpose, Reorder, ReduceMean, Softmax... ~230 | ~180
              total 1656 | 821 (2.0x)
    ORT       Gemm 1325 | QGemm 438 (+ Gemm 14); Conv 312 | QLinearConv 88 + Conv 66; total 2198 | 1194

The int8 GEMMs are ~3x faster than FP32 ones; the float parts (eltwise, GELU, LayerNorm,
Softmax, the outlook core, ~40% of the INT8 model's time) cap the whole model near 2x.

Measured on the 2-core AMD EPYC dev box (AVX2, no AVX-512/VNNI; 7-bit weights), idle,
onnxruntime 1.32, OpenVINO 2026.4, median of 10 interleaved calls, fp32/int8 (>1: int8 faster)::

    batch 1: onnxruntime fp32 110.1 int8  80.9 ms 1.36x | openvino fp32  102.8 int8  104.4 ms 0.98x
    batch 8: onnxruntime fp32 1060  int8 791   ms 1.34x | openvino fp32 1061   int8 1206   ms 0.88x

Earlier, on the same box under load ~10 (ratios only): default placement batch 8 ORT 1.24x,
OpenVINO 1.06x; Conv-only int8 (--keep-float 'network.[0234].*' --keep-float 'post_network.*')
batch 8 ORT 1.00x, OpenVINO 1.08x.

Where the time goes (batch 8, ms per call, fp32 | int8, one profiling run)::

    OpenVINO  FullyConnected  [gemm_mlas_f32 + brgemm_avx2_f32] 3059 | [jit_gemm_i8] 3140
              Convolution     [brgconv_avx2_f32]                 623 | [jit_avx2_I8]   321
              Subgraph (fused eltwise, incl. FakeQuantize)        527 |                 881
    ORT       Gemm 3619 | QGemm 2240 (+ QuantizeLinear 235); Conv 722 | QLinearConv 316

OpenVINO's int8 FullyConnected on AVX2 without VNNI runs oneDNN's legacy ``jit_gemm_i8``,
no faster than its f32 kernels (u8 activations take ``jit_gemm_I8``: same time), and the
FullyConnected layers are ~60% of the model, so no placement reaches 1.3x on this CPU:
quantizing only the convolutions (2x faster kernel, ~12% of the time) gives the best
OpenVINO ratio, 1.08x. onnxruntime's MLAS u8s8 GEMM is 1.6x faster than its f32 GEMM here.
On a CPU with VNNI (``avx512_vnni``/``avx_vnni`` in lscpu) OpenVINO switches to brgemm int8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive import interleaved_medians  # noqa: E402


def static_batch(proto, batch: int):
    import onnx

    p = onnx.ModelProto()
    p.CopyFrom(proto)
    for vi in list(p.graph.input) + list(p.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = batch
    return p


def ort_session(proto, profile_dir: str | None = None):
    import onnxruntime as ort

    from volo_deploy.runtime import session_options

    so = session_options("fp32", log_severity=3)  # exact-math entries pinned; int8 models: float parts fp32
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # interleaved sessions: see onnx_vs_naive
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(profile_dir) / "ort")
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ov_compiled(model_or_proto, batch: int, precision: str = "fp32", perf: bool = False):
    """Compiled for ``precision`` (INFERENCE_PRECISION_HINT pinned, as the OpenVINO backend does);
    ``int8+bf16``: an INT8 model with its float parts in bf16 (not a precision of ours: for comparison)."""
    import onnx
    import openvino as ov

    from volo_deploy.backends.openvino_backend import executed_precision
    from volo_deploy.runtime import inference_config
    from volo_deploy.export.onnx_graph import inline_functions

    core = ov.Core()
    if isinstance(model_or_proto, onnx.ModelProto):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            onnx.save_model(inline_functions(model_or_proto), str(path))
            model = core.read_model(str(path))
    else:
        model = model_or_proto.clone()
    model.reshape({model.input(0).get_any_name(): [batch, 3, 224, 224]})
    mixed = precision == "int8+bf16"
    cfg = {"PERFORMANCE_HINT": "LATENCY", **inference_config("bf16" if mixed else precision)}
    if perf:
        cfg["PERF_COUNT"] = True
    compiled = core.compile_model(model, "CPU", cfg)
    if not mixed:
        executed_precision(compiled, precision, f"{precision} model")  # raises if it computes otherwise
    return compiled


def ort_op_times(sess, feed, runs: int = 3) -> dict[str, float]:
    for _ in range(runs):
        sess.run(None, feed)
    path = sess.end_profiling()
    per: dict[str, float] = defaultdict(float)
    for ev in json.loads(Path(path).read_text()):
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per[ev["args"]["op_name"]] += ev["dur"] / 1000.0 / runs
    return dict(per)


def ov_op_times(compiled, x, runs: int = 3) -> dict[str, float]:
    req = compiled.create_infer_request()
    per: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        req.infer({0: x})
        for info in req.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                per[f"{info.node_type} [{info.exec_type}]"] += info.real_time.total_seconds() * 1000.0 / runs
    return dict(per)


def show_ops(title: str, a: dict[str, float], b: dict[str, float], top: int = 14) -> None:
    print(f"\n{title} (ms per call, fp32 | int8)")
    keys = sorted(set(a) | set(b), key=lambda k: -(a.get(k, 0.0) + b.get(k, 0.0)))[:top]
    for k in keys:
        print(f"  {k:<48} {a.get(k, 0.0):8.2f} | {b.get(k, 0.0):8.2f}")
    print(f"  {'total':<48} {sum(a.values()):8.2f} | {sum(b.values()):8.2f}")


def build_models(args) -> tuple:
    """(FP32 ONNX, {profile: INT8 Q/DQ ONNX}, NNCF model or None, calibration images), saved under --save."""
    import onnx

    from volo_deploy.backends.base import ExportRequest
    from volo_deploy.export.onnx_graph import write_portable_onnx
    from volo_deploy.data.samples import synthetic_images
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.models import create_model
    from volo_deploy.models.init import deterministic_state_dict
    from volo_deploy.quant.placement import Placement
    from volo_deploy.quant.profiles import choose_weight_bits, get_profile
    from volo_deploy.quant.quantizer import QuantConfig, quantize_onnx

    save = args.save or Path(tempfile.mkdtemp(prefix="int8-speed-"))
    save.mkdir(parents=True, exist_ok=True)
    model = create_model(args.model).eval()
    model.load_state_dict(deterministic_state_dict(model))
    fp32_path = save / "fp32.onnx"
    if not fp32_path.exists():
        t = time.perf_counter()
        write_portable_onnx(model, ExportRequest(output_dir=save, dynamic_batch=True), fp32_path)
        print(f"export fp32: {time.perf_counter() - t:.0f}s")
    fp32 = onnx.load(str(fp32_path))
    tf = EvalTransform.for_config(model.cfg)
    calib = np.stack([tf(im) for im in synthetic_images(16, model.cfg.img_size)])
    config = QuantConfig(placement=Placement(exclude=tuple(args.keep_float)), weight_bits=args.weight_bits)
    q = {}
    for prof in ("onnxruntime", "openvino"):
        bits, why = choose_weight_bits(get_profile(prof), args.weight_bits)
        path = save / f"int8_{prof}_w{bits}.onnx"
        if not path.exists() or args.keep_float:
            t = time.perf_counter()
            r = quantize_onnx(fp32, calib, profile=prof, config=config, output=path)
            print(f"quantize {prof}: {time.perf_counter() - t:.0f}s, {len(r.quantized)} layers int8, float: "
                  f"{', '.join(x.name for x in r.kept_float)}")
        print(f"int8 {prof}: {bits}-bit weights ({why})")
        q[prof] = onnx.load(str(path))
    nncf_model = None
    if args.nncf:
        from volo_deploy.quant.nncf_openvino import nncf_quantize_openvino

        t = time.perf_counter()
        nncf_model = nncf_quantize_openvino(fp32, calib, subset_size=16, weight_bits=choose_weight_bits(
            get_profile("openvino"), args.weight_bits)[0])
        print(f"quantize nncf: {time.perf_counter() - t:.0f}s")
    return fp32, q, nncf_model, calib


def time_batch(b: int, fp32, q: dict, nncf_model, calib: np.ndarray, iters: int, bf16: bool) -> dict[str, float]:
    """Median seconds per call of every variant at batch ``b``, calls interleaved."""
    x = np.ascontiguousarray(np.repeat(calib[:1], b, axis=0) if b > len(calib) else calib[:b])
    sessions = {"ort_fp32": ort_session(static_batch(fp32, b))}
    sessions["ort_int8"] = ort_session(static_batch(q["onnxruntime"], b))
    fns = {k: (lambda s=s: s.run(None, {"input": x})) for k, s in sessions.items()}
    compiled = {"ov_fp32": ov_compiled(static_batch(fp32, b), b, "fp32")}
    if bf16:
        compiled["ov_bf16"] = ov_compiled(static_batch(fp32, b), b, "bf16")
    compiled["ov_int8"] = ov_compiled(static_batch(q["openvino"], b), b, "int8")
    if bf16:
        compiled["ov_int8+bf16"] = ov_compiled(static_batch(q["openvino"], b), b, "int8+bf16")
    if nncf_model is not None:
        compiled["ov_nncf"] = ov_compiled(nncf_model, b, "int8")
    for k, c in compiled.items():
        fns[k] = lambda r=c.create_infer_request(): r.infer({0: x})
    return interleaved_medians(fns, iters)


def report_line(b: int, med: dict[str, float], ort_bf16: str) -> str:
    def cell(rt: str, prec: str) -> str:
        key = f"{rt}_{prec}"
        if key not in med:
            return f"{prec} n/a"
        ms = med[key] * 1e3
        return f"{prec} {ms:7.1f}" + ("" if prec == "fp32" else f" ({med[f'{rt}_fp32'] / med[key]:.2f}x)")

    ort = " ".join(cell("ort", p) for p in ("fp32", "int8")) + f" bf16 n/a ({ort_bf16})"
    ov = " ".join(cell("ov", p) for p in ("fp32", "bf16", "int8", "int8+bf16", "nncf") if f"ov_{p}" in med)
    return f"batch {b}: onnxruntime {ort}\n         openvino    {ov}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="volo_d1_224")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--weight-bits", default="auto", choices=("auto", "7", "8"), help="INT8 weights (auto: this CPU's)")
    ap.add_argument("--profile", action="store_true", help="per-op time on both runtimes (largest batch)")
    ap.add_argument("--nncf", action="store_true", help="also time NNCF's native OpenVINO INT8")
    ap.add_argument("--keep-float", action="append", default=[], help="layer pattern kept float in the INT8 models")
    ap.add_argument("--save", type=Path, default=None, help="folder to save the models to (reused when present)")
    args = ap.parse_args()

    import torch

    from volo_deploy.backends.onnxruntime_backend import OnnxRuntimeBackend
    from volo_deploy.backends.precision import bf16_unavailable_reason
    from volo_deploy.machine import describe_machine, summary_line

    print(f"CPU: {summary_line(describe_machine())}")
    fp32, q, nncf_model, calib = build_models(args)
    bf16_reason = bf16_unavailable_reason()
    if bf16_reason:
        print(f"openvino bf16: n/a ({bf16_reason})")
    ort_bf16 = OnnxRuntimeBackend.precision_unavailable_reason("bf16") or "not timed"
    torch.set_num_threads(1)
    print(f"\n{args.model}, median of {args.iters} interleaved calls (ms); (ratio) = true fp32 / that (>1: faster)")
    for b in [int(s) for s in args.batch_sizes.split(",")]:
        med = time_batch(b, fp32, q, nncf_model, calib, args.iters, bf16=bf16_reason is None)
        print(report_line(b, med, ort_bf16.split(" (")[0]), flush=True)
    if args.profile:
        b = max(int(s) for s in args.batch_sizes.split(","))
        x = np.ascontiguousarray(np.repeat(calib[:1], b, axis=0) if b > len(calib) else calib[:b])
        with tempfile.TemporaryDirectory() as tmp:
            a = ort_op_times(ort_session(static_batch(fp32, b), tmp), {"input": x})
            c = ort_op_times(ort_session(static_batch(q["onnxruntime"], b), tmp), {"input": x})
        show_ops(f"onnxruntime per op type, batch {b}", a, c)
        a = ov_op_times(ov_compiled(static_batch(fp32, b), b, "fp32", perf=True), x)
        c = ov_op_times(ov_compiled(static_batch(q["openvino"], b), b, "int8", perf=True), x)
        show_ops(f"OpenVINO per node type [kernel], batch {b}", a, c)


if __name__ == "__main__":
    main()
