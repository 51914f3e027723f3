"""Runtime settings and helpers shared by backends, quantization and the harness.

Kept below all of them (imports nothing of ``volo_deploy`` at module level): the pinned
onnxruntime session options, OpenVINO's per-precision compile hint, chunked running.

onnxruntime's CPU provider has no bf16 kernels on x86; its only bf16 path is MLAS's GEMM
"fast math" on ARM64 (``mlas.enable_gemm_fastmath_arm64_bfloat16``: fp32 MatMul/Gemm computed
with bf16 multiplies), which ``bf16`` uses on ARM64 CPUs with bf16 and every other precision
pins off. OpenVINO's CPU plugin defaults ``INFERENCE_PRECISION_HINT`` to bf16 on CPUs with
avx512_bf16 or AMX (OpenVINO docs, "CPU device: inference precision"), so every compile pins it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

import numpy as np

BF16_FASTMATH = "mlas.enable_gemm_fastmath_arm64_bfloat16"
# Session entries that change results, each pinned to its exact-math value (onnxruntime's
# onnxruntime_session_options_config_keys.h): the ARM64 bf16 GEMM fast math, the tanh GELU
# approximation fusion, and flush-to-zero / denormals-as-zero.
EXACT_MATH_ENTRIES = {
    BF16_FASTMATH: "0",
    "optimization.enable_gelu_approximation": "0",
    "session.set_denormal_as_zero": "0",
}
ARM64 = ("aarch64", "arm64")

#: Our precision -> the OpenVINO ``INFERENCE_PRECISION_HINT`` every compile of it pins.
INFERENCE_PRECISION = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32"}


def session_options(precision: str = "fp32", threads: int | None = None, log_severity: int | None = None):
    """``ort.SessionOptions`` that compute ``precision`` as it says: exact-math entries pinned,
    bf16 GEMM fast math on only for ``bf16`` (ARM64)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    if log_severity is not None:
        so.log_severity_level = log_severity
    for key, value in EXACT_MATH_ENTRIES.items():
        so.add_session_config_entry(key, "1" if key == BF16_FASTMATH and precision == "bf16" else value)
    return so


def session_float_precision(sess) -> str:
    """The float precision a session's GEMMs run in, read back from its options."""
    fast = sess.get_session_options().get_session_config_entry(BF16_FASTMATH) == "1"
    return "bf16" if fast and platform.machine().lower() in ARM64 else "fp32"


def inference_config(precision: str = "fp32") -> dict[str, str]:
    """The OpenVINO compile properties that fix what ``precision`` computes in, on any device."""
    return {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}


def run_in_chunks(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, chunk: int, pad: bool = False, desc: str | None = None
) -> np.ndarray:
    """``run`` over ``x`` in chunks of ``chunk`` images, outputs concatenated.

    ``pad``: the model has a fixed batch of ``chunk``, so the last, shorter chunk is padded by
    repeating its last image and only its real outputs are kept. ``desc`` shows a progress bar.
    """
    starts: Iterable[int] = range(0, len(x), chunk)
    if desc is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    outs = []
    for i in starts:
        part = x[i : i + chunk]
        n = len(part)
        if pad and n < chunk:
            part = np.concatenate([part, np.repeat(part[-1:], chunk - n, axis=0)])
        outs.append(np.asarray(run(part))[:n])
    return np.concatenate(outs)
