"""The bench loop: FP32 PyTorch reference once, then every backend x precision as a case.

Streamed: images are decoded batch by batch in a worker pool, one data shard at a time, and
only the top-k indices, labels and running agreement statistics are kept, so memory does not
grow with the number of images. The reference logits are cached on disk
(:mod:`volo_deploy.harness.refcache`); shard results are written into ``<out>/shards/`` as they
finish, so ``resume=True`` continues an interrupted run (:mod:`volo_deploy.harness.shards`).
Each case is exported and timed on a fixed small batch of real images by
:func:`volo_deploy.harness.runner.run_case`, in the driver or in one Ray worker
(:mod:`volo_deploy.harness.ray_exec`); accuracy shards run anywhere.

:func:`run_bench` returns the report dict (schema in :mod:`volo_deploy.harness.report`);
:func:`volo_deploy.harness.report.write_outputs` turns it into files.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.errors import BadInputError, DataError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_SHARD_SIZE = 1000


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
    artifacts: Path | None = None  # None: <out>/shards/artifacts, removed once the run completes
    data_layout: str | None = None  # layout of data (None: detected)
    int8: Any = None  # volo_deploy.quant.Int8Options of the int8 rows (None: defaults); --calib-data among them
    labels: Path | None = None  # --labels: class names (None: ImageNet-1k names for 1000 classes)
    progress: bool = True
    noisy_cv: float = 0.15
    throughput_mode: bool = False  # --throughput-mode: also batch img/s in the runtime's throughput mode
    command: list[str] = field(default_factory=list)
    out: Path | None = None  # where shard results go (<out>/shards); None: a temp folder
    resume: bool = False
    shard_size: int = DEFAULT_SHARD_SIZE
    decode_workers: int = 2
    decode_mode: str = "thread"  # or "process"
    ray: str | None = None  # None: in this process; "local", "auto" or a Ray address
    ray_resources: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()  # backend -> custom resources
    strict_data: bool = False  # an unreadable image is an error before any work (else: skipped, reported)
    exif_transpose: bool = False  # apply EXIF orientation (timm, and so the default, ignores it)

    @property
    def calib_data(self) -> Path | None:
        return self.int8.calib_data if self.int8 is not None else None

    @property
    def calib_layout(self) -> str | None:
        return self.int8.calib_layout if self.int8 is not None else None


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


@dataclass
class _Run:
    """One bench run's shared pieces (what the steps below pass around)."""

    cfg: BenchConfig
    job: Any  # EvalJob
    state: Any  # RunState
    cache: Any  # ReferenceCache
    executor: Any  # LocalExecutor | RayExecutor
    bar: Any  # tqdm over every image of every case
    num_classes: int
    int8: Any = None  # harness.calib.BenchInt8: the INT8 rows' images
    stats: dict[str, Any] = field(default_factory=dict)  # reference cache hits
    refs: list = field(default_factory=list)  # reference ShardResults without logits


def _reference_pass(run: _Run) -> list:
    """Every reference shard (from the cache or computed and cached), logits dropped to keep memory flat."""
    from dataclasses import replace

    job, cache = run.job, run.cache
    light: dict[int, Any] = {}
    todo = []
    for i in range(len(job.shards)):
        hit = cache.load(i)
        if hit is None:
            todo.append(i)
        else:
            light[i] = replace(hit, logits=None)
            run.bar.update(job.shard_len(i))
    log.info(f"reference: {len(light)} of {len(job.shards)} shard(s) from the cache {cache.dir}")
    stale = cache.stale_reason() if not light else None
    if stale:
        log.info(f"reference cache: stale for {cache.label} ({stale}); recomputing")
    for res in run.executor.reference(job, todo, run.bar.update):
        cache.save(res)
        light[res.index] = replace(res, logits=None)
    run.stats["reference_cached"], run.stats["reference_computed"] = len(job.shards) - len(todo), len(todo)
    return [light[i] for i in range(len(job.shards))]


def _ref_logits(run: _Run, index: int) -> np.ndarray:
    """Reference logits of one shard, re-read (and re-verified) from the cache; recomputed if it went bad."""
    from volo_deploy.harness.evaljob import reference_shards

    hit = run.cache.load(index)
    if hit is None:
        hit = next(reference_shards(run.job, [index]))
        run.cache.save(hit)
    return hit.logits


