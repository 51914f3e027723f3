"""The static SASS model of benchmarks/outlook_sass.py: its plan mirror against the C++ planner (host
replay), its loop finder on a synthetic listing, and (with nvcc + cuobjdump) the kernel structure it
assumes, read from the real sm_90 SASS."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.models.outlook import OutlookParams
from volo_deploy.plugins_native import HostReference, build_host_reference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import outlook_sass  # noqa: E402


@pytest.fixture(scope="module")
def hostref(tmp_path_factory: pytest.TempPathFactory) -> HostReference:
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no host C++ compiler")
    return HostReference(build_host_reference(tmp_path_factory.mktemp("hostref")))


@pytest.mark.parametrize("size", [(28, 28), (48, 48), (56, 56), (64, 64), (27, 26), (1, 1), (15, 9)])
def test_python_plan_mirrors_the_launcher(hostref: HostReference, size) -> None:
    hh, ww = size
    p = OutlookParams(3, 1, 2, 1, 32**-0.5)
    v = np.zeros((1, hh, ww, 32), np.float32)
    attn = np.zeros((1, -(-hh // 2), -(-ww // 2), 81), np.float32)
    _, c_plan = hostref.volo(v, attn, p)
    py = outlook_sass.volo_plan(hh, ww, 2)
    assert (py.tcy, py.tcx, py.tiles_y, py.tiles_x, py.threads, py.smem) == (
        c_plan.tcy, c_plan.tcx, c_plan.tiles_y, c_plan.tiles_x, c_plan.threads, c_plan.smem_bytes)


SYNTHETIC = """
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/                   LDG.E.64.CONSTANT R4, desc[UR6][R2.64] ;
        /*0020*/                   STS.128 [R1], R4 ;
        /*0030*/              @!P0 BRA 0x10 ;
        /*0040*/                   LDG.E.U16.CONSTANT R8, desc[UR6][R2.64] ;
        /*0050*/                   MUFU.EX2 R8, R8 ;
        /*0060*/                   STS.128 [R1], R8 ;
        /*0070*/              @!P1 BRA 0x40 ;
        /*0080*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0090*/               @P0 EXIT ;
        /*00a0*/                   LDS.128 R4, [R1] ;
        /*00b0*/                   FFMA R4, R4, R5, R6 ;
        /*00c0*/                   EXIT ;
        /*00d0*/                   MUFU.RCP R3, R3 ;
"""


def test_phase_counts_on_a_synthetic_listing() -> None:
    code = [outlook_sass.Instr(int(m.group(1), 16), m.group(3), m.group(4).strip())
            for line in SYNTHETIC.splitlines() if (m := outlook_sass.SASS_LINE.search(line))]
    c = outlook_sass.phase_counts(code)
    assert c["setup"] == 1 and c["v_row"] == 3 and c["v_sts_row"] == 1
    assert c["softmax_iter"] == 4 * 9  # one MUFU.EX2 per loop = 1/9 of a row
    assert c["cell"] == 5 and c["cell_ffma"] == 1 and c["cell_lds128"] == 1  # subroutine after EXIT excluded


def _tools() -> bool:
    try:
        for tool in ("nvcc", "cuobjdump", "nvdisasm"):
            outlook_sass.find_tool(tool)
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _tools(), reason="nvcc / cuobjdump / nvdisasm not found")
def test_real_sass_has_the_structure_the_model_assumes(tmp_path: Path) -> None:
    funcs, ptxas = outlook_sass.compile_sass("90", tmp_path)
    for dtype in ("fp16", "fp32"):
        _, code = outlook_sass.volo_function(funcs, dtype)
        c = outlook_sass.phase_counts(code)  # raises unless one v loop and one softmax loop
        assert c["cell_lds128"] == 25 + 27 and c["cell_ffma"] == 324, c
        regs, spills = outlook_sass.registers(ptxas, dtype)
        assert spills == "0 bytes spill stores" and 0 < regs <= 72, (regs, spills)
