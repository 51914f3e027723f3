"""TensorRT backend without TensorRT: import safety, clear errors, ``--emit-only`` output.

Tests that need TensorRT and a GPU are marked ``trt`` and skip with the reason."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from volo_deploy.cli.export import main as export_cli
from volo_deploy.plugins_native import plugin_source_dir

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _trt_usable() -> str | None:
    from volo_deploy.backends.tensorrt_backend import TensorRtBackend

    return TensorRtBackend.unavailable_reason()


@pytest.fixture(scope="module")
def demo_ckpt(deterministic_checkpoint) -> Path:
    return deterministic_checkpoint("volo_demo_64")


def test_imports_without_tensorrt_and_registers():
    code = ("import sys; import volo_deploy.backends.tensorrt_backend as t; import volo_deploy.export.trt_engine; "
            "from volo_deploy.backends import get_backend; "
            "assert get_backend('trt') is get_backend('tensorrt') is t.TensorRtBackend; "
            "assert 'tensorrt' not in sys.modules; print(t.TensorRtBackend.unavailable_reason())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if not HAS_TRT:
        assert proc.stdout.strip() == "TensorRT is not installed (pip install tensorrt / JetPack)"


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_fails_clearly(tmp_path, capsys):
    rc = export_cli(["--backend", "trt", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "TensorRT is not installed (pip install tensorrt / JetPack); use --emit-only" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_runner_refuses_without_tensorrt(tmp_path):
    from volo_deploy.backends.tensorrt_backend import TensorRtBackend
    from volo_deploy.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        TensorRtBackend().load(tmp_path / "x.engine")


def test_batch_flags_need_dynamic_batch(tmp_path, capsys):
    rc = export_cli(["--backend", "trt", "--emit-only", "--max-batch", "4", "--output", str(tmp_path)])
    assert rc == 2 and "--max-batch need --dynamic-batch" in capsys.readouterr().err
    rc = export_cli(["--backend", "trt", "--emit-only", "--dynamic-batch", "--min-batch", "8", "--max-batch", "4",
                     "--output", str(tmp_path)])
    assert rc == 2 and "--min-batch <= --opt-batch <= --max-batch" in capsys.readouterr().err


def test_emit_only_int8_keeps_qdq_around_the_plugin(tmp_path, fake_trt_tools):
    """--int8 for TensorRT: the quantizer's symmetric Q/DQ model, then plugin surgery; nothing lost."""
    from volo_deploy.export.trt_surgery import PLUGIN_NAMESPACE

    out = tmp_path / "trt"
    rc = export_cli(["--backend", "trt", "--emit-only", "--int8", "--output", str(out)])  # the trained demo
    assert rc == 0
    manifest = _check_emit_output(out, "volo_demo_64", "int8", tmp_path, fake_trt_tools)
    proto = onnx.load(str(out / "volo_demo_64_int8_trt.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    zero_points = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:  # TensorRT wants symmetric int8: every zero point is int8 and 0
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            zp = onnx.numpy_helper.to_array(zero_points[node.input[2]])
            assert zp.dtype.name == "int8" and not zp.any()
    for node in proto.graph.node:
        if node.op_type == "OutlookAttention":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
            assert {"kernel_size", "padding", "stride", "num_heads", "scale"} <= set(attrs)
    assert manifest["precision"] == "int8"


def _check_emit_output(out: Path, model: str, precision: str, tmp_path: Path, fake_trt_tools) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    onnx_name = f"{model}_{precision}_trt.onnx"
    assert manifest["backend"] == "tensorrt" and manifest["model_file"] == onnx_name
    src = plugin_source_dir()
    want_src = {"CMakeLists.txt", "README.md", "outlookAttentionKernel.cu", "outlookAttentionKernel.h",
                "outlookAttentionPlugin.cpp", "outlookAttentionPlugin.h", "outlookAttentionCommon.cuh"}
    assert {f"plugin_src/{n}" for n in want_src} <= listed
    assert {onnx_name, "build_engine.sh"} <= listed
    for name in listed:
        assert (out / name).is_file(), name
        if name.startswith("plugin_src/"):
            assert (out / name).read_bytes() == (src / name.removeprefix("plugin_src/")).read_bytes()
    assert not list(out.glob(".staging-*")), "staging folder left behind"
    assert "skipped" in manifest["validation"] and "--emit-only" in manifest["validation"]["skipped"]

    proto = onnx.load(str(out / onnx_name))
    onnx.checker.check_model(proto)
    plugins = [n for n in proto.graph.node if n.op_type == "OutlookAttention"]
    assert plugins and len(plugins) == manifest["export"]["plugin_nodes"]
    assert not proto.functions

    script = out / "build_engine.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    trtexec = manifest["export"]["trtexec"]
    args = shlex.split(trtexec)
    assert args[0] == "trtexec" and f"--onnx={onnx_name}" in args
    assert "--dynamicPlugins=./libvolo_outlook_plugin.so" in args and "--stronglyTyped" in args
    assert '"$TRTEXEC" ' + " ".join(shlex.quote(a) for a in args[1:]) in text

    # run the script with stand-ins for cmake and trtexec: it must reach trtexec with exactly those arguments
    env = fake_trt_tools(tmp_path)
    log = tmp_path / "log"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in log.read_text()
    runs = [r.strip("\n").split("\n") for r in (tmp_path / "log.trtexec.all").read_text().split("==")]
    first, ds = [r for r in runs if r[0].startswith("--onnx=")]  # not the version probe (--help)
    assert first == args[1:]  # the engine of infer.py / volo-bench, then the DeepStream/Triton one
    assert ds[0] == f"--onnx={onnx_name.replace('_trt.onnx', '_ds_trt.onnx')}" and "--stronglyTyped" in ds
    assert (out / manifest["export"]["engine_file"]).is_file()
    return manifest


def test_emit_only_demo(demo_ckpt, tmp_path, fake_trt_tools):
    out = tmp_path / "trt"
    rc = export_cli(["--backend", "trt", "--emit-only", "--checkpoint", str(demo_ckpt), "--dynamic-batch",
                     "--max-batch", "16", "--workspace", "2048", "--output", str(out)])
    assert rc == 0
    manifest = _check_emit_output(out, "volo_demo_64", "fp32", tmp_path, fake_trt_tools)
    args = manifest["export"]["trtexec"].split()
    assert "--minShapes=input:1x3x64x64" in args and "--optShapes=input:8x3x64x64" in args
    assert "--maxShapes=input:16x3x64x64" in args and "--saveEngine=volo_demo_64_fp32.engine" in args
    assert "--memPoolSize=workspace:2048M" in args and "--noTF32" in args
    assert manifest["export"]["batch_profile"] == {"min": 1, "opt": 8, "max": 16, "dynamic": True}


@pytest.mark.slow
def test_emit_only_volo_d1_fp16(deterministic_checkpoint, tmp_path, fake_trt_tools):
    ckpt = deterministic_checkpoint("volo_d1_224")
    out = tmp_path / "trt"
    rc = export_cli(["--backend", "trt", "--emit-only", "--fp16", "--checkpoint", str(ckpt), "--output", str(out)])
    assert rc == 0
    manifest = _check_emit_output(out, "volo_d1_224", "fp16", tmp_path, fake_trt_tools)
    args = manifest["export"]["trtexec"].split()
    assert not any(a.startswith(("--minShapes", "--optShapes", "--maxShapes")) for a in args)  # fixed batch 1
    assert "--noTF32" not in args
    proto = onnx.load(str(out / "volo_d1_224_fp16_trt.onnx"))
    assert manifest["export"]["plugin_nodes"] == 4
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kept = set(manifest["export"]["fp32_head_nodes"])  # FP32 weights: head, LayerNorm only
    users = {i: n for n in proto.graph.node for i in n.input}
    for t in proto.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and t.name in users:
            assert users[t.name].name in kept or users[t.name].op_type == "LayerNormalization", t.name
    assert manifest["export"]["portable_validation"]["cosine_min"] > 0.999


@pytest.mark.trt
@pytest.mark.skipif(_trt_usable() is not None, reason=f"needs TensorRT and a CUDA GPU: {_trt_usable()}")
def test_engine_build_and_run_demo(demo_ckpt, tmp_path):
    """Full build: plugin (built or $VOLO_TRT_PLUGIN), engine, validation against PyTorch inside the export."""
    argv = ["--backend", "trt", "--checkpoint", str(demo_ckpt), "--dynamic-batch", "--max-batch", "8",
            "--output", str(tmp_path)]
    if os.environ.get("VOLO_TRT_PLUGIN"):
        argv += ["--plugin", os.environ["VOLO_TRT_PLUGIN"]]
    assert export_cli(argv) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["export"]["plugin_sha256"] and manifest["export"]["tensorrt"]
    assert "max_abs" in manifest["validation"]


def test_trtexec_plugin_is_a_path_dlopen_finds():
    """dlopen searches a bare name only in the library path: every emitted line passes a path."""
    from volo_deploy.export.trt_engine import BatchProfile, bench_command, trtexec_command

    prof = BatchProfile(1, 1, 1, dynamic=False)
    for plugin, want in [("libvolo_outlook_plugin.so", "./libvolo_outlook_plugin.so"),
                         ("build/libvolo_outlook_plugin.so", "build/libvolo_outlook_plugin.so"),
                         ("/opt/p/libvolo_outlook_plugin.so", "/opt/p/libvolo_outlook_plugin.so")]:
        for cmd in (trtexec_command("m.onnx", plugin, "m.engine", prof, 64, "fp16"),
                    bench_command("m.engine", plugin, prof, 64)):
            assert f"--dynamicPlugins={want}" in cmd
            assert not {"--fp16", "--int8", "--best"} & set(cmd)


def test_runner_gets_an_absolute_plugin_path(tmp_path, monkeypatch):
    """An engine named relative to the current folder must not turn into a bare plugin name."""
    import volo_deploy.backends.tensorrt_backend as t

    seen = {}
    monkeypatch.setattr(t.TensorRtBackend, "require", lambda self: None)
    monkeypatch.setattr(t, "TensorRtRunner", lambda engine, plugin: seen.update(engine=engine, plugin=plugin))
    (tmp_path / "libvolo_outlook_plugin.so").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    t.TensorRtBackend().load(Path("m.engine"))
    assert seen["plugin"].is_absolute() and seen["plugin"] == tmp_path.resolve() / "libvolo_outlook_plugin.so"


def test_installed_tensorrt_8_is_refused_with_one_line(monkeypatch):
    import volo_deploy.backends.tensorrt_backend as t
    from volo_deploy.errors import BackendUnavailable
    from volo_deploy.export import trt_engine

    monkeypatch.setattr(t, "_tensorrt_missing", lambda: False)
    monkeypatch.setattr(t, "installed_trt_version", lambda: "8.5.2.2")
    reason = t.TensorRtBackend.unavailable_reason()
    assert reason.startswith("TensorRT 8.5.2.2 is too old") and "JetPack 6" in reason and "\n" not in reason
    with pytest.raises(BackendUnavailable, match="8.5.2.2 is too old"):
        t.TensorRtBackend().load(Path("x.engine"))
    trt_engine.check_supported("10.3.0.30")  # JetPack 6: fine
    trt_engine.check_supported((11, 1, 0))


def test_header_version_spellings(tmp_path):
    from volo_deploy.export.trt_engine import header_version

    (tmp_path / "NvInferVersion.h").write_text("#define NV_TENSORRT_MAJOR 10 //!< x\n#define NV_TENSORRT_MINOR 3\n"
                                               "#define NV_TENSORRT_PATCH 0\n")
    assert header_version(tmp_path) == (10, 3, 0)
    (tmp_path / "NvInferVersion.h").write_text("#define TRT_MAJOR_ENTERPRISE 11\n#define TRT_MINOR_ENTERPRISE 1\n"
                                               "#define TRT_PATCH_ENTERPRISE 0\n"
                                               "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n")
    assert header_version(tmp_path) == (11, 1, 0)
    assert header_version(tmp_path / "missing") is None


def _headers(root: Path, version: tuple[int, int, int]) -> Path:
    root.mkdir(parents=True)
    (root / "NvInfer.h").write_text("// stand-in\n")
    (root / "NvInferVersion.h").write_text("".join(f"#define NV_TENSORRT_{k} {v}\n"
                                                   for k, v in zip(("MAJOR", "MINOR", "PATCH"), version)))
    return root


def test_plugin_headers_must_match_the_runtime_major(tmp_path, monkeypatch):
    """10.x headers next to an 11.x ``tensorrt`` are refused; matching headers are preferred when both exist."""
    from volo_deploy.errors import BackendUnavailable
    from volo_deploy.export import trt_engine

    old, new = _headers(tmp_path / "trt10/include", (10, 3, 0)), _headers(tmp_path / "trt11/include", (11, 1, 0))
    monkeypatch.setenv("TENSORRT_INCLUDE_DIR", str(old))
    monkeypatch.delenv("TENSORRT_ROOT", raising=False)
    with pytest.raises(BackendUnavailable, match=r"do not match the installed tensorrt 11\.4\.0.*trt10/include "
                                                 r"\(10\.3\.0\).*TensorRT 11\.x headers"):
        trt_engine.plugin_library(None, "90", "11.4.0")
    monkeypatch.setenv("TENSORRT_ROOT", str(new.parent))  # listed after TENSORRT_INCLUDE_DIR, but it matches
    assert trt_engine.find_tensorrt_include((11, 4, 0)) == new
    assert trt_engine.find_tensorrt_include((10, 3, 0)) == old


def test_prebuilt_plugin_must_link_the_runtime_libnvinfer(tmp_path):
    from volo_deploy.errors import BackendUnavailable
    from volo_deploy.export import trt_engine

    lib = tmp_path / "libvolo_outlook_plugin.so"
    lib.write_bytes(b"\x7fELF...libstdc++.so.6\x00libnvinfer.so.10\x00...")
    with pytest.raises(BackendUnavailable, match=r"links libnvinfer\.so\.10, but the installed tensorrt is 11\.1"):
        trt_engine.plugin_library(lib, "90", "11.1.0")
    assert trt_engine.plugin_library(lib, "90", "10.16.1") == lib


def test_runner_pads_below_the_profile_min_and_checks_set_input_shape():
    """--min-batch 4: a batch of 1 is padded to 4 (and cut back); set_input_shape's False is a clear error."""
    import numpy as np

    from volo_deploy.backends.tensorrt_backend import pad_to_min, set_input_shape
    from volo_deploy.errors import BadInputError

    x = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1, 1)
    padded, n = pad_to_min(x, 4)
    assert n == 2 and padded.shape == (4, 3, 1, 1) and (padded[2:] == x[1]).all()
    assert pad_to_min(x, 1)[0] is x

    class Context:
        def __init__(self, ok: bool) -> None:
            self.ok, self.shapes = ok, []

        def set_input_shape(self, name, shape):
            self.shapes.append((name, shape))
            return self.ok

    ok = Context(True)
    set_input_shape(ok, "input", (4, 3, 64, 64), Path("m.engine"), (4, 16))
    assert ok.shapes == [("input", (4, 3, 64, 64))]
    with pytest.raises(BadInputError, match=r"m\.engine: TensorRT refused input shape \(2, 3, 64, 64\) "
                                            r"\(engine batch 4\.\.16"):
        set_input_shape(Context(False), "input", (2, 3, 64, 64), Path("m.engine"), (4, 16))
