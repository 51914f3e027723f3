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
    """Portable ONNX of the demo VOLO (deterministic weights: independent of the bundled checkpoint)."""
    from volo_deploy.backends.onnxruntime_backend import write_portable_onnx
    from volo_deploy.models import create_model
    from volo_deploy.models.init import fill_deterministic

    model = fill_deterministic(create_model("volo_demo_64")).eval()
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


def test_fp16_form_matches_fp32(demo_portable):
    import onnxruntime as ort

    src = onnx.load(str(demo_portable))
    half = to_fp16(src)
    onnx.checker.check_model(half)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    floats = [t.name for t in half.graph.initializer if t.data_type == TensorProto.FLOAT]
    assert not floats, floats
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {"input": x})[0]
    ref, got = run(src), run(half)
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() <= 2e-2 * max(1.0, np.abs(ref).max())
    # plugin form of the FP16 model: still two plugin nodes, checker clean
    plugin16 = to_plugin_form(half)
    check_plugin_form(plugin16)
    assert len(trt_surgery.outlook_nodes(plugin16)) == 2
