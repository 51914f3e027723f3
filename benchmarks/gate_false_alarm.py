"""False alarms and detections of ``volo-gate`` on repeated ``volo-bench`` runs of unchanged code.

    python benchmarks/gate_false_alarm.py [--runs 6] [--iters 30] [--threads N] [--limit 10%] [--out DIR] [--reuse]

``--runs`` runs of ``volo-bench`` on the bundled demo (torch, onnxruntime, openvino; fp32, int8;
batch 1 and 8; exports made by the first run and reused, hash-checked, by the others; ``--reuse``
gates the reports already in ``--out``), then gated with the default limits against two kinds of
baseline: every other run (ordered pairs i != j), and a quiet-machine proxy (per cell, the run with
the lowest p50 among the others). Three rules side by side:

- ``p50 only``: the gate before per-call samples (samples removed: one median each, +10% fails);
- ``bootstrap``: the default gate on the samples (block-bootstrap bound on the ratio of medians);
- ``+remeasure``: the same with ``--remeasure`` (3 rounds; the rounds of run j's cells are measured
  once, when first needed, and shared by every baseline).

and the same gates with a real slowdown: run j's samples (and p50s) scaled by 1.3, and its
re-measurements too. Printed: gates failing (exit 1 on latency) and latency cells failing, for the
unchanged runs (false alarms) and the slowed ones (detections).
Target: 0 false failures in 20+ gated pairs, every 30% slowdown caught.

Measured on the same 2-core AMD EPYC Zen 4 box once idle (load average 1.0; 6 runs, 30 timed calls,
threads not pinned, limit 10%, confidence 0.95; bench runs 5-21 s, total 111 s, re-measuring 44 s)::

    baseline = another run (30 ordered pairs, 300 latency cells)
    rule          unchanged: gates failing  cells failing   slowed x1.3: gates failing  cells failing
    p50 only                10/30 (33%)      12/300  (4%)               30/30 (100%)    299/300 (100%)
    bootstrap                2/30  (7%)       2/300  (1%)               30/30 (100%)    286/300  (95%)
    +remeasure               0/30  (0%)       0/300  (0%)               30/30 (100%)    279/300  (93%)

    baseline = the quietest other run, per cell (6 gates, 60 cells)
    p50 only                 3/6  (50%)       4/60   (7%)                6/6  (100%)     60/60  (100%)
    bootstrap                1/6  (17%)       1/60   (2%)                6/6  (100%)     60/60  (100%)
    +remeasure               0/6   (0%)       0/60   (0%)                6/6  (100%)     60/60  (100%)

So on an idle runner the gate as the README's CI example runs it (samples + ``--remeasure``) met the
target: no false failure in 30 gated pairs, every slowed gate failed. The runs below were made earlier
on the same box while it was shared with five other jobs.

Measured on the shared 2-core AMD EPYC (Zen 4, avx512_vnni/avx512_bf16) dev box while five other
engineers built, tested and benchmarked on it (load average 5-9 during the bench runs, ~5 during
the re-measuring: far noisier than an idle CI runner), 6 runs, 30 timed calls, threads not pinned
(torch 2), limit 10%, confidence 0.95 (bench runs 91-225 s each; gating 123 s, of which
re-measuring 115 s)::

    baseline = another run (30 ordered pairs, 240 latency cells)
    rule          unchanged: gates failing  cells failing   slowed x1.3: gates failing  cells failing
    p50 only                27/30 (90%)     105/240 (44%)               30/30 (100%)    154/240 (64%)
    bootstrap               20/30 (67%)      52/240 (22%)               25/30  (83%)    103/240 (43%)
    +remeasure               1/30  (3%)       1/240  (0%)                9/30  (30%)     16/240  (7%)

    baseline = the quietest other run, per cell (6 gates, 48 cells)
    p50 only                 6/6 (100%)      37/48  (77%)                6/6  (100%)     45/48  (94%)
    bootstrap                6/6 (100%)      23/48  (48%)                6/6  (100%)     36/48  (75%)
    +remeasure               1/6  (17%)       1/48   (2%)                5/6   (83%)     12/48  (25%)

The same an hour later with ``--threads 1`` (load average 2-5; bench runs 16-45 s; gating 280 s
with re-measuring 49 s)::

    baseline = another run (30 ordered pairs, 240 latency cells)
    p50 only                22/30 (73%)      79/240 (33%)               29/30  (97%)    169/240 (70%)
    bootstrap               18/30 (60%)      54/240 (22%)               28/30  (93%)    147/240 (61%)
    +remeasure               4/30 (13%)       4/240  (2%)               27/30  (90%)    116/240 (48%)

    baseline = the quietest other run, per cell (6 gates, 48 cells)
    p50 only                 6/6 (100%)      25/48  (52%)                6/6  (100%)     47/48  (98%)
    bootstrap                5/6  (83%)      15/48  (31%)                6/6  (100%)     42/48  (88%)
    +remeasure               2/6  (33%)       2/48   (4%)                6/6  (100%)     41/48  (85%)

And right after, threads not pinned again (torch 2 on the 2 cores; load average 2.6-4, like the
``--threads 1`` run; bench runs 25-72 s; gating 470 s with re-measuring 123 s)::

    baseline = another run (30 ordered pairs, 240 latency cells)
    p50 only                30/30 (100%)    107/240 (45%)               30/30 (100%)    148/240 (62%)
    bootstrap               26/30  (87%)     61/240 (25%)               29/30  (97%)     98/240 (41%)
    +remeasure               1/30   (3%)      2/240  (1%)                6/30  (20%)      8/240  (3%)

    baseline = the quietest other run, per cell (6 gates, 48 cells)
    p50 only                 6/6 (100%)      38/48  (79%)                6/6  (100%)     44/48  (92%)
    bootstrap                6/6 (100%)      28/48  (58%)                6/6  (100%)     35/48  (73%)
    +remeasure               1/6  (17%)       2/48   (4%)                5/6   (83%)      8/48  (17%)

Reading: the target is not met on this machine, and cannot be by any rule that compares two runs:
the same cell's median differed up to 8.9x between the unchanged runs (torch fp32 batch 1:
77-678 ms; 2.6 ms on the same box when it was quiet), so a 30% slowdown is far inside the noise.
The samples + bootstrap rule halves the false alarms of the old p50 rule (cells 44% -> 22%) and
re-measuring removes nearly all (1 of 240 cells); the price is detection: the re-measurements ran
at a lower load than the disturbed runs and baselines, and deciding on the least disturbed
measurement then hides a 30% slowdown behind a baseline that was itself slowed by more. Threads
matter as much as load: with torch on 2 threads on 2 busy cores its batch-1 median ran 10-50 ms
(2.6 ms quiet) and re-measuring caught 3% of the slowed cells; pinned to 1 thread at the same
load, re-measuring kept 85-90% of the slowed gates failing while cutting false alarms from 22%
to 2% of cells. A baseline made on a quiet machine is what lets a 30% slowdown show in every
measurement (the stand-in tests in ``tests/test_harness_gate.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from volo_deploy.harness.gate import GateLimits, RemeasureError, compare, parse_fraction  # noqa: E402
from volo_deploy.harness.remeasure import remeasurer  # noqa: E402

SLOWDOWN = 1.3


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


def quietest(reports: list[dict], exclude: int) -> dict:
    """A baseline as if made on a quiet machine: per cell, the latency entry with the lowest p50 among
    the runs other than ``exclude``."""
    others = [r for k, r in enumerate(reports) if k != exclude]
    base = copy.deepcopy(others[0])
    for res in base["results"]:
        for bs, lat in (res.get("latency") or {}).items():
            key = (res["backend"], res["precision"])
            entries = [x["latency"][bs] for r in others for x in r["results"]
                       if (x["backend"], x["precision"]) == key and bs in (x.get("latency") or {})]
            lat.update(min(entries, key=lambda e: e["p50_ms"]))
    return base


def without_samples(report: dict) -> dict:
    r = copy.deepcopy(report)
    for res in r["results"]:
        for lat in (res.get("latency") or {}).values():
            lat.pop("samples_ms", None)
    return r


class CachedRemeasure:
    """Round k of a cell of run j is measured once and shared by every baseline (and scaled for 'slowed')."""

    def __init__(self, report: dict) -> None:
        self.real = remeasurer(report)
        self.rounds: dict[tuple[str, str, int], list[list[float]]] = {}
        self.factor = 1.0
        self.seconds = 0.0

    def session(self, factor: float):
        calls: dict[tuple[str, str, int], int] = {}

        def remeasure(backend: str, precision: str, batch: int) -> list[float]:
            key = (backend, precision, batch)
            k = calls[key] = calls.get(key, -1) + 1
            done = self.rounds.setdefault(key, [])
            if k >= len(done):
                t0 = time.perf_counter()
                done.append(self.real(backend, precision, batch))
                self.seconds += time.perf_counter() - t0
            return [t * factor for t in done[k]]

        return remeasure


def gate_pair(report: dict, baseline: dict, limits: GateLimits, remeasure=None) -> tuple[int, int]:
    """(failed latency checks, latency checks) of one gated pair."""
    lat = [c for c in compare(report, baseline, limits, remeasure) if c.metric.startswith("latency")]
    return sum(c.passed is False for c in lat), len(lat)


def rate_rules(reports: list[dict], todo: list[tuple[dict, int]], limits: GateLimits, cached) -> dict:
    """rule -> ((gates failing, gates, cells failing, cells) unchanged, (same) slowed x1.3)."""
    rows = {}
    for rule in ("p50 only", "bootstrap", "+remeasure"):
        if rule == "+remeasure" and cached is None:
            continue
        counts = []
        for factor in (1.0, SLOWDOWN):
            gates = fails = cells = 0
            for base, j in todo:
                cur = scaled(reports[j], factor)
                if rule == "p50 only":
                    cur, base = without_samples(cur), without_samples(base)
                rm = cached[j].session(factor) if rule == "+remeasure" else None
                f, n = gate_pair(cur, base, limits, rm)
                gates, fails, cells = gates + (f > 0), fails + f, cells + n
            counts.append((gates, len(todo), fails, cells))
        rows[rule] = tuple(counts)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="volo-bench --threads (default: not pinned)")
    ap.add_argument("--limit", default="10%")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=Path("gate_false_alarm"))
    ap.add_argument("--reuse", action="store_true", help="gate the reports already in --out (no new bench runs)")
    args = ap.parse_args()
    limits = GateLimits(max_latency_regression=parse_fraction(args.limit), confidence=args.confidence)
    t0 = time.perf_counter()
    reports = []
    for i in range(args.runs):
        if args.reuse:
            reports.append(json.loads((args.out / f"run{i}" / "report.json").read_text()))
        else:
            reports.append(bench(args.out / f"run{i}", args.out / "artifacts", args.iters, args.threads))
        print(f"run {i}: {reports[-1]['elapsed_seconds']} s", flush=True)
    try:
        cached = [CachedRemeasure(r) for r in reports]
    except RemeasureError as exc:
        print(f"no remeasure: {exc}")
        cached = None
    pairs = [(i, j) for j in range(args.runs) for i in range(args.runs) if i != j]
    scenarios = {
        "baseline = another run (ordered pairs i != j)": [(reports[i], j) for i, j in pairs],
        "baseline = the quietest other run, per cell": [(quietest(reports, j), j) for j in range(args.runs)],
    }
    tables = {name: rate_rules(reports, todo, limits, cached) for name, todo in scenarios.items()}
    print(f"\n{args.runs} runs, limit {args.limit}, confidence {args.confidence}; "
          f"total {time.perf_counter() - t0:.0f} s"
          + (f" (re-measuring {sum(c.seconds for c in cached):.0f} s)" if cached else ""))
    for name, rows in tables.items():
        print(f"\n{name}\n{'rule':<12} {'unchanged: gates failing':>26} {'cells failing':>15}   "
              f"{'slowed x1.3: gates failing':>26} {'cells failing':>14}")
        for rule, ((bp, n, f, c), (sp, _, sf, sc)) in rows.items():
            print(f"{rule:<12} {bp:>14}/{n:<3} ({bp / n:4.0%}) {f:>6}/{c:<4} ({f / c:4.0%})   "
                  f"{sp:>14}/{n:<3} ({sp / n:4.0%}) {sf:>5}/{sc:<4} ({sf / sc:4.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
