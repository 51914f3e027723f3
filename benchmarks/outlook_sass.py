"""Static estimate of the outlook-attention kernel's VOLO path from its SASS (no GPU needed).

Used by ``python benchmarks/outlook_kernel.py --static``. Steps:

1. ``nvcc -cubin`` of ``outlookAttentionKernel.cu`` for the architecture (``-Xptxas -v``: registers,
   spills), ``cuobjdump -sass`` of the cubin, the function ``outlookVoloKernel<T>``.
2. Phases found by structure (the kernel has exactly one ``BAR.SYNC``):
   * v staging: the loop before the barrier holding vector ``LDG.E`` loads and no ``MUFU.EX2``: one
     region row per warp-iteration, its columns unrolled in the source (all loads of a row in flight);
     predicated-off columns are counted as issued (an upper bound);
   * softmax staging: the loop holding ``MUFU.EX2`` (9 per row; cost per warp-row = body / rows);
   * cell phase: from the barrier to the last ``EXIT`` (straight line, all counted: stores included);
   * setup: every other instruction before the barrier, once per warp. Subroutines after the last
     ``EXIT`` (the IEEE division slow path of 1/sum, taken only for denormal sums) are not counted.
3. Trip counts from the launch plan (``planVolo`` mirrored in :func:`volo_plan`), per block:
   warp-iterations of each loop and active warps, times blocks (image x tile x head).

Model (assumptions): one warp-instruction issued per scheduler per cycle, 4 schedulers per SM, every
SM busy for ``ceil(blocks / SMs)`` blocks (no overlap gain, no stall: a lower bound on time, the
*issue floor*). Shared memory: one wavefront (128 bytes) per SM per cycle; wavefronts per 128-bit
access from the kernel's layout (see outlookAttentionCommon.cuh): a v-tile load of the cell phase is
4 (32 lanes x 16 distinct bytes, a quarter warp = one pixel's contiguous 128 bytes), a softmax-row
load is 1 (4 cells per warp, broadcast within a quarter, bank offsets 0/12/24/4), every staging store
is 4. The cell phase holds 25 v loads and 27 row loads (checked against the SASS count of LDS.128).
DRAM bytes: v + attn + out once (unique); L2->SM adds the v halo of each tile.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "plugins" / "outlook_attention" / "outlookAttentionKernel.cu"

# Launcher constants (outlookAttentionCommon.cuh: kVoloMaxCells, kVoloSmemBudget, layout sizes).
MAX_CELLS, SMEM_BUDGET, P_PER_CELL, HEAD_DIM, LANES, ROW_PIXELS = 7, 100 * 1024, 108, 32, 8, 20
# Devices: SMs, boost clock (GHz), shared memory per SM (bytes), HBM bandwidth (bytes/s).
DEVICES = {
    "90": dict(name="H200", sms=132, ghz=1.98, smem_sm=228 * 1024, bw=4.3e12),
    "87": dict(name="Jetson AGX Orin", sms=16, ghz=1.30, smem_sm=164 * 1024, bw=204.8e9),
}
SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


@dataclass(frozen=True)
class Instr:
    addr: int
    op: str
    args: str


@dataclass(frozen=True)
class Plan:
    tcy: int
    tcx: int
    tiles_y: int
    tiles_x: int
    rh: int
    rw: int
    threads: int
    smem: int


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def volo_plan(height: int, width: int, elem_bytes: int) -> Plan:
    """``volo::planVolo`` with the launcher's limits (largest balanced tile that fits)."""
    cells_y, cells_x = _ceil(height, 2), _ceil(width, 2)
    for limit in range(MAX_CELLS, 0, -1):
        ty, tx = _ceil(cells_y, limit), _ceil(cells_x, limit)
        cy, cx = _ceil(cells_y, ty), _ceil(cells_x, tx)
        rh, rw = 2 * cy + 3, 2 * cx + 3
        smem = (cy * cx * P_PER_CELL + rh * ROW_PIXELS * HEAD_DIM) * 4  # sV rows padded to 20 pixels
        if smem <= SMEM_BUDGET:
            if ty * tx >= 1024:
                break
            return Plan(cy, cx, ty, tx, rh, rw, _ceil(cy * cx * LANES, 32) * 32, smem)
    raise ValueError("no VOLO tile fits")


def find_tool(name: str) -> str:
    """``name`` from PATH, $CUDA_HOME/bin, /usr/local/cuda/bin or a pip ``nvidia-cuda-*`` wheel."""
    import os
    import site

    found = shutil.which(name)
    if found:
        return found
    roots = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"] + [str(Path(p) / "nvidia" / "cu13") for p in
                                                                site.getsitepackages()]
    roots += [str(Path(p) / "nvidia" / "cu13") for p in os.environ.get("VOLO_CUDA_TOOLS", "").split(":") if p]
    for root in roots:
        if root and (Path(root) / "bin" / name).is_file():
            return str(Path(root) / "bin" / name)
    raise FileNotFoundError(f"{name} not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin, pip nvidia-cuda-*)")


