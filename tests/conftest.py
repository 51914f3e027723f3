"""Shared fixtures: small deterministic models and the demo image tree."""

from __future__ import annotations

import os
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
