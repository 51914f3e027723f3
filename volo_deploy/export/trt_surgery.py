"""ONNX rewrites for TensorRT: the plugin form of the portable graph, and its FP16 form.

**Plugin form** (:func:`to_plugin_form`). The portable ONNX has one
``volo.OutlookAttention(v, attn)`` node per outlooker plus a model-local function of the same
name whose body is the standard-op decomposition. TensorRT must send those nodes to our
IPluginV3 ``OutlookAttention`` / version ``"1"`` / namespace ``"volo"``
(``plugins/outlook_attention``), so each node gets ``plugin_namespace="volo"`` and
``plugin_version="1"`` (STRING attributes), and the local function is removed. Everything
else (node order, names, initializers, Q/DQ nodes, metadata) is left byte-for-byte as it was.

What the TensorRT ONNX parser does (checked in the parser sources, not on a TensorRT install):

* Dispatch is by ``node.op_type()`` only; the node's domain is never looked at
  (onnx/onnx-tensorrt ``ModelImporter.cpp``, ``parseNode``: ``nodeType = node.op_type()``).
* TensorRT 10.x up to about 10.1: built-in importer, else a model-local function of that name
  (``LocalFunctionImporter``, which inlines the body), else ``FallbackPluginImporter``
  (same file, 10.1 GA). With the function present our nodes would become the decomposition,
  so the function is removed here; then the plugin is the only match on every version.
* Newer parsers (NVIDIA/TensorRT ``parsers/onnx/ModelImporter.cpp``, 10.x/11.x): a node with a
  ``plugin_namespace`` attribute, or any node when ``OnnxParserFlag.kENABLE_PLUGIN_OVERRIDE`` is
  set, goes to the plugin first if the registry has it; otherwise built-in, local function,
  plugin. The NVIDIA sample ``samples/python/quickly_deployable_plugins/README.md`` states the
  same rule ("op" equal to the plugin name, a ``plugin_namespace`` string attribute).
* ``FallbackPluginImporter`` (onnx-tensorrt ``onnxOpImporters.cpp``) reads
  ``plugin_version`` (default ``"1"``) and ``plugin_namespace`` (default ``""``) and looks the
  creator up by (op_type, version, namespace). Without ``plugin_namespace="volo"`` it would look
  in the empty namespace and miss our creator, so both attributes are set.
* ``loadFields`` passes only the attributes named in the creator's ``getFieldNames()``:
  INT -> ``kINT32``, FLOAT -> ``kFLOAT32``, STRING -> ``kCHAR``. Our five attributes keep their
  ONNX types (INT ``kernel_size``/``padding``/``stride``/``num_heads``, FLOAT ``scale``).

Domain: the plugin node keeps domain ``"volo"``. The parser ignores the domain, so either works
for TensorRT; ``""`` would claim a standard ONNX op and fail ``onnx.checker`` ("No Op registered
for OutlookAttention"), while a custom domain with its ``opset_import`` entry passes the checker
(no schema needed for a custom domain) and says honestly what the node is.

**FP16 form** (:func:`to_fp16`). TensorRT 11 networks are strongly typed (no kFP16 builder
flag; the tensor types in the ONNX decide the precision). We use the same strongly typed path on
TensorRT 10.x too, so one ONNX and one ``trtexec`` line serve every target: float initializers,
``Constant`` values and ``Cast(to=FLOAT)`` become FLOAT16; the network input and output stay
FLOAT with a ``Cast`` after the input and before the output, so callers feed and read float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from volo_deploy.errors import ExportError
from volo_deploy.models.outlook_onnx import ATTRIBUTES, DOMAIN, OP_TYPE

if TYPE_CHECKING:  # onnx is an optional dependency, imported inside the functions
    import onnx

PLUGIN_NAME = "OutlookAttention"  # kPLUGIN_NAME in plugins/outlook_attention/outlookAttentionPlugin.h
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "volo"
DISPATCH_ATTRIBUTES = ("plugin_namespace", "plugin_version")


def _is_outlook(node) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def outlook_nodes(model: "onnx.ModelProto") -> list:
    """The ``volo.OutlookAttention`` nodes of the main graph, in graph order."""
    return [n for n in model.graph.node if _is_outlook(n)]


def _check_attributes(node) -> None:
    from onnx import AttributeProto

    want = {"kernel_size": AttributeProto.INT, "padding": AttributeProto.INT, "stride": AttributeProto.INT,
            "num_heads": AttributeProto.INT, "scale": AttributeProto.FLOAT}
    assert set(want) == set(ATTRIBUTES)
    got = {a.name: a.type for a in node.attribute if a.name not in DISPATCH_ATTRIBUTES}
    problems = [f"{k} missing" for k in want if k not in got]
    problems += [f"{k} has type {AttributeProto.AttributeType.Name(got[k])}, expected "
                 f"{AttributeProto.AttributeType.Name(t)}" for k, t in want.items() if k in got and got[k] != t]
    problems += [f"unexpected attribute {k}" for k in got if k not in want]
    if len(node.input) != 2 or len(node.output) != 1:
        problems.append(f"expects 2 inputs and 1 output, has {len(node.input)} and {len(node.output)}")
    if problems:
        raise ExportError(f"ONNX node {node.name or '?'} ({DOMAIN}.{OP_TYPE}): {'; '.join(problems)}")


def to_plugin_form(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of ``model`` whose outlook nodes go to the TensorRT plugin (see the module docstring).

    Raises :class:`ExportError` when the graph has no ``volo.OutlookAttention`` node or one whose
    attributes do not match the plugin's fields. Works on Q/DQ (INT8) graphs alike: only the
    outlook nodes and the function list change.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = outlook_nodes(out)
    if not nodes:
        raise ExportError(f"no {DOMAIN}.{OP_TYPE} node in the ONNX graph: export it with volo_deploy's portable exporter")
    for node in nodes:
        _check_attributes(node)
        keep = [a for a in node.attribute if a.name not in DISPATCH_ATTRIBUTES]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.extend([
            onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
            onnx.helper.make_attribute("plugin_version", PLUGIN_VERSION),
        ])
    kept = [f for f in out.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del out.functions[:]
    out.functions.extend(kept)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return out


def check_plugin_form(model: "onnx.ModelProto") -> None:
    """``onnx.checker`` on the plugin form; raises :class:`ExportError` with the checker's message."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"plugin-form ONNX fails onnx.checker: {exc}") from None


