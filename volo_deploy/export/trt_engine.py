"""TensorRT engine building: the ``trtexec`` line, the target build script, the plugin library,
and the engine build through the Python API.

Every engine is built from a **strongly typed** network: the ONNX tensor types decide the
precision (FP32 ONNX, FP16 ONNX from :func:`volo_deploy.export.trt_surgery.to_fp16`, or a Q/DQ
ONNX for INT8). TensorRT 11 only has strongly typed networks (no kFP16/kINT8 builder flags, no
calibrators); TensorRT 10.x (>= 10.0, JetPack 6's 10.3 included) supports them through
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` / ``trtexec --stronglyTyped``. One path, one
``trtexec`` line for every target. FP32 engines are built without TF32 (``--noTF32``) so that
they match PyTorch FP32 within the FP32 tolerance.

``tensorrt`` is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volo_deploy.errors import BackendUnavailable, ExportError
from volo_deploy.export.onnx_graph import INPUT_NAME
from volo_deploy.export.trt_surgery import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
from volo_deploy.plugins_native import PLUGIN_LIB, NativeBuildError, build_kernel_library, plugin_source_dir

MIN_TENSORRT = (10, 0)  # IPluginV3 + getCreators; JetPack 6 ships 10.3, JetPack 5 ships 8.5 (no IPluginV3)
TOO_OLD = ("TensorRT {found} is too old for the outlook-attention plugin (IPluginV3, TensorRT >= 10.0): "
           "JetPack 5 (TensorRT 8.5) is not supported, use JetPack 6 (TensorRT 10.3) or JetPack 7 (TensorRT 10.13+)")
PLUGIN_SOURCE_PATTERNS = ("*.cu", "*.cuh", "*.h", "*.cpp", "CMakeLists.txt", "README.md", "tests/*.cpp")
SCRIPT_NAME = "build_engine.sh"
PLUGIN_SRC_DIR = "plugin_src"


@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimization profile over the batch dimension (all equal for a fixed-batch ONNX)."""

    min: int
    opt: int
    max: int
    dynamic: bool

    def shape(self, batch: int, img_size: int) -> str:
        return f"{INPUT_NAME}:{batch}x3x{img_size}x{img_size}"


def trtexec_command(
    onnx_file: str,
    plugin: str,
    engine: str,
    profile: BatchProfile,
    img_size: int,
    precision: str,
    workspace_mib: int | None = None,
    timing_cache: str | None = None,
    trtexec: str = "trtexec",
) -> list[str]:
    """The ``trtexec`` argument list equivalent to :func:`build_engine` (same network, same profile).

    Valid for TensorRT 10.x and 11.x: precision comes from the ONNX types (``--stronglyTyped``, a no-op
    in 11.x); never ``--fp16``/``--int8``/``--best``, which TensorRT 11 removed.
    """
    cmd = [trtexec, f"--onnx={onnx_file}", f"--dynamicPlugins={dlopen_path(plugin)}"]
    if profile.dynamic:  # trtexec refuses shape flags for a static-shape model
        cmd += [f"--minShapes={profile.shape(profile.min, img_size)}", f"--optShapes={profile.shape(profile.opt, img_size)}",
                f"--maxShapes={profile.shape(profile.max, img_size)}"]
    cmd += [f"--saveEngine={engine}", "--stronglyTyped"]
    if precision == "fp32":
        cmd.append("--noTF32")
    if workspace_mib:
        cmd.append(f"--memPoolSize=workspace:{workspace_mib}M")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


def dlopen_path(plugin: str | Path) -> str:
    """``plugin`` as dlopen finds it: a bare file name gets ``./`` (dlopen searches only the library
    path for names without a slash, never the current folder)."""
    text = str(plugin)
    return text if "/" in text else f"./{text}"


#: ``trtexec`` timing flags that TensorRT 11's trtexec reports as deprecated (spin-wait and no
#: host<->device copies are what it does by default there); given to TensorRT 10 only.
TRT10_TIMING_FLAGS = ("--useSpinWait", "--noDataTransfers")


