"""The README quick start installs what its own test command needs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_quick_start_install_brings_pytest():
    import tomllib

    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, test = [line.strip() for line in quick.strip().splitlines()]
    assert test == "python -m pytest -q"
    extras = re.search(r'-e "\.\[([\w,]+)\]"', install).group(1).split(",")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = [d for e in extras for d in deps[e]]
    assert any(d.startswith("pytest") for d in wanted)
    assert set(deps["all"]) <= set(wanted)  # every runtime the bench needs, too
    ci = (ROOT / ".ci" / "run").read_text()
    ci_extras = re.search(r'-e "\.\[([\w,]+)\]"', ci).group(1).split(",")  # CI adds ray for the --ray tests
    assert set(extras) <= set(ci_extras) and test.split("python ", 1)[1] in ci


def test_wheel_ships_every_module_and_the_plugin_sources(tmp_path):
    """A real (non-editable) wheel, built from a copy of the checkout, holds every module and every plugin
    source file, and ``plugin_source_dir()`` run from the unpacked wheel points inside it (~3 s)."""
    import shutil
    import subprocess
    import zipfile

    pytest.importorskip("setuptools")
    from volo_deploy.export.trt_engine import PLUGIN_SOURCE_PATTERNS

    src = tmp_path / "src"
    for name in ("volo_deploy", "plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w",
           str(tmp_path / "whl")]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "whl").glob("volo_deploy-*.whl"))
    plugin = ROOT / "plugins" / "outlook_attention"
    want = {f"volo_deploy/_plugin_src/outlook_attention/{p.relative_to(plugin).as_posix()}"
            for pattern in PLUGIN_SOURCE_PATTERNS for p in plugin.glob(pattern)}
    assert len(want) >= 8
    want |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "volo_deploy").rglob("*.py")}
    want.add("volo_deploy/assets/imagenet1k_classes.tsv")  # the ImageNet-1k class table (package data)
    with zipfile.ZipFile(wheel) as zf:
        assert want <= set(zf.namelist())
        zf.extractall(tmp_path / "site")
    code = "from volo_deploy.plugins_native import plugin_source_dir; print(plugin_source_dir())"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site")}).stdout.strip()
    assert Path(out) == tmp_path / "site" / "volo_deploy" / "_plugin_src" / "outlook_attention"


def test_plugin_sources_found_in_the_checkout():
    from volo_deploy.plugins_native import plugin_source_dir

    assert (plugin_source_dir() / "CMakeLists.txt").is_file()
