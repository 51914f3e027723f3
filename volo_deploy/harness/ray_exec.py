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
``ray start --address=HEAD:6379 --resources='{"jetson_orin": 1}'``). Data and checkpoint paths
must be readable on every node (same path or a shared filesystem); images are never shipped.

Node loss: a task whose worker or node dies is retried elsewhere (``max_retries``); shard files
are written only by the driver from whole returned results, so a lost node's half-done shard is
never merged. The artifact bundle is re-put by the driver (a task's return value lives on its
node). Pending tasks that no live node can run any more fail their case (``BackendUnavailable``)
instead of waiting forever. Rows record their Ray node (``node.ray_node_id``) and
``execution.shard_nodes`` the node of every shard computed in this run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from volo_deploy.errors import BackendUnavailable, BadInputError
from volo_deploy.harness.evaljob import EvalJob, accuracy_shards, load_runner, reference_shards, run_cell_case
from volo_deploy.harness.shards import ShardResult

MAX_RETRIES = 3
_RUNNER: dict[tuple, tuple[Path, Any]] = {}  # per worker process: the runner of the last artifact used
#: Test hook: a marker path; when ``<marker>.arm`` exists and ``<marker>`` does not, the worker running
#: accuracy shard 1 creates ``<marker>`` and dies (``os._exit``), once, as a crashed node would.
CRASH_ONCE_ENV = "VOLO_BENCH_CRASH_ONCE"
#: Test hook: a marker path; when ``<marker>.arm`` exists, the first task to stream a batch of accuracy
#: shard 1 writes ``<marker>`` (its Ray node id, pid) and sleeps :data:`HOLD_SECONDS`, mid-shard, so a test
#: can remove its node while the shard is half done.
HOLD_ONCE_ENV = "VOLO_BENCH_HOLD_ONCE"
HOLD_SECONDS = 120.0
#: Seconds between checks that the nodes able to run the pending tasks are still in the cluster.
WAIT_POLL_S = 2.0


def pack_artifact(folder: Path) -> dict[str, Any]:
    """An export folder (its manifest and every file it lists) as bytes, with where it was made."""
    import json

    from volo_deploy.artifacts import MANIFEST_NAME

    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    names = [MANIFEST_NAME] + [f["path"] for f in manifest.get("files", [])]
    return {"dir": str(folder), "model_file": manifest["model_file"], "files": {n: (folder / n).read_bytes() for n in names}}


def bundle_key(bundle: dict[str, Any]) -> str:
    """What identifies a bundle's content: a hash of its files' sha256 digests."""
    digests = sorted(hashlib.sha256(b).hexdigest() for b in bundle["files"].values())
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:24]


def materialize(bundle: dict[str, Any]) -> Path:
    """The model file of ``bundle``: in its original folder when that holds the same bytes, else in
    ``<tmp>/volo_ray_artifacts/<hash>/`` on this node (written atomically, once per node)."""
    from volo_deploy.artifacts import atomic_write_bytes, sha256_file

    files = bundle["files"]
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    here = Path(bundle["dir"])
    if all((here / n).is_file() and sha256_file(here / n) == d for n, d in digests.items()):
        return here / bundle["model_file"]
    target = Path(tempfile.gettempdir()) / "volo_ray_artifacts" / bundle_key(bundle)
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


def _hold_hook(index: int) -> Callable[[int], None] | None:
    """Test hook (:data:`HOLD_ONCE_ENV`): after the first batch of shard 1, say so and wait to be killed."""
    marker = os.environ.get(HOLD_ONCE_ENV)
    if not (marker and index == 1 and Path(marker + ".arm").exists()):
        return None
    import time

    def hold(_: int) -> None:
        try:
            with open(marker, "x") as f:  # once per run: the retried task finds it and goes on
                f.write(f"{_node_id()} {os.getpid()} shard {index}\n")
        except FileExistsError:
            return
        time.sleep(HOLD_SECONDS)

    return hold


def _node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _reference_task(job: EvalJob, index: int) -> tuple[ShardResult, str | None]:
    return next(reference_shards(job, [index])), _node_id()


def _case_task(backend: str, precision: str, ctx) -> tuple[dict[str, Any], dict[str, Any] | None]:
    row = run_cell_case(backend, precision, ctx)
    row["node"]["ray_node_id"] = _node_id()
    bundle = pack_artifact(Path(row["artifact"]["dir"])) if row["status"] == "ok" else None
    return row, bundle


