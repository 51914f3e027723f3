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
