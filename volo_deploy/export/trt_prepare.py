"""The ONNX a TensorRT engine is built from, measured before it is emitted.

Every TensorRT export (built here or ``--emit-only``) goes through :func:`prepare_trt_onnx`:

1. the precision graph: FP32 as exported; FP16 from :func:`trt_surgery.to_fp16` (LayerNorm,
   Softmax and the head kept FLOAT); INT8 (Q/DQ) with each outlook core in FP16
   (:func:`trt_surgery.fp16_outlook_cores`);
2. its **portable form** (the model-local function body in place of the plugin, with the
   plugin's numerics: FP16 in and out, float inside) run by onnxruntime on the CPU and compared
   with FP32 PyTorch on the validation images; past the precision's tolerance the export fails
   like any other validation, and the statistics go into the manifest (``portable_validation``);
3. the plugin form of that graph (:func:`trt_surgery.to_plugin_form`).

How representative step 2 is: onnxruntime's CPU provider has FP16 kernels for few ops; for the
others (Gemm, MatMul, Conv, most elementwise ops) it inserts Casts and computes in float, and it
merges neighbouring such nodes into float islands (Gemm -> Add -> Reshape run as one float chain).
So the check sees the FP16 weights, the FP16 tensors at island boundaries and the plugin's FP16
I/O, but skips the roundings inside an island that a strongly typed engine makes between layers
(TensorRT may fuse some of them away too). ``benchmarks/trt_fp16_accuracy.py`` compares it with a
graph that rounds every tensor between ops: max relative error 2.9e-4 vs 3.7e-4 (demo) and 9.5e-4
vs 1.1e-3 (random-init D1), so the check is close to, not a bound of, the engine's storage error;
the engine itself is validated on the GPU after a build (``volo-bench --backend trt``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from volo_deploy.errors import BackendUnavailable
from volo_deploy.export import trt_surgery

if TYPE_CHECKING:
    import onnx


def precision_graph(proto: "onnx.ModelProto", precision: str) -> "tuple[onnx.ModelProto, dict[str, Any]]":
    """Step 1: the graph in ``precision`` (portable form kept) and what was done, for the manifest."""
    if precision == "fp16":
        head = trt_surgery.head_nodes(proto)
        graph = trt_surgery.to_fp16(proto)
        return graph, {"fp16_converter": "onnxconverter_common.float16.convert_float_to_float16",
                       "fp32_ops": list(trt_surgery.FP32_OPS), "fp32_head_nodes": head}
    if precision == "int8":
        graph, changed = trt_surgery.fp16_outlook_cores(proto)
        return graph, {"fp16_plugin_nodes": changed}
    return proto, {}


def portable_check(model, request, graph: "onnx.ModelProto") -> dict[str, Any]:
    """Step 2: run ``graph`` on onnxruntime CPU (exact-math session options), compare with FP32 PyTorch
    on ``request``'s (an ``ExportRequest``) validation images.

    Raises :class:`~volo_deploy.errors.ValidationError` past the tolerance (the request's, else the
    precision's default); returns the statistics and the tolerance.
    """
    import importlib.util

    from volo_deploy.export.validate import validate_against_torch
    from volo_deploy.runtime import session_options

    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailable("a TensorRT export measures its graph on onnxruntime first: not installed "
                                 "(pip install 'volo_deploy[trt]')")
    import onnxruntime as ort

    sess = ort.InferenceSession(graph.SerializeToString(), session_options("fp32"),
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(batch):
        return sess.run(None, {name: batch})[0]

    what = f"tensorrt {request.precision} graph (portable form on onnxruntime CPU)"
    return {**validate_against_torch(model, request, run, what), "runtime": "onnxruntime CPUExecutionProvider"}


def prepare_trt_onnx(model, request, proto: "onnx.ModelProto") -> "tuple[onnx.ModelProto, dict[str, Any]]":
    """Steps 1-3 on the portable (FP32 or Q/DQ) ONNX ``proto``: the plugin-form ONNX and manifest details."""
    graph, details = precision_graph(proto, request.precision)
    details["portable_validation"] = portable_check(model, request, graph)
    plugin = trt_surgery.to_plugin_form(graph)
    trt_surgery.check_plugin_form(plugin)
    return plugin, details
