"""The export job every backend shares: load, stage, export, validate, publish, manifest."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from volo_deploy import artifacts
from volo_deploy.backends.base import ExportRequest, ExportResult, get_backend, run_in_chunks
from volo_deploy.data.samples import validation_batch
from volo_deploy.export.validate import DEFAULT_TOLERANCES, Tolerance, check, compare_logits
from volo_deploy.models import CheckpointInfo, load_model
from volo_deploy.models.volo import VOLO


def torch_logits(model: VOLO, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """FP32 PyTorch reference logits (reference outlook form)."""
    from volo_deploy.models import set_outlook_form

    form = next((m.form for m in model.modules() if hasattr(m, "form")), "reference")
    set_outlook_form(model, "reference")
    try:
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])
    finally:
        set_outlook_form(model, form)


def run_batched(runner, x: np.ndarray, batch: int | None) -> np.ndarray:
    """Run ``x`` through ``runner`` in chunks of ``batch`` (padding the last, fixed-batch models)."""
    if batch is None:
        return runner.run(x)
    return run_in_chunks(runner.run, x, batch, pad=True)


def model_metadata(model: VOLO, info: CheckpointInfo, checkpoint_sha256: str) -> dict[str, object]:
    cfg = model.cfg
    return {
        "variant": cfg.name,
        "family": cfg.family,
        "img_size": cfg.img_size,
        "num_classes": cfg.num_classes,
        "crop_pct": cfg.crop_pct,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "checkpoint": info.path,
        "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_notes": info.notes,
    }


def export_model(
    backend: str,
    request: ExportRequest,
    model_name: str | None = None,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    val_data: str | Path | None = None,
    tolerance: Tolerance | None = None,
    n_validate: int = 8,
    log=print,
) -> ExportResult:
    """Export one model with one backend, validate it against FP32 PyTorch, publish it.

    Raises :class:`~volo_deploy.errors.ValidationError` (nothing is published) when the
    artifact disagrees with PyTorch beyond ``tolerance`` (the precision's default).
    """
    backend_obj = get_backend(backend)()
    backend_obj.check_precision(request.precision)
    backend_obj.check_request(request)
    model, info = load_model(checkpoint, model_name, img_size)
    for note in info.notes:
        log(f"note: {note}")
    log(f"model: {info.describe()}")
    cfg = model.cfg
    model_file = backend_obj.model_filename(cfg.name, request)
    out = artifacts.prepare_output_dir(request.output_dir, [model_file, artifacts.MANIFEST_NAME], request.force)
    ckpt_sha = artifacts.sha256_file(info.path)
    request = dataclasses.replace(request, checkpoint_sha256=ckpt_sha, val_data=val_data, n_validate=n_validate,
                                  tolerance=tolerance)
    with artifacts.staging_dir(out) as staged:
        start = time.perf_counter()
        details = backend_obj.export_impl(model, request, staged, model_file)
        export_s = time.perf_counter() - start
        extra = list(details.pop("extra_files", []))
        names = [model_file, *extra]
        executed = None
        if details.get("validation_skipped"):
            validation: dict[str, object] = {"skipped": details["validation_skipped"]}
            log(f"validation skipped: {details['validation_skipped']}")
        else:
            x = validation_batch(cfg, val_data, n=n_validate)
            ref = torch_logits(model, x)
            runner = backend_obj.load(staged / model_file, backend_obj.validation_options(request))
            executed = runner.executed_precision
            log(f"{backend_obj.name} {request.precision}: runtime computes in {executed or 'an unreported precision'}")
            try:
                got = run_batched(runner, x, None if request.dynamic_batch else request.batch)
            finally:
                runner.close()
            stats = compare_logits(ref, got)
            tol = tolerance or DEFAULT_TOLERANCES[request.precision]
            validation = {**stats.as_dict(), "tolerance": {k: v for k, v in tol.__dict__.items() if v is not None}}
            log(
                f"validation vs FP32 PyTorch ({stats.n} images): max abs {stats.max_abs:.3g}, "
                f"mean abs {stats.mean_abs:.3g}, cosine {stats.cosine_min:.6f}, top-1 agreement {stats.top1_agreement:.1%}"
            )
            check(stats, tol, f"{backend_obj.name} {request.precision} export {model_file}")
        manifest = {
            "schema": artifacts.MANIFEST_SCHEMA,
            "toolkit_version": artifacts.toolkit_version(),
            "created": artifacts.now_iso(),
            "backend": backend_obj.name,
            "precision": request.precision,
            "executed_precision": executed,
            "model_file": model_file,
            "model": model_metadata(model, info, ckpt_sha),
            "export": {
                "batch": None if request.dynamic_batch else request.batch,
                "dynamic_batch": request.dynamic_batch,
                "opset": request.opset,
                "seconds": round(export_s, 3),
                **details,
            },
            "validation": validation,
            "files": artifacts.file_entries(staged, names),
            "versions": artifacts.library_versions("torch", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt"),
            "machine": artifacts.machine_info(),
        }
        files = artifacts.publish(staged, out, names)
    manifest_path = artifacts.atomic_write_json(out / artifacts.MANIFEST_NAME, manifest)
    return ExportResult(
        backend=backend_obj.name,
        precision=request.precision,
        output_dir=out,
        model_file=out / model_file,
        files=files,
        manifest=manifest_path,
        validation=validation,
        export_seconds=export_s,
        details=details,
        executed_precision=executed,
    )
