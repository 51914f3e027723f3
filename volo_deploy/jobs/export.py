"""The export job every backend shares: load, stage, export, validate, publish, manifest."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

from volo_deploy import artifacts
from volo_deploy.backends.base import (Backend, ExportArtifacts, ExportRequest, ExportResult, Skip, get_backend,
                                      library_distributions)
from volo_deploy.data.classes import class_names
from volo_deploy.errors import DiskFullError, is_disk_full
from volo_deploy.export.validate import Tolerance, validate_against_torch
from volo_deploy.models import CheckpointInfo, load_model
from volo_deploy.models.volo import VOLO

log = logging.getLogger(__name__)


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


def _file_key(checkpoint: str | Path | None) -> tuple:
    if checkpoint is None or not Path(checkpoint).is_file():
        return (str(checkpoint),)
    st = Path(checkpoint).stat()
    return (str(Path(checkpoint).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _load_and_hash(key: tuple, checkpoint, model_name, img_size) -> tuple[VOLO, CheckpointInfo, str]:
    model, info = load_model(checkpoint, model_name, img_size)
    return model, info, artifacts.sha256_file(info.path)


def load_checkpoint_once(
    checkpoint: str | Path | None, model_name: str | None, img_size: int | None
) -> tuple[VOLO, CheckpointInfo, str]:
    """(model, info, sha256) of ``checkpoint``: read and hashed once per process while the file is unchanged.

    A job exporting one checkpoint to several backends x precisions (``volo-bench``) loads it once; each
    export gets its own copy of the model, since exporters switch its layer forms.
    """
    model, info, sha = _load_and_hash(_file_key(checkpoint), checkpoint, model_name, img_size)
    return copy.deepcopy(model), info, sha


def export_model(
    backend: str,
    request: ExportRequest,
    model_name: str | None = None,
    checkpoint: str | Path | None = None,
    img_size: int | None = None,
    val_data: str | Path | None = None,
    tolerance: Tolerance | None = None,
    n_validate: int = 8,
) -> ExportResult:
    """Export one model with one backend, validate it against FP32 PyTorch, publish it.

    Raises :class:`~volo_deploy.errors.ValidationError` (nothing is published) when the
    artifact disagrees with PyTorch beyond ``tolerance`` (the precision's default).
    """
    backend_obj = get_backend(backend)()
    backend_obj.check_precision(request.precision)
    backend_obj.check_request(request)
    model, info, ckpt_sha = load_checkpoint_once(checkpoint, model_name, img_size)
    classes = class_names(model.cfg.num_classes, request.labels)  # a --labels file of another line count: refused now
    for note in info.notes:
        log.info("note: %s", note)
    log.info("model: %s", info.describe())
    model_file = backend_obj.model_filename(model.cfg.name, request)
    out, created = artifacts.prepare_output_dir(request.output_dir, [model_file, artifacts.MANIFEST_NAME],
                                                request.force)
    request = dataclasses.replace(request, checkpoint_sha256=ckpt_sha, val_data=val_data, n_validate=n_validate,
                                  tolerance=tolerance)
    try:
        meta = {**model_metadata(model, info, ckpt_sha), "class_names": classes[1]}
        return _stage_and_publish(backend_obj, model, request, meta, out, model_file, classes)
    except BaseException:  # Ctrl-C and SIGTERM included: no folder of this run is left behind
        artifacts.remove_created(created)
        raise


def _stage_and_publish(backend_obj: Backend, model: VOLO, request: ExportRequest, model_meta: dict[str, Any],
                       out: Path, model_file: str, classes: tuple[list[str] | None, str | None]) -> ExportResult:
    """Export into a staging folder in ``out``, validate, write the manifest there, publish the set (manifest last)."""
    with artifacts.staging_dir(out) as staged:
        start = time.perf_counter()
        made = _disk_full_named(lambda: backend_obj.export_impl(model, request, staged, model_file), out / model_file)
        export_s = time.perf_counter() - start
        if isinstance(made.validation, Skip):
            validation, executed = {"skipped": made.validation.reason}, None
            log.info("validation skipped: %s", made.validation.reason)
        else:
            validation, executed = validate_export(backend_obj, model, request, staged / model_file)
        names = [model_file, *made.files, *_labels_file(staged, classes, made.files)]
        manifest = build_manifest(backend_obj, request, model_file, model_meta, made, export_s, validation, executed,
                                  artifacts.file_entries(staged, names))
        _disk_full_named(lambda: artifacts.atomic_write_json(staged / artifacts.MANIFEST_NAME, manifest),
                         out / artifacts.MANIFEST_NAME)
        files = artifacts.publish(staged, out, [*names, artifacts.MANIFEST_NAME])
    return ExportResult(
        backend=backend_obj.name,
        precision=request.precision,
        output_dir=out,
        model_file=out / model_file,
        files=files[:-1],
        manifest=files[-1],
        validation=validation,
        export_seconds=export_s,
        details=made.details,
        executed_precision=executed,
    )


def _labels_file(staged: Path, classes: tuple[list[str] | None, str | None], made: list[str]) -> list[str]:
    """``labels.txt`` (class names, one per line) next to the model when names are known (``classes``: from
    :func:`class_names`: ImageNet-1k for 1000 classes, or ``--labels``); [] otherwise or when the backend
    wrote its own."""
    names, source = classes
    if names is None or "labels.txt" in made:
        return []
    (staged / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    log.info(f"classes: {len(names)} names from {source} (labels.txt), e.g. 0 = {names[0]}")
    return ["labels.txt"]


def _disk_full_named(fn, target: Path):
    """``fn()``; a full disk (an OSError, or a library's own error that kept the OS error's text) becomes one
    :class:`DiskFullError` naming ``target``."""
    try:
        return fn()
    except Exception as exc:
        if isinstance(exc, DiskFullError) or is_disk_full(exc):
            raise DiskFullError(f"disk full while writing {target} (nothing was published)") from None
        raise


def validate_export(backend_obj: Backend, model: VOLO, request: ExportRequest, artifact: Path) -> tuple[dict[str, Any], str | None]:
    """The staged artifact against FP32 PyTorch on the validation images: (statistics, executed precision).

    Raises :class:`~volo_deploy.errors.ValidationError` past the tolerance.
    """
    runner = backend_obj.load(artifact, backend_obj.validation_options(request))
    executed = runner.executed_precision
    log.info("%s %s: runtime computes in %s", backend_obj.name, request.precision,
             executed or "an unreported precision")
    try:
        what = f"{backend_obj.name} {request.precision} export {artifact.name}"
        return validate_against_torch(model, request, runner.run, what), executed
    finally:
        runner.close()


def build_manifest(backend_obj: Backend, request: ExportRequest, model_file: str, model_meta: dict[str, object],
                   made: ExportArtifacts, export_s: float, validation: dict[str, Any], executed: str | None,
                   files: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``manifest.json`` of one export."""
    return {
        "schema": artifacts.MANIFEST_SCHEMA,
        "toolkit_version": artifacts.toolkit_version(),
        "created": artifacts.now_iso(),
        "backend": backend_obj.name,
        "precision": request.precision,
        "executed_precision": executed,
        "model_file": model_file,
        "model": model_meta,
        "export": {
            "batch": None if request.dynamic_batch else request.batch,
            "dynamic_batch": request.dynamic_batch,
            "opset": request.opset,
            "seconds": round(export_s, 3),
            **made.details,
        },
        "validation": validation,
        "files": files,
        "versions": artifacts.library_versions(*library_distributions()),
        "machine": artifacts.machine_info(),
    }
