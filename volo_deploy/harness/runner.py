"""One backend x precision case: get the artifact (reuse or export), run the images, time it.

Every backend is handled the same way through the registry; whatever goes wrong in one
case becomes that case's ``status`` and ``reason``, and the loop goes on.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.errors import BackendUnavailable, ExportError, ValidationError

OK = "ok"
FAILED_VALIDATION = "failed validation"
EXPORT_FAILED = "export failed"
RUN_FAILED = "run failed"
UNAVAILABLE = "unavailable"
UNSUPPORTED = "unsupported"


@dataclass
class CaseContext:
    """What every case shares: the model, the images, the FP32 reference and the settings."""

    checkpoint: Path
    checkpoint_sha256: str
    model_name: str | None
    x: np.ndarray
    labels: np.ndarray | None
    ref_logits: np.ndarray
    ref_top1_pct: float | None
    batch_sizes: tuple[int, ...]
    warmup: int
    iters: int
    threads: int | None
    artifacts_root: Path
    val_data: Path | None = None
    int8: Any = None  # volo_deploy.quant.Int8Options of the int8 cases (None: defaults)
    class_labels: Path | None = None  # --labels: class names file
    progress: bool = True
    noisy_cv: float = 0.15
    throughput_mode: bool = False  # also time batch evaluation in the runtime's throughput mode


@dataclass
class CaseResult:
    """One row of the report (see :mod:`volo_deploy.harness.report` for the field meanings)."""

    backend: str
    precision: str
    executed_precision: str | None = None  # what the runtime reported computing in (e.g. bf16, int8+fp32)
    int8_weight_bits: int | None = None  # INT8 only: 8, or 7 where the exporting CPU had no VNNI / dot product
    status: str = OK
    reason: str | None = None
    artifact: dict[str, Any] | None = None
    export_seconds: float | None = None
    calibration_seconds: float | None = None
    validation: dict[str, Any] | None = None
    accuracy: dict[str, float] | None = None
    agreement: dict[str, float] | None = None
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    # batch evaluation in the runtime's throughput mode (None: the backend has none); see _measure_throughput
    throughput: dict[str, Any] | None = None
    memory: dict[str, float] | None = None
    load_options: str | None = None
    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _error_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def backend_options(backend_cls, threads: int | None) -> Any:
    """The backend's runtime options at their defaults, with ``threads`` where it has such a field."""
    import dataclasses

    if backend_cls.Options is None:
        return None
    try:
        opts = backend_cls.Options()
    except TypeError:  # an option without a default: it cannot run with defaults
        raise ExportError(f"backend {backend_cls.name}: has options without defaults, which volo-bench cannot choose") from None
    if threads is not None and "threads" in {f.name for f in dataclasses.fields(opts)}:
        opts = dataclasses.replace(opts, threads=threads)
    return opts


def reusable_artifact(folder: Path, backend: str, precision: str, checkpoint_sha256: str) -> tuple[dict | None, str]:
    """The manifest of a reusable export in ``folder`` and '' or (None, why it cannot be reused).

    Reusable = same backend, precision and checkpoint hash, dynamic batch, and every file's
    sha256 matches the manifest.
    """
    import json

    from volo_deploy.artifacts import MANIFEST_NAME, MANIFEST_SCHEMA, sha256_file

    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None, "no manifest"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"manifest unreadable ({exc})"
    if m.get("schema") != MANIFEST_SCHEMA:
        return None, f"manifest schema {m.get('schema')!r} is not {MANIFEST_SCHEMA}"
    if (m.get("backend"), m.get("precision")) != (backend, precision):
        return None, f"manifest is for {m.get('backend')} {m.get('precision')}"
    if m.get("model", {}).get("checkpoint_sha256") != checkpoint_sha256:
        return None, "exported from another checkpoint"
    if not m.get("export", {}).get("dynamic_batch"):
        return None, "fixed-batch export"
    for f in m.get("files", []):
        p = folder / f["path"]
        if not p.is_file():
            return None, f"{f['path']} missing"
        if sha256_file(p) != f["sha256"]:
            return None, f"{f['path']} does not match its manifest hash"
    return m, ""


