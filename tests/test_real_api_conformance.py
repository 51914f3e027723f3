"""Our TensorRT / Torch-TensorRT / Triton / DeepStream usage against the REAL packages, without a GPU.

* ``tensorrt``: every ``trt.<attr>`` chain and every method called on a TensorRT object in our code and
  in the bundle's generated scripts (found with ``ast``), checked against the real Python bindings of
  the oldest and newest TensorRT we support (PyPI's ``tensorrt-cu12-bindings`` 10.3 / 10.16 and
  ``tensorrt-cu13-bindings`` 11.x wheels: the real pybind11 module, imported with stub ``libnvinfer*``
  libraries built here with gcc, exporting the symbols ``nm`` finds undefined in it). Also our
  ``plugin_fields`` read back through the real ``PluginFieldCollection``.
* ``torch_tensorrt``: our ``save``/``compile`` keywords and the converter registration against the
  functions' signatures parsed (``ast``) from the real wheels' sources, no install.
* Triton: the generated ``config.pbtxt`` parsed with tritonclient's ``ModelConfig`` (``model_config_pb2``
  from the tritonclient wheel); DeepStream: the config's keys against nvinfer's documented set.

The wheels come from ``$VOLO_WHEELS`` (default ``.ci/wheels``, filled by ``.ci/run`` with ``pip download``);
nothing is downloaded here: without a wheel the test skips and says which.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WHEELS = Path(os.environ.get("VOLO_WHEELS", REPO / ".ci" / "wheels"))
PKG = REPO / "volo_deploy"
# Files that call TensorRT's Python API (library code and the bundle's scripts run on the target).
TRT_SOURCES = [PKG / "backends/tensorrt_backend.py", PKG / "export/trt_engine.py",
               PKG / "export/torch_trt_converter.py", PKG / "export/jetson_bundle/templates/infer.py",
               PKG / "export/jetson_bundle/templates/check_engine.py"]
# The name a TensorRT object has in those files -> its class in the bindings.
RECEIVERS = {"engine": "ICudaEngine", "context": "IExecutionContext", "builder": "Builder",
             "config": "IBuilderConfig", "network": "INetworkDefinition", "parser": "OnnxParser",
             "prof": "IOptimizationProfile", "registry": "IPluginRegistry", "creator": "IPluginCreatorV3One",
             "layer": "IPluginV3Layer", "cache": "ITimingCache", "runtime": "Runtime", "_runtime": "Runtime"}
# (wheel glob, what it stands for): oldest supported (JetPack 6), newest 10.x, newest 11.x
TRT_WHEELS = [("tensorrt_cu12_bindings-10.3.0-*.whl", "10.3"), ("tensorrt_cu12_bindings-10.16.*.whl", "10.16"),
              ("tensorrt_cu13_bindings-11.*.whl", "11.x")]


def _wheel(pattern: str) -> Path:
    found = sorted(WHEELS.glob(pattern))
    if not found:
        pytest.skip(f"no {pattern} in {WHEELS} (.ci/run downloads it: pip download --no-deps -d {WHEELS} ...)")
    return found[-1]


# ---- tensorrt: what our code uses ----------------------------------------------------------------


def _chain(node) -> list[str] | None:
    """``trt.A.B`` / ``self.trt.A.B`` -> ["A", "B"]; None when not rooted at the tensorrt module."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
        if isinstance(node, ast.Attribute) and node.attr == "trt" and isinstance(node.value, ast.Name):
            return parts[::-1]
    return parts[::-1] if isinstance(node, ast.Name) and node.id == "trt" and parts else None


def _receiver(node) -> str | None:
    """Class of the TensorRT object ``node`` names (``engine``, ``self.context``, ``trt.get_plugin_registry()``)."""
    if isinstance(node, ast.Call) and _chain(node.func) == ["get_plugin_registry"]:
        return "IPluginRegistry"
    if isinstance(node, ast.Name):
        return RECEIVERS.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return RECEIVERS.get(node.attr)
    return None


