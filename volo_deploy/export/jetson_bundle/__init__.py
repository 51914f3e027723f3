"""The ``volo-export --backend trt --emit-only`` bundle: everything a target machine (a Jetson or any
TensorRT >= 10 GPU box) needs to build the engine and classify images, without torch or volo_deploy.

Layout (``<m>`` = model name, ``<p>`` = precision)::

    <m>_<p>_trt.onnx            plugin-form ONNX (strongly typed: precision is in the tensor types)
    plugin_src/                 outlook-attention plugin sources (CMake)
    build_engine.sh             plugin build + trtexec -> <m>_<p>.engine (+ a copy for Triton,
                                + libvolo_outlook_autoload.so from deploy_src/ for DeepStream/Triton)
    bench_engine.sh             trtexec timing of the built engine
    infer.py, preprocess.py     top-5 with tensorrt + numpy + Pillow; preprocess.py is generated
                                from volo_deploy/data/transforms.py (same source, same parameters)
    check_engine.py, check/     the built engine vs FP32 PyTorch logits of reference inputs (run last
                                by build_engine.sh; exits 1 past the export's tolerance)
    <m>_<p>_ds_trt.onnx         DeepStream/Triton graph (1/std folded in, softmax out; trt_deepstream)
    labels.txt, bundle.json     class names (one per line), what infer.py needs to know
    deepstream/                 nvinfer config (classifier) + its ';'-separated labels file
    triton/<m>/config.pbtxt     tensorrt_plan model; the engine goes to triton/<m>/1/model.plan
    README.md                   how to run each of them on the target
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from volo_deploy.data.transforms import EvalTransform
from volo_deploy.export import trt_engine
from volo_deploy.export.jetson_bundle import configs
from volo_deploy.export.trt_deepstream import PROBS_NAME, deepstream_normalization, to_deepstream_graph
from volo_deploy.plugins_native import PLUGIN_LIB

TEMPLATES = Path(__file__).resolve().parent / "templates"
BENCH_NAME = "bench_engine.sh"
AUTOLOAD_SRC = "deploy_src/volo_outlook_autoload.cpp"
AUTOLOAD_LIB = "libvolo_outlook_autoload.so"  # registers the plugin when dlopen'ed / LD_PRELOADed
REFERENCE_FILE = "check/reference.npz"  # check_engine.py's inputs and FP32 PyTorch logits
CHECK_IMAGES = 8  # reference images at most (the export's validation images)

_BENCH = r"""#!/usr/bin/env bash
# Time {engine} with trtexec (TensorRT 10.x and 11.x flags). Build it first: ./build_engine.sh
#   ./{script}{batch_doc}
# Prints trtexec's summary: throughput, latency min/mean/median/p90/p99 (GPU compute without copies).
# On a Jetson, lock the clocks first for stable figures: sudo nvpmodel -m 0 && sudo jetson_clocks
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd "$HERE"
{batch_env}{find_trtexec}
if [[ ! -f "$HERE/{engine}" || ! -f "$HERE/{plugin_lib}" ]]; then
  echo "error: $HERE/{engine} or $HERE/{plugin_lib} missing: run ./build_engine.sh first" >&2
  exit 1
fi
# {trt10_flags}: TensorRT 10 only (trtexec 11 deprecates them; its defaults do the same)
extra=()
banner="$("$TRTEXEC" --help 2>&1 | sed -nE 's/.*TensorRT v([0-9]+).*/\1/p' | head -n 1)" || banner=""
if [[ -z "$banner" ]] || (( banner < 110000 )); then extra=({trt10_flags}); fi
{bench_line} "${{extra[@]}}"
"""


# After the engine: a copy for Triton, and the self-registering loader DeepStream and Triton need.
_POST_BUILD = r"""mkdir -p "$HERE/{triton_dir}/1" && cp "$HERE/{triton_engine}" "$HERE/{triton_dir}/1/model.plan"
echo "== copied {triton_engine} to $HERE/{triton_dir}/1/model.plan"
# Optional from here on: the engine is written, nothing below makes this script fail.
nvinfer_dir=""
for d in "${{TENSORRT_ROOT:+$TENSORRT_ROOT/lib}}" /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/tensorrt/lib; do
  if [[ -n "$d" && -e "$d/libnvinfer.so" ]]; then nvinfer_dir="$d"; break; fi
done
cuda_inc=""  # NvInferRuntime.h includes cuda_runtime_api.h
nvcc_path="$(command -v nvcc 2>/dev/null || true)"
for c in "${{CUDA_HOME:+$CUDA_HOME/include}}" "${{CUDA_PATH:+$CUDA_PATH/include}}" \
         "${{nvcc_path:+$(dirname "$(dirname "$nvcc_path")")/include}}" /usr/local/cuda/include /usr/include; do
  if [[ -n "$c" && -f "$c/cuda_runtime_api.h" ]]; then cuda_inc="$c"; break; fi
