"""INT8 post-training quantization: explicit Q/DQ ONNX for TensorRT, onnxruntime and OpenVINO.

``quantize_onnx(model, calib_images, profile=..., method=...)`` is the core call
(onnxruntime's static quantizer with VOLO-aware placement and a keyed calibration cache);
``quantize_within_budget`` adds the top-1 accuracy budget; ``quantize_for_export`` is what
``volo-export --int8`` runs; ``nncf_quantize_openvino`` is NNCF's native OpenVINO path.
Runtimes are imported only when used.
"""

from volo_deploy.quant.placement import DEFAULT_EXCLUDE, Layer, Placement
from volo_deploy.quant.profiles import PROFILES, QuantProfile, get_profile

__all__ = [
    "BudgetConfig",
    "DEFAULT_EXCLUDE",
    "PROFILES",
    "CalibMethod",
    "Int8Options",
    "Layer",
    "Placement",
    "QuantConfig",
    "QuantProfile",
    "QuantResult",
    "get_profile",
    "nncf_quantize_openvino",
    "quantize_for_export",
    "quantize_onnx",
    "quantize_within_budget",
]

_LAZY = {
    "CalibMethod": "quantizer",
    "QuantConfig": "quantizer",
    "QuantResult": "quantizer",
    "quantize_onnx": "quantizer",
    "quantize_within_budget": "budget",
    "BudgetConfig": "budget",
    "quantize_for_export": "export",
    "Int8Options": "options",
    "nncf_quantize_openvino": "nncf_openvino",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"volo_deploy.quant.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'volo_deploy.quant' has no attribute {name!r}")
