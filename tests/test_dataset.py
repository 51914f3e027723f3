"""Loading labeled images into batches: corrupt files skipped and counted; the open_images entry point."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.data.dataset import iter_batches, load_images, open_images
from volo_deploy.data.layouts import open_dataset
from volo_deploy.data.sampler import sample_subset, write_manifest
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.errors import DataError

TF = EvalTransform(32, 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture()
def small_tree(tmp_path, digits_root) -> Path:
    """3 classes x 4 images copied from the demo digits."""
    root = tmp_path / "data"
    for c in range(3):
        (root / str(c)).mkdir(parents=True)
        for p in sorted((digits_root / "val" / str(c)).glob("*.png"))[:4]:
            shutil.copy(p, root / str(c) / p.name)
    return root


def test_load_images_matches_transform(small_tree, caplog):
    data = open_dataset(small_tree)
    with caplog.at_level(logging.WARNING, logger="volo_deploy"):
        out = load_images(data, TF, progress=False)
    assert not caplog.records
    assert out.x.shape == (12, 3, 32, 32) and out.x.dtype == np.float32
    assert out.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and out.skipped == []
    np.testing.assert_array_equal(out.x[5], TF.load(small_tree / out.paths[5]))


def test_corrupt_images_are_skipped_and_counted(small_tree, warns_logged):
    first = sorted((small_tree / "1").glob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:60])  # truncated PNG
    (small_tree / "2" / "fake.png").write_text("not an image")
    data = open_dataset(small_tree)
    assert len(data) == 13
    with warns_logged() as msgs:
        out = load_images(data, TF, progress=False)
    assert len(out.x) == len(out.labels) == len(out.paths) == 11
    assert sorted(p for p, _ in out.skipped) == ["1/" + first.name, "2/fake.png"]
    assert any("2 of 13 image(s)" in m and "skipped" in m for m in msgs)
    assert any("fake.png" in m for m in msgs)
    # the streaming variant skips the same files and keeps going
    batches = iter_batches(data, TF, batch_size=5, progress=False)
    with warns_logged():
        got = list(batches)
    assert [len(b.labels) for b in got] == [5, 5, 1] and len(batches.skipped) == 2


def test_nothing_readable_is_an_error(tmp_path, warns_logged):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_text("nope")
    with warns_logged(), pytest.raises(DataError, match="none of 1 image"):
        load_images(open_dataset(tmp_path), TF, progress=False)


def test_open_images_folder_list_and_manifest(tmp_path, small_tree):
    assert open_images(small_tree).layout == "imagefolder"
    lst = tmp_path / "lists" / "l.txt"
    lst.parent.mkdir()
    lst.write_text("1/" + sorted(p.name for p in (small_tree / "1").glob("*.png"))[0] + " 1\n")
    data = open_images(lst, root=small_tree)
    assert data.layout == "list" and data.labels.tolist() == [1] and data.paths[0].is_file()
    with pytest.raises(DataError, match="root= applies to list files"):
        open_images(small_tree, root=tmp_path)

    m = sample_subset(open_dataset(small_tree), per_class=2, seed=0)
    mpath = write_manifest(m, tmp_path / "m.json")
    assert len(open_images(mpath)) == 6  # recorded root
    moved = Path(shutil.copytree(small_tree, tmp_path / "moved"))
    sub = open_images(mpath, root=moved, expect_classes=3)
    assert sub.root == moved and [p for p, _ in m.items] == [r.as_posix() for r, _ in sub.items]
    with pytest.raises(DataError, match="the model expects 1000"):
        open_images(mpath, expect_classes=1000)
    shutil.rmtree(moved / "2")
    with pytest.raises(DataError, match="does not match"):
        open_images(mpath, root=moved)


def test_one_suffix_rule_any_case(tmp_path):
    """``.JPG`` counts everywhere: the validation file listing and the dataset scan use one rule."""
    from PIL import Image

    from volo_deploy.data.layouts import scan_images
    from volo_deploy.data.samples import list_images

    for name in ("a.JPG", "b.png", "c.Jpeg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    names = ["a.JPG", "b.png", "c.Jpeg"]
    assert [p.name for p in list_images(tmp_path)] == names
    assert [p for p, _ in scan_images(tmp_path)] == names


def test_validation_batch_reads_upper_case_suffixes_evenly_spaced(tmp_path):
    from PIL import Image

    from volo_deploy.data.samples import validation_batch
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.models import get_config

    cfg = get_config("volo_demo_64")
    for i in range(5):
        Image.new("RGB", (70, 70), (40 * i, 0, 0)).save(tmp_path / f"{i}.JPG", format="PNG")
    x = validation_batch(cfg, tmp_path, n=3)
    tf = EvalTransform.for_config(cfg)
    want = np.stack([tf.load(tmp_path / f"{i}.JPG") for i in (0, 2, 4)])
    np.testing.assert_array_equal(x, want)
