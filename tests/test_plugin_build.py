"""Build checks of plugins/outlook_attention that need no GPU: nvcc per architecture, the CMake
kernel library, the TensorRT plugin against headers only, and the plugin's field handling."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from volo_deploy.plugins_native import (
    KERNEL_LIB,
    PLUGIN_LIB,
    NativeBuildError,
    _find_nvcc,
    build_kernel_library,
    launcher_argtypes,
    load_kernel,
    plugin_source_dir,
)

SRC = plugin_source_dir()
REPO = SRC.parent.parent
NVCC = _find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda)")
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found on PATH")


def _trt_include() -> Path | None:
    for cand in (os.environ.get("TENSORRT_INCLUDE_DIR"), REPO / "third_party" / "tensorrt" / "include"):
        if cand and (Path(cand) / "NvInfer.h").is_file():
            return Path(cand)
    return None


TRT_INCLUDE = _trt_include()
needs_trt_headers = pytest.mark.skipif(
    TRT_INCLUDE is None,
    reason="TensorRT headers not found: set TENSORRT_INCLUDE_DIR or extract NVIDIA/TensorRT include/ "
    "into third_party/tensorrt/include",
)


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@needs_nvcc
@pytest.mark.parametrize("arch", ["87", "90", "110"])
def test_nvcc_compiles_kernel(arch: str, tmp_path: Path) -> None:
    proc = _run([
        NVCC, "-std=c++17", "-O3", "-c", str(SRC / "outlookAttentionKernel.cu"), "-o", str(tmp_path / "k.o"),
        "-gencode", f"arch=compute_{arch},code=sm_{arch}", "-Xcompiler=-Wall,-Wextra", "-Werror=all-warnings",
        "-Xptxas", "-v",
    ])
    # No register spills in any instantiation.
    assert "bytes spill stores" in proc.stderr
    assert all(line.strip().startswith("0 bytes stack frame, 0 bytes spill stores")
               for line in proc.stderr.splitlines() if "spill stores" in line), proc.stderr


@pytest.fixture(scope="module")
def kernel_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if NVCC is None or shutil.which("cmake") is None:
        pytest.skip("nvcc or cmake not found")
    return build_kernel_library(tmp_path_factory.mktemp("kernel_build") / "build", archs="90")


def test_cmake_builds_kernel_library(kernel_lib: Path) -> None:
    assert kernel_lib.name == KERNEL_LIB and kernel_lib.is_file()
    syms = _run(["nm", "-D", "--defined-only", str(kernel_lib)]).stdout if shutil.which("nm") else ""
    if syms:
        assert "volo_outlook_attention" in syms


def test_launcher_argtypes_follow_the_c_prototype(tmp_path: Path) -> None:
    import ctypes

    types = launcher_argtypes()
    # v, attn, out; dtype, batch, height, width, channels, attn_h, attn_w, kernel_size, padding, stride,
    # num_heads; scale; stream.
    assert types == [ctypes.c_void_p] * 3 + [ctypes.c_int] * 11 + [ctypes.c_float, ctypes.c_void_p]
    # A prototype change shows up in the argtypes (no hand-kept count).
    header = (SRC / "outlookAttentionKernel.h").read_text()
    changed = tmp_path / "k.h"
    changed.write_text(header.replace("int num_heads, float scale", "int num_heads, int extra, float scale"))
    assert launcher_argtypes(changed).count(ctypes.c_int) == 12


def test_launcher_rejects_null_pointers_through_the_wrapper(kernel_lib: Path) -> None:
    """The wrapper's ctypes call reaches C (no TypeError) and the launcher validates before any CUDA call,
    so this runs without a GPU: null pointers -> cudaErrorInvalidValue (1)."""
    kernel = load_kernel(kernel_lib)
    args = [None, None, None, 1, 64, 28, 28, 192, 14, 14, 3, 1, 2, 6, 32**-0.5, None]
    assert kernel._fn(*args) == 1
    assert kernel.version >= 10100


@needs_nvcc
@needs_cmake
def test_cmake_default_architectures(tmp_path: Path) -> None:
    proc = _run(["cmake", "-S", str(SRC), "-B", str(tmp_path / "b"), f"-DCMAKE_CUDA_COMPILER={NVCC}",
                 "-DVOLO_BUILD_PLUGIN=OFF"])
    line = next(l for l in proc.stdout.splitlines() if "architectures:" in l)
    archs = set(line.split("architectures:")[1].strip().split(";"))
    assert {"75", "80", "86", "87", "89", "90"} <= archs, line
    version = _run([NVCC, "--version"]).stdout
    if "release 13." in version:
        assert {"100", "110", "120"} <= archs and "72" not in archs, line


@needs_nvcc
@needs_cmake
def test_cmake_reports_missing_tensorrt(tmp_path: Path) -> None:
    proc = _run(["cmake", "-S", str(SRC), "-B", str(tmp_path / "b"), f"-DCMAKE_CUDA_COMPILER={NVCC}",
                 "-DCMAKE_CUDA_ARCHITECTURES=90", f"-DTENSORRT_INCLUDE_DIR={tmp_path}/none",
                 f"-DTENSORRT_ROOT={tmp_path}/none"])
    if "plugin against TensorRT" in proc.stdout:
        pytest.skip("TensorRT headers installed system-wide: the 'skipped' message cannot be exercised")
    assert "plugin skipped: NvInfer.h not found" in proc.stdout


@needs_nvcc
@needs_cmake
@needs_trt_headers
def test_plugin_builds_against_headers_and_selftest_passes(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build_kernel_library(build, archs="90", tensorrt_include=TRT_INCLUDE, headers_only=True)
    plugin = build / PLUGIN_LIB
    assert plugin.is_file()
    if shutil.which("nm"):
        syms = _run(["nm", "-D", "--defined-only", str(plugin)]).stdout
        assert " T getCreators" in syms and " T setLoggerFinder" in syms
        undefined = _run(["nm", "-D", "--undefined-only", str(plugin)]).stdout
        assert "nvinfer" not in undefined.lower()
    # Creator + plugin from fields, serialization round-trip, bad fields rejected: no GPU, no libnvinfer.
    proc = _run([str(build / "volo_outlook_plugin_selftest")])
    assert proc.stdout.strip().endswith("ALL OK"), proc.stdout


@needs_trt_headers
def test_plugin_compiles_with_gxx_alone(tmp_path: Path) -> None:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    cuda_inc = None
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            cuda_inc = Path(root) / "include"
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found")
    _run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", str(SRC / "outlookAttentionPlugin.cpp"),
          "-I", str(SRC), "-isystem", str(TRT_INCLUDE), "-isystem", str(cuda_inc), "-o", str(tmp_path / "p.o")])


def test_build_reports_missing_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NativeBuildError, match="cmake not found"):
        build_kernel_library(tmp_path)


def test_gpu_check_script_parses_and_its_python_snippets_compile() -> None:
    """scripts/gpu_check.sh cannot run here (no GPU): check its bash syntax, every inline ``-c`` snippet
    and every Python script it calls (they must at least compile)."""
    import re

    script = REPO / "scripts" / "gpu_check.sh"
    if shutil.which("bash"):
        _run(["bash", "-n", str(script)])
    text = script.read_text()
    snippets = re.findall(r'"\$PY" -c "(.*?)"(?=[ \n])', text, flags=re.S)
    assert len(snippets) >= 4
    for code in snippets:
        compile(code, "gpu_check.sh snippet", "exec")
    scripts = set(re.findall(r"(benchmarks/\w+\.py)", text))
    assert {"benchmarks/outlook_kernel.py", "benchmarks/volo_cuda_e2e.py"} <= scripts
    for rel in scripts:
        compile((REPO / rel).read_text(), rel, "exec")
