"""The bench report ``volo_deploy.bench_report/1`` as typed dataclasses, with JSON in and out.

:meth:`BenchReport.from_json` is the schema check: every field the toolkit reads is checked for
presence, type and range, and a bad one raises :class:`ReportSchemaError` (exit 2) naming the
file, the row and the field. Percentages are 0-100, times in ms unless the key says seconds,
sizes in bytes. What each section holds:

- ``schema`` (this exact string; a reader refuses any other), ``toolkit_version``, ``created``
  (UTC ISO 8601), ``command`` (argv), ``elapsed_seconds``.
- ``fingerprints`` (:class:`Fingerprints`): ``model`` (sha256 of the checkpoint file), ``data``
  (sha256 of the ordered ``relative/path<TAB>label`` lines of the images used), ``hardware``
  (:func:`volo_deploy.machine.hardware_fingerprint` of CPU, ISA, CPU count, GPUs and torch
  threads; absent in reports made before it existed). ``volo-gate`` compares reports only when
  model and data are equal, and latency only when hardware is.
- ``model`` (:class:`ModelInfo`), ``settings`` (:class:`Settings`), ``results``
  (:class:`Result`, one per backend x precision, each pair once).
- Kept as checked JSON objects: ``data`` (source, layout, n_images, total_available, labeled,
  num_classes, fingerprint, skipped_images, notes), ``threads`` (requested, torch_intra_op,
  torch_inter_op, env, cpu_count), ``machine`` (:func:`volo_deploy.machine.describe_machine`),
  ``versions`` (library -> version), ``reference`` (FP32 PyTorch ``accuracy``), ``execution``
  (local or Ray, shards, decode workers, resume, reference cache), ``summary`` (the rows of
  ``report.md`` as numbers). Other keys are kept as they are.

A row (:class:`Result`): ``status`` is one of :data:`STATUSES`; an ``ok`` row has a ``latency``
entry per timed batch size with ``p50_ms`` > 0, and ``accuracy`` (null without labels) and
``agreement``; any other status has a ``reason``. ``samples_ms`` (every timed call, in call order)
was added within ``bench_report/1``: older reports lack it and the gate compares their p50.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from volo_deploy.errors import BadInputError

SCHEMA = "volo_deploy.bench_report/1"
STATUSES = ("ok", "failed validation", "export failed", "run failed", "unavailable", "unsupported")
#: Deepest nesting a report may have (a real one is 6 deep); deeper is refused before it is walked.
MAX_DEPTH = 32


class ReportSchemaError(BadInputError):
    """A report or baseline that does not follow the schema (exit 2)."""


class _At:
    """Where a value sits (file and JSON path), for the error message."""

    def __init__(self, where: str, path: str = "") -> None:
        self.where, self.path = where, path

    def __call__(self, key: str | int, label: str = "") -> _At:
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else str(key))
        return _At(self.where, self.path + step + (f" ({label})" if label else ""))

    def fail(self, expected: str, found: Any = ..., missing: bool = False) -> NoReturn:
        what = "missing" if missing else f"found {_show(found)}"
        raise ReportSchemaError(f"{self.where}: {self.path or 'top level'}: expected {expected}, {what}")


def _show(v: Any) -> str:
    text = json.dumps(v, allow_nan=True, default=str) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 60 else text[:57] + "..."


_MISSING = object()


def _get(obj: dict, at: _At, key: str, expected: str, required: bool) -> Any:
    v = obj.get(key, _MISSING)
    if v is _MISSING and required:
        at(key).fail(expected, missing=True)
    return None if v is _MISSING else v


def _num(obj: dict, at: _At, key: str, lo: float | None = 0.0, hi: float | None = None, *,
         above: bool = False, required: bool = False, null: bool = True) -> float | None:
    """A finite number (not a bool) in [lo, hi] (``above``: > lo), or None where allowed."""
    if lo is None:
        expected = "a finite number"
    elif hi is not None:
        expected = f"a finite number in [{lo:g}, {hi:g}]"
    else:
        expected = f"a finite number {'>' if above else '>='} {lo:g}"
    v = _get(obj, at, key, expected, required)
    if v is None:
        if not null and key in obj:
            at(key).fail(expected, v)
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        at(key).fail(expected, v)
    if lo is not None and (v <= lo if above else v < lo) or hi is not None and v > hi:
        at(key).fail(expected, v)
    return float(v)


def _int(obj: dict, at: _At, key: str, lo: int = 0, required: bool = False) -> int | None:
    v = _get(obj, at, key, f"an integer >= {lo}", required)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        at(key).fail(f"an integer >= {lo}", v)
    return v


def _str(obj: dict, at: _At, key: str, required: bool = False, choices: tuple[str, ...] = ()) -> str | None:
    expected = "one of " + ", ".join(repr(c) for c in choices) if choices else "a non-empty string"
    v = _get(obj, at, key, expected, required)
    if v is None:
        return None
    if not isinstance(v, str) or not v or choices and v not in choices:
        at(key).fail(expected, v)
    return v


def _obj(obj: dict, at: _At, key: str, required: bool = False) -> dict | None:
    v = _get(obj, at, key, "an object", required)
    if v is not None and not isinstance(v, dict):
        at(key).fail("an object", v)
    return v


def _list(obj: dict, at: _At, key: str, required: bool = False) -> list | None:
    v = _get(obj, at, key, "a list", required)
    if v is not None and not isinstance(v, list):
        at(key).fail("a list", v)
    return v


def _rest(obj: dict, cls: type) -> dict[str, Any]:
    """The keys of ``obj`` that ``cls`` does not type: kept verbatim."""
    typed = {f.name for f in fields(cls)}
    return {k: v for k, v in obj.items() if k not in typed}


def _emit(obj: Any) -> dict[str, Any]:
    """Typed fields (nested dataclasses emitted too), then the kept keys."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        if f.name == "extra":
            continue
        v = getattr(obj, f.name)
        if hasattr(v, "to_json"):
            v = v.to_json()
        elif isinstance(v, dict) and v and all(hasattr(x, "to_json") for x in v.values()):
            v = {k: x.to_json() for k, x in v.items()}
        elif isinstance(v, tuple):
            v = [x.to_json() if hasattr(x, "to_json") else x for x in v]
        out[f.name] = v
    return out | getattr(obj, "extra", {})


