"""False alarms and detections of ``volo-gate`` as it runs by default, on repeated ``volo-bench`` runs.

    python benchmarks/gate_false_alarm.py [--runs 11] [--iters 30] [--threads N] [--limit 10%] [--out DIR] [--reuse]

``--runs`` runs of ``volo-bench`` on the bundled demo (torch, onnxruntime, openvino; fp32, int8;
batch 1 and 8; exports made by the first run and reused, hash-checked, by the others; ``--reuse``
gates the reports already in ``--out``). Each run is gated against the one before it (``--runs``
11: 10 unchanged rerun pairs), under four rules:

- ``p50 only``: one median per cell, +10% fails (the gate before per-call samples);
- ``samples``: ``volo-gate --no-remeasure`` (block-bootstrap bound on the ratio of medians);
- ``report re-timed``: suspect cells re-timed with the report's artifact only, compared with the
  baseline's stored samples (the fallback when the baseline's artifact is not reachable);
- ``default``: ``volo-gate --report R --baseline B``: every latency cell re-timed with the report's
  and the baseline's artifacts interleaved, call by call (the median of per-pair ratios decides).

and the same pairs with a real slowdown: the candidate's samples (and p50s) scaled by 1.3 and its
re-timings too (the baseline's interleaved re-timings are not scaled). A cell's re-timing rounds
are measured once per pair and shared by its unchanged and slowed gates. The unchanged pairs are
also gated through the installed ``volo-gate`` CLI in its default form (exit codes counted).
Printed, and written to ``--out``/summary.json: gates failing and latency cells failing, unchanged
(false alarms) and slowed (detections). Target: no false failure, every 30% slowdown caught.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from volo_deploy.harness.gate import GateLimits, RemeasureError, Retiming, compare, parse_fraction  # noqa: E402
from volo_deploy.harness.remeasure import remeasurer  # noqa: E402
from volo_deploy.harness.report_schema import BenchReport  # noqa: E402

SLOWDOWN = 1.3
RULES = ("p50 only", "samples", "report re-timed", "default")


def bench(out: Path, artifacts: Path, iters: int, threads: int | None) -> dict:
    """One ``volo-bench`` run of the demo as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-m", "volo_deploy.cli.bench", "--backends", "torch,onnxruntime,openvino",
           "--precisions", "fp32,int8", "--iters", str(iters), "--quiet", "--artifacts", str(artifacts),
           "--out", str(out)] + (["--threads", str(threads)] if threads else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def scaled(report: dict, factor: float) -> dict:
    """``report`` with every latency sample and p50 multiplied by ``factor``."""
    r = copy.deepcopy(report)
    for res in r["results"]:
        for lat in (res.get("latency") or {}).values():
            lat["p50_ms"] *= factor
            if lat.get("samples_ms"):
                lat["samples_ms"] = [t * factor for t in lat["samples_ms"]]
    return r


def without_samples(report: dict) -> dict:
    r = copy.deepcopy(report)
    for res in r["results"]:
        for lat in (res.get("latency") or {}).values():
            lat.pop("samples_ms", None)
    return r


class Recorded:
    """Round k of a cell is measured once (by ``real``) and replayed for every factor."""

    def __init__(self, real) -> None:
        self.real, self.rounds, self.seconds = real, {}, 0.0

    def session(self, factor: float):
        calls: dict[tuple[str, str, int], int] = {}

        def remeasure(backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming | None:
            key = (backend, precision, batch)
            k = calls.get(key, 0)
            done = self.rounds.setdefault(key, [])
            if k >= len(done):
                t0 = time.perf_counter()
                got = self.real(backend, precision, batch, interleaved_only)
                self.seconds += time.perf_counter() - t0
                if got is None:
                    return None
                done.append(got)
            calls[key] = k + 1
            r = done[k]
            return Retiming([t * factor for t in r.candidate], r.baseline, r.note)

        return remeasure


def gate_pair(cur: dict, base: dict, limits: GateLimits, remeasure=None) -> tuple[int, int]:
    """(failed latency checks, latency checks) of one gated pair."""
    checks = compare(BenchReport.from_json(cur), BenchReport.from_json(base), limits, remeasure)
    lat = [c for c in checks if c.metric.startswith("latency")]
    return sum(c.passed is False for c in lat), len(lat)


def rate(reports: list[dict], limits: GateLimits) -> tuple[dict, float]:
    """rule -> [unchanged (gates failing, gates, cells failing, cells), slowed (same)]; seconds re-timing."""
    rows = {rule: [[0, 0, 0, 0], [0, 0, 0, 0]] for rule in RULES}
    seconds = 0.0
    for j in range(1, len(reports)):
        base, cand = reports[j - 1], reports[j]
        tb, tc = BenchReport.from_json(base), BenchReport.from_json(cand)
        retimers = {"report re-timed": remeasurer(tc), "default": remeasurer(tc, tb)}
        recorded = {k: Recorded(v) for k, v in retimers.items()}
        for k, factor in enumerate((1.0, SLOWDOWN)):
            cur = scaled(cand, factor)
            for rule in RULES:
                if rule == "p50 only":
                    f, n = gate_pair(without_samples(cur), without_samples(base), limits)
                else:
                    rm = recorded[rule].session(factor) if rule in recorded else None
                    f, n = gate_pair(cur, base, limits, rm)
                counts = rows[rule][k]
                counts[0] += f > 0
                counts[1] += 1
                counts[2] += f
                counts[3] += n
        for r in retimers.values():
            r.close()
        seconds += sum(r.seconds for r in recorded.values())
        print(f"pair {j - 1}->{j} gated", flush=True)
    return rows, seconds


def cli_exits(out: Path, runs: int) -> list[int]:
    """Exit codes of ``volo-gate --report run<j> --baseline run<j-1>`` (default form) for the unchanged pairs."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    codes = []
    for j in range(1, runs):
        p = subprocess.run(["volo-gate", "--report", str(out / f"run{j}" / "report.json"), "--baseline",
                            str(out / f"run{j - 1}" / "report.json")], env=env, capture_output=True, text=True)
        codes.append(p.returncode)
    return codes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="volo-bench --threads (default: not pinned)")
    ap.add_argument("--limit", default="10%")
    ap.add_argument("--out", type=Path, default=Path("gate_false_alarm"))
    ap.add_argument("--reuse", action="store_true", help="gate the reports already in --out (no new bench runs)")
    args = ap.parse_args()
    limits = GateLimits(max_latency_regression=parse_fraction(args.limit))
    t0 = time.perf_counter()
    reports = []
    for i in range(args.runs):
        if args.reuse:
            reports.append(json.loads((args.out / f"run{i}" / "report.json").read_text()))
        else:
            reports.append(bench(args.out / f"run{i}", args.out / "artifacts", args.iters, args.threads))
        print(f"run {i}: {reports[-1]['elapsed_seconds']} s", flush=True)
    load = [os.getloadavg()[0]]
    try:
        rows, seconds = rate(reports, limits)
    except RemeasureError as exc:
        print(f"cannot re-time here: {exc}")
        return 2
    load.append(os.getloadavg()[0])
    codes = cli_exits(args.out, args.runs)
    load.append(os.getloadavg()[0])
    n = args.runs - 1
    print(f"\n{n} rerun pairs, limit {args.limit}, confidence {limits.confidence}; total "
          f"{time.perf_counter() - t0:.0f} s (re-timing {seconds:.0f} s); load average (1 min) {load}")
    print(f"{'rule':<16} {'unchanged: gates failing':>26} {'cells failing':>15}   "
          f"{'slowed x1.3: gates failing':>26} {'cells failing':>14}")
    for rule, ((bp, g, f, c), (sp, _, sf, sc)) in rows.items():
        print(f"{rule:<16} {bp:>14}/{g:<3} ({bp / g:4.0%}) {f:>6}/{c:<4} ({f / c:4.0%})   "
              f"{sp:>14}/{g:<3} ({sp / g:4.0%}) {sf:>5}/{sc:<4} ({sf / sc:4.0%})")
    print(f"volo-gate CLI, default form, unchanged pairs: exit codes {codes} ({codes.count(1)} of {n} failed)")
    summary = {"runs": args.runs, "iters": args.iters, "threads": args.threads, "limit": args.limit,
               "load_average_1min": load, "rules": rows, "cli_exit_codes": codes, "retiming_seconds": seconds}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
