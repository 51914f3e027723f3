"""Quantization profiles: what each target runtime needs from the Q/DQ graph.

A profile is a frozen description (no behaviour): data types, symmetry, which op types
get Q/DQ on their inputs, and how the graph is finished for its runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from volo_deploy.errors import BadInputError


@dataclass(frozen=True)
class QuantProfile:
    """How to build the Q/DQ ONNX for one runtime."""

    name: str
    runtime: str  # the runtime the profile's output is checked on: "onnxruntime" | "openvino"
    activation_type: str = "int8"  # "int8" | "uint8"
    activation_symmetric: bool = True
    weight_symmetric: bool = True
    per_channel: bool = True
    # 7-bit weights: int8 GEMM/conv kernels of AVX2 CPUs without VNNI (vpmaddubsw) saturate
    # 16-bit pair sums with full-range u8 x s8 products.
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    # Attention batched matmuls (activation x activation, e.g. q @ k^T and softmax @ v).
    quantize_activation_matmuls: bool = False
    quantize_bias: bool = True  # int32 bias DQ (ORT) or float bias (TensorRT, OpenVINO)
    inline_functions: bool = False  # OpenVINO cannot run model-local functions
    notes: str = ""


PROFILES: dict[str, QuantProfile] = {
    # TensorRT 11: strongly typed networks, INT8 only from Q/DQ; symmetric int8 activations and
    # weights, Q/DQ on Conv/MatMul/Gemm inputs only, float bias; the outlook node (plugin or local
    # function) sits between float tensors.
    "tensorrt": QuantProfile(
        "tensorrt",
        runtime="onnxruntime",
        activation_type="int8",
        activation_symmetric=True,
        quantize_bias=False,
        notes="symmetric int8 activations + per-channel int8 weights (explicit quantization)",
    ),
    # CPU profiles use 7-bit weights (reduce_range): on the AVX2 dev box (no VNNI) full-range
    # weights cost top-1 agreement on the demo (ORT 98.61% -> 99.44%, OpenVINO 98.89% -> 99.44%
    # with reduce_range), the known u8 x s8 pair-sum saturation of non-VNNI int8 kernels.
    # onnxruntime CPU: u8 activations (asymmetric, uses the full range after GELU/ReLU) with
    # per-channel s8 weights, the combination its MLAS int8 GEMM kernels are built for.
    "onnxruntime": QuantProfile(
        "onnxruntime",
        runtime="onnxruntime",
        activation_type="uint8",
        activation_symmetric=False,
        reduce_range=True,
        notes="asymmetric u8 activations + per-channel symmetric 7-bit s8 weights (MLAS U8S8, no AVX2 saturation)",
    ),
    # OpenVINO: its ONNX frontend turns Q/DQ pairs into FakeQuantize; symmetric int8 activations,
    # per-channel int8 weights, float bias, local functions inlined.
    "openvino": QuantProfile(
        "openvino",
        runtime="openvino",
        activation_type="int8",
        activation_symmetric=True,
        quantize_bias=False,
        inline_functions=True,
        reduce_range=True,
        notes="symmetric int8 activations + per-channel 7-bit int8 weights, functions inlined",
    ),
}

#: The profile ``volo-export --int8`` uses for each backend.
BACKEND_PROFILES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


def get_profile(profile: str | QuantProfile) -> QuantProfile:
    if isinstance(profile, QuantProfile):
        return profile
    if profile not in PROFILES:
        raise BadInputError(f"unknown quantization profile {profile!r}; known: {', '.join(PROFILES)}")
    return PROFILES[profile]