def calibration_seconds(details: dict[str, Any]) -> float | None:
    """INT8 calibration time from export details: ``calibration_seconds`` at the top or under
    ``quantization``, plus ``calibration_load_seconds`` (reading the images); None when not quantized."""
    calib = details.get("calibration_seconds")
    if calib is None:
        calib = (details.get("quantization") or {}).get("calibration_seconds")
    if calib is None:
        return None
    return round(float(calib) + float(details.get("calibration_load_seconds") or 0.0), 3)


def _artifact_info(folder: Path, manifest: dict, reused: bool) -> dict[str, Any]:
    files = manifest.get("files", [])
    return {
        "dir": str(folder),
        "model_file": manifest.get("model_file"),
        "size_bytes": int(sum(f["bytes"] for f in files)),
        "sha256": next((f["sha256"] for f in files if f["path"] == manifest.get("model_file")), None),
        "reused": reused,
    }


def _obtain_artifact(backend_cls, precision: str, ctx: CaseContext, res: CaseResult, options: Any) -> Path:
    """Reuse a hash-checked export or make one; fills ``res`` artifact/export fields."""
    import json

    from volo_deploy.artifacts import MANIFEST_NAME
    from volo_deploy.backends import ExportRequest
    from volo_deploy.jobs.export import export_model
    from volo_deploy.logs import capture

    folder = ctx.artifacts_root / f"{backend_cls.name}_{precision}"
    manifest, why = reusable_artifact(folder, backend_cls.name, precision, ctx.checkpoint_sha256)
    if manifest is not None:
        exp = manifest.get("export", {})
        res.artifact = _artifact_info(folder, manifest, reused=True)
        res.export_seconds = exp.get("seconds")
        res.calibration_seconds = calibration_seconds(exp)
        res.int8_weight_bits = (exp.get("quantization") or {}).get("weight_bits")
        res.validation = manifest.get("validation")
        res.log.append(f"reused {folder} (hashes match its manifest)")
        return folder / manifest["model_file"]
    if folder.exists() and why != "no manifest":
        res.log.append(f"re-exporting {folder}: {why}")
    request = ExportRequest(
        output_dir=folder, precision=precision, dynamic_batch=True, force=True, labels=ctx.class_labels,
        quant=ctx.int8 if precision == "int8" else None, options=options
    )
    with capture(res.log):  # the export's messages also go into the row
        result = export_model(backend_cls.name, request, model_name=ctx.model_name, checkpoint=ctx.checkpoint,
                              val_data=ctx.val_data)
    res.export_seconds = round(result.export_seconds, 3)
    res.calibration_seconds = calibration_seconds(result.details)
    res.int8_weight_bits = (result.details.get("quantization") or {}).get("weight_bits")
    res.validation = result.validation
    res.artifact = _artifact_info(folder, json.loads((folder / MANIFEST_NAME).read_text()), reused=False)
    return result.model_file


