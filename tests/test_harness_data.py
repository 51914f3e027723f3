"""The bench's evaluation set: fixed subsets, list files, corrupt images, data fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from volo_deploy.data.samples import subset_indices
from volo_deploy.harness.data import load_eval_set
from volo_deploy.models import get_config

CFG = get_config("volo_demo_64")


def test_subset_is_evenly_spaced_and_deterministic():
    assert subset_indices(10, None).tolist() == list(range(10))
    assert subset_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert subset_indices(3, 10).tolist() == [0, 1, 2]


def test_imagefolder_subset_covers_classes_and_fingerprint_is_stable(digits_root):
    a = load_eval_set(CFG, digits_root / "val", limit=30, progress=False)
    assert a.x.shape == (30, 3, 64, 64) and a.x.dtype == np.float32
    assert a.layout == "imagefolder" and a.total_available == 360
    assert sorted(set(a.labels.tolist())) == list(range(10))  # sorted by class: spacing hits every class
    b = load_eval_set(CFG, digits_root / "val", limit=30, progress=False)
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("sha256:")
    assert load_eval_set(CFG, digits_root / "val", limit=31, progress=False).fingerprint != a.fingerprint


def test_list_file_labels_enter_the_fingerprint_and_corrupt_images_are_skipped(digits_root, tmp_path, warns_logged):
    import shutil

    files = sorted((digits_root / "val").glob("*/*.png"))[::60]
    for f in files:
        shutil.copy(f, tmp_path / f"{f.parent.name}_{f.name}")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    lines = [f"{f.parent.name}_{f.name} {f.parent.name}" for f in files] + ["broken.png 3"]
    listing = tmp_path / "subset.txt"
    listing.write_text("\n".join(lines) + "\n")
    with warns_logged("unreadable"):
        s = load_eval_set(CFG, listing, progress=False)
    assert s.layout == "list" and len(s.items) == len(files) and s.total_available == len(files) + 1
    assert len(s.skipped) == 1 and s.skipped[0].startswith("broken.png")
    assert s.labels.tolist() == [int(f.parent.name) for f in files]
    assert "broken.png" not in {p for p, _ in s.items}
    lines[0] = lines[0][:-1] + str((int(lines[0][-1]) + 1) % 10)
    listing.write_text("\n".join(lines) + "\n")
    with warns_logged("unreadable"):
        assert load_eval_set(CFG, listing, progress=False).fingerprint != s.fingerprint
