"""Stratified subsets, manifests, fingerprints and the shipped demo manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from volo_deploy.data.layouts import open_dataset
from volo_deploy.data.sampler import (
    MANIFEST_FORMAT,
    default_calib_size,
    demo_calibration_data,
    demo_calibration_manifest,
    read_manifest,
    resolve,
    sample_subset,
    write_manifest,
)
from volo_deploy.errors import DataError


@pytest.fixture(scope="module")
def val_root(digits_root) -> Path:
    return digits_root / "val"


@pytest.fixture()
def val_copy(tmp_path, val_root) -> Path:
    return Path(shutil.copytree(val_root, tmp_path / "val"))


def test_per_class_deterministic(val_root):
    data = open_dataset(val_root)
    a, b = sample_subset(data, per_class=5, seed=0), sample_subset(data, per_class=5, seed=0)
    assert a.to_json() == b.to_json() and a.content_hash() == b.content_hash()
    assert len(a) == 50 and a.method == "per_class" and a.size == 5
    assert [sum(1 for _, lab in a.items if lab == c) for c in range(10)] == [5] * 10
    assert all(p.split("/")[0] == str(lab) for p, lab in a.items)
    c = sample_subset(data, per_class=5, seed=1)
    assert c.items != a.items and c.content_hash() != a.content_hash()


def test_total_spread_evenly(val_root):
    data = open_dataset(val_root)
    m = sample_subset(data, total=23, seed=3)
    counts = [sum(1 for _, lab in m.items if lab == c) for c in range(10)]
    assert sum(counts) == 23 and set(counts) == {2, 3} and counts.count(3) == 3
    assert m.to_json() == sample_subset(data, total=23, seed=3).to_json()
    assert sample_subset(data, total=23, seed=4).items != m.items
    assert len(sample_subset(data).items) == default_calib_size(10) == 300


def test_default_size():
    assert default_calib_size(10) == 300
    assert default_calib_size(1000) == 1000
    assert default_calib_size(21843) == 1000


def test_too_few_per_class_is_an_error(val_copy):
    for p in sorted((val_copy / "7").glob("*.png"))[3:]:
        p.unlink()
    data = open_dataset(val_copy)
    with pytest.raises(DataError, match=r"10 images per class requested but 1 class\(es\) have fewer: 7 \(3\)"):
        sample_subset(data, per_class=10)
    # total mode takes what the small class has and fills up elsewhere...
    m = sample_subset(data, total=100, seed=0)
    assert len(m) == 100 and sum(1 for _, lab in m.items if lab == 7) == 3
    # ...unless a floor is asked for
    with pytest.raises(DataError, match=r"at least 5 image\(s\) per class.*7 \(3 of 3 available\)"):
        sample_subset(data, total=100, min_per_class=5)
    with pytest.raises(DataError, match="requested, the dataset has"):
        sample_subset(data, total=10_000)


def test_manifest_round_trip_and_resolve(tmp_path, val_root):
    m = sample_subset(open_dataset(val_root), per_class=3, seed=0)
    path = write_manifest(m, tmp_path / "sub" / "m.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == MANIFEST_FORMAT and raw["num_images"] == 30 and raw["root"] == str(val_root.resolve())
    back = read_manifest(path)
    assert back.to_json() == m.to_json()
    data = resolve(back)  # the recorded root
    assert data.layout == "manifest:imagefolder" and len(data) == 30
    assert all(p.is_file() for p in data.paths) and data.labels.tolist() == [lab for _, lab in m.items]


def test_fingerprint_mismatch(tmp_path, val_copy):
    m = sample_subset(open_dataset(val_copy), per_class=2, seed=0)
    extra = val_copy / "3" / "extra.png"
    shutil.copy(next((val_copy / "3").glob("*.png")), extra)
    with pytest.raises(DataError, match=rf"fingerprint \(full\) is sha256:\w+ \(361 images\).*{m.fingerprint}"):
        resolve(m, val_copy)
    extra.unlink()
    p = val_copy / m.items[0][0]
    p.write_bytes(p.read_bytes() + b"\0")  # same paths, different size
    with pytest.raises(DataError, match="does not match"):
        resolve(m, val_copy)
    assert len(resolve(m, val_copy, verify="paths")) == 20


def test_read_manifest_errors(tmp_path, val_root):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not readable JSON"):
        read_manifest(bad)
    d = sample_subset(open_dataset(val_root), per_class=1).to_json()
    bad.write_text(json.dumps({**d, "format": "volo_deploy.calib_manifest/9"}))
    with pytest.raises(DataError, match="format 'volo_deploy.calib_manifest/9', expected"):
        read_manifest(bad)
    bad.write_text(json.dumps({k: v for k, v in d.items() if k != "seed"}))
    with pytest.raises(DataError, match="missing or malformed field"):
        read_manifest(bad)
    bad.write_text(json.dumps({**d, "items": d["items"] + [["0/x.png", 10]]}))
    with pytest.raises(DataError, match="outside 0..9"):
        read_manifest(bad)
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "nope.json")


def test_shipped_demo_manifest_is_reproducible(tmp_path):
    """The packaged manifest equals a fresh build and resolves on a fresh digits tree."""
    import importlib.util

    shipped = demo_calibration_manifest()
    assert shipped.is_file() and shipped.parent.name == "assets"
    script = Path(__file__).resolve().parents[1] / "calibration" / "make_demo_manifest.py"
    spec = importlib.util.spec_from_file_location("make_demo_manifest", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = mod.build(tmp_path)
    want, got = read_manifest(shipped).to_json(), fresh.to_json()
    # file sizes (hence `fingerprint`) depend on Pillow's zlib build; everything else must match
    assert {k: v for k, v in want.items() if k != "fingerprint"} == {k: v for k, v in got.items() if k != "fingerprint"}
    data = demo_calibration_data(tmp_path)
    assert len(data) == 300 and data.class_counts() == [30] * 10