def compile_sass(arch: str, workdir: Path) -> tuple[dict[str, list[Instr]], str]:
    """cubin for sm_<arch>; returns {function name: instructions} and ptxas' -v report."""
    import os

    cubin = workdir / f"k{arch}.cubin"
    proc = subprocess.run([find_tool("nvcc"), "-std=c++17", "-O3", "-cubin", str(SRC), "-o", str(cubin),
                           "-gencode", f"arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed for sm_{arch}:\n{proc.stderr[-3000:]}")
    cuobjdump = find_tool("cuobjdump")
    env = dict(os.environ)  # cuobjdump -sass runs nvdisasm, found on PATH
    env["PATH"] = f"{Path(cuobjdump).parent}:{Path(find_tool('nvdisasm')).parent}:{env.get('PATH', '')}"
    sass = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, env=env)
    if sass.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {sass.stderr[-2000:]}")
    funcs: dict[str, list[Instr]] = {}
    current: list[Instr] | None = None
    for line in sass.stdout.splitlines():
        if "Function :" in line:
            current = funcs.setdefault(line.split("Function :")[1].strip(), [])
        elif current is not None and (m := SASS_LINE.search(line)):
            current.append(Instr(int(m.group(1), 16), m.group(3), m.group(4).strip()))
    return funcs, proc.stderr


def volo_function(funcs: dict[str, list[Instr]], dtype: str) -> tuple[str, list[Instr]]:
    key = "outlookVoloKernelI6__half" if dtype == "fp16" else "outlookVoloKernelIf"
    for name, body in funcs.items():
        if key in name:
            return name, body
    raise RuntimeError(f"{key} not in the SASS (functions: {list(funcs)[:4]}...)")


def _loops(code: list[Instr], end: int) -> list[tuple[int, int]]:
    """(start, end) index ranges of loops: backward branches before index ``end``."""
    index = {ins.addr: i for i, ins in enumerate(code)}
    loops = []
    for i, ins in enumerate(code[:end]):
        if ins.op == "BRA" and (m := re.match(r"`?\(?\.?L?_?x?_?(0x[0-9a-f]+)", ins.args)):
            target = int(m.group(1), 16)
            if target <= ins.addr and target in index:
                loops.append((index[target], i))
    return loops


def phase_counts(code: list[Instr]) -> dict[str, float]:
    """Per-phase instruction counts (see the module docstring) of one VOLO kernel body."""
    bar = next(i for i, ins in enumerate(code) if ins.op.startswith("BAR"))
    last_exit = max(i for i, ins in enumerate(code) if ins.op == "EXIT")
    loops = _loops(code, bar)

    def ops(lo: int, hi: int, prefix: str) -> int:
        return sum(1 for ins in code[lo:hi + 1] if ins.op.startswith(prefix))

    softmax = [lp for lp in loops if ops(*lp, "MUFU.EX2")]
    vloops = [lp for lp in loops if ops(*lp, "LDG.E") and not ops(*lp, "MUFU.EX2")]
    if len(softmax) != 1 or len(vloops) != 1:
        raise RuntimeError(f"expected one v-staging and one softmax loop, found {len(vloops)} and {len(softmax)} "
                           "(kernel structure changed: update the model)")
    (sm_lo, sm_hi), (v_lo, v_hi) = softmax[0], vloops[0]
    rows_per_iter = ops(sm_lo, sm_hi, "MUFU.EX2") / 9
    in_loops = set(range(sm_lo, sm_hi + 1)) | set(range(v_lo, v_hi + 1))
    cell = code[bar:last_exit + 1]
    return {
        "setup": sum(1 for i in range(bar) if i not in in_loops),
        "v_row": v_hi - v_lo + 1,
        "v_sts_row": ops(v_lo, v_hi, "STS.128"),
        "softmax_iter": (sm_hi - sm_lo + 1) / rows_per_iter,
        "softmax_sts": ops(sm_lo, sm_hi, "STS.128") / rows_per_iter,
        "cell": len(cell),
        "cell_lds128": sum(1 for ins in cell if ins.op.startswith("LDS.128")),
        "cell_ffma": sum(1 for ins in cell if ins.op.startswith("FFMA")),
    }


def block_work(c: dict[str, float], plan: Plan) -> dict[str, float]:
    """Warp-instructions and shared-memory wavefronts of one block, per phase."""
    warps = plan.threads // 32
    rows = plan.tcy * plan.tcx * 9
    sm_iters = sum(_ceil(min(plan.threads, rows - k), 32) for k in range(0, rows, plan.threads))
    active = _ceil(plan.tcy * plan.tcx * LANES, 32)
    instr = {
        "setup": warps * c["setup"],
        "v staging": plan.rh * c["v_row"],
        "softmax staging": sm_iters * c["softmax_iter"],
        "cell phase": active * c["cell"],
    }
    v_loads, p_loads = 25, 27
    wavefronts = {
        "v staging": plan.rh * c["v_sts_row"] * 4,
        "softmax staging": sm_iters * c["softmax_sts"] * 4,
        "cell phase": active * (v_loads * 4 + p_loads * 1),
    }
    return {"instr": instr, "wavefronts": wavefronts, "lds_ok": c["cell_lds128"] == v_loads + p_loads}


