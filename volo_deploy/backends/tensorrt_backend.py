"""TensorRT engines with our outlook-attention plugin (``plugins/outlook_attention``).

Export: portable ONNX -> (INT8: Q/DQ ONNX from ``volo_deploy.quant.quantize_onnx``) -> precision
graph, measured on onnxruntime, then plugin form (:mod:`volo_deploy.export.trt_prepare`) ->
strongly typed TensorRT engine (:mod:`volo_deploy.export.trt_engine`). ``--emit-only`` stops
before TensorRT and writes what a target machine needs instead (:mod:`volo_deploy.export.jetson_bundle`):
the plugin-form ONNX, the plugin sources, ``build_engine.sh`` (CMake plugin build + the exact ``trtexec``
line), ``infer.py``, ``bench_engine.sh``, DeepStream and Triton configs; it needs neither TensorRT nor a GPU.

INT8 hook (:func:`quantize_for_tensorrt`): ``volo_deploy.quant.quantize_for_export(model, request,
"tensorrt", fp32_proto)`` turns the portable ONNX into a Q/DQ ONNX (profile ``tensorrt``:
symmetric INT8, zero points 0, QuantizeLinear/DequantizeLinear on the inputs of
Conv/MatMul/Gemm, float bias; ``volo.OutlookAttention`` nodes left as they are, in float between
DQ and Q; :mod:`volo_deploy.export.trt_prepare` then casts each to FP16), calibrated on
``--calib-data``, and returns ``(proto, manifest details)``.

``tensorrt`` and ``torch.cuda`` are used inside functions only: this module imports anywhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportArtifacts, ExportRequest, Runner, Skip, register_backend
from volo_deploy.errors import BackendUnavailable, BadInputError
from volo_deploy.options import flag, positive_int

NOT_INSTALLED = "TensorRT is not installed (pip install tensorrt / JetPack)"
DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH = 1, 8, 32


@dataclass(frozen=True)
class TrtOptions:
    """Engine build settings (``volo-export --backend trt``) and the runner's plugin library."""

    # None: build it / the one next to the engine
    plugin: Path | None = flag("--plugin", "prebuilt libvolo_outlook_plugin.so (default: build "
                               "plugins/outlook_attention with CMake into a cache folder; needs TensorRT headers)",
                               parse=Path)
    min_batch: int | None = flag("--min-batch", "profile min batch (--dynamic-batch)", parse=positive_int)
    opt_batch: int | None = flag("--opt-batch", "profile opt batch (--dynamic-batch)", parse=positive_int)
    max_batch: int | None = flag("--max-batch", "profile max batch (--dynamic-batch)", parse=positive_int)
    # None: TensorRT's default (the device memory)
    workspace_mib: int | None = flag("--workspace", "builder workspace limit in MiB (default: TensorRT's)",
                                     parse=positive_int, metavar="MIB")
    timing_cache: Path | None = flag("--timing-cache", "timing cache file (read and updated)", parse=Path)
    emit_only: bool = flag("--emit-only", "no engine: write a deployment bundle for the target (plugin-form ONNX, "
                           "plugin sources, build_engine.sh, infer.py, DeepStream/Triton configs; no TensorRT or GPU)",
                           False)
    # checked: >= 10.0
    target_trt: str | None = flag("--target-trt", "--emit-only: TensorRT version of the target (e.g. 10.3 for "
                                  "JetPack 6); refused below 10.0 (JetPack 5)", metavar="VERSION")


def _tensorrt_missing() -> bool:
    return importlib.util.find_spec("tensorrt") is None


