"""The ``--emit-only`` deployment bundle, file by file, without TensorRT, a GPU, DeepStream or Triton:
preprocessing bit-equal to our eval transform with torch blocked, scripts syntax-checked and run
against stand-in tools, configs parsed, ``infer.py`` run against a stand-in ``tensorrt``."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from volo_deploy.cli.export import main as export_cli
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.export.jetson_bundle import configs
from volo_deploy.models.configs import get_config

MODEL, PRECISION = "volo_demo_64", "fp32"
ONNX, ENGINE = f"{MODEL}_{PRECISION}_trt.onnx", f"{MODEL}_{PRECISION}.engine"
DS_ONNX, DS_ENGINE = f"{MODEL}_{PRECISION}_ds_trt.onnx", f"{MODEL}_{PRECISION}_ds.engine"
PLUGIN, LOADER = "libvolo_outlook_plugin.so", "libvolo_outlook_autoload.so"
REPO = Path(__file__).resolve().parent.parent

# Imported first in every subprocess here: any import of torch or volo_deploy fails.
BLOCK_IMPORTS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "volo_deploy"):
            raise ImportError(f"blocked import of {name}")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "for_jetson"
    assert export_cli(["--backend", "trt", "--emit-only", "--dynamic-batch", "--max-batch", "16",
                       "--output", str(out)]) == 0  # the trained demo
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Demo digits as PNG (8x8 grey), plus non-square RGB images so that resize and crop both act."""
    from volo_deploy.data.digits import load_digits_arrays

    root = tmp_path_factory.mktemp("images")
    digits, _ = load_digits_arrays("val")
    paths = []
    for i, img in enumerate(digits[:40]):
        paths.append(root / f"digit_{i}.png")
        Image.fromarray(img, mode="L").save(paths[-1])
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(96, 72), (50, 91), (640, 480), (64, 64)]):
        paths.append(root / f"rgb_{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB").save(paths[-1])
    return paths


def _run_blocked(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + code, *args], capture_output=True, text=True,
                          cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _preprocess_blocked(module_dir: Path, images: list[Path], tmp_path: Path) -> np.ndarray:
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import preprocess\n"
            "np.save(sys.argv[2], np.stack([preprocess.load(p) for p in sys.argv[3:]]))\n")
    _run_blocked(code, tmp_path, str(module_dir), str(tmp_path / "x.npy"), *map(str, images))
    return np.load(tmp_path / "x.npy")


def test_bundle_files_listed_in_manifest(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    want = {ONNX, "build_engine.sh", "bench_engine.sh", "infer.py", "preprocess.py", "labels.txt", "bundle.json",
            "README.md", "deepstream/config_infer_primary.txt", "deepstream/labels.txt",
            f"triton/{MODEL}/config.pbtxt", "deploy_src/volo_outlook_autoload.cpp"}
    assert want <= listed
    meta = json.loads((bundle / "bundle.json").read_text())
    assert (meta["engine_file"], meta["plugin_lib"], meta["input"], meta["output"]) == (ENGINE, PLUGIN, "input",
                                                                                         "logits")
    assert (bundle / "labels.txt").read_text().split() == [str(i) for i in range(10)]


def test_preprocess_bit_equal_to_eval_transform_without_torch(bundle, images, tmp_path):
    got = _preprocess_blocked(bundle, images, tmp_path)
    want = np.stack([EvalTransform.for_config(get_config(MODEL)).load(p) for p in images])
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)  # bit for bit, not within a tolerance


def test_preprocess_source_for_other_crop_and_normalization(images, tmp_path):
    """The generator carries every parameter: crop_pct < 1, ImageNet mean/std, another size."""
    t = EvalTransform.for_config(get_config("volo_d1_224"))
    assert t.crop_pct < 1 and len(set(t.std)) > 1
    (tmp_path / "preprocess.py").write_text(configs.preprocess_source("volo_d1_224", t))
    got = _preprocess_blocked(tmp_path, images[-4:], tmp_path)
    assert np.array_equal(got, np.stack([t.load(p) for p in images[-4:]]))


