"""volo-gate never passes what it cannot read: hostile reports, thresholds and output paths, through the
installed CLI (subprocess), and report files published as a set."""

from __future__ import annotations

import copy
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from volo_deploy.errors import BadInputError
from volo_deploy.harness.report_schema import SCHEMA, BenchReport

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _latency(batch: int, p50: float) -> dict:
    samples = [p50 * (1 + 0.01 * ((i % 5) - 2)) for i in range(30)]
    return {"batch": batch, "warmup": 5, "iters": 30, "p50_ms": p50, "p90_ms": p50 * 1.02, "p99_ms": p50 * 1.03,
            "mean_ms": p50, "std_ms": p50 * 0.01, "min_ms": min(samples), "max_ms": max(samples), "cv": 0.01,
            "throughput_ips": batch * 1e3 / p50, "noisy": False, "warning": None, "samples_ms": samples}


def _row(backend: str, p50: float) -> dict:
    return {"backend": backend, "precision": "fp32", "status": "ok", "reason": None,
            "artifact": {"dir": "/nonexistent", "model_file": "m", "size_bytes": 10, "sha256": "0" * 64, "reused": False},
            "accuracy": {"top1_pct": 97.5, "top5_pct": 99.5, "delta_top1_pp": 0.0},
            "agreement": {"n": 64, "top1_agreement_pct": 100.0, "max_abs": 1e-6, "mean_abs": 1e-7, "max_rel": 1e-7,
                          "cosine_min": 1.0, "cosine_mean": 1.0},
            "latency": {"1": _latency(1, p50), "8": _latency(8, p50 * 4)}, "load_options": None,
            "memory": {"peak_rss_mb": 300.0}, "warnings": [], "log": []}


def full_report() -> dict:
    """A complete bench_report/1 (every section the writer renders), on hardware that is not this machine."""
    return {
        "schema": SCHEMA, "toolkit_version": "0.1.0", "created": "2026-12-07T00:00:00Z", "command": ["volo-bench"],
        "elapsed_seconds": 1.0,
        "fingerprints": {"model": "sha256:" + "a" * 64, "data": "sha256:" + "b" * 64, "hardware": "hw:" + "1" * 16},
        "model": {"name": "volo_demo", "checkpoint": "demo.pth", "checkpoint_sha256": "a" * 64, "img_size": 64,
                  "num_classes": 10},
        "data": {"source": "digits", "layout": "imagefolder", "n_images": 64, "labeled": True, "notes": []},
        "settings": {"batch_sizes": [1, 8], "warmup": 5, "iters": 30},
        "threads": {"requested": 1, "torch_intra_op": 1},
        "machine": {"cpu": {"model": "AMD EPYC 9R14", "features": ["avx2"]}, "cpu_count": 2, "gpus": []},
        "versions": {}, "reference": {"accuracy": {"top1_pct": 97.5, "top5_pct": 99.5}},
        "results": [_row("torch", 10.0), _row("onnxruntime", 5.0),
                    {"backend": "openvino", "precision": "fp32", "status": "unavailable", "reason": "not installed"}],
    }


