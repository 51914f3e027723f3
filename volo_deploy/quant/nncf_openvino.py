"""NNCF's native OpenVINO path: ``nncf.quantize`` on the OpenVINO model (no Q/DQ ONNX).

The alternative to the ``openvino`` Q/DQ profile: NNCF inserts FakeQuantize nodes with its
transformer-aware scheme (``ModelType.TRANSFORMER``: LayerNorm/Softmax inputs and the
attention-score path handled its way). The heads stay float, like the default placement.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from volo_deploy.quant.placement import DEFAULT_EXCLUDE, quantizable_layers


def fp32_ov_model(fp32_proto):
    """OpenVINO model of the portable FP32 ONNX (local functions inlined)."""
    import onnx
    import openvino as ov

    from volo_deploy.export.onnx_graph import inline_functions

    with tempfile.TemporaryDirectory(prefix="volo-ov-") as tmp:
        path = Path(tmp) / "fp32.onnx"
        onnx.save_model(inline_functions(fp32_proto), str(path))
        return ov.Core().read_model(str(path))


def nncf_quantize_openvino(
    fp32_proto,
    calib_x: np.ndarray,
    *,
    preset: str = "mixed",
    subset_size: int = 300,
    fast_bias_correction: bool = True,
    keep_heads_float: bool = True,
    ov_model=None,
    weight_bits: int | None = None,
):
    """INT8 ``openvino.Model`` by ``nncf.quantize`` (TRANSFORMER model type) on ``calib_x``.

    ``ov_model``: the FP32 OpenVINO model if already converted (else made from ``fp32_proto``).
    ``weight_bits``: 7 = NNCF's overflow fix on every layer (7-bit weights, for CPUs without
    VNNI), 8 = off; ``None``: NNCF's default (first layer only). NNCF collects statistics with
    FP32 inference (its ``OVNativeEngine`` pins ``INFERENCE_PRECISION_HINT`` f32)."""
    import fnmatch

    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    ov_model = fp32_ov_model(fp32_proto) if ov_model is None else ov_model.clone()
    batch = ov_model.input(0).get_partial_shape()[0]
    b = batch.get_length() if batch.is_static else 16
    items = [calib_x[i : i + b] for i in range(0, len(calib_x) - b + 1, b)]
    ignored = None
    if keep_heads_float:
        heads = [
            lay.node
            for lay in quantizable_layers(fp32_proto, ("MatMul", "Gemm"))
            if any(fnmatch.fnmatchcase(lay.name, p) for p in DEFAULT_EXCLUDE)
        ]
        ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
        names = [n for n in heads if n in ov_names]
        if names:
            ignored = nncf.IgnoredScope(names=names, validate=False)
    return nncf.quantize(
        ov_model,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=min(subset_size, len(items) * b) // b or 1,
        fast_bias_correction=fast_bias_correction,
        ignored_scope=ignored,
        advanced_parameters=None if weight_bits is None else AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.DISABLE
        ),
    )


def ov_logits(ov_model, x: np.ndarray, desc: str = "eval nncf (openvino)") -> np.ndarray:
    """Logits of ``x`` from an ``openvino.Model`` on CPU."""
    import openvino as ov

    from volo_deploy.runtime import inference_config, run_in_chunks

    compiled = ov.Core().compile_model(ov_model, "CPU", inference_config("int8"))
    req = compiled.create_infer_request()
    batch = compiled.input(0).get_partial_shape()[0]
    b = batch.get_length() if batch.is_static else 32

    def run(chunk: np.ndarray) -> np.ndarray:
        return np.array(req.infer({0: np.ascontiguousarray(chunk, np.float32)})[compiled.output(0)])

    return run_in_chunks(run, x, b, pad=batch.is_static, desc=desc)
