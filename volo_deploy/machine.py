"""What machine this is: CPU model and the ISA features that change our numbers, GPUs.

Runtimes pick kernels and default precisions by instruction set: OpenVINO's CPU plugin runs
bf16 by default where the CPU has avx512_bf16 or AMX, and int8 GEMMs only beat fp32 where
there is VNNI. Two latency figures are comparable only between machines with the same
:func:`hardware_fingerprint`. Everything here is read from ``/proc`` (Linux) or torch; nothing
is imported that a backend needs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

# The CPU flags (Linux /proc/cpuinfo spelling) that change which kernels a runtime picks.
X86_FEATURES = (
    "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
# ARM: asimd = NEON, asimddp = dot product (int8), bf16, i8mm (int8 matrix multiply), sve.
ARM_FEATURES = ("asimd", "asimddp", "asimdhp", "bf16", "i8mm", "sve", "sve2")


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each ``key : value`` line of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, vendor and the relevant ISA features from /proc/cpuinfo text (x86 or ARM)."""
    fields = _cpuinfo_fields(text)
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    known = X86_FEATURES if "flags" in fields else ARM_FEATURES
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model") or ""
    if not model and "cpu part" in fields:
        model = f"ARM implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    # Virtual machines often hide the model name ("AMD EPYC"); family/model/stepping still tell generations apart.
    ident = " ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping", "cpu part", "cpu variant") if k in fields)
    return {
        "model": model or platform.processor() or platform.machine(),
        "vendor": fields.get("vendor_id") or fields.get("cpu implementer") or "",
        "id": ident,
        "features": [f for f in known if f in flags],
    }


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``model``, ``vendor``, ``features`` (relevant ISA flags present)."""
    return parse_cpuinfo(_read("/proc/cpuinfo"))


def cpu_features() -> frozenset[str]:
    return frozenset(cpu_info()["features"])


def has_int8_dot_product() -> bool:
    """VNNI on x86 (avx512_vnni or avx_vnni, AMX int8) or dotprod on ARM: int8 GEMMs that do not saturate."""
    return bool(cpu_features() & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def has_bf16() -> bool:
    """Native bf16 arithmetic on the CPU (avx512_bf16 or AMX bf16 on x86, bf16 on ARM)."""
    return bool(cpu_features() & {"avx512_bf16", "amx_bf16", "bf16"})


def gpu_info() -> list[dict[str, Any]]:
    """CUDA GPUs seen by torch: name, compute capability, memory (empty without CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "name": p.name,
                "compute_capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
            }
        )
    return gpus


def describe_machine() -> dict[str, Any]:
    """The machine section of ``report.json`` and every ``manifest.json``."""
    cpu = cpu_info()
    return {
        "platform": platform.platform(),
        "arch": platform.machine(),
        "processor": cpu["model"],
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "gpus": gpu_info(),
    }


def hardware_fingerprint(machine: dict[str, Any], threads: int | None = None) -> str:
    """Short hash of what latency depends on: arch, CPU model + ISA features, CPU count, threads, GPUs.

    Two reports' latencies are comparable only when their fingerprints are equal.
    """
    cpu = machine.get("cpu") or {}
    key = {
        "arch": machine.get("arch"),
        "cpu_model": cpu.get("model", machine.get("processor")),
        "cpu_id": cpu.get("id"),
        "features": sorted(cpu.get("features") or []),
        "cpu_count": machine.get("cpu_count"),
        "threads": threads,
        "gpus": [(g.get("name"), g.get("compute_capability")) for g in machine.get("gpus") or []],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"hw:{digest[:16]}"


def summary_line(machine: dict[str, Any]) -> str:
    """One line for report headers: model, ISA features, CPU count, GPUs."""
    cpu = machine.get("cpu") or {}
    feats = " ".join(cpu.get("features") or []) or "no listed ISA features"
    gpus = ", ".join(f"{g['name']} (sm_{g['compute_capability'].replace('.', '')})" for g in machine.get("gpus") or [])
    return f"{cpu.get('model', machine.get('processor'))}, {machine.get('cpu_count')} CPUs [{feats}]" + (
        f"; GPU: {gpus}" if gpus else ""
    )
