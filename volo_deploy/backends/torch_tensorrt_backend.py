"""Torch-TensorRT: the PyTorch model compiled to TensorRT, each outlook core one plugin layer.

Export: the model in the op form (each outlook core one ``volo::outlook_attention`` call) ->
``torch.export`` -> ``torch_tensorrt.dynamo.compile(min_block_size=1)`` with our converter
(:mod:`volo_deploy.export.torch_trt_converter`: the op becomes our IPluginV3 from the plugin
registry; the plugin library is built or given with ``--plugin`` and loaded first) -> the build
fails if any node is left to PyTorch -> ``torch_tensorrt.save`` (ExportedProgram ``.ep``) plus
the plugin library and our manifest. FP16: the model and input in half precision except the
LayerNorms and the heads (:func:`half_keeping_norms_fp32`); TensorRT's explicit typing follows
the PyTorch dtypes. Validated against FP32 PyTorch like every export.

``torch_tensorrt``, ``tensorrt`` and CUDA are used inside functions only: this module imports anywhere.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportArtifacts, ExportRequest, Runner, register_backend
from volo_deploy.errors import BadInputError
from volo_deploy.options import flag, positive_int

DEFAULT_MAX_BATCH = 32  # --dynamic-batch profile max without --max-batch
OP_FORMS = ("fused", "onnx_node")  # outlook forms whose core is one volo::outlook_attention call, preferred first


@dataclass(frozen=True)
class TorchTrtOptions:
    """Compile settings and the runner's plugin library."""

    # None: build it / the one next to the artifact
    plugin: Path | None = flag("--plugin",
                               "prebuilt libvolo_outlook_plugin.so (default: build plugins/outlook_attention)",
                               parse=Path)
    max_batch: int | None = flag("--max-batch", "--dynamic-batch profile max (32)", parse=positive_int)


def op_form() -> str:
    """The registered outlook form that calls the op (``fused`` where present)."""
    from volo_deploy.models.outlook import OUTLOOK_FORMS

    return next(f for f in OP_FORMS if f in OUTLOOK_FORMS)


def _torch_dtype(precision: str):
    import torch

    return torch.float16 if precision == "fp16" else torch.float32


def half_keeping_norms_fp32(net):
    """``net`` in FP16 except every LayerNorm and the classifier heads (FP32 weights, float compute).

    The same block list as the TensorRT FP16 ONNX (:data:`volo_deploy.export.trt_surgery.FP32_OPS`
    less Softmax, which sits inside the attention forward): a LayerNorm reads its input as float
    and hands FP16 on, except the final norm, whose float output feeds the FP32 heads; the logits
    are float. TensorRT's explicit typing keeps these dtypes. In place; returns ``net``.
    """
    import torch

    def to_float(module, args):  # noqa: ANN001, ANN202
        return tuple(a.float() for a in args)

    def to_half(module, args, out):  # noqa: ANN001, ANN202
        return out.half()

    net.half()
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.LayerNorm) or name in ("head", "aux_head"):
            m.float()
            m.register_forward_pre_hook(to_float)
            if isinstance(m, torch.nn.LayerNorm) and name != "norm":
                m.register_forward_hook(to_half)
    return net


def _compile_kwargs(compile_fn, precision: str) -> dict[str, Any]:
    """Keyword arguments of ``torch_tensorrt.dynamo.compile`` for this version (explicit typing where known)."""
    params = inspect.signature(compile_fn).parameters
    kw: dict[str, Any] = {"min_block_size": 1, "pass_through_build_failures": True}
    if "require_full_compilation" in params:
        kw["require_full_compilation"] = True
    if "use_explicit_typing" in params:  # 2.8-2.12: precision from the model's dtypes
        kw["use_explicit_typing"] = True
    elif "enabled_precisions" in params:  # < 2.8 (2.13+ has neither: always strongly typed)
        kw["enabled_precisions"] = {_torch_dtype(precision)}
    if precision == "fp32" and "disable_tf32" in params:
        kw["disable_tf32"] = True
    return kw


def batch_dim(max_batch: int):
    """The symbolic batch dimension of a ``--dynamic-batch`` program (1..``max_batch``)."""
    import torch

    return torch.export.Dim("batch", min=1, max=max_batch)


def save_kwargs(save_fn, example, dynamic: bool, max_batch: int) -> dict[str, Any]:
    """Keyword arguments of ``torch_tensorrt.save`` that keep a dynamic batch dynamic in this version.

    Since 2.10 ``save`` re-traces by default (``retrace=True``) with ``torch.export.export`` on the
    example input: without ``dynamic_shapes`` (2.12+) the saved program is fixed at the example's
    batch. 2.10/2.11 have no ``dynamic_shapes``: there ``retrace=False`` serializes the compiled
    graph as it is, symbolic batch included (what every release before 2.10 did by default).
    """
    params = inspect.signature(save_fn).parameters
    kw: dict[str, Any] = {"output_format": "exported_program"}
    if not dynamic:
        return {**kw, "arg_inputs": [example]}
    if "dynamic_shapes" in params:
        return {**kw, "arg_inputs": [example], "dynamic_shapes": ({0: batch_dim(max_batch)},)}
    if "retrace" in params:
        return {**kw, "retrace": False}
    return kw


