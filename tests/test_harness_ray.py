"""volo-bench on Ray (one local 2-CPU Ray session for the module): same figures as a local run,
a worker killed mid-shard is retried and every image is still counted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from volo_deploy.harness.bench import BenchConfig, parse_ray_resources, run_bench
from volo_deploy.harness.ray_exec import CRASH_ONCE_ENV

ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")


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


def _figures(report: dict) -> list:
    return [(r["backend"], r["precision"], r["status"], r["accuracy"], r["agreement"]) for r in report["results"]]


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
