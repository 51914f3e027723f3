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
import re
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


# VNNI on x86 (avx512_vnni or avx_vnni, AMX int8) or dotprod on ARM: int8 GEMMs that do not saturate.
INT8_DOT_PRODUCT_FEATURES = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def has_int8_dot_product() -> bool:
    """The CPU has one of :data:`INT8_DOT_PRODUCT_FEATURES`."""
    return bool(cpu_features() & INT8_DOT_PRODUCT_FEATURES)


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


# L4T release -> JetPack (NVIDIA JetPack release notes); other releases map by L4T major.
JETPACK_BY_L4T = {(35, 4): "5.1.2", (35, 5): "5.1.3", (35, 6): "5.1.4", (36, 3): "6.0", (36, 4): "6.1",
                  (36, 4, 3): "6.2", (36, 4, 4): "6.2.1", (38, 2): "7.0"}
JETPACK_MAJOR_BY_L4T = {32: "4", 34: "5", 35: "5", 36: "6", 38: "7"}
_GPU_DEVFREQ = ("gpu", "gp10b", "gv11b", "ga10b", "gb10b")  # Jetson GPU devfreq node names (TX2 .. Thor)


def _l4t_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``"36.4.3"``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2).rstrip('.')}" if m else None


def _jetpack(l4t: str | None) -> str | None:
    if not l4t:
        return None
    parts = tuple(int(x) for x in l4t.split("."))
    for key in (parts[:3], parts[:2]):
        if key in JETPACK_BY_L4T:
            return JETPACK_BY_L4T[key]
    major = JETPACK_MAJOR_BY_L4T.get(parts[0])
    return f"{major}.x" if major else None


def _power_mode(root: Path) -> str | None:
    """``nvpmodel -q`` -> ``"MAXN (0)"``; None without nvpmodel (searched under ``root``, and PATH for /)."""
    import shutil
    import subprocess

    dirs = [str(root / d) for d in ("usr/sbin", "usr/bin", "sbin")]
    if root == Path("/"):
        dirs.insert(0, os.environ.get("PATH", ""))
    exe = shutil.which("nvpmodel", path=os.pathsep.join(dirs))
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"NV Power Mode:[ \t]*(\S+)[ \t]*(?:\r?\n\s*(\d+))?", out)
    if not m:
        return None
    return f"{m.group(1)} ({m.group(2)})" if m.group(2) else m.group(1)


def _min_eq_max(pairs: list[tuple[Path, Path]]) -> bool | None:
    """True when every (min, max) frequency file pair holds the same value; None when none is readable."""
    seen = [(_read(a).strip(), _read(b).strip()) for a, b in pairs]
    seen = [(a, b) for a, b in seen if a and b]
    return all(a == b for a, b in seen) if seen else None


def _clocks_locked(root: Path) -> dict[str, bool | None]:
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    cpu = _min_eq_max([(c / "scaling_min_freq", c / "scaling_max_freq") for c in cpus])
    gpus = [d for d in sorted((root / "sys/class/devfreq").glob("*")) if any(k in d.name for k in _GPU_DEVFREQ)]
    gpu = _min_eq_max([(g / "min_freq", g / "max_freq") for g in gpus])
    locked = False if False in (cpu, gpu) else None if None in (cpu, gpu) else True
    return {"cpu": cpu, "gpu": gpu, "locked": locked}


def jetson_info(root: Path = Path("/")) -> dict[str, Any] | None:
    """NVIDIA Jetson identity, or None elsewhere: module (device tree), L4T release -> JetPack,
    power mode (``nvpmodel -q``, None if absent), whether CPU and GPU clocks are locked (min == max).

    ``root`` is the filesystem root to read (tests pass a fake tree).
    """
    root = Path(root)
    release = _read(root / "etc/nv_tegra_release")
    model = _read(root / "proc/device-tree/model").replace("\x00", "").strip()
    if not release and "jetson" not in model.lower():
        return None
    l4t = _l4t_release(release)
    return {
        "module": model or None,
        "l4t": l4t,
        "jetpack": _jetpack(l4t),
        "power_mode": _power_mode(root),
        "clocks": _clocks_locked(root),
    }


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
        **({"jetson": jetson} if (jetson := jetson_info()) is not None else {}),
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
    if machine.get("jetson"):  # same module, other power mode: other clocks, other latency
        key["jetson"] = [machine["jetson"].get("module"), machine["jetson"].get("power_mode")]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"hw:{digest[:16]}"


def summary_line(machine: dict[str, Any]) -> str:
    """One line for report headers: model, ISA features, CPU count, GPUs."""
    cpu = machine.get("cpu") or {}
    feats = " ".join(cpu.get("features") or []) or "no listed ISA features"
    gpus = ", ".join(f"{g['name']} (sm_{g['compute_capability'].replace('.', '')})" for g in machine.get("gpus") or [])
    line = f"{cpu.get('model', machine.get('processor'))}, {machine.get('cpu_count')} CPUs [{feats}]" + (
        f"; GPU: {gpus}" if gpus else ""
    )
    jetson = machine.get("jetson")
    if jetson:
        locked = (jetson.get("clocks") or {}).get("locked")
        clocks = {True: "clocks locked", False: "clocks NOT locked", None: "clocks unknown"}[locked]
        line += (f"; Jetson: {jetson.get('module')}, JetPack {jetson.get('jetpack') or '?'} "
                 f"(L4T {jetson.get('l4t') or '?'}), power mode {jetson.get('power_mode') or '?'}, {clocks}")
    return line