def _latency_context(run: _Run, info, ckpt_sha: str, artifacts_root: Path) -> Any:
    """The CaseContext of each case: its images are the first batch of real images (latency is timed on them)."""
    from volo_deploy.harness.runner import CaseContext

    cfg = run.cfg
    with closing(run.job.batches(0)) as batches:  # closing: stops the decode pool's look-ahead
        first = next((b for b in batches if len(b.x)), None)
    if first is None:
        raise DataError(f"data {run.job.root}: no readable image in the first shard")
    return CaseContext(
        checkpoint=Path(info.path), checkpoint_sha256=ckpt_sha, model_name=cfg.model, x=first.x, labels=first.labels,
        ref_logits=_ref_logits(run, 0)[: len(first.x)], ref_top1_pct=None, batch_sizes=tuple(cfg.batch_sizes),
        warmup=cfg.warmup, iters=cfg.iters, threads=cfg.threads, artifacts_root=artifacts_root,
        val_data=cfg.data if cfg.data is not None and Path(cfg.data).is_dir() else None, int8=run.int8.opts,
        class_labels=cfg.labels, progress=False, noisy_cv=cfg.noisy_cv, throughput_mode=cfg.throughput_mode,
    )


def _case_row(run: _Run, backend: str, precision: str, ctx) -> dict[str, Any]:
    """The case's export + latency row: from an interrupted run when its artifact is intact, else run now."""
    from volo_deploy.harness.runner import OK, reusable_artifact

    name = f"{backend}_{precision}"
    row = run.state.load_case(name) if run.cfg.resume else None
    if row is not None and row["status"] == OK:
        folder = Path(row["artifact"]["dir"])
        if reusable_artifact(folder, backend, precision, ctx.checkpoint_sha256)[0] is None:
            log.info(f"{name}: re-running the case, its artifact in {folder} is gone or changed")
            run.state.clear_shards(name)  # they came from that artifact
            row = None
    if row is None:
        row = run.executor.case(backend, precision, ctx)
        run.state.save_case(name, row)
    return row


def _accuracy(run: _Run, backend: str, precision: str, row: dict) -> None:
    """Stream every data shard through the case's artifact; fill ``row`` accuracy/agreement (or its failure)."""
    import traceback

    from volo_deploy.harness.runner import RUN_FAILED, _error_text

    name = f"{backend}_{precision}"
    done = {}
    for i in range(len(run.job.shards)):
        res = run.state.load_shard(name, i)
        if res is not None:
            done[i] = res
            run.bar.update(run.job.shard_len(i))
    todo = [i for i in range(len(run.job.shards)) if i not in done]
    if done:
        log.info(f"{name}: {len(done)} of {len(run.job.shards)} shard(s) from the interrupted run")
    try:
        for res in run.executor.accuracy(run.job, backend, precision, row, todo, lambda i: _ref_logits(run, i),
                                         run.bar.update):
            run.state.save_shard(name, res)
            done[res.index] = res
    except Exception as exc:  # a runtime failing on the data: this case's failure, not the run's
        row["status"], row["reason"] = RUN_FAILED, _error_text(exc)
        row["accuracy"] = row["agreement"] = None  # run_case's figures on the latency batch only
        row["log"].append(traceback.format_exc(limit=-3))
        return
    _fill_accuracy(row, [done[i] for i in sorted(done)], run.refs, run.num_classes)


def _fill_accuracy(row: dict, shards: list, ref_shards: list, num_classes: int) -> None:
    """Merge a case's shards (each image counted exactly once, checked) into ``row``."""
    from volo_deploy.harness.stream import AgreementAccumulator, accuracy_from_topk

    if [s.index for s in shards] != [r.index for r in ref_shards] or any(
        s.n != r.n for s, r in zip(shards, ref_shards)
    ):
        raise RuntimeError(f"{row['backend']} {row['precision']}: shards do not cover the reference images exactly once")
    acc = AgreementAccumulator()
    for s in shards:
        acc.merge(s.agreement)
    row["agreement"] = acc.result()
    labels = np.concatenate([s.labels for s in shards])
    top = np.concatenate([s.top for s in shards])
    accuracy = accuracy_from_topk(top, labels, num_classes)
    ref_acc = accuracy_from_topk(np.concatenate([r.top for r in ref_shards]), labels, num_classes)
    if "top1_pct" in accuracy and "top1_pct" in ref_acc:
        accuracy["delta_top1_pp"] = accuracy["top1_pct"] - ref_acc["top1_pct"]
    row["accuracy"] = accuracy


