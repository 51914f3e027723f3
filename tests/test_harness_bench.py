"""volo-bench end to end on the demo model (torch + onnxruntime), failure isolation, artifact reuse."""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from volo_deploy.backends import register_backend
from volo_deploy.backends import base as backend_base
from volo_deploy.backends.torch_backend import TorchBackend
from volo_deploy.cli.bench import main as bench_main
from volo_deploy.cli.gate import main as gate_main
from volo_deploy.harness.bench import BenchConfig, run_bench
from volo_deploy.harness.report import SCHEMA, TABLE_HEADER

pytest.importorskip("onnxruntime")

FAST = ["--precisions", "fp32", "--limit", "40", "--batch-sizes", "1,4", "--warmup", "1", "--iters", "5", "--threads", "1",
        "--quiet"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private cache (demo data tree) and the bundled demo checkpoint."""
    import torch

    from volo_deploy.models import demo_checkpoint

    threads = torch.get_num_threads()  # --threads sets it process-wide: restored below
    root = tmp_path_factory.mktemp("bench")
    old = os.environ.get("VOLO_DEPLOY_CACHE")
    os.environ["VOLO_DEPLOY_CACHE"] = str(root / "cache")
    ckpt = demo_checkpoint()
    args: list[str] = []
    yield {"root": root, "checkpoint": ckpt, "args": args, "artifacts": root / "artifacts"}
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("VOLO_DEPLOY_CACHE", None)
    else:
        os.environ["VOLO_DEPLOY_CACHE"] = old


@pytest.fixture(scope="module")
def demo_run(env):
    out = env["root"] / "out"
    rc = bench_main([*env["args"], "--backends", "torch,onnxruntime", *FAST, "--artifacts", str(env["artifacts"]),
                     "--out", str(out)])
    assert rc == 0
    return out


def test_demo_run_writes_every_output_with_the_schema(demo_run):
    names = {p.name for p in demo_run.iterdir()}
    assert {"report.json", "report.md", "report.csv", "accuracy_vs_latency.png", "latency_percentiles.png"} <= names
    for png in ("accuracy_vs_latency.png", "latency_percentiles.png"):
        assert (demo_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((demo_run / "report.json").read_text())
    assert r["schema"] == SCHEMA
    from volo_deploy.harness.report_schema import BenchReport

    assert BenchReport.from_json(r).to_json() == r  # the typed report gives back exactly what volo-bench wrote
    assert not [p for p in demo_run.iterdir() if p.name.startswith(".staging")]
    for key in ("toolkit_version", "created", "command", "fingerprints", "model", "data", "settings", "threads",
                "machine", "versions", "reference", "results", "summary"):
        assert key in r, key
    assert r["fingerprints"]["model"] == "sha256:" + r["model"]["checkpoint_sha256"]
    assert r["fingerprints"]["data"].startswith("sha256:") and len(r["fingerprints"]["data"]) == 71
    assert r["data"]["n_images"] == 40 and r["data"]["labeled"] and r["data"]["layout"] == "imagefolder"
    assert r["settings"]["batch_sizes"] == [1, 4] and r["settings"]["iters"] == 5
    assert r["threads"]["requested"] == r["threads"]["torch_intra_op"] == 1 and "onnxruntime" in r["versions"]
    assert "threads=1" in r["results"][1]["load_options"]  # reached onnxruntime through its options
    assert [(x["backend"], x["precision"], x["status"]) for x in r["results"]] == [
        ("torch", "fp32", "ok"), ("onnxruntime", "fp32", "ok")]
    ref_top1 = r["reference"]["accuracy"]["top1_pct"]
    for x in r["results"]:
        assert x["agreement"]["n"] == 40
        assert x["agreement"]["top1_agreement_pct"] == 100.0
        assert x["agreement"]["max_abs"] < 1e-3 and x["agreement"]["cosine_min"] > 0.99999
        assert x["accuracy"]["top1_pct"] == pytest.approx(ref_top1)
        assert x["accuracy"]["delta_top1_pp"] == pytest.approx(0.0)
        assert set(x["latency"]) == {"1", "4"}
        for bs, L in x["latency"].items():
            assert L["iters"] == 5 and L["warmup"] == 1 and L["batch"] == int(bs)
            assert 0 < L["p50_ms"] <= L["p90_ms"] <= L["p99_ms"] <= L["max_ms"]
            assert L["throughput_ips"] > 0 and "p99" in L["warning"]  # 5 calls: flagged
        assert x["artifact"]["size_bytes"] > 0 and len(x["artifact"]["sha256"]) == 64
        assert x["export_seconds"] is not None and x["memory"]["peak_rss_mb"] > 0
    assert r["results"][0]["agreement"]["max_abs"] == 0.0  # torch fp32 is the reference itself
    md = (demo_run / "report.md").read_text()
    assert "| " + " | ".join(TABLE_HEADER) + " |" in md
    assert "| onnxruntime | fp32 | ok |" in md
    rows = list(csv.DictReader((demo_run / "report.csv").open()))
    assert len(rows) == 4 and {row["batch"] for row in rows} == {"1", "4"}


def test_gate_on_the_demo_report(demo_run, tmp_path):
    report = demo_run / "report.json"
    baseline = tmp_path / "baseline.json"
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--update-baseline"]) == 0
    junit = tmp_path / "junit.xml"
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--junit", str(junit)]) == 0
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "0"
    worse = json.loads(report.read_text())
    lat = worse["results"][1]["latency"]["1"]
    assert len(lat["samples_ms"]) == 5 and min(lat["samples_ms"]) == pytest.approx(lat["min_ms"], abs=1e-3)
    lat["p50_ms"] *= 1.5
    lat["samples_ms"] = [t * 1.5 for t in lat["samples_ms"]]
    worse["results"][1]["agreement"]["top1_agreement_pct"] -= 2.5
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    # doctored samples of the same artifact: decided on the samples alone (re-timing would time the same file)
    assert gate_main(["--report", str(tmp_path / "worse.json"), "--baseline", str(baseline), "--junit", str(junit),
                      "--no-remeasure"]) == 1
    failed = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert sorted(failed) == ["agreement", "latency_bs1"]


def test_remeasure_retimes_the_reports_own_artifact(demo_run, tmp_path):
    from volo_deploy.harness.gate import RemeasureError
    from volo_deploy.harness.remeasure import remeasurer
    from volo_deploy.harness.report_schema import BenchReport

    report = json.loads((demo_run / "report.json").read_text())
    typed = BenchReport.from_json(report)
    got = remeasurer(typed, typed)("onnxruntime", "fp32", 4)  # the baseline's artifact is here: interleaved
    assert len(got.candidate) == len(got.baseline) == max(report["settings"]["iters"], 20) and min(got.candidate) > 0
    # through the CLI: a baseline 10x faster than anything this machine does
    base = json.loads((demo_run / "report.json").read_text())
    lat = base["results"][1]["latency"]["1"]
    lat["samples_ms"] = [t * 0.1 for t in lat["samples_ms"]]
    lat["p50_ms"] *= 0.1
    (tmp_path / "fast.json").write_text(json.dumps(base))
    junit = tmp_path / "gate.xml"
    args = ["--report", str(demo_run / "report.json"), "--baseline", str(tmp_path / "fast.json"), "--remeasure", "2",
            "--junit", str(junit)]
    # its artifact is the report's own, timed interleaved: the stored 10x was the machine, not the model
    assert gate_main(args) == 0
    case = next(c for c in ET.parse(junit).getroot().iter("testcase")
                if (c.get("classname"), c.get("name")) == ("volo_gate.onnxruntime.fp32", "latency_bs1"))
    assert "interleaved with the baseline's artifact" in case.find("system-out").text
    # without the baseline's artifact: the fresh candidate against the stored samples, said so, fails
    base["results"][1]["artifact"]["dir"] = str(tmp_path / "gone")
    (tmp_path / "fast.json").write_text(json.dumps(base))
    assert gate_main(args) == 1
    failure = next(c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None)
    assert (failure.get("classname"), failure.get("name")) == ("volo_gate.onnxruntime.fp32", "latency_bs1")
    assert "re-timed 2x against the baseline's stored samples" in failure.find("failure").text
    assert "not interleaved (baseline's artifact" in failure.find("failure").text
    report["results"][1]["artifact"]["dir"] = str(tmp_path / "gone")
    with pytest.raises(RemeasureError, match="no manifest"):
        remeasurer(BenchReport.from_json(report))("onnxruntime", "fp32", 4)


@pytest.fixture
def throwaway_backends():
    """Three test-only backends: one raises in export, one fails validation, one is unavailable."""

    @register_backend("test_boom")
    class Boom(TorchBackend):
        def export_impl(self, model, request, staged, model_file):
            raise RuntimeError("simulated exporter crash")

    @register_backend("test_skewed")
    class Skewed(TorchBackend):
        def load(self, artifact, options=None):
            runner = super().load(artifact, options)
            inner = runner._run_impl
            runner._run_impl = lambda batch: inner(batch) + np.eye(1, inner(batch).shape[1], dtype=np.float32)
            return runner

    @register_backend("test_absent")
    class Absent(TorchBackend):
        @classmethod
        def unavailable_reason(cls):
            return "needs hardware this test machine lacks"

    yield
    for name in ("test_boom", "test_skewed", "test_absent"):
        backend_base._REGISTRY.pop(name, None)


def _cfg(env, **kw) -> BenchConfig:
    ckpt = env["checkpoint"] if env["args"] else None
    base = dict(checkpoint=ckpt, limit=4, batch_sizes=(2,), warmup=0, iters=2, threads=1, progress=False,
                artifacts=env["artifacts"])
    return BenchConfig(**{**base, **kw})


def test_a_failing_backend_never_stops_the_others(env, demo_run, throwaway_backends):
    report = run_bench(_cfg(env, backends=("test_boom", "test_skewed", "test_absent", "torch")))
    by = {r["backend"]: r for r in report["results"] if r["precision"] == "fp32"}
    import torch

    if not torch.cuda.is_available():  # the torch backend's fp16 runs on CUDA only
        fp16 = next(r for r in report["results"] if r["backend"] == "torch" and r["precision"] == "fp16")
        assert fp16["status"] == "unavailable" and "CUDA" in fp16["reason"]
    assert by["test_boom"]["status"] == "export failed"
    assert "RuntimeError: simulated exporter crash" in by["test_boom"]["reason"]
    assert by["test_skewed"]["status"] == "failed validation"
    assert "max abs error" in by["test_skewed"]["reason"] and by["test_skewed"]["validation"]["max_abs"] >= 1.0
    assert by["test_absent"]["status"] == "unavailable"
    assert by["test_absent"]["reason"] == "needs hardware this test machine lacks"
    assert by["torch"]["status"] == "ok" and by["torch"]["latency"]["2"]["iters"] == 2
    assert by["torch"]["artifact"]["reused"] is True  # the demo run's export, hash-checked
    from volo_deploy.harness.report import markdown_table

    table = markdown_table(report)
    assert "| test_boom | fp32 | export failed | - |" in table


def test_unsupported_precision_and_tampered_artifact(env, demo_run):
    art = env["artifacts"] / "torch_fp32"
    model_file = next(art.glob("*.safetensors"))
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    report = run_bench(_cfg(env, backends=("torch",), precisions=("fp32", "int8")))
    fp32, int8 = report["results"]
    assert fp32["status"] == "ok" and fp32["artifact"]["reused"] is False
    assert any("does not match its manifest hash" in line for line in fp32["log"])
    assert (int8["status"], int8["reason"]) == ("unsupported", "torch supports fp32, fp16")


def test_bad_arguments_exit_2(capsys):
    assert bench_main(["--backends", "nosuch", "--quiet"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert bench_main(["--precisions", "fp8", "--quiet"]) == 2
