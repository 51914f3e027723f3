"""Shared fixtures: small deterministic models and the demo image tree."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


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
