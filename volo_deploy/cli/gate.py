"""``volo-gate``: fail CI when a bench report regresses against a committed baseline.

Both reports are checked against the report schema before anything is compared. Latency is
compared only between reports of the same hardware fingerprint and re-timed here by default
(baseline and candidate exports interleaved where both are reachable).
``--update-baseline`` writes the report as the new baseline (atomically) and exits 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from volo_deploy.cli.common import add_common_flags, non_negative_int, run_cli, setup_logging
from volo_deploy.options import finite_in

EPILOG = """\
exit codes:
  0    every check within its limit (inconclusive latency checks are listed as WARN)
  1    regression: the table shows what moved, by how much, against which limit
  2    bad input: a missing, unreadable or invalid report or baseline (schema, types, NaN,
       negative or zero latency, percentages outside 0-100; the message names file, row and
       field), different model/data fingerprints, a bad threshold, an unwritable --junit or
       --update-baseline path; other hardware with --require-same-hardware
  130  interrupted (Ctrl-C, SIGINT)
  143  terminated (SIGTERM)

--junit FILE and --update-baseline write a regular file atomically (temp file + rename). An
existing FIFO, device, socket or folder at that path, a path under a regular file, or a folder
that cannot be written is refused with exit 2 and left untouched. A symlink is followed: the
regular file it points to is replaced and the link stays (a dangling link creates its target).
"""


class _Terminated(BaseException):
    """SIGTERM, raised where the gate is (temp files are cleaned up on the way out)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


