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
    # CPU profiles: 7-bit weights on CPUs without an int8 dot product (see choose_weight_bits),
    # full 8-bit where there is one; False: always 8-bit (TensorRT, a GPU).
    weight_bits_by_isa: bool = False
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    # Attention batched matmuls (activation x activation, e.g. q @ k^T and softmax @ v).
    quantize_activation_matmuls: bool = False
    # Op types whose outputs get Q/DQ too (default: none, outputs stay float), so the runtime can
    # fuse a kernel with a quantized output where it has no float-output one.
    quantize_outputs_of: tuple[str, ...] = ()
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
    # CPU profiles pick their weight bits by ISA (choose_weight_bits): on the AVX2 dev box (no
    # VNNI) full-range weights cost top-1 agreement on the demo (ORT 98.61% -> 99.44%, OpenVINO
    # 98.89% -> 99.44% with 7-bit weights), the u8 x s8 pair-sum saturation of non-VNNI kernels.
    # onnxruntime CPU: u8 activations (asymmetric, uses the full range after GELU/ReLU) with
    # per-channel s8 weights, the combination its MLAS int8 GEMM kernels are built for.
    "onnxruntime": QuantProfile(
        "onnxruntime",
        runtime="onnxruntime",
        activation_type="uint8",
        activation_symmetric=False,
        weight_bits_by_isa=True,
        # onnxruntime fuses Q/DQ Gemm into QGemm with a float output, but Conv only into QLinearConv,
        # which needs a quantized output: with float outputs the patch-embedding and downsampling
        # convs ran as float Conv on dequantized inputs (VOLO-D1 224, Zen 5, batch 8: ORT INT8 3% faster).
        quantize_outputs_of=("Conv",),
        notes="asymmetric u8 activations + per-channel symmetric s8 weights (7-bit without VNNI), MLAS U8S8",
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
        weight_bits_by_isa=True,
        notes="symmetric int8 activations + per-channel int8 weights (7-bit without VNNI), functions inlined",
    ),
}

WEIGHT_BITS = ("auto", "7", "8")


def choose_weight_bits(profile: QuantProfile, requested: str | int = "auto") -> tuple[int, str]:
    """(weight bits, why) for ``profile`` on this CPU.

    Without an int8 dot product (x86 AVX2 without VNNI), u8 x s8 products are summed in pairs
    into int16 with saturation (``vpmaddubsw``), so full-range weights overflow; 7-bit weights
    cannot (onnxruntime docs, "Quantize ONNX models: when to use reduce_range"). With VNNI /
    ARM dot product the sums are 32-bit and 7 bits only cost accuracy. The choice fits the CPU
    that quantizes: export with ``7`` for AVX2-only deployment targets.
    """
    from volo_deploy import machine

    req = str(requested).lower()
    if req not in WEIGHT_BITS:
        raise BadInputError(f"int8 weight bits {requested!r}: expected one of {', '.join(WEIGHT_BITS)}")
    if req != "auto":
        return int(req), f"requested {req}-bit weights"
    if not profile.weight_bits_by_isa:
        return 8, f"profile {profile.name}: full-range int8 weights"
    if machine.has_int8_dot_product():
        dot = sorted(machine.cpu_features() & machine.INT8_DOT_PRODUCT_FEATURES)
        return 8, f"auto: this CPU has an int8 dot product ({', '.join(dot)}): full-range weights cannot saturate"
    return 7, "auto: no VNNI / int8 dot product on this CPU: 7-bit weights avoid int16 saturation of u8 x s8 pairs"


def get_profile(profile: str | QuantProfile) -> QuantProfile:
    if isinstance(profile, QuantProfile):
        return profile
    if profile not in PROFILES:
        raise BadInputError(f"unknown quantization profile {profile!r}; known: {', '.join(PROFILES)}")
    return PROFILES[profile]
