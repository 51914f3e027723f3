"""False alarms and detections of ``volo-gate`` on repeated ``volo-bench`` runs of unchanged code.

    python benchmarks/gate_false_alarm.py [--runs 6] [--iters 30] [--limit 10%] [--out DIR]

``--runs`` runs of ``volo-bench`` on the bundled demo (torch, onnxruntime, openvino; fp32, int8;
batch 1 and 8; exports made by the first run and reused, hash-checked, by the others), then
every ordered pair (report j gated against baseline i, i != j) with the default limits, three ways:

- ``p50 only``: the gate before per-call samples (samples removed: one median each, +limit fails);
- ``bootstrap``: the default gate on the samples (block-bootstrap bound on the ratio of medians);
- ``+remeasure``: the same with ``--remeasure`` (3 rounds; rounds of report j's cells are measured
  once, when first needed, and reused for every baseline i).

and the same pairs with a real slowdown: report j's samples (and p50s) scaled by 1.3, and its
re-measurements too. Printed side by side: false-alarm rate (unchanged pairs where the gate exits
1 on latency) and detection rate (slowed latency cells that FAIL; pairs that exit 1).
Target: 0 false failures in 20+ gated pairs, every 30% slowdown caught.

Measured on the shared 2-core AMD EPYC (Zen 4, avx512_vnni/avx512_bf16) dev box while five other
engineers built and tested on it (load average 2-6: far noisier than an idle CI runner), 6 runs,
30 timed calls, 30 ordered pairs, limit 10%, confidence 0.95: see the figures below (filled in from
the run reported with this change).
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


def bench(out: Path, artifacts: Path, iters: int) -> dict:
    """One ``volo-bench`` run of the demo as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-m", "volo_deploy.cli.bench", "--backends", "torch,onnxruntime,openvino",
           "--precisions", "fp32,int8", "--iters", str(iters), "--quiet", "--artifacts", str(artifacts),
           "--out", str(out)]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--limit", default="10%")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=Path("gate_false_alarm"))
    args = ap.parse_args()
    limits = GateLimits(max_latency_regression=parse_fraction(args.limit), confidence=args.confidence)
    t0 = time.perf_counter()
    reports = []
    for i in range(args.runs):
        reports.append(bench(args.out / f"run{i}", args.out / "artifacts", args.iters))
        print(f"run {i}: {reports[-1]['elapsed_seconds']} s", flush=True)
    try:
        cached = [CachedRemeasure(r) for r in reports]
    except RemeasureError as exc:
        print(f"no remeasure: {exc}")
        cached = None
    pairs = [(i, j) for j in range(args.runs) for i in range(args.runs) if i != j]
    rows = {}
    for name in ("p50 only", "bootstrap", "+remeasure"):
        if name == "+remeasure" and cached is None:
            continue
        for kind, factor in (("unchanged", 1.0), ("slowed x1.3", SLOWDOWN)):
            cells = bad_pairs = fails = 0
            for i, j in pairs:
                cur, base = scaled(reports[j], factor), reports[i]
                if name == "p50 only":
                    cur, base = without_samples(cur), without_samples(base)
                rm = cached[j].session(factor) if name == "+remeasure" else None
                f, n = gate_pair(cur, base, limits, rm)
                fails, cells, bad_pairs = fails + f, cells + n, bad_pairs + (f > 0)
            rows[(name, kind)] = (bad_pairs, len(pairs), fails, cells)
    print(f"\n{args.runs} runs, {len(pairs)} ordered pairs, limit {args.limit}, confidence {args.confidence}; "
          f"total {time.perf_counter() - t0:.0f} s"
          + (f" (re-measuring {sum(c.seconds for c in cached):.0f} s)" if cached else ""))
    print(f"{'rule':<12} {'unchanged: pairs failing':>26} {'cells failing':>15}   "
          f"{'slowed x1.3: pairs caught':>26} {'cells caught':>14}")
    for name in ("p50 only", "bootstrap", "+remeasure"):
        if (name, "unchanged") not in rows:
            continue
        bp, np_, f, n = rows[(name, "unchanged")]
        sp, _, sf, sn = rows[(name, "slowed x1.3")]
        print(f"{name:<12} {bp:>14}/{np_:<3} ({bp / np_:4.0%}) {f:>6}/{n:<4} ({f / n:4.0%})   "
              f"{sp:>14}/{np_:<3} ({sp / np_:4.0%}) {sf:>5}/{sn:<4} ({sf / sn:4.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