def _command_lines(text: str) -> list[list[str]]:
    """trtexec invocations in a script or Markdown text (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for line in joined.splitlines():
        line = line.strip().lstrip("$ ").split("#")[0] if not line.strip().startswith("#") else ""
        if not line:
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words and "=" not in words[0] and (words[0] in ("trtexec", "$TRTEXEC") or words[0].endswith("/trtexec")):
            lines.append(words)
    return lines


def test_no_removed_precision_flags_anywhere(bundle):
    """TensorRT 11 removed --fp16/--int8/--best: no line we write or print may use them."""
    texts = {p: p.read_text() for p in bundle.rglob("*") if p.suffix in (".sh", ".md", ".txt", ".json", ".py")}
    for extra in ("README.md", "plugins/outlook_attention/README.md", "scripts/gpu_check.sh"):
        texts[REPO / extra] = (REPO / extra).read_text()
    manifest = json.loads((bundle / "manifest.json").read_text())
    texts[Path("manifest:trtexec")] = manifest["export"]["trtexec"]
    found = 0
    for path, text in texts.items():
        for words in _command_lines(text):
            found += 1
            bad = [w for w in words if w.split("=")[0] in ("--fp16", "--int8", "--best")]
            assert not bad, f"{path}: {' '.join(words)}"
    assert found >= 4  # build, bench, the manifest line, the plugin README example


TRT85 = "#define NV_TENSORRT_MAJOR 8 //!< major\n#define NV_TENSORRT_MINOR 5\n#define NV_TENSORRT_PATCH 3\n"
TRT1013 = ("#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 13\n#define TRT_PATCH_ENTERPRISE 0\n"
           "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< major\n")


@pytest.fixture(scope="module")
def built(bundle, tmp_path_factory, fake_trt_tools) -> Path:
    """The bundle after build_engine.sh ran with stand-in cmake/trtexec (TensorRT 10.13 headers)."""
    tmp = tmp_path_factory.mktemp("tools")
    env = fake_trt_tools(tmp, TRT1013)
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env,
                          cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TensorRT 10.13" in proc.stdout
    args = (tmp / "log.trtexec").read_text().splitlines()
    assert "--dynamicPlugins=./libvolo_outlook_plugin.so" in args and "--stronglyTyped" in args
    return bundle


def test_shell_scripts_parse(bundle):
    for name in ("build_engine.sh", "bench_engine.sh"):
        assert os.access(bundle / name, os.X_OK)
        subprocess.run(["bash", "-n", str(bundle / name)], check=True)


def test_build_engine_refuses_tensorrt_8(bundle, tmp_path, fake_trt_tools):
    env = fake_trt_tools(tmp_path, TRT85)
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: TensorRT 8.5") and "JetPack 5" in errors[0]
    assert not (tmp_path / "log").exists(), "cmake ran although TensorRT 8.5 was detected"


def test_build_engine_reads_trtexec_banner_without_headers(bundle, tmp_path, fake_trt_tools):
    env = fake_trt_tools(tmp_path)
    (tmp_path / "bin/trtexec").write_text("#!/usr/bin/env bash\necho '&&&& RUNNING TensorRT.trtexec [TensorRT v8503]'\n")
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    if "NvInferVersion.h)" in proc.stdout + proc.stderr:
        pytest.skip("TensorRT headers installed system-wide take precedence over the trtexec banner")
    assert proc.returncode == 1 and "error: TensorRT 8 (trtexec v8503) is too old" in proc.stderr


def test_bench_engine_runs_trtexec_with_valid_flags(built, tmp_path, fake_trt_tools):
    env = fake_trt_tools(tmp_path)
    proc = subprocess.run(["bash", str(built / "bench_engine.sh")], capture_output=True, text=True,
                          env={**env, "BATCH": "4"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = (tmp_path / "log.trtexec").read_text().splitlines()
    assert f"--loadEngine={ENGINE}" in args and "--shapes=input:4x3x64x64" in args
    plugin = next(a.split("=", 1)[1] for a in args if a.startswith("--dynamicPlugins="))
    assert plugin.startswith("./") and (built / plugin).is_file()  # the script runs from its own folder
    assert {"--warmUp=500", "--iterations=200", "--percentile=50,90,99"} <= set(args)


def test_bench_engine_fixed_batch(tmp_path):
    from volo_deploy.export.jetson_bundle import _bench_script
    from volo_deploy.export.trt_engine import BatchProfile

    script = tmp_path / "bench_engine.sh"
    script.write_text(_bench_script("m.engine", BatchProfile(4, 4, 4, dynamic=False), 224))
    subprocess.run(["bash", "-n", str(script)], check=True)
    (line,) = _command_lines(script.read_text())
    assert "BATCH" not in script.read_text() and not any(w.startswith("--shapes") for w in line)
    assert "--loadEngine=m.engine" in line and "--dynamicPlugins=./libvolo_outlook_plugin.so" in line


def _parse_key_value_groups(text: str) -> dict[str, dict[str, str]]:
    """GLib key-file (DeepStream config) parser: [group] headers, key=value lines, # comments."""
    groups: dict[str, dict[str, str]] = {}
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {n}: {raw!r}"
        key, value = (s.strip() for s in line.split("=", 1))
        assert key not in current, f"duplicate key {key}"
        current[key] = value
    return groups


