"""Torch-TensorRT: ``volo::outlook_attention`` -> our IPluginV3, and the no-fallback check.

The converter (Torch-TensorRT docs, "Writing converters for the Dynamo frontend") takes the
``OutlookAttention`` / ``"1"`` / ``"volo"`` creator from TensorRT's plugin registry (the plugin
library must be loaded first: :func:`volo_deploy.export.trt_engine.load_plugin`), creates the
plugin with the op's five attributes as fields (INT32 ``kernel_size``/``padding``/``stride``/
``num_heads``, FLOAT32 ``scale``, as ``plugins/outlook_attention`` declares them) in the BUILD
phase and adds it with ``network.add_plugin_v3([v, attn], [], plugin)`` (TensorRT Python API).
This works from TensorRT 10.0 (JetPack 6's 10.3 included); Torch-TensorRT's automatic plugin
path (``torch_tensorrt.dynamo.conversion.plugins.custom_op``, TensorRT >= 10.7) would need a
Python (QDP) plugin definition instead of our C++ one, so it is not used.

``tensorrt`` and ``torch_tensorrt`` are imported inside functions; the logic takes the
``tensorrt`` module as an argument so it can be tested with a stand-in.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from volo_deploy.errors import ExportError

OP_ARGS = ("kernel_size", "padding", "stride", "num_heads", "scale")
TRT_MODULE_PREFIX = "_run_on_acc"  # Torch-TensorRT's name for TensorRT submodules ("_run_on_gpu" runs torch)
TRT_MODULE_TYPES = ("TorchTensorRTModule", "PythonTorchTensorRTModule")
_registered = False


def plugin_fields(trt, attrs: dict[str, Any]):
    """The ``PluginFieldCollection`` of our plugin for the op's attributes.

    ``trt.PluginField`` keeps a raw pointer into its numpy array and ``PluginFieldCollection`` copies
    the fields: the arrays and fields must outlive the collection, or the plugin reads freed memory
    (a garbage ``scale`` passes the plugin's checks). They are held on the returned collection.
    """
    arrays = [np.array([int(attrs[k])], np.int32) for k in OP_ARGS[:4]] + [np.array([float(attrs["scale"])],
                                                                                  np.float32)]
    kinds = [trt.PluginFieldType.INT32] * 4 + [trt.PluginFieldType.FLOAT32]
    fields = [trt.PluginField(k, a, t) for k, a, t in zip(OP_ARGS, arrays, kinds)]
    return _collection_type(trt)(fields, (arrays, fields))


_COLLECTIONS: dict[int, type] = {}


def _collection_type(trt) -> type:
    """``trt.PluginFieldCollection`` subclass that keeps the field buffers alive (one per module)."""
    base = trt.PluginFieldCollection
    if id(base) not in _COLLECTIONS:
        def __init__(self, fields, keep):  # noqa: ANN001, N807
            base.__init__(self, fields)
            self.keep_alive = keep

        _COLLECTIONS[id(base)] = type("KeptPluginFieldCollection", (base,), {"__init__": __init__})
    return _COLLECTIONS[id(base)]


def add_outlook_plugin(trt, network, v, attn, attrs: dict[str, Any], name: str):
    """Add our plugin on TensorRT tensors ``v``, ``attn`` to ``network``; returns its output tensor."""
    from volo_deploy.export.trt_surgery import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION  # imports torch

    creator = trt.get_plugin_registry().get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise ExportError(f"TensorRT plugin {PLUGIN_NAMESPACE}::{PLUGIN_NAME} v{PLUGIN_VERSION} is not registered: "
                          "load libvolo_outlook_plugin.so first")
    plugin = creator.create_plugin(name, plugin_fields(trt, attrs), trt.TensorRTPhase.BUILD)
    if plugin is None:
        raise ExportError(f"{PLUGIN_NAME}: create_plugin refused the fields {attrs} ({name})")
    layer = network.add_plugin_v3([v, attn], [], plugin)
    layer.name = name
    return layer.get_output(0)


def convert_outlook(trt, ctx, args: tuple, kwargs: dict, name: str, to_trt: Callable[[Any, Any, str], Any]):
    """Converter body for ``volo::outlook_attention(v, attn, kernel_size, padding, stride, num_heads, scale)``.

    ``to_trt(ctx, value, name)`` is Torch-TensorRT's ``get_trt_tensor``.
    """
    values = list(args) + [kwargs[k] for k in OP_ARGS[len(args) - 2 :] if k in kwargs]
    if len(values) != 2 + len(OP_ARGS):
        raise ExportError(f"volo::outlook_attention ({name}): expected 7 arguments, got {len(values)}")
    attrs = dict(zip(OP_ARGS, values[2:]))
    v, attn = to_trt(ctx, values[0], f"{name}_v"), to_trt(ctx, values[1], f"{name}_attn")
    return add_outlook_plugin(trt, ctx.net, v, attn, attrs, name)


def register_converter() -> None:
    """Register the converter with Torch-TensorRT (once per process)."""
    global _registered
    if _registered:
        return
    import tensorrt as trt
    import torch
    from torch_tensorrt.dynamo.conversion import dynamo_tensorrt_converter
    from torch_tensorrt.dynamo.conversion.converter_utils import get_trt_tensor

    import volo_deploy.models.outlook_onnx  # noqa: F401  (defines torch.ops.volo.outlook_attention)

    @dynamo_tensorrt_converter(torch.ops.volo.outlook_attention.default, supports_dynamic_shapes=True)
    def _outlook(ctx, target, args, kwargs, name):  # noqa: ANN001, ANN202
        return convert_outlook(trt, ctx, args, kwargs, name, get_trt_tensor)

    _registered = True


def torch_fallbacks(gm) -> list[str]:
    """Nodes of a partitioned Torch-TensorRT module that would run in PyTorch (empty: all in TensorRT).

    Top level may hold only inputs, outputs, constants, ``getitem`` on engine outputs and calls of
    TensorRT submodules.
    """
    import operator

    left = []
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_function" and node.target is operator.getitem:
            continue
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            if str(node.target).startswith(TRT_MODULE_PREFIX) or type(sub).__name__ in TRT_MODULE_TYPES:
                continue
            left += [f"{node.target} ({type(sub).__name__}): {n.target}" for n in _inner_calls(sub)] or [
                f"{node.target} ({type(sub).__name__})"]
            continue
        left.append(f"{node.op} {node.target}")
    return left


def _inner_calls(sub) -> list:
    graph = getattr(sub, "graph", None)
    return [n for n in graph.nodes if n.op in ("call_function", "call_method", "call_module")] if graph else []


def check_no_fallback(gm) -> None:
    """Raise :class:`ExportError` naming every node left to PyTorch (graph break or unsupported op)."""
    left = torch_fallbacks(gm)
    if left:
        shown = "; ".join(left[:8]) + (f"; ... ({len(left)} in all)" if len(left) > 8 else "")
        raise ExportError(f"Torch-TensorRT left {len(left)} node(s) to PyTorch (graph break): {shown}")
