"""Fault injection through the installed CLIs (subprocess): each fault gives one clear line, the documented exit
code, no traceback and nothing half-published. The bundled demo model and tiny generated image trees keep every
case to seconds."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BENCH_FAST = ["--backends", "torch", "--precisions", "fp32", "--warmup", "0", "--iters", "1", "--batch-sizes", "1",
              "--quiet", "--decode-workers", "0"]


def _env(tmp: Path, prepend: Path | None = None) -> dict[str, str]:
    """This checkout first on the path (the console scripts then run it), a cache of the test's own."""
    path = [str(prepend)] if prepend is not None else []
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(REPO)]), "VOLO_DEPLOY_CACHE": str(tmp / "cache")}


def cli(tool: str, *args: str, env: dict[str, str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """One installed console script, its output captured; never a Python traceback, whatever the exit code."""
    r = subprocess.run([tool, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    return r


def started(tool: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([tool, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _digit_tree(root: Path, per_class: int = 2) -> Path:
    """10 classes (the demo model's) x ``per_class`` small JPEGs from the demo digits."""
    from volo_deploy.data.digits import load_digits_arrays

    images, labels = load_digits_arrays("val")
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            Image.fromarray(images[i]).convert("RGB").resize((24, 24)).save(root / str(c) / f"img{j}.jpg")
    return root


@pytest.fixture()
def hostile_tree(tmp_path) -> Path:
    """A tree with a truncated JPEG, a zero-byte one, a text file named .jpg, an EXIF-rotated image and a
    symlink loop."""
    root = _digit_tree(tmp_path / "data")
    good = (root / "3" / "img0.jpg").read_bytes()
    (root / "3" / "img0.jpg").write_bytes(good[: len(good) // 2])
    (root / "4" / "img0.jpg").write_bytes(b"")
    (root / "5" / "img0.jpg").write_bytes(b"this is not an image")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(root / "6" / "img0.jpg").save(root / "6" / "img0.jpg", exif=exif)
    os.symlink("..", root / "7" / "up")  # 7/up/7/up/... : OSError 40 (ELOOP) before
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data, --out) of one completed volo-bench run: its shards/ are the state files a --resume reads."""
    tmp = tmp_path_factory.mktemp("run")
    data = _digit_tree(tmp / "data", per_class=1)
    out = tmp / "out"
    r = cli("volo-bench", "--data", str(data), "--out", str(out), *BENCH_FAST, env=_env(tmp))
    assert r.returncode == 0, r.stderr
    return data, out


def _copy_run(finished_run, tmp_path) -> Path:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_run[1], out)
    return out


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- data


def test_unreadable_images_loop_and_exif_are_skipped_and_reported(hostile_tree, tmp_path):
    out = tmp_path / "out"
    r = cli("volo-bench", "--data", str(hostile_tree), "--out", str(out), *BENCH_FAST, "--quiet", env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["skipped"] == {"count": 3, "paths": ["3/img0.jpg", "4/img0.jpg", "5/img0.jpg"]}
    assert report["data"]["n_images"] == 17
    assert [row["status"] for row in report["results"]] == ["ok"]  # was "export failed" for every row
    assert report["data"]["exif_rotated"]["count"] == 1 and not report["data"]["exif_rotated"]["applied"]
    assert r.stderr.count("linked folder(s) skipped") == 1


def test_strict_data_stops_before_any_work(hostile_tree, tmp_path):
    out = tmp_path / "out"
    r = cli("volo-bench", "--data", str(hostile_tree), "--out", str(out), "--strict-data", *BENCH_FAST,
            env=_env(tmp_path))
    assert r.returncode == 1
    assert "3 of 20 image(s) unreadable (--strict-data)" in r.stderr and "3/img0.jpg" in r.stderr
    assert not out.exists()  # nothing made, not even the --out folder


def test_failed_rows_exit_1_after_every_report_file(tmp_path, finished_run):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "from volo_deploy.backends import torch_backend\n"
        "def broken(self, *a, **k):\n    raise RuntimeError('injected export failure')\n"
        "torch_backend.TorchBackend.export_impl = broken\n")
    out = tmp_path / "out"
    r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(out), *BENCH_FAST,
            env=_env(tmp_path, hook))
    assert r.returncode == 1
    assert "1 of 1 row(s) failed: torch fp32: export failed" in r.stderr
    assert {"report.json", "report.md", "report.csv"} <= {p.name for p in out.iterdir()}


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from volo_deploy.data.transforms import EvalTransform

    tf = EvalTransform(32, 0.875, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    grey = np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    diff = np.abs(tf.load(tmp_path / "16.png") - tf.load(tmp_path / "8.png")).max()
    assert diff <= 1 / 255


def test_exif_orientation_ignored_by_default_applied_when_asked(tmp_path):
    from volo_deploy.data.dataset import decode_oriented
    from volo_deploy.data.transforms import EvalTransform

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white: a 90-degree turn moves it
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=100)
    Image.fromarray(arr).transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.jpg", quality=100)
    plain = EvalTransform(16, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    x, rotated = decode_oriented(tmp_path / "r.jpg", plain)
    assert rotated and np.abs(x - plain(Image.fromarray(arr))).max() < 0.1  # timm: the tag is not applied
    turned, _ = decode_oriented(tmp_path / "r.jpg", EvalTransform(16, 1.0, (0, 0, 0), (1, 1, 1), exif_transpose=True))
    assert np.abs(turned - plain.load(tmp_path / "upright.jpg")).max() < 0.1


def _resize_then_crop(img: Image.Image, size: int, resize: int) -> np.ndarray:
    """timm's order, written out: the whole shorter side to ``resize``, then the center crop."""
    from volo_deploy.data.transforms import _center_crop

    w, h = img.size
    new = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    full = img.convert("RGB").resize(new, Image.BICUBIC) if new != img.size else img.convert("RGB")
    return _center_crop(np.asarray(full, np.float32) / 255.0, size)


@pytest.mark.parametrize("size,crop", [(224, 0.96), (64, 0.96), (448, 1.15)])
def test_kept_region_resize_equals_resize_then_crop(size, crop):
    from volo_deploy.data.transforms import _center_crop, _resize_kept_region, eval_preprocess

    rng = np.random.default_rng(size)
    resize = int(size / crop)
    exact = total = 0
    for w, h in [(500, 375), (375, 500), (224, 224), (63, 65), (40, 700), (3, 900)]:
        img = Image.fromarray(rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), np.uint8)).resize((w, h))
        ref = _resize_then_crop(img, size, resize)
        ours = eval_preprocess(img, size, resize, (0, 0, 0), (1, 1, 1)).transpose(1, 2, 0)
        if max(w, h) <= 16 * min(w, h):  # ordinary images: the plain path, bit for bit timm's
            np.testing.assert_array_equal(ours, ref)
        new = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        boxed = _center_crop(np.asarray(_resize_kept_region(img, *new, size), np.float32) / 255.0, size)
        assert boxed.shape == ref.shape
        assert np.abs(boxed - ref).max() <= 3 / 255 + 1e-6  # the box path on the same images
        exact += int((np.abs(boxed - ref) < 1e-6).sum())
        total += ref.size
    assert exact / total > 0.9


def test_long_thin_png_memory_bounded_by_the_crop(tmp_path):
    import tracemalloc

    from volo_deploy.data.transforms import EvalTransform

    Image.new("RGB", (1, 40000), (120, 30, 200)).save(tmp_path / "thin.png")
    assert (tmp_path / "thin.png").stat().st_size < 2000
    tf = EvalTransform(224, 0.96, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    tracemalloc.start()
    x = tf.load(tmp_path / "thin.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x[:, 100, 100], np.array([120, 30, 200]) / 255, atol=1 / 255)
    assert peak < 20e6  # resize-then-crop: 233 x 9,320,000 x 3 bytes, then 4x that as float32


def test_decompression_bomb_limit_kept(tmp_path, monkeypatch):
    from volo_deploy.data.dataset import try_decode
    from volo_deploy.data.transforms import EvalTransform

    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 100x100 > 2 x the limit: Pillow refuses it
    arr, why, _ = try_decode(tmp_path / "big.png", EvalTransform(16, 1.0, (0, 0, 0), (1, 1, 1)))
    assert arr is None and why.startswith("DecompressionBombError")


# ---------------------------------------------------------------- state on disk


def test_resume_with_damaged_run_json_exits_2_naming_it(finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)
    (out / "shards" / "run.json").write_text('{"schema": "volo_deploy.bench_run/1", "checkp')
    r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(out), "--resume", *BENCH_FAST,
            env=_env(tmp_path))
    assert r.returncode == 2
    assert f"{out / 'shards' / 'run.json'} is damaged" in r.stderr and "without --resume" in r.stderr


def test_resume_with_damaged_case_json_recomputes_it(finished_run, tmp_path):
    out = _copy_run(finished_run, tmp_path)
    (out / "shards" / "torch_fp32.case.json").write_text('{"status": ')
    r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(out), "--resume", *BENCH_FAST[:-3],
            env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "recomputing case torch_fp32" in r.stderr
    assert json.loads((out / "report.json").read_text())["results"][0]["status"] == "ok"


def test_bad_cache_sidecar_recomputed_and_dead_lock_taken_over(finished_run, tmp_path):
    """One run, two faults: the reference-cache sidecar of the finished run is valid JSON but not an object, and
    --out holds the lock file of a killed run (the kernel dropped its flock when it died)."""
    sidecars = list((finished_run[1].parent / "cache" / "reference").glob("*/00000.json"))
    assert len(sidecars) == 1
    sidecars[0].write_text("[]")
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    (out / ".volo-bench.lock").write_text(f"{dead}\n")
    r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(out), *BENCH_FAST[:-3],
            env=_env(finished_run[1].parent))
    assert r.returncode == 0, r.stderr
    assert "is not a JSON object" in r.stderr and "recomputing" in r.stderr
    assert f"taking over the lock left by pid {dead}" in r.stderr
    assert json.loads(sidecars[0].read_text())["index"] == 0  # written again, whole


def test_cache_root_that_is_a_file_is_a_clear_error(finished_run, tmp_path):
    env = _env(tmp_path)
    (tmp_path / "cache").write_text("not a folder")
    r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(tmp_path / "o"), *BENCH_FAST, env=env)
    assert r.returncode == 2
    assert f"cache folder {tmp_path / 'cache'} is a file" in r.stderr
    assert not (tmp_path / "o").exists()


def test_second_run_on_one_out_folder_exits_2_with_the_pid(finished_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".volo-bench.lock", "w") as f:  # this process plays the first run
        f.write(f"{os.getpid()}\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        r = cli("volo-bench", "--data", str(finished_run[0]), "--out", str(out), *BENCH_FAST, env=_env(tmp_path))
    assert r.returncode == 2
    assert f"in use by pid {os.getpid()}" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == [".volo-bench.lock"]  # nothing of ours was touched


# ---------------------------------------------------------------- nothing half-published


def _file_size_limit(limit: int):
    def apply() -> None:  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_during_export_publishes_nothing(tmp_path):
    out = tmp_path / "new" / "export"
    r = cli("volo-export", "--backend", "torch", "--output", str(out), env=_env(tmp_path),
            preexec_fn=_file_size_limit(1 << 20))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: disk full while writing {out}")
    assert not (tmp_path / "new").exists()  # the folders this run created are gone too


def test_disk_full_with_force_keeps_the_previous_export(tmp_path):
    out = tmp_path / "export"
    env = _env(tmp_path)
    assert cli("volo-export", "--backend", "torch", "--output", str(out), env=env).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("volo-export", "--backend", "torch", "--output", str(out), "--force", env=env,
            preexec_fn=_file_size_limit(1 << 20))
    assert r.returncode == 2 and "disk full while writing" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging left, old set intact


def test_publish_is_a_set_rolled_back_on_failure(tmp_path):
    from volo_deploy import artifacts
    from volo_deploy.errors import BadInputError

    out, staged = tmp_path / "out", tmp_path / "out" / ".staging-x"
    staged.mkdir(parents=True)
    (out / "a.bin").write_text("old a")
    (staged / "a.bin").write_text("new a")
    (staged / "manifest.json").write_text("{}")
    (out / "manifest.json").mkdir()  # the last rename cannot replace a folder
    with pytest.raises(BadInputError, match="not a regular file"):
        artifacts.publish(staged, out, ["a.bin", "manifest.json"])
    assert (out / "a.bin").read_text() == "old a" and (out / "manifest.json").is_dir()


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_during_export_clean_up(tmp_path, sig, code):
    out = tmp_path / "new" / "export"
    p = started("volo-export", "--backend", "onnxruntime", "--output", str(out), env=_env(tmp_path))
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(n.startswith(".staging-") for n in os.listdir(out))):
        assert p.poll() is None and time.monotonic() < deadline, "export ended before its staging folder was seen"
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "Traceback" not in err and f"interrupted ({signal.Signals(sig).name})" in err
    assert not (tmp_path / "new").exists()


def test_staging_of_a_killed_export_is_removed_by_the_next(tmp_path):
    out = tmp_path / "export"
    stale = out / f".staging-{_dead_pid()}-abc123"
    stale.mkdir(parents=True)
    (stale / "volo_demo_64_fp32.safetensors").write_bytes(b"")  # what a SIGKILL mid-write leaves
    alive = out / f".staging-{os.getpid()}-live"  # a staging folder whose process still runs: kept
    alive.mkdir()
    r = cli("volo-export", "--backend", "torch", "--output", str(out), env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and alive.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([alive.name, "manifest.json",
                                                            "volo_demo_64_fp32.safetensors"])


def test_ctrl_c_during_int8_calibration_exits_130(tmp_path):
    out = tmp_path / "int8"
    p = started("volo-export", "--backend", "onnxruntime", "--int8", "--output", str(out), env=_env(tmp_path))
    seen = ""
    while "calibration images" not in seen:  # tqdm's bar of the calibration pass, on stderr
        chunk = p.stderr.read(64)
        assert chunk, f"ended before calibration: {seen[-2000:]}"
        seen += chunk
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 130, seen + err
    assert "Traceback" not in seen + err and "interrupted (Ctrl-C)" in err
    assert not out.exists()


@pytest.mark.parametrize("make", ["fifo", "symlink"])
def test_export_never_writes_through_a_non_regular_file(tmp_path, make):
    out = tmp_path / "export"
    out.mkdir()
    target = out / "manifest.json"
    if make == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "elsewhere.json").write_text("keep me")
        os.symlink(tmp_path / "elsewhere.json", target)
    r = cli("volo-export", "--backend", "torch", "--output", str(out), "--force", env=_env(tmp_path), timeout=120)
    assert r.returncode == 2
    assert f"{target}: exists and is a" in r.stderr and "left untouched" in r.stderr
    assert (target.is_fifo() if make == "fifo" else target.is_symlink())
    assert make == "fifo" or (tmp_path / "elsewhere.json").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_atomic_write_refuses_a_fifo(tmp_path):
    from volo_deploy.artifacts import atomic_write_text
    from volo_deploy.errors import BadInputError

    os.mkfifo(tmp_path / "report.json")
    with pytest.raises(BadInputError, match="is a FIFO"):
        atomic_write_text(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").is_fifo()