def _arity(call: ast.Call) -> tuple[int | None, list[str]]:
    nargs = None if any(isinstance(a, ast.Starred) for a in call.args) else len(call.args)
    return nargs, [k.arg for k in call.keywords if k.arg]


def tensorrt_uses() -> list[dict]:
    """Every TensorRT attribute chain, constructor/function call and method call in TRT_SOURCES."""
    uses: dict[tuple, dict] = {}
    for path in TRT_SOURCES:
        tree = ast.parse(path.read_text())
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = _chain(node)
            if chain is None:
                cls = _receiver(node.value)
                chain = [cls, node.attr] if cls else None
            if chain is None:
                continue
            use = {"path": ".".join(chain), "where": f"{path.relative_to(REPO)}:{node.lineno}"}
            if id(node) in calls:
                use["nargs"], use["kws"] = _arity(calls[id(node)])
            uses.setdefault((use["path"], use.get("nargs", "-"), tuple(use.get("kws", ()))), use)
    return list(uses.values())


def test_uses_are_found():
    """The scan sees what the runner, the engine build, the converter and infer.py call (or it checks nothing)."""
    paths = {u["path"] for u in tensorrt_uses()}
    assert {"IExecutionContext.set_input_shape", "ICudaEngine.get_tensor_profile_shape", "PluginFieldCollection",
            "IPluginCreatorV3One.create_plugin", "INetworkDefinition.add_plugin_v3", "IBuilderConfig.set_timing_cache",
            "NetworkDefinitionCreationFlag", "Logger.WARNING", "nptype", "IPluginRegistry.load_library",
            "IOptimizationProfile.set_shape", "TensorRTPhase.BUILD"} <= paths
    assert len(paths) > 40


@pytest.fixture(scope="module")
def stub_bindings(tmp_path_factory):
    """``{label: (extracted wheel dir, stub lib dir)}`` builder for one bindings wheel."""
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (needed to build stub libnvinfer libraries)")
    root = tmp_path_factory.mktemp("trt_bindings")
    made: dict[Path, tuple[Path, Path]] = {}

    def make(wheel: Path) -> tuple[Path, Path]:
        if wheel not in made:
            made[wheel] = _extract_with_stubs(wheel, root / wheel.stem)
        return made[wheel]

    return make


def _extract_with_stubs(wheel: Path, out: Path) -> tuple[Path, Path]:
    """The wheel's ``tensorrt_bindings`` package under ``out``, and stub libraries for its libnv* NEEDED entries."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out, [n for n in z.namelist() if n.startswith("tensorrt_bindings/")])
    so = next((out / "tensorrt_bindings").glob("tensorrt*.so"))
    needed = [line.split("[")[1].rstrip("]") for line in subprocess.run(
        ["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout.splitlines()
        if "(NEEDED)" in line and "libnv" in line]
    undefined = [line.split()[-1] for line in subprocess.run(
        ["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True, check=True).stdout.splitlines()]
    syms = [s for s in undefined if "@" not in s and not s.startswith(("_Z", "_", "Py"))]
    src = "".join(f"void *{s}(void) {{ return 0; }}\n" for s in syms)
    libs = out / "stub_libs"
    libs.mkdir()
    for lib in needed:
        subprocess.run(["gcc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(libs / lib), f"-Wl,-soname,{lib}"],
                       input=src, text=True, check=True)
    return out, libs


def _run_checker(stub_bindings, wheel: Path, uses: list[dict]) -> dict:
    pkg, libs = stub_bindings(wheel)
    (pkg / "uses.json").write_text(json.dumps(uses))
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": f"{pkg}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "conformance_trt_check.py"),
                           str(pkg / "uses.json")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Deliberately wrong uses: the checker must report each (else it checks nothing).
WRONG = [{"path": "IExecutionContext.set_input_shape", "nargs": 3, "kws": [], "where": "test"},
         {"path": "ICudaEngine.get_tensor_nme", "where": "test"},
         {"path": "IBuilderConfig.set_timing_cache", "nargs": 1, "kws": ["ignore_mismatches"], "where": "test"}]


@pytest.mark.parametrize("pattern, label", TRT_WHEELS, ids=[w[1] for w in TRT_WHEELS])
def test_tensorrt_uses_exist_in_the_real_bindings(stub_bindings, pattern, label):
    report = _run_checker(stub_bindings, _wheel(pattern), tensorrt_uses() + WRONG)
    assert report["version"].startswith(label.replace(".x", "."))
    wrong = [p for p in report["problems"] if "test" in p.rsplit(" ", 1)[-1] or "in test;" in p]
    assert len(wrong) == len(WRONG), report["problems"]
    ours = [p for p in report["problems"] if p not in wrong]
    assert not ours, f"TensorRT {report['version']}: " + "\n".join(ours)


@pytest.mark.parametrize("pattern, label", TRT_WHEELS[::2], ids=[w[1] for w in TRT_WHEELS[::2]])
def test_plugin_fields_survive_in_the_real_collection(stub_bindings, pattern, label):
    """PluginFieldCollection copies raw pointers: our buffers must outlive plugin_fields' return."""
    fields = _run_checker(stub_bindings, _wheel(pattern), [])["fields"]
    assert [f[0] for f in fields] == ["kernel_size", "padding", "stride", "num_heads", "scale"]
    assert [f[1] for f in fields[:4]] == [[3], [1], [2], [6]]
    assert fields[4][1] == [pytest.approx(0.1767767)]


