"""GPU tests: register the markers here until pyproject.toml declares them."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (torch.cuda.is_available())")
