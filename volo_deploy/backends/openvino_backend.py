"""OpenVINO IR (``.xml`` + ``.bin``), run by the OpenVINO runtime.

Export path: our portable ONNX (``volo.OutlookAttention`` local functions) is inlined
with ``onnx.inliner`` and read by ``ov.convert_model``; ``ov.save_model`` writes the IR,
``compress_to_fp16=True`` for ``fp16`` (weights stored as FP16).

Precision = what is computed, pinned for every compile (:data:`INFERENCE_PRECISION`): the CPU
plugin's default ``INFERENCE_PRECISION_HINT`` is bf16 on CPUs with avx512_bf16 or AMX (OpenVINO
docs, "CPU device: inference precision"), so an unpinned "fp32" IR runs bf16 on Sapphire Rapids
and Zen 4 (demo max abs error 0.015 instead of 1e-6), and an ``f16`` hint on a CPU without FP16
math silently became bf16 (OpenVINO 2026.4, Zen 4). So ``fp32`` and ``int8`` (its float parts)
compile with ``f32``; ``fp16`` means FP16-*stored* weights computed in FP32 (``f32``), the same
numbers on every CPU; ``bf16`` compiles with ``bf16`` and only where the CPU has it
(:func:`volo_deploy.machine.has_bf16`). The runner reads the hint back from the compiled model
(:attr:`OvRunner.executed_precision`) and refuses a model that computes otherwise.

The graph is the inlined portable ONNX with the ``slice`` outlook form by default: it is the same
graph (and metadata) as the onnxruntime artifact, exact, and was the fastest exact form measured
(VOLO-D1 224, batch 1, FP32, OpenVINO 2026.4 CPU: slice 0.95x, conv 1.06x the naive timm graph's
latency; ``benchmarks/openvino_vs_naive.py`` measures slice against naive). The
outlook form is an export option (``--outlook-form``); INT8 is built from the FP32 graph of that
form (:mod:`volo_deploy.backends.openvino_int8`).
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from volo_deploy.backends.base import Backend, ExportArtifacts, ExportRequest, Runner, register_backend
from volo_deploy.backends.precision import bf16_unavailable_reason, executed_name, int8_weights_warning
from volo_deploy.errors import BackendUnavailable, BadInputError, ExportError
from volo_deploy.options import flag
from volo_deploy.runtime import INFERENCE_PRECISION, inference_config

log = logging.getLogger(__name__)
HINTS = ("latency", "throughput")
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
OUTLOOK_FORMS = ("slice", "conv", "reference")
_OV_TYPE_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def rt_info(ov_model: Any, name: str) -> str | None:
    """Our ``volo_deploy`` rt_info entry ``name`` of an IR, ``None`` if absent."""
    key = ["volo_deploy", name]
    return ov_model.get_rt_info(key).astype(str) if ov_model.has_rt_info(key) else None


def ir_precision(ov_model: Any) -> str:
    """The precision an IR was exported as (its ``volo_deploy`` rt_info), ``fp32`` if not ours."""
    value = rt_info(ov_model, "volo_precision")
    return value if value in INFERENCE_PRECISION else "fp32"


def executed_precision(compiled: Any, precision: str, what: str) -> str | None:
    """What ``compiled`` computes in, read back from it (``None`` if the device does not say);
    raises :class:`BackendUnavailable` when that is not what ``precision`` needs."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:  # e.g. some virtual devices do not report it
        return None
    hint = value.to_string() if hasattr(value, "to_string") else str(value)
    want = INFERENCE_PRECISION[precision]
    if hint != want:
        raise BackendUnavailable(
            f"{what}: {precision} needs INFERENCE_PRECISION_HINT {want}, the compiled model runs {hint}"
        )
    return executed_name(_OV_TYPE_NAMES.get(hint, hint), precision)