def test_tensorrt_11_removed_what_we_no_longer_use(stub_bindings):
    """The checker tells 10.x from 11.x: BuilderFlag.FP16 exists in 10.3 only (we never use it)."""
    flag = [{"path": "BuilderFlag.FP16", "where": "test"}]
    assert _run_checker(stub_bindings, _wheel(TRT_WHEELS[0][0]), flag)["problems"] == []
    assert len(_run_checker(stub_bindings, _wheel(TRT_WHEELS[2][0]), flag)["problems"]) == 1


# ---- torch_tensorrt: our keywords against the real signatures (sources parsed, no install) ----------

TORCH_TRT = ["2.5.0", "2.10.0", "2.14.0"]  # oldest supported, first to re-trace on save, newest


def _sources(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n).decode() for n in z.namelist() if n.startswith("torch_tensorrt/") and n.endswith(".py")}


def _function(source: str, name: str, cls: str | None = None) -> ast.FunctionDef:
    tree = ast.parse(source)
    scope = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls) if cls else tree
    return next(n for n in ast.walk(scope) if isinstance(n, ast.FunctionDef) and n.name == name)


def _stand_in(fn: ast.FunctionDef):
    """A Python function with ``fn``'s parameters (defaults None, no annotations): what inspect sees."""
    args = fn.args
    for a in args.posonlyargs + args.args + args.kwonlyargs + [x for x in (args.vararg, args.kwarg) if x]:
        a.annotation = None
    args.defaults = [ast.Constant(None) for _ in args.defaults]
    args.kw_defaults = [None if d is None else ast.Constant(None) for d in args.kw_defaults]
    module = ast.Module([ast.FunctionDef(fn.name, args, [ast.Pass()], [], None, type_params=[])], [])
    scope: dict = {}
    exec(compile(ast.fix_missing_locations(module), "<stand-in>", "exec"), scope)  # noqa: S102
    return scope[fn.name]


def _named(fn) -> set[str]:
    import inspect

    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


