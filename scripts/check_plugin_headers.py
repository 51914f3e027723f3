#!/usr/bin/env python3
"""Compile the outlook-attention plugin and run its self-test against every TensorRT header set
found locally; print a table version -> ok/fail (no GPU, no libnvinfer needed).

Header sets are ``include/`` folders of NVIDIA/TensorRT release tags extracted into the git-ignored
``third_party/`` (never commit them), e.g.::

    git --git-dir=<TensorRT.git> archive v10.3.0 include | tar -x -C third_party/tensorrt-10.3

    python scripts/check_plugin_headers.py                 # third_party/tensorrt-*/include
    python scripts/check_plugin_headers.py --arch 87 DIR…  # explicit include folders

Each set is built with CMake (``VOLO_PLUGIN_HEADERS_ONLY=ON``: linked with ``--no-undefined``,
proving no libnvinfer symbol is needed), then ``volo_outlook_plugin_selftest`` runs; the bundle's
self-registering loader (``libvolo_outlook_autoload.so``, for DeepStream/Triton) is compiled too. TensorRT < 10
has no IPluginV3: CMake skips the plugin, and the table shows the compiler's first error on the
plugin source as the evidence. Exit status 1 when a TensorRT >= 10 set fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from volo_deploy.export.trt_engine import MIN_TENSORRT, header_version  # noqa: E402
from volo_deploy.plugins_native import PLUGIN_LIB, NativeBuildError, build_kernel_library, plugin_source_dir  # noqa: E402


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if "error" in line.lower():
            return re.sub(r"^.*?/plugins/outlook_attention/", "", line.strip())[:160]
    return text.strip().splitlines()[-1][:160] if text.strip() else "no output"


def _compile_error(include: Path) -> str:
    """First g++ error of the plugin source against ``include`` (evidence for an unsupported version)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if cxx is None:
        return "no host C++ compiler to show the error"
    proc = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-I", str(plugin_source_dir()), "-isystem",
                           str(include), "-isystem", str(cuda), str(plugin_source_dir() / "outlookAttentionPlugin.cpp")],
                          capture_output=True, text=True)
    return "compiles?!" if proc.returncode == 0 else _first_error(proc.stderr)


def check_loader(include: Path, build: Path) -> str:
    """Compile the bundle's self-registering loader (DeepStream/Triton) against ``include``: ok/fail."""
    from volo_deploy.export.jetson_bundle import TEMPLATES

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return "no g++"
    build.mkdir(parents=True, exist_ok=True)
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    proc = subprocess.run([cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-isystem",
                           str(include), "-isystem", str(cuda), str(TEMPLATES / "volo_outlook_autoload.cpp"), "-o",
                           str(build / "libvolo_outlook_autoload.so"), "-ldl"], capture_output=True, text=True)
    return "ok" if proc.returncode == 0 else "fail"


def check(include: Path, build: Path, arch: str) -> tuple[str, str]:
    """(``ok``/``fail``, detail) for one header set."""
    version = header_version(include)
    if version is not None and version[:2] < MIN_TENSORRT:
        return "fail", f"no IPluginV3 (need >= 10.0); g++: {_compile_error(include)}"
    try:
        build_kernel_library(build, archs=arch, tensorrt_include=include, headers_only=True)
    except NativeBuildError as exc:
        return "fail", _first_error(str(exc))
    if not (build / PLUGIN_LIB).is_file():
        return "fail", f"CMake skipped the plugin (see {build}/CMakeCache.txt)"
    proc = subprocess.run([str(build / "volo_outlook_plugin_selftest")], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or last != "ALL OK":
        return "fail", f"self-test: {_first_error(proc.stdout + proc.stderr)}"
    return "ok", "built (headers only, --no-undefined) + self-test ALL OK"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("includes", nargs="*", type=Path, help="include folders (default: third_party/tensorrt-*/include)")
    p.add_argument("--arch", default="87", help="CUDA architecture to compile the kernel for (default 87, Orin)")
    p.add_argument("--build-dir", type=Path, default=REPO / "build" / "check_plugin_headers")
    args = p.parse_args(argv)
    includes = args.includes or sorted(REPO.glob("third_party/tensorrt-*/include"))
    includes = [i for i in includes if (i / "NvInfer.h").is_file()]
    if not includes:
        print("error: no TensorRT headers found (third_party/tensorrt-*/include); see this script's docstring",
              file=sys.stderr)
        return 2
    rows = []
    for inc in sorted(includes, key=lambda i: header_version(i) or (0, 0, 0)):
        v = header_version(inc)
        name = ".".join(map(str, v)) if v else inc.parent.name
        t0 = time.perf_counter()
        status, detail = check(inc, args.build_dir / name, args.arch)
        rows.append((name, status, check_loader(inc, args.build_dir / name / "loader"), detail, v))
        print(f"  {name}: {status} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"| TensorRT headers | sm_{args.arch} plugin build + self-test | bundle loader | detail |\n|---|---|---|---|")
    for name, status, loader, detail, _ in rows:
        print(f"| {name} | {status} | {loader} | {detail.replace('|', '/')} |")
    bad = [n for n, s, ld, _, v in rows if (s != "ok" or ld != "ok") and (v is None or v[:2] >= MIN_TENSORRT)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
