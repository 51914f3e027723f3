"""INT8 from one folder of images, for a user checkpoint (not the demo) and an ImageNet-shaped tree:
the agreement budget on a held-out slice, early refusal of missing data, volo-bench's INT8 rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.errors import BadInputError, DataError
from volo_deploy.quant.options import DEFAULT_MIN_AGREEMENT, Int8Options

WNIDS = ["n01440764", "n01530575", "n01749939", "n02085620", "n02097474", "n02504458", "n03000684", "n03417042",
         "n04243546", "n04592741"]  # 10 ImageNet-1k classes (indices 0, 10, 52, 151, ...)


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory) -> Path:
    """``train/<wnid>/*.JPEG``: 12 small random images for each of 10 real ImageNet-1k synsets."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for w in WNIDS:
        d = root / "train" / w
        d.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"{w}_{i}.JPEG")
    return root


@pytest.fixture(scope="module")
def user_checkpoint(tmp_path_factory) -> Path:
    """A 1000-class VOLO at 64 px with deterministic weights: a user's checkpoint, not the bundled demo."""
    from safetensors.torch import save_file

    from volo_deploy.models import create_model
    from volo_deploy.models.init import deterministic_state_dict

    path = tmp_path_factory.mktemp("ckpt") / "volo_1000_64.safetensors"
    save_file(deterministic_state_dict(create_model("volo_demo_64", num_classes=1000), seed=3), str(path))
    return path


def test_plan_holds_out_a_disjoint_deterministic_slice(imagenet_tree):
    from volo_deploy.quant.data import plan_int8_data

    opts = Int8Options(calib_data=imagenet_tree / "train")
    plan = plan_int8_data(opts, demo=False)
    calib = {Path(p).as_posix() for p, _ in plan.calib.items}
    held = {Path(p).as_posix() for p, _ in plan.holdout.items}
    assert plan.budget == "agreement" and opts.agreement_floor(plan.budget) == DEFAULT_MIN_AGREEMENT
    assert (len(calib), len(held)) == (70, 50) and not calib & held  # 120 images: 50 held out, the rest calibrate
    again = plan_int8_data(opts, demo=False)
    assert again.calib.items == plan.calib.items and again.holdout.items == plan.holdout.items
    other = plan_int8_data(Int8Options(calib_data=imagenet_tree / "train", seed=1), demo=False)
    assert other.holdout.items != plan.holdout.items
    assert plan.source_fingerprint.startswith("sha256:") and plan.source_images == 120
    labeled = plan_int8_data(Int8Options(calib_data=imagenet_tree / "train", eval_data=imagenet_tree / "train"),
                             demo=False)
    assert labeled.budget == "labels" and labeled.holdout is None
    assert Int8Options(max_drop=None).budget_kind(demo=False) is None


def test_a_flat_folder_calibrates_unlabeled(tmp_path, imagenet_tree):
    import shutil

    from volo_deploy.quant.data import plan_int8_data

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((imagenet_tree / "train").rglob("*.JPEG"))[:90]:
        shutil.copy(p, flat / p.name)
    plan = plan_int8_data(Int8Options(calib_data=flat), demo=False)
    assert plan.budget == "agreement" and len(plan.calib.items) + len(plan.holdout.items) == 90


def test_missing_or_too_few_images_refused_before_export(tmp_path, imagenet_tree, user_checkpoint, capsys,
                                                         monkeypatch):
    from volo_deploy.cli import bench, export
    from volo_deploy.jobs import export as export_job

    def no_export(*a, **k):
        raise AssertionError("export work started")

    monkeypatch.setattr(export_job, "load_checkpoint_once", no_export)
    monkeypatch.setattr("volo_deploy.harness.bench._open_job", no_export)
    base = ["--backend", "onnxruntime", "--int8", "--checkpoint", str(user_checkpoint), "--output", str(tmp_path / "o")]
    few = tmp_path / "few" / "n01440764"
    few.mkdir(parents=True)
    for p in sorted((imagenet_tree / "train" / WNIDS[0]).iterdir())[:5]:
        (few / p.name).write_bytes(p.read_bytes())
    cases = [
        (base, 2, "pass --calib-data"),
        ([*base, "--calib-data", str(tmp_path / "nope")], 1, "--calib-data"),
        ([*base, "--calib-data", str(few.parent)], 1, "5 images"),
        ([*base, "--calib-data", str(imagenet_tree / "train"), "--calib-size", "100"], 1, "--calib-size"),
        ([*base, "--calib-data", str(imagenet_tree / "train"), "--eval-data", str(tmp_path / "nope")], 1, "--eval-data"),
    ]
    for argv, code, text in cases:
        t0 = time.perf_counter()
        assert export.main(argv) == code
        assert time.perf_counter() - t0 < 2.0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and text in err[0], err
    bench_base = ["--checkpoint", str(user_checkpoint), "--backends", "onnxruntime", "--precisions", "int8", "--quiet",
                  "--out", str(tmp_path / "b")]
    assert bench.main(bench_base) == 2
    assert "pass --calib-data" in capsys.readouterr().err
    assert bench.main([*bench_base, "--data", str(few.parent)]) == 1
    assert "--data" in capsys.readouterr().err


def test_repeatable_int8_flags_parse_to_tuples():
    from volo_deploy.cli.export import build_parser
    from volo_deploy.cli.options import options_from_args

    args = build_parser().parse_args(["--int8", "--keep-float", "a.*", "--keep-float", "b", "--max-drop", "-1",
                                      "--calib-method", "entropy", "--min-agreement", "98.5"])
    opts = options_from_args(Int8Options, args)
    assert opts.exclude == ("a.*", "b") and opts.include == () and opts.max_drop is None
    assert opts.method.value == "entropy" and opts.min_agreement == 98.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--min-agreement", "101"])


def test_bench_int8_row_from_data_alone(tmp_path, imagenet_tree, user_checkpoint, monkeypatch):
    """No --calib-data: images of --data calibrate (and hold out), are left out of every row's
    evaluation, and the export's manifest records the agreement budget and its disjoint slices."""
    from volo_deploy.cli import bench

    monkeypatch.setenv("VOLO_DEPLOY_CACHE", str(tmp_path / "cache"))
    out, arts = tmp_path / "b", tmp_path / "arts"
    argv = ["--checkpoint", str(user_checkpoint), "--data", str(imagenet_tree / "train"), "--backends", "onnxruntime",
            "--precisions", "int8", "--calib-size", "16", "--eval-size", "20", "--batch-sizes", "1", "--warmup", "0",
            "--iters", "2", "--quiet", "--out", str(out), "--artifacts", str(arts)]
    assert bench.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    row = report["results"][0]
    assert row["precision"] == "int8" and row["status"] == "ok", row["reason"]
    side = report["data"]["int8_calibration"]
    assert side["calibration_images"] == 16 and side["held_out_images"] == 20
    assert report["data"]["n_images"] == 120 - 36
    aside = {p for p, _ in json.loads(Path(side["manifest"]).read_text())["items"]}
    assert len(aside) == 36
    assert "left out of every row's evaluation" in (out / "report.md").read_text()
    assert report["model"]["class_names"].startswith("ImageNet-1k")
    manifest = json.loads((arts / "onnxruntime_int8" / "manifest.json").read_text())
    d = manifest["export"]["int8_data"]
    assert d["budget"] == "agreement" and manifest["export"]["accuracy"]["kind"] == "agreement"
    calib, held = set(d["calibration"]["items"]), set(d["budget_images"]["items"])
    assert len(calib) == 16 and len(held) == 20 and not calib & held and calib | held == aside
    assert manifest["model"]["class_names"].startswith("ImageNet-1k")
    assert (arts / "onnxruntime_int8" / "labels.txt").read_text().splitlines()[0] == "tench"


def test_plan_refuses_user_checkpoint_without_data():
    from volo_deploy.quant.data import is_bundled_demo, plan_int8_data

    with pytest.raises(BadInputError, match="--calib-data"):
        plan_int8_data(Int8Options(), demo=False)
    assert plan_int8_data(Int8Options(), demo=True).budget == "labels"  # the demo: shipped manifest, digits val
    assert is_bundled_demo(None) and not is_bundled_demo("x.safetensors")
    assert not is_bundled_demo(None, "volo_d1_224")
    with pytest.raises(DataError, match="--calib-data"):
        plan_int8_data(Int8Options(calib_data=Path("/nonexistent/x")), demo=True)


@pytest.mark.parametrize("flag,value", [("--max-drop", "nan"), ("--min-agreement", "inf"), ("--min-cosine", "nan"),
                                        ("--min-agreement", "101")])
def test_int8_thresholds_not_finite_or_out_of_range_are_refused_at_parse_time(flag, value, capsys):
    from volo_deploy.cli.export import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--int8", flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_resume_config_names_set_aside_images_by_fingerprint_not_by_their_path_in_out(tmp_path):
    """A copied or moved --out resumes: the set-aside manifest's path inside --out is not compared."""
    from dataclasses import replace
    from types import SimpleNamespace

    from volo_deploy.harness.bench import _int8_run_config
    from volo_deploy.quant.options import Int8Options

    def run_in(folder: Path):
        opts = replace(Int8Options(), calib_data=folder / "shards" / "int8_calibration.json")
        return SimpleNamespace(opts=opts, info={"excluded_from_evaluation": True, "fingerprint": "sha256:x"})

    assert _int8_run_config(run_in(tmp_path / "a")) == _int8_run_config(run_in(tmp_path / "b"))
    own = SimpleNamespace(opts=replace(Int8Options(), calib_data=tmp_path / "train"), info={})
    assert _int8_run_config(own)["calib_data"] == str(tmp_path / "train")  # the user's folder still counts
    assert _int8_run_config(None) is None
