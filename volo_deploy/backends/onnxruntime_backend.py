"""Portable ONNX, run by ONNX Runtime."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportRequest, Runner, register_backend
from volo_deploy.errors import BadInputError, ExportError


@dataclass(frozen=True)
class OrtOptions:
    """Runtime settings of an ONNX Runtime session."""

    threads: int | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


def onnx_metadata(model, request: ExportRequest) -> dict[str, str]:
    from volo_deploy import __version__

    cfg = model.cfg
    return {
        "volo.variant": cfg.name,
        "volo.input_size": f"3x{cfg.img_size}x{cfg.img_size}",
        "volo.mean": ",".join(f"{m:g}" for m in cfg.mean),
        "volo.std": ",".join(f"{s:g}" for s in cfg.std),
        "volo.crop_pct": f"{cfg.crop_pct:g}",
        "volo.interpolation": "bicubic",
        "volo.num_classes": str(cfg.num_classes),
        "volo.checkpoint_sha256": request.checkpoint_sha256,
        "volo.precision": request.precision,
        "volo_deploy.version": __version__,
    }


def write_portable_onnx(model, request: ExportRequest, path: Path) -> dict[str, Any]:
    """Export, check and save the portable ONNX; returns manifest details."""
    import onnx

    from volo_deploy.export.onnx_graph import op_histogram, to_onnx_proto

    proto = to_onnx_proto(model, request.batch, request.dynamic_batch, request.opset)
    hist = op_histogram(proto)
    if any(k.endswith("Col2Im") for k in hist):
        raise ExportError("internal: Col2Im found in the exported graph")
    for k, v in onnx_metadata(model, request).items():
        proto.metadata_props.add(key=k, value=v)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {exc}") from None
    onnx.save_model(proto, str(path))
    return {"op_histogram": hist, "outlook_form": "slice", "outlook_nodes": hist.get("volo.OutlookAttention", 0)}


class OrtRunner(Runner):
    def __init__(self, path: Path, options: OrtOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = options.threads
        try:
            self.session = ort.InferenceSession(str(path), so, providers=list(options.providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BadInputError(f"model {path}: onnxruntime cannot load it ({exc})") from None
        inp = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        super().__init__(shape)
        self.input_name = inp.name

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


@register_backend("onnxruntime", "onnx", "ort")
class OnnxRuntimeBackend(Backend):
    """Portable ONNX (opset >= 17, no Col2Im, ``volo.OutlookAttention`` local functions)."""

    precisions = ("fp32", "int8")
    model_suffix = ".onnx"
    Options = OrtOptions

    requires = ("onnx", "onnxscript", "onnxruntime")
    extra = "onnx"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads for validation")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> OrtOptions:
        return OrtOptions(threads=getattr(args, "threads", None))

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> dict[str, Any]:
        details = write_portable_onnx(model, request, staged / model_file)
        if request.precision == "int8":  # Q/DQ ONNX (explicit quantization), profile "onnxruntime"
            import onnx

            from volo_deploy.quant.export import quantize_for_export

            fp32 = onnx.load(str(staged / model_file))
            qproto, qdetails = quantize_for_export(model, request, "onnxruntime", fp32_proto=fp32)
            onnx.save_model(qproto, str(staged / model_file))
            details.update(qdetails)
        return details  # file hashes: the manifest's "files" list

    def load(self, artifact: Path, options: Any = None) -> Runner:
        self.require()
        return OrtRunner(Path(artifact), options or OrtOptions())