_finite = finite_in(0.0, math.inf, "a finite number >= 0")
_confidence = finite_in(0.5, 1.0, "a confidence in [0.5, 1)", high_open=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="volo-gate", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(p)
    p.add_argument("--report", type=Path, required=True, help="report.json of this run (volo-bench)")
    p.add_argument("--baseline", type=Path, required=True, help="the committed baseline report.json")
    p.add_argument("--max-top1-drop", type=_finite, default=0.3,
                   help="allowed top-1 drop, percentage points (default 0.3)")
    p.add_argument("--max-agreement-drop", type=_finite, default=0.5,
                   help="allowed drop of top-1 agreement with FP32 PyTorch, percentage points (default 0.5)")
    p.add_argument("--max-latency-regression", default="10%",
                   help="allowed p50 latency rise per batch size: 10%% or 0.1, 'off' to not gate (default 10%%)")
    p.add_argument("--latency-floor-ms", type=_finite, default=0.0,
                   help="ignore p50 rises of at most this many ms (default 0)")
    p.add_argument("--confidence", type=_confidence, default=0.95,
                   help="a latency check fails only when the rise exceeds the limit with this one-sided "
                        "bootstrap confidence (default 0.95)")
    p.add_argument("--remeasure", type=non_negative_int, nargs="?", const=3, default=3, metavar="N",
                   help="re-time latency here, up to N rounds per cell (default 3), with the report's exports, "
                        "threads and number of calls, on the report's hardware only: where the baseline's export "
                        "is reachable too (same library versions, threads, load options), every cell is re-timed "
                        "with both interleaved call by call and the per-pair ratios decide (a busy period slows "
                        "both); otherwise a failing or inconclusive cell is re-timed alone against the baseline's "
                        "samples, decided on the least disturbed round (the row says which). 0 or --no-remeasure: off")
    p.add_argument("--no-remeasure", dest="remeasure", action="store_const", const=0,
                   help="decide on the reports' own samples only (no re-timing)")
    p.add_argument("--require-same-hardware", action="store_true",
                   help="exit 2 when the reports come from different hardware (default: skip latency checks)")
    p.add_argument("--junit", type=Path, default=None, help="write JUnit XML here (see below)")
    p.add_argument("--update-baseline", action="store_true",
                   help="write the report as the new baseline (see below), exit 0")
    return p


def _main(argv: list[str] | None) -> int:
    from volo_deploy.errors import BadInputError
    from volo_deploy.harness import gate
    from volo_deploy.harness.report import check_output_file, load_report

    args = build_parser().parse_args(argv)
    setup_logging(args)
    junit_ok = False
    try:
        limits = gate.GateLimits(args.max_top1_drop, args.max_agreement_drop,
                                 gate.parse_fraction(args.max_latency_regression), args.latency_floor_ms,
                                 args.confidence, args.remeasure)
        if args.junit:
            check_output_file(args.junit, "--junit")
            junit_ok = True
        if args.update_baseline:
            check_output_file(args.baseline, "--update-baseline: baseline")
        report = load_report(args.report, "report")
        if args.update_baseline:
            return _update_baseline(args, report, limits)
        baseline = load_report(args.baseline, "baseline")
        gate.check_comparable(report, baseline)
        hardware = gate.hardware_note(report, baseline)
        if hardware and args.require_same_hardware:
            raise BadInputError(f"{hardware}; --require-same-hardware")
    except BadInputError as exc:
        if junit_ok:
            gate.write_junit(args.junit, gate.junit_xml([], error=str(exc)))
        raise
    if hardware:
        print(f"volo-gate: {hardware}: latency checks skipped, accuracy compared\n")
    retimer = _remeasurer(report, baseline, limits.remeasure_rounds > 0 and not hardware)
    try:
        checks = gate.compare(report, baseline, limits, retimer)
    finally:
        if retimer is not None:
            retimer.close()
    return _conclude(args, report, checks)


def _conclude(args: argparse.Namespace, report, checks: list) -> int:
    from volo_deploy.harness import gate

    print(gate.format_table(checks))
    failed = [c for c in checks if c.passed is False]
    if args.junit:
        gate.write_junit(args.junit, gate.junit_xml(checks, properties=_props(report)))
    if failed:
        print(f"\nvolo-gate: {len(failed)} regression(s) in {len(checks)} checks against {args.baseline}")
        return 1
    unsure = sum(c.result == "WARN" for c in checks)
    print(f"\nvolo-gate: {sum(c.passed is True for c in checks)} checks within limits against {args.baseline}"
          + (f" ({unsure} inconclusive latency check(s), see WARN rows)" if unsure else ""))
    return 0


class _LazyRemeasurer:
    """Re-timing, set up at the first suspect cell (loading the runtimes costs seconds); where it cannot
    run here, each suspect row says why and the gate keeps the verdict of the reports' own samples."""

    def __init__(self, report, baseline) -> None:
        self.report, self.baseline, self.real, self.error = report, baseline, None, ""

    def __call__(self, backend: str, precision: str, batch: int, interleaved_only: bool = False):
        from volo_deploy.harness.gate import RemeasureError
        from volo_deploy.harness.remeasure import remeasurer

        if self.real is None and not self.error:
            try:
                self.real = remeasurer(self.report, self.baseline)
            except RemeasureError as exc:
                self.error = str(exc)
        if self.error:
            raise RemeasureError(self.error)
        return self.real(backend, precision, batch, interleaved_only)

    def close(self) -> None:
        if self.real is not None:
            self.real.close()


def _remeasurer(report, baseline, wanted: bool) -> _LazyRemeasurer | None:
    return _LazyRemeasurer(report, baseline) if wanted else None


def _props(report) -> dict[str, str]:
    fp = report.fingerprints
    return {"model_fingerprint": fp.model, "data_fingerprint": fp.data} | (
        {"hardware_fingerprint": fp.hardware} if fp.hardware else {})


def _update_baseline(args: argparse.Namespace, report, limits) -> int:
    """Show the comparison when there is a comparable baseline, then replace it (atomic)."""
    import json

    from volo_deploy.errors import BadInputError
    from volo_deploy.harness import gate
    from volo_deploy.harness.report import load_report, write_file

    try:
        old = load_report(args.baseline, "baseline")
        gate.check_comparable(report, old)
        checks = gate.compare(report, old, limits)
        print(gate.format_table(checks))
        if args.junit:
            gate.write_junit(args.junit, gate.junit_xml(checks, properties=_props(report)))
    except BadInputError as exc:
        print(f"previous baseline not compared: {exc}")
    write_file(args.baseline, (json.dumps(report.to_json(), indent=2) + "\n").encode(), "--update-baseline: baseline")
    print(f"volo-gate: baseline {args.baseline} updated from {args.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return run_cli(_main, argv)
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
