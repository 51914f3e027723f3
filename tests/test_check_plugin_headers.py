"""scripts/check_plugin_headers.py: no headers -> one error line; TensorRT 8.x -> 'fail' with the reason
(the full compile of 10.x/11.x sets takes minutes and is run by hand; see the plugin README)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_plugin_headers.py"


def _module():
    spec = importlib.util.spec_from_file_location("check_plugin_headers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_headers_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no TensorRT headers found") and len(proc.stderr.splitlines()) == 1


def test_tensorrt_8_reported_as_unsupported(tmp_path):
    (tmp_path / "NvInfer.h").write_text("// stand-in\n")
    (tmp_path / "NvInferVersion.h").write_text("#define NV_TENSORRT_MAJOR 8\n#define NV_TENSORRT_MINOR 5\n"
                                               "#define NV_TENSORRT_PATCH 3\n")
    status, detail = _module().check(tmp_path, tmp_path / "build", "87")
    assert status == "fail" and detail.startswith("no IPluginV3 (need >= 10.0)")
    assert not (tmp_path / "build").exists()  # refused before any build


@pytest.mark.skipif(not list(SCRIPT.parent.parent.glob("third_party/tensorrt-8.*/include/NvInfer.h")),
                    reason="no TensorRT 8.x headers in third_party/")
def test_real_tensorrt_8_headers_fail_to_compile(tmp_path):
    inc = next(SCRIPT.parent.parent.glob("third_party/tensorrt-8.*/include"))
    status, detail = _module().check(inc, tmp_path / "b", "87")
    assert status == "fail" and "error" in detail.split("g++:", 1)[1]
