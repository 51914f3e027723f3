"""onnxruntime INT8: every quantized Conv runs as QLinearConv (issue 20); the other profiles keep float outputs."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from volo_deploy.quant.quantizer import quantize_onnx  # noqa: E402


@pytest.fixture(scope="module")
def demo():
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.models import load_model
    from volo_deploy.quant.data import calibration_set

    model, _ = load_model()
    return to_onnx_proto(model, batch=1), calibration_set(model.cfg).x[:16]


def _conv_outputs_quantized(proto) -> list[bool]:
    users: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n.op_type)
    return [any(u == "QuantizeLinear" for u in users.get(n.output[0], [])) for n in proto.graph.node
            if n.op_type == "Conv"]


def test_onnxruntime_runs_every_conv_as_qlinearconv(demo, tmp_path):
    import onnxruntime as ort

    from volo_deploy.runtime import session_options

    proto, calib = demo
    r = quantize_onnx(proto, calib, profile="onnxruntime")
    assert _conv_outputs_quantized(r.proto) and all(_conv_outputs_quantized(r.proto))
    so = session_options("int8", threads=1, log_severity=3)
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(r.proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "Conv" not in ops and ops.count("QLinearConv") == len(_conv_outputs_quantized(r.proto))


@pytest.mark.parametrize("profile", ["openvino", "tensorrt"])
def test_other_profiles_keep_conv_outputs_float(demo, profile):
    proto, calib = demo
    r = quantize_onnx(proto, calib, profile=profile)
    assert _conv_outputs_quantized(r.proto) and not any(_conv_outputs_quantized(r.proto))