def _used_items(job, ref_shards: list) -> tuple[list[tuple[str, int]], list[str]]:
    """(readable images in order, 'path: reason' of the unreadable ones), from the reference shards."""
    used, skipped = [], []
    for (start, stop), r in zip(job.shards, ref_shards):
        bad = {s.split(": ", 1)[0] for s in r.skipped}
        used += [it for it in job.items[start:stop] if it[0] not in bad]
        skipped += r.skipped
    if sum(r.n for r in ref_shards) != len(used):
        raise RuntimeError(f"reference shards hold {sum(r.n for r in ref_shards)} images, {len(used)} are readable")
    return used, skipped


def _run_config(cfg: BenchConfig, ckpt_sha: str, data_key: str, job, cases, int8=None) -> dict[str, Any]:
    """What shard results depend on: a resumed run must match it exactly."""
    from volo_deploy.harness.shards import RUN_STATE_SCHEMA

    return {
        "schema": RUN_STATE_SCHEMA, "checkpoint_sha256": ckpt_sha, "model": cfg.model, "data": data_key,
        "n_selected": len(job.items), "limit": cfg.limit, "transform": asdict(job.transform),
        "cases": [list(c) for c in cases], "shards": [list(s) for s in job.shards],
        "batch_sizes": list(cfg.batch_sizes), "warmup": cfg.warmup, "iters": cfg.iters, "threads": cfg.threads,
        "artifacts": str(cfg.artifacts) if cfg.artifacts else None,
        "calib_data": str(cfg.calib_data) if cfg.calib_data else None, "noisy_cv": cfg.noisy_cv,
        "throughput_mode": cfg.throughput_mode, "data_layout": cfg.data_layout, "calib_layout": cfg.calib_layout,
        "int8": _int8_run_config(int8),
        "int8_set_aside": int8.info.get("fingerprint") if int8 is not None else None,
    }


def _executor(cfg: BenchConfig):
    if cfg.ray is None:
        from volo_deploy.harness.evaljob import LocalExecutor

        return LocalExecutor()
    from volo_deploy.harness.ray_exec import RayExecutor

    return RayExecutor(cfg.ray, dict(cfg.ray_resources), cfg.threads)


def _int8_run_config(int8) -> dict[str, str] | None:
    """The INT8 options as --resume compares them; images set aside from --data are named by their fingerprint
    (``int8_set_aside``), not by the manifest path inside --out, so a moved or copied --out folder resumes."""
    if int8 is None or not int8.opts:
        return None
    out = {k: str(v) for k, v in asdict(int8.opts).items()}
    if int8.info.get("excluded_from_evaluation"):
        out["calib_data"] = "set aside from --data"
    return out


def _open_job(cfg: BenchConfig, exclude: frozenset[str] = frozenset()):
    """(EvalJob, selected images, checkpoint info, its sha256, model config) of ``cfg``."""
    from dataclasses import replace

    from volo_deploy import artifacts
    from volo_deploy.data.classes import class_names
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.harness.data import open_eval_items
    from volo_deploy.harness.evaljob import EvalJob, remember_model
    from volo_deploy.harness.shards import plan_shards
    from volo_deploy.models import load_model

    model, info = load_model(cfg.checkpoint, cfg.model)
    log.info(f"model: {info.describe()}")
    class_names(model.cfg.num_classes, cfg.labels)  # a --labels file of another line count: refused now
    sel = open_eval_items(model.cfg, cfg.data, cfg.limit, cfg.data_root, cfg.data_layout, exclude=exclude)
    log.info(f"data: {sel.source}: {len(sel.items)} of {sel.total_available} images ({sel.layout})")
    if cfg.strict_data:
        from volo_deploy.data.dataset import check_readable

        check_readable(sel.root, sel.items, cfg.decode_workers)
    chunk = max(cfg.batch_sizes)
    tf = replace(EvalTransform.for_config(model.cfg), exif_transpose=cfg.exif_transpose)
    job = EvalJob(sel.root, tuple(sel.items), tuple(plan_shards(len(sel.items), cfg.shard_size, chunk)),
                  tf, chunk, Path(info.path), cfg.model, cfg.threads, cfg.decode_workers, cfg.decode_mode)
    remember_model(job, model)  # the in-process reference pass reuses it (Ray workers load their own)
    return job, sel, info, artifacts.sha256_file(info.path), model.cfg