def bench_command(engine: str, plugin: str, profile: BatchProfile, img_size: int, batch: int | None = None,
                  warmup_ms: int = 500, iterations: int = 200, trtexec: str = "trtexec",
                  trt_major: int | None = 10) -> list[str]:
    """``trtexec --loadEngine`` timing line for TensorRT ``trt_major`` (None: without the version-specific
    flags): warm-up, fixed iteration count, median/p90/p99, no host<->device copies in the timed loop."""
    cmd = [trtexec, f"--loadEngine={engine}", f"--dynamicPlugins={dlopen_path(plugin)}"]
    if profile.dynamic:
        cmd.append(f"--shapes={profile.shape(batch or profile.opt, img_size)}")
    cmd += [f"--warmUp={warmup_ms}", f"--iterations={iterations}", "--duration=0", "--percentile=50,90,99"]
    if trt_major is not None and trt_major < 11:
        cmd += list(TRT10_TIMING_FLAGS)
    return cmd


def copy_plugin_sources(dest: Path) -> list[Path]:
    """Copy the plugin sources (kernel, IPluginV3 wrapper, CMake, README, self-test) under ``dest``."""
    src = plugin_source_dir()
    files = sorted({p for pat in PLUGIN_SOURCE_PATTERNS for p in src.glob(pat) if p.is_file()})
    if not any(p.name == "CMakeLists.txt" for p in files):
        raise ExportError(f"plugin sources not found in {src} (CMakeLists.txt missing)")
    out = []
    for p in files:
        rel = p.relative_to(src)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest / rel)
        out.append(dest / rel)
    return out


# Shell snippet: $TRTEXEC from the environment, PATH, $TENSORRT_ROOT/bin or JetPack's /usr/src/tensorrt/bin.
FIND_TRTEXEC = r"""TRTEXEC="${TRTEXEC:-}"
if [[ -z "$TRTEXEC" ]]; then
  if command -v trtexec >/dev/null 2>&1; then
    TRTEXEC="$(command -v trtexec)"
  elif [[ -n "${TENSORRT_ROOT:-}" && -x "${TENSORRT_ROOT}/bin/trtexec" ]]; then
    TRTEXEC="${TENSORRT_ROOT}/bin/trtexec"
  elif [[ -x /usr/src/tensorrt/bin/trtexec ]]; then
    TRTEXEC=/usr/src/tensorrt/bin/trtexec
  else
    echo "error: trtexec not found (PATH, \$TENSORRT_ROOT/bin, /usr/src/tensorrt/bin); set TRTEXEC=/path/to/trtexec" >&2
    exit 1
  fi
fi
"""

