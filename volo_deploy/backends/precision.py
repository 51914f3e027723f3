"""Precision names and what this CPU can execute.

``fp32``: FP32 math everywhere (runtimes are pinned to it; OpenVINO's CPU plugin would
otherwise pick bf16 on CPUs with avx512_bf16 or AMX). ``fp16``: FP16 weights (computed in
FP32 on CPUs). ``bf16``: bf16 math where the CPU has it natively. ``int8``: INT8 where
quantized, FP32 elsewhere.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def precision_from_flags(*, fp16: bool = False, bf16: bool = False, int8: bool = False) -> Precision:
    """The precision ``volo-export``'s (mutually exclusive) ``--fp16`` / ``--bf16`` / ``--int8`` select."""
    return "int8" if int8 else "fp16" if fp16 else "bf16" if bf16 else "fp32"


def bf16_unavailable_reason() -> str | None:
    """``None`` when this CPU computes bf16 natively, else why not (one line)."""
    from volo_deploy import machine

    if machine.has_bf16():
        return None
    found = " ".join(sorted(machine.cpu_features())) or "none"
    return f"this CPU has no native bf16 (needs avx512_bf16 or amx_bf16 on x86, bf16 on ARM; ISA features: {found})"


def executed_name(float_precision: str, precision: str) -> str:
    """How a manifest/report names what ran: the float math precision, ``int8+<float>`` for INT8."""
    return f"int8+{float_precision}" if precision == "int8" else float_precision


def int8_weights_warning(weight_bits: str | int | None) -> str | None:
    """A warning when an INT8 model with full-range (8-bit) weights is loaded on a CPU without an
    int8 dot product, whose u8 x s8 kernels can saturate them (the choice fits the exporting CPU)."""
    from volo_deploy import machine

    if str(weight_bits) != "8" or machine.has_int8_dot_product():
        return None
    return (
        "INT8 model with 8-bit weights on a CPU without VNNI / int8 dot product: its int8 kernels can saturate "
        "(int16 pair sums); re-export on this CPU or with --int8-weight-bits 7"
    )