def test_deepstream_config(built):
    cfg_dir = built / "deepstream"
    prop = _parse_key_value_groups((cfg_dir / "config_infer_primary.txt").read_text())["property"]
    assert prop["network-type"] == "1" and prop["infer-dims"] == "3;64;64" and prop["output-blob-names"] == "probs"
    # nvinfer resolves relative paths against the config's folder
    assert (cfg_dir / prop["onnx-file"]).resolve() == (built / DS_ONNX).resolve()
    assert (cfg_dir / prop["model-engine-file"]).resolve() == (built / DS_ENGINE).resolve()
    assert (cfg_dir / prop["model-engine-file"]).is_file()  # written by build_engine.sh
    meta = json.loads((built / "bundle.json").read_text())
    assert meta["deepstream_std"].startswith("folded into ")  # the stem conv (a Shape node also reads input)
    ds = onnx.load(str(built / DS_ONNX))
    assert [o.name for o in ds.graph.output] == ["probs"] and ds.graph.node[-1].op_type == "Softmax"
    assert (cfg_dir / prop["custom-lib-path"]).resolve() == (built / LOADER).resolve()
    loader_src = (built / "deploy_src/volo_outlook_autoload.cpp").read_text()
    assert f'"{PLUGIN}"' in loader_src and "loadLibrary" in loader_src
    labels = (cfg_dir / prop["labelfile-path"]).read_text().strip().split(";")
    assert labels == (built / "labels.txt").read_text().split()
    t = EvalTransform.for_config(get_config(MODEL))
    scale, offsets = float(prop["net-scale-factor"]), [float(o) for o in prop["offsets"].split(";")]
    x = np.array([0.0, 37.0, 255.0])
    for c in range(3):  # nvinfer: scale * (x - offset) == x / 255 - mean; 1/std is in the DeepStream graph
        np.testing.assert_allclose(scale * (x - offsets[c]), x / 255 - t.mean[c], rtol=1e-12, atol=1e-12)


def test_deepstream_single_scale_approximation():
    scale, offsets, err = configs.deepstream_normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert offsets == pytest.approx([123.675, 116.28, 103.53])
    rel = [scale * 255 * s - 1 for s in (0.229, 0.224, 0.225)]
    assert max(abs(r) for r in rel) == pytest.approx(err) and 0.01 < err < 0.012


