"""Compare a bench report with a baseline: what moved, by how much, against which limit.

Checks per backend x precision of the baseline (only cases that were ``ok`` there are gated):

- ``status``: still ``ok`` (a case that disappeared or now fails is a regression);
- ``top1``: drop of top-1 in percentage points <= ``max_top1_drop_pp`` (when labeled);
- ``agreement``: drop of top-1 agreement with FP32 PyTorch in points <= ``max_agreement_drop_pp``;
- ``latency_bs<N>``: relative rise of the **p50** (robust to outliers) <= ``max_latency_regression``,
  and, when ``latency_floor_ms`` > 0, also by more than that many ms.

Reports are only compared when schema and model/data fingerprints are equal; otherwise
:class:`BadInputError` (exit 2): comparing other models or other images says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volo_deploy.errors import BadInputError

EPS = 1e-9


@dataclass(frozen=True)
class GateLimits:
    """Allowed movement. Accuracy limits in percentage points; latency as a fraction (0.1 = +10%)."""

    max_top1_drop_pp: float = 0.3
    max_agreement_drop_pp: float = 0.5
    max_latency_regression: float | None = 0.10  # None: latency not gated
    latency_floor_ms: float = 0.0


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

    @property
    def result(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def parse_fraction(text: str) -> float | None:
    """``"10%"`` or ``"0.1"`` -> 0.1; ``"off"``/``"none"`` -> None (not gated)."""
    t = str(text).strip().lower()
    if t in ("off", "none"):
        return None
    try:
        if t.endswith("%"):
            value = float(t[:-1]) / 100.0
        else:
            value = float(t)
            if value > 1.0:
                raise BadInputError(f"latency limit {text!r} is ambiguous: write {value:g}% or {value / 100:g}")
    except ValueError:
        raise BadInputError(f"latency limit {text!r}: expected e.g. 10% or 0.1 (or off)") from None
    if value < 0:
        raise BadInputError(f"latency limit {text!r} must not be negative")
    return value


def check_comparable(report: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Refuse (BadInputError, exit 2) when the two reports measured a different model or data."""
    fr, fb = report.get("fingerprints") or {}, baseline.get("fingerprints") or {}
    for key, what in (("model", "model checkpoint"), ("data", "evaluation images")):
        if not fr.get(key) or not fb.get(key):
            raise BadInputError(f"{key} fingerprint missing from the {'report' if not fr.get(key) else 'baseline'}")
        if fr[key] != fb[key]:
            raise BadInputError(
                f"different {what}: report {key} fingerprint {fr[key][:23]}... != baseline {fb[key][:23]}...; "
                "refusing to compare (re-run volo-bench on the baseline's model/data, or --update-baseline)"
            )


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return r["backend"], r["precision"]


def compare(report: dict[str, Any], baseline: dict[str, Any], limits: GateLimits = GateLimits()) -> list[Check]:
    """Every check of ``report`` against ``baseline`` (see the module docstring)."""
    cur = {_key(r): r for r in report["results"]}
    checks: list[Check] = []
    for b in baseline["results"]:
        be, pr = _key(b)
        c = cur.get((be, pr))

        def add(metric: str, base: str, now: str, change: str, limit: str, passed: bool | None, msg: str = "") -> None:
            checks.append(Check(be, pr, metric, base, now, change, limit, passed, msg))

        if b["status"] != "ok":
            add("status", b["status"], c["status"] if c else "missing", "", "baseline not ok: not gated", None)
            continue
        if c is None:
            add("status", "ok", "missing", "case missing", "must stay ok", False, "not in the report")
            continue
        if c["status"] != "ok":
            add("status", "ok", c["status"], "ok -> " + c["status"], "must stay ok", False, c.get("reason") or "")
            continue
        add("status", "ok", "ok", "", "must stay ok", True)
        checks.append(_drop_check(be, pr, "top1", b, c, "accuracy", "top1_pct", limits.max_top1_drop_pp))
        checks.append(
            _drop_check(be, pr, "agreement", b, c, "agreement", "top1_agreement_pct", limits.max_agreement_drop_pp)
        )
        for bs, bl in sorted((b.get("latency") or {}).items(), key=lambda kv: int(kv[0])):
            cl = (c.get("latency") or {}).get(bs)
            checks.append(_latency_check(be, pr, bs, bl, cl, limits))
    base_keys = {_key(b) for b in baseline["results"]}
    for key, c in cur.items():
        if key not in base_keys:
            checks.append(Check(*key, "status", "missing", c["status"], "new case", "not in baseline: not gated", None))
    return checks


def _drop_check(be: str, pr: str, metric: str, b: dict, c: dict, section: str, field: str, limit: float) -> Check:
    bv = (b.get(section) or {}).get(field)
    cv = (c.get(section) or {}).get(field)
    lim = f"drop <= {limit:g} pp"
    if bv is None or cv is None:
        return Check(be, pr, metric, _pct(bv), _pct(cv), "", lim, None, "not measured in both")
    drop = bv - cv
    return Check(be, pr, metric, _pct(bv), _pct(cv), f"{cv - bv:+.2f} pp", lim, drop <= limit + EPS)


def _latency_check(be: str, pr: str, bs: str, bl: dict, cl: dict | None, limits: GateLimits) -> Check:
    metric = f"latency_bs{bs}"
    if limits.max_latency_regression is None:
        return Check(be, pr, metric, f"{bl['p50_ms']:.3f} ms", "", "", "off", None, "latency not gated")
    lim = f"p50 rise <= {limits.max_latency_regression:.0%}" + (
        f" or <= {limits.latency_floor_ms:g} ms" if limits.latency_floor_ms > 0 else ""
    )
    if cl is None:
        return Check(be, pr, metric, f"{bl['p50_ms']:.3f} ms", "missing", "", lim, False, f"batch {bs} not timed")
    base, now = float(bl["p50_ms"]), float(cl["p50_ms"])
    rel = now / base - 1.0 if base > 0 else 0.0
    ok = rel <= limits.max_latency_regression + EPS or (now - base) <= limits.latency_floor_ms
    note = "noisy measurement" if cl.get("noisy") or bl.get("noisy") else ""
    return Check(be, pr, metric, f"{base:.3f} ms", f"{now:.3f} ms", f"{rel:+.1%}", lim, ok, note)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def format_table(checks: list[Check]) -> str:
    """Plain-text table for a CI log: failures first, then the rest."""
    head = ("backend", "precision", "metric", "baseline", "current", "change", "limit", "result")
    order = sorted(checks, key=lambda c: {False: 0, True: 1, None: 2}[c.passed])
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
            ET.SubElement(case, "system-out").text = detail
    suite.set("tests", str(len(checks) + (error is not None)))
    suite.set("failures", str(sum(c.passed is False for c in checks)))
    suite.set("errors", str(int(error is not None)))
    suite.set("skipped", str(sum(c.passed is None for c in checks)))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_junit(path: str | Path, data: bytes) -> Path:
    from volo_deploy.artifacts import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)
