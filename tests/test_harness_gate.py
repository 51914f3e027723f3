"""volo-gate on constructed reports: pass, regression (exit 1), refusal (exit 2), JUnit, baseline update."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from volo_deploy.cli.gate import main as gate_main
from volo_deploy.errors import BadInputError
from volo_deploy.harness.gate import GateLimits, compare, parse_fraction
from volo_deploy.harness.report import SCHEMA


def _case(backend: str, precision: str, top1: float, agree: float, p50: dict[str, float]) -> dict:
    return {
        "backend": backend,
        "precision": precision,
        "status": "ok",
        "reason": None,
        "accuracy": {"top1_pct": top1, "top5_pct": 99.0, "delta_top1_pp": 0.0},
        "agreement": {"n": 360, "top1_agreement_pct": agree, "max_abs": 1e-6, "mean_abs": 1e-7},
        "latency": {bs: {"batch": int(bs), "p50_ms": v, "p99_ms": v * 1.2, "noisy": False} for bs, v in p50.items()},
    }


MACHINE = {"cpu": {"model": "AMD EPYC 9R14", "features": ["avx2", "avx512f"]}, "cpu_count": 2, "gpus": []}


def make_report() -> dict:
    return {
        "schema": SCHEMA,
        "fingerprints": {"model": "sha256:" + "a" * 64, "data": "sha256:" + "b" * 64, "hardware": "hw:" + "1" * 16},
        "machine": MACHINE,
        "settings": {"batch_sizes": [1, 8]},
        "results": [
            _case("torch", "fp32", 97.5, 100.0, {"1": 10.0, "8": 40.0}),
            _case("onnxruntime", "fp32", 97.5, 100.0, {"1": 5.0, "8": 20.0}),
            {"backend": "openvino", "precision": "fp32", "status": "unavailable", "reason": "not installed"},
        ],
    }


def _write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    base = make_report()
    return _write(tmp_path / "baseline.json", base), base


def test_identical_report_passes_and_junit_parses(files, tmp_path, capsys):
    baseline, base = files
    report = _write(tmp_path / "report.json", base)
    junit = tmp_path / "junit" / "gate.xml"
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--junit", str(junit)]) == 0
    assert "within limits" in capsys.readouterr().out
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    # per ok case: status, top1, agreement, latency_bs1, latency_bs8; openvino: one skipped status
    assert len(cases) == 2 * 5 + 1
    assert {(c.get("classname"), c.get("name")) for c in cases} >= {
        ("volo_gate.onnxruntime.fp32", "top1"),
        ("volo_gate.torch.fp32", "latency_bs8"),
    }
    assert suite.get("failures") == "0" and suite.get("skipped") == "1"


def test_doctored_worse_report_fails_with_readable_table(files, tmp_path, capsys):
    baseline, base = files
    worse = copy.deepcopy(base)
    ort = worse["results"][1]
    ort["accuracy"]["top1_pct"] = 97.0  # -0.5 pp > 0.3
    ort["agreement"]["top1_agreement_pct"] = 99.0  # -1.0 pp > 0.5
    ort["latency"]["1"]["p50_ms"] = 5.6  # +12% > 10%
    ort["latency"]["8"]["p50_ms"] = 21.0  # +5%: within
    worse["results"][0]["status"] = "export failed"
    worse["results"][0]["reason"] = "RuntimeError: boom"
    report = _write(tmp_path / "report.json", worse)
    junit = tmp_path / "gate.xml"
    rc = gate_main(["--report", str(report), "--baseline", str(baseline), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "4 regression(s)" in out
    fail_lines = [line for line in out.splitlines() if "FAIL" in line]
    assert any("top1" in line and "-0.50 pp" in line and "drop <= 0.3 pp" in line for line in fail_lines)
    assert any("latency_bs1" in line and "+12.0%" in line and "p50 rise <= 10%" in line for line in fail_lines)
    assert any("status" in line and "ok -> export failed" in line for line in fail_lines)
    assert not any("latency_bs8" in line for line in fail_lines)
    suite = ET.parse(junit).getroot().find("testsuite")
    failed = {c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None}
    assert failed == {"status", "top1", "agreement", "latency_bs1"}
    # looser limits let the same report through
    assert gate_main([
        "--report", str(report), "--baseline", str(baseline), "--max-top1-drop", "1", "--max-agreement-drop", "2",
        "--max-latency-regression", "0.15",
    ]) == 1  # torch still failed its status
    worse["results"][0] = base["results"][0]
    _write(report, worse)
    assert gate_main([
        "--report", str(report), "--baseline", str(baseline), "--max-top1-drop", "1", "--max-agreement-drop", "2",
        "--max-latency-regression", "15%",
    ]) == 0


def test_missing_case_is_a_regression(files, tmp_path):
    baseline, base = files
    fewer = copy.deepcopy(base)
    del fewer["results"][1]
    checks = compare(fewer, base, GateLimits())
    assert [c.metric for c in checks if c.passed is False] == ["status"]
    assert gate_main(["--report", str(_write(tmp_path / "r.json", fewer)), "--baseline", str(baseline)]) == 1


@pytest.mark.parametrize("key", ["model", "data"])
def test_mismatched_fingerprints_are_refused(files, tmp_path, capsys, key):
    baseline, base = files
    other = copy.deepcopy(base)
    other["fingerprints"][key] = "sha256:" + "c" * 64
    junit = tmp_path / "gate.xml"
    rc = gate_main(["--report", str(_write(tmp_path / "r.json", other)), "--baseline", str(baseline), "--junit", str(junit)])
    assert rc == 2
    assert "refusing to compare" in capsys.readouterr().err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("errors") == "1"


def test_schema_mismatch_and_missing_files_are_refused(files, tmp_path, capsys):
    baseline, base = files
    old = dict(base, schema="volo_deploy.bench_report/0")
    assert gate_main(["--report", str(_write(tmp_path / "r.json", old)), "--baseline", str(baseline)]) == 2
    assert "schema" in capsys.readouterr().err
    assert gate_main(["--report", str(tmp_path / "nope.json"), "--baseline", str(baseline)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert gate_main(["--report", str(tmp_path / "bad.json"), "--baseline", str(baseline)]) == 2


def test_update_baseline_writes_atomically(files, tmp_path):
    baseline, base = files
    new = copy.deepcopy(base)
    new["fingerprints"]["data"] = "sha256:" + "d" * 64  # re-baselining on new data is allowed
    report = _write(tmp_path / "r.json", new)
    target = tmp_path / "ci" / "baseline.json"
    assert gate_main(["--report", str(report), "--baseline", str(target), "--update-baseline"]) == 0
    assert json.loads(target.read_text()) == new
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert json.loads(baseline.read_text()) == new
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_latency_limit_parsing():
    assert parse_fraction("10%") == pytest.approx(0.1)
    assert parse_fraction("0.1") == pytest.approx(0.1)
    assert parse_fraction("off") is None
    with pytest.raises(BadInputError):
        parse_fraction("10")  # ambiguous: 10% or 1000%?
    with pytest.raises(BadInputError):
        parse_fraction("fast")


def test_latency_floor_ignores_tiny_absolute_rises():
    base = make_report()
    cur = copy.deepcopy(base)
    cur["results"][1]["latency"]["1"]["p50_ms"] = 5.4  # +8%
    cur["results"][0]["latency"]["1"]["p50_ms"] = 11.5  # +15%, +1.5 ms
    fails = [c for c in compare(cur, base, GateLimits(max_latency_regression=0.05)) if c.passed is False]
    assert {(c.backend, c.metric) for c in fails} == {("torch", "latency_bs1"), ("onnxruntime", "latency_bs1")}
    fails = [c for c in compare(cur, base, GateLimits(max_latency_regression=0.05, latency_floor_ms=0.5)) if c.passed is False]
    assert {(c.backend, c.metric) for c in fails} == {("torch", "latency_bs1")}
    assert not [c for c in compare(cur, base, GateLimits(max_latency_regression=None)) if c.passed is False]
