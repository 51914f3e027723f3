"""``volo-gate``: fail CI when a bench report regresses against a committed baseline.

Exit 0 within limits, 1 on a regression, 2 on bad input (missing file, other schema, other
model or data fingerprints; other hardware with ``--require-same-hardware``). Latency is compared
only between reports of the same hardware fingerprint. ``--update-baseline`` writes the report as
the new baseline (atomically) and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from volo_deploy.cli.common import add_common_flags, non_negative_float, non_negative_int, run_cli, setup_logging


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a confidence in [0.5, 1), found {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="volo-gate", description=__doc__.splitlines()[0])
    add_common_flags(p)
    p.add_argument("--report", type=Path, required=True, help="report.json of this run (volo-bench)")
    p.add_argument("--baseline", type=Path, required=True, help="the committed baseline report.json")
    p.add_argument("--max-top1-drop", type=non_negative_float, default=0.3,
                   help="allowed top-1 drop, percentage points (default 0.3)")
    p.add_argument("--max-agreement-drop", type=non_negative_float, default=0.5,
                   help="allowed drop of top-1 agreement with FP32 PyTorch, percentage points (default 0.5)")
    p.add_argument("--max-latency-regression", default="10%",
                   help="allowed p50 latency rise per batch size: 10%% or 0.1, 'off' to not gate (default 10%%)")
    p.add_argument("--latency-floor-ms", type=non_negative_float, default=0.0,
                   help="ignore p50 rises of at most this many ms (default 0)")
    p.add_argument("--confidence", type=_confidence, default=0.95,
                   help="a latency check fails only when the rise exceeds the limit with this one-sided "
                        "bootstrap confidence (default 0.95)")
    p.add_argument("--remeasure", type=non_negative_int, nargs="?", const=3, default=0, metavar="N",
                   help="re-time a failing or inconclusive latency cell up to N times (default N 3) with the "
                        "report's artifacts and settings, on the report's hardware only; decide on the least "
                        "disturbed measurement")
    p.add_argument("--require-same-hardware", action="store_true",
                   help="exit 2 when the reports come from different hardware (default: skip latency checks)")
    p.add_argument("--junit", type=Path, default=None, help="write JUnit XML here")
    p.add_argument("--update-baseline", action="store_true", help="write the report as the new baseline, exit 0")
    return p


def _main(argv: list[str] | None) -> int:
    from volo_deploy.errors import BadInputError
    from volo_deploy.harness import gate
    from volo_deploy.harness.report import load_report

    args = build_parser().parse_args(argv)
    setup_logging(args)
    try:
        limits = gate.GateLimits(args.max_top1_drop, args.max_agreement_drop,
                                 gate.parse_fraction(args.max_latency_regression), args.latency_floor_ms,
                                 args.confidence, args.remeasure)
        report = load_report(args.report, "report")
        if args.update_baseline:
            return _update_baseline(args, report, limits)
        baseline = load_report(args.baseline, "baseline")
        gate.check_comparable(report, baseline)
        hardware = gate.hardware_note(report, baseline)
        if hardware and args.require_same_hardware:
            raise BadInputError(f"{hardware}; --require-same-hardware")
    except BadInputError as exc:
        if args.junit:
            gate.write_junit(args.junit, gate.junit_xml([], error=str(exc)))
        raise
    if hardware:
        print(f"volo-gate: {hardware}: latency checks skipped, accuracy compared\n")
    checks = gate.compare(report, baseline, limits, _remeasurer(report, args.remeasure and not hardware))
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


def _remeasurer(report: dict, wanted: bool):
    """The remeasure callable, or None (with the reason printed) when it cannot run here."""
    if not wanted:
        return None
    from volo_deploy.harness.gate import RemeasureError
    from volo_deploy.harness.remeasure import remeasurer

    try:
        return remeasurer(report)
    except RemeasureError as exc:
        print(f"volo-gate: not re-measuring: {exc}")
        return None


def _props(report: dict) -> dict[str, str]:
    fp = report["fingerprints"]
    props = {"model_fingerprint": fp["model"], "data_fingerprint": fp["data"]}
    return props | ({"hardware_fingerprint": fp["hardware"]} if fp.get("hardware") else {})


def _update_baseline(args: argparse.Namespace, report: dict, limits) -> int:
    """Show the comparison when there is a comparable baseline, then replace it (atomic)."""
    from volo_deploy.artifacts import atomic_write_json
    from volo_deploy.errors import BadInputError
    from volo_deploy.harness import gate
    from volo_deploy.harness.report import load_report

    try:
        old = load_report(args.baseline, "baseline")
        gate.check_comparable(report, old)
        checks = gate.compare(report, old, limits)
        print(gate.format_table(checks))
        if args.junit:
            gate.write_junit(args.junit, gate.junit_xml(checks, properties=_props(report)))
    except BadInputError as exc:
        print(f"previous baseline not compared: {exc}")
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.baseline, report)
    print(f"volo-gate: baseline {args.baseline} updated from {args.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