@dataclass(frozen=True)
class OvOptions:
    """OpenVINO export and runtime settings.

    ``device``: ``CPU`` | ``GPU`` | ``AUTO`` (or any ``ov.Core().available_devices`` name);
    ``hint``: performance hint; ``streams`` / ``threads``: ``None`` = the hint's choice;
    ``requests``: async queue size (``None`` = the compiled model's optimal number);
    ``outlook_form``: the outlook-attention decomposition in the exported graph;
    ``precision``: what a loaded IR is compiled for (``None``: what it was exported as).
    """

    device: str = flag("--device", "OpenVINO device for validation: CPU (default), GPU, AUTO", "CPU")
    hint: str = flag("--hint", "performance hint (default latency)", "latency", choices=HINTS)
    streams: int | None = flag("--streams", "number of streams (default: the hint's)", parse=int)
    threads: int | None = flag("--threads", "inference threads (default: all cores)", parse=int)
    requests: int | None = None
    outlook_form: str = flag("--outlook-form", "outlook-attention graph form (default slice)", "slice",
                             choices=OUTLOOK_FORMS)
    precision: str | None = None

    def compile_config(self, precision: str = "fp32") -> dict[str, str]:
        cfg = {"PERFORMANCE_HINT": self.hint.upper(), **inference_config(precision)}
        if self.streams is not None:
            cfg["NUM_STREAMS"] = str(self.streams)
        if self.threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = str(self.threads)
        return cfg


def check_device(core: Any, device: str) -> None:
    """Raise :class:`BadInputError` unless ``device`` can be compiled for on this machine."""
    available = list(core.available_devices)
    base = device.split(":", 1)[0].upper()
    if base in VIRTUAL_DEVICES:
        return
    if device.upper() in (d.upper() for d in available) or base in (d.split(".")[0].upper() for d in available):
        return
    raise BadInputError(
        f"OpenVINO device {device!r} is not available here; available: {', '.join(available) or 'none'} "
        f"(or {', '.join(VIRTUAL_DEVICES)})"
    )


def required_bin_bytes(xml: Path) -> int:
    """Bytes the IR's ``Const`` layers read from its ``.bin`` (max offset + size)."""
    need = 0
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise BadInputError(f"OpenVINO IR {xml}: not a valid IR .xml ({exc})") from None
    for layer in root.iter("layer"):
        if layer.get("type") == "Const":
            data = layer.find("data")
            if data is not None and data.get("offset") is not None:
                need = max(need, int(data.get("offset")) + int(data.get("size", 0)))
    return need


def check_ir_files(xml: Path) -> Path:
    """Check the ``.xml`` and its ``.bin`` exist and the ``.bin`` is complete; returns the .bin."""
    if not xml.is_file():
        raise BadInputError(f"OpenVINO IR {xml}: not found")
    if xml.suffix != ".xml":
        raise BadInputError(f"OpenVINO IR {xml}: expected an .xml file")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise BadInputError(f"OpenVINO IR {xml}: weights file {weights} is missing")
    need, found = required_bin_bytes(xml), weights.stat().st_size
    if found < need:
        raise BadInputError(f"OpenVINO IR weights {weights}: truncated, the IR needs {need} bytes, found {found}")
    return weights