@dataclass(frozen=True)
class Latency:
    """One batch size's timing (ms); ``samples_ms``: every timed call, None in older reports."""

    batch: int | None = None
    warmup: int | None = None
    iters: int | None = None
    p50_ms: float = 0.0
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    cv: float | None = None
    throughput_ips: float | None = None
    noisy: bool = False
    warning: str | None = None
    samples_ms: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, at: _At, ok: bool) -> Latency:
        if not isinstance(obj, dict):
            at.fail("an object", obj)
        times = {k: _num(obj, at, k) for k in ("p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms")}
        noisy = obj.get("noisy", False)
        if not isinstance(noisy, bool):
            at("noisy").fail("true or false", noisy)
        warning = obj.get("warning")
        if warning is not None and not isinstance(warning, str):
            at("warning").fail("a string or null", warning)
        return cls(batch=_int(obj, at, "batch", 1), warmup=_int(obj, at, "warmup"), iters=_int(obj, at, "iters"),
                   p50_ms=_num(obj, at, "p50_ms", above=ok, required=True, null=False), **times,
                   cv=_num(obj, at, "cv"), throughput_ips=_num(obj, at, "throughput_ips"), noisy=noisy,
                   warning=warning, samples_ms=_samples(obj, at), extra=_rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        out = _emit(self)
        out["samples_ms"] = list(self.samples_ms) if self.samples_ms is not None else None
        return out


def _samples(obj: dict, at: _At) -> tuple[float, ...] | None:
    values = _list(obj, at, "samples_ms")
    if values is None:
        return None
    for i, t in enumerate(values):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            at("samples_ms")(i).fail("a finite number >= 0", t)
    return tuple(float(t) for t in values)


@dataclass(frozen=True)
class Accuracy:
    top1_pct: float | None = None
    top5_pct: float | None = None
    delta_top1_pp: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict, at: _At) -> Accuracy:
        return cls(_num(obj, at, "top1_pct", 0, 100), _num(obj, at, "top5_pct", 0, 100),
                   _num(obj, at, "delta_top1_pp", -100, 100), _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in _emit(self).items() if v is not None or k in self.extra}


