"""Every dataset layout, built from the demo digits in a temp dir, and its traps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.data.layouts import (
    GT_NAME,
    KAGGLE_CSV,
    KAGGLE_MAPPING,
    LAYOUTS,
    detect_layout,
    open_dataset,
    root_fingerprint,
)
from volo_deploy.errors import DataError

PER_CLASS = 4  # images per digit class copied into each layout (keeps tests fast)
# Fake synsets: digit d -> SYNSETS[d]. Sorted-synset order differs from digit order,
# and the devkit ID order (DEVKIT) differs from both, as in real ImageNet.
SYNSETS = [f"n0{n:07d}" for n in (7, 3, 9, 1, 5, 0, 8, 2, 6, 4)]
SORTED = sorted(SYNSETS)
DEVKIT = [SYNSETS[d] for d in (4, 0, 8, 2, 6, 9, 1, 3, 7, 5)]  # devkit ID i+1 -> DEVKIT[i]


@pytest.fixture(scope="module")
def digits(digits_root) -> list[tuple[Path, int]]:
    """(png path, digit) for PER_CLASS val images of each digit."""
    val = digits_root / "val"
    return [(p, d) for d in range(10) for p in sorted((val / str(d)).glob("*.png"))[:PER_CLASS]]


def _flat_val(dst: Path, digits) -> tuple[Path, list[int]]:
    """ILSVRC-style flat val folder; returns it and the digit of image i (interleaved order)."""
    val = dst / "val"
    val.mkdir(parents=True)
    order = sorted(digits, key=lambda t: (t[0].name, t[1]))
    for i, (p, _) in enumerate(order, 1):
        shutil.copy(p, val / f"ILSVRC2012_val_{i:08d}.png")
    return val, [d for _, d in order]


def test_registry_lists_layouts():
    assert {"imagefolder", "imagenet-val-gt", "kaggle-loc-val", "list"} <= set(LAYOUTS)


def test_imagefolder_synsets_sorted(tmp_path, digits):
    for p, d in digits:
        (tmp_path / SYNSETS[d]).mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / SYNSETS[d] / p.name)
    data = open_dataset(tmp_path, expect_classes=10)
    assert data.layout == "imagefolder" and data.classes == SORTED
    for rel, lab in data.items:
        assert data.classes[lab] == rel.parts[0]
    assert data.class_counts() == [PER_CLASS] * 10
    with pytest.raises(DataError, match="expects 1000"):
        open_dataset(tmp_path, expect_classes=1000)


def test_imagefolder_numeric_folders_are_indices(tmp_path, digits):
    """ImageNet-V2 trap: folders 0..11 sort numerically ("10" after "9", not after "1")."""
    for i in range(12):
        (tmp_path / str(i)).mkdir()
        p, _ = digits[i * 3]
        shutil.copy(p, tmp_path / str(i) / f"img{i}.png")
    data = open_dataset(tmp_path)
    assert data.classes == [str(i) for i in range(12)]
    assert {rel.parts[0]: lab for rel, lab in data.items} == {str(i): i for i in range(12)}
    assert any("not string-sorted" in n for n in data.notes)
    # forced string order (torchvision ImageFolder) is available and says so
    s = open_dataset(tmp_path, numeric=False)
    assert s.classes[:4] == ["0", "1", "10", "11"]
    # a numeric subset missing the top classes widens to the model's classes
    shutil.rmtree(tmp_path / "11")
    assert len(open_dataset(tmp_path, expect_classes=1000).classes) == 1000


def test_imagefolder_errors(tmp_path, digits):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(digits[0][0], tmp_path / "a" / "x.png")
    with pytest.raises(DataError, match="without images: b"):
        open_dataset(tmp_path, layout="imagefolder")
    shutil.copy(digits[0][0], tmp_path / "loose.png")
    with pytest.raises(DataError, match="loose images"):
        open_dataset(tmp_path, layout="imagefolder")
    with pytest.raises(DataError, match="layout not recognised"):
        open_dataset(tmp_path)
    with pytest.raises(DataError, match="unknown layout 'nope'.*known"):
        open_dataset(tmp_path, layout="nope")
    with pytest.raises(DataError, match="takes options"):
        open_dataset(tmp_path / "a", layout="imagefolder", mapping="x")


def _write_gt(tmp_path: Path, digits) -> tuple[Path, list[int]]:
    val, digit_of = _flat_val(tmp_path, digits)
    devkit_id = {s: i + 1 for i, s in enumerate(DEVKIT)}
    (tmp_path / GT_NAME).write_text("".join(f"{devkit_id[SYNSETS[d]]}\n" for d in digit_of))
    return val, digit_of


def test_val_gt_without_mapping_is_the_trap(tmp_path, digits):
    val, _ = _write_gt(tmp_path, digits)
    assert detect_layout(val) == "imagenet-val-gt"
    with pytest.raises(DataError, match=r"devkit IDs, NOT the sorted-synset.*0\.1% top-1"):
        open_dataset(val)


def test_val_gt_text_mapping(tmp_path, digits):
    val, digit_of = _write_gt(tmp_path, digits)
    mapping = tmp_path / "devkit_map.txt"
    mapping.write_text("".join(f"{i + 1} {s}\n" for i, s in enumerate(DEVKIT)))
    data = open_dataset(val, mapping=mapping, expect_classes=10)
    assert data.classes == SORTED
    assert [data.classes[lab] for _, lab in data.items] == [SYNSETS[d] for d in digit_of]
    # the naive reading (GT value - 1) would be wrong for most images
    naive = np.asarray([int(s) - 1 for s in (tmp_path / GT_NAME).read_text().split()])
    assert (naive != data.labels).mean() > 0.5
    # the Kaggle 'synset words' file is not a devkit mapping
    bad = tmp_path / KAGGLE_MAPPING
    bad.write_text("".join(f"{s} words\n" for s in SORTED))
    with pytest.raises(DataError, match="NOT the devkit ID order"):
        open_dataset(val, mapping=bad)


def _write_meta(tmp_path: Path) -> None:
    """The devkit's meta.mat (DEVKIT order, plus a non-leaf synset) where the GT reader finds it."""
    from scipy.io import savemat

    entries = [(i + 1, s, 0) for i, s in enumerate(DEVKIT)] + [(11, "n09999999", 3)]  # + a non-leaf
    arr = np.zeros((len(entries), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for k, (i, w, c) in enumerate(entries):
        arr[k, 0] = (np.array([[i]]), np.array([w]), np.array([[c]]))
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    savemat(devkit / "meta.mat", {"synsets": arr})


def test_val_gt_meta_mat(tmp_path, digits):
    val, digit_of = _write_gt(tmp_path, digits)
    _write_meta(tmp_path)
    data = open_dataset(val)  # GT and meta.mat found next to / under the parent
    assert data.classes == SORTED
    assert [data.classes[lab] for _, lab in data.items] == [SYNSETS[d] for d in digit_of]


def test_val_gt_count_and_id_errors(tmp_path, digits):
    val, _ = _write_gt(tmp_path, digits)
    mapping = tmp_path / "map.txt"
    mapping.write_text("".join(f"{i + 1} {s}\n" for i, s in enumerate(DEVKIT)))
    gt = tmp_path / GT_NAME
    lines = gt.read_text().split()
    gt.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=f"{GT_NAME}: {len(lines) - 1} labels but {len(lines)} images"):
        open_dataset(val, mapping=mapping)
    gt.write_text("\n".join(lines[:-1] + ["11"]) + "\n")
    with pytest.raises(DataError, match="'11' is not a devkit ID"):
        open_dataset(val, mapping=mapping)


def _write_kaggle(tmp_path: Path, digits, mapping_order: list[str]) -> tuple[Path, list[int]]:
    val, digit_of = _flat_val(tmp_path, digits)
    rows = [f"ILSVRC2012_val_{i:08d},{SYNSETS[d]} 1 2 30 40 {SYNSETS[d]} 5 6 7 8" for i, d in enumerate(digit_of, 1)]
    rows.reverse()  # row order must not matter
    (tmp_path / KAGGLE_CSV).write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (tmp_path / KAGGLE_MAPPING).write_text("".join(f"{s} class {s}\n" for s in mapping_order))
    return val, digit_of


def test_kaggle_loc_val(tmp_path, digits):
    val, digit_of = _write_kaggle(tmp_path, digits, SORTED)
    data = open_dataset(val, expect_classes=10)
    assert data.layout == "kaggle-loc-val" and data.classes == SORTED
    assert [data.classes[lab] for _, lab in data.items] == [SYNSETS[d] for d in digit_of]


def test_kaggle_unsorted_mapping_used_as_given(tmp_path, digits, warns_logged):
    val, digit_of = _write_kaggle(tmp_path, digits, SYNSETS)
    with warns_logged("not in sorted synset order"):
        data = open_dataset(val)
    assert data.classes == SYNSETS and data.labels.tolist() == digit_of
    assert any("NOT in sorted" in n for n in data.notes)


def test_kaggle_errors(tmp_path, digits):
    val, _ = _write_kaggle(tmp_path, digits, SORTED)
    csv = tmp_path / KAGGLE_CSV
    good = csv.read_text().splitlines()
    csv.write_text("\n".join(good + [good[1]]) + "\n")
    with pytest.raises(DataError, match="appears twice"):
        open_dataset(val)
    csv.write_text("\n".join(good[:1] + [good[1].replace(good[1].split(",")[1].split()[0], "n09999999")] + good[2:]))
    with pytest.raises(DataError, match="synset n09999999 is not in"):
        open_dataset(val)
    csv.write_text("\n".join(good[:-1]) + "\n")
    with pytest.raises(DataError, match="1 image\\(s\\) without a row"):
        open_dataset(val)
    (tmp_path / GT_NAME).write_text("1\n")
    csv.write_text("\n".join(good) + "\n")
    with pytest.raises(DataError, match="ambiguous layout"):
        open_dataset(val)
    with pytest.raises(DataError, match="label/mapping file, not a 'path label' list"):
        open_dataset(tmp_path / GT_NAME)


def test_list_file(tmp_path, digits):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    lines = []
    for k, (p, d) in enumerate(digits):
        shutil.copy(p, imgs / f"{k:03d} x.png")  # a space in the name
        lines.append(f"imgs/{k:03d} x.png {d}")
    lst = tmp_path / "calib.txt"
    lst.write_text("# path label\n" + "\n".join(lines) + "\n")
    data = open_dataset(lst)
    assert data.layout == "list" and data.root == tmp_path and len(data) == len(digits)
    assert data.labels.tolist() == [d for _, d in digits]
    assert len(open_dataset(lst, expect_classes=1000).classes) == 1000
    # paths relative to another root
    other = tmp_path / "lists"
    other.mkdir()
    (other / "l.txt").write_text(lines[0] + "\n")
    assert open_dataset(other / "l.txt", root=tmp_path).paths[0].is_file()
    with pytest.raises(DataError, match="not found under"):
        open_dataset(other / "l.txt")
    (other / "l.txt").write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(DataError, match="listed 2 times"):
        open_dataset(other / "l.txt", root=tmp_path)
    (other / "l.txt").write_text("imgs/000 x.png cat\n")
    with pytest.raises(DataError, match="line 1: expected 'relative/path label'"):
        open_dataset(other / "l.txt", root=tmp_path)
    (other / "l.txt").write_text(lines[0].rsplit(" ", 1)[0] + " 12\n")
    with pytest.raises(DataError, match="found 13 classes, the model expects 10"):
        open_dataset(other / "l.txt", root=tmp_path, expect_classes=10)


def test_fingerprint_paths_and_sizes(tmp_path, digits):
    for p, d in digits[:3]:
        shutil.copy(p, tmp_path / p.name)
    fp = root_fingerprint(tmp_path)
    assert fp == root_fingerprint(tmp_path) and fp.startswith("sha256:")
    (tmp_path / "notes.txt").write_text("not an image")
    assert root_fingerprint(tmp_path) == fp
    with open(tmp_path / digits[0][0].name, "ab") as f:
        f.write(b"\0")
    assert root_fingerprint(tmp_path) != fp


# ---------------------------------------------------------------- two layouts match one folder


def _both(tmp_path: Path, digits, kaggle_order: list[str]) -> tuple[Path, list[int]]:
    """A flat val folder with devkit GT + meta.mat AND Kaggle LOC files (kaggle_order: its class order)."""
    val, digit_of = _write_kaggle(tmp_path, digits, kaggle_order)
    devkit_id = {s: i + 1 for i, s in enumerate(DEVKIT)}
    (tmp_path / GT_NAME).write_text("".join(f"{devkit_id[SYNSETS[d]]}\n" for d in digit_of))
    _write_meta(tmp_path)
    return val, digit_of


def test_two_matching_layouts_that_agree_are_used_and_named(tmp_path, digits, warns_logged):
    val, digit_of = _both(tmp_path, digits, SORTED)
    with warns_logged("matches layouts imagenet-val-gt, kaggle-loc-val, which give the same labels"):
        data = open_dataset(val, expect_classes=10)
    assert data.layout == "imagenet-val-gt"
    assert [data.classes[lab] for _, lab in data.items] == [SYNSETS[d] for d in digit_of]
    assert any("used imagenet-val-gt" in n for n in data.notes)


def test_two_matching_layouts_that_disagree_stop_and_show_both(tmp_path, digits, warns_logged):
    val, digit_of = _both(tmp_path, digits, SYNSETS)  # Kaggle class order = unsorted: other label indices
    with pytest.raises(DataError) as err:
        with warns_logged():
            open_dataset(val)
    msg = str(err.value)
    assert "ambiguous layout" in msg and "disagree" in msg and "labels differ" in msg
    assert "imagenet-val-gt: 40 images, 10 classes" in msg and "kaggle-loc-val: 40 images, 10 classes" in msg
    assert "--layout imagenet-val-gt or --layout kaggle-loc-val" in msg
    with warns_logged("not in sorted synset order"):
        picked = open_dataset(val, layout="kaggle-loc-val")
    assert picked.labels.tolist() == digit_of


def test_layout_flag_on_the_clis(tmp_path, digits, capsys, monkeypatch):
    from volo_deploy.cli import bench, export

    val, _ = _both(tmp_path, digits, SYNSETS)
    monkeypatch.setenv("VOLO_DEPLOY_CACHE", str(tmp_path / "cache"))
    common = ["--data", str(val), "--backends", "torch", "--batch-sizes", "1", "--warmup", "0", "--iters", "1",
              "--limit", "8", "--quiet", "--out", str(tmp_path / "out")]
    from volo_deploy.errors import BadInputError
    from volo_deploy.harness.data import load_eval_set
    from volo_deploy.models.configs import get_config

    seen = {}

    def run_bench(cfg):  # stand-in: the real data loading, then stop before any export
        seen.update(data_layout=cfg.data_layout, calib_layout=cfg.calib_layout)
        evalset = load_eval_set(get_config("volo_demo_64"), cfg.data, cfg.limit, False, None, cfg.data_layout)
        seen["layout"], seen["n"] = evalset.layout, len(evalset.items)
        raise BadInputError("stand-in bench")

    monkeypatch.setattr("volo_deploy.harness.bench.run_bench", run_bench)
    assert bench.main(common) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: data ") and "--layout imagenet-val-gt or" in err[0]
    assert bench.main([*common, "--layout", "imagenet-val-gt", "--calib-data", str(val), "--calib-layout", "list"]) == 2
    assert seen == {"data_layout": "imagenet-val-gt", "calib_layout": "list", "layout": "imagenet-val-gt", "n": 8}
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--layout", "nope"])
    for main, flag in ((bench.main, "--layout"), (bench.main, "--calib-layout"), (export.main, "--calib-layout")):
        assert main([flag, "list"]) == 2
        assert "which is not given" in capsys.readouterr().err


def test_calibration_set_reads_the_given_layout(tmp_path, digits, warns_logged):
    from volo_deploy.models.configs import get_config
    from volo_deploy.quant.data import calibration_set

    val, digit_of = _both(tmp_path, digits, SYNSETS)
    cfg = get_config("volo_demo_64")
    with pytest.raises(DataError, match="ambiguous layout"), warns_logged():
        calibration_set(cfg, val, size=20)
    with warns_logged("not in sorted synset order"):
        calib = calibration_set(cfg, val, size=20, layout="kaggle-loc-val")
    assert len(calib.x) == 20 and calib.x.shape[1:] == (3, 64, 64)