def occupancy(plan: Plan, regs: int, smem_sm: int) -> int:
    """Resident blocks per SM: registers (256-register warp granules), shared memory, threads."""
    warps = plan.threads // 32
    by_regs = 65536 // (warps * _ceil(regs * 32, 256) * 256)
    by_smem = smem_sm // (plan.smem + 1024)
    return max(0, min(by_regs, by_smem, 2048 // plan.threads, 32))


def registers(ptxas: str, dtype: str) -> tuple[int, str]:
    key = "outlookVoloKernelI6__half" if dtype == "fp16" else "outlookVoloKernelIf"
    lines = ptxas.splitlines()
    for i, line in enumerate(lines):
        if "Compiling entry function" in line and key in line:
            block = "\n".join(lines[i:i + 4])
            spill = re.search(r"(\d+) bytes spill stores", block)
            regs = re.search(r"Used (\d+) registers", block)
            return int(regs.group(1)) if regs else 0, f"{spill.group(1) if spill else '?'} bytes spill stores"
    return 0, "not found"


def estimate(arch: str, batch: int, height: int, width: int, heads: int, dtype: str) -> dict:
    """Static issue / shared-memory / DRAM estimate of the VOLO path for one shape and architecture."""
    dev = DEVICES[arch]
    elem = 2 if dtype == "fp16" else 4
    with tempfile.TemporaryDirectory(prefix="volo_sass_") as tmp:
        funcs, ptxas = compile_sass(arch, Path(tmp))
    name, code = volo_function(funcs, dtype)
    counts = phase_counts(code)
    plan = volo_plan(height, width, elem)
    work = block_work(counts, plan)
    regs, spills = registers(ptxas, dtype)
    blocks = batch * plan.tiles_y * plan.tiles_x * heads
    per_sm = math.ceil(blocks / dev["sms"])
    per_block = sum(work["instr"].values())
    issue_us = per_sm * per_block / (4 * dev["ghz"] * 1e3)
    smem_us = per_sm * sum(work["wavefronts"].values()) / (dev["ghz"] * 1e3)
    c = heads * HEAD_DIM
    dram = (2 * batch * height * width * c + batch * _ceil(height, 2) * _ceil(width, 2) * heads * 81) * elem
    l2 = dram + blocks * (plan.rh * plan.rw - 4 * plan.tcy * plan.tcx) * HEAD_DIM * elem
    resident = occupancy(plan, regs, dev["smem_sm"])
    return dict(arch=arch, device=dev, function=name, counts=counts, plan=plan, work=work, regs=regs,
                spills=spills, blocks=blocks, per_sm=per_sm, per_block=per_block, issue_us=issue_us,
                smem_us=smem_us, dram_bytes=dram, l2_bytes=l2, roofline_us=dram / dev["bw"] * 1e6,
                resident=resident, waves=blocks / max(resident * dev["sms"], 1))


def report(e: dict) -> list[str]:
    """Human-readable lines of one :func:`estimate`."""
    p, d, w = e["plan"], e["device"], e["work"]
    total = e["per_block"] * e["blocks"]
    lines = [
        f"sm_{e['arch']} ({d['name']}: {d['sms']} SMs, {d['ghz']} GHz assumed): {e['regs']} registers, "
        f"{e['spills']}; plan {p.tcy}x{p.tcx} cells/tile, {p.tiles_y}x{p.tiles_x} tiles, {p.threads} threads, "
        f"{p.smem / 1024:.1f} KiB smem",
        f"  SASS counts: setup {e['counts']['setup']}, v staging {e['counts']['v_row']}/region row, softmax {e['counts']['softmax_iter']:.1f}/warp-row-iteration, "
        f"cell phase {e['counts']['cell']} ({e['counts']['cell_ffma']} FFMA, {e['counts']['cell_lds128']} LDS.128"
        f"{'' if w['lds_ok'] else ' != 52 expected: model assumption broken'})",
    ]
    for phase, n in w["instr"].items():
        lines.append(f"  {phase:16s} {n * e['blocks'] / 1e6:7.2f} M warp-instructions")
    lines += [
        f"  total {total / 1e6:.2f} M warp-instructions over {e['blocks']} blocks "
        f"({e['per_sm']} per SM at most); occupancy {e['resident']} blocks/SM "
        f"({e['resident'] * p.threads // 32} warps), {e['waves']:.1f} waves",
        f"  shared memory: {sum(w['wavefronts'].values()) * e['blocks'] / 1e6:.2f} M wavefronts -> "
        f"smem floor {e['smem_us']:.1f} us",
        f"  bytes moved: DRAM {e['dram_bytes'] / 1e6:.1f} MB unique, L2->SM {e['l2_bytes'] / 1e6:.1f} MB "
        f"(v halo); roofline {e['roofline_us']:.1f} us at {d['bw'] / 1e12:.3g} TB/s",
        f"  issue floor {e['issue_us']:.1f} us, smem floor {e['smem_us']:.1f} us "
        f"(roofline {e['roofline_us']:.1f} us)",
    ]
    return lines