def _parse_pbtxt(text: str) -> dict:
    """Protobuf text format subset (messages, repeated fields, [lists], scalars) -> dict of lists."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.sub(r"#.*", "", text))

    def value(tok: str):
        if tok.startswith('"'):
            return tok[1:-1]
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(i: int, end: str | None) -> tuple[dict, int]:
        out: dict = {}
        while i < len(tokens) and tokens[i] != end:
            key = tokens[i]
            i += 1
            if tokens[i] == ":":
                i += 1
            if tokens[i] == "{":
                val, i = message(i + 1, "}")
                i += 1
                out.setdefault(key, []).append(val)
            elif tokens[i] == "[":
                i += 1
                while tokens[i] != "]":
                    if tokens[i] == "{":
                        val, i = message(i + 1, "}")
                        out.setdefault(key, []).append(val)
                    elif tokens[i] != ",":
                        out.setdefault(key, []).append(value(tokens[i]))
                    i += 1
                i += 1
                out.setdefault(key, [])
            else:
                out.setdefault(key, []).append(value(tokens[i]))
                i += 1
        return out, i

    parsed, end = message(0, None)
    assert end == len(tokens)
    return parsed


def test_triton_config(built):
    cfg = _parse_pbtxt((built / f"triton/{MODEL}/config.pbtxt").read_text())
    assert cfg["name"] == [MODEL] and cfg["platform"] == ["tensorrt_plan"] and cfg["max_batch_size"] == [16]
    (inp,), (out,) = cfg["input"], cfg["output"]
    assert inp["name"] == ["input"] and inp["data_type"] == ["TYPE_FP32"] and inp["dims"] == [3, 64, 64]
    assert out["name"] == ["probs"] and out["dims"] == [10]
    assert cfg["dynamic_batching"][0]["preferred_batch_size"] == [8]
    assert (built / f"triton/{MODEL}/1/model.plan").read_bytes() == (built / DS_ENGINE).read_bytes()
    readme = (built / "README.md").read_text()
    assert f"LD_PRELOAD=$PWD/{LOADER} tritonserver --model-repository=$PWD/triton" in readme


def test_triton_config_fixed_batch():
    from volo_deploy.export.trt_engine import BatchProfile

    cfg = _parse_pbtxt(configs.triton_config("m", "input", 1, "logits", 10, 224, 1000, BatchProfile(1, 1, 1, False)))
    assert cfg["max_batch_size"] == [0] and cfg["input"][0]["dims"] == [1, 3, 224, 224]
    assert cfg["output"][0]["data_type"] == ["TYPE_FP16"] and cfg["output"][0]["dims"] == [1, 1000]
    assert "dynamic_batching" not in cfg


FAKE_TENSORRT = '''
"""Stand-in for the tensorrt module: records calls; the 'engine' computes logits = W @ mean-pooled input."""
import os
import numpy as np
MEMORY = {}
CALLS = {"load_library": [], "shapes": []}
# The batch range the engine accepts, and the one its get_tensor_profile_shape reports (normally equal).
ACCEPTS = tuple(int(b) for b in os.environ.get("FAKE_PROFILE", "1,8,16").split(","))
REPORTS = tuple(int(b) for b in os.environ.get("FAKE_REPORTED", os.environ.get("FAKE_PROFILE", "1,8,16")).split(","))
W = np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32)

class Logger:
    WARNING = 2
    def __init__(self, level):
        self.level = level

class TensorIOMode:
    INPUT, OUTPUT = "in", "out"

class DataType:
    FLOAT = "float"

def nptype(dt):
    return {"float": np.float32}[dt]

class _Registry:
    def load_library(self, path):
        CALLS["load_library"].append(path)
        return object()

def get_plugin_registry():
    return _Registry()

class _Context:
    def __init__(self):
        self.addr, self.shape = {}, None
    def set_input_shape(self, name, shape):
        CALLS["shapes"].append(tuple(shape))
        if not ACCEPTS[0] <= shape[0] <= ACCEPTS[2]:
            return False  # what TensorRT does outside the profile (and logs an error)
        self.shape = tuple(shape)
        return True
    def get_tensor_shape(self, name):
        return (self.shape[0], 10)
    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
    def execute_async_v3(self, stream):
        x = MEMORY[self.addr["input"]][: int(np.prod(self.shape))].reshape(self.shape)
        MEMORY[self.addr["logits"]][: self.shape[0] * 10] = (x.mean(axis=(2, 3)) @ W.T).ravel()
        return True

class _Engine:
    num_io_tensors = 2
    def get_tensor_name(self, i):
        return ["input", "logits"][i]
    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT
    def get_tensor_shape(self, name):
        return (-1, 3, 64, 64) if name == "input" else (-1, 10)
    def get_tensor_dtype(self, name):
        return DataType.FLOAT
    def get_tensor_profile_shape(self, name, profile):
        return [(b, 3, 64, 64) for b in REPORTS]
    def create_execution_context(self):
        return _Context()

class Runtime:
    def __init__(self, logger):
        pass
    def deserialize_cuda_engine(self, blob):
        assert blob == b"engine\\n", blob
        return _Engine()
'''

DRIVER = '''
import sys, json
sys.path.insert(0, sys.argv[1])   # the fake tensorrt
sys.path.insert(0, sys.argv[2])   # the bundle
import numpy as np
import infer, tensorrt

class FakeCuda:
    stream_handle = 7
    def malloc(self, nbytes):
        ptr = 4096 * (len(tensorrt.MEMORY) + 1)
        tensorrt.MEMORY[ptr] = np.zeros(nbytes // 4, np.float32)
        return ptr
    def free(self, ptr):
        del tensorrt.MEMORY[ptr]
    def to_device(self, ptr, array):
        tensorrt.MEMORY[ptr][: array.size] = array.ravel()
    def to_host(self, array, ptr):
        array.ravel()[:] = tensorrt.MEMORY[ptr][: array.size]
    def synchronize(self):
        pass

rc = infer.main(sys.argv[3:], cuda=FakeCuda())
print("CALLS=" + json.dumps(tensorrt.CALLS))
sys.exit(rc)
'''


def test_infer_py_with_stand_in_tensorrt(built, images, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tensorrt.py").write_text(FAKE_TENSORRT)
    sample = images[:3] + images[-2:]
    proc = _run_blocked(DRIVER, tmp_path, str(fake), str(built), *map(str, sample))
    calls = json.loads(proc.stdout.split("CALLS=")[1])
    assert calls["load_library"] == [str((built / PLUGIN).resolve())]  # absolute, whatever the cwd
    assert calls["shapes"] == [[1, 3, 64, 64]] * (len(sample) + 1)  # warm-up + one per image
    w = np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32)
    t = EvalTransform.for_config(get_config(MODEL))
    blocks = proc.stdout.split("CALLS=")[0].strip().split("\n")
    for path in sample:
        head = blocks.index(next(b for b in blocks if b.startswith(f"{path}: ")))
        assert re.fullmatch(rf"{re.escape(str(path))}: \d+\.\d\d ms .*", blocks[head])
        top = [line.split() for line in blocks[head + 1 : head + 6]]
        logits = w @ t.load(path).mean(axis=(1, 2))
        assert [int(r[1]) for r in top] == list(np.argsort(-logits, kind="stable")[:5])
        assert [r[2] for r in top] == [r[1] for r in top]  # labels.txt: the digit names
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert float(top[0][0]) == pytest.approx(p.max(), abs=1e-4)


def test_infer_py_pads_up_to_the_profile_min(built, images, tmp_path, monkeypatch):
    """An engine built with --min-batch 4: one image is padded to 4 and its own logits are reported."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tensorrt.py").write_text(FAKE_TENSORRT)
    monkeypatch.setenv("FAKE_PROFILE", "4,8,16")
    proc = _run_blocked(DRIVER, tmp_path, str(fake), str(built), str(images[0]))
    assert json.loads(proc.stdout.split("CALLS=")[1])["shapes"] == [[4, 3, 64, 64]] * 2
    w = np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32)
    logits = w @ EvalTransform.for_config(get_config(MODEL)).load(images[0]).mean(axis=(1, 2))
    top = proc.stdout.split("CALLS=")[0].strip().split("\n")[1].split()
    assert int(top[1]) == int(np.argmax(logits))


