"""volo-bench's batch evaluation in the runtime's throughput mode (issue 20), beside latency at one request."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from volo_deploy import artifacts  # noqa: E402
from volo_deploy.backends import ExportRequest  # noqa: E402
from volo_deploy.backends.openvino_backend import OpenVinoBackend, OvOptions  # noqa: E402
from volo_deploy.harness.report import throughput_section  # noqa: E402
from volo_deploy.harness.runner import OK, CaseContext, run_case  # noqa: E402
from volo_deploy.jobs.export import export_model  # noqa: E402


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A CaseContext over the demo model with fp32 exports volo-bench reuses."""
    from volo_deploy.export.validate import torch_logits
    from volo_deploy.models import demo_checkpoint, load_model
    from volo_deploy.quant.data import eval_set

    root = tmp_path_factory.mktemp("artifacts")
    for backend in ("openvino", "onnxruntime"):
        export_model(backend, ExportRequest(output_dir=root / f"{backend}_fp32", dynamic_batch=True))
    model, _ = load_model()
    x = eval_set(model.cfg).x[:8]
    ckpt = demo_checkpoint()
    return CaseContext(
        checkpoint=ckpt, checkpoint_sha256=artifacts.sha256_file(ckpt), model_name=None, x=x, labels=None,
        ref_logits=torch_logits(model, x), ref_top1_pct=None, batch_sizes=(1, 4), warmup=0, iters=3, threads=1,
        artifacts_root=root, progress=False, throughput_mode=True,
    )


def test_openvino_throughput_options_keep_the_rest():
    opts = OpenVinoBackend().throughput_options(OvOptions(threads=1, streams=2))
    assert (opts.hint, opts.threads, opts.streams) == ("throughput", 1, 2)
    assert opts.compile_config("fp32")["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert OvOptions().compile_config("fp32")["PERFORMANCE_HINT"] == "LATENCY"  # latency: one stream


def test_openvino_row_has_both_modes_labelled(ctx):
    res = run_case("openvino", "fp32", ctx)
    assert res.status == OK, res.reason
    assert "hint='latency'" in res.load_options  # latency is timed with the latency hint
    t = res.throughput
    assert t["batch"] == 4 and t["calls"] >= max(ctx.iters, 2 * t["requests"]) and t["img_per_s"] > 0
    assert t["mode"].startswith("openvino PERFORMANCE_HINT THROUGHPUT") and "async infer requests" in t["mode"]
    assert t["latency_mode_img_per_s"] == round(res.latency["4"]["throughput_ips"], 2)
    lines = throughput_section([res.as_dict()])
    assert lines[0].startswith("## Batch evaluation img/s: throughput mode")
    assert lines[-2].startswith("| openvino | fp32 | 4 |") and "THROUGHPUT" in lines[-2]


def test_throughput_runner_compiled_with_the_hint(ctx):
    backend = OpenVinoBackend()
    xml = next((ctx.artifacts_root / "openvino_fp32").glob("*.xml"))
    runner = backend.load(xml, backend.throughput_options(OvOptions(threads=1)))
    try:
        assert str(runner.compiled.get_property("PERFORMANCE_HINT")).upper().endswith("THROUGHPUT")
        outs, seconds = runner.run_async([ctx.x[:4]] * 3)
        assert len(outs) == 3 and seconds > 0
    finally:
        runner.close()


def test_throughput_mode_is_off_by_default(ctx):
    from dataclasses import replace as dc_replace

    from volo_deploy.harness.bench import BenchConfig

    assert BenchConfig().throughput_mode is False
    res = run_case("openvino", "fp32", dc_replace(ctx, throughput_mode=False))
    assert res.status == OK and res.latency and res.throughput is None


def test_async_requests_return_every_batch_in_order(ctx):
    import numpy as np

    from volo_deploy.backends.openvino_backend import OpenVinoBackend, OvOptions

    backend = OpenVinoBackend()
    xml = next((ctx.artifacts_root / "openvino_fp32").glob("*.xml"))
    runner = backend.load(xml, backend.throughput_options(OvOptions(threads=1, requests=2)))
    try:
        batches = [ctx.x[i : i + 1] for i in range(5)]  # more batches than requests: each request reused
        outs, seconds = runner.run_async(batches)
        assert seconds > 0 and len(outs) == 5
        for b, o in zip(batches, outs):
            np.testing.assert_allclose(o, runner.run(b), rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_no_throughput_mode_no_row(ctx):
    res = run_case("onnxruntime", "fp32", ctx)
    assert res.status == OK and res.throughput is None
    assert throughput_section([res.as_dict()]) == []


def test_throughput_mode_failure_keeps_the_latency_row(ctx, monkeypatch):
    monkeypatch.setattr(OpenVinoBackend, "throughput_options",
                        lambda self, o: replace(o or OvOptions(), hint="throughput", device="NO_SUCH_DEVICE"))
    res = run_case("openvino", "fp32", ctx)
    assert res.status == OK and res.latency and res.throughput is None
    assert any(w.startswith("throughput mode not measured: BadInputError") for w in res.warnings)
