"""ONNX form of outlook attention: one ``volo.OutlookAttention`` node per block.

During export each outlook-attention core becomes a call of the torch custom op
``volo::outlook_attention``; the exporter translates it into a node of domain
``volo`` carrying ``kernel_size``, ``padding``, ``stride``, ``num_heads`` and
``scale``. The model also gets a model-local ONNX function of that name whose body
is the standard-op decomposition of a chosen form (``slice`` by default), so
onnxruntime runs it as is, OpenVINO after inlining, and TensorRT can swap the
nodes for our plugin.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import torch

from volo_deploy.models.outlook import OutlookAttention, OutlookParams, get_form, register_form

DOMAIN = "volo"
OP_TYPE = "OutlookAttention"
OP_VERSION = 1
ATTRIBUTES = ("kernel_size", "padding", "stride", "num_heads", "scale")


@torch.library.custom_op("volo::outlook_attention", mutates_args=())
def _outlook_attention_op(
    v: torch.Tensor, attn: torch.Tensor, kernel_size: int, padding: int, stride: int, num_heads: int, scale: float
) -> torch.Tensor:
    # Contiguous like the CUDA kernel's output and the fake kernel (torch.compile checks the strides).
    return get_form("slice")(v, attn, OutlookParams(kernel_size, padding, stride, num_heads, scale)).contiguous()


@_outlook_attention_op.register_fake
def _(v, attn, kernel_size, padding, stride, num_heads, scale):  # noqa: ANN001, ANN202
    return v.new_empty(v.shape)


@_outlook_attention_op.register_kernel("cuda")
def _outlook_attention_cuda(
    v: torch.Tensor, attn: torch.Tensor, kernel_size: int, padding: int, stride: int, num_heads: int, scale: float
) -> torch.Tensor:
    """CUDA: our fused kernel (plugins/outlook_attention) through its C launcher, on the current stream.

    FP32 / FP16 only (the kernel's types); other dtypes run the ``slice`` decomposition.
    """
    p = OutlookParams(kernel_size, padding, stride, num_heads, scale)
    if v.dtype not in (torch.float32, torch.float16) or attn.dtype != v.dtype:
        return get_form("slice")(v, attn, p).contiguous()
    from volo_deploy.plugins_native import default_kernel

    major, minor = torch.cuda.get_device_capability(v.device)
    return default_kernel(f"{major}{minor}").outlook_attention(v.contiguous(), attn.contiguous(), p)


@register_form("onnx_node")
def outlook_core_onnx_node(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """Calls the custom op, which the ONNX exporter turns into one ``volo`` node."""
    return torch.ops.volo.outlook_attention(v, attn, p.kernel_size, p.padding, p.stride, p.num_heads, p.scale)


@register_form("fused")
def outlook_core_fused(v: torch.Tensor, attn: torch.Tensor, p: OutlookParams) -> torch.Tensor:
    """The core as one op, ``volo::outlook_attention``: our CUDA kernel on a GPU, the ``slice`` form on
    the CPU; ``torch.compile`` keeps it as one opaque node (its fake kernel gives the output shape).
    Inference only (no autograd formula is registered)."""
    return torch.ops.volo.outlook_attention(v, attn, p.kernel_size, p.padding, p.stride, p.num_heads, p.scale)


def _register_schema() -> None:
    from onnx import defs

    if defs.has(OP_TYPE, DOMAIN):
        return
    param = defs.OpSchema.FormalParameter
    attr_int, attr_float = defs.OpSchema.AttrType.INT, defs.OpSchema.AttrType.FLOAT
    schema = defs.OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        doc="Outlook attention core: scale+softmax, weighted unfold, fold (channels-last).",
        inputs=[param("v", "T"), param("attn", "T")],
        outputs=[param("y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[
            defs.OpSchema.Attribute("kernel_size", attr_int, "window size k"),
            defs.OpSchema.Attribute("padding", attr_int, "unfold/fold padding"),
            defs.OpSchema.Attribute("stride", attr_int, "window stride"),
            defs.OpSchema.Attribute("num_heads", attr_int, "attention heads"),
            defs.OpSchema.Attribute("scale", attr_float, "logit scale (head_dim ** -0.5)"),
            # TensorRT plugin dispatch, set only in the plugin form (volo_deploy.export.trt_surgery)
            defs.OpSchema.Attribute("plugin_namespace", defs.OpSchema.AttrType.STRING, "TensorRT plugin namespace",
                                    required=False),
            defs.OpSchema.Attribute("plugin_version", defs.OpSchema.AttrType.STRING, "TensorRT plugin version",
                                    required=False),
        ],
    )
    defs.register_schema(schema)


def translation_table() -> dict:
    """``custom_translation_table`` entry for ``torch.onnx.export(dynamo=True)``."""
    import onnxscript

    _register_schema()
    opset = onnxscript.values.Opset(DOMAIN, OP_VERSION)

    def translate(v, attn, kernel_size: int, padding: int, stride: int, num_heads: int, scale: float):  # noqa: ANN001, ANN202
        return opset.OutlookAttention(
            v, attn, kernel_size=kernel_size, padding=padding, stride=stride, num_heads=num_heads, scale=scale
        )

    return {torch.ops.volo.outlook_attention.default: translate}


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Hide the dynamo exporter's progress lines, warnings and torchvision-op log lines."""
    import logging

    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def as_onnx_nodes(model: torch.nn.Module) -> Iterator[list[OutlookParams]]:
    """Temporarily route every outlook core through the custom op; yields their params."""
    mods = [m for m in model.modules() if isinstance(m, OutlookAttention)]
    saved = [m.form for m in mods]
    try:
        for m in mods:
            m.form = "onnx_node"
        yield [m.params for m in mods]
    finally:
        for m, f in zip(mods, saved):
            m.form = f


class _Core(torch.nn.Module):
    def __init__(self, params: OutlookParams, form: str) -> None:
        super().__init__()
        self.params, self.form = params, form

    def forward(self, v: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return get_form(self.form)(v, attn, self.params)


def function_proto(params: OutlookParams, v_shape: tuple[int, int, int, int], opset: int, form: str = "slice"):
    """The model-local ``volo.OutlookAttention`` function: ``form`` exported with standard ops.

    The body is exported at ``v_shape`` with a dynamic batch dimension; the node
    attributes are declared (the body itself bakes the same values in).
    """
    import onnx

    b, hh, ww, c = v_shape
    h, w = -(-hh // params.stride), -(-ww // params.stride)
    v = torch.randn(max(b, 2), hh, ww, c)
    attn = torch.randn(max(b, 2), h, w, params.num_heads * params.kernel_size**4)
    batch = torch.export.Dim("batch", min=1)
    with quiet_torch_export():
        prog = torch.onnx.export(
            _Core(params, form),
            (v, attn),
            dynamo=True,
            opset_version=opset,
            input_names=["v", "attn"],
            output_names=["y"],
            dynamic_shapes=({0: batch}, {0: batch}),
            verbose=False,
        )
    g = prog.model_proto.graph
    nodes = [onnx.helper.make_node("Constant", [], [t.name], value=t) for t in g.initializer]
    nodes += list(g.node)
    return onnx.helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs=[i.name for i in g.input],
        outputs=[o.name for o in g.output],
        nodes=nodes,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        attributes=list(ATTRIBUTES),
    )
