"""Per-layer quantization error: SQNR of each quantized layer's output in isolation.

For every quantized node, the layer is run in numpy/torch twice on the FP32 model's own
inputs to that layer (captured on a few images): once in float, once with the Q/DQ the
quantized graph applies (activation fake-quantization with its scale/zero point, the
dequantized int8 weights). The SQNR (dB) of the second against the first measures the
error that layer alone adds; low SQNR = sensitive layer.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from volo_deploy.quant.placement import Layer


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _fq(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int | None) -> np.ndarray:
    qmin, qmax = (0, 255) if zp.dtype == np.uint8 else (-128, 127)
    s, z = scale.astype(np.float32), zp.astype(np.float32)
    if axis is not None and s.ndim == 1 and s.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((np.clip(np.round(x / s) + z, qmin, qmax) - z) * s).astype(np.float32)


def _apply(op: str, node, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if op == "MatMul":
        return np.matmul(a, b)
    if op == "Gemm":
        at = _attrs(node)
        a = a.T if at.get("transA", 0) else a
        b = b.T if at.get("transB", 0) else b
        y = at.get("alpha", 1.0) * (a @ b)
        return y + at.get("beta", 1.0) * bias if bias is not None else y
    import torch

    at = _attrs(node)
    pads = at.get("pads", [0, 0, 0, 0])
    x = torch.from_numpy(np.pad(a, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3]))))
    y = torch.nn.functional.conv2d(
        x,
        torch.from_numpy(np.array(b, dtype=np.float32)),
        None if bias is None else torch.from_numpy(np.array(bias, dtype=np.float32)),
        stride=tuple(at.get("strides", [1, 1])),
        dilation=tuple(at.get("dilations", [1, 1])),
        groups=at.get("group", 1),
    )
    return y.numpy()


def _const_values(proto) -> dict[str, np.ndarray]:
    vals = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = numpy_helper.to_array(a.t)
    return vals


def _capture(fp32_proto, layers: list[Layer], fconst: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """The activation inputs of ``layers`` in the FP32 model on ``x``, by tensor name."""
    import onnxruntime as ort

    from volo_deploy.runtime import session_options

    fnodes = {n.name: n for n in fp32_proto.graph.node}
    wanted = []
    for lay in layers:
        for i in fnodes[lay.node].input[:2]:
            if i and i not in fconst and i not in wanted:
                wanted.append(i)
    probe = onnx.ModelProto()
    probe.CopyFrom(fp32_proto)
    known = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), session_options("fp32"), providers=["CPUExecutionProvider"])
    in_name = probe.graph.input[0].name
    batch = probe.graph.input[0].type.tensor_type.shape.dim[0].dim_value or len(x)
    out_names = [o.name for o in sess.get_outputs()]
    acts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for i in range(0, len(x) - batch + 1, batch):
        res = dict(zip(out_names, sess.run(None, {in_name: x[i : i + batch]})))
        for n in wanted:
            acts[n].append(res[n])
    return {n: np.concatenate(v) for n, v in acts.items()}


def _quantized_inputs(qnode, fin: list[np.ndarray], prod: dict, qconst: dict) -> list[np.ndarray]:
    """The first two inputs of ``qnode`` as the Q/DQ model sees them (dequantized weights, fake-quantized activations)."""
    qin = []
    for k, name in enumerate(qnode.input[:2]):
        dq = prod.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            qin.append(fin[k])
            continue
        scale, zp = qconst[dq.input[1]], qconst[dq.input[2]]
        axis = _attrs(dq).get("axis", 1)
        src = dq.input[0]
        if src in qconst:  # quantized weight
            qin.append(_dequant(qconst[src].astype(np.float32), scale, zp, axis))
        else:
            qin.append(_fq(fin[k], scale, zp, axis))
    return qin


def layer_sqnr(fp32_proto, qdq_proto, layers: list[Layer], x: np.ndarray) -> dict[str, float]:
    """SQNR in dB of each quantized layer (by layer name), from ``x`` (a few images)."""
    fnodes = {n.name: n for n in fp32_proto.graph.node}
    qnodes = {n.name: n for n in qdq_proto.graph.node}
    prod = {o: n for n in qdq_proto.graph.node for o in n.output}
    fconst, qconst = _const_values(fp32_proto), _const_values(qdq_proto)
    caps = _capture(fp32_proto, layers, fconst, x)
    out = {}
    for lay in layers:
        fnode, qnode = fnodes[lay.node], qnodes.get(lay.node)
        if qnode is None:
            continue
        fin = [caps[i] if i in caps else fconst[i] for i in fnode.input[:2]]
        qin = _quantized_inputs(qnode, fin, prod, qconst)
        bias = None
        if lay.op_type in ("Gemm", "Conv") and len(fnode.input) > 2 and fnode.input[2]:
            bias = fconst.get(fnode.input[2])
        ref = _apply(lay.op_type, fnode, fin[0], fin[1], bias)
        got = _apply(lay.op_type, fnode, qin[0], qin[1], bias)
        err = float(np.sum((ref.astype(np.float64) - got) ** 2))
        energy = float(np.sum(ref.astype(np.float64) ** 2))
        out[lay.name] = float("inf") if err == 0.0 else float(10 * np.log10(max(energy, 1e-30) / err))
    return out


def _dequant(q: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int | None) -> np.ndarray:
    s, z = scale.astype(np.float32), zp.astype(np.float32)
    if axis is not None and s.ndim == 1 and s.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((q - z) * s).astype(np.float32)
