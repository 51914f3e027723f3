"""INT8 OpenVINO IRs, made from the FP32 graph the OpenVINO backend already exported.

``Int8Options.openvino_path``: ``"qdq"`` converts the ``openvino``-profile Q/DQ ONNX of that graph
(functions inlined); ``"nncf"`` runs ``nncf.quantize`` (TRANSFORMER) on the converted FP32 model and
checks the same top-1 budget (no per-layer fallback on that path).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from volo_deploy.errors import QuantizationError

log = logging.getLogger(__name__)


def set_volo_rt_info(ov_model: Any, metadata: dict[str, str]) -> None:
    """Our ONNX ``metadata_props`` as ``volo_deploy`` rt_info entries of an ``openvino.Model``."""
    for key, value in metadata.items():
        ov_model.set_rt_info(value, ["volo_deploy", key.replace(".", "_")])


def openvino_int8_model(model, request, fp32_proto, fp32_ov_model) -> tuple[Any, dict[str, Any]]:
    """INT8 ``openvino.Model`` (save it with ``compress_to_fp16=False``) and its manifest details.

    ``fp32_proto``: the portable FP32 ONNX (not inlined, with our metadata) in the exported outlook
    form; ``fp32_ov_model``: its conversion.
    """
    from volo_deploy.quant.options import Int8Options

    opts: Int8Options = getattr(request, "quant", None) or Int8Options()
    if opts.openvino_path == "qdq":
        return _qdq_model(model, request, fp32_proto)
    if opts.openvino_path == "nncf":
        return _nncf_model(model, request, opts, fp32_proto, fp32_ov_model)
    raise QuantizationError(f"openvino_path must be 'qdq' or 'nncf', got {opts.openvino_path!r}")


def _qdq_model(model, request, fp32_proto) -> tuple[Any, dict[str, Any]]:
    import onnx
    import openvino as ov

    from volo_deploy.export.onnx_graph import onnx_metadata
    from volo_deploy.quant.export import quantize_for_export

    qproto, details = quantize_for_export(model, request, "openvino", fp32_proto=fp32_proto)
    with tempfile.TemporaryDirectory(prefix="volo-ov-int8-") as tmp:
        path = Path(tmp) / "int8.onnx"
        onnx.save_model(qproto, str(path))
        ov_model = ov.convert_model(str(path))
    set_volo_rt_info(ov_model, onnx_metadata(model, request))  # same rt_info as the FP32 IR
    ov_model.set_rt_info(str(details["quantization"]["weight_bits"]), ["volo_deploy", "volo_quant_weight_bits"])
    return ov_model, {**details, "openvino_path": "qdq"}


def _nncf_model(model, request, opts, fp32_proto, fp32_ov_model) -> tuple[Any, dict[str, Any]]:
    from volo_deploy.quant.data import describe_plan, load_int8_data, plan_int8_data
    from volo_deploy.quant.nncf_openvino import nncf_quantize_openvino
    from volo_deploy.quant.profiles import choose_weight_bits, get_profile

    plan = plan_int8_data(opts, demo=model.cfg.family == "volo_demo")
    calib, budget_set = load_int8_data(model.cfg, plan, opts)
    bits, why = choose_weight_bits(get_profile("openvino"), opts.weight_bits)
    log.info(f"INT8 weights (NNCF overflow fix): {bits}-bit ({why})")
    t0 = time.perf_counter()
    ov_model = nncf_quantize_openvino(fp32_proto, calib.x, subset_size=len(calib.x), ov_model=fp32_ov_model,
                                      weight_bits=bits)
    ov_model.set_rt_info(str(bits), ["volo_deploy", "volo_quant_weight_bits"])
    details: dict[str, Any] = {
        "openvino_path": "nncf",
        "calibration_data": calib.describe(),
        "int8_data": describe_plan(plan, calib, budget_set),
        "quantization": {
            "method": "nncf (TRANSFORMER, mixed)",
            "calibration_seconds": round(time.perf_counter() - t0, 3),
            "weight_bits": bits,
            "weight_bits_reason": why,
        },
    }
    if budget_set is not None:
        details["accuracy"] = _nncf_budget(opts, plan.budget, fp32_proto, ov_model, budget_set)
    return ov_model, details


def _nncf_budget(opts, kind: str, fp32_proto, ov_model, ev) -> dict[str, Any]:
    """The NNCF model vs FP32 on the budget's images (top-1 drop with labels, else agreement); raises
    when the budget is missed (no per-layer fallback on this path)."""
    from volo_deploy.quant.evaluate import agreement, cosine, logits, top1
    from volo_deploy.quant.nncf_openvino import ov_logits

    ref = logits(fp32_proto, ev.x, "openvino", desc="eval fp32 (openvino)")
    got = ov_logits(ov_model, ev.x)
    out: dict[str, Any] = {"kind": kind, "eval_images": len(ev.x), "agreement": agreement(ref, got),
                           "cosine_mean": cosine(ref, got)[0], "eval_data": ev.describe()}
    if kind == "labels":
        out.update(fp32_top1=top1(ref, ev.labels), int8_top1=top1(got, ev.labels))
        out["drop"] = out["fp32_top1"] - out["int8_top1"]
        if out["drop"] > opts.max_drop:
            raise QuantizationError(f"NNCF INT8 misses the budget: top-1 drop {out['drop']:.2f} > {opts.max_drop} points")
    floor, cos_floor = opts.agreement_floor(kind), opts.min_cosine
    if floor is not None and out["agreement"] < floor:
        raise QuantizationError(f"NNCF INT8 misses the budget: agreement {out['agreement']:.2f}% < {floor}%")
    if cos_floor is not None and out["cosine_mean"] < cos_floor:
        raise QuantizationError(f"NNCF INT8 misses the budget: logit cosine {out['cosine_mean']:.4f} < {cos_floor}")
    return out
