"""The DeepStream/Triton graph: nvinfer's exact ``x / 255 - mean`` in, softmax probabilities out, equal to
our normalization + model + softmax (onnxruntime, small hand-built graphs)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from volo_deploy.export.trt_deepstream import PROBS_NAME, deepstream_normalization, to_deepstream_graph

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's: unequal stds


def _graph(weight_via_node: bool, dtype=np.float32) -> onnx.ModelProto:
    """input -> Conv 3x3 pad 1 (+ bias) -> GlobalAveragePool -> Flatten -> Gemm -> logits."""
    rng = np.random.default_rng(0)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(dtype), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(dtype), "b")
    fc = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(dtype), "fc")
    nodes = []
    conv_w = "w"
    if weight_via_node:  # like DequantizeLinear -> Conv in a Q/DQ graph: not a plain initializer
        nodes.append(helper.make_node("Identity", ["w"], ["w_dq"]))
        conv_w = "w_dq"
    nodes.append(helper.make_node("Shape", ["input"], ["input_shape"]))  # as a dynamic-batch export has
    nodes += [helper.make_node("Conv", ["input", conv_w, "b"], ["c"], pads=[1, 1, 1, 1], name="stem"),
              helper.make_node("GlobalAveragePool", ["c"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", elem, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", elem, ["N", 5])], [w, b, fc])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("weight_via_node", [False, True], ids=["folded", "input_mul"])
def test_deepstream_graph_equals_our_normalization_and_softmax(weight_via_node):
    pixels = np.random.default_rng(1).integers(0, 256, (4, 3, 8, 8)).astype(np.float64)
    mean, std = np.array(MEAN)[None, :, None, None], np.array(STD)[None, :, None, None]
    ours = _softmax(_run(_graph(weight_via_node), ((pixels / 255 - mean) / std).astype(np.float32)))
    ds, how = to_deepstream_graph(_graph(weight_via_node), STD)
    scale, offsets = deepstream_normalization(MEAN)
    nvinfer = (scale * (pixels - np.array(offsets)[None, :, None, None])).astype(np.float32)  # one scale
    got = _run(ds, nvinfer)
    assert [o.name for o in ds.graph.output] == [PROBS_NAME] and ds.graph.node[-1].op_type == "Softmax"
    assert how == ("input Mul" if weight_via_node else "folded into stem")
    np.testing.assert_allclose(got, ours, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    assert (got > 0).all()  # nvinfer's classifier parser needs > 0 to take a class


def test_deepstream_graph_fp16_weights_and_original_untouched():
    proto = _graph(False, np.float16)
    before = numpy_helper.to_array(proto.graph.initializer[0]).copy()
    ds, _ = to_deepstream_graph(proto, STD)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), before)
    folded = numpy_helper.to_array(ds.graph.initializer[0])
    assert folded.dtype == np.float16
    np.testing.assert_allclose(folded.astype(np.float64), before.astype(np.float64) / np.array(STD)[None, :, None, None],
                               rtol=1e-3)
    onnx.checker.check_model(ds)


def test_exact_normalization_beats_the_single_scale():
    """The old config approximated 1/(255*std) by one scale: up to 1.1% off for ImageNet's std; now exact."""
    from volo_deploy.export.jetson_bundle.configs import deepstream_normalization as single_scale

    _, _, err = single_scale(MEAN, STD)
    scale, offsets = deepstream_normalization(MEAN)
    x = np.array([0.0, 100.0, 255.0])
    for c in range(3):
        np.testing.assert_allclose(scale * (x - offsets[c]) / STD[c], (x / 255 - MEAN[c]) / STD[c], rtol=1e-12)
    assert err > 0.01
