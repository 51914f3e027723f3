"""FP32 portable ONNX -> Q/DQ ONNX with onnxruntime's static quantizer, VOLO-aware.

Calibration and Q/DQ insertion are onnxruntime's (``quantize_static``, ``QuantFormat.QDQ``);
this module adds the VOLO placement, the profiles, and the keyed calibration cache.
"""

from __future__ import annotations

import enum
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import QuantizationError
from volo_deploy.quant.cache import CacheKey, CacheStatus, array_sha256, model_sha256, read_cache, write_cache
from volo_deploy.quant.placement import Layer, Placement, quantizable_layers, select_layers
from volo_deploy.quant.profiles import QuantProfile, choose_weight_bits, get_profile

log = logging.getLogger(__name__)


class CalibMethod(str, enum.Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"

    @classmethod
    def parse(cls, value: "str | CalibMethod") -> "CalibMethod":
        try:
            return cls(value.lower() if isinstance(value, str) else value)
        except ValueError:
            raise QuantizationError(
                f"unknown calibration method {value!r}; known: {', '.join(m.value for m in cls)}"
            ) from None


@dataclass(frozen=True)
class QuantConfig:
    """Everything that decides the quantized graph (besides the model and the data)."""

    method: CalibMethod = CalibMethod.MINMAX
    percentile: float = 99.999  # percentile method only
    num_bins: int = 2048  # percentile histogram bins
    entropy_bins: int = 512  # entropy histogram bins (KL search over 128 quantized bins)
    placement: Placement = Placement()
    keep_float: tuple[str, ...] = ()  # layer names returned to float (accuracy budget)
    weight_bits: str = "auto"  # "auto" (by the profile and this CPU: profiles.choose_weight_bits), "7" or "8"

    def method_params(self) -> str:
        if self.method is CalibMethod.PERCENTILE:
            return f"percentile={self.percentile:g},bins={self.num_bins}"
        if self.method is CalibMethod.ENTROPY:
            return f"bins={self.entropy_bins},quantized_bins=128"
        return ""


@dataclass
class QuantResult:
    """A quantized model (in memory) and how it was made."""

    proto: object  # onnx.ModelProto
    profile: QuantProfile
    config: QuantConfig
    quantized: list[Layer]
    kept_float: list[Layer]
    cache: CacheStatus
    calibration_seconds: float  # 0.0 on a cache hit
    calibration_images: int
    qdq_counts: dict[str, int] = field(default_factory=dict)
    weight_bits: int = 8
    weight_bits_reason: str = ""

    def details(self) -> dict:
        """What the export manifest records."""
        return {
            "profile": self.profile.name,
            "method": self.config.method.value,
            "method_params": self.config.method_params(),
            "calibration_images": self.calibration_images,
            "calibration_seconds": round(self.calibration_seconds, 3),
            "cache": self.cache.as_dict(),
            "quantized_layers": len(self.quantized),
            "float_layers": [lay.name for lay in self.kept_float],
            "returned_to_float": list(self.config.keep_float),
            "weight_bits": self.weight_bits,
            "weight_bits_reason": self.weight_bits_reason,
            "qdq_nodes": self.qdq_counts,
        }


class ArrayReader:
    """onnxruntime ``CalibrationDataReader`` over preprocessed images, with a progress bar.

    Feeds batches of the model's fixed batch size (a last partial batch is dropped; a
    dynamic batch takes ``batch`` images at a time).
    """

    def __init__(self, x: np.ndarray, input_name: str, batch: int, desc: str = "calibration") -> None:
        from tqdm.auto import tqdm

        self.x, self.input_name, self.batch = x, input_name, batch
        self.n_batches = len(x) // batch
        if self.n_batches == 0:
            raise QuantizationError(f"calibration needs at least {batch} images, got {len(x)}")
        self._i = 0
        self._bar = tqdm(total=self.n_batches * batch, desc=desc, unit="img", leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= self.n_batches:
            self._bar.close()
            return None
        lo = self._i * self.batch
        self._i += 1
        self._bar.update(self.batch)
        return {self.input_name: self.x[lo : lo + self.batch]}

    def __len__(self) -> int:
        return self.n_batches

    def rewind(self) -> None:
        self._i = 0


def _input_batch(proto) -> tuple[str, int | None]:
    inp = proto.graph.input[0]
    d0 = inp.type.tensor_type.shape.dim[0]
    return inp.name, (d0.dim_value if d0.HasField("dim_value") else None)


def _ort_args(profile: QuantProfile, config: QuantConfig):
    from onnxruntime.quantization import CalibrationMethod, QuantType

    method = {
        CalibMethod.MINMAX: CalibrationMethod.MinMax,
        CalibMethod.PERCENTILE: CalibrationMethod.Percentile,
        CalibMethod.ENTROPY: CalibrationMethod.Entropy,
    }[config.method]
    act = QuantType.QInt8 if profile.activation_type == "int8" else QuantType.QUInt8
    extra = {
        "ActivationSymmetric": profile.activation_symmetric,
        "WeightSymmetric": profile.weight_symmetric,
        "QuantizeBias": profile.quantize_bias,
        # Q/DQ on the inputs of the quantized ops only: not on their outputs (which feed Add,
        # LayerNorm, the outlook core...) unless the profile needs it for a fused kernel
        # (quantize_outputs_of), and a private pair per consumer.
        "OpTypesToExcludeOutputQuantization": [t for t in profile.op_types if t not in profile.quantize_outputs_of],
        "DedicatedQDQPair": True,
    }
    return method, act, QuantType.QInt8, extra


def _calibrate(model_file: Path, reader, prof: QuantProfile, config: QuantConfig, method_ort, work: Path):
    """onnxruntime's calibrator run by us (``quantize_static`` does not forward the histogram
    sizes, which leaves its entropy method at 128 bins = min-max); returns its ``TensorsData``."""
    from onnxruntime.quantization.calibrate import create_calibrator

    if config.method is CalibMethod.PERCENTILE:
        opts = {"num_bins": config.num_bins, "percentile": config.percentile, "symmetric": True}
    elif config.method is CalibMethod.ENTROPY:
        opts = {"num_bins": config.entropy_bins, "num_quantized_bins": 128, "symmetric": False}
    else:
        opts = {"symmetric": False}
    calibrator = create_calibrator(
        model_file,
        list(prof.op_types),
        augmented_model_path=str(work / "augmented.onnx"),
        calibrate_method=method_ort,
        extra_options=opts,
    )
    calibrator.collect_data(reader)
    return calibrator.compute_data()


def qdq_counts(proto) -> dict[str, int]:
    from collections import Counter

    c = Counter(n.op_type for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return dict(c)


def _cache_lookup(proto, calib_data, data_key, prof: QuantProfile, config: QuantConfig, cache_path):
    """(key, cached onnxruntime ranges or None, status, cache file or None) for this model x data x method."""
    if data_key is None:
        if calib_data is None:
            raise QuantizationError("calibration data needed (no data_key given to look up a cache)")
        data_key = array_sha256(np.ascontiguousarray(calib_data, np.float32))
    key = CacheKey(model_sha256(proto), data_key, config.method.value, config.method_params(), prof.name)
    status, ort_cache = CacheStatus(None, "off"), None
    cache_file = Path(cache_path) if cache_path else None
    if cache_file is not None:
        ort_cache, status = read_cache(cache_file, key)
        if status.status == "mismatch":
            log.warning("calibration cache %s does not match this run (%s): recalibrating", cache_file, "; ".join(status.differs))
    return key, ort_cache, status, cache_file


def _static_quantize(in_file: Path, out_file: Path, ranges_file: Path, plan: dict) -> None:
    """onnxruntime's ``quantize_static`` with the ranges of ``ranges_file`` (it never calibrates here)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    prof: QuantProfile = plan["profile"]
    try:
        quantize_static(
            str(in_file),
            str(out_file),
            None,  # ranges come from ranges_file
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(prof.op_types),
            per_channel=prof.per_channel,
            reduce_range=plan["bits"] == 7,  # 7-bit weights (activations keep their full range)
            activation_type=plan["act_type"],
            weight_type=plan["weight_type"],
            nodes_to_quantize=[lay.node for lay in plan["quant"]],
            nodes_to_exclude=[lay.node for lay in plan["floating"]],
            calibrate_method=plan["method"],
            extra_options=plan["extra"],
            calibration_cache_path=str(ranges_file),
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        raise QuantizationError(f"onnxruntime quantize_static failed: {exc}") from exc


def _quantize_in(tmp: Path, proto, reader, ort_cache, config: QuantConfig, plan: dict):
    """(Q/DQ model, calibration seconds, ranges as JSON) worked out in the folder ``tmp``: calibrate
    with ``reader`` unless ``ort_cache`` holds the ranges, then quantize with them."""
    import onnx

    ranges_file = tmp / "ranges.json"
    if ort_cache is not None:
        ranges_file.write_text(json.dumps(ort_cache))
    in_file = tmp / "model_fp32.onnx"  # a file: quantize_static rewrites a ModelProto in place
    onnx.save_model(proto, str(in_file))
    calib_s = 0.0
    if reader is not None:  # calibrate, then hand the ranges to quantize_static as its cache
        from onnxruntime.quantization.calibrate import save_tensors_data

        start = time.perf_counter()
        ranges = _calibrate(in_file, reader, plan["profile"], config, plan["method"], tmp)
        save_tensors_data(ranges, ranges_file)
        calib_s = time.perf_counter() - start
    out_file = tmp / "model_int8.onnx"
    _static_quantize(in_file, out_file, ranges_file, plan)
    return onnx.load(str(out_file)), calib_s, json.loads(ranges_file.read_text())


def quantize_onnx(
    model,
    calib_data: np.ndarray | None,
    *,
    profile: str | QuantProfile = "onnxruntime",
    method: str | CalibMethod = CalibMethod.MINMAX,
    config: QuantConfig | None = None,
    cache_path: str | Path | None = None,
    data_key: str | None = None,
    output: str | Path | None = None,
) -> QuantResult:
    """Quantize an FP32 portable ONNX model (path or ``onnx.ModelProto``) into Q/DQ ONNX.

    ``calib_data``: preprocessed float32 images (N, 3, S, S); may be ``None`` only when
    ``cache_path`` holds matching ranges. ``data_key``: hash identifying the calibration
    data (default: hash of ``calib_data``). ``profile``: ``tensorrt``, ``onnxruntime`` or
    ``openvino`` (see :mod:`volo_deploy.quant.profiles`). ``method`` is ignored when
    ``config`` is given. Writes ``output`` if given; always returns the model in memory.
    """
    import onnx

    prof = get_profile(profile)
    config = config or QuantConfig(method=CalibMethod.parse(method))
    bits, bits_why = choose_weight_bits(prof, config.weight_bits)
    log.debug("int8 weights, profile %s: %d-bit (%s)", prof.name, bits, bits_why)
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    quant, floating = select_layers(quantizable_layers(proto, prof.op_types), prof, config.placement, config.keep_float)
    if not quant:
        raise QuantizationError("no layer left to quantize (every Conv/MatMul/Gemm is excluded)")
    key, ort_cache, status, cache_file = _cache_lookup(proto, calib_data, data_key, prof, config, cache_path)
    method_ort, act_t, w_t, extra = _ort_args(prof, config)
    plan = {"profile": prof, "bits": bits, "quant": quant, "floating": floating, "method": method_ort,
            "act_type": act_t, "weight_type": w_t, "extra": extra}
    reader, n_images = None, 0
    if ort_cache is None:
        if calib_data is None:
            raise QuantizationError("no calibration data and no matching calibration cache")
        input_name, batch = _input_batch(proto)
        reader = ArrayReader(np.ascontiguousarray(calib_data, np.float32), input_name, batch or min(16, len(calib_data)))
        n_images = reader.n_batches * reader.batch
    with tempfile.TemporaryDirectory(prefix="volo-quant-") as tmp:
        qproto, calib_s, ranges = _quantize_in(Path(tmp), proto, reader, ort_cache, config, plan)
    if reader is not None and cache_file is not None:
        write_cache(cache_file, key, ranges, {"calibration_seconds": round(calib_s, 3), "calibration_images": n_images})
    if ort_cache is not None:
        n_images = int(json.loads(cache_file.read_text()).get("calibration_images", 0))
    if prof.inline_functions:
        from volo_deploy.export.onnx_graph import inline_functions

        qproto = inline_functions(qproto)
    _set_metadata(qproto, prof, config, floating, bits)
    result = QuantResult(
        qproto, prof, config, quant, floating, status, calib_s, n_images, qdq_counts(qproto), bits, bits_why
    )
    if output is not None:
        onnx.save_model(qproto, str(output))
    return result


def _set_metadata(proto, prof: QuantProfile, config: QuantConfig, floating: list[Layer], bits: int) -> None:
    meta = {
        "volo.precision": "int8",
        "volo.quant.profile": prof.name,
        "volo.quant.weight_bits": str(bits),
        "volo.quant.method": config.method.value,
        "volo.quant.float_layers": ",".join(lay.name for lay in floating),
        "volo.quant.config": json.dumps(asdict(config), default=str),
    }
    keep = [m for m in proto.metadata_props if m.key not in meta]
    del proto.metadata_props[:]
    for m in keep:
        proto.metadata_props.add(key=m.key, value=m.value)
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