@pytest.mark.parametrize("version", TORCH_TRT)
def test_torch_tensorrt_compile_and_save_keywords(version):
    """Every keyword we pass to compile/save is a named parameter there (not swallowed by **kwargs), and a
    dynamic batch survives save: dynamic_shapes where it exists, else no re-trace."""
    import torch

    from volo_deploy.backends.torch_tensorrt_backend import _compile_kwargs, save_kwargs

    src = _sources(_wheel(f"torch_tensorrt-{version}-*.whl"))
    save = _stand_in(_function(src["torch_tensorrt/_compile.py"], "save"))
    comp = _stand_in(_function(src["torch_tensorrt/dynamo/_compiler.py"], "compile"))
    example = torch.zeros(2, 3, 8, 8)
    for dynamic in (False, True):
        kw = save_kwargs(save, example, dynamic, 16)
        assert set(kw) <= _named(save), (version, set(kw) - _named(save))
        if dynamic and "dynamic_shapes" not in kw:
            assert kw.get("retrace") is False, (version, kw)
    for precision in ("fp32", "fp16"):
        kw = _compile_kwargs(comp, precision)
        assert set(kw) <= _named(comp), (version, set(kw) - _named(comp))
    assert {"arg_inputs", "min_block_size"} <= _named(comp)
    assert _named(_stand_in(_function(src["torch_tensorrt/_compile.py"], "load"))) >= {"file_path"}


@pytest.mark.parametrize("version", TORCH_TRT)
def test_torch_tensorrt_converter_registration(version):
    """dynamo_tensorrt_converter(key, supports_dynamic_shapes=...), get_trt_tensor(ctx, value, name), Input's
    min/opt/max shapes, and the names our fallback check looks for, in the real sources."""
    src = _sources(_wheel(f"torch_tensorrt-{version}-*.whl"))
    reg = _stand_in(_function(src["torch_tensorrt/dynamo/conversion/_ConverterRegistry.py"],
                              "dynamo_tensorrt_converter"))
    assert {"key", "supports_dynamic_shapes"} <= _named(reg)
    registry = src["torch_tensorrt/dynamo/conversion/_ConverterRegistry.py"]
    assert "from ._ConverterRegistry import *" in src["torch_tensorrt/dynamo/conversion/__init__.py"]
    assert "__all__" not in registry or "dynamo_tensorrt_converter" in registry.split("__all__")[1][:2000]
    trt_tensor = _function(src["torch_tensorrt/dynamo/conversion/converter_utils.py"], "get_trt_tensor")
    assert [a.arg for a in trt_tensor.args.args[:3]] == ["ctx", "input_val", "name"]
    init = _stand_in(_function(src["torch_tensorrt/_Input.py"], "__init__", cls="Input"))
    assert "kwargs" in str(__import__("inspect").signature(init)) or {"min_shape", "max_shape"} <= _named(init)
    from volo_deploy.export.torch_trt_converter import TRT_MODULE_PREFIX, TRT_MODULE_TYPES

    text = "\n".join(src.values())
    assert f'"{TRT_MODULE_PREFIX}' in text or f"'{TRT_MODULE_PREFIX}" in text
    assert any(f"class {t}(" in text for t in TRT_MODULE_TYPES)


# ---- Triton: config.pbtxt parsed with tritonclient's ModelConfig ----------------------------------


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    """``inference.ModelConfig`` from the tritonclient wheel's generated ``model_config_pb2`` (protobuf only)."""
    import importlib.util

    wheel = _wheel("tritonclient-*.whl")
    out = tmp_path_factory.mktemp("tritonclient")
    with zipfile.ZipFile(wheel) as z:
        path = Path(z.extract("tritonclient/grpc/model_config_pb2.py", out))
    spec = importlib.util.spec_from_file_location("volo_test_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  (protobuf runtime older than the generated code, or missing)
        pytest.skip(f"{wheel.name}: model_config_pb2 does not import here: {type(exc).__name__}: {exc}")
    return module.ModelConfig


def _parse_model_config(model_config, text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, model_config())  # raises on any unknown field or bad value


def test_triton_config_parses_as_model_config(model_config):
    from volo_deploy.export.jetson_bundle import configs
    from volo_deploy.export.trt_engine import BatchProfile

    cfg = _parse_model_config(model_config, configs.triton_config(
        "volo_demo_64", "input", 1, "probs", 1, 64, 10, BatchProfile(1, 8, 16, True)))
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("volo_demo_64", "tensorrt_plan", 16)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]
    assert cfg.input[0].data_type == model_config.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name[
        "data_type"].enum_type.values_by_name["TYPE_FP32"].number
    assert (list(cfg.input[0].dims), cfg.output[0].name, list(cfg.output[0].dims)) == ([3, 64, 64], "probs", [10])
    fixed = _parse_model_config(model_config, configs.triton_config(
        "m", "input", 10, "probs", 10, 224, 1000, BatchProfile(4, 4, 4, False)))
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [4, 3, 224, 224]
    assert not fixed.HasField("dynamic_batching")
    with pytest.raises(Exception, match="preferred_batch_sizes"):  # the parser does refuse unknown fields
        _parse_model_config(model_config, "dynamic_batching { preferred_batch_sizes: [ 8 ] }")