_SCRIPT = r"""#!/usr/bin/env bash
# Build the TensorRT engine of {model} ({precision}) on the target GPU machine (x86_64 or Jetson).
# Written by volo_deploy {version} (volo-export --backend trt --emit-only); run it from anywhere:
#   ./{script}                      # detect the GPU architecture, build the plugin, run trtexec
#   CUDA_ARCH=87 ./{script}         # Jetson Orin (sm_87); 110 = Thor, 90 = H100, 89 = L4/Ada ...
#   TENSORRT_ROOT=/opt/TensorRT-10.13.0 ./{script}     # TensorRT tarball (headers + trtexec)
#   TRTEXEC=/usr/src/tensorrt/bin/trtexec ./{script}
# Needs: CUDA toolkit (nvcc) >= 11.8, CMake >= 3.18, TensorRT >= 10.0 (headers and trtexec).
set -euo pipefail

HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd "$HERE"
BUILD_DIR="${{BUILD_DIR:-$HERE/build_plugin}}"

if [[ -z "${{CUDA_ARCH:-}}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    CUDA_ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')" || CUDA_ARCH=""
  fi
fi
if [[ -z "${{CUDA_ARCH:-}}" && -r /proc/device-tree/compatible ]]; then
  compat="$(tr '\0' '\n' < /proc/device-tree/compatible)"
  case "$compat" in
    *tegra264*) CUDA_ARCH=110 ;;  # Jetson Thor
    *tegra234*) CUDA_ARCH=87 ;;   # Jetson Orin
    *tegra194*) CUDA_ARCH=72 ;;   # Jetson Xavier (needs CUDA <= 12)
  esac
fi
if [[ -z "${{CUDA_ARCH:-}}" ]]; then
  echo "error: cannot detect the GPU architecture; set CUDA_ARCH (87 Orin, 110 Thor, 90 H100, 86 A10/RTX 30)" >&2
  exit 1
fi

{find_trtexec}
# TensorRT version from the headers (NvInferVersion.h) or trtexec's banner; < 10 has no IPluginV3.
trt_major=""
trt_inc=""
for inc in "${{TENSORRT_ROOT:+$TENSORRT_ROOT/include}}" "${{TENSORRT_INCLUDE_DIR:-}}" /usr/include/aarch64-linux-gnu \
           /usr/include/x86_64-linux-gnu /usr/local/tensorrt/include /usr/include; do
  if [[ -n "$inc" && -f "$inc/NvInferVersion.h" ]]; then
    trt_major="$(sed -nE 's/^#define (NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) +([0-9]+).*/\2/p' "$inc/NvInferVersion.h" | head -n 1)"
    trt_minor="$(sed -nE 's/^#define (NV_TENSORRT_MINOR|TRT_MINOR_ENTERPRISE) +([0-9]+).*/\2/p' "$inc/NvInferVersion.h" | head -n 1)"
    trt_found="TensorRT $trt_major.${{trt_minor:-?}} ($inc/NvInferVersion.h)"
    trt_inc="$inc"
    break
  fi
done
if [[ -z "$trt_major" ]]; then
  banner="$("$TRTEXEC" --help 2>&1 | sed -nE 's/.*TensorRT v([0-9]+).*/\1/p' | head -n 1)" || banner=""
  if [[ -n "$banner" ]]; then  # v8503 = 8.5.3, v100300 = 10.3.0
    if (( banner >= 100000 )); then trt_major=$(( banner / 10000 )); else trt_major=$(( banner / 1000 )); fi
    trt_found="TensorRT $trt_major (trtexec v$banner)"
  fi
fi
if [[ -n "$trt_major" ]] && (( trt_major < 10 )); then
  echo "error: $trt_found is too old: the {plugin_name} plugin needs TensorRT >= 10.0 (IPluginV3); JetPack 5 is not supported, use JetPack 6 (TensorRT 10.3) or 7" >&2
  exit 1
fi
echo "== ${{trt_found:-TensorRT version not detected (no NvInferVersion.h, no trtexec banner)}}"

cmake_args=(-S "$HERE/{src_dir}" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
            "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" -DVOLO_WERROR=OFF -DVOLO_BUILD_TESTS=OFF)
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cmake_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)   # JetPack: CUDA is not on PATH
fi
if [[ -n "${{TENSORRT_ROOT:-}}" ]]; then
  cmake_args+=("-DTENSORRT_ROOT=$TENSORRT_ROOT")
fi
echo "== building the {plugin_name} plugin for sm_$CUDA_ARCH"
cmake "${{cmake_args[@]}}"
cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"
if [[ ! -f "$BUILD_DIR/{plugin_lib}" ]]; then
  echo "error: $BUILD_DIR/{plugin_lib} was not built: TensorRT >= 10 headers (NvInfer.h) not found? see CMake's 'plugin skipped' line above; set TENSORRT_ROOT" >&2
  exit 1
fi
cp "$BUILD_DIR/{plugin_lib}" "$HERE/{plugin_lib}"

echo "== building {engine} with $TRTEXEC"
{trtexec_line}
{post_build}echo "== wrote $HERE/{engine}; load it with $HERE/{plugin_lib} (volo-bench --backend trt, or trtexec --loadEngine)"
"""


def build_script(
    model_name: str,
    precision: str,
    onnx_file: str,
    engine: str,
    profile: BatchProfile,
    img_size: int,
    workspace_mib: int | None,
    post_build: str = "",
    more_engines: tuple[tuple[str, str, BatchProfile], ...] = (),
) -> tuple[str, list[str]]:
    """``build_engine.sh`` text for the target, and the ``trtexec`` line it runs (relative paths).

    ``more_engines``: (onnx, engine, profile) built after the first with the same precision and
    workspace (the bundle's DeepStream/Triton graph). ``post_build``: shell lines run after the engines are written."""
    from volo_deploy import __version__

    cmd = trtexec_command(onnx_file, PLUGIN_LIB, engine, profile, img_size, precision, workspace_mib)
    builds = [(engine, cmd)] + [(e, trtexec_command(o, PLUGIN_LIB, e, p, img_size, precision, workspace_mib))
                                for o, e, p in more_engines]
    line = "\n".join(f'rm -f "$HERE/{e}"\n"$TRTEXEC" ' + " ".join(shlex.quote(a) for a in c[1:]) for e, c in builds)
    text = _SCRIPT.format(
        model=model_name, precision=precision, version=__version__, script=SCRIPT_NAME, src_dir=PLUGIN_SRC_DIR,
        plugin_name=f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME} v{PLUGIN_VERSION}", plugin_lib=PLUGIN_LIB, engine=engine,
        trtexec_line=line, post_build=post_build, find_trtexec=FIND_TRTEXEC,
    )
    return text, cmd