def _worker_runner(backend: str, precision: str, bundle: dict, threads: int | None) -> tuple[Path, Any]:
    """(model file, runner) of ``bundle`` in this worker: kept for the next shard task of the same
    artifact (loading a runner costs more than streaming a small shard), replaced for another."""
    key = (backend, precision, bundle_key(bundle), threads)
    if key not in _RUNNER:
        for _, old in _RUNNER.values():
            old.close()
        _RUNNER.clear()
        path = materialize(bundle)
        _RUNNER[key] = (path, load_runner(backend, precision, path, threads))
    return _RUNNER[key]


def _accuracy_task(job: EvalJob, backend: str, precision: str, bundle: dict, ref: np.ndarray, index: int
                   ) -> tuple[ShardResult, str | None]:
    _crash_hook(index)
    path, runner = _worker_runner(backend, precision, bundle, job.threads)
    res = next(accuracy_shards(job, backend, precision, path, [(index, ref)], _hold_hook(index), runner=runner))
    return res, _node_id()


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
        self.shard_nodes: dict[str, dict[int, str | None]] = {}  # "reference" / case name -> shard -> Ray node id

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

    def _completed(self, refs: list, job: EvalJob, backend: str, nodes: dict[int, str | None],
                   progress: Callable[[int], None] | None) -> Iterator[ShardResult]:
        """Results as tasks finish (a task whose node died is retried elsewhere by Ray); ``nodes``
        gets the Ray node of each shard. BackendUnavailable when no live node can run the pending tasks."""
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1, timeout=WAIT_POLL_S)
            if not done:
                missing = self._missing(backend)
                if missing:
                    need = ", ".join(f"{k}:{v:g}" for k, v in missing.items())
                    raise BackendUnavailable(f"{len(pending)} {backend} shard task(s) pending and no node of the Ray "
                                       f"cluster offers {need} any more (a node left)")
                continue
            res, node = self.ray.get(done[0])
            nodes[res.index] = node
            if progress is not None:
                progress(job.shard_len(res.index))
            yield res

    def reference(self, job: EvalJob, todo: list[int], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        task = self._tasks["_reference_task"].options(**self._options("torch"))
        refs = [task.remote(self._job_ref(job), i) for i in todo]
        yield from self._completed(refs, job, "torch", self.shard_nodes.setdefault("reference", {}), progress)

    def _missing(self, backend: str) -> dict[str, float]:
        """Requested resources that no live node of the cluster offers together (the tasks would wait forever)."""
        opts = self._options(backend)
        want = {**opts.get("resources", {}), "CPU": opts["num_cpus"], **({"GPU": 1} if opts.get("num_gpus") else {})}
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(all(r.get(k, 0) >= v for k, v in want.items()) for r in nodes):
            return {}
        return {k: v for k, v in want.items() if not any(r.get(k, 0) >= v for r in nodes)} or want

    def case(self, backend: str, precision: str, ctx) -> dict[str, Any]:
        from volo_deploy.harness.runner import UNAVAILABLE, CaseResult

        missing = self._missing(backend)
        if missing:
            need = ", ".join(f"{k}:{v:g}" for k, v in missing.items())
            return CaseResult(backend, precision, status=UNAVAILABLE, reason=f"no node of the Ray cluster offers {need}",
                              ).as_dict() | {"node": None}
        task = self._tasks["_case_task"].options(num_returns=2, **self._options(backend))
        row_ref, bundle_ref = task.remote(backend, precision, ctx)
        row = self.ray.get(row_ref)
        # re-put from here: a task's return value lives on its node, and losing that node would make Ray
        # re-run the case task (export and latency again) to rebuild it; the driver's copy stays while it runs
        self._bundles[(backend, precision)] = self.ray.put(self.ray.get(bundle_ref))
        del bundle_ref
        return row

    def accuracy(self, job: EvalJob, backend: str, precision: str, row: dict, todo: list[int],
                 load_ref: Callable[[int], np.ndarray], progress: Callable[[int], None]) -> Iterator[ShardResult]:
        if not todo:
            return
        bundle = self._bundles.get((backend, precision))
        if bundle is None:  # a case kept from an interrupted run: ship its folder from here
            bundle = self.ray.put(pack_artifact(Path(row["artifact"]["dir"])))
        task = self._tasks["_accuracy_task"].options(**self._options(backend))
        refs = [task.remote(self._job_ref(job), backend, precision, bundle, self.ray.put(load_ref(i)), i) for i in todo]
        nodes = self.shard_nodes.setdefault(f"{backend}_{precision}", {})
        yield from self._completed(refs, job, backend, nodes, progress)

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"mode": "ray", "ray_address": self.address, "ray_nodes": len(nodes),
                "ray_resources": {b: r for b, r in self.resources.items()}, "max_retries": MAX_RETRIES,
                "shard_nodes": {k: [v[i] for i in sorted(v)] for k, v in self.shard_nodes.items()}}

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
