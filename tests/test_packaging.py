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
    assert all(f'-e ".[{e}]"' in ci for e in extras) and test.split("python ", 1)[1] in ci
