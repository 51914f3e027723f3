"""volo-gate on constructed reports: pass, regression (exit 1), refusal (exit 2), JUnit, baseline update."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.cli.gate import main as gate_main
from volo_deploy.errors import BadInputError
from volo_deploy.harness.gate import GateLimits, Retiming, parse_fraction
from volo_deploy.harness.gate import compare as _compare
from volo_deploy.harness.report_schema import SCHEMA, BenchReport


def compare(report: dict, baseline: dict, *args, **kw):
    """The gate on constructed report dicts (checked against the schema first, as volo-gate does)."""
    return _compare(BenchReport.from_json(report), BenchReport.from_json(baseline), *args, **kw)


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
    typed = BenchReport.from_json(new)
    assert BenchReport.from_json(json.loads(target.read_text())) == typed
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--update-baseline"]) == 0
    assert BenchReport.from_json(json.loads(baseline.read_text())) == typed
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


# ---------------------------------------------------------------- hardware


def _latency_worse(report: dict, factor: float = 2.0) -> dict:
    worse = copy.deepcopy(report)
    for r in worse["results"]:
        for lat in (r.get("latency") or {}).values():
            lat["p50_ms"] *= factor
            if "samples_ms" in lat:
                lat["samples_ms"] = [t * factor for t in lat["samples_ms"]]
    return worse


def test_other_hardware_skips_latency_and_says_which_machines(files, tmp_path, capsys):
    baseline, base = files
    other = _latency_worse(base)
    other["fingerprints"]["hardware"] = "hw:" + "2" * 16
    other["machine"] = {"cpu": {"model": "Intel Xeon 8375C", "features": ["avx2"]}, "cpu_count": 4, "gpus": []}
    report = _write(tmp_path / "r.json", other)
    assert gate_main(["--report", str(report), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "different hardware" in out and "Intel Xeon 8375C, 4 CPUs [avx2]" in out and "AMD EPYC 9R14, 2 CPUs" in out
    lat = [line for line in out.splitlines() if "latency_bs" in line]
    assert len(lat) == 4 and all("SKIP" in line and "different hardware" in line for line in lat)
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--require-same-hardware"]) == 2
    assert "different hardware" in capsys.readouterr().err
    other["results"][0]["accuracy"]["top1_pct"] = 90.0  # accuracy is still gated
    _write(report, other)
    assert gate_main(["--report", str(report), "--baseline", str(baseline)]) == 1


def test_baseline_without_hardware_fingerprint_is_other_hardware(files, tmp_path, capsys):
    baseline, base = files
    old = copy.deepcopy(base)
    del old["fingerprints"]["hardware"], old["machine"]
    _write(baseline, old)
    report = _write(tmp_path / "r.json", _latency_worse(base))
    assert gate_main(["--report", str(report), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "baseline has no hardware fingerprint" in out and "machine not recorded" in out
    assert gate_main(["--report", str(report), "--baseline", str(baseline), "--require-same-hardware"]) == 2
    checks = compare(json.loads(report.read_text()), old)
    assert {c.result for c in checks if c.metric.startswith("latency")} == {"SKIP"}


def test_same_hardware_compares_latency(files):
    _, base = files
    fails = [c for c in compare(_latency_worse(base), base) if c.passed is False]
    assert {c.metric for c in fails} == {"latency_bs1", "latency_bs8"}


# ---------------------------------------------------------------- samples


def _with_samples(report: dict, seed: int = 0, cv: float = 0.05, n: int = 40) -> dict:
    """Per-call samples around each p50 (gamma, the given CV), as volo-bench records them."""
    out = copy.deepcopy(report)
    rng = np.random.default_rng(seed)
    for r in out["results"]:
        for lat in (r.get("latency") or {}).values():
            k = 1.0 / cv**2
            s = rng.gamma(k, lat["p50_ms"] / k, size=n)
            lat["samples_ms"] = s.tolist()
            lat["p50_ms"] = float(np.median(s))
            lat["cv"], lat["noisy"] = float(s.std() / s.mean()), cv > 0.15
    return out


def test_unchanged_samples_pass_and_a_30pct_slowdown_fails_with_its_interval():
    base = _with_samples(make_report(), seed=0)
    assert not [c for c in compare(_with_samples(make_report(), seed=1), base) if c.passed is False]
    checks = compare(_latency_worse(_with_samples(make_report(), seed=1), 1.3), base)
    fails = [c for c in checks if c.passed is False]
    assert len(fails) == 4 and all(c.metric.startswith("latency") for c in fails)
    assert all("[+" in c.change and "95% confidence" in c.message for c in fails)


def test_noisy_rise_beyond_the_limit_is_inconclusive_and_says_so(files, tmp_path, capsys):
    baseline, _ = files
    base = _with_samples(make_report(), seed=0, cv=0.6, n=20)
    cur = _latency_worse(_with_samples(make_report(), seed=1, cv=0.6, n=20), 1.0)
    # choose the current medians 15% above the baseline's: beyond 10%, but not surely with CV 60%
    for rb, rc in zip(base["results"][:2], cur["results"][:2]):
        for bs in ("1", "8"):
            s = np.asarray(rc["latency"][bs]["samples_ms"])
            s *= 1.15 * rb["latency"][bs]["p50_ms"] / np.median(s)
            rc["latency"][bs]["samples_ms"], rc["latency"][bs]["p50_ms"] = s.tolist(), float(np.median(s))
    checks = [c for c in compare(cur, base) if c.metric.startswith("latency")]
    assert {c.result for c in checks} == {"WARN"} and all(c.passed for c in checks)
    assert all("inconclusive, not counted as a failure" in c.message and "noisy" in c.message for c in checks)
    _write(baseline, base)
    assert gate_main(["--report", str(_write(tmp_path / "r.json", cur)), "--baseline", str(baseline)]) == 0
    assert "4 inconclusive latency check(s)" in capsys.readouterr().out


def test_old_reports_without_samples_fall_back_to_p50():
    base = make_report()  # no samples_ms: an older bench_report/1
    cur = _latency_worse(_with_samples(make_report(), seed=1), 1.2)
    fails = [c for c in compare(cur, base) if c.passed is False]
    assert len(fails) == 4 and all("no per-call samples in the baseline" in c.message for c in fails)
    assert all("[" not in c.change for c in fails)


# ---------------------------------------------------------------- remeasure (stand-in runner)


class StandIn:
    """A remeasure callable: fresh samples at ``factor`` x the baseline's p50, calls counted."""

    def __init__(self, base: dict, factors: list[float]) -> None:
        self.p50 = {(r["backend"], r["precision"], int(bs)): lat["p50_ms"]
                    for r in base["results"] for bs, lat in (r.get("latency") or {}).items()}
        self.factors, self.calls = list(factors), []

    def __call__(self, backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming | None:
        if interleaved_only:  # the stand-in has no baseline artifact
            return None
        self.calls.append((backend, precision, batch))
        f = self.factors[min(len(self.calls) - 1, len(self.factors) - 1)]
        rng = np.random.default_rng(len(self.calls))
        return Retiming((rng.gamma(400.0, self.p50[(backend, precision, batch)] / 400.0, size=40) * f).tolist())


def test_remeasure_clears_a_disturbed_cell():
    base = _with_samples(make_report(), seed=0)
    cur = _with_samples(make_report(), seed=1)
    lat = cur["results"][0]["latency"]["1"]  # torch bs1: the whole cell ran while the machine was busy
    lat["samples_ms"] = [t * 1.8 for t in lat["samples_ms"]]
    assert [c.metric for c in compare(cur, base) if c.passed is False] == ["latency_bs1"]
    stand_in = StandIn(base, [1.7, 1.0])  # still busy once, then quiet
    checks = compare(cur, base, remeasure=stand_in)
    check = next(c for c in checks if c.metric == "latency_bs1" and c.backend == "torch")
    assert check.result == "PASS" and "re-timed 2x" in check.message
    assert stand_in.calls == [("torch", "fp32", 1)] * 2


def test_remeasure_confirms_a_real_slowdown_after_every_round():
    base = _with_samples(make_report(), seed=0)
    cur = _latency_worse(_with_samples(make_report(), seed=1), 1.3)
    stand_in = StandIn(base, [1.3])
    checks = [c for c in compare(cur, base, GateLimits(remeasure_rounds=2), remeasure=stand_in) if c.passed is False]
    assert len(checks) == 4 and all("re-timed 2x" in c.message for c in checks)
    assert len(stand_in.calls) == 4 * 2


def test_remeasure_that_cannot_run_keeps_the_first_verdict():
    from volo_deploy.harness.gate import RemeasureError

    base = _with_samples(make_report(), seed=0)
    cur = _latency_worse(_with_samples(make_report(), seed=1), 1.3)

    def gone(backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming:
        raise RemeasureError("artifact /tmp/x: no manifest")

    fails = [c for c in compare(cur, base, remeasure=gone) if c.passed is False]
    assert len(fails) == 4 and all("could not re-time: artifact /tmp/x" in c.message for c in fails)


def test_remeasure_refuses_other_hardware():
    from volo_deploy.harness.gate import RemeasureError
    from volo_deploy.harness.remeasure import remeasurer

    report = make_report()
    report["threads"] = {"requested": None}
    with pytest.raises(RemeasureError, match="not the one the report was measured on"):
        remeasurer(BenchReport.from_json(report))


class Interleaved:
    """A remeasure callable timing both artifacts call by call on a machine whose load swings 1x-3x
    from pair to pair (both calls of a pair see the same load); the candidate ``slower`` x the baseline."""

    def __init__(self, base: dict, slower: float) -> None:
        self.p50 = StandIn(base, [1.0]).p50
        self.slower, self.calls = slower, 0

    def __call__(self, backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming:
        self.calls += 1
        rng = np.random.default_rng(100 + self.calls)
        load = rng.uniform(1.0, 3.0, size=30)
        jitter = rng.gamma(400.0, 1 / 400.0, size=(2, 30))
        p50 = self.p50[(backend, precision, batch)]
        return Retiming((p50 * self.slower * load * jitter[0]).tolist(), (p50 * load * jitter[1]).tolist())


def test_interleaved_retiming_cancels_a_busy_machine_and_still_catches_30pct():
    base = _with_samples(make_report(), seed=0)
    busy = _latency_worse(_with_samples(make_report(), seed=1), 1.8)  # the whole run was slowed by load
    assert len([c for c in compare(busy, base) if c.passed is False]) == 4
    quiet_code = Interleaved(base, 1.0)
    checks = [c for c in compare(busy, base, remeasure=quiet_code) if c.metric.startswith("latency")]
    assert all(c.result == "PASS" and "interleaved with the baseline's artifact" in c.message for c in checks)
    assert quiet_code.calls == 4  # one round each: 30 pairs decide
    slow_code = Interleaved(base, 1.3)
    checks = [c for c in compare(_latency_worse(busy, 1.3), base, remeasure=slow_code) if c.metric.startswith("lat")]
    assert all(c.result == "FAIL" and "60 interleaved call pairs" in c.message for c in checks)  # both load orders
    assert all(c.change.startswith("+3") or c.change.startswith("+2") for c in checks)  # the 30%, not the load
    # a baseline run slowed 1.5x by load hides the 30% in the reports' samples; the interleaved pairs show it
    busy_base = _latency_worse(base, 1.5)
    hidden = _latency_worse(_with_samples(make_report(), seed=1), 1.3)
    assert not [c for c in compare(hidden, busy_base) if c.passed is False]
    checks = [c for c in compare(hidden, busy_base, remeasure=Interleaved(base, 1.3)) if c.metric.startswith("lat")]
    assert all(c.result == "FAIL" and "first -1" in c.message for c in checks), [c.message for c in checks]


class LoadOrderBiased(Interleaved):
    """Two loads of one artifact where whichever loads second runs ``bias`` x slower; the re-timer alternates
    the load order each round (the candidate second in odd rounds, first in even ones)."""

    def __init__(self, base: dict, bias: float) -> None:
        super().__init__(base, 1.0)
        self.bias = bias

    def __call__(self, backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming:
        got = super().__call__(backend, precision, batch, interleaved_only)
        f = self.bias if self.calls % 2 == 1 else 1 / self.bias
        return Retiming([t * f for t in got.candidate], got.baseline)


def test_a_load_order_bias_of_one_round_is_not_a_regression():
    """Two loads of the same artifact 15% apart in one process (seen with OpenVINO): one round says +15%
    with a tight interval; the round in the other load order cancels it, so no false failure."""
    base = _with_samples(make_report(), seed=0)
    same = _with_samples(make_report(), seed=1)
    biased = LoadOrderBiased(base, 1.15)
    checks = [c for c in compare(same, base, remeasure=biased) if c.metric.startswith("latency")]
    assert all(c.result != "FAIL" for c in checks), [c.message for c in checks]
    assert biased.calls >= 2 * len(checks)  # every cell was timed in both load orders


def test_paired_ratio_sees_through_load_that_hits_both_calls():
    from volo_deploy.harness.stats import latency_ratio, paired_ratio

    rng = np.random.default_rng(0)
    load = rng.uniform(1.0, 3.0, size=40)
    base, cur = 10 * load, 13 * load * rng.gamma(900.0, 1 / 900.0, size=40)
    est = paired_ratio(base, cur)
    assert 1.25 < est.low <= est.ratio <= est.high < 1.35
    assert latency_ratio(base, cur).low < 1.1  # unpaired, the same calls cannot tell