def compile_model(model, request: ExportRequest, options: TorchTrtOptions):
    """The compiled (partitioned) GraphModule and an example input; raises on any PyTorch fallback."""
    import copy

    import torch
    import torch_tensorrt

    from volo_deploy.export.torch_trt_converter import check_no_fallback, register_converter
    from volo_deploy.models import set_outlook_form

    register_converter()
    dtype = _torch_dtype(request.precision)
    net = set_outlook_form(copy.deepcopy(model), op_form()).eval()
    net = (half_keeping_norms_fp32(net) if request.precision == "fp16" else net).to("cuda")
    s = model.cfg.img_size
    hi = options.max_batch or DEFAULT_MAX_BATCH
    example = torch.randn(min(2, hi) if request.dynamic_batch else request.batch, 3, s, s, device="cuda", dtype=dtype)
    if request.dynamic_batch:
        dyn = ({0: batch_dim(hi)},)
        inputs = [torch_tensorrt.Input(min_shape=(1, 3, s, s), opt_shape=(min(8, hi), 3, s, s),
                                       max_shape=(hi, 3, s, s), dtype=dtype)]
    else:
        dyn, inputs = None, [example]
    with torch.no_grad():
        exported = torch.export.export(net, (example,), dynamic_shapes=dyn)
        gm = torch_tensorrt.dynamo.compile(exported, arg_inputs=inputs,
                                           **_compile_kwargs(torch_tensorrt.dynamo.compile, request.precision))
    check_no_fallback(gm)
    return gm, example


def program_input(ep) -> tuple[tuple[int | None, ...], Any]:
    """Shape (None for a symbolic dimension) and dtype of the single user input of an ExportedProgram."""
    names = list(ep.graph_signature.user_inputs)
    if len(names) != 1:
        raise BadInputError(f"expected a program with one input, found {names}")
    val = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == names[0]).meta["val"]
    return tuple(d if isinstance(d, int) else None for d in val.shape), val.dtype


class TorchTrtRunner(Runner):
    """Runs a saved ExportedProgram (TensorRT engines inside) on CUDA; float32 logits out."""

    def __init__(self, artifact: Path, plugin: Path) -> None:
        import torch_tensorrt

        from volo_deploy.export.trt_engine import load_plugin

        load_plugin(plugin)  # the engines deserialize our plugin through the registry
        ep = torch_tensorrt.load(str(artifact))
        shape, self.dtype = program_input(ep)
        self.module = ep.module()
        super().__init__(shape)

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(batch).to("cuda", self.dtype))
        return (out[0] if isinstance(out, (tuple, list)) else out).float().cpu().numpy()


@register_backend("torch_tensorrt", "torch-tensorrt", "torchtrt")
class TorchTensorRtBackend(Backend):
    """Torch-TensorRT (dynamo) with the ``volo::OutlookAttention`` plugin; FP32/FP16."""

    precisions = ("fp32", "fp16")
    model_suffix = ".ep"
    Options = TorchTrtOptions
    requires = ("torch_tensorrt", "tensorrt")
    extra = "torch_tensorrt"
    distributions = ("torch-tensorrt", "tensorrt")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible (torch.cuda.is_available() is False)"

    def check_request(self, request: ExportRequest) -> None:
        options = request.options or TorchTrtOptions()
        if options.max_batch is not None and not request.dynamic_batch:
            raise BadInputError(f"--max-batch needs --dynamic-batch (this export has a fixed batch of {request.batch})")
        self.require()

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        import torch_tensorrt

        from volo_deploy.artifacts import sha256_file
        from volo_deploy.export import trt_engine
        from volo_deploy.plugins_native import PLUGIN_LIB

        options = request.options or TorchTrtOptions()
        gpu = trt_engine.gpu_info()
        plugin = trt_engine.plugin_library(options.plugin, gpu["sm"], trt_engine.trt_version())
        (staged / PLUGIN_LIB).write_bytes(plugin.read_bytes())
        trt_engine.load_plugin(staged / PLUGIN_LIB)
        gm, example = compile_model(model, request, options)
        torch_tensorrt.save(gm, str(staged / model_file), **save_kwargs(
            torch_tensorrt.save, example, request.dynamic_batch, options.max_batch or DEFAULT_MAX_BATCH))
        engines = [n for n, _ in gm.named_children()]
        return ExportArtifacts([PLUGIN_LIB], {
                **gpu, "torch_tensorrt": torch_tensorrt.__version__, "tensorrt": trt_engine.trt_version(),
                "outlook_form": op_form(), "trt_submodules": engines, "min_block_size": 1,
                "torch_fallback_nodes": 0, "plugin_source": str(plugin),
                "plugin_sha256": sha256_file(staged / PLUGIN_LIB)})

    def load(self, artifact: Path, options: Any = None) -> Runner:
        """A runner; the plugin is ``options.plugin`` or the library next to the artifact."""
        from volo_deploy.plugins_native import PLUGIN_LIB

        self.require()
        artifact = Path(artifact)
        plugin = (options.plugin if isinstance(options, TorchTrtOptions) and options.plugin else None) or (
            artifact.parent / PLUGIN_LIB)
        if not Path(plugin).is_file():
            raise BadInputError(f"plugin library {plugin} not found (pass the libvolo_outlook_plugin.so of the build)")
        return TorchTrtRunner(artifact, Path(plugin))
