"""Precision names and what this CPU can execute.

``fp32``: FP32 math everywhere (runtimes are pinned to it; OpenVINO's CPU plugin would
otherwise pick bf16 on CPUs with avx512_bf16 or AMX). ``fp16``: FP16 weights (computed in
FP32 on CPUs). ``bf16``: bf16 math where the CPU has it natively. ``int8``: INT8 where
quantized, FP32 elsewhere.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def bf16_unavailable_reason() -> str | None:
    """``None`` when this CPU computes bf16 natively, else why not (one line)."""
    from volo_deploy import machine

    if machine.has_bf16():
        return None
    found = " ".join(sorted(machine.cpu_features())) or "none"
    return f"this CPU has no native bf16 (needs avx512_bf16 or amx_bf16 on x86, bf16 on ARM; ISA features found: {found})"


def executed_name(float_precision: str, precision: str) -> str:
    """How a manifest/report names what ran: the float math precision, ``int8+<float>`` for INT8."""
    return f"int8+{float_precision}" if precision == "int8" else float_precision