class OvRunner(Runner):
    """A compiled OpenVINO IR. ``run`` = one sync inference; ``run_async`` = a request queue."""

    def __init__(self, xml: Path, options: OvOptions) -> None:
        import openvino as ov

        check_ir_files(xml)
        if options.hint not in HINTS:
            raise BadInputError(f"OpenVINO hint {options.hint!r}: expected one of {', '.join(HINTS)}")
        self.core = ov.Core()
        check_device(self.core, options.device)
        try:
            model = self.core.read_model(str(xml))
        except RuntimeError as exc:
            raise BadInputError(f"OpenVINO IR {xml}: cannot be read ({str(exc).splitlines()[0]})") from None
        self.precision = options.precision or ir_precision(model)
        if self.precision not in INFERENCE_PRECISION:
            known = ", ".join(INFERENCE_PRECISION)
            raise BadInputError(f"OpenVINO precision {self.precision!r}: expected one of {known}")
        try:
            self.compiled = self.core.compile_model(model, options.device, options.compile_config(self.precision))
        except RuntimeError as exc:
            raise BadInputError(
                f"OpenVINO IR {xml}: cannot be compiled for {options.device} ({str(exc).splitlines()[0]})"
            ) from None
        what = f"OpenVINO IR {xml.name} on {options.device}"
        self.executed_precision = executed_precision(self.compiled, self.precision, what)
        if self.executed_precision is None:
            log.warning("%s: the device does not report its inference precision; %s not verified", what, self.precision)
        self.warning = int8_weights_warning(rt_info(model, "volo_quant_weight_bits"))
        if self.warning:
            log.warning("OpenVINO IR %s: %s", xml.name, self.warning)
        pshape = self.compiled.input(0).get_partial_shape()
        super().__init__(tuple(d.get_length() if d.is_static else None for d in pshape))
        self.path, self.options = xml, options
        self.request = self.compiled.create_infer_request()

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: batch}, share_inputs=True)[0], copy=True)

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = self.input_shape
        if batch.ndim != 4 or any(w is not None and w != g for w, g in zip(want, batch.shape)):
            raise BadInputError(
                f"OpenVINO IR {self.path.name}: input of shape {tuple(batch.shape)} does not fit the model input {want}"
            )
        return batch

    def throughput_mode(self) -> str:
        """How this runner runs concurrent requests, for the report's label."""
        streams = self.compiled.get_property("NUM_STREAMS")
        return (f"openvino PERFORMANCE_HINT {self.options.hint.upper()}, {streams} streams, "
                f"{self.options.requests or self.optimal_requests()} async infer requests")

    def optimal_requests(self) -> int:
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def run_async(self, batches: Sequence[np.ndarray], requests: int | None = None) -> tuple[list[np.ndarray], float]:
        """Run every batch through infer requests kept in flight; returns (outputs in order, wall seconds).

        ``requests`` (default: options.requests, else the compiled model's optimal number)
        requests are kept in flight; for throughput use the ``throughput`` hint. The harness
        owns warm-up and statistics: this call only times the whole set.
        """
        batches = [self._check(b) for b in batches]
        jobs = requests or self.options.requests or self.optimal_requests()
        # Plain infer requests, batch i on request i % jobs, no Python callback: an AsyncInferQueue with a
        # Python callback can deadlock at teardown (the compiled model's stream threads joined while this
        # thread holds the GIL; openvinotoolkit/openvino PR 37073 fixed one such case in the queue's destructor).
        pool = [self.compiled.create_infer_request() for _ in range(min(jobs, len(batches)))]
        outputs: list[np.ndarray | None] = [None] * len(batches)

        def collect(i: int) -> None:
            req = pool[i % len(pool)]
            req.wait()
            outputs[i] = np.array(req.get_output_tensor(0).data, copy=True)

        start = time.perf_counter()
        for i, b in enumerate(batches):
            if i >= len(pool):
                collect(i - len(pool))  # its request is free again
            pool[i % len(pool)].start_async({0: b}, share_inputs=True)
        for i in range(max(0, len(batches) - len(pool)), len(batches)):
            collect(i)
        seconds = time.perf_counter() - start
        del pool
        return outputs, seconds  # type: ignore[return-value]

    def close(self) -> None:
        self.request = None
        self.compiled = None