def _batch_of(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` images from ``x`` (cycled when there are fewer)."""
    return np.ascontiguousarray(np.resize(x, (n, *x.shape[1:])) if len(x) < n else x[:n])


def _measure(runner, ctx: CaseContext, res: CaseResult, label: str) -> None:
    from tqdm import tqdm

    from volo_deploy.backends.base import run_in_chunks
    from volo_deploy.harness.stats import agreement_stats, latency_stats, topk_accuracy

    fixed = runner.input_shape[0]
    chunk = fixed or max(ctx.batch_sizes)
    desc = f"accuracy {label}" if ctx.progress else None
    logits = run_in_chunks(runner.run, ctx.x, chunk, pad=bool(fixed), desc=desc).astype(np.float32)
    res.agreement = agreement_stats(ctx.ref_logits, logits)
    if ctx.labels is not None:
        acc = topk_accuracy(logits, ctx.labels)
        if ctx.ref_top1_pct is not None and "top1_pct" in acc:
            acc["delta_top1_pp"] = acc["top1_pct"] - ctx.ref_top1_pct
        res.accuracy = acc
    for bs in ctx.batch_sizes:
        if fixed and fixed != bs:
            res.warnings.append(f"batch {bs}: artifact has a fixed batch of {fixed}; not timed")
            continue
        xb = _batch_of(ctx.x, bs)
        for _ in range(ctx.warmup):
            runner.run(xb)
        runner.times.clear()
        for _ in tqdm(range(ctx.iters), desc=f"latency {label} bs={bs}", unit="it", disable=not ctx.progress, leave=False):
            runner.run(xb)
        st = latency_stats(list(runner.times), bs, ctx.warmup, ctx.noisy_cv)
        # raw per-call ms, in call order: volo-gate decides on distributions, not on one median
        res.latency[str(bs)] = {**st.as_dict(), "samples_ms": [round(t * 1e3, 4) for t in runner.times]}
        if st.warning:
            res.warnings.append(f"batch {bs}: {st.warning}")


def _measure_throughput(backend, artifact: Path, options: Any, ctx: CaseContext, res: CaseResult) -> None:
    """img/s of batch evaluation in the runtime's throughput mode (several requests in flight) at the
    largest batch size, beside the latency mode's img/s; latency itself stays one request at a time."""
    if not ctx.throughput_mode:
        return
    topts = backend.throughput_options(options)
    bs = max(ctx.batch_sizes)
    if topts is None or str(bs) not in res.latency:
        return
    try:
        runner = backend.load(artifact, topts)
    except Exception as exc:  # the latency figures stand; this mode is extra
        res.warnings.append(f"throughput mode not measured: {_error_text(exc)}")
        return
    try:
        jobs = topts.requests or runner.optimal_requests()
        xb = _batch_of(ctx.x, bs)
        runner.run_async([xb] * jobs)  # warm-up: every request once
        calls = max(ctx.iters, 2 * jobs)
        _, seconds = runner.run_async([xb] * calls)
        res.throughput = {
            "mode": runner.throughput_mode(), "batch": bs, "calls": calls, "requests": jobs,
            "img_per_s": round(calls * bs / seconds, 2),
            "latency_mode_img_per_s": round(res.latency[str(bs)]["throughput_ips"], 2),
        }
    finally:
        runner.close()


def run_case(backend_name: str, precision: str, ctx: CaseContext) -> CaseResult:
    """Benchmark one backend x precision; never raises for a backend's own failure."""
    from volo_deploy.backends import get_backend
    from volo_deploy.harness.memory import MemoryProbe

    backend_cls = get_backend(backend_name)
    res = CaseResult(backend=backend_cls.name, precision=precision)
    if precision not in backend_cls.precisions:
        res.status, res.reason = UNSUPPORTED, f"{backend_cls.name} supports {', '.join(backend_cls.precisions)}"
        return res
    reason = backend_cls.unavailable_reason() or backend_cls.precision_unavailable_reason(precision)
    if reason:
        res.status, res.reason = UNAVAILABLE, reason
        return res
    label = f"{backend_cls.name}/{precision}"
    with MemoryProbe() as probe:
        try:
            options = backend_options(backend_cls, ctx.threads)
            artifact = _obtain_artifact(backend_cls, precision, ctx, res, options)
        except ValidationError as exc:
            res.status, res.reason = FAILED_VALIDATION, str(exc)
            res.validation = exc.stats or None
        except BackendUnavailable as exc:
            res.status, res.reason = UNAVAILABLE, str(exc)
        except Exception as exc:  # any backend's own failure: reported, never fatal to the run
            res.status, res.reason = EXPORT_FAILED, _error_text(exc)
            res.log.append(traceback.format_exc(limit=-3))
        if res.status == OK:
            runner = None
            try:
                backend = backend_cls()
                runner = backend.load(artifact, options)
                res.executed_precision = runner.executed_precision
                if runner.warning:
                    res.warnings.append(runner.warning)
                res.load_options = repr(options)
                _measure(runner, ctx, res, label)
                _measure_throughput(backend, artifact, options, ctx, res)
            except Exception as exc:  # a runtime that fails to load or run the artifact
                res.status, res.reason = RUN_FAILED, _error_text(exc)
                res.log.append(traceback.format_exc(limit=-3))
            finally:
                if runner is not None:
                    runner.close()
    res.memory = {"peak_rss_mb": round(probe.peak_mb, 1), "rss_increase_mb": round(probe.increase_mb, 1)}
    return res