def test_infer_py_shape_refused_is_one_line(built, images, tmp_path):
    """set_input_shape's False (a shape outside the profile) is an error line, not a crash further on."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake/tensorrt.py").write_text(FAKE_TENSORRT)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "FAKE_PROFILE": "4,8,16",
           "FAKE_REPORTED": "1,8,16"}
    proc = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + DRIVER, str(tmp_path / "fake"), str(built),
                           str(images[0])], capture_output=True, text=True, cwd=tmp_path, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "refused input shape (1, 3, 64, 64)" in lines[0]


def test_infer_py_bad_image_is_one_line(built, tmp_path):
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake/tensorrt.py").write_text(FAKE_TENSORRT)
    (tmp_path / "notes.png").write_text("not an image")
    proc = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + DRIVER, str(tmp_path / "fake"), str(built),
                           str(tmp_path / "notes.png")], capture_output=True, text=True, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: image {tmp_path / 'notes.png'}: cannot be read (")


def test_infer_py_imports_without_tensorrt(built, tmp_path):
    proc = _run_blocked("import sys; sys.path.insert(0, sys.argv[1]); import infer; "
                        "assert 'tensorrt' not in sys.modules; print(infer.top_k(__import__('numpy').arange(7.0), 2))",
                        tmp_path, str(built))
    assert proc.stdout.strip().startswith("[(6, 0.6")


def test_target_trt_below_10_refused(tmp_path, capsys):
    rc = export_cli(["--backend", "trt", "--emit-only", "--target-trt", "8.5.2", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "TensorRT 8.5.2 is too old" in err and "JetPack 5" in err and "Traceback" not in err
    assert not (tmp_path / "manifest.json").exists()
    rc = export_cli(["--backend", "trt", "--emit-only", "--target-trt", "ten", "--output", str(tmp_path)])
    assert rc == 2 and "--target-trt 'ten'" in capsys.readouterr().err
    rc = export_cli(["--backend", "trt", "--target-trt", "10.3", "--output", str(tmp_path)])
    assert rc == 2 and "--target-trt applies to --emit-only" in capsys.readouterr().err


def _with_loader_tools(tmp_path: Path, env: dict[str, str], gxx_rc: int) -> dict[str, str]:
    """A g++ stand-in (records its argv, exits ``gxx_rc``), libnvinfer.so under TENSORRT_ROOT, CUDA under CUDA_HOME."""
    gxx = tmp_path / "bin/g++"
    gxx.write_text(f"#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$FAKE_LOG.gxx\"\nexit {gxx_rc}\n")
    gxx.chmod(0o755)
    (tmp_path / "trt/lib").mkdir(parents=True)
    (tmp_path / "trt/lib/libnvinfer.so").write_text("")
    (tmp_path / "cuda-13.0/include").mkdir(parents=True)
    (tmp_path / "cuda-13.0/include/cuda_runtime_api.h").write_text("")
    return {**env, "CUDA_HOME": str(tmp_path / "cuda-13.0")}


def test_build_engine_finds_cuda_headers_from_cuda_home(bundle, tmp_path, fake_trt_tools):
    env = _with_loader_tools(tmp_path, fake_trt_tools(tmp_path, TRT1013), gxx_rc=0)
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = (tmp_path / "log.gxx").read_text().splitlines()
    assert str(tmp_path / "cuda-13.0/include") in args and "/usr/local/cuda/include" not in args
    assert f"built {bundle}/{LOADER}" in proc.stdout


def test_build_engine_never_fails_after_the_engine_is_written(bundle, tmp_path, fake_trt_tools):
    env = _with_loader_tools(tmp_path, fake_trt_tools(tmp_path, TRT1013), gxx_rc=1)
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"warning: compiling {LOADER} failed" in proc.stderr and (bundle / DS_ENGINE).is_file()


@pytest.mark.parametrize("banner, deprecated", [("v100300", True), ("v110400", False)])
def test_bench_engine_timing_flags_follow_the_trtexec_version(built, tmp_path, fake_trt_tools, banner, deprecated):
    """--useSpinWait/--noDataTransfers: given to trtexec 10, not to 11 (deprecated there)."""
    env = fake_trt_tools(tmp_path)
    trtexec = tmp_path / "bin/trtexec"
    trtexec.write_text(f"#!/usr/bin/env bash\nif [[ \"$1\" == --help ]]; then echo '[TensorRT {banner}]'; exit 0; fi\n"
                       + trtexec.read_text().split("\n", 1)[1])
    proc = subprocess.run(["bash", str(built / "bench_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = set((tmp_path / "log.trtexec").read_text().splitlines())
    flags = {"--useSpinWait", "--noDataTransfers"} & args
    assert flags == ({"--useSpinWait", "--noDataTransfers"} if deprecated else set())


def test_min_batch_above_one_serving_engine_starts_at_one(tmp_path):
    """--min-batch 4: infer.py's engine keeps min 4; the DeepStream/Triton engine is built from batch 1."""
    out = tmp_path / "b"
    assert export_cli(["--backend", "trt", "--emit-only", "--dynamic-batch", "--min-batch", "4", "--max-batch", "16",
                       "--output", str(out)]) == 0
    lines = {}
    for line in _command_lines((out / "build_engine.sh").read_text()):
        for word in line:
            if word.startswith("--saveEngine="):
                lines[word.split("=", 1)[1]] = line
    assert "--minShapes=input:4x3x64x64" in lines[ENGINE]
    assert "--minShapes=input:1x3x64x64" in lines[DS_ENGINE]
    with pytest.raises(ValueError, match="must start at batch 1"):
        from volo_deploy.export.trt_engine import BatchProfile

        configs.triton_config("m", "input", 1, "probs", 1, 64, 10, BatchProfile(4, 8, 16, True))


