"""Data shards of a streamed evaluation: the plan, one shard's run, its result file, the run folder.

A shard is a fixed slice of the selected images. Its result (:class:`ShardResult`: top-k
indices, labels, running agreement statistics, unreadable images) is a small ``.npz`` written
atomically into ``<out>/shards/``, so an interrupted run resumes at the first missing shard
(:class:`RunState`), and shards computed anywhere (a Ray worker) merge into the same report.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from volo_deploy.errors import BadInputError
from volo_deploy.harness.stream import AgreementAccumulator, topk_indices

log = logging.getLogger(__name__)

RUN_STATE_SCHEMA = "volo_deploy.bench_run/1"
#: Test hook: the driver SIGKILLs itself after writing this many shard files (simulates a crash).
KILL_AFTER_ENV = "VOLO_BENCH_KILL_AFTER_SHARDS"


def shard_size(requested: int, chunk: int) -> int:
    """``requested`` rounded up to a multiple of ``chunk`` (images per runtime call), so a shard's
    batches are the batches of an unsharded run (identical runtime inputs, identical logits)."""
    return max(chunk, -(-requested // chunk) * chunk)


def plan_shards(n: int, requested: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) slices of ``n`` images, :func:`shard_size` images each (the last may be shorter)."""
    size = shard_size(requested, chunk)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass
class ShardResult:
    """What one shard contributes to the report (``logits`` only for the FP32 reference)."""

    index: int
    n: int
    top: np.ndarray  # (n, k) int32, see topk_indices
    labels: np.ndarray  # (n,) int64
    skipped: list[str] = field(default_factory=list)
    agreement: AgreementAccumulator | None = None
    logits: np.ndarray | None = None
    rotated: list[str] = field(default_factory=list)  # images whose EXIF orientation is not 1

    def to_bytes(self) -> bytes:
        meta = {"index": self.index, "n": self.n, "skipped": self.skipped, "rotated": self.rotated,
                "agreement": self.agreement.state() if self.agreement else None}
        arrays = {"top": self.top, "labels": self.labels, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if self.logits is not None:
            arrays["logits"] = self.logits
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ShardResult":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            agr = meta["agreement"]
            return cls(
                index=int(meta["index"]), n=int(meta["n"]), top=z["top"], labels=z["labels"],
                skipped=list(meta["skipped"]), agreement=AgreementAccumulator.from_state(agr) if agr else None,
                logits=z["logits"] if "logits" in z.files else None, rotated=list(meta.get("rotated", [])),
            )


def eval_shard(
    index: int,
    batches,
    run: Callable[[np.ndarray], np.ndarray],
    ref_logits: np.ndarray | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ShardResult:
    """Run ``run`` over ``batches`` (:class:`volo_deploy.data.dataset.DecodedBatch`) of one shard.

    Without ``ref_logits`` this is the reference: its logits are kept (they are the cache).
    With them, only the top-k indices and the running agreement are kept.
    """
    tops, labels, skipped, logits, rotated = [], [], [], [], []
    acc = AgreementAccumulator() if ref_logits is not None else None
    done = 0
    for b in batches:
        skipped += b.skipped
        rotated += b.rotated
        if len(b.x):
            out = np.asarray(run(b.x), dtype=np.float32)
            tops.append(topk_indices(out))
            labels.append(b.labels)
            if acc is None:
                logits.append(out)
            else:
                ref = ref_logits[done : done + len(out)]
                if len(ref) != len(out):
                    raise RuntimeError(f"shard {index}: more images readable than in the reference shard ({len(ref_logits)})")
                acc.update(ref, out)
            done += len(out)
        if on_batch is not None:
            on_batch(len(b.used) + len(b.skipped))
    if ref_logits is not None and done != len(ref_logits):
        raise RuntimeError(f"shard {index}: {done} images read, the reference shard has {len(ref_logits)}")
    return ShardResult(
        index=index, n=done,
        top=np.concatenate(tops) if tops else np.zeros((0, 1), np.int32),
        labels=np.concatenate(labels) if labels else np.zeros((0,), np.int64),
        skipped=skipped, agreement=acc, logits=np.concatenate(logits) if logits else None, rotated=rotated,
    )


def _read_state(path: Path) -> dict[str, Any]:
    """``run.json`` of an interrupted run; BadInputError (exit 2) naming it and what to do when damaged."""
    try:
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"--resume: {path} is damaged ({exc}); run the same command without --resume to start afresh "
            "(the interrupted run's shards are then removed)"
        ) from None
    return found


class RunState:
    """``<out>/shards/``: the run's config (``run.json``), one folder of shard files per case and
    each case's export + latency row (``<case>.case.json``). Every file is written atomically."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "shards"
        self.written = 0

    def begin(self, config: dict[str, Any], resume: bool) -> None:
        """Start afresh (clearing an earlier run's shards) or, with ``resume``, check the config matches."""
        from volo_deploy.artifacts import atomic_write_json

        path = self.dir / "run.json"
        config = json.loads(json.dumps(config, default=str))  # compared as it reads back (tuples -> lists)
        if resume:
            if not path.is_file():
                raise BadInputError(f"--resume: {path} not found (no interrupted run in this --out folder)")
            found = _read_state(path)
            diff = [k for k in sorted(set(config) | set(found)) if config.get(k) != found.get(k)]
            if diff:
                k = diff[0]
                raise BadInputError(
                    f"--resume: {path} is a run with another configuration: {k} expected {config.get(k)!r}, "
                    f"found {found.get(k)!r}" + (f" (and {len(diff) - 1} more)" if len(diff) > 1 else "")
                )
            return
        if self.dir.exists():
            import shutil

            log.info(f"starting afresh: removing the earlier run's shards in {self.dir} (--resume continues a run)")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        atomic_write_json(path, config)

    def shard_path(self, case: str, index: int) -> Path:
        return self.dir / case / f"{index:05d}.npz"

    def load_shard(self, case: str, index: int) -> ShardResult | None:
        path = self.shard_path(case, index)
        if not path.is_file():
            return None
        try:
            return ShardResult.from_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError) as exc:
            log.warning(f"recomputing {path}: unreadable ({exc})")
            return None

    def save_shard(self, case: str, res: ShardResult) -> None:
        from volo_deploy.artifacts import atomic_write_bytes

        path = self.shard_path(case, res.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, res.to_bytes())
        self.written += 1
        limit = os.environ.get(KILL_AFTER_ENV)
        if limit and self.written >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)

    def clear_shards(self, case: str) -> None:
        for path in (self.dir / case).glob("*.npz"):
            path.unlink()

    def load_case(self, case: str) -> dict[str, Any] | None:
        """The case's row of the interrupted run, or None (absent, or damaged: then its shards are dropped too,
        and the case runs again)."""
        path = self.dir / f"{case}.case.json"
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text())
            if not isinstance(row, dict) or not isinstance(row.get("status"), str):
                raise ValueError("not a case row (a JSON object with a status)")
        except (OSError, ValueError) as exc:
            log.warning(f"recomputing case {case}: {path} is damaged ({exc})")
            self.clear_shards(case)
            return None
        return row

    def save_case(self, case: str, row: dict[str, Any]) -> None:
        from volo_deploy.artifacts import atomic_write_json

        atomic_write_json(self.dir / f"{case}.case.json", row)