def _run_cases(run: _Run, cases, ctx) -> list[dict[str, Any]]:
    """Each case's row: export + latency, then its accuracy over every shard."""
    results = []
    for backend, precision in cases:
        run.bar.set_postfix_str(f"{backend}/{precision}")
        row = _case_row(run, backend, precision, ctx)
        if row["status"] == "ok":
            _accuracy(run, backend, precision, row)
        else:
            run.bar.update(len(run.job.items))
        log.info(f"{row['backend']} {row['precision']}: {row['status']}" + (f" ({row['reason']})" if row["reason"] else ""))
        results.append(row)
    return results


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every case of ``cfg`` and return the report dict, holding the lock of ``cfg.out`` (a second run on
    the same folder stops at once with BadInputError "in use by pid N")."""
    if cfg.out is None:
        return _run_bench(cfg)
    from volo_deploy.harness.shards import out_folder_lock

    with out_folder_lock(Path(cfg.out)):
        return _run_bench(cfg)


def failed_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows that failed (export, validation or run), not those merely unavailable or unsupported here."""
    from volo_deploy.harness.runner import UNAVAILABLE, UNSUPPORTED, OK

    return [r for r in report["results"] if r["status"] not in (OK, UNAVAILABLE, UNSUPPORTED)]


def _run_bench(cfg: BenchConfig) -> dict[str, Any]:
    import shutil

    from tqdm.auto import tqdm

    from volo_deploy.harness.calib import plan_bench_int8
    from volo_deploy.harness.refcache import ReferenceCache, reference_key
    from volo_deploy.harness.shards import RunState, shard_size

    cases = resolve_cases(cfg)
    if cfg.ray is not None:
        from volo_deploy.harness.ray_exec import require_ray

        require_ray()
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="volo_bench_") if cfg.out is None else None
    run_dir = Path(cfg.out) if cfg.out is not None else Path(tmp.name)
    int8 = plan_bench_int8(cfg, cases, run_dir.resolve() / "shards")  # missing INT8 data: refused before any model work
    threads = thread_settings(cfg.threads)
    job, sel, info, ckpt_sha, model_cfg = _open_job(cfg, int8.excluded)
    if int8.note():
        sel.notes.append(int8.note())
        log.info(int8.note())
    data_key = sel.content_key()
    cache = ReferenceCache(reference_key(ckpt_sha, data_key, job.transform, list(job.shards)),
                           label=f"{info.path} on {sel.source}")
    state = RunState(run_dir)
    state.begin(_run_config(cfg, ckpt_sha, data_key, job, cases, int8), cfg.resume)
    int8.write()
    artifacts_root = Path(cfg.artifacts) if cfg.artifacts is not None else state.dir / "artifacts"
    executor = _executor(cfg)
    bar = tqdm(total=len(job.items) * (1 + len(cases)), desc="volo-bench", unit="img", disable=not cfg.progress,
               smoothing=0.05)
    run = _Run(cfg, job, state, cache, executor, bar, model_cfg.num_classes, int8)
    try:
        run.refs = _reference_pass(run)
        results = _run_cases(run, cases, _latency_context(run, info, ckpt_sha, artifacts_root))
        execution = {**executor.describe(), "shard_size": shard_size(cfg.shard_size, job.chunk),
                     "shards": len(job.shards), "decode_workers": cfg.decode_workers, "decode_mode": cfg.decode_mode,
                     "resumed": cfg.resume, "reference_cache": {"dir": str(run.cache.dir), **run.stats}}
    finally:
        bar.close()
        executor.close()
    used, skipped = _used_items(job, run.refs)
    data = {**sel.describe(used, skipped), **({"int8_calibration": int8.info} if int8.info else {})}
    _data_warnings(data, [p for r in run.refs for p in r.rotated], cfg.exif_transpose)
    if cfg.artifacts is None:
        shutil.rmtree(artifacts_root, ignore_errors=True)
    if tmp is not None:
        tmp.cleanup()
    return _report(cfg, cases, threads, info, ckpt_sha, model_cfg, data, run.refs, results, t0, execution)