def gate(*args: str | Path) -> subprocess.CompletedProcess:
    """The installed ``volo-gate`` on this checkout (PYTHONPATH)."""
    return subprocess.run(["volo-gate", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture
def gate_here(capsys):
    """The same entry point in this process (for the many variants of one case: quicker)."""
    from volo_deploy.cli.gate import main

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            rc = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


def _write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.fixture
def pair(tmp_path):
    """(report path, baseline path), both the same valid report."""
    return _write(tmp_path / "report.json", full_report()), _write(tmp_path / "baseline.json", full_report())


def _refused(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and (p.stderr.startswith("error: ") or "volo-gate: error:" in p.stderr)
    for w in words:
        assert w in p.stderr, p.stderr


def _set(report: dict, path: str, value) -> dict:
    """``report`` with the value at dotted ``path`` (list items by index) replaced; None deletes it."""
    out = copy.deepcopy(report)
    *head, last = path.split(".")
    node = out
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = int(last) if isinstance(node, list) else last
    if value is None:
        del node[last]
    else:
        node[last] = value
    return out


#: The cases of the issue, each through the installed CLI.
CLI_BAD_VALUES = [
    ("results.0.latency.1.p50_ms", float("nan"), "results[0] (torch fp32).latency.1.p50_ms", "NaN"),
    ("results.0.latency.1.p50_ms", -1.0, "results[0] (torch fp32).latency.1.p50_ms", "-1.0"),
    ("results.1.latency.8.p50_ms", 0.0, "results[1] (onnxruntime fp32).latency.8.p50_ms", "> 0"),
    ("results.0.accuracy.top1_pct", 250.0, "results[0] (torch fp32).accuracy.top1_pct", "in [0, 100]"),
    ("results.0.accuracy.top1_pct", float("inf"), "results[0] (torch fp32).accuracy.top1_pct", "Infinity"),
    ("results.0.latency", None, "results[0] (torch fp32).latency", "missing"),
    ("results", "all good", "results", "a list"),
]
BAD_VALUES = [
    ("results.1.latency.1.samples_ms", [1.0, float("inf")], "results[1] (onnxruntime fp32).latency.1.samples_ms[1]", "Infinity"),
    ("results.1.agreement.top1_agreement_pct", -3.0, "results[1] (onnxruntime fp32).agreement.top1_agreement_pct", "in [0, 100]"),
    ("results.0.latency", {}, "results[0] (torch fp32).latency", "one entry per timed batch size"),
    ("results.0.latency.1.p50_ms", "fast", "results[0] (torch fp32).latency.1.p50_ms", '"fast"'),
    ("results.0.latency.1.p50_ms", True, "results[0] (torch fp32).latency.1.p50_ms", "true"),
    ("results.2.reason", None, "results[2] (openvino fp32).reason", "missing"),
    ("results.0.status", "great", "results[0] (torch fp32).status", "one of 'ok'"),
    ("results", {"torch": "ok"}, "results", "a list"),
    ("results.0", ["torch", "fp32"], "results[0]", "an object"),
    ("fingerprints.model", 7, "fingerprints.model", "a non-empty string"),
    ("settings.batch_sizes", [1, -8], "settings.batch_sizes", "positive integers"),
]


@pytest.mark.parametrize("path,value,where,found", CLI_BAD_VALUES, ids=[f"{b[0]}={b[1]!r}" for b in CLI_BAD_VALUES])
def test_a_bad_report_is_refused_naming_file_row_and_field(pair, path, value, where, found):
    report, baseline = pair
    _write(report, json.dumps(_set(full_report(), path, value)))  # json.dumps writes NaN/Infinity literals
    _refused(gate("--report", report, "--baseline", baseline), f"report {report}: {where}", found)


@pytest.mark.parametrize("path,value,where,found", BAD_VALUES, ids=[f"{b[0]}={b[1]!r}" for b in BAD_VALUES])
def test_more_bad_values_are_refused(pair, gate_here, path, value, where, found):
    report, baseline = pair
    _write(report, json.dumps(_set(full_report(), path, value)))
    _refused(gate_here("--report", report, "--baseline", baseline), f"report {report}: {where}", found)


def test_the_baseline_is_checked_too_and_junit_gets_the_error(pair, tmp_path, gate_here):
    import xml.etree.ElementTree as ET

    report, baseline = pair
    _write(baseline, json.dumps(_set(full_report(), "results.0.latency.1.p50_ms", float("nan"))))
    junit = tmp_path / "gate.xml"
    _refused(gate_here("--report", report, "--baseline", baseline, "--junit", junit), f"baseline {baseline}: results[0]")
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"


def test_a_duplicated_row_is_refused(pair, gate_here):
    report, baseline = pair
    r = full_report()
    r["results"].append(copy.deepcopy(r["results"][1]))
    _write(report, r)
    _refused(gate_here("--report", report, "--baseline", baseline), "results[3]", "onnxruntime fp32 is also row 1")


def test_deeply_nested_json_is_refused_without_a_traceback(pair):
    report, baseline = pair
    _write(report, json.dumps(full_report())[:-1] + ', "deep": ' + "[" * 100000 + "]" * 100000 + "}")
    _refused(gate("--report", report, "--baseline", baseline), f"report {report}: nested")
    nested: list = [1]
    for _ in range(40):
        nested = [nested]
    _write(report, _set(full_report(), "execution", {"a": nested}))
    _refused(gate("--report", report, "--baseline", baseline), "nested more than 32 levels")


def test_non_finite_thresholds_are_refused_at_parse_time(pair, gate_here):
    report, baseline = pair
    p = gate("--report", report, "--baseline", baseline, "--max-latency-regression", "nan")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "'nan'" in p.stderr and "finite" in p.stderr
    for flag, value in [("--max-latency-regression", "inf%"), ("--max-latency-regression", "Infinity"),
                        ("--max-top1-drop", "nan"), ("--max-agreement-drop", "inf"), ("--latency-floor-ms", "-1")]:
        p = gate_here("--report", report, "--baseline", baseline, flag, value)
        assert p.returncode == 2 and value in p.stderr and "finite" in p.stderr, (flag, p.stderr)


def test_valid_reports_still_pass_and_a_regression_still_fails(pair, gate_here):
    report, baseline = pair
    assert gate_here("--report", report, "--baseline", baseline).returncode == 0
    _write(report, _set(full_report(), "results.0.accuracy.top1_pct", 90.0))
    p = gate_here("--report", report, "--baseline", baseline)
    assert p.returncode == 1 and "1 regression(s)" in p.stdout


# ---------------------------------------------------------------- output paths


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_junit_to_a_fifo_is_refused_and_the_fifo_stays(pair, tmp_path):
    report, baseline = pair
    fifo = _fifo(tmp_path / "gate.xml")
    _refused(gate("--report", report, "--baseline", baseline, "--junit", fifo), str(fifo), "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_update_baseline_onto_a_fifo_or_a_folder_is_refused(pair, tmp_path, gate_here):
    report, _ = pair
    fifo = _fifo(tmp_path / "base.json")
    _refused(gate("--report", report, "--baseline", fifo, "--update-baseline"), "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path / "dir.json").mkdir()
    _refused(gate_here("--report", report, "--baseline", tmp_path / "dir.json", "--update-baseline"), "is a folder")


def test_char_device_is_refused(pair, gate_here):
    report, baseline = pair
    _refused(gate_here("--report", report, "--baseline", baseline, "--junit", "/dev/null"), "a character device")


def test_a_path_under_a_regular_file_is_refused_and_the_file_untouched(pair, tmp_path, gate_here):
    report, baseline = pair
    blocker = _write(tmp_path / "notadir", "keep me")
    _refused(gate("--report", report, "--baseline", baseline, "--junit", blocker / "sub" / "gate.xml"),
             f"{blocker} is a file, not a folder")
    _refused(gate_here("--report", report, "--baseline", blocker / "base.json", "--update-baseline"), "is a file")
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder: an unwritable one cannot be made here")
def test_an_unwritable_folder_is_refused(pair, tmp_path):
    report, baseline = pair
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(gate("--report", report, "--baseline", baseline, "--junit", locked / "g.xml"), "not writable")
    finally:
        locked.chmod(0o700)


def test_a_symlink_is_written_through_to_its_regular_target(pair, tmp_path, gate_here):
    report, baseline = pair
    target = _write(tmp_path / "real_baseline.json", full_report())
    link = tmp_path / "ci_baseline.json"
    link.symlink_to(target)
    new = _set(full_report(), "fingerprints.data", "sha256:" + "d" * 64)
    _write(report, new)
    assert gate("--report", report, "--baseline", link, "--update-baseline").returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["fingerprints"]["data"] == "sha256:" + "d" * 64
    junit_link = tmp_path / "gate.xml"
    junit_link.symlink_to(tmp_path / "out.xml")  # dangling: the target is created
    assert gate_here("--report", report, "--baseline", link, "--junit", junit_link).returncode == 0
    assert junit_link.is_symlink() and (tmp_path / "out.xml").read_text().startswith("<?xml")
    fifo_link = tmp_path / "fifo_link.xml"
    fifo_link.symlink_to(_fifo(tmp_path / "fifo"))
    _refused(gate_here("--report", report, "--baseline", link, "--junit", fifo_link), "symlink to", "is a FIFO")


def test_help_has_the_exit_code_table_and_the_symlink_rule():
    out = gate("--help").stdout
    for line in ("0    every check within its limit", "1    regression", "2    bad input", "130  interrupted",
                 "143  terminated", "A symlink is followed"):
        assert line in out


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_exits_130_or_143_and_writes_nothing(pair, tmp_path, sig, code):
    """The signal is delivered while the gate reads its inputs (a wrapped load_report sends it)."""
    report, baseline = pair
    junit = tmp_path / "gate.xml"
    script = (
        "import os, sys\n"
        "import volo_deploy.harness.report as rep\n"
        "real = rep.load_report\n"
        f"def loading(*a, **k):\n    os.kill(os.getpid(), {int(sig)})\n    return real(*a, **k)\n"
        "rep.load_report = loading\n"
        "from volo_deploy.cli.gate import main\n"
        f"sys.exit(main(['--report', {str(report)!r}, '--baseline', {str(baseline)!r}, '--junit', {str(junit)!r}]))\n"
    )
    p = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == code and "Traceback" not in p.stderr, p.stderr
    assert not junit.exists()


# ---------------------------------------------------------------- report files as a set


def test_report_files_are_published_as_a_set_report_json_last(tmp_path, monkeypatch):
    from volo_deploy.harness import report as rep

    out = tmp_path / "bench"
    paths = rep.write_outputs(full_report(), out)
    assert list(paths)[:3] == ["json", "md", "csv"] and all(p.is_file() for p in paths.values())
    assert BenchReport.from_json(json.loads((out / "report.json").read_text())) == BenchReport.from_json(full_report())
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(report, folder):
        (folder / "accuracy_vs_latency.png").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rep, "write_plots", broken)
    changed = _set(full_report(), "results.0.accuracy.top1_pct", 50.0)
    with pytest.raises(OSError):
        rep.write_outputs(changed, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the older set, whole; no staging left
    published = []
    monkeypatch.setattr(rep, "write_plots", lambda report, folder: [])
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: published.append(Path(b)) or real_replace(a, b))
    rep.write_outputs(changed, out)
    published = [p.name for p in published if p.parent == out]
    assert published == ["report.md", "report.csv", "report.json"]  # report.json last
    assert not (out / "accuracy_vs_latency.png").exists()  # a plot of the older report would not match


def test_the_writer_refuses_an_invalid_report_and_a_fifo_in_out(tmp_path):
    from volo_deploy.harness.report import write_outputs

    with pytest.raises(BadInputError, match=r"results\[0\] \(torch fp32\)\.latency\.1\.p50_ms"):
        write_outputs(_set(full_report(), "results.0.latency.1.p50_ms", float("nan")), tmp_path / "a")
    assert not (tmp_path / "a").exists()  # checked before anything is created
    (tmp_path / "b").mkdir()
    fifo = _fifo(tmp_path / "b" / "report.csv")
    with pytest.raises(BadInputError, match="is a FIFO"):
        write_outputs(full_report(), tmp_path / "b")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not (tmp_path / "b" / "report.json").exists()
