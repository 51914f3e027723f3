"""``volo-bench --ray``: the run's units as Ray tasks (``pip install 'volo_deploy[ray]'``).

- reference shards: one task per data shard (FP32 PyTorch), written into the driver's cache;
- each backend x precision: one **case task** exports (or reuses, hash-checked) the artifact into
  ``--artifacts`` and measures latency on its own worker -- latency is never merged across
  nodes, and the row records that worker's machine (``node``: ``describe_machine()`` and
  ``hardware_fingerprint`` taken in the worker); the artifact's files come back as bytes
  through the object store;
- then one **accuracy task** per data shard, anywhere that has the runtime: it uses the
  artifact folder in place when it sees it with the same hashes (one machine, or a shared
  filesystem), else writes the shipped bytes into its node's temp folder.

Cases run one after the other (their shards in parallel), so a case's latency is timed while
no other task of this run is busy. Tasks request ``num_cpus`` = ``--threads`` (1 by default),
one GPU for TensorRT, and the custom resources of ``--ray-resources BACKEND=RES:N`` (e.g.
``tensorrt=jetson_orin:1`` to pin TensorRT to a Jetson that joined the cluster with
``ray start --address=HEAD:6379 --resources='{"jetson_orin": 1}'``). A worker that dies is
retried (``max_retries``). Data and checkpoint paths must be readable on every node (same
path or a shared filesystem); images are never shipped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from volo_deploy.errors import BadInputError
from volo_deploy.harness.evaljob import EvalJob, accuracy_shards, reference_shards, run_cell_case
from volo_deploy.harness.shards import ShardResult

MAX_RETRIES = 3
#: Test hook: a marker path; when ``<marker>.arm`` exists and ``<marker>`` does not, the worker running
#: accuracy shard 1 creates ``<marker>`` and dies (``os._exit``), once, as a crashed node would.
CRASH_ONCE_ENV = "VOLO_BENCH_CRASH_ONCE"


def pack_artifact(folder: Path) -> dict[str, Any]:
    """An export folder (its manifest and every file it lists) as bytes, with where it was made."""
    import json

    from volo_deploy.artifacts import MANIFEST_NAME

    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    names = [MANIFEST_NAME] + [f["path"] for f in manifest.get("files", [])]
    return {"dir": str(folder), "model_file": manifest["model_file"], "files": {n: (folder / n).read_bytes() for n in names}}


def materialize(bundle: dict[str, Any]) -> Path:
    """The model file of ``bundle``: in its original folder when that holds the same bytes, else in
    ``<tmp>/volo_ray_artifacts/<hash>/`` on this node (written atomically, once per node)."""
    from volo_deploy.artifacts import atomic_write_bytes, sha256_file

    files = bundle["files"]
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    here = Path(bundle["dir"])
    if all((here / n).is_file() and sha256_file(here / n) == d for n, d in digests.items()):
        return here / bundle["model_file"]
    key = hashlib.sha256("".join(sorted(digests.values())).encode()).hexdigest()[:24]
    target = Path(tempfile.gettempdir()) / "volo_ray_artifacts" / key
    for n, data in files.items():
        path = target / n
        if not (path.is_file() and sha256_file(path) == digests[n]):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
    return target / bundle["model_file"]


def _crash_hook(index: int) -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and index == 1 and Path(marker + ".arm").exists() and not Path(marker).exists():
        Path(marker).write_text(f"worker {os.getpid()} died in shard {index}\n")
        os._exit(1)


def _reference_task(job: EvalJob, index: int) -> ShardResult:
    return next(reference_shards(job, [index]))


def _case_task(backend: str, precision: str, ctx) -> tuple[dict[str, Any], dict[str, Any] | None]:
    row = run_cell_case(backend, precision, ctx)
    bundle = pack_artifact(Path(row["artifact"]["dir"])) if row["status"] == "ok" else None
    return row, bundle


def _accuracy_task(job: EvalJob, backend: str, precision: str, bundle: dict, ref: np.ndarray, index: int) -> ShardResult:
    _crash_hook(index)
    return next(accuracy_shards(job, backend, precision, materialize(bundle), [(index, ref)]))


def require_ray() -> None:
    """BadInputError (before anything runs) when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise BadInputError("--ray needs Ray: pip install 'volo_deploy[ray]'") from None


