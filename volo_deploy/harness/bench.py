"""The bench loop: FP32 PyTorch reference once, then every backend x precision as a case.

:func:`run_bench` returns the report dict (schema in :mod:`volo_deploy.harness.report`);
:func:`volo_deploy.harness.report.write_outputs` turns it into files.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from volo_deploy.errors import BadInputError

DEFAULT_BATCH_SIZES = (1, 8)


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (the ``volo-bench`` flags)."""

    model: str | None = None
    checkpoint: Path | None = None
    data: Path | None = None
    data_root: Path | None = None  # root of a list file / manifest's relative paths
    limit: int | None = None
    backends: tuple[str, ...] | None = None  # None: every registered backend
    precisions: tuple[str, ...] | None = None  # None: each backend's own list
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    warmup: int = 5
    iters: int = 50
    threads: int | None = None
    artifacts: Path | None = None  # None: a temp folder removed afterwards
    calib_data: Path | None = None
    progress: bool = True
    noisy_cv: float = 0.15
    command: list[str] = field(default_factory=list)


def resolve_cases(cfg: BenchConfig) -> list[tuple[str, str]]:
    """(backend, precision) pairs in a stable order; unknown names raise BadInputError up front."""
    from volo_deploy.backends import backend_names, get_backend

    names = list(cfg.backends) if cfg.backends else backend_names()
    classes = []
    for n in names:
        cls = get_backend(n)
        if cls not in classes:
            classes.append(cls)
    from volo_deploy.backends.precision import PRECISIONS as known
    for p in cfg.precisions or ():
        if p not in known:
            raise BadInputError(f"unknown precision {p!r}; known: {', '.join(known)}")
    return [(c.name, p) for c in classes for p in (cfg.precisions or c.precisions)]


def thread_settings(requested: int | None) -> dict[str, Any]:
    """Apply ``requested`` to PyTorch (other runtimes get it through their options); report what is set."""
    import torch

    if requested is not None:
        torch.set_num_threads(requested)
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return {
        "requested": requested,
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "env": {k: v for k, v in env.items() if v is not None},
        "cpu_count": os.cpu_count(),
    }


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every case of ``cfg`` and return the report dict."""
    from volo_deploy import artifacts
    from volo_deploy.export.pipeline import torch_logits
    from volo_deploy.harness.data import load_eval_set
    from volo_deploy.machine import hardware_fingerprint
    from volo_deploy.harness.report import SCHEMA, result_rows_summary
    from volo_deploy.harness.runner import CaseContext, run_case
    from volo_deploy.harness.stats import topk_accuracy
    from volo_deploy.models import load_model

    cases = resolve_cases(cfg)
    t0 = time.perf_counter()
    threads = thread_settings(cfg.threads)
    model, info = load_model(cfg.checkpoint, cfg.model)
    ckpt_sha = artifacts.sha256_file(info.path)
    log(f"model: {info.describe()}")
    evalset = load_eval_set(model.cfg, cfg.data, cfg.limit, cfg.progress, cfg.data_root)
    log(f"data: {evalset.source}: {len(evalset.items)} of {evalset.total_available} images ({evalset.layout})")
    for s in evalset.skipped:
        log(f"warning: skipped {s}")
    ref = torch_logits(model, evalset.x, batch=max(cfg.batch_sizes))
    ref_acc = topk_accuracy(ref, evalset.labels) if evalset.labels is not None else {}
    model_cfg = model.cfg
    del model
    val_data = cfg.data if cfg.data is not None and Path(cfg.data).is_dir() else None
    calib = cfg.calib_data  # None: the backend's default (the demo model ships a calibration manifest)
    tmp = None
    root = cfg.artifacts
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="volo_bench_")
        root = Path(tmp.name)
    ctx = CaseContext(
        checkpoint=Path(info.path),
        checkpoint_sha256=ckpt_sha,
        model_name=cfg.model,
        x=evalset.x,
        labels=evalset.labels,
        ref_logits=ref,
        ref_top1_pct=ref_acc.get("top1_pct"),
        batch_sizes=tuple(cfg.batch_sizes),
        warmup=cfg.warmup,
        iters=cfg.iters,
        threads=cfg.threads,
        artifacts_root=Path(root),
        val_data=val_data,
        calib_data=calib,
        progress=cfg.progress,
        log=log,
        noisy_cv=cfg.noisy_cv,
    )
    results = []
    try:
        for backend, precision in cases:
            res = run_case(backend, precision, ctx)
            log(f"{res.backend} {res.precision}: {res.status}" + (f" ({res.reason})" if res.reason else ""))
            results.append(res.as_dict())
    finally:
        if tmp is not None:
            tmp.cleanup()
    machine = artifacts.machine_info()
    report = {
        "schema": SCHEMA,
        "toolkit_version": artifacts.toolkit_version(),
        "created": artifacts.now_iso(),
        "command": list(cfg.command),
        "fingerprints": {
            "model": f"sha256:{ckpt_sha}",
            "data": evalset.fingerprint,
            "hardware": hardware_fingerprint(machine, threads["torch_intra_op"]),
        },
        "model": {
            "name": model_cfg.name,
            "checkpoint": str(info.path),
            "checkpoint_sha256": ckpt_sha,
            "img_size": model_cfg.img_size,
            "num_classes": model_cfg.num_classes,
        },
        "data": evalset.describe(),
        "settings": {
            "backends": sorted({b for b, _ in cases}, key=[b for b, _ in cases].index),
            "precisions": list(cfg.precisions) if cfg.precisions else None,
            "batch_sizes": list(cfg.batch_sizes),
            "warmup": cfg.warmup,
            "iters": cfg.iters,
            "limit": cfg.limit,
            "noisy_cv": cfg.noisy_cv,
            "artifacts": str(cfg.artifacts) if cfg.artifacts else None,
            "calib_data": str(calib) if calib else None,
        },
        "threads": threads,
        "machine": machine,
        "versions": artifacts.library_versions(
            "volo_deploy", "torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt"
        ),
        "reference": {"backend": "torch", "precision": "fp32", "accuracy": ref_acc or None},
        "results": results,
        "elapsed_seconds": round(time.perf_counter() - t0, 1),
    }
    report["summary"] = result_rows_summary(report)
    return report


def parse_list(text: str, kind: type = str) -> tuple:
    """``"a,b"`` -> ``("a", "b")`` (converted by ``kind``), empty items dropped."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise BadInputError(f"empty list {text!r}")
    try:
        return tuple(kind(t) for t in items)
    except ValueError:
        raise BadInputError(f"bad list {text!r}: expected {kind.__name__} values") from None
