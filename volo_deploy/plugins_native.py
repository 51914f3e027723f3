"""Native outlook-attention kernel: build it with CMake and call it from Python (ctypes).

Import-safe without CUDA, torch CUDA or TensorRT: tools are looked up when used.

    lib = build_kernel_library("build/outlook", archs="90")
    kernel = load_kernel(lib)
    out = kernel.outlook_attention(v, attn, OutlookParams(3, 1, 2, 6, 32**-0.5))

The plugin sources live in ``plugins/outlook_attention`` (see its README); wheels ship them as
``volo_deploy._plugin_src/outlook_attention`` (:func:`plugin_source_dir` finds either).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

KERNEL_LIB = "libvolo_outlook_kernel.so"
HOSTREF_LIB = "libvolo_outlook_hostref.so"
PLUGIN_LIB = "libvolo_outlook_plugin.so"
DTYPE_FP32, DTYPE_FP16 = 0, 1


class NativeBuildError(RuntimeError):
    """CMake / nvcc are missing or the build failed."""


class NativeKernelError(RuntimeError):
    """The kernel launcher returned a non-zero cudaError_t."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"volo_outlook_attention failed: cudaError {code} ({message})")
        self.code = code


def plugin_source_dir() -> Path:
    """Directory of the outlook-attention kernel/plugin sources: the copy shipped in the package
    (``volo_deploy._plugin_src``, an installed wheel) first, the checkout's ``plugins/outlook_attention`` second."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("volo_deploy._plugin_src")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        shipped = Path(location) / "outlook_attention"
        if (shipped / "CMakeLists.txt").is_file():
            return shipped
    return Path(__file__).resolve().parent.parent / "plugins" / "outlook_attention"


def _find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def build_kernel_library(
    build_dir: str | os.PathLike[str],
    archs: str | Sequence[str | int] | None = None,
    tensorrt_include: str | os.PathLike[str] | None = None,
    headers_only: bool = False,
    jobs: int | None = None,
) -> Path:
    """Configure and build ``plugins/outlook_attention`` with CMake; return the kernel library path.

    ``archs``: CUDA architectures (``"90"``, ``"87;90"`` or ``[87, 90]``); None = CMake default list.
    ``tensorrt_include``: NvInfer.h directory, to also build the plugin (``headers_only`` skips libnvinfer).
    Raises :class:`NativeBuildError` when cmake/nvcc are missing or the build fails.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise NativeBuildError("cmake not found on PATH (needed to build the outlook-attention kernel)")
    nvcc = _find_nvcc()
    if nvcc is None:
        raise NativeBuildError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): install the CUDA toolkit")
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    args = [cmake, "-S", str(plugin_source_dir()), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    if archs is not None:
        arch_list = archs if isinstance(archs, str) else ";".join(str(a) for a in archs)
        args.append(f"-DCMAKE_CUDA_ARCHITECTURES={arch_list}")
    if tensorrt_include is not None:
        args.append(f"-DTENSORRT_INCLUDE_DIR={Path(tensorrt_include).resolve()}")
        args.append(f"-DVOLO_PLUGIN_HEADERS_ONLY={'ON' if headers_only else 'OFF'}")
    else:
        args.append("-DVOLO_BUILD_PLUGIN=OFF")
    steps = [args, [cmake, "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NativeBuildError(
                f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    lib = build / KERNEL_LIB
    if not lib.is_file():
        raise NativeBuildError(f"build finished but {lib} is missing")
    return lib


_C_TYPES = {
    "void const*": ctypes.c_void_p, "const void*": ctypes.c_void_p, "void*": ctypes.c_void_p,
    "int": ctypes.c_int, "float": ctypes.c_float, "cudaStream_t": ctypes.c_void_p,
}


def launcher_argtypes(header: str | os.PathLike[str] | None = None) -> list[Any]:
    """ctypes argtypes of ``volo_outlook_attention``, parsed from its C prototype in the header.

    Deriving them from ``outlookAttentionKernel.h`` keeps the wrapper and the ABI in step: a
    parameter added to or removed from the prototype changes the argtypes, not a hand-kept count.
    """
    path = Path(header) if header is not None else plugin_source_dir() / "outlookAttentionKernel.h"
    text = re.sub(r"/\*.*?\*/", " ", path.read_text(), flags=re.S)
    match = re.search(r"cudaError_t\s+volo_outlook_attention\s*\(([^)]*)\)", text)
    if match is None:
        raise NativeBuildError(f"{path}: prototype of volo_outlook_attention not found")
    types = []
    for param in match.group(1).split(","):
        words = " ".join(param.replace("*", " * ").split()).split(" ")
        ctype = " ".join(words[:-1]).replace(" *", "*")  # drop the parameter name
        if ctype not in _C_TYPES:
            raise NativeBuildError(f"{path}: unsupported parameter type {ctype!r} in volo_outlook_attention")
        types.append(_C_TYPES[ctype])
    return types


def _cuda_error_message(code: int) -> str:
    return {1: "cudaErrorInvalidValue", 716: "cudaErrorMisalignedAddress"}.get(code, "see cuda_runtime_api.h")


class OutlookKernel:
    """ctypes wrapper of ``volo_outlook_attention`` for torch CUDA tensors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        fn = self._lib.volo_outlook_attention
        fn.restype = ctypes.c_int
        fn.argtypes = launcher_argtypes()
        self._fn = fn
        self._lib.volo_outlook_kernel_version.restype = ctypes.c_int

    @property
    def version(self) -> int:
        """Kernel library version, major * 10000 + minor * 100 + patch."""
        return int(self._lib.volo_outlook_kernel_version())

    def outlook_attention(self, v: Any, attn: Any, params: Any, stream: Any = None, out: Any = None) -> Any:
        """Fused core on CUDA tensors ``v`` (B, H, W, C) and ``attn`` (B, h, w, heads*k^4); returns (B, H, W, C).

        ``params``: :class:`volo_deploy.models.outlook.OutlookParams` (or any object with its fields).
        ``stream``: a ``torch.cuda.Stream`` or raw handle; default the current stream of ``v``'s device.
        """
        import torch

        k, heads = int(params.kernel_size), int(params.num_heads)
        for name, t in (("v", v), ("attn", attn)):
            if not isinstance(t, torch.Tensor) or not t.is_cuda:
                raise ValueError(f"{name} must be a CUDA torch.Tensor")
            if t.dim() != 4 or not t.is_contiguous():
                raise ValueError(f"{name} must be a contiguous 4-D tensor, got shape {tuple(t.shape)}")
        if v.dtype not in (torch.float32, torch.float16) or attn.dtype != v.dtype:
            raise ValueError(f"v and attn must both be float32 or float16, got {v.dtype} and {attn.dtype}")
        if v.device != attn.device:
            raise ValueError("v and attn must be on the same device")
        b, hh, ww, c = v.shape
        s = int(params.stride)
        if s <= 0 or k <= 0:
            raise ValueError(f"stride and kernel_size must be positive, got {s} and {k}")
        expected = (b, math.ceil(hh / s), math.ceil(ww / s), heads * k**4)
        if tuple(attn.shape) != expected:
            raise ValueError(f"attn shape {tuple(attn.shape)} != expected {expected} for v {tuple(v.shape)}")
        if heads <= 0 or c % heads != 0:
            raise ValueError(f"channels {c} not divisible by num_heads {heads}")
        if out is None:
            out = torch.empty_like(v)
        elif out.shape != v.shape or out.dtype != v.dtype or out.device != v.device or not out.is_contiguous():
            raise ValueError("out must be a contiguous tensor like v")
        if stream is None:
            handle = torch.cuda.current_stream(v.device).cuda_stream
        else:
            handle = getattr(stream, "cuda_stream", stream)
        dtype = DTYPE_FP32 if v.dtype == torch.float32 else DTYPE_FP16
        with torch.cuda.device(v.device):
            code = self._fn(
                v.data_ptr(), attn.data_ptr(), out.data_ptr(), dtype, b, hh, ww, c, attn.shape[1], attn.shape[2],
                k, int(params.padding), s, heads, float(params.scale), handle,
            )
        if code != 0:
            raise NativeKernelError(code, _cuda_error_message(code))
        return out


KERNEL_LIB_ENV = "VOLO_OUTLOOK_KERNEL_LIB"


def kernel_cache_dir(arch: str) -> Path:
    """Per-architecture build folder of the kernel library in the user cache."""
    from volo_deploy.cache import cache_dir

    return cache_dir("outlook_kernel", f"sm_{arch}")


@functools.lru_cache(maxsize=None)
def default_kernel(arch: str) -> OutlookKernel:
    """The kernel library for ``sm_<arch>``: ``$VOLO_OUTLOOK_KERNEL_LIB`` when set, else built once with
    nvcc into :func:`kernel_cache_dir` (about a minute, on first use) and reused afterwards."""
    env = os.environ.get(KERNEL_LIB_ENV)
    if env:
        return load_kernel(env)
    build = kernel_cache_dir(arch)
    lib = build / KERNEL_LIB
    if not lib.is_file():
        logging.getLogger(__name__).warning("building the outlook-attention kernel for sm_%s into %s", arch, build)
        lib = build_kernel_library(build, archs=arch)
    return load_kernel(lib)


def load_kernel(path: str | os.PathLike[str]) -> OutlookKernel:
    """Load ``libvolo_outlook_kernel.so`` (from :func:`build_kernel_library`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"kernel library not found: {path}")
    return OutlookKernel(path)


@dataclass(frozen=True)
class VoloPlan:
    """Launch plan of the VOLO path (mirrors ``volo::VoloPlan``)."""

    tcy: int
    tcx: int
    tiles_y: int
    tiles_x: int
    threads: int
    smem_bytes: int
    p_floats: int


class HostReference:
    """CPU replay of the kernel (same index code), float32 or float16 numpy arrays; for tests without a GPU."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lib = ctypes.CDLL(str(path))
        common = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 11 + [ctypes.c_float]  # ..., out, dtype, sizes, scale
        self._lib.volo_outlook_host_tiled.argtypes = common + [ctypes.c_longlong, ctypes.c_int, ctypes.c_int,
                                                               ctypes.c_void_p]
        self._lib.volo_outlook_host_tiled.restype = ctypes.c_int
        self._lib.volo_outlook_host_direct.argtypes = common
        self._lib.volo_outlook_host_direct.restype = ctypes.c_int
        fn = self._lib.volo_outlook_host_volo
        fn.argtypes = common + [ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p]
        fn.restype = ctypes.c_int

    def _args(self, v: Any, attn: Any, params: Any) -> tuple[Any, list[Any]]:
        """Contiguous float32 or float16 copies (float16 when ``v`` is float16) and the common C arguments."""
        import numpy as np

        dtype = np.float16 if np.asarray(v).dtype == np.float16 else np.float32
        v = np.ascontiguousarray(v, dtype=dtype)
        attn = np.ascontiguousarray(attn, dtype=dtype)
        out = np.zeros_like(v)
        b, hh, ww, c = v.shape
        args = [v.ctypes.data, attn.ctypes.data, out.ctypes.data, int(dtype == np.float16), b, hh, ww, c,
                attn.shape[1], attn.shape[2], params.kernel_size, params.padding, params.stride, params.num_heads,
                float(params.scale)]
        return (v, attn, out), args

    def tiled(self, v: Any, attn: Any, params: Any, smem_budget: int = 48 * 1024, max_cells: int = 8,
              vec: int = 1) -> tuple[Any, tuple[int, int]]:
        """Tiled algorithm of the CUDA kernel (float32 or float16 arrays, smem sized for the dtype);
        returns (out, (cells_y, cells_x) per tile)."""
        import numpy as np

        keep, args = self._args(v, attn, params)
        plan = np.zeros(2, dtype=np.int32)
        code = self._lib.volo_outlook_host_tiled(*args, smem_budget, max_cells, vec, plan.ctypes.data)
        if code != 0:
            raise ValueError(f"host reference rejected the arguments (code {code})")
        return keep[2], (int(plan[0]), int(plan[1]))

    def volo(self, v: Any, attn: Any, params: Any, max_cells: int = 0, smem_budget: int = 0) -> tuple[Any, VoloPlan]:
        """VOLO path of the launcher (k=3, s=2, pad=1, head dim 32) on float32 or float16 numpy arrays.

        FP16 is replayed like the GPU: inputs converted to float at staging, output rounded to half.
        ``max_cells`` / ``smem_budget`` 0 = the launcher's limits. Returns (out, plan).
        """
        import numpy as np

        keep, args = self._args(v, attn, params)
        plan = np.zeros(7, dtype=np.int32)
        code = self._lib.volo_outlook_host_volo(*args, max_cells, smem_budget, plan.ctypes.data)
        out = keep[2]
        if code != 0:
            raise ValueError(f"host reference (VOLO path) rejected the arguments (code {code})")
        return out, VoloPlan(*(int(x) for x in plan))

    def direct(self, v: Any, attn: Any, params: Any) -> Any:
        """Direct algorithm of the generic kernel (float32 or float16 arrays)."""
        keep, args = self._args(v, attn, params)
        if self._lib.volo_outlook_host_direct(*args) != 0:
            raise ValueError("host reference rejected the arguments")
        return keep[2]


def build_host_reference(build_dir: str | os.PathLike[str]) -> Path:
    """Compile the CPU replay with the host C++ compiler only (no CUDA needed); return the .so path."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (g++, c++, clang++ or $CXX)")
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    out = build / HOSTREF_LIB
    src = plugin_source_dir() / "outlookAttentionHostRef.cpp"
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(src), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NativeBuildError(f"host reference build failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return out


if __name__ == "__main__":  # pragma: no cover - manual helper
    print(build_kernel_library(sys.argv[1] if len(sys.argv) > 1 else "build/outlook"))