# ---- DeepStream: the nvinfer config's keys against the documented set ---------------------------

# [property] keys of Gst-nvinfer's config file ("Gst-nvinfer File Configuration Specifications", NVIDIA
# DeepStream SDK developer guide, Gst-nvinfer plugin page): the ones we write and their neighbours.
NVINFER_PROPERTY_KEYS = frozenset("""
gpu-id net-scale-factor offsets model-color-format model-file proto-file onnx-file model-engine-file
int8-calib-file uff-file tlt-encoded-model tlt-model-key labelfile-path mean-file batch-size network-mode
network-type process-mode num-detected-classes gie-unique-id operate-on-gie-id operate-on-class-ids interval
custom-lib-path parse-classifier-func-name parse-bbox-func-name engine-create-func-name classifier-threshold
classifier-async-mode classifier-type secondary-reinfer-interval output-blob-names output-tensor-meta
infer-dims network-input-order maintain-aspect-ratio symmetric-padding scaling-filter scaling-compute-hw
workspace-size force-implicit-batch-dim enable-dla use-dla-core cluster-mode filter-out-class-ids
input-object-min-width input-object-min-height input-object-max-width input-object-max-height
segmentation-threshold segmentation-output-order output-io-formats layer-device-precision
input-tensor-from-meta crop-objects-to-roi-boundary disable-output-host-copy output-instance-mask
parse-bbox-instance-mask-func-name custom-network-config uff-input-order uff-input-blob-name
""".split())
# Documented values of the enumerated keys we set.
NVINFER_VALUES = {"network-mode": {"0", "1", "2", "3"}, "network-type": {"0", "1", "2", "3", "100"},
                  "process-mode": {"1", "2"}, "model-color-format": {"0", "1", "2"},
                  "network-input-order": {"0", "1"}, "maintain-aspect-ratio": {"0", "1"},
                  "scaling-filter": {"0", "1", "2", "3", "4"}}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_deepstream_keys_are_documented(precision):
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.export.jetson_bundle import configs
    from volo_deploy.models.configs import get_config

    t = EvalTransform.for_config(get_config("volo_d1_224"))
    text = configs.deepstream_config("volo_d1_224", precision, "m_ds_trt.onnx", "m_ds.engine", "libx.so",
                                     "labels.txt", t, 4, "probs")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "[property]"
    prop = dict(ln.split("=", 1) for ln in lines[1:])
    assert len(prop) == len(lines) - 1 == 19  # no duplicate key
    assert set(prop) <= NVINFER_PROPERTY_KEYS, set(prop) - NVINFER_PROPERTY_KEYS
    for key, allowed in NVINFER_VALUES.items():
        assert prop[key] in allowed, (key, prop[key])
    assert len(prop["offsets"].split(";")) == 3 and prop["infer-dims"] == "3;224;224"
    assert float(prop["net-scale-factor"]) == pytest.approx(1 / 255, rel=1e-12)
    assert 0.0 <= float(prop["classifier-threshold"]) < 1.0
