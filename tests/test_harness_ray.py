"""volo-bench on Ray: a multi-node cluster on this machine (``ray.cluster_utils.Cluster``: a head and
three 1-CPU nodes with their own custom resources) where rows land on the nodes their resources name
and a node removed mid-shard costs nothing but time; then one local 2-CPU Ray session: same figures
as a local run, a worker killed mid-shard is retried and every image is still counted once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from volo_deploy.harness.bench import BenchConfig, parse_ray_resources, run_bench
from volo_deploy.harness.ray_exec import CRASH_ONCE_ENV, HOLD_ONCE_ENV

ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")


def _figures(report: dict) -> list:
    return [(r["backend"], r["precision"], r["status"], r["accuracy"], r["agreement"]) for r in report["results"]]


def _remove_when_held(cluster, marker: Path, removed: dict) -> threading.Thread:
    """A thread that SIGKILLs the node named in ``marker`` (written mid-shard by the hold hook) once it appears."""
    def watch() -> None:
        deadline = time.monotonic() + 90
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if marker.exists():
            node_id = marker.read_text().split()[0]
            node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
            cluster.remove_node(node, allow_graceful=False)
            removed["node_id"] = node_id

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


class TestCluster:
    """One Ray cluster on this machine for the class (class scope: torn down before the local session
    below starts): a head and 1-CPU nodes ``b`` and ``c``, each with its own resource ``node_<name>``
    and the shared ``pool``."""

    @pytest.fixture(scope="class")
    def cluster(self, tmp_path_factory):
        from ray.cluster_utils import Cluster

        marker = tmp_path_factory.mktemp("ray_hold") / "held"
        old = os.environ.get(HOLD_ONCE_ENV)
        os.environ[HOLD_ONCE_ENV] = str(marker)  # before the nodes start: their workers inherit it
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1},
                                                                 "include_dashboard": False})
        nodes = {name: cluster.add_node(num_cpus=1, resources={f"node_{name}": 1, **extra})
                 for name, extra in (("b", {"pool": 1}), ("c", {"pool": 1}))}
        cluster.wait_for_nodes()
        yield cluster, nodes, marker
        cluster.shutdown()
        if old is None:
            os.environ.pop(HOLD_ONCE_ENV, None)
        else:
            os.environ[HOLD_ONCE_ENV] = old

    def test_rows_land_on_the_nodes_their_resources_name(self, cluster, local_report, tmp_path):
        cl, nodes, _ = cluster
        art, local = local_report
        pinned = parse_ray_resources(["torch=node_b:1", "onnxruntime=node_c:1"])
        report = run_bench(_cfg(art, ray=cl.address, ray_resources=pinned, out=tmp_path))
        assert not ray.is_initialized()  # --ray ADDRESS: connected for the run, disconnected after
        ex = report["execution"]
        assert ex["mode"] == "ray" and ex["ray_nodes"] == 3
        where = {r["backend"]: r["node"]["ray_node_id"] for r in report["results"]}
        assert where == {"torch": nodes["b"].node_id, "onnxruntime": nodes["c"].node_id}
        assert ex["shard_nodes"]["torch_fp32"] == [nodes["b"].node_id] * 3
        assert ex["shard_nodes"]["onnxruntime_fp32"] == [nodes["c"].node_id] * 3
        assert _figures(report) == _figures(local)
        assert report["reference"] == local["reference"] and report["data"] == local["data"]

    def test_a_node_removed_mid_shard_the_others_finish_every_image_once(self, cluster, local_report, tmp_path):
        cl, nodes, marker = cluster
        art, local = local_report
        Path(str(marker) + ".arm").touch()
        removed: dict = {}
        watcher = _remove_when_held(cl, marker, removed)
        pinned = parse_ray_resources(["onnxruntime=pool:1"])
        report = run_bench(_cfg(art, ray=cl.address, ray_resources=pinned, backends=("onnxruntime",), out=tmp_path))
        watcher.join(5)
        Path(str(marker) + ".arm").unlink()
        lost = removed.get("node_id")
        assert lost in (nodes["b"].node_id, nodes["c"].node_id), "the hold hook did not fire mid-shard"
        survivor = ({nodes["b"].node_id, nodes["c"].node_id} - {lost}).pop()
        (row,) = report["results"]
        assert row["status"] == "ok" and row["agreement"]["n"] == report["data"]["n_images"] == 48
        assert _figures(report) == [f for f in _figures(local) if f[0] == "onnxruntime"]
        # shard 1 was half done on the lost node; what was merged is the survivor's whole shard
        assert report["execution"]["shard_nodes"]["onnxruntime_fp32"][1] == survivor
        assert report["execution"]["ray_nodes"] == 2
        assert sorted(p.name for p in (tmp_path / "shards" / "onnxruntime_fp32").iterdir()) == [
            "00000.npz", "00001.npz", "00002.npz"]

    def test_losing_the_only_node_a_case_can_use_fails_the_case_instead_of_waiting_forever(
            self, cluster, local_report, tmp_path):
        cl, nodes, marker = cluster
        art, _ = local_report
        alive = [n for n in cl.worker_nodes if n in nodes.values()]  # the node test 2 left (or both)
        name = next(k for k, v in nodes.items() if v is alive[0])
        marker.unlink(missing_ok=True)
        Path(str(marker) + ".arm").touch()
        removed: dict = {}
        watcher = _remove_when_held(cl, marker, removed)
        pinned = parse_ray_resources([f"onnxruntime=node_{name}:1"])
        result: dict = {}
        cfg = _cfg(art, ray=cl.address, ray_resources=pinned, backends=("onnxruntime",), out=tmp_path)
        runner = threading.Thread(target=lambda: result.setdefault("report", run_bench(cfg)),
                                  daemon=True)
        runner.start()
        runner.join(120)  # the old loop waited forever for a node offering node_<name>:1
        watcher.join(5)
        Path(str(marker) + ".arm").unlink()
        assert removed.get("node_id") == nodes[name].node_id
        assert "report" in result, "run_bench did not return after its only usable node left"
        (ort,) = result["report"]["results"]
        done_on = result["report"]["execution"]["shard_nodes"]["onnxruntime_fp32"]
        assert len(done_on) < 3 and set(done_on) <= {nodes[name].node_id}
        assert ort["status"] == "run failed"
        assert f"no node of the Ray cluster offers node_{name}:1 any more" in ort["reason"]


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    marker = tmp_path_factory.mktemp("ray_crash") / "died"
    old = os.environ.get(CRASH_ONCE_ENV)
    os.environ[CRASH_ONCE_ENV] = str(marker)  # set before ray.init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield marker
    ray.shutdown()
    if old is None:
        os.environ.pop(CRASH_ONCE_ENV, None)
    else:
        os.environ[CRASH_ONCE_ENV] = old


@pytest.fixture(scope="module")
def local_report(tmp_path_factory):
    art = tmp_path_factory.mktemp("ray_artifacts")
    return art, run_bench(_cfg(art))


def _cfg(art: Path, **kw) -> BenchConfig:
    base = dict(backends=("torch", "onnxruntime"), precisions=("fp32",), limit=48, batch_sizes=(1, 8), warmup=0,
                iters=2, threads=1, progress=False, artifacts=art, shard_size=16)
    return BenchConfig(**{**base, **kw})


def test_ray_local_gives_the_local_figures_and_node_identity(ray_session, local_report):
    art, local = local_report
    report = run_bench(_cfg(art, ray="local"))
    assert report["execution"]["mode"] == "ray" and report["execution"]["shards"] == 3
    assert _figures(report) == _figures(local)
    assert report["reference"] == local["reference"] and report["data"] == local["data"]
    for row in report["results"]:
        node = row["node"]
        assert node["hardware_fingerprint"] == report["fingerprints"]["hardware"]  # one machine, same threads
        assert node["machine"]["cpu_count"] and set(row["latency"]) == {"1", "8"}


def test_a_worker_dying_mid_shard_is_retried_and_every_image_counted_once(ray_session, local_report):
    art, local = local_report
    Path(str(ray_session) + ".arm").touch()
    report = run_bench(_cfg(art, ray="local", backends=("onnxruntime",)))
    assert ray_session.exists(), "the crash hook did not fire"
    assert "shard 1" in ray_session.read_text()
    (row,) = report["results"]
    assert row["status"] == "ok" and row["agreement"]["n"] == report["data"]["n_images"] == 48
    assert _figures(report) == [f for f in _figures(local) if f[0] == "onnxruntime"]


def test_a_resource_no_node_offers_makes_the_case_unavailable_not_stuck(ray_session, local_report):
    art, _ = local_report
    pinned = parse_ray_resources(["onnxruntime=jetson_orin:1"])
    report = run_bench(_cfg(art, ray="local", ray_resources=pinned))
    torch_row, ort = report["results"]
    assert torch_row["status"] == "ok"
    assert ort["status"] == "unavailable" and ort["reason"] == "no node of the Ray cluster offers jetson_orin:1"


def test_ray_resources_parse():
    assert parse_ray_resources(["tensorrt=jetson_orin:1,gpu_mem:0.5"]) == (
        ("tensorrt", (("jetson_orin", 1.0), ("gpu_mem", 0.5))),)
    from volo_deploy.errors import BadInputError

    for bad in ("tensorrt", "=x:1", "tensorrt=x:-1", "tensorrt=x:abc"):
        with pytest.raises(BadInputError, match="--ray-resources"):
            parse_ray_resources([bad])


def test_a_worker_keeps_its_runner_for_the_next_shard_of_the_same_artifact(monkeypatch, tmp_path):
    from volo_deploy.harness import ray_exec

    loads, closed = [], []

    class Runner:
        def __init__(self, path):
            self.path = path

        def close(self):
            closed.append(self.path)

    monkeypatch.setattr(ray_exec, "_RUNNER", {})
    monkeypatch.setattr(ray_exec, "materialize", lambda b: tmp_path / b["model_file"])
    monkeypatch.setattr(ray_exec, "load_runner", lambda b, p, path, t: loads.append(path) or Runner(path))
    a = {"dir": str(tmp_path), "model_file": "a.onnx", "files": {"a.onnx": b"A"}}
    b = {"dir": str(tmp_path), "model_file": "b.onnx", "files": {"b.onnx": b"B"}}
    first = ray_exec._worker_runner("onnxruntime", "fp32", a, 1)
    assert ray_exec._worker_runner("onnxruntime", "fp32", dict(a), 1) is first  # same bytes: loaded once
    ray_exec._worker_runner("onnxruntime", "fp32", b, 1)
    assert loads == [tmp_path / "a.onnx", tmp_path / "b.onnx"] and closed == [tmp_path / "a.onnx"]