# ---- plugin library -------------------------------------------------------------------------------


def _cache_root() -> Path:
    from volo_deploy.cache import cache_dir

    return cache_dir()


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0, 26)``; raises ValueError when it does not start with a number."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", str(text))
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(x) for x in m.group(1).split("."))


def header_version(include: Path) -> tuple[int, int, int] | None:
    """TensorRT version of the headers in ``include`` (``NvInferVersion.h``: 8.x-10.x and 10.11+ spellings)."""
    path = Path(include) / "NvInferVersion.h"
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(rf"#define\s+NV_TENSORRT_{part}\s+(\d+)", text)
             or re.search(rf"#define\s+TRT_{part}_(?:ENTERPRISE|RTX)\s+(\d+)", text))
        if m is None:
            return None
        parts.append(int(m.group(1)))
    return parts[0], parts[1], parts[2]


def check_supported(version: tuple[int, ...] | str) -> None:
    """Raise :class:`BackendUnavailable` (one line) for a TensorRT older than :data:`MIN_TENSORRT`."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    if v[:2] < MIN_TENSORRT:
        raise BackendUnavailable(TOO_OLD.format(found=".".join(str(x) for x in v)))


def tensorrt_include_dirs() -> list[Path]:
    """Directories holding ``NvInfer.h``, in order: $TENSORRT_INCLUDE_DIR, $TENSORRT_ROOT/include, system paths."""
    cands = [os.environ.get("TENSORRT_INCLUDE_DIR")]
    if os.environ.get("TENSORRT_ROOT"):
        cands.append(os.path.join(os.environ["TENSORRT_ROOT"], "include"))
    cands += ["/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/local/tensorrt/include",
              "/usr/include"]
    out: list[Path] = []
    for c in cands:
        if c and (Path(c) / "NvInfer.h").is_file() and Path(c) not in out:
            out.append(Path(c))
    return out


def find_tensorrt_include(runtime: tuple[int, ...] | None = None) -> Path | None:
    """The TensorRT include directory for a plugin that the ``runtime`` TensorRT will load.

    Without ``runtime``: the first found. With it: the first whose ``NvInferVersion.h`` has the
    runtime's major.minor, else the first with its major; headers of another major are refused
    (:class:`BackendUnavailable`): a plugin built against them has another ABI, and its
    ``libnvinfer.so.N`` would be a second TensorRT in the process.
    """
    dirs = tensorrt_include_dirs()
    if runtime is None or not dirs:
        return dirs[0] if dirs else None
    versions = {d: header_version(d) for d in dirs}
    for want in (tuple(runtime[:2]), tuple(runtime[:1])):
        for d, v in versions.items():
            if v is not None and v[: len(want)] == want:
                return d
    found = ", ".join(f"{d} ({'.'.join(map(str, v)) if v else 'version unknown'})" for d, v in versions.items())
    raise BackendUnavailable(
        f"TensorRT headers do not match the installed tensorrt {'.'.join(map(str, runtime))}: found {found}; "
        f"set TENSORRT_ROOT / TENSORRT_INCLUDE_DIR to TensorRT {runtime[0]}.x headers, or pass --plugin PATH "
        f"(a libvolo_outlook_plugin.so built for TensorRT {runtime[0]})")


def linked_nvinfer_major(library: Path) -> int | None:
    """Major N of the ``libnvinfer.so.N`` a shared library names (its DT_NEEDED string), None if none."""
    found = re.findall(rb"libnvinfer\.so\.(\d+)\x00", Path(library).read_bytes())
    return int(found[0]) if found else None


def check_prebuilt(prebuilt: Path, runtime: tuple[int, ...] | None) -> Path:
    """``--plugin``: the file exists and links the runtime's libnvinfer major (where both are known)."""
    if not Path(prebuilt).is_file():
        raise ExportError(f"--plugin {prebuilt}: no such file")
    major = linked_nvinfer_major(prebuilt)
    if runtime is not None and major is not None and major != runtime[0]:
        raise BackendUnavailable(f"--plugin {prebuilt}: links libnvinfer.so.{major}, but the installed tensorrt is "
                                 f"{'.'.join(map(str, runtime))}: rebuild it against TensorRT {runtime[0]} headers")
    return Path(prebuilt)