def _data_warnings(data: dict[str, Any], rotated: list[str], applied: bool) -> None:
    """One warning for the unreadable images (every row skipped the same ones), one note for EXIF-rotated images;
    both recorded in the report's ``data`` section."""
    skipped = data["skipped"]
    if skipped["count"]:
        log.warning(f"{skipped['count']} unreadable image(s) skipped in every row (report data.skipped): "
            + ", ".join(skipped["paths"][:5]) + (" ..." if skipped["count"] > 5 else "")
            + "; --strict-data makes this an error")
    data["exif_rotated"] = {"count": len(rotated), "paths": rotated[:20], "applied": applied}
    if rotated:
        note = (f"{len(rotated)} image(s) carry an EXIF orientation other than 1: "
                + ("applied (--exif-transpose)" if applied else "ignored, as timm does (--exif-transpose applies it)"))
        data["notes"].append(note)
        log.info(f"note: {note}")


def _report(cfg, cases, threads, info, ckpt_sha, model_cfg, data: dict, ref_shards: list, results: list, t0: float,
            execution: dict) -> dict[str, Any]:
    from volo_deploy import artifacts
    from volo_deploy.harness.report import SCHEMA, result_rows_summary
    from volo_deploy.harness.stream import accuracy_from_topk
    from volo_deploy.machine import hardware_fingerprint
    from volo_deploy.backends.base import library_distributions
    from volo_deploy.data.classes import class_names

    labels = np.concatenate([r.labels for r in ref_shards])
    ref_acc = accuracy_from_topk(np.concatenate([r.top for r in ref_shards]), labels, model_cfg.num_classes)
    machine = artifacts.machine_info()
    report = {
        "schema": SCHEMA,
        "toolkit_version": artifacts.toolkit_version(),
        "created": artifacts.now_iso(),
        "command": list(cfg.command),
        "fingerprints": {
            "model": f"sha256:{ckpt_sha}",
            "data": data["fingerprint"],
            "hardware": hardware_fingerprint(machine, threads["torch_intra_op"]),
        },
        "model": {
            "name": model_cfg.name,
            "checkpoint": str(info.path),
            "checkpoint_sha256": ckpt_sha,
            "img_size": model_cfg.img_size,
            "num_classes": model_cfg.num_classes,
            "class_names": class_names(model_cfg.num_classes, cfg.labels)[1],  # where names come from (None: numbers)
        },
        "data": data,
        "settings": {
            "backends": sorted({b for b, _ in cases}, key=[b for b, _ in cases].index),
            "precisions": list(cfg.precisions) if cfg.precisions else None,
            "batch_sizes": list(cfg.batch_sizes),
            "warmup": cfg.warmup,
            "iters": cfg.iters,
            "limit": cfg.limit,
            "noisy_cv": cfg.noisy_cv,
            "artifacts": str(cfg.artifacts) if cfg.artifacts else None,
            "calib_data": str(cfg.calib_data) if cfg.calib_data else None,
            "calib_layout": cfg.calib_layout,
        },
        "threads": threads,
        "machine": machine,
        "versions": artifacts.library_versions("volo_deploy", "numpy", *library_distributions(), "ray"),
        "reference": {"backend": "torch", "precision": "fp32", "accuracy": ref_acc or None},
        "execution": execution,
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


def parse_ray_resources(specs: list[str]) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
    """``["tensorrt=jetson_orin:1"]`` -> ``(("tensorrt", (("jetson_orin", 1.0),)),)``; BadInputError on bad syntax."""
    out = []
    for spec in specs:
        backend, _, rest = spec.partition("=")
        pairs = []
        for item in rest.split(","):
            name, _, amount = item.partition(":")
            try:
                value = float(amount) if amount else 1.0
            except ValueError:
                value = -1.0
            if not name.strip() or value <= 0:
                raise BadInputError(f"--ray-resources {spec!r}: expected BACKEND=RESOURCE:AMOUNT[,RESOURCE:AMOUNT]")
            pairs.append((name.strip(), value))
        if not backend.strip():
            raise BadInputError(f"--ray-resources {spec!r}: expected BACKEND=RESOURCE:AMOUNT[,RESOURCE:AMOUNT]")
        out.append((backend.strip(), tuple(pairs)))
    return tuple(out)
