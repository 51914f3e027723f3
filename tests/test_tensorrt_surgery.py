"""Plugin-form graph surgery for TensorRT (no TensorRT needed): plugin nodes, untouched rest, Q/DQ, FP16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from volo_deploy.backends import ExportRequest
from volo_deploy.errors import ExportError
from volo_deploy.export import trt_surgery
from volo_deploy.export.trt_surgery import DISPATCH_ATTRIBUTES, check_plugin_form, to_fp16, to_plugin_form

OUTLOOK_ATTRS = {"kernel_size": 3, "padding": 1, "stride": 2, "num_heads": 2}


@pytest.fixture(scope="session")
def demo_portable(tmp_path_factory) -> Path:
    """Portable ONNX of the bundled demo VOLO (one export shared with ``demo_trained``: same cache key)."""
    from volo_deploy.export.onnx_graph import write_portable_onnx
    from volo_deploy.models import load_model

    model, _ = load_model()
    path = tmp_path_factory.mktemp("trt_surgery") / "demo.onnx"
    write_portable_onnx(model, ExportRequest(output_dir=path.parent, dynamic_batch=True), path)
    return path


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_outlook(node) -> bool:
    return node.op_type == "OutlookAttention"


def _without_dispatch(node) -> bytes:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    keep = [a for a in copy.attribute if a.name not in DISPATCH_ATTRIBUTES]
    del copy.attribute[:]
    copy.attribute.extend(keep)
    return copy.SerializeToString()


def test_plugin_nodes_carry_dispatch_attributes(demo_portable):
    src = onnx.load(str(demo_portable))
    out = to_plugin_form(src)
    nodes = [n for n in out.graph.node if _is_outlook(n)]
    assert len(nodes) == 2  # the demo model has two outlookers
    for n in nodes:
        a = _attrs(n)
        assert n.domain == "volo"
        assert a["plugin_namespace"] == b"volo" and a["plugin_version"] == b"1"
        assert {k: a[k] for k in OUTLOOK_ATTRS} == OUTLOOK_ATTRS
        assert a["scale"] == pytest.approx(32**-0.5, rel=1e-6)  # demo head dim 32
        types = {x.name: x.type for x in n.attribute}
        assert all(types[k] == onnx.AttributeProto.INT for k in OUTLOOK_ATTRS)
        assert types["scale"] == onnx.AttributeProto.FLOAT
        assert types["plugin_namespace"] == types["plugin_version"] == onnx.AttributeProto.STRING
    assert not [f for f in out.functions if f.name == "OutlookAttention"], "the decomposition must be gone"
    assert any(o.domain == "volo" for o in out.opset_import)
    check_plugin_form(out)
    # the source model is not modified
    assert any(f.name == "OutlookAttention" for f in src.functions)
    assert not any("plugin_namespace" in _attrs(n) for n in src.graph.node if _is_outlook(n))


def test_rest_of_graph_untouched(demo_portable):
    src = onnx.load(str(demo_portable))
    out = to_plugin_form(src)
    assert len(out.graph.node) == len(src.graph.node)
    for a, b in zip(src.graph.node, out.graph.node):  # same order, same bytes except the dispatch attributes
        if _is_outlook(a):
            assert _without_dispatch(a) == _without_dispatch(b)
        else:
            assert a.SerializeToString() == b.SerializeToString(), a.name
    assert [t.SerializeToString() for t in src.graph.initializer] == [t.SerializeToString() for t in out.graph.initializer]
    for field in ("input", "output", "value_info"):
        assert [v.SerializeToString() for v in getattr(src.graph, field)] == [
            v.SerializeToString() for v in getattr(out.graph, field)]
    assert list(src.metadata_props) == list(out.metadata_props)
    assert list(src.opset_import) == list(out.opset_import)
    assert src.ir_version == out.ir_version


def test_checker_passes_with_the_volo_schema_registered(demo_portable):
    from volo_deploy.models import outlook_onnx

    outlook_onnx._register_schema()  # what an export in the same process does
    check_plugin_form(to_plugin_form(onnx.load(str(demo_portable))))


def _qdq_graph() -> onnx.ModelProto:
    """x -> Q/DQ -> MatMul(DQ(w_v)) = v ; Q/DQ -> MatMul(DQ(w_a)) = attn ; OutlookAttention ; Q/DQ -> MatMul -> y."""
    rng = np.random.default_rng(0)
    c, heads, k = 8, 2, 3
    inits, nodes = [], []

    def weight(name, shape):
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, shape).astype(np.int8), f"{name}_q"))
        inits.append(numpy_helper.from_array(np.array(0.01, np.float32), f"{name}_s"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [name], name=f"dq_{name}"))

    inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "act_s"))

    def qdq(x, y):
        nodes.append(helper.make_node("QuantizeLinear", [x, "act_s"], [f"{x}_q"], name=f"q_{x}"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", "act_s"], [y], name=f"dq_{x}"))

    weight("w_v", (c, c))
    weight("w_a", (c, heads * k**4))
    weight("w_p", (c, c))
    qdq("x", "x_dq")
    nodes.append(helper.make_node("MatMul", ["x_dq", "w_v"], ["v"], name="v_proj"))
    nodes.append(helper.make_node("MatMul", ["x_dq", "w_a"], ["attn_full"], name="attn_proj"))
    nodes.append(helper.make_node("Slice", ["attn_full", "st", "en", "ax", "sp"], ["attn"], name="attn_stride"))
    for n, v in (("st", [0, 0]), ("en", [1 << 30, 1 << 30]), ("ax", [1, 2]), ("sp", [2, 2])):
        inits.append(numpy_helper.from_array(np.array(v, np.int64), n))
    nodes.append(helper.make_node("OutlookAttention", ["v", "attn"], ["o"], name="outlook", domain="volo",
                                  kernel_size=k, padding=1, stride=2, num_heads=heads, scale=0.5))
    qdq("o", "o_dq")
    nodes.append(helper.make_node("MatMul", ["o_dq", "w_p"], ["y"], name="proj"))
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 6, c])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, c])], inits)
    fn = helper.make_function("volo", "OutlookAttention", ["v", "attn"], ["y"],
                              [helper.make_node("Identity", ["v"], ["y"])],
                              [helper.make_opsetid("", 18)], ["kernel_size", "padding", "stride", "num_heads", "scale"])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("volo", 1)],
                             functions=[fn])


def test_qdq_nodes_preserved():
    src = _qdq_graph()
    onnx.checker.check_model(src)
    out = to_plugin_form(src)
    check_plugin_form(out)
    qdq_src = [n.SerializeToString() for n in src.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    qdq_out = [n.SerializeToString() for n in out.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq_src) == 7 and qdq_out == qdq_src
    assert [n.name for n in out.graph.node] == [n.name for n in src.graph.node]
    (plugin,) = [n for n in out.graph.node if _is_outlook(n)]
    assert _attrs(plugin)["plugin_namespace"] == b"volo"
    # DQ -> plugin -> Q: the plugin reads and writes float tensors
    producers = {o: n.op_type for n in out.graph.node for o in n.output}
    assert producers["v"] == "MatMul" and [n.op_type for n in out.graph.node if "o" in n.input] == ["QuantizeLinear"]
    assert not out.functions


def test_existing_dispatch_attributes_are_replaced_not_duplicated():
    once = to_plugin_form(_qdq_graph())
    twice = to_plugin_form(once)
    (node,) = [n for n in twice.graph.node if _is_outlook(n)]
    names = [a.name for a in node.attribute]
    assert names.count("plugin_namespace") == 1 and names.count("plugin_version") == 1


def test_refuses_graph_without_outlook_node():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(ExportError, match="no volo.OutlookAttention node"):
        to_plugin_form(helper.make_model(g))


def test_refuses_wrong_attribute_types():
    src = _qdq_graph()
    (node,) = [n for n in src.graph.node if _is_outlook(n)]
    for a in node.attribute:
        if a.name == "scale":
            a.CopyFrom(helper.make_attribute("scale", 1))
    with pytest.raises(ExportError, match="scale has type INT, expected FLOAT"):
        to_plugin_form(src)


def _types(model) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _ort(model, x):
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    fixed = isinstance(s.get_inputs()[0].shape[0], int)
    return np.concatenate([s.run(None, {name: x[i : i + 1] if fixed else x})[0] for i in range(len(x) if fixed else 1)])


@pytest.fixture(scope="module")
def demo_trained():
    """The bundled demo model, its digits validation images, FP32 PyTorch logits, portable ONNX (dynamic batch)."""
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.export.validate import torch_logits
    from volo_deploy.models import load_model

    model, _ = load_model()
    x = validation_batch(model.cfg, None, n=16)
    return model, x, torch_logits(model, x), to_onnx_proto(model, dynamic_batch=True)


def test_fp16_graph_types(demo_portable):
    pytest.importorskip("onnxconverter_common")
    src = onnx.load(str(demo_portable))
    half = to_fp16(src)
    onnx.checker.check_model(half)
    t = _types(half)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    head = set(trt_surgery.head_nodes(half))
    gemms = [n.name for n in half.graph.node if n.op_type == "Gemm"]
    assert set(gemms[-2:]) <= head and not set(gemms[:-2]) & head  # head and aux_head only
    for n in half.graph.node:
        floats = [x for x in n.input if t.get(x) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        if n.op_type in trt_surgery.FP32_OPS or n.name in head:  # computed in FP32, FP32 weights
            assert floats and all(t[x] == TensorProto.FLOAT for x in floats), (n.name, n.op_type)
        elif n.op_type in ("Gemm", "MatMul", "Conv", "OutlookAttention"):
            assert all(t[x] == TensorProto.FLOAT16 for x in floats), (n.name, n.op_type)
    # no FP32 -> FP16 -> FP32 round trip between kept nodes
    producer = {o: n for n in half.graph.node for o in n.output}
    for n in half.graph.node:
        if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT and n.input[0] in producer:
            p = producer[n.input[0]]
            assert not (p.op_type == "Cast" and t.get(p.input[0]) == TensorProto.FLOAT), n.name
    # the FP32 weights are the original values, not FP16 roundings
    orig = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    ln = next(n for n in half.graph.node if n.op_type == "LayerNormalization")
    scale = next(i for i in half.graph.initializer if i.name == ln.input[1])
    assert scale.data_type == TensorProto.FLOAT
    assert any(np.array_equal(numpy_helper.to_array(scale), v) for v in orig.values() if v.shape == (64,))
    # the outlook body computes in FP32 between FP16 I/O, as the plugin does
    (fn,) = [f for f in half.functions if f.name == "OutlookAttention"]
    assert [n.op_type for n in fn.node[:2]] == ["Cast", "Cast"] and fn.node[-1].op_type == "CastLike"
    assert all(n.attribute[0].i == TensorProto.FLOAT for n in fn.node[:2])
    plugin16 = to_plugin_form(half)
    check_plugin_form(plugin16)
    assert len(trt_surgery.outlook_nodes(plugin16)) == 2 and not plugin16.functions


@pytest.mark.parametrize("fp32_ops, head", [(trt_surgery.FP32_OPS, True), (trt_surgery.ALL_FP16, False)])
def test_fp16_graph_accuracy_on_digits(demo_trained, fp32_ops, head):
    """Trained demo, digits: the FP16 graph (portable form on onnxruntime) vs FP32 PyTorch."""
    pytest.importorskip("onnxconverter_common")
    from volo_deploy.export.validate import compare_logits

    model, x, ref, fp32 = demo_trained
    s = compare_logits(ref, _ort(to_fp16(fp32, fp32_ops=fp32_ops, fp32_head=head), x))
    exact = compare_logits(ref, _ort(fp32, x))
    assert exact.max_abs < 1e-4
    assert s.max_abs > exact.max_abs  # it is FP16: rounding shows
    assert s.max_rel < 2e-3 and s.cosine_min > 0.99999 and s.top1_agreement == 1.0


def test_fp16_outlook_cores_structure():
    """INT8 graph: Cast(FLOAT16) on both plugin inputs, Cast(FLOAT) on its output, before the Q."""
    src = _qdq_graph()
    out, changed = trt_surgery.fp16_outlook_cores(src)
    assert changed == ["outlook"]
    plugin = to_plugin_form(out)
    check_plugin_form(plugin)
    t = _types(out)
    producer = {o: n for n in plugin.graph.node for o in n.output}
    consumers = {}
    for n in plugin.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    (node,) = trt_surgery.outlook_nodes(plugin)
    for x, src_name in zip(node.input, ("v", "attn")):
        cast = producer[x]
        assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT16
        assert list(cast.input) == [src_name] and t[src_name] == TensorProto.FLOAT and t[x] == TensorProto.FLOAT16
    (back,) = consumers[node.output[0]]
    assert back.op_type == "Cast" and back.attribute[0].i == TensorProto.FLOAT and list(back.output) == ["o"]
    assert [n.op_type for n in consumers["o"]] == ["QuantizeLinear"]
    # idempotent: FP16 inputs are left alone
    again, changed2 = trt_surgery.fp16_outlook_cores(out)
    assert changed2 == [] and len(again.graph.node) == len(out.graph.node)


def test_int8_graph_with_fp16_core_on_digits(demo_trained):
    """Trained demo, tensorrt Q/DQ profile: the INT8 + FP16-core graph (portable form on onnxruntime)
    against FP32 PyTorch, and next to the same Q/DQ graph with the core in FP32."""
    from volo_deploy.export.validate import DEFAULT_TOLERANCES, compare_logits
    from volo_deploy.quant.data import calibration_set
    from volo_deploy.quant.quantizer import quantize_onnx

    model, x, ref, fp32 = demo_trained
    qdq = quantize_onnx(fp32, calibration_set(model.cfg).x[:32], profile="tensorrt").proto
    mixed, changed = trt_surgery.fp16_outlook_cores(qdq)
    assert len(changed) == 2
    t = _types(mixed)
    users = {i: n for n in mixed.graph.node for i in n.input}
    for node in trt_surgery.outlook_nodes(mixed):  # FP16 in; its FP16 output (the plugin's) is cast back
        assert all(t[i] == TensorProto.FLOAT16 for i in node.input)
        back = users[node.output[0]]
        assert back.op_type == "Cast" and back.attribute[0].i == TensorProto.FLOAT
        nxt = users[back.output[0]]
        while nxt.op_type in ("Reshape", "Transpose"):  # layout only, then the quantized proj input
            nxt = users[nxt.output[0]]
        assert nxt.op_type == "QuantizeLinear"
    s16, s32 = compare_logits(ref, _ort(mixed, x)), compare_logits(ref, _ort(qdq, x))
    assert not DEFAULT_TOLERANCES["int8"].violations(s16)
    assert s16.top1_agreement >= s32.top1_agreement - 1 / len(x)
    assert abs(s16.cosine_min - s32.cosine_min) < 1e-3  # the FP16 core costs nothing next to INT8 error
    assert len(trt_surgery.outlook_nodes(to_plugin_form(mixed))) == 2


def test_trt_export_measures_its_graph_and_fails_past_tolerance(tmp_path):
    """An emit-only FP16 export runs its graph's portable form on onnxruntime against FP32 PyTorch,
    records it in the manifest, and publishes nothing past the tolerance."""
    pytest.importorskip("onnxconverter_common")
    import json

    from volo_deploy.backends.tensorrt_backend import TrtOptions
    from volo_deploy.errors import ValidationError
    from volo_deploy.jobs.export import export_model
    from volo_deploy.export.validate import Tolerance

    def request(out):
        return ExportRequest(output_dir=out, precision="fp16", dynamic_batch=True, options=TrtOptions(emit_only=True))

    res = export_model("trt", request(tmp_path / "ok"), n_validate=6)
    manifest = json.loads(res.manifest.read_text())
    pv = manifest["export"]["portable_validation"]
    assert pv["n"] == 6 and pv["runtime"] == "onnxruntime CPUExecutionProvider"
    assert 0 < pv["max_abs"] and pv["cosine_min"] > 0.9999 and pv["top1_agreement"] == 1.0
    assert pv["tolerance"] == {"max_rel": 2e-2, "min_cosine": 0.999, "min_agreement": 0.9}
    assert manifest["export"]["fp32_ops"] == ["LayerNormalization", "Softmax"]
    assert "skipped" in manifest["validation"]  # no engine here: the portable check is the evidence

    bad = tmp_path / "bad"
    with pytest.raises(ValidationError, match=r"tensorrt fp16 graph \(portable form on onnxruntime CPU\).*max abs"):
        export_model("trt", request(bad), tolerance=Tolerance(max_abs=1e-7))
    assert not (bad / "manifest.json").exists() and not list(bad.glob("*")), "nothing published"