def installed_trt_version() -> str:
    """Version of the installed ``tensorrt`` (distribution metadata, else the module's ``__version__``)."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_cu12", "tensorrt_cu13"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import tensorrt

    return str(tensorrt.__version__)


def quantize_for_tensorrt(model, request: ExportRequest, fp32_proto) -> tuple[Any, dict[str, Any]]:
    """Q/DQ ONNX for TensorRT from the portable FP32 ONNX ``fp32_proto`` (the INT8 hook)."""
    from volo_deploy.quant.export import quantize_for_export

    return quantize_for_export(model, request, "tensorrt", fp32_proto=fp32_proto)


def _check_target_trt(version: str) -> None:
    from volo_deploy.export.trt_engine import check_supported

    try:
        check_supported(version)
    except ValueError:
        raise BadInputError(f"--target-trt {version!r}: expected a version such as 10.3") from None


def _engine_name(model_name: str, precision: str) -> str:
    return f"{model_name}_{precision}{TensorRtBackend.model_suffix}"


def _trt_onnx_name(model_name: str, precision: str) -> str:
    return f"{model_name}_{precision}_trt.onnx"


def batch_profile(request: ExportRequest, options: TrtOptions):
    """min/opt/max batch of the optimization profile; a fixed-batch export allows only its batch."""
    from volo_deploy.export.trt_engine import BatchProfile

    given = {"--min-batch": options.min_batch, "--opt-batch": options.opt_batch, "--max-batch": options.max_batch}
    if not request.dynamic_batch:
        wrong = [k for k, v in given.items() if v is not None and v != request.batch]
        if wrong:
            raise BadInputError(
                f"{', '.join(wrong)} need --dynamic-batch (this export has a fixed batch of {request.batch})"
            )
        b = request.batch
        return BatchProfile(b, b, b, dynamic=False)
    lo = options.min_batch or DEFAULT_MIN_BATCH
    hi = options.max_batch or max(lo, DEFAULT_MAX_BATCH)
    opt = options.opt_batch or min(max(lo, DEFAULT_OPT_BATCH), hi)
    if not lo <= opt <= hi:
        raise BadInputError(f"batch profile needs --min-batch <= --opt-batch <= --max-batch, got {lo}, {opt}, {hi}")
    return BatchProfile(lo, opt, hi, dynamic=True)


def pad_to_min(batch: np.ndarray, min_batch: int) -> tuple[np.ndarray, int]:
    """``batch`` padded up to ``min_batch`` rows (repeating its last image), and its own row count."""
    n = len(batch)
    if n >= min_batch:
        return batch, n
    return np.concatenate([batch, np.repeat(batch[-1:], min_batch - n, axis=0)]), n


def set_input_shape(context, name: str, shape: tuple[int, ...], engine: Path, batches: tuple[int, int]) -> None:
    """``context.set_input_shape``, whose ``False`` (shape outside the profile) becomes a one-line error."""
    if not context.set_input_shape(name, shape):
        raise BadInputError(f"engine {engine}: TensorRT refused input shape {shape} (engine batch "
                            f"{batches[0]}..{batches[1]}, image {shape[1:]}); see the TensorRT log")


def check_reference(model, request: ExportRequest, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The export's first ``n`` validation images (preprocessed) and their FP32 PyTorch logits."""
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.export.validate import torch_logits

    x = validation_batch(model.cfg, request.val_data, n=min(n, request.n_validate))
    return x, torch_logits(model, x)


def export_tolerance(request: ExportRequest) -> dict[str, float]:
    """The limits the export validates with (the request's, else the precision's default), as a dict."""
    from volo_deploy.export.validate import DEFAULT_TOLERANCES

    tol = request.tolerance or DEFAULT_TOLERANCES[request.precision]
    return {k: v for k, v in asdict(tol).items() if v is not None}


