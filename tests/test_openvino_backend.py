"""OpenVINO backend: IR export (FP32, FP16), numbers vs PyTorch, runner modes, bad inputs, CLI.

Tolerances: FP32 IR within 1e-4 (max abs logit) of FP32 PyTorch; FP16-weight IR within
2e-2 of the logit range (max relative error) and >= 99% top-1 agreement on the demo
digits val split (360 images) with the trained demo checkpoint. With the untrained
fallback weights used while it is absent, logits are near-tied: every image whose top-2
margin exceeds 2x the FP16 error must agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from volo_deploy.backends import ExportRequest, get_backend  # noqa: E402
from volo_deploy.backends.openvino_backend import OpenVinoBackend, OvOptions, OvRunner  # noqa: E402
from volo_deploy.cli.export import main as export_cli  # noqa: E402
from volo_deploy.errors import BadInputError  # noqa: E402
from volo_deploy.export.validate import run_batched, torch_logits  # noqa: E402
from volo_deploy.jobs.export import export_model  # noqa: E402
from volo_deploy.models import load_model  # noqa: E402

FP32_ATOL = 1e-4
FP16_MAX_REL = 2e-2
FP16_MIN_AGREEMENT = 0.99


@pytest.fixture(scope="module")
def demo_ckpt() -> Path:
    """The bundled demo checkpoint."""
    from volo_deploy.models import demo_checkpoint

    return demo_checkpoint()


@pytest.fixture(scope="module")
def demo_val() -> np.ndarray:
    """The demo digits val split, preprocessed (360 images)."""
    from PIL import Image

    from volo_deploy.data.digits import load_digits_arrays
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.models import get_config

    tf = EvalTransform.for_config(get_config("volo_demo_64"))
    images, _ = load_digits_arrays("val")
    return np.stack([tf(Image.fromarray(im, mode="L")) for im in images])


@pytest.fixture(scope="module")
def demo_fp32(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("ov_fp32")
    return export_model("openvino", ExportRequest(output_dir=out, dynamic_batch=True), checkpoint=demo_ckpt)


def test_registered() -> None:
    assert get_backend("openvino") is OpenVinoBackend
    assert get_backend("ov") is OpenVinoBackend
    assert {"fp32", "fp16"} <= set(OpenVinoBackend.precisions)


def test_demo_fp32_ir_matches_pytorch(demo_fp32, demo_ckpt, demo_val) -> None:
    xml = demo_fp32.model_file
    assert xml.suffix == ".xml" and xml.with_suffix(".bin").is_file()
    manifest = json.loads(demo_fp32.manifest.read_text())
    assert {f["path"] for f in manifest["files"]} == {xml.name, xml.with_suffix(".bin").name}
    assert manifest["backend"] == "openvino" and manifest["export"]["outlook_form"] == "slice"
    assert manifest["validation"]["max_abs"] <= FP32_ATOL
    assert not list(xml.parent.glob(".staging-*")) and not list(xml.parent.glob("*.onnx"))

    model, _ = load_model(demo_ckpt)
    x = demo_val[:32]
    runner = OpenVinoBackend().load(xml)
    assert runner.input_shape == (None, 3, 64, 64)
    got = runner.run(x)
    assert np.abs(got - torch_logits(model, x)).max() <= FP32_ATOL
    assert len(runner.times) == 1 and runner.times[0] > 0

    # async queue: same numbers, in order, with a wall time
    outs, seconds = runner.run_async([x[i : i + 4] for i in range(0, 32, 4)], requests=2)
    assert seconds > 0 and len(outs) == 8
    np.testing.assert_allclose(np.concatenate(outs), got, atol=1e-5)
    runner.close()


def test_demo_fp16_ir(tmp_path, demo_ckpt, demo_val, demo_fp32) -> None:
    res = export_model("openvino", ExportRequest(output_dir=tmp_path, precision="fp16", batch=8), checkpoint=demo_ckpt)
    assert res.model_file.name.endswith("_fp16.xml")
    bin16, bin32 = res.model_file.with_suffix(".bin"), demo_fp32.model_file.with_suffix(".bin")
    assert bin16.stat().st_size < 0.6 * bin32.stat().st_size  # weights stored as FP16

    model, _ = load_model(demo_ckpt)
    ref = torch_logits(model, demo_val, batch=64)
    runner = OpenVinoBackend().load(res.model_file, OvOptions(hint="throughput"))
    got = run_batched(runner, demo_val, 8)
    err = np.abs(got - ref).max()
    assert err <= FP16_MAX_REL * np.abs(ref).max()
    agree = got.argmax(1) == ref.argmax(1)
    assert agree.mean() >= FP16_MIN_AGREEMENT


def test_bin_missing_or_truncated(tmp_path, demo_fp32) -> None:
    xml = tmp_path / demo_fp32.model_file.name
    shutil.copy(demo_fp32.model_file, xml)
    with pytest.raises(BadInputError, match=r"weights file .*\.bin is missing"):
        OpenVinoBackend().load(xml)
    data = demo_fp32.model_file.with_suffix(".bin").read_bytes()
    xml.with_suffix(".bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=rf"truncated, the IR needs \d+ bytes, found {len(data) // 2}$"):
        OpenVinoBackend().load(xml)
    with pytest.raises(BadInputError, match="not found"):
        OpenVinoBackend().load(tmp_path / "nope.xml")


def test_unknown_device_lists_available(demo_fp32) -> None:
    import openvino as ov

    with pytest.raises(BadInputError) as err:
        OpenVinoBackend().load(demo_fp32.model_file, OvOptions(device="NOPE"))
    msg = str(err.value)
    assert "'NOPE'" in msg and all(d in msg for d in ov.Core().available_devices)


def test_input_size_mismatch(demo_fp32) -> None:
    runner = OpenVinoBackend().load(demo_fp32.model_file)
    with pytest.raises(BadInputError, match=r"\(2, 3, 32, 32\).*\(None, 3, 64, 64\)"):
        runner.run(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(BadInputError, match=r"volo_demo_64_fp32\.xml.*\(1, 3, 48, 48\)"):
        runner.run_async([np.zeros((1, 3, 48, 48), np.float32)])


def test_runner_options_reach_openvino(demo_fp32) -> None:
    runner = OvRunner(demo_fp32.model_file, OvOptions(hint="throughput", streams=1, threads=1))
    assert str(runner.compiled.get_property("PERFORMANCE_HINT")).upper().endswith("THROUGHPUT")
    assert int(runner.compiled.get_property("NUM_STREAMS")) == 1
    assert int(runner.compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def test_cli_errors_are_one_line(tmp_path, demo_ckpt, capsys) -> None:
    base = ["--backend", "openvino", "--checkpoint", str(demo_ckpt), "--output", str(tmp_path / "o")]
    for extra, needle in (
        (["--device", "NOPE"], "available"),
        (["--fp16", "--device", "GPU.7"], "available"),
    ):
        assert export_cli(base + extra) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err
    missing = ["--backend", "ov", "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "m")]
    assert export_cli(missing) != 0
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.xml"))


@pytest.mark.slow
def test_d1_fp32_ir_matches_pytorch(tmp_path, deterministic_checkpoint) -> None:
    ckpt = deterministic_checkpoint("volo_d1_224")
    res = export_model("openvino", ExportRequest(output_dir=tmp_path / "out"), checkpoint=ckpt, n_validate=2)
    assert res.validation["max_abs"] <= FP32_ATOL
    from volo_deploy.models.init import golden_input

    model, _ = load_model(ckpt)
    x = golden_input(1, 224).numpy()
    runner = OpenVinoBackend().load(res.model_file)
    assert runner.input_shape == (1, 3, 224, 224)
    assert np.abs(runner.run(x) - torch_logits(model, x)).max() <= FP32_ATOL