@dataclass(frozen=True)
class Agreement:
    """Agreement with FP32 PyTorch over all images."""

    n: int | None = None
    top1_agreement_pct: float | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict, at: _At) -> Agreement:
        cos = {k: _num(obj, at, k, None) for k in ("cosine_min", "cosine_mean")}  # float rounding: not clipped
        return cls(_int(obj, at, "n"), _num(obj, at, "top1_agreement_pct", 0, 100), _num(obj, at, "max_abs"),
                   _num(obj, at, "mean_abs"), _num(obj, at, "max_rel"), **cos, extra=_rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in _emit(self).items() if v is not None or k in self.extra}


@dataclass(frozen=True)
class Result:
    """One backend x precision row."""

    backend: str
    precision: str
    status: str
    reason: str | None = None
    artifact: dict[str, Any] | None = None
    accuracy: Accuracy | None = None
    agreement: Agreement | None = None
    latency: dict[str, Latency] = field(default_factory=dict)
    load_options: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_json(cls, obj: Any, at: _At) -> Result:
        if not isinstance(obj, dict):
            at.fail("an object (one backend x precision row)", obj)
        be, pr = _str(obj, at, "backend", True), _str(obj, at, "precision", True)
        at = _At(at.where, f"{at.path} ({be} {pr})")
        status = _str(obj, at, "status", True, STATUSES)
        ok = status == "ok"
        reason = obj.get("reason")
        if not ok and (not isinstance(reason, str) or not reason.strip()):
            at("reason").fail(f"why the row is {status!r} (a non-empty string)", reason, missing="reason" not in obj)
        if reason is not None and not isinstance(reason, str):
            at("reason").fail("a string or null", reason)
        for key in ("accuracy", "agreement", "latency") if ok else ():
            if key not in obj:
                at(key).fail("an object (required for an ok row)", missing=True)
        acc, agr, lat = _obj(obj, at, "accuracy"), _obj(obj, at, "agreement"), _obj(obj, at, "latency")
        if ok and not lat:
            at("latency").fail("one entry per timed batch size (an ok row)", lat)
        if ok and agr is None:
            at("agreement").fail("an object (required for an ok row)", agr)
        opts = obj.get("load_options")
        if opts is not None and not isinstance(opts, str):
            at("load_options").fail("a string or null", opts)
        return cls(be, pr, status, reason, _obj(obj, at, "artifact"),
                   Accuracy.from_json(acc, at("accuracy")) if acc is not None else None,
                   Agreement.from_json(agr, at("agreement")) if agr is not None else None,
                   _latencies(lat or {}, at("latency"), ok), opts, _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        out = _emit(self)
        out["latency"] = {k: v.to_json() for k, v in self.latency.items()}
        return out


def _latencies(lat: dict, at: _At, ok: bool) -> dict[str, Latency]:
    out = {}
    for bs, entry in lat.items():
        if not bs.isdigit() or int(bs) < 1:
            at(bs).fail("a batch size (a positive integer) as key", bs)
        out[bs] = Latency.from_json(entry, at(bs), ok)
        if out[bs].batch is not None and out[bs].batch != int(bs):
            at(bs)("batch").fail(f"{bs} (the entry's key)", out[bs].batch)
    return out


@dataclass(frozen=True)
class Fingerprints:
    model: str
    data: str
    hardware: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict, at: _At) -> Fingerprints:
        return cls(_str(obj, at, "model", True), _str(obj, at, "data", True), _str(obj, at, "hardware"),
                   _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        out = _emit(self)
        return out if self.hardware is not None else {k: v for k, v in out.items() if k != "hardware"}


@dataclass(frozen=True)
class ModelInfo:
    name: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    img_size: int | None = None
    num_classes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict, at: _At) -> ModelInfo:
        return cls(_str(obj, at, "name"), _str(obj, at, "checkpoint"), _str(obj, at, "checkpoint_sha256"),
                   _int(obj, at, "img_size", 1), _int(obj, at, "num_classes", 1), _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        return _emit(self)


@dataclass(frozen=True)
class Settings:
    batch_sizes: tuple[int, ...]
    warmup: int | None = None
    iters: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict, at: _At) -> Settings:
        sizes = _list(obj, at, "batch_sizes", True)
        if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
            at("batch_sizes").fail("a non-empty list of positive integers", sizes)
        return cls(tuple(sizes), _int(obj, at, "warmup"), _int(obj, at, "iters"), _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in _emit(self).items() if v is not None or k in self.extra}