#: The lock file of a ``volo-bench --out`` folder: holds the pid of the run using it.
LOCK_NAME = ".volo-bench.lock"
_HELD: dict[str, int] = {}  # folders this process has locked -> depth (the lock is re-entrant in one process)


@contextmanager
def out_folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out`` (``fcntl.flock`` on ``<out>/.volo-bench.lock``) while inside.

    A second run on the same folder gets BadInputError (exit 2) "in use by pid N" at once. The kernel releases
    the lock of a killed run, so the next run takes it over (and says so). When this call created ``out`` and the
    run fails before writing anything else there, ``out`` is removed again.
    """
    out = Path(out)
    key = os.path.realpath(out)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    created = not out.exists()
    fd = _acquire(out)
    _HELD[key] = 1
    try:
        yield
    except BaseException:
        if created and {p.name for p in out.iterdir()} <= {LOCK_NAME}:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        del _HELD[key]
        os.close(fd)  # releases the flock


def _acquire(out: Path) -> int:
    import fcntl

    from volo_deploy.artifacts import check_regular_target

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot be created ({exc.strerror})") from None
    path = out / LOCK_NAME
    check_regular_target(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot create its lock file {path} ({exc.strerror})") from None
    previous = os.pread(fd, 32, 0).decode(errors="replace").strip()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BadInputError(f"--out {out}: in use by pid {previous or '?'} (another volo-bench run); wait for it "
                            "to finish or pass another --out") from None
    if previous and previous != str(os.getpid()):
        log.info(f"--out {out}: taking over the lock left by pid {previous}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