done
if [[ -n "$trt_inc" && -n "$nvinfer_dir" && -n "$cuda_inc" ]] && command -v g++ >/dev/null 2>&1; then
  if g++ -std=c++17 -O2 -shared -fPIC -isystem "$trt_inc" -isystem "$cuda_inc" \
      "$HERE/{autoload_src}" -o "$HERE/{autoload}" -L"$nvinfer_dir" -lnvinfer -ldl; then
    echo "== built $HERE/{autoload} (DeepStream custom-lib-path, Triton LD_PRELOAD)"
  else
    echo "warning: compiling {autoload} failed (see above); DeepStream and Triton need it, the engine does not" >&2
  fi
else
  echo "warning: {autoload} not built (needs g++, NvInferRuntime.h, libnvinfer.so and CUDA's cuda_runtime_api.h: set CUDA_HOME); DeepStream and Triton need it" >&2
fi
# Last: the engine against the FP32 PyTorch logits stored at export (fails the build past tolerance).
if [[ "${{VOLO_SKIP_CHECK:-0}}" == 1 ]]; then
  echo "warning: check_engine.py skipped (VOLO_SKIP_CHECK=1)" >&2
elif command -v python3 >/dev/null 2>&1 && python3 -c "import tensorrt, numpy" >/dev/null 2>&1; then
  echo "== checking {engine} on the reference images (check_engine.py)"
  if ! python3 "$HERE/check_engine.py"; then
    echo "error: $HERE/{engine} is past the export's tolerance (check_engine.py above); do not deploy it" >&2
    exit 1
  fi
else
  echo "warning: check_engine.py not run (needs python3 with tensorrt and numpy); run it before deploying" >&2
