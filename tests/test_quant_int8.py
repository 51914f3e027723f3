"""INT8 quantizer on the demo model: profiles on their runtimes, placement, cache, budget."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from volo_deploy.errors import QuantizationError  # noqa: E402
from volo_deploy.quant.placement import Placement  # noqa: E402
from volo_deploy.quant.quantizer import CalibMethod, QuantConfig, quantize_onnx  # noqa: E402

FLOAT_OPS = ("LayerNormalization", "Softmax", "OutlookAttention")


@pytest.fixture(scope="module")
def demo():
    """(model, FP32 portable ONNX, calibration images, eval images, eval labels)."""
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.models import load_model
    from volo_deploy.quant.data import calibration_set, eval_set

    model, _ = load_model()
    proto = to_onnx_proto(model, batch=1)
    calib = calibration_set(model.cfg)
    ev = eval_set(model.cfg)
    return model, proto, calib.x, ev.x, ev.labels


def _consumers(proto):
    cons: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return cons


def check_placement(qproto, result) -> None:
    """Q/DQ only feed quantized layers; never LayerNorm, Softmax, the outlook core or the heads."""
    cons = _consumers(qproto)
    quant_nodes = {lay.node for lay in result.quantized}
    float_nodes = {lay.node for lay in result.kept_float}
    fed = Counter()
    for n in qproto.graph.node:
        if n.op_type != "DequantizeLinear":
            continue
        for user in cons.get(n.output[0], []):
            assert user.op_type not in FLOAT_OPS, f"{user.op_type} {user.name} reads a DQ tensor"
            assert user.name not in float_nodes, f"float layer {user.name} reads a DQ tensor"
            if user.name in quant_nodes:
                fed[user.name] += 1
    assert set(fed) == quant_nodes  # every quantized layer gets Q/DQ inputs
    for fn in qproto.functions:  # the outlook-attention function body is untouched
        assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in fn.node)
    assert {"head", "aux_head"} <= {lay.name for lay in result.kept_float}


@pytest.mark.parametrize("profile", ["tensorrt", "onnxruntime", "openvino"])
def test_profile_runs_on_its_runtime(demo, profile):
    from volo_deploy.quant.evaluate import make_predict

    model, proto, calib, ev, labels = demo
    r = quantize_onnx(proto, calib[:32], profile=profile)
    # activations only (weights are int8 initializers): each quantized layer's input, plus the
    # outputs of the op types the profile quantizes for a fused kernel (onnxruntime: Conv)
    outputs = sum(lay.op_type in r.profile.quantize_outputs_of for lay in r.quantized)
    assert r.qdq_counts["QuantizeLinear"] == len(r.quantized) + outputs
    if profile == "openvino":
        assert not r.proto.functions  # inlined: OpenVINO cannot run model-local functions
        assert not any(n.op_type == "OutlookAttention" for n in r.proto.graph.node)
    check_placement(r.proto, r)  # after inlining too: the core's Softmax/MatMul read no DQ tensor
    act = [n for n in r.proto.graph.node if n.op_type == "QuantizeLinear"]
    zp_types = {next(t for t in r.proto.graph.initializer if t.name == n.input[2]).data_type for n in act}
    want = onnx.TensorProto.UINT8 if r.profile.activation_type == "uint8" else onnx.TensorProto.INT8
    assert zp_types == {want}
    predict = make_predict(r.proto, r.profile.runtime)
    ref = make_predict(proto, "onnxruntime")(ev[:16])
    got = predict(ev[:16])
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_overrides(demo):
    _, proto, calib, _, _ = demo
    cfg = QuantConfig(placement=Placement(include=("head",), exclude=("network.0.*",)))
    r = quantize_onnx(proto, calib[:16], profile="tensorrt", config=cfg)
    q = {lay.name for lay in r.quantized}
    assert "head" in q and "aux_head" not in q
    assert not any(n.startswith("network.0.") for n in q)


def test_cache_reuse_and_mismatch(demo, tmp_path, monkeypatch):
    import importlib

    ortq = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not the function
    _, proto, calib, _, _ = demo
    ortc = importlib.import_module("onnxruntime.quantization.calibrate")
    calls = []
    for mod in (ortq, ortc):  # count every calibrator onnxruntime creates, ours or its own
        real = mod.create_calibrator
        monkeypatch.setattr(mod, "create_calibrator", lambda *a, _r=real, **k: calls.append(1) or _r(*a, **k))
    cache = tmp_path / "ranges.json"
    first = quantize_onnx(proto, calib[:24], profile="onnxruntime", cache_path=cache)
    assert first.cache.status == "miss" and len(calls) == 1 and cache.exists()
    again = quantize_onnx(proto, calib[:24], profile="onnxruntime", cache_path=cache)
    assert again.cache.status == "hit" and len(calls) == 1  # no calibration inference the second time
    w = [t for t in first.proto.graph.initializer if t.name.endswith("_scale")]
    w2 = {t.name: t for t in again.proto.graph.initializer}
    assert all(t.raw_data == w2[t.name].raw_data for t in w)  # identical scales
    other = quantize_onnx(proto, calib[24:48], profile="onnxruntime", cache_path=cache)
    assert other.cache.status == "mismatch" and any("data_sha256" in d for d in other.cache.differs)
    assert len(calls) == 2
    method = quantize_onnx(proto, calib[24:48], profile="onnxruntime", method="percentile", cache_path=cache)
    assert method.cache.status == "mismatch" and any(d.startswith("method") for d in method.cache.differs)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_demo_int8_within_budget(demo, runtime):
    from volo_deploy.quant.budget import quantize_within_budget

    _, proto, calib, ev, labels = demo
    r, rep = quantize_within_budget(proto, calib, ev, labels, profile=runtime, max_drop=0.5, min_agreement=99.0)
    assert rep.eval_images == 360
    assert rep.drop <= 0.5 and rep.agreement >= 99.0
    assert rep.fp32_top1 >= 90.0  # the demo model is trained


def test_budget_returns_layers_to_float_and_fails_clearly(demo, caplog):
    from volo_deploy.quant.budget import quantize_within_budget

    caplog.set_level(logging.INFO, logger="volo_deploy")  # the CLIs' default level
    _, proto, calib, ev, labels = demo
    bad = calib[:32] * 0.02  # ranges far too narrow: heavy clipping, a large top-1 drop
    cfg = QuantConfig(method=CalibMethod.MINMAX)
    r, rep = quantize_within_budget(
        proto, bad, ev[:120], labels[:120], profile="onnxruntime", config=cfg, max_drop=2.0, group_size=8
    )
    assert rep.returned_to_float and len(rep.steps) >= 2 and rep.drop <= 2.0
    assert rep.steps[0]["drop"] > 2.0
    assert set(rep.returned_to_float) <= {lay.name for lay in r.kept_float}
    lines = [x.getMessage() for x in caplog.records
             if x.name == "volo_deploy.quant.budget" and x.levelno == logging.INFO]
    assert len(lines) == len(rep.steps) and all("top-1" in m and "agreement" in m for m in lines)  # one per step
    assert all(", ".join(step["float"]) in m for step, m in zip(rep.steps[1:], lines[1:]))  # which went to float
    with pytest.raises(QuantizationError, match="misses the accuracy budget"):
        quantize_within_budget(
            proto, bad, ev[:60], labels[:60], profile="onnxruntime", config=cfg, max_drop=-1.0, max_steps=1
        )


def test_agreement_budget_without_labels(demo):
    """No labels: the budget is top-1 agreement with FP32 (and logit cosine), layers return to float until met."""
    from volo_deploy.quant.budget import quantize_within_budget

    _, proto, calib, ev, _ = demo
    bad = calib[:32] * 0.02
    r, rep = quantize_within_budget(proto, bad, ev[:120], None, profile="onnxruntime", max_drop=None,
                                    min_agreement=95.0, group_size=8)
    assert rep.kind == "agreement" and rep.drop is None and rep.fp32_top1 is None
    assert rep.steps[0]["agreement"] < 95.0 <= rep.agreement and rep.returned_to_float
    assert 0.0 < rep.cosine_min <= rep.cosine_mean <= 1.0
    with pytest.raises(QuantizationError, match="relax --min-agreement"):
        quantize_within_budget(proto, bad, ev[:60], None, profile="onnxruntime", max_drop=None, min_agreement=100.0,
                               max_steps=1)
    with pytest.raises(QuantizationError, match="logit cosine"):
        quantize_within_budget(proto, calib[:32], ev[:60], None, profile="onnxruntime", max_drop=None,
                               min_cosine=1.0, max_steps=0)