class TensorRtRunner(Runner):
    """Runs a serialized engine on torch CUDA tensors (``execute_async_v3``); float32 logits out."""

    def __init__(self, engine_path: Path, plugin: Path) -> None:
        import tensorrt as trt
        import torch

        from volo_deploy.export.trt_engine import load_plugin

        load_plugin(plugin)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BadInputError(f"engine {engine_path}: TensorRT cannot deserialize it (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadInputError(f"engine {engine_path}: expected 1 input and 1 output, found {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.min_batch = self.max_batch = shape[0]
        if shape[0] < 0:  # the profile's (min, opt, max) shapes
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.engine_path = Path(engine_path)
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device)
        self._dtypes = {n: self._torch_dtype(self.engine.get_tensor_dtype(n)) for n in (self.input_name,
                                                                                        self.output_name)}
        super().__init__(tuple(None if d < 0 else int(d) for d in shape))

    @staticmethod
    def _torch_dtype(dt):
        import tensorrt as trt
        import torch

        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if dt not in table:
            raise BadInputError(f"engine I/O type {dt} is not supported by the runner (float32/float16 only)")
        return table[dt]

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        outs = []
        step = self.max_batch if self.input_shape[0] is None else len(batch)
        with torch.cuda.stream(self.stream):
            for i in range(0, len(batch), step):
                chunk, n = pad_to_min(batch[i : i + step], self.min_batch)
                x = torch.from_numpy(chunk).to(self.device, self._dtypes[self.input_name])
                set_input_shape(self.context, self.input_name, tuple(x.shape), self.engine_path,
                                (self.min_batch, self.max_batch))
                y = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)),
                                dtype=self._dtypes[self.output_name], device=self.device)
                self.context.set_tensor_address(self.input_name, x.data_ptr())
                self.context.set_tensor_address(self.output_name, y.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise BadInputError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                outs.append(y[:n].float().cpu())  # synchronizes the stream
        return torch.cat(outs).numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None


@register_backend("tensorrt", "trt")
class TensorRtBackend(Backend):
    """Strongly typed TensorRT engine with the ``volo::OutlookAttention`` plugin (FP32/FP16/INT8 Q/DQ)."""

    precisions = ("fp32", "fp16", "int8")
    model_suffix = ".engine"
    Options = TrtOptions
    distributions = ("tensorrt",)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _tensorrt_missing():
            return NOT_INSTALLED
        from volo_deploy.export.trt_engine import check_supported

        try:
            check_supported(installed_trt_version())
        except BackendUnavailable as exc:
            return str(exc)
        except ValueError:
            pass  # unreadable version string: let TensorRT itself decide
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible (torch.cuda.is_available() is False)"
        return None

    def check_request(self, request: ExportRequest) -> None:
        """Emit-only needs nothing here; a build needs TensorRT and a GPU."""
        options = request.options or TrtOptions()
        batch_profile(request, options)
        if options.target_trt is not None and not options.emit_only:
            raise BadInputError("--target-trt applies to --emit-only (an engine build uses the installed TensorRT)")
        if options.emit_only:
            if options.plugin is not None or options.timing_cache is not None:
                raise BadInputError("--plugin and --timing-cache apply to an engine build, not to --emit-only")
            if options.target_trt is not None:
                _check_target_trt(options.target_trt)
            return
        if _tensorrt_missing():
            raise BackendUnavailable(f"{NOT_INSTALLED}; use --emit-only to prepare a build for the target")
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend {self.name}: unavailable: {reason}; use --emit-only to prepare a build")

    def model_filename(self, model_name: str, request: ExportRequest) -> str:
        """The engine, or with ``--emit-only`` the plugin-form ONNX (nothing else is built here)."""
        if (request.options or TrtOptions()).emit_only:
            return _trt_onnx_name(model_name, request.precision)
        return _engine_name(model_name, request.precision)

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        """The plugin-form ONNX, then either the engine (a build) or the deployment bundle (emit-only)."""
        options = request.options or TrtOptions()
        profile = batch_profile(request, options)
        onnx_name, details = self.write_trt_onnx(model, request, staged)
        details["batch_profile"] = asdict(profile)
        step = self.emit_bundle if options.emit_only else self.build
        out = step(model, request, options, profile, staged, onnx_name, model_file)
        out.details = {**details, **out.details}
        return out

    def write_trt_onnx(self, model, request: ExportRequest, staged: Path) -> tuple[str, dict[str, Any]]:
        """Portable ONNX (INT8: its Q/DQ form) -> measured precision graph -> plugin form, saved once."""
        import onnx

        from volo_deploy.export import trt_prepare, trt_surgery
        from volo_deploy.export.onnx_graph import portable_onnx

        proto, details = portable_onnx(model, request)
        if request.precision == "int8":
            proto, qdetails = quantize_for_tensorrt(model, request, proto)
            details.update(qdetails)
        proto, prepared = trt_prepare.prepare_trt_onnx(model, request, proto)
        details.update(prepared)
        onnx_name = _trt_onnx_name(model.cfg.name, request.precision)
        onnx.save_model(proto, str(staged / onnx_name))
        details.update({
            "plugin": {"name": trt_surgery.PLUGIN_NAME, "version": trt_surgery.PLUGIN_VERSION,
                       "namespace": trt_surgery.PLUGIN_NAMESPACE},
            "plugin_nodes": len(trt_surgery.outlook_nodes(proto)),
            "trt_onnx": onnx_name,
            "onnx_dtype": "float16" if request.precision == "fp16" else "float32",
            "strongly_typed": True,
        })
        return onnx_name, details

    def emit_bundle(self, model, request: ExportRequest, options: TrtOptions, profile, staged: Path,
                    onnx_name: str, model_file: str) -> ExportArtifacts:
        """``--emit-only``: the deployment bundle instead of an engine; nothing to validate here."""
        from volo_deploy.export.jetson_bundle import CHECK_IMAGES, NOT_VALIDATED, write_bundle

        files, details = write_bundle(staged, model.cfg, onnx_name=onnx_name, precision=request.precision,
                                      profile=profile, reference=check_reference(model, request, CHECK_IMAGES),
                                      tolerance=export_tolerance(request), workspace_mib=options.workspace_mib,
                                      target_trt=options.target_trt, labels=request.labels)
        return ExportArtifacts(files, details, Skip(NOT_VALIDATED))

    def build(self, model, request: ExportRequest, options: TrtOptions, profile, staged: Path,
              onnx_name: str, model_file: str) -> ExportArtifacts:
        """Build the engine with the plugin library next to it."""
        from volo_deploy.artifacts import sha256_file
        from volo_deploy.export import trt_engine
        from volo_deploy.plugins_native import PLUGIN_LIB

        img = model.cfg.img_size
        gpu = trt_engine.gpu_info()
        plugin = trt_engine.plugin_library(options.plugin, gpu["sm"], trt_engine.trt_version())
        (staged / PLUGIN_LIB).write_bytes(plugin.read_bytes())
        built = trt_engine.build_engine(staged / onnx_name, staged / PLUGIN_LIB, staged / model_file, profile, img,
                                        request.precision, options.workspace_mib, options.timing_cache)
        cmd = trt_engine.trtexec_command(onnx_name, PLUGIN_LIB, model_file, profile, img, request.precision,
                                         options.workspace_mib,
                                         str(options.timing_cache) if options.timing_cache else None)
        return ExportArtifacts([onnx_name, PLUGIN_LIB], {
            **built,
            **gpu,
            "tensorrt": trt_engine.trt_version(),
            "plugin_source": str(plugin),
            "plugin_sha256": sha256_file(staged / PLUGIN_LIB),
            "trtexec": " ".join(cmd),
        })

    def load(self, artifact: Path, options: Any = None) -> Runner:
        """A runner for an engine; the plugin is ``options.plugin`` or the library next to the engine."""
        from volo_deploy.plugins_native import PLUGIN_LIB

        self.require()
        artifact = Path(artifact)
        if artifact.suffix == ".onnx":
            raise BadInputError(f"{artifact} is the plugin-form ONNX of an --emit-only export: build the engine "
                                "with build_engine.sh on the target first")
        plugin = (options.plugin if isinstance(options, TrtOptions) and options.plugin else None) or (
            artifact.parent / PLUGIN_LIB)
        # Absolute: "x.engine" in the current folder would otherwise give a bare name, which dlopen
        # looks up in the library path only.
        plugin = Path(plugin).resolve()
        if not plugin.is_file():
            raise BadInputError(f"plugin library {plugin} not found (pass the libvolo_outlook_plugin.so of the build)")
        return TensorRtRunner(artifact, plugin)