_OBJECTS = ("data", "threads", "machine", "versions", "reference", "execution")


@dataclass(frozen=True)
class BenchReport:
    """A whole ``report.json``: :meth:`from_json` checks it, :meth:`to_json` gives it back."""

    fingerprints: Fingerprints
    settings: Settings
    results: tuple[Result, ...]
    model: ModelInfo | None = None
    schema: str = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str = "report") -> BenchReport:
        """Check ``obj`` (parsed JSON) against the schema; :class:`ReportSchemaError` names what is wrong."""
        at = _At(where)
        _check_depth(obj, at)
        if not isinstance(obj, dict):
            at.fail("a bench report (a JSON object)", obj)
        if obj.get("schema") != SCHEMA:
            raise ReportSchemaError(f"{where}: schema {obj.get('schema')!r}, this toolkit reads {SCHEMA!r}")
        for key in _OBJECTS:
            _obj(obj, at, key)
        if isinstance(obj.get("machine"), dict):
            _check_machine(obj["machine"], at("machine"))
        if isinstance(obj.get("threads"), dict):
            _int(obj["threads"], at("threads"), "requested", 1)
        rows = _list(obj, at, "results", True)
        results = tuple(Result.from_json(r, at("results")(i)) for i, r in enumerate(rows))
        seen: dict[tuple[str, str], int] = {}
        for i, r in enumerate(results):
            j = seen.setdefault((r.backend, r.precision), i)
            if j != i:
                at("results")(i).fail(f"each backend x precision once ({r.backend} {r.precision} is also row {j})",
                                      f"{r.backend} {r.precision}")
        model = _obj(obj, at, "model")
        return cls(Fingerprints.from_json(_obj(obj, at, "fingerprints", True), at("fingerprints")),
                   Settings.from_json(_obj(obj, at, "settings", True), at("settings")), results,
                   ModelInfo.from_json(model, at("model")) if model is not None else None, SCHEMA,
                   _rest(obj, cls))

    def to_json(self) -> dict[str, Any]:
        out = {"schema": self.schema} | _emit(self)
        if self.model is None:
            del out["model"]
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """A kept (untyped) section: ``machine``, ``threads``, ``versions``..."""
        return self.extra.get(key, default)

    def row(self, backend: str, precision: str) -> Result | None:
        return next((r for r in self.results if (r.backend, r.precision) == (backend, precision)), None)


def _check_depth(obj: Any, at: _At) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ReportSchemaError(f"{at.where}: nested more than {MAX_DEPTH} levels deep: not a bench report")
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _check_machine(m: dict, at: _At) -> None:
    """What :func:`volo_deploy.machine.summary_line` reads."""
    cpu = _obj(m, at, "cpu") or {}
    feats = _list(cpu, at("cpu"), "features") or []
    if not all(isinstance(f, str) for f in feats):
        at("cpu")("features").fail("a list of strings", feats)
    for i, g in enumerate(_list(m, at, "gpus") or []):
        if not isinstance(g, dict) or not isinstance(g.get("name"), str) or not isinstance(
                g.get("compute_capability"), str):
            at("gpus")(i).fail("an object with string name and compute_capability", g)
    if m.get("jetson") is not None:
        _obj(m, at, "jetson")


def parse_report(text: str | bytes, where: str = "report") -> BenchReport:
    """JSON text -> :class:`BenchReport` (ReportSchemaError when not valid JSON or not the schema)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ReportSchemaError(f"{where}: nested too deep to read: not a bench report") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReportSchemaError(f"{where}: not valid JSON ({exc})") from None
    return BenchReport.from_json(obj, where)


def load_report(path: str | Path, what: str = "report") -> BenchReport:
    """Read and check a report file; :class:`BadInputError` (exit 2) when missing, unreadable or not the schema."""
    path = Path(path)
    where = f"{what} {path}"
    if not path.exists():
        raise BadInputError(f"{where}: not found")
    if not path.is_file():
        raise BadInputError(f"{where}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{where}: cannot be read ({exc.strerror})") from None
    return parse_report(data, where)
