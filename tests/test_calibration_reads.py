"""Calibration reads a subset manifest once and lists the data root once (counted through the readers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from volo_deploy.data import sampler
from volo_deploy.models import DEMO_MODEL, get_config
from volo_deploy.quant.data import calibration_set


@pytest.fixture
def counted(monkeypatch):
    """Counts of ``read_manifest`` calls and of ``scan_images`` calls per (resolved) folder."""
    calls = {"manifest": 0, "scans": {}}
    read, scan = sampler.read_manifest, sampler.scan_images

    def read_manifest(path):
        calls["manifest"] += 1
        return read(path)

    def scan_images(root, sizes=True):
        key = Path(root).resolve()
        calls["scans"][key] = calls["scans"].get(key, 0) + 1
        return scan(root, sizes)

    monkeypatch.setattr(sampler, "read_manifest", read_manifest)
    monkeypatch.setattr(sampler, "scan_images", scan_images)
    return calls


def test_folder_subset_lists_the_root_once(digits_root, counted):
    val = digits_root / "val"
    calib = calibration_set(get_config(DEMO_MODEL), val, size=40)
    assert len(calib.x) == 40 and calib.manifest_sha256
    assert counted["scans"] == {val.resolve(): 1}
    assert counted["manifest"] == 0


def test_manifest_is_read_once_and_its_root_listed_once(digits_root, counted, tmp_path):
    val = digits_root / "val"
    from volo_deploy.data.dataset import open_images

    manifest = sampler.sample_subset(open_images(val), total=30, seed=3)
    path = manifest.write(tmp_path / "m.json")
    counted["scans"].clear()
    calib = calibration_set(get_config(DEMO_MODEL), path)
    assert len(calib.x) == 30
    assert calib.manifest_sha256 == manifest.content_hash()
    assert counted["manifest"] == 1
    assert counted["scans"] == {val.resolve(): 1}


def test_demo_manifest_is_read_once(counted):
    calib = calibration_set(get_config(DEMO_MODEL))
    assert len(calib.x) == 300
    assert counted["manifest"] == 1
    assert sum(counted["scans"].values()) == 1
