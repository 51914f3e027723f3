"""Shared fixtures: small deterministic models and the demo image tree."""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_user_cache(tmp_path_factory) -> Path:
    """Point the per-user cache (demo tree, calibration cache, built plugins) at a session temp folder.

    Tests then never read or write ``~/.cache/volo_deploy``: a second run takes the same path as the first.
    """
    root = tmp_path_factory.mktemp("user_cache")
    old = os.environ.get("VOLO_DEPLOY_CACHE")
    os.environ["VOLO_DEPLOY_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("VOLO_DEPLOY_CACHE", None)
    else:
        os.environ["VOLO_DEPLOY_CACHE"] = old


@pytest.fixture
def warns_logged(caplog):
    """``with warns_logged("regex") as msgs:`` - like ``pytest.warns`` for the package logger: the block
    logs a WARNING+ record whose message matches (``msgs``: every such message, filled at the end)."""

    @contextmanager
    def check(match: str = ""):
        msgs: list[str] = []
        with caplog.at_level(logging.WARNING, logger="volo_deploy"):
            start = len(caplog.records)
            yield msgs
        msgs += [r.getMessage() for r in caplog.records[start:] if r.levelno >= logging.WARNING]
        assert any(re.search(match, m) for m in msgs), f"no logged warning matches {match!r}: {msgs}"

    return check


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """The demo digits written once as an ImageFolder tree (train/ and val/)."""
    from volo_deploy.data.digits import write_digits_tree

    root = tmp_path_factory.mktemp("digits")
    write_digits_tree(root, "val")
    return root


@pytest.fixture(scope="session")
def deterministic_checkpoint(tmp_path_factory):
    """``deterministic_checkpoint(name, seed=0) -> Path``: the weights of model ``name`` filled by
    :func:`volo_deploy.models.init.deterministic_state_dict`, as safetensors, written once per session."""
    from safetensors.torch import save_file

    from volo_deploy.models import create_model
    from volo_deploy.models.init import deterministic_state_dict

    made: dict[tuple[str, int], Path] = {}

    def get(name: str, seed: int = 0) -> Path:
        if (name, seed) not in made:
            path = tmp_path_factory.mktemp("ckpt") / f"{name}_seed{seed}.safetensors"
            save_file(deterministic_state_dict(create_model(name), seed=seed), str(path))
            made[(name, seed)] = path
        return made[(name, seed)]

    return get


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    from volo_deploy.models import demo_checkpoint

    return demo_checkpoint()


def _fake_trt_tools(root: Path, trt_header: str | None = None) -> dict[str, str]:
    """cmake + trtexec stand-ins in ``root/bin`` (cmake 'builds' the plugin; trtexec records its argv in
    ``root/log.trtexec``, every run's in ``root/log.trtexec.all`` separated by ``==``, and writes
    ``--saveEngine``), optional TensorRT headers; returns the environment."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "cmake").write_text(
        "#!/usr/bin/env bash\nset -e\necho \"cmake $*\" >> \"$FAKE_LOG\"\n"
        "if [[ \"$1\" == --build ]]; then mkdir -p \"$2\"; touch \"$2/libvolo_outlook_plugin.so\"; fi\n")
    (bin_dir / "trtexec").write_text(
        "#!/usr/bin/env bash\nset -e\nprintf '%s\\n' \"$@\" > \"$FAKE_LOG.trtexec\"\n"
        "{ printf '%s\\n' \"$@\"; echo ==; } >> \"$FAKE_LOG.trtexec.all\"\n"
        "for a in \"$@\"; do case \"$a\" in --saveEngine=*) echo engine > \"${a#--saveEngine=}\";; esac; done\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_ROOT", "TENSORRT_INCLUDE_DIR", "TRTEXEC")}
    env.update({"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(root / "log"), "CUDA_ARCH": "87"})
    if trt_header is not None:
        (root / "trt/include").mkdir(parents=True)
        (root / "trt/include/NvInferVersion.h").write_text(trt_header)
        env["TENSORRT_ROOT"] = str(root / "trt")
    return env


@pytest.fixture(scope="session")
def fake_trt_tools():
    """``fake_trt_tools(root, trt_header=None) -> env``: stand-in cmake and trtexec for build scripts."""
    return _fake_trt_tools
