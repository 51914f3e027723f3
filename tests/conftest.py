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
def demo_checkpoint() -> Path:
    from volo_deploy.models import demo_checkpoint

    return demo_checkpoint()