fi
"""


def _bench_script(engine: str, profile: trt_engine.BatchProfile, img_size: int) -> str:
    cmd = trt_engine.bench_command(engine, PLUGIN_LIB, profile, img_size, batch=profile.min, trt_major=None)
    shapes = f'"--shapes={profile.shape(0, img_size).replace(":0x", ":${BATCH}x")}"'
    args = [shapes if a.startswith("--shapes=") else a for a in cmd[1:]]
    if profile.dynamic:
        doc = f"                # batch {profile.min}\n#   BATCH=8 ./{BENCH_NAME}        # batch {profile.min}..{profile.max}"
        env = f'BATCH="${{BATCH:-{profile.min}}}"\n'
    else:
        doc, env = f"                # the engine's fixed batch {profile.min}", ""
    return _BENCH.format(engine=engine, script=BENCH_NAME, batch_doc=doc, batch_env=env,
                         find_trtexec=trt_engine.FIND_TRTEXEC, plugin_lib=PLUGIN_LIB,
                         trt10_flags=" ".join(trt_engine.TRT10_TIMING_FLAGS),
                         bench_line='"$TRTEXEC" ' + " ".join(args))


def _io_types(onnx_path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    return {"input": inp.name, "input_type": inp.type.tensor_type.elem_type,
            "output": out.name, "output_type": out.type.tensor_type.elem_type}


def _write(staged: Path, rel: str, text: str, executable: bool = False) -> str:
    path = staged / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return rel


#: Why an ``--emit-only`` export is not validated here (the manifest's ``validation.skipped``).
NOT_VALIDATED = ("--emit-only: no engine is built here; run build_engine.sh on the target, "
                 "then check the engine there (infer.py, or volo-bench --backend trt)")


def write_bundle(staged: Path, cfg, precision: str, onnx_name: str, profile: trt_engine.BatchProfile,
                 reference: tuple[Any, Any], tolerance: dict[str, float], workspace_mib: int | None = None,
                 target_trt: str | None = None,
                 labels: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """Write the bundle next to the staged ``onnx_name``; returns (files written, relative to ``staged``;
    manifest details). ``reference``: (inputs, FP32 PyTorch logits) for ``check_engine.py``, which
    applies ``tolerance`` (the export's limits, :class:`~volo_deploy.export.validate.Tolerance` fields)."""
    from volo_deploy import __version__

    name, img = cfg.name, cfg.img_size
    engine, ds_engine = f"{name}_{precision}.engine", f"{name}_{precision}_ds.engine"
    io = _io_types(staged / onnx_name)
    t = EvalTransform.for_config(cfg)
    triton_dir = f"triton/{name}"
    ds_onnx, ds_how = _write_deepstream_onnx(staged, onnx_name, t.std)
    files = [str(p.relative_to(staged)) for p in
             trt_engine.copy_plugin_sources(staged / trt_engine.PLUGIN_SRC_DIR)] + [ds_onnx]
    post = _POST_BUILD.format(triton_dir=triton_dir, triton_engine=ds_engine, autoload_src=AUTOLOAD_SRC,
                              autoload=AUTOLOAD_LIB, engine=engine)
    text, cmd = trt_engine.build_script(name, precision, onnx_name, engine, profile, img, workspace_mib, post,
                                        more_engines=((ds_onnx, ds_engine, serving_profile(profile)),))
    files.append(_write(staged, trt_engine.SCRIPT_NAME, text, executable=True))
    files.append(_write(staged, BENCH_NAME, _bench_script(engine, profile, img), executable=True))
    files.append(_write(staged, AUTOLOAD_SRC, (TEMPLATES / "volo_outlook_autoload.cpp").read_text()))
    files.append(_write(staged, "infer.py", (TEMPLATES / "infer.py").read_text(), executable=True))
    files.append(_write(staged, "check_engine.py", (TEMPLATES / "check_engine.py").read_text(), executable=True))
    files.append(_write_reference(staged, *reference))
    files.append(_write(staged, "preprocess.py", configs.preprocess_source(name, t)))
    labels = configs.class_labels(cfg.num_classes, labels)
    files.append(_write(staged, "labels.txt", "\n".join(labels) + "\n"))
    files.append(_write(staged, "deepstream/labels.txt", ";".join(labels) + "\n"))
    files.append(_write(staged, "deepstream/config_infer_primary.txt", configs.deepstream_config(
        name, precision, ds_onnx, ds_engine, AUTOLOAD_LIB, "labels.txt", t, profile.min, PROBS_NAME)))
    files.append(_write(staged, f"{triton_dir}/config.pbtxt", configs.triton_config(
        name, io["input"], io["input_type"], PROBS_NAME, io["output_type"], img, cfg.num_classes,
        serving_profile(profile))))
    meta = {"model": name, "precision": precision, "onnx_file": onnx_name, "engine_file": engine,
            "plugin_lib": PLUGIN_LIB, "labels_file": "labels.txt", "input": io["input"], "output": io["output"],
            "check": {"file": REFERENCE_FILE, "images": int(len(reference[0])), "tolerance": tolerance},
            "deepstream_onnx": ds_onnx, "deepstream_engine": ds_engine, "deepstream_std": ds_how,
            "img_size": img, "num_classes": cfg.num_classes, "target_trt": target_trt, "volo_deploy": __version__,
            "batch_profile": dataclasses.asdict(profile)}
    files.append(_write(staged, "bundle.json", json.dumps(meta, indent=2) + "\n"))
    files.append(_write(staged, "README.md", _readme(meta, t, triton_dir)))
    return files, {
        "emit_only": True,
        "engine_file": engine,
        "trtexec": " ".join(cmd),
        "bundle": {"files": len(files) + 1, "target_trt": target_trt},
    }


def _write_reference(staged: Path, inputs, logits) -> str:
    """``check/reference.npz``: preprocessed float32 inputs and their FP32 PyTorch logits."""
    import numpy as np

    (staged / REFERENCE_FILE).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(staged / REFERENCE_FILE, inputs=np.asarray(inputs, np.float32),
                        logits=np.asarray(logits, np.float32))
    return REFERENCE_FILE


def serving_profile(profile: trt_engine.BatchProfile) -> trt_engine.BatchProfile:
    """Profile of the DeepStream/Triton engine: a dynamic one starts at batch 1, since Triton's dynamic
    batcher and DeepStream send whatever number of requests or frames are ready (``--min-batch``
    applies to the engine ``infer.py`` and ``volo-bench`` run)."""
    return dataclasses.replace(profile, min=1) if profile.dynamic else profile


def _write_deepstream_onnx(staged: Path, onnx_name: str, std) -> tuple[str, str]:
    """``<onnx>_ds``: the graph DeepStream and Triton run (1/std folded in, softmax out); (file, how)."""
    import onnx

    proto, how = to_deepstream_graph(onnx.load(str(staged / onnx_name)), std)
    name = onnx_name.replace("_trt.onnx", "_ds_trt.onnx")
    onnx.save_model(proto, str(staged / name))
    return name, how


def _readme(meta: dict[str, Any], t: EvalTransform, triton_dir: str) -> str:
    _, _, err = configs.deepstream_normalization(t.mean, t.std)
    scale, offsets = deepstream_normalization(t.mean)
    return (TEMPLATES / "README.md").read_text().format(
        **meta, triton_dir=triton_dir, scale=scale, offsets=", ".join(f"{o:g}" for o in offsets),
        scale_err=f"{err:.2%}", fidelity=configs.FIDELITY_NOTE, crop_pct=t.crop_pct, resize=t.resize_size, mean=t.mean, std=t.std)