def convert_portable_onnx(model, request: ExportRequest, form: str, work: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Our portable ONNX (outlook ``form``, with its metadata) and its inlined conversion to an
    ``ov.Model``; plus manifest details."""
    import onnx
    import openvino as ov

    from volo_deploy.backends.openvino_int8 import set_volo_rt_info
    from volo_deploy.export.onnx_graph import inline_functions, onnx_metadata, op_histogram, to_onnx_proto

    proto = to_onnx_proto(model, request.batch, request.dynamic_batch, request.opset, form=form)
    meta = onnx_metadata(model, request)
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    inlined = inline_functions(proto)
    hist = op_histogram(inlined)
    leftover = sorted(k for k in hist if "." in k)
    if leftover:
        raise ExportError(f"internal: custom-domain ops left after inlining: {leftover}")
    tmp = work / ".portable_inlined.onnx"
    onnx.save_model(inlined, str(tmp))
    try:
        ov_model = ov.convert_model(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    set_volo_rt_info(ov_model, meta)
    return proto, ov_model, {"onnx_op_histogram": hist}


@register_backend("openvino", "ov")
class OpenVinoBackend(Backend):
    """OpenVINO IR from the inlined portable ONNX: FP32, FP16-compressed weights, bf16 math, INT8."""

    precisions = ("fp32", "fp16", "bf16", "int8")
    model_suffix = ".xml"
    Options = OvOptions

    requires = ("onnx", "onnxscript", "openvino")
    extra = "openvino"
    distributions = ("openvino", "nncf")

    @classmethod
    def precision_unavailable_reason(cls, precision: str) -> str | None:
        return bf16_unavailable_reason() if precision == "bf16" else None

    def check_request(self, request: ExportRequest) -> None:
        self.require()
        opts = request.options or OvOptions()
        if opts.outlook_form not in OUTLOOK_FORMS:
            raise BadInputError(f"outlook form {opts.outlook_form!r}: expected one of {', '.join(OUTLOOK_FORMS)}")
        if opts.hint not in HINTS:
            raise BadInputError(f"OpenVINO hint {opts.hint!r}: expected one of {', '.join(HINTS)}")
        import openvino as ov

        check_device(ov.Core(), opts.device)  # fail before the (slow) export, not after it

    def prepare_ir(self, ov_model: Any, model, request: ExportRequest,
                   fp32_proto: Any) -> tuple[Any, bool, dict[str, Any]]:
        """Precision step: returns (model to save, compress weights to FP16?, details).

        INT8 is made from the FP32 graph just exported (``fp32_proto``, converted as ``ov_model``).
        """
        hint = {"inference_precision_hint": INFERENCE_PRECISION.get(request.precision)}
        if request.precision in ("fp32", "bf16"):  # bf16: FP32 weights, converted by the plugin at compile time
            return ov_model, False, {"weights": "fp32", **hint}
        if request.precision == "fp16":
            return ov_model, True, {"weights": "fp16 (compress_to_fp16), computed in fp32", **hint}
        if request.precision == "int8":  # volo_deploy.quant: Q/DQ ONNX (profile "openvino") or NNCF
            from volo_deploy.backends.openvino_int8 import openvino_int8_model

            q_model, qdetails = openvino_int8_model(model, request, fp32_proto, ov_model)
            return q_model, False, {"weights": "int8 (Q/DQ -> FakeQuantize)", **hint, **qdetails}
        raise BadInputError(f"backend openvino supports {', '.join(self.precisions)}, not {request.precision}")

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        import openvino as ov

        opts = request.options or OvOptions()
        proto, ov_model, details = convert_portable_onnx(model, request, opts.outlook_form, staged)
        ov_model, compress, prec = self.prepare_ir(ov_model, model, request, proto)
        xml = staged / model_file
        ov.save_model(ov_model, str(xml), compress_to_fp16=compress)
        ops: dict[str, int] = {}
        for op in ov_model.get_ordered_ops():
            ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
        return ExportArtifacts([xml.with_suffix(".bin").name], {
            **details,
            **prec,
            "conversion": "portable ONNX, local functions inlined -> ov.convert_model",
            "outlook_form": opts.outlook_form,
            "ov_op_histogram": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "openvino_version": ov.get_version(),
        })

    def load(self, artifact: Path, options: Any = None) -> OvRunner:
        self.require()
        return OvRunner(Path(artifact), options or OvOptions())

    def validation_options(self, request: ExportRequest) -> OvOptions:
        """The export's own options (device, hint...), else defaults, at the requested precision."""
        return replace(request.options or OvOptions(), precision=request.precision)

    def throughput_options(self, options: Any) -> OvOptions:
        """The ``THROUGHPUT`` hint (the plugin picks the streams unless ``--streams``), run through an
        pool of async infer requests of the compiled model's optimal size: batch evaluation, not latency."""
        return replace(options or OvOptions(), hint="throughput")