class RayExecutor:
    """Runs the units as Ray tasks; same interface as :class:`volo_deploy.harness.evaljob.LocalExecutor`."""

    def __init__(self, address: str, resources: dict[str, tuple[tuple[str, float], ...]], threads: int | None) -> None:
        require_ray()
        import ray

        self.ray, self.address, self.threads = ray, address, threads
        self.resources = {b: dict(r) for b, r in resources.items()}
        self.started = not ray.is_initialized()
        if self.started:
            if address == "local":
                # workers import volo_deploy from where this process does
                pkg_parent = str(Path(__file__).resolve().parents[2])
                path = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p)
                ray.init(include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
            else:
                ray.init(address=address)
        self._tasks = {f.__name__: ray.remote(f) for f in (_reference_task, _case_task, _accuracy_task)}
        self._job: tuple[EvalJob, Any] | None = None
        self._bundles: dict[tuple[str, str], Any] = {}

    def _options(self, backend: str) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.threads or 1, "max_retries": MAX_RETRIES}
        if backend == "tensorrt":
            opts["num_gpus"] = 1
        if self.resources.get(backend):
            opts["resources"] = self.resources[backend]
        return opts

    def _job_ref(self, job: EvalJob) -> Any:
        if self._job is None or self._job[0] is not job:
            self._job = (job, self.ray.put(job))  # the item list once in the object store, not per task
        return self._job[1]

    def _completed(self, refs: list, job: EvalJob, progress: Callable[[int], None] | None) -> Iterator[ShardResult]:
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            res = self.ray.get(done[0])
            if progress is not None:
                progress(job.shard_len(res.index))
            yield res

    def reference(self, job: EvalJob, todo: list[int], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        task = self._tasks["_reference_task"].options(**self._options("torch"))
        yield from self._completed([task.remote(self._job_ref(job), i) for i in todo], job, progress)

    def _missing(self, backend: str) -> dict[str, float]:
        """Requested resources that no node of the cluster offers (their tasks would wait forever)."""
        opts = self._options(backend)
        want = {**opts.get("resources", {}), "CPU": opts["num_cpus"], **({"GPU": 1} if opts.get("num_gpus") else {})}
        have = self.ray.cluster_resources()
        return {k: v for k, v in want.items() if have.get(k, 0) < v}

    def case(self, backend: str, precision: str, ctx) -> dict[str, Any]:
        from volo_deploy.harness.runner import UNAVAILABLE, CaseResult

        missing = self._missing(backend)
        if missing:
            need = ", ".join(f"{k}:{v:g}" for k, v in missing.items())
            return CaseResult(backend, precision, status=UNAVAILABLE, reason=f"no node of the Ray cluster offers {need}",
                              ).as_dict() | {"node": None}
        task = self._tasks["_case_task"].options(num_returns=2, **self._options(backend))
        row_ref, bundle_ref = task.remote(backend, precision, ctx)
        self._bundles[(backend, precision)] = bundle_ref
        return self.ray.get(row_ref)

    def accuracy(self, job: EvalJob, backend: str, precision: str, row: dict, todo: list[int],
                 load_ref: Callable[[int], np.ndarray], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        if not todo:
            return
        bundle = self._bundles.get((backend, precision))
        if bundle is None:  # a case kept from an interrupted run: ship its folder from here
            bundle = self.ray.put(pack_artifact(Path(row["artifact"]["dir"])))
        task = self._tasks["_accuracy_task"].options(**self._options(backend))
        refs = [task.remote(self._job_ref(job), backend, precision, bundle, self.ray.put(load_ref(i)), i) for i in todo]
        yield from self._completed(refs, job, progress)

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"mode": "ray", "ray_address": self.address, "ray_nodes": len(nodes),
                "ray_resources": {b: r for b, r in self.resources.items()}, "max_retries": MAX_RETRIES}

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
