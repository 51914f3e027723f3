"""TensorRT FP16 graph accuracy: all-FP16 vs block lists, portable form on onnxruntime CPU vs FP32 PyTorch.

    python benchmarks/trt_fp16_accuracy.py [--model volo_demo_64|volo_d1_224] [--n 64]

Demo: the bundled checkpoint on ``n`` held-out digits. Other models: the checkpoint given with
``--checkpoint``, else the random init of ``create_model`` (seed 0) on ``n`` synthetic images.
For each variant: max abs / max relative (to max |logit|) error, min cosine, top-1 agreement,
and how many FP16 nodes onnxruntime's CPU provider ran in float (inserted Casts). "per-op rounding":
the FP32 graph with FP16 weights and a Cast pair after every op not kept in FP32, i.e. every tensor
stored in FP16 between ops, which onnxruntime's float islands (Gemm -> Add -> Reshape run as one
float chain) partly skip; it is the closer stand-in for a strongly typed TensorRT engine.

Measured (AMD EPYC Zen 4, 2 cores, onnxruntime 1.32 CPU; max rel = max abs / max |logit|)::

    demo (trained, 64 held-out digits, |logit| max 5.1)   max abs  max rel  cos min    agr   per-op: max rel  cos min
    all-fp16                                               1.49e-3  2.9e-4  0.9999998  100%  3.8e-4  0.9999998
    LayerNorm fp32                                         1.43e-3  2.8e-4  0.9999999  100%  3.8e-4  0.9999998
    LayerNorm+Softmax fp32                                 1.43e-3  2.8e-4  0.9999999  100%  4.2e-4  0.9999998
    LayerNorm+Softmax+head fp32 (default)                  1.46e-3  2.9e-4  0.9999999  100%  3.7e-4  0.9999998
    int8 (tensorrt Q/DQ), outlook core fp32                3.78e-2  7.4e-3  0.9999240  100%
    int8 (tensorrt Q/DQ), outlook core fp16                4.32e-2  8.4e-3  0.9998973  100%

    VOLO-D1 224 (random init, 16 synthetic images, |logit| max 2.4)
    all-fp16                                               2.25e-3  9.4e-4  0.9999996  100%  1.3e-3  0.9999994
    LayerNorm fp32                                         2.12e-3  8.8e-4  0.9999996  100%  1.3e-3  0.9999994
    LayerNorm+Softmax fp32                                 2.09e-3  8.7e-4  0.9999996  100%  1.1e-3  0.9999994
    LayerNorm+Softmax+head fp32 (default)                  2.27e-3  9.5e-4  0.9999996  100%  1.1e-3  0.9999995

onnxruntime ran 142 (demo) / 374 (D1) of the FP16 nodes in float (Gemm, Reshape, Add, Mul...).
On these two models the block list changes nothing beyond noise: no variant is forced by the
numbers. It stays because a trained transformer's residual stream can exceed what FP16 LayerNorm
statistics hold (TensorRT itself warns "Running layernorm after self-attention in FP16 may cause
overflow ... forcing layernorm layers to run in FP32 precision can help", quoted in
pytorch/TensorRT#2730), which a random-init D1 cannot show, and it costs a few Casts.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {  # name: (fp32_ops, fp32_head)
    "all-fp16": ((), False),
    "LayerNorm fp32": (("LayerNormalization",), False),
    "LayerNorm+Softmax fp32": (("LayerNormalization", "Softmax"), False),
    "LayerNorm+Softmax+head fp32 (default)": (("LayerNormalization", "Softmax"), True),
}


def _input_types(model) -> dict[str, set[int]]:
    """node name -> element types of its inputs (shape inference over the main graph)."""
    import onnx

    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return {n.name: {types.get(x) for x in n.input} for n in g.node}


def ort_float_nodes(model, work: Path) -> collections.Counter:
    """Op types of FP16 nodes that onnxruntime CPU runs in float (it inserts Casts around them)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.optimized_model_filepath = str(work / "ort_view.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    meant, seen = _input_types(model), _input_types(onnx.load(so.optimized_model_filepath))
    ops = {n.name: n.op_type for n in model.graph.node}
    return collections.Counter(
        ops[name] for name, t in meant.items()
        if TensorProto.FLOAT16 in t and TensorProto.FLOAT in seen.get(name, set())
        and TensorProto.FLOAT16 not in seen.get(name, set()) and ops[name] != "Cast")


def per_op_rounding(fp32, fp32_ops: tuple[str, ...], fp32_head: bool):
    """The FP32 graph with FP16-rounded weights and every float output of a non-kept node rounded to
    FP16 (Cast pairs): each op computes in float, every tensor between ops is stored in FP16, which is
    what a strongly typed engine does at least, and what onnxruntime's float islands skip."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from volo_deploy.export import trt_surgery

    m = onnx.ModelProto()
    m.CopyFrom(fp32)
    keep = set(trt_surgery.head_nodes(m)) if fp32_head else set()
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    nodes, rounded = [], {}
    for n in m.graph.node:
        n.input[:] = [rounded.get(i, i) for i in n.input]
        nodes.append(n)
        if n.op_type in fp32_ops or n.name in keep:
            continue
        for o in n.output:
            if types.get(o) == TensorProto.FLOAT:
                nodes += [helper.make_node("Cast", [o], [f"{o}__h"], to=TensorProto.FLOAT16),
                          helper.make_node("Cast", [f"{o}__h"], [f"{o}__r"], to=TensorProto.FLOAT)]
                rounded[o] = f"{o}__r"
    for o in m.graph.output:
        if o.name in rounded:
            nodes.append(helper.make_node("Identity", [rounded[o.name]], [f"{o.name}__out"]))
            o.name = f"{o.name}__out"
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT and not any(t.name in n.input for n in m.graph.node if n.name in keep):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16).astype(np.float32), t.name))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name (default: the bundled demo)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--n", type=int, default=64, help="images")
    ap.add_argument("--int8", action="store_true", help="also: tensorrt Q/DQ graph, outlook core FP32 vs FP16")
    args = ap.parse_args()

    import onnx
    import torch

    from volo_deploy.backends import ExportRequest
    from volo_deploy.export.onnx_graph import write_portable_onnx
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.export import trt_surgery
    from volo_deploy.export.validate import compare_logits, torch_logits
    from volo_deploy.machine import describe_machine, summary_line
    from volo_deploy.models import create_model, load_model

    torch.manual_seed(0)
    if args.model and not args.checkpoint:
        model, what = create_model(args.model).eval(), f"{args.model}, random init (seed 0)"
    else:
        model, info = load_model(args.checkpoint, args.model)
        what = info.describe()
    x = validation_batch(model.cfg, None, n=args.n)
    ref = torch_logits(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_portable_onnx(model, ExportRequest(output_dir=work, dynamic_batch=True), work / "fp32.onnx")
        fp32 = onnx.load(str(work / "fp32.onnx"))
        print(summary_line(describe_machine()))
        print(f"{what}; {len(x)} images; |logit| max {abs(ref).max():.3g}")
        print(f"{'variant':40s} {'max abs':>9s} {'max rel':>9s} {'cos min':>10s} {'top-1 agr':>9s}  "
              f"{'per-op rounding: max rel / cos min / agr':42s} ORT float nodes")
        for name, (ops, head) in VARIANTS.items():
            half = trt_surgery.to_fp16(fp32, fp32_ops=ops, fp32_head=head)
            out = _run(half, x)
            s = compare_logits(ref, out)
            floats = ort_float_nodes(half, work)
            e = compare_logits(ref, _run(per_op_rounding(fp32, ops, head), x))
            print(f"{name:40s} {s.max_abs:9.3g} {s.max_rel:9.3g} {s.cosine_min:10.7f} {s.top1_agreement:9.2%}  "
                  f"{e.max_rel:9.3g} / {e.cosine_min:10.7f} / {e.top1_agreement:7.2%}{'':10s} "
                  f"{sum(floats.values())} ({', '.join(f'{k} {v}' for k, v in floats.most_common(4))})")
        if args.int8:
            _int8_rows(model, fp32, x, ref)


def _int8_rows(model, fp32, x, ref) -> None:
    """INT8 (tensorrt profile, the quantizer's default calibration set) with the outlook core FP32 / FP16."""
    from volo_deploy.export import trt_surgery
    from volo_deploy.export.validate import compare_logits
    from volo_deploy.quant.data import calibration_set
    from volo_deploy.quant.quantizer import quantize_onnx

    qdq = quantize_onnx(fp32, calibration_set(model.cfg).x, profile="tensorrt").proto
    for name, graph in (("int8, outlook core fp32", qdq),
                        ("int8, outlook core fp16", trt_surgery.fp16_outlook_cores(qdq)[0])):
        s = compare_logits(ref, _run(graph, x))
        print(f"{name:40s} {s.max_abs:9.3g} {s.max_rel:9.3g} {s.cosine_min:10.7f} {s.top1_agreement:9.2%}")


def _run(model, x):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every Cast pair
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i : i + 8]})[0] for i in range(0, len(x), 8)])


if __name__ == "__main__":
    main()