def plugin_library(prebuilt: Path | None, cuda_arch: str, runtime: str | None = None) -> Path:
    """``prebuilt`` (checked) or the plugin built from ``plugins/outlook_attention`` into a cache folder.

    ``runtime``: the ``tensorrt`` module's version; the headers must have its major version (see
    :func:`find_tensorrt_include`). The cache key covers the plugin sources, the TensorRT headers'
    version file and ``cuda_arch``.
    """
    rt = parse_version(runtime) if runtime else None
    if prebuilt is not None:
        return check_prebuilt(prebuilt, rt)
    include = find_tensorrt_include(rt)
    if include is None:
        raise BackendUnavailable(
            "TensorRT headers (NvInfer.h) not found, so the outlook-attention plugin cannot be built here: "
            "pass --plugin PATH (a libvolo_outlook_plugin.so built for this TensorRT), or set TENSORRT_ROOT / "
            "TENSORRT_INCLUDE_DIR (the pip wheels ship no headers)"
        )
    found = header_version(include)
    if found is not None:
        check_supported(found)
    return _build_cached(include, cuda_arch)


def _build_cached(include: Path, cuda_arch: str) -> Path:
    h = hashlib.sha256()
    src = plugin_source_dir()
    for p in sorted(src.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    version_h = include / "NvInferVersion.h"
    h.update(version_h.read_bytes() if version_h.is_file() else str(include).encode())
    h.update(cuda_arch.encode())
    build = _cache_root() / "outlook_plugin" / h.hexdigest()[:16]
    lib = build / PLUGIN_LIB
    if lib.is_file():
        return lib
    try:
        build_kernel_library(build, archs=cuda_arch, tensorrt_include=include)
    except NativeBuildError as exc:
        raise ExportError(f"building the outlook-attention plugin failed: {exc}") from None
    if not lib.is_file():
        raise ExportError(f"plugin build finished but {lib} is missing (CMake skipped the plugin; see its output)")
    return lib


# ---- engine build (needs TensorRT and a GPU) -----------------------------------------------------


def trt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


def load_plugin(path: Path) -> Any:
    """Load the plugin library into TensorRT's registry (once per process); check our creator is there."""
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None:
        return None  # already loaded in this process (e.g. the staged copy during export)
    handle = registry.load_library(str(Path(path).resolve()))  # absolute: dlopen skips the current folder
    if handle is None:
        raise ExportError(f"TensorRT could not load the plugin library {path}")
    creator = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise ExportError(f"{path} does not register {PLUGIN_NAMESPACE}::{PLUGIN_NAME} v{PLUGIN_VERSION}")
    return handle


def build_engine(
    onnx_path: Path,
    plugin: Path,
    engine_path: Path,
    profile: BatchProfile,
    img_size: int,
    precision: str,
    workspace_mib: int | None = None,
    timing_cache: Path | None = None,
) -> dict[str, Any]:
    """Parse ``onnx_path`` (plugin form) and write the serialized engine to ``engine_path`` atomically."""
    import tensorrt as trt

    from volo_deploy import artifacts

    logger = trt.Logger(trt.Logger.WARNING)
    load_plugin(plugin)
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT ONNX parser failed on {onnx_path.name}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if profile.dynamic:
        prof = builder.create_optimization_profile()
        shapes = [(b, 3, img_size, img_size) for b in (profile.min, profile.opt, profile.max)]
        prof.set_shape(INPUT_NAME, *shapes)
        config.add_optimization_profile(prof)
    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} (see the log above)")
    artifacts.atomic_write_bytes(engine_path, bytes(plan))
    if cache is not None:
        artifacts.atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    return {"strongly_typed": strongly is not None, "layers": network.num_layers}


def gpu_info() -> dict[str, Any]:
    """GPU name, SM and CUDA runtime version as torch sees them."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "sm": f"{major}{minor}",
        "cuda_runtime": torch.version.cuda,
    }
