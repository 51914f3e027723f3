"""The units of a streamed bench run, the same in the driver process and in a Ray worker.

- :func:`reference_shards`: FP32 PyTorch logits of data shards (for the reference cache);
- :func:`run_cell_case`: one backend x precision's export (or reuse) and latency, through
  :func:`volo_deploy.harness.runner.run_case` on a fixed small batch of real images, tagged with
  the identity of the machine that ran it;
- :func:`accuracy_shards`: one backend x precision over data shards, against the reference.

:class:`EvalJob` is everything they need, small and picklable (paths, not pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from volo_deploy.harness.shards import ShardResult, eval_shard

_MODELS: dict[tuple[str, str | None], Any] = {}  # per process: a worker loads the reference model once


@dataclass(frozen=True)
class EvalJob:
    """The selected images, their shards and preprocessing, and the model they are compared with."""

    root: Path
    items: tuple[tuple[str, int], ...]
    shards: tuple[tuple[int, int], ...]
    transform: Any  # EvalTransform
    chunk: int  # images per runtime call (the largest --batch-sizes value)
    checkpoint: Path
    model_name: str | None
    threads: int | None
    decode_workers: int = 2
    decode_mode: str = "thread"

    def batches(self, index: int):
        from volo_deploy.data.dataset import decode_batches

        start, stop = self.shards[index]
        return decode_batches(self.root, list(self.items[start:stop]), self.transform, self.chunk,
                              self.decode_workers, self.decode_mode)

    def shard_len(self, index: int) -> int:
        start, stop = self.shards[index]
        return stop - start


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def remember_model(job: EvalJob, model) -> None:
    """Use ``model`` (already loaded from ``job.checkpoint``) as this process's FP32 reference: not loaded again."""
    _MODELS.clear()
    _MODELS[(str(job.checkpoint), job.model_name)] = model.eval()


def _reference_model(job: EvalJob):
    from volo_deploy.models import load_model

    key = (str(job.checkpoint), job.model_name)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_model(job.checkpoint, job.model_name)[0].eval()
    return _MODELS[key]


def reference_shards(job: EvalJob, indices: list[int], on_batch: Callable[[int], None] | None = None
                     ) -> Iterator[ShardResult]:
    """FP32 PyTorch over the shards ``indices`` (logits kept: they are what the cache stores)."""
    from volo_deploy.export.validate import torch_logits

    _set_threads(job.threads)
    model = _reference_model(job)
    for i in indices:
        yield eval_shard(i, job.batches(i), lambda x: torch_logits(model, x, batch=job.chunk), on_batch=on_batch)


def node_identity(threads: int | None) -> dict[str, Any]:
    """The machine running this process: :func:`volo_deploy.machine.describe_machine` and its hardware fingerprint."""
    import platform

    import torch

    from volo_deploy.machine import describe_machine, hardware_fingerprint

    machine = describe_machine()
    return {"hostname": platform.node(), "machine": machine,
            "hardware_fingerprint": hardware_fingerprint(machine, threads or torch.get_num_threads())}


def run_cell_case(backend: str, precision: str, ctx) -> dict[str, Any]:
    """Export (or reuse) and time one backend x precision with ``ctx`` (a CaseContext whose ``x`` is
    the latency batch); the report row, with ``node`` = where it ran. Accuracy is filled in later."""
    from volo_deploy.harness.runner import run_case

    _set_threads(ctx.threads)
    row = run_case(backend, precision, replace(ctx, progress=False)).as_dict()
    row["node"] = node_identity(ctx.threads)
    return row


def load_runner(backend: str, precision: str, artifact: Path, threads: int | None):
    """The backend's runner for ``artifact`` with the options volo-bench uses."""
    from volo_deploy.backends import get_backend
    from volo_deploy.harness.runner import backend_options

    cls = get_backend(backend)
    return cls().load(artifact, backend_options(cls, threads))


def accuracy_shards(
    job: EvalJob, backend: str, precision: str, artifact: Path, refs: Iterable[tuple[int, np.ndarray]],
    on_batch: Callable[[int], None] | None = None, runner=None,
) -> Iterator[ShardResult]:
    """One backend x precision over the (shard index, reference logits) of ``refs``, one runner for all
    (``runner``: one already loaded from ``artifact``, left open; else loaded here and closed)."""
    from volo_deploy.backends.base import run_in_chunks

    _set_threads(job.threads)
    owned = runner is None
    runner = load_runner(backend, precision, artifact, job.threads) if owned else runner
    try:
        fixed = runner.input_shape[0]

        def run(x: np.ndarray) -> np.ndarray:
            return run_in_chunks(runner.run, x, fixed or job.chunk, pad=bool(fixed))

        for i, ref in refs:
            yield eval_shard(i, job.batches(i), run, ref_logits=ref, on_batch=on_batch)
    finally:
        if owned:
            runner.close()


class LocalExecutor:
    """Runs the units in this process, one after the other (``volo-bench`` without ``--ray``)."""

    def reference(self, job: EvalJob, todo: list[int], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        yield from reference_shards(job, todo, progress)

    def case(self, backend: str, precision: str, ctx) -> dict[str, Any]:
        return run_cell_case(backend, precision, ctx)

    def accuracy(self, job: EvalJob, backend: str, precision: str, row: dict, todo: list[int],
                 load_ref: Callable[[int], np.ndarray], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        if not todo:
            return
        artifact = Path(row["artifact"]["dir"]) / row["artifact"]["model_file"]
        yield from accuracy_shards(job, backend, precision, artifact, ((i, load_ref(i)) for i in todo), progress)

    def describe(self) -> dict[str, Any]:
        return {"mode": "local"}

    def close(self) -> None:
        _MODELS.clear()
