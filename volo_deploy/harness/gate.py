"""Compare a bench report with a baseline: what moved, by how much, against which limit.

Both are :class:`~volo_deploy.harness.report_schema.BenchReport` (checked against the schema when
read). Checks per backend x precision of the baseline (only cases that were ``ok`` there are gated):

- ``status``: still ``ok`` (a case that disappeared or now fails is a regression);
- ``top1``: drop of top-1 in percentage points <= ``max_top1_drop_pp`` (when labeled);
- ``agreement``: drop of top-1 agreement with FP32 PyTorch in points <= ``max_agreement_drop_pp``;
- ``latency_bs<N>``: rise of the median latency, decided on the per-call samples of both reports
  (:func:`volo_deploy.harness.stats.latency_ratio`: block-bootstrap bound on the ratio of medians).
  FAIL only when even the one-sided ``confidence`` lower bound of the rise exceeds
  ``max_latency_regression`` (and the median rose by more than ``latency_floor_ms``); WARN
  (inconclusive, not a failure, and said so) when the median rose beyond the limit but the bound
  did not. A ``remeasure`` callable re-times a failing or inconclusive cell up to
  ``remeasure_rounds`` times: where the baseline's own artifact can be timed here, the two are
  timed interleaved and the median of per-pair ratios decides (a busy period slows both calls of a
  pair); otherwise the fresh candidate is compared with the baseline's stored samples and the
  least disturbed round decides.
  Reports without samples (older ``bench_report/1``) are compared on their p50 alone.

Reports are only compared when model/data fingerprints are equal; otherwise
:class:`BadInputError` (exit 2): comparing other models or other images says nothing. Latency
is compared only between equal hardware fingerprints (:func:`hardware_note`); accuracy always.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from volo_deploy.errors import BadInputError, VoloDeployError
from volo_deploy.harness.report_schema import BenchReport, Latency, Result

EPS = 1e-9


@dataclass(frozen=True)
class GateLimits:
    """Allowed movement. Accuracy limits in percentage points; latency as a fraction (0.1 = +10%)."""

    max_top1_drop_pp: float = 0.3
    max_agreement_drop_pp: float = 0.5
    max_latency_regression: float | None = 0.10  # None: latency not gated
    latency_floor_ms: float = 0.0
    confidence: float = 0.95  # one-sided: FAIL needs the rise to exceed the limit with this confidence
    remeasure_rounds: int = 3  # re-timings of a suspect cell when a remeasure callable is given


class RemeasureError(VoloDeployError):
    """A cell cannot be re-timed here (artifact gone, other hardware...)."""


@dataclass(frozen=True)
class Retiming:
    """Fresh per-call latencies (ms) of one cell: the candidate's, and the baseline's artifact timed
    interleaved with it (None when the baseline's artifact cannot be timed here: ``note`` says why)."""

    candidate: list[float]
    baseline: list[float] | None = None
    note: str = ""


#: ``remeasure(backend, precision, batch, interleaved_only)`` -> a :class:`Retiming` (same settings as the
#: report); with ``interleaved_only`` None, untimed, when the baseline's artifact cannot be timed beside it.
Remeasure = Callable[[str, str, int, bool], "Retiming | None"]


@dataclass(frozen=True)
class Check:
    """One gated quantity; ``passed`` None = not applicable (skipped)."""

    backend: str
    precision: str
    metric: str
    baseline: str
    current: str
    change: str
    limit: str
    passed: bool | None
    message: str = ""
    warn: bool = False  # passed, but inconclusive: the message says why it is not a failure

    @property
    def result(self) -> str:
        if self.passed and self.warn:
            return "WARN"
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def parse_fraction(text: str) -> float | None:
    """``"10%"`` or ``"0.1"`` -> 0.1; ``"off"``/``"none"`` -> None (not gated). NaN, infinity refused."""
    t = str(text).strip().lower()
    if t in ("off", "none"):
        return None
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise BadInputError(f"latency limit {text!r}: expected e.g. 10% or 0.1 (or off)") from None
    if not math.isfinite(value):
        raise BadInputError(f"latency limit {text!r}: expected a finite number, e.g. 10% or 0.1 (or off)")
    if value < 0:
        raise BadInputError(f"latency limit {text!r} must not be negative")
    if not t.endswith("%") and value > 1.0:
        raise BadInputError(f"latency limit {text!r} is ambiguous: write {value:g}% or {value / 100:g}")
    return value


def check_comparable(report: BenchReport, baseline: BenchReport) -> None:
    """Refuse (BadInputError, exit 2) when the two reports measured a different model or data."""
    fr, fb = report.fingerprints, baseline.fingerprints
    for key, what in (("model", "model checkpoint"), ("data", "evaluation images")):
        r, b = getattr(fr, key), getattr(fb, key)
        if r != b:
            raise BadInputError(
                f"different {what}: report {key} fingerprint {r[:23]}... != baseline {b[:23]}...; "
                "refusing to compare (re-run volo-bench on the baseline's model/data, or --update-baseline)"
            )


def hardware_note(report: BenchReport, baseline: BenchReport) -> str | None:
    """None when both reports carry the same hardware fingerprint; else why latency cannot be compared."""
    from volo_deploy.machine import summary_line

    def who(r: BenchReport) -> str:
        return summary_line(r.get("machine")) if r.get("machine") else "machine not recorded"

    hr, hb = report.fingerprints.hardware, baseline.fingerprints.hardware
    if hr and hr == hb:
        return None
    if not hb or not hr:
        which = "baseline" if not hb else "report"
        return (f"the {which} has no hardware fingerprint (made before volo-gate compared hardware): treated as "
                f"different hardware; baseline: {who(baseline)}; report: {who(report)}")
    return f"different hardware: baseline {hb} ({who(baseline)}) vs report {hr} ({who(report)})"


def compare(
    report: BenchReport,
    baseline: BenchReport,
    limits: GateLimits = GateLimits(),
    remeasure: Remeasure | None = None,
) -> list[Check]:
    """Every check of ``report`` against ``baseline`` (see the module docstring).

    Latency checks are skipped (with the reason) when :func:`hardware_note` finds other hardware.
    """
    hw = hardware_note(report, baseline)
    if hw is not None:
        limits = replace(limits, max_latency_regression=None)
    cur = {(r.backend, r.precision): r for r in report.results}
    checks: list[Check] = []
    for b in baseline.results:
        checks += _case_checks(b, cur.get((b.backend, b.precision)), limits, remeasure, hw)
    base_keys = {(b.backend, b.precision) for b in baseline.results}
    for key, c in cur.items():
        if key not in base_keys:
            checks.append(Check(*key, "status", "missing", c.status, "new case", "not in baseline: not gated", None))
    return checks


def _case_checks(b: Result, c: Result | None, limits: GateLimits, remeasure: Remeasure | None,
                 hw: str | None) -> list[Check]:
    def status(base: str, now: str, change: str, limit: str, passed: bool | None, msg: str = "") -> Check:
        return Check(b.backend, b.precision, "status", base, now, change, limit, passed, msg)

    if not b.ok:
        return [status(b.status, c.status if c else "missing", "", "baseline not ok: not gated", None)]
    if c is None:
        return [status("ok", "missing", "case missing", "must stay ok", False, "not in the report")]
    if not c.ok:
        return [status("ok", c.status, "ok -> " + c.status, "must stay ok", False, c.reason or "")]
    checks = [status("ok", "ok", "", "must stay ok", True)]
    checks.append(_drop_check(b, "top1", _field(b.accuracy, "top1_pct"), _field(c.accuracy, "top1_pct"),
                              limits.max_top1_drop_pp))
    checks.append(_drop_check(b, "agreement", _field(b.agreement, "top1_agreement_pct"),
                              _field(c.agreement, "top1_agreement_pct"), limits.max_agreement_drop_pp))
    for bs, bl in sorted(b.latency.items(), key=lambda kv: int(kv[0])):
        checks.append(_latency_check(b.backend, b.precision, bs, bl, c.latency.get(bs), limits, remeasure, hw))
    return checks


def _field(section: Any, name: str) -> float | None:
    return getattr(section, name) if section is not None else None


def _drop_check(b: Result, metric: str, bv: float | None, cv: float | None, limit: float) -> Check:
    lim = f"drop <= {limit:g} pp"
    if bv is None or cv is None:
        return Check(b.backend, b.precision, metric, _pct(bv), _pct(cv), "", lim, None, "not measured in both")
    return Check(b.backend, b.precision, metric, _pct(bv), _pct(cv), f"{cv - bv:+.2f} pp", lim, bv - cv <= limit + EPS)


@dataclass(frozen=True)
class LatencyVerdict:
    """One latency comparison: ``state`` pass | fail | unsure, medians (ms), ratio estimate, why."""

    state: str
    base_ms: float
    now_ms: float
    est: Any  # volo_deploy.harness.stats.RatioEstimate
    note: str = ""


def _center(lat: Latency) -> tuple[float, list[float] | None]:
    import numpy as np

    samples = list(lat.samples_ms) if lat.samples_ms else None
    return (float(np.median(samples)) if samples else lat.p50_ms), samples


def judge_latency(bl: Latency, cl: Latency, limits: GateLimits) -> LatencyVerdict:
    """Compare one batch size's latency entries (``samples_ms`` when both have them, else ``p50_ms``)."""
    from volo_deploy.harness.stats import RatioEstimate, latency_ratio

    (base, bs), (now, cs) = _center(bl), _center(cl)
    if bs and cs:
        est = latency_ratio(bs, cs, limits.confidence)
    else:
        ratio = now / base if base > 0 else 1.0
        est = RatioEstimate(ratio, None, None, limits.confidence, len(bs or []), len(cs or []))
    if est.low is None:
        top = 1.0 + (limits.max_latency_regression or 0.0) + EPS
        if est.ratio <= top or now - base <= limits.latency_floor_ms:
            return LatencyVerdict("pass", base, now, est)
        which = "baseline" if not bs else "report"
        return LatencyVerdict("fail", base, now, est, f"no per-call samples in the {which}: decided on p50 alone")
    return _decide(est, base, now, limits)


def _samples(values: list[float]) -> Latency:
    import numpy as np

    return Latency(p50_ms=float(np.median(values)), samples_ms=tuple(values))


def _decide(est: Any, base: float, now: float, limits: GateLimits, what: str = "") -> LatencyVerdict:
    what = f" ({what})" if what else ""
    top = 1.0 + (limits.max_latency_regression or 0.0) + EPS
    if est.ratio <= top or now - base <= limits.latency_floor_ms:
        return LatencyVerdict("pass", base, now, est)
    if est.low > top:
        return LatencyVerdict("fail", base, now, est, f"rise beyond the limit with {est.conf:.0%} confidence{what}")
    return LatencyVerdict("unsure", base, now, est, (
        f"inconclusive, not counted as a failure: median {est.ratio - 1:+.1%} but the {est.conf:.0%} lower "
        f"bound {est.low - 1:+.1%} is within the limit{what}"))


def judge_paired(base: list[float], cand: list[float], limits: GateLimits) -> LatencyVerdict:
    """Interleaved re-timing: the median of per-pair ratios decides (a busy period slows both calls)."""
    import numpy as np

    from volo_deploy.harness.stats import paired_ratio

    est = paired_ratio(base, cand, limits.confidence)
    return _decide(est, float(np.median(base)), float(np.median(cand)), limits,
                   f"{len(cand)} interleaved call pairs")


def _remeasured(be: str, pr: str, bs: str, bl: Latency, first: LatencyVerdict, limits: GateLimits,
                remeasure: Remeasure, interleaved_only: bool = False) -> tuple[LatencyVerdict, str]:
    """Re-time a suspect cell, at most ``remeasure_rounds`` times.

    Interleaved (the baseline's artifact timed beside the candidate's): the call pairs of every round
    so far decide, until the verdict is sure (pass or fail). Otherwise each round's fresh candidate is
    compared with the stored baseline, stopping at the first pass, and the least disturbed round
    decides (interference on a shared machine only adds time). ``interleaved_only``: a cell that passed
    on the reports' samples is re-timed only where it can be interleaved (a busy baseline run hides a
    real slowdown; the interleaved pairs show it)."""
    rounds, notes, pairs = [first], [], ([], [])
    for _ in range(limits.remeasure_rounds):
        try:
            got = remeasure(be, pr, int(bs), interleaved_only)
        except RemeasureError as exc:
            if not interleaved_only:
                notes.append(f"could not re-time: {exc}")
            break
        if got is None:
            break
        if got.note and got.note not in notes:
            notes.append(got.note)
        if got.baseline:
            pairs[0].extend(got.baseline)
            pairs[1].extend(got.candidate)
            rounds.append(judge_paired(pairs[0], pairs[1], limits))
            # a rise counts once it holds over both load orders (the re-timer alternates them), where allowed
            both_orders = len(rounds) > 2 or limits.remeasure_rounds < 2
            if rounds[-1].state == "pass" or (rounds[-1].state == "fail" and both_orders):
                break
        else:
            rounds.append(judge_latency(bl, _samples(got.candidate), limits))
            if rounds[-1].state == "pass":
                break
    if len(rounds) == 1:
        return first, "; ".join(notes)
    seen = ", ".join(f"{v.est.ratio - 1:+.0%}" for v in rounds[1:])
    if pairs[0]:
        best = rounds[-1]
        msg = (f"first {first.est.ratio - 1:+.1%}; re-timed {len(rounds) - 1}x interleaved with the baseline's "
               f"artifact (rises {seen}), decided on all {len(pairs[0])} call pairs")
    else:
        best = min(rounds, key=lambda v: v.est.ratio)
        msg = (f"first {first.est.ratio - 1:+.1%}; re-timed {len(rounds) - 1}x against the baseline's stored samples "
               f"(median rises {seen}), decided on the least disturbed")
    return best, "; ".join([msg, *notes])


def _noise(bl: Latency, cl: Latency) -> str:
    cvs = [f"CV {lat.cv:.0%}" for lat in (bl, cl) if lat.noisy and lat.cv is not None]
    return f"noisy measurement ({', '.join(cvs) or 'few calls'})" if bl.noisy or cl.noisy else ""


def _latency_check(be: str, pr: str, bs: str, bl: Latency, cl: Latency | None, limits: GateLimits,
                   remeasure: Remeasure | None = None, hardware: str | None = None) -> Check:
    metric = f"latency_bs{bs}"
    if limits.max_latency_regression is None:
        why = "different hardware: latency not compared" if hardware else "latency not gated"
        return Check(be, pr, metric, f"{bl.p50_ms:.3f} ms", "", "", "off", None, why)
    lim = f"p50 rise <= {limits.max_latency_regression:.0%}" + (
        f" or <= {limits.latency_floor_ms:g} ms" if limits.latency_floor_ms > 0 else ""
    )
    if cl is None:
        return Check(be, pr, metric, f"{bl.p50_ms:.3f} ms", "missing", "", lim, False, f"batch {bs} not timed")
    v = judge_latency(bl, cl, limits)
    extra = ""
    if remeasure is not None and limits.remeasure_rounds > 0:
        v, extra = _remeasured(be, pr, bs, bl, v, limits, remeasure, interleaved_only=v.state == "pass")
    e = v.est
    change = f"{e.ratio - 1:+.1%}" + (f" [{e.low - 1:+.0%}, {e.high - 1:+.0%}]" if e.low is not None else "")
    noise = _noise(bl, cl)
    note = "; ".join(t for t in (v.note, noise, extra) if t)
    if v.state == "fail" and noise:
        note += "; counted: even the lower bound, which allows for the noise seen within this run, exceeds the limit"
    if v.state == "unsure" and (remeasure is None or limits.remeasure_rounds == 0):
        note += "; decide with re-timing (volo-gate without --no-remeasure, exports kept)"
    return Check(be, pr, metric, f"{v.base_ms:.3f} ms", f"{v.now_ms:.3f} ms", change, lim, v.state != "fail", note,
                 warn=v.state == "unsure")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def format_table(checks: list[Check]) -> str:
    """Plain-text table for a CI log: failures first, then the rest."""
    head = ("backend", "precision", "metric", "baseline", "current", "change", "limit", "result")
    order = sorted(checks, key=lambda c: {"FAIL": 0, "WARN": 1, "PASS": 2, "SKIP": 3}[c.result])
    rows = [head] + [
        (c.backend, c.precision, c.metric, c.baseline, c.current, c.change, c.limit, c.result + (f" ({c.message})" if c.message else ""))
        for c in order
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def junit_xml(checks: list[Check], error: str | None = None, properties: dict[str, str] | None = None) -> bytes:
    """JUnit XML: one testcase per backend x precision x metric (``error``: one erroring testcase instead)."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name="volo-gate")
    if properties:
        props = ET.SubElement(suite, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", name=k, value=str(v))
    if error is not None:
        case = ET.SubElement(suite, "testcase", classname="volo_gate", name="inputs", time="0")
        ET.SubElement(case, "error", message=error, type="BadInput").text = error
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"volo_gate.{c.backend}.{c.precision}", name=c.metric, time="0")
        detail = f"baseline {c.baseline}, current {c.current}, change {c.change or '-'}, limit {c.limit}"
        if c.passed is False:
            ET.SubElement(case, "failure", message=f"{c.metric} regressed: {c.change or c.current}", type="Regression").text = (
                detail + (f"; {c.message}" if c.message else "")
            )
        elif c.passed is None:
            ET.SubElement(case, "skipped", message=c.message or c.limit)
        else:
            ET.SubElement(case, "system-out").text = detail + (f"; {c.result}: {c.message}" if c.message else "")
    suite.set("tests", str(len(checks) + (error is not None)))
    suite.set("failures", str(sum(c.passed is False for c in checks)))
    suite.set("errors", str(int(error is not None)))
    suite.set("skipped", str(sum(c.passed is None for c in checks)))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_junit(path: str | Path, data: bytes) -> Path:
    """Write JUnit XML to ``path`` (checked first: :func:`volo_deploy.harness.report.check_output_file`)."""
    from volo_deploy.harness.report import write_file

    return write_file(path, data, "--junit")