CHECK_DRIVER = DRIVER.replace("import infer, tensorrt", "import check_engine, tensorrt").replace(
    "infer.main(", "check_engine.main(")


def _stand_in_logits(inputs: np.ndarray) -> np.ndarray:
    """What the stand-in engine computes (FAKE_TENSORRT's W @ mean-pooled input)."""
    return inputs.mean(axis=(2, 3)) @ np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32).T


def test_reference_inputs_are_the_eval_transform_and_logits_fp32_pytorch(built):
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.export.validate import torch_logits
    from volo_deploy.models import demo_checkpoint, load_model

    meta = json.loads((built / "bundle.json").read_text())
    assert meta["check"]["tolerance"] == {"max_abs": 1e-3, "min_cosine": 0.99999}  # fp32's export limits
    with np.load(built / meta["check"]["file"]) as ref:
        inputs, logits = ref["inputs"], ref["logits"]
    assert inputs.dtype == np.float32 and inputs.shape == (meta["check"]["images"], 3, 64, 64)
    np.testing.assert_array_equal(inputs, validation_batch(get_config(MODEL), None, n=len(inputs)))
    np.testing.assert_allclose(logits, torch_logits(load_model(demo_checkpoint())[0], inputs), rtol=1e-5, atol=1e-5)


def test_check_engine_passes_and_fails_on_the_tolerance(built, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(built, bundle)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake/tensorrt.py").write_text(FAKE_TENSORRT)
    ref_file = bundle / "check/reference.npz"
    with np.load(ref_file) as ref:
        inputs = ref["inputs"]
    logits = _stand_in_logits(inputs)
    np.savez(ref_file, inputs=inputs, logits=logits)  # the stand-in engine is the reference: within tolerance
    proc = _run_blocked(CHECK_DRIVER, tmp_path, str(tmp_path / "fake"), str(bundle))
    assert f"{ENGINE}: {len(inputs)} reference images vs FP32 PyTorch: max abs" in proc.stdout
    logits[3, 0] += 0.01  # past fp32's max abs 1e-3
    np.savez(ref_file, inputs=inputs, logits=logits)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + CHECK_DRIVER, str(tmp_path / "fake"), str(bundle)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "past the export's tolerance: max abs error 0.01" in line


def test_build_engine_runs_check_engine_last_and_fails_on_it(bundle, tmp_path, fake_trt_tools):
    env = fake_trt_tools(tmp_path, TRT1013)
    py = tmp_path / "bin/python3"  # "tensorrt importable", and check_engine.py reports a failure
    py.write_text("#!/usr/bin/env bash\necho \"python3 $*\" >> \"$FAKE_LOG.py\"\n[[ \"$1\" == -c ]] && exit 0\nexit 1\n")
    py.chmod(0o755)
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and f"error: {bundle}/{ENGINE} is past the export's tolerance" in proc.stderr
    assert (tmp_path / "log.py").read_text().splitlines()[-1] == f"python3 {bundle}/check_engine.py"
    py.unlink()  # no python3 with tensorrt: a warning, the build succeeds
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "warning: check_engine.py not run" in proc.stderr
