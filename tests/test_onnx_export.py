"""Portable ONNX export: graph form, numbers vs PyTorch, dynamic batch, metadata, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from volo_deploy.backends import ExportRequest
from volo_deploy.cli.export import main as export_cli
from volo_deploy.errors import ValidationError
from volo_deploy.export.onnx_graph import op_histogram
from volo_deploy.export.validate import Tolerance, torch_logits
from volo_deploy.jobs.export import export_model
from volo_deploy.models import load_model


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _check_graph(path: Path, n_outlookers: int) -> onnx.ModelProto:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    hist = op_histogram(proto)
    assert not any("Col2Im" in k for k in hist), hist
    assert hist["volo.OutlookAttention"] == n_outlookers
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (fn,) = [f for f in proto.functions if (f.domain, f.name) == ("volo", "OutlookAttention")]
    assert set(fn.attribute) >= {"kernel_size", "padding", "stride", "num_heads", "scale"}
    for node in proto.graph.node:
        if node.op_type == "OutlookAttention":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["kernel_size"] == 3 and attrs["padding"] == 1 and attrs["stride"] == 2
            assert attrs["num_heads"] >= 1 and 0 < attrs["scale"] < 1
    # Every op the three runtimes must run: nothing outside the standard domain but our node.
    assert {n.domain for n in proto.graph.node} <= {"", "volo"}
    return proto


@pytest.fixture(scope="module")
def demo_x() -> np.ndarray:
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.models import get_config

    return validation_batch(get_config("volo_demo_64"), n=8)


@pytest.mark.parametrize("dynamic", [False, True])
def test_demo_export_matches_pytorch(tmp_path, demo_x, dynamic) -> None:
    req = ExportRequest(output_dir=tmp_path, batch=1, dynamic_batch=dynamic)
    res = export_model("onnx", req)
    proto = _check_graph(res.model_file, n_outlookers=2)
    model, _ = load_model()
    ref = torch_logits(model, demo_x)
    if dynamic:
        out = _ort_logits(res.model_file, demo_x)
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
        np.testing.assert_allclose(_ort_logits(res.model_file, demo_x[:3]), ref[:3], atol=1e-4, rtol=0)
    else:
        out = np.concatenate([_ort_logits(res.model_file, demo_x[i : i + 1]) for i in range(len(demo_x))])
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["volo.variant"] == "volo_demo_64" and meta["volo.num_classes"] == "10"
    assert meta["volo.input_size"] == "3x64x64" and meta["volo.crop_pct"] == "1"
    assert len(meta["volo.checkpoint_sha256"]) == 64 and meta["volo_deploy.version"]
    manifest = json.loads(res.manifest.read_text())
    (entry,) = manifest["files"]
    assert entry["path"] == res.model_file.name and entry["bytes"] == res.model_file.stat().st_size
    assert manifest["validation"]["max_abs"] <= 1e-4 and manifest["validation"]["top1_agreement"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([res.model_file.name, "manifest.json"])
    # No absolute path of this checkout inside the graph: two checkouts export the same bytes.
    assert str(Path(__file__).resolve().parent.parent).encode() not in res.model_file.read_bytes()
    assert any(p.key == "pkg.torch.onnx.name_scopes" for p in proto.graph.node[0].metadata_props)  # INT8 placement


@pytest.fixture(scope="module")
def d1_checkpoint(deterministic_checkpoint) -> Path:
    return deterministic_checkpoint("volo_d1_224")


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [False, True])
def test_d1_export_matches_pytorch(tmp_path, d1_checkpoint, dynamic) -> None:
    req = ExportRequest(output_dir=tmp_path, batch=2, dynamic_batch=dynamic)
    res = export_model("onnx", req, model_name="volo_d1_224", checkpoint=d1_checkpoint, n_validate=2)
    _check_graph(res.model_file, n_outlookers=4)
    model, _ = load_model(d1_checkpoint)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(_ort_logits(res.model_file, x), torch_logits(model, x), atol=1e-4, rtol=0)
    if dynamic:
        assert _ort_logits(res.model_file, x[:1]).shape == (1, 1000)


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*")) if d.exists() else []


def test_cli_missing_checkpoint(tmp_path, capsys) -> None:
    rc = export_cli(["--checkpoint", str(tmp_path / "nope.pth"), "--output", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "nope.pth: file not found" in err and "Traceback" not in err
    assert _files(tmp_path / "out") == []


def test_cli_wrong_variant(tmp_path, capsys, demo_checkpoint) -> None:
    rc = export_cli(["--model", "volo_d1_224", "--checkpoint", str(demo_checkpoint), "--output", str(tmp_path)])
    assert rc == 1
    assert "holds volo_demo weights, but --model volo_d1_224 expects volo_d1" in capsys.readouterr().err
    assert _files(tmp_path) == []


def test_cli_unwritable_output_dir(tmp_path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = export_cli(["--output", str(blocker / "out")])
    assert rc == 1
    assert "output dir" in capsys.readouterr().err
    assert _files(tmp_path) == ["a_file"]


def test_cli_existing_output_needs_force(tmp_path, capsys) -> None:
    assert export_cli(["--output", str(tmp_path)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert export_cli(["--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already exist" in err and "pass --force" in err
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert export_cli(["--output", str(tmp_path), "--force"]) == 0
    assert sorted(before) == _files(tmp_path)  # replaced, nothing left over (no staging dirs, no temp files)


def test_validation_failure_publishes_nothing(tmp_path) -> None:
    req = ExportRequest(output_dir=tmp_path)
    with pytest.raises(ValidationError, match="disagrees with FP32 PyTorch") as info:
        export_model("onnx", req, tolerance=Tolerance(max_abs=-1.0))
    assert "max_abs" in info.value.stats
    assert _files(tmp_path) == []


def test_cli_bad_opset_and_backend(tmp_path, capsys) -> None:
    assert export_cli(["--opset", "13", "--output", str(tmp_path)]) == 1
    assert "--opset must be >= 17" in capsys.readouterr().err
    assert export_cli(["--backend", "tflite", "--output", str(tmp_path)]) == 2
    assert "unknown backend 'tflite'; known:" in capsys.readouterr().err
    assert _files(tmp_path) == []


def test_export_does_not_change_the_model_form() -> None:
    from volo_deploy.export.onnx_graph import to_onnx_proto

    model, _ = load_model()
    to_onnx_proto(model)
    assert {m.form for m in model.modules() if hasattr(m, "form")} == {"reference"}
