"""Portable ONNX, run by ONNX Runtime.

Precision: the session options that change the math are pinned (:func:`session_options`).
onnxruntime's CPU provider has no bf16 kernels on x86; its only bf16 path is MLAS's GEMM
"fast math" on ARM64 (``mlas.enable_gemm_fastmath_arm64_bfloat16``: fp32 MatMul/Gemm computed
with bf16 multiplies), which ``bf16`` uses on ARM64 CPUs with bf16 and every other precision
pins off (:mod:`volo_deploy.runtime`). That ARM path is configured and tested by its session
entries only (no ARM CPU here).
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportArtifacts, ExportRequest, Runner, register_backend
from volo_deploy.backends.precision import bf16_unavailable_reason, executed_name, int8_weights_warning
from volo_deploy.errors import BadInputError
from volo_deploy.options import flag
from volo_deploy.runtime import ARM64, EXACT_MATH_ENTRIES, session_float_precision, session_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtOptions:
    """Runtime settings of an ONNX Runtime session."""

    threads: int | None = flag("--threads", "onnxruntime intra-op threads for validation", parse=int)
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    precision: str | None = None  # None: the model's own (its volo.precision metadata), else fp32


class OrtRunner(Runner):
    def __init__(self, path: Path, options: OrtOptions) -> None:
        self.precision = options.precision or "fp32"
        self.session = self._session(path, options)
        meta = self.session.get_modelmeta().custom_metadata_map
        if options.precision is None and meta.get("volo.precision", "fp32") != self.precision:
            self.precision = meta["volo.precision"]  # the model's own precision, if it needs other options
            self.session = self._session(path, options)
        self.executed_precision = executed_name(session_float_precision(self.session), self.precision)
        self.warning = int8_weights_warning(meta.get("volo.quant.weight_bits"))
        if self.warning:
            log.warning("model %s: %s", path.name, self.warning)
        inp = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        super().__init__(shape)
        self.input_name = inp.name

    def _session(self, path: Path, options: OrtOptions):
        import onnxruntime as ort

        so = session_options(self.precision, options.threads)
        try:
            return ort.InferenceSession(str(path), so, providers=list(options.providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BadInputError(f"model {path}: onnxruntime cannot load it ({exc})") from None

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


@register_backend("onnxruntime", "onnx", "ort")
class OnnxRuntimeBackend(Backend):
    """Portable ONNX (opset >= 17, no Col2Im, ``volo.OutlookAttention`` local functions)."""

    precisions = ("fp32", "bf16", "int8")
    model_suffix = ".onnx"
    Options = OrtOptions

    requires = ("onnx", "onnxscript", "onnxruntime")
    extra = "onnx"
    distributions = ("onnx", "onnxruntime")

    @classmethod
    def precision_unavailable_reason(cls, precision: str) -> str | None:
        if precision != "bf16":
            return None
        if platform.machine().lower() not in ARM64:
            return (
                "onnxruntime's CPU provider has no bf16 kernels on x86 (its bf16 GEMM fast math is ARM64 only); "
                "use --backend openvino"
            )
        return bf16_unavailable_reason()

    def validation_options(self, request: ExportRequest) -> OrtOptions:
        return replace(request.options or OrtOptions(), precision=request.precision)

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        from volo_deploy.export.onnx_graph import portable_onnx, write_portable_onnx

        if request.precision == "int8":  # Q/DQ ONNX (explicit quantization), profile "onnxruntime"
            import onnx

            from volo_deploy.quant.export import quantize_for_export

            fp32, details = portable_onnx(model, request)
            qproto, qdetails = quantize_for_export(model, request, "onnxruntime", fp32_proto=fp32)
            onnx.save_model(qproto, str(staged / model_file))
            details.update(qdetails)
        else:
            _, details = write_portable_onnx(model, request, staged / model_file)
        so = session_options(request.precision)
        details["session_config"] = {k: so.get_session_config_entry(k) for k in EXACT_MATH_ENTRIES}
        return ExportArtifacts(details=details)  # file hashes: the manifest's "files" list

    def load(self, artifact: Path, options: Any = None) -> Runner:
        self.require()
        return OrtRunner(Path(artifact), options or OrtOptions())