# ---- FP16 ----------------------------------------------------------------------------------------

_UNSUPPORTED_FOR_FP16 = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike",
                         "Bernoulli", "Multinomial")


def _tensor_to_fp16(t) -> None:
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if t.data_type != TensorProto.FLOAT:
        return
    arr = numpy_helper.to_array(t)
    finite = np.finfo(np.float16)
    half = np.clip(arr, finite.min, finite.max).astype(np.float16)
    new = numpy_helper.from_array(half, t.name)
    t.CopyFrom(new)


def _nodes_to_fp16(nodes, where: str) -> None:
    from onnx import AttributeProto, TensorProto

    for node in nodes:
        if node.domain in ("", "ai.onnx") and node.op_type in _UNSUPPORTED_FOR_FP16:
            raise ExportError(f"FP16 conversion: {where} node {node.name} ({node.op_type}) is not supported")
        for a in node.attribute:
            if a.type == AttributeProto.TENSOR:
                _tensor_to_fp16(a.t)
            elif node.op_type in ("Cast", "CastLike") and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
            elif a.type == AttributeProto.GRAPH:
                raise ExportError(f"FP16 conversion: {where} node {node.name} ({node.op_type}) has a subgraph")


def to_fp16(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of ``model`` computing in FLOAT16, with FLOAT input and output (see the module docstring).

    Converts initializers, tensor attributes (``Constant``, ``ConstantOfShape``), ``Cast`` targets
    and value infos in the main graph and in local functions. ``LayerNormalization`` keeps its
    ``stash_type`` (FLOAT statistics).
    """
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for t in g.initializer:
        _tensor_to_fp16(t)
    _nodes_to_fp16(g.node, "graph")
    for fn in out.functions:
        _nodes_to_fp16(fn.node, f"function {fn.name}")
    for vi in g.value_info:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    casts_in, renames = [], {}
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{inp.name}__fp16"
            renames[inp.name] = half
            casts_in.append(helper.make_node("Cast", [inp.name], [half], name=f"{inp.name}__to_fp16",
                                             to=TensorProto.FLOAT16))
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    casts_out = []
    for o in g.output:
        if o.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{o.name}__fp16"
            for node in g.node:
                for i, name in enumerate(node.output):
                    if name == o.name:
                        node.output[i] = half
                for i, name in enumerate(node.input):
                    if name == o.name:
                        node.input[i] = half
            casts_out.append(helper.make_node("Cast", [half], [o.name], name=f"{o.name}__to_fp32",
                                              to=TensorProto.FLOAT))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    return out
