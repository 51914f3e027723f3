"""The DeepStream/Triton form of a TensorRT ONNX: exact per-channel normalization, probabilities out.

nvinfer preprocesses with ``y = net-scale-factor * (x - offsets[c])``: one scale for all channels.
Ours is ``(x / 255 - mean[c]) / std[c]``. With ``net-scale-factor = 1/255`` and ``offsets = 255 * mean``
nvinfer gives ``x / 255 - mean[c]`` exactly; the remaining ``1 / std[c]`` is folded into the first
convolution's weights (``W[:, c] / std[c]``; its zero padding is the same zero in both forms), or,
where that weight is not a plain float initializer (an INT8 Q/DQ graph), applied by one ``Mul``
on the input. The graph then ends in ``Softmax``: nvinfer's classifier parser takes a class only
if its output is > 0 and > ``classifier-threshold``, which needs probabilities, not logits.

Pure ONNX surgery (``onnx`` + numpy): no TensorRT here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import onnx

PROBS_NAME = "probs"


def deepstream_normalization(mean: Sequence[float]) -> tuple[float, list[float]]:
    """nvinfer's (net-scale-factor, offsets) for the folded graph: exact, ``x / 255 - mean[c]``."""
    return 1.0 / 255.0, [255.0 * float(m) for m in mean]


def _first_conv(graph: "onnx.GraphProto"):
    """The Conv reading the graph input directly, and its weight initializer (None, None if not foldable)."""
    import onnx

    inp = graph.input[0].name
    consumers = [n for n in graph.node if inp in n.input and n.op_type != "Shape"]  # Shape reads no values
    if len(consumers) != 1 or consumers[0].op_type != "Conv" or consumers[0].input[0] != inp:
        return None, None
    weight = next((t for t in graph.initializer if t.name == consumers[0].input[1]), None)
    if weight is None or weight.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        return None, None
    if sum(consumers[0].input[1] in n.input for n in graph.node) != 1:
        return None, None  # the weight is shared: scaling it would change another node
    return consumers[0], weight


def _fold_into_conv(graph: "onnx.GraphProto", weight, std: np.ndarray) -> None:
    from onnx import numpy_helper

    w = numpy_helper.to_array(weight)
    folded = (w.astype(np.float64) / std[None, :, None, None]).astype(w.dtype)
    weight.CopyFrom(numpy_helper.from_array(folded, weight.name))


def _scale_input(graph: "onnx.GraphProto", std: np.ndarray, elem_type: int) -> None:
    """``input * (1 / std)`` per channel in front of every consumer of the input."""
    import onnx
    from onnx import helper, numpy_helper

    inp = graph.input[0].name
    dtype = np.float16 if elem_type == onnx.TensorProto.FLOAT16 else np.float32
    inv = numpy_helper.from_array((1.0 / std).astype(dtype).reshape(1, -1, 1, 1), "ds_inv_std")
    graph.initializer.append(inv)
    scaled = f"{inp}_div_std"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == inp:
                node.input[i] = scaled
    graph.node.insert(0, helper.make_node("Mul", [inp, inv.name], [scaled], name="ds_inv_std_mul"))


def to_deepstream_graph(proto: "onnx.ModelProto", std: Sequence[float]) -> "tuple[onnx.ModelProto, str]":
    """A copy of ``proto`` that takes ``x / 255 - mean`` and returns softmax probabilities.

    Returns the graph and how ``1/std`` was applied (``"folded into <conv>"`` or ``"input Mul"``).
    """
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    s = np.asarray(std, dtype=np.float64)
    conv, weight = _first_conv(graph)
    if conv is not None:
        _fold_into_conv(graph, weight, s)
        how = f"folded into {conv.name or conv.output[0]}"
    else:
        _scale_input(graph, s, graph.input[0].type.tensor_type.elem_type)
        how = "input Mul"
    (logits,) = graph.output
    graph.node.append(helper.make_node("Softmax", [logits.name], [PROBS_NAME], axis=-1, name="ds_softmax"))
    probs = onnx.ValueInfoProto()
    probs.CopyFrom(logits)
    probs.name = PROBS_NAME
    graph.output.remove(logits)
    graph.output.append(probs)
    return out, how
