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
flag; the tensor types in the ONNX decide the precision, TensorRT 11 release notes). We use the
same strongly typed path on TensorRT 10.x too, so one ONNX and one ``trtexec`` line serve every
target. The conversion is onnxconverter-common's ``convert_float_to_float16`` (input and output
stay FLOAT) with a block list measured on the demo and VOLO-D1 (``benchmarks/trt_fp16_accuracy.py``):
LayerNormalization, Softmax and the head after the final norm stay FLOAT, with their original FP32
weights. The converter does not enter model-local functions; the outlook function's body is wrapped
to compute in float between FP16 I/O, as the plugin's FP16 kernel does, so the portable form of the
FP16 graph runs on onnxruntime with the plugin's numerics.

**FP16 outlook core in INT8 graphs** (:func:`fp16_outlook_cores`). Between DQ and Q a plugin runs
in the type it is given; the Q/DQ graph gives it the FLOAT outputs of GEMMs, so a ``Cast`` to
FLOAT16 on each input and a ``Cast`` back before the QuantizeLinear make it read and write half the
bytes.
"""

from __future__ import annotations

import warnings
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

# What stays FLOAT in the FP16 graph: LayerNorm (statistics and affine), Softmax (class attention) and
# the head after the final norm. benchmarks/trt_fp16_accuracy.py measures it against all-FP16: equal
# within noise on the demo and a random-init D1; kept for the FP16 LayerNorm overflow TensorRT warns of.
FP32_OPS: tuple[str, ...] = ("LayerNormalization", "Softmax")
ALL_FP16: tuple[str, ...] = ()


def head_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of the nodes after the last ``LayerNormalization`` of the main graph (the classifier head)."""
    names = [n.name for n in model.graph.node]
    last = max((i for i, n in enumerate(model.graph.node) if n.op_type == "LayerNormalization"), default=None)
    if last is None:
        return []
    return names[last + 1 :]


def outlook_body_in_fp32(model: "onnx.ModelProto") -> None:
    """Make the local ``volo.OutlookAttention`` function compute in FLOAT whatever its input type.

    The plugin reads FP16 ``v``/``attn``, computes softmax, weights and fold in float and writes
    FP16 (``outlookAttentionKernel.cu``); with ``Cast(to=FLOAT)`` on the inputs and
    ``CastLike(y, v)`` on the output the portable body does the same, so onnxruntime runs the FP16
    graph with the plugin's numerics. An FP32 graph is unchanged in value. In place; idempotent.
    """
    from onnx import TensorProto, helper

    for fn in model.functions:
        if not (fn.domain == DOMAIN and fn.name == OP_TYPE) or any(n.name == "__in_fp32" for n in fn.node):
            continue
        inner = {name: f"{name}__fp32" for name in list(fn.input) + list(fn.output)}
        for node in fn.node:
            node.input[:] = [inner.get(x, x) for x in node.input]
            node.output[:] = [inner.get(x, x) for x in node.output]
        casts_in = [helper.make_node("Cast", [x], [inner[x]], to=TensorProto.FLOAT) for x in fn.input]
        casts_in[0].name = "__in_fp32"
        casts_out = [helper.make_node("CastLike", [inner[y], fn.input[0]], [y]) for y in fn.output]
        nodes = casts_in + list(fn.node) + casts_out
        del fn.node[:]
        fn.node.extend(nodes)


def to_fp16(model: "onnx.ModelProto", fp32_ops: tuple[str, ...] = FP32_OPS,
            fp32_head: bool = True) -> "onnx.ModelProto":
    """A copy of ``model`` in FLOAT16 with FLOAT input/output, ``fp32_ops`` (and the head) kept FLOAT.

    The main graph goes through ``onnxconverter_common.float16.convert_float_to_float16``
    (``keep_io_types``; Casts around blocked nodes); it does not look into model-local functions,
    so the outlook function gets :func:`outlook_body_in_fp32` (the plugin's numerics).
    """
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ExportError("FP16 for TensorRT needs onnxconverter-common (pip install 'volo_deploy[trt]')") from None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    head = head_nodes(out) if fp32_head else []
    with warnings.catch_warnings():  # one warning per weight clipped into the FP16 range
        warnings.simplefilter("ignore", UserWarning)
        out = float16.convert_float_to_float16(out, keep_io_types=True, op_block_list=list(fp32_ops),
                                               node_block_list=head)
    _float_outputs(out)
    _restore_fp32_constants(out, model)
    _drop_fp16_round_trips(out)
    outlook_body_in_fp32(out)
    return out


def _drop_fp16_round_trips(model: "onnx.ModelProto") -> None:
    """Bypass ``Cast(FLOAT16) -> Cast(FLOAT)`` on FLOAT tensors so neighbouring FP32 nodes share FP32 tensors.

    The converter casts each blocked node's output to FP16 and the next blocked node's input back,
    which rounds every tensor of an FP32 chain (LayerNorm -> head) to FP16. In place.
    """
    from onnx import TensorProto

    g = model.graph
    types = _elem_types(model)
    cast_to = {n.output[0]: (n, next((a.i for a in n.attribute if a.name == "to"), None))
               for n in g.node if n.op_type == "Cast"}
    alias = {}
    for node, to in cast_to.values():
        src = cast_to.get(node.input[0])
        if to == TensorProto.FLOAT and src and src[1] == TensorProto.FLOAT16 and \
                types.get(src[0].input[0]) == TensorProto.FLOAT:
            alias[node.output[0]] = src[0].input[0]
    outputs = {o.name for o in g.output}
    for node in g.node:
        node.input[:] = [alias.get(x, x) for x in node.input]
    keep = [n for n in g.node if not (n.output and n.output[0] in alias and n.output[0] not in outputs)]
    for n in keep:  # a bypassed cast that names a graph output stays as Cast(FLOAT -> FLOAT)
        if n.output and n.output[0] in alias:
            n.input[:] = [alias[n.output[0]]]
    used = {x for n in keep for x in n.input} | outputs
    keep = [n for n in keep if n.op_type != "Cast" or any(o in used for o in n.output)]
    del g.node[:]
    g.node.extend(keep)


def _float_outputs(model: "onnx.ModelProto") -> None:
    """Make every graph output FLOAT again (in place).

    ``keep_io_types`` misses an output whose producer is in the block list: the converter leaves
    it FLOAT16 (seen with onnxconverter-common 1.16 and the FP32 head), rounding the logits.
    """
    from onnx import TensorProto, helper

    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    for out in g.output:
        tt = out.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT16:
            continue
        tt.elem_type = TensorProto.FLOAT
        node = producers[out.name]
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    a.i = TensorProto.FLOAT
            continue
        half = f"{out.name}__fp16"
        node.output[list(node.output).index(out.name)] = half
        g.node.append(helper.make_node("Cast", [half], [out.name], name=f"{out.name}__to_fp32", to=TensorProto.FLOAT))


def _restore_fp32_constants(half: "onnx.ModelProto", source: "onnx.ModelProto") -> None:
    """Replace ``Cast(to=FLOAT)`` of a converted initializer by the source's FP32 values (in place).

    The converter turns every float initializer to FP16, also those only read by blocked nodes
    (LayerNorm scale/bias, the head's weights), and casts them back; the cast cannot undo the
    rounding. TensorRT would fold the Cast; here the original values come back instead.
    """
    from onnx import TensorProto

    original = {t.name: t for t in source.graph.initializer if t.data_type == TensorProto.FLOAT}
    g = half.graph
    restored, kept = [], []
    for node in g.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == TensorProto.FLOAT and node.input[0] in original:
            t = TensorProto()
            t.CopyFrom(original[node.input[0]])
            t.name = node.output[0]
            restored.append(t)
        else:
            kept.append(node)
    used = {x for n in kept for x in n.input} | {o.name for o in g.output}
    inits = [t for t in g.initializer if t.name in used] + restored
    del g.node[:]
    g.node.extend(kept)
    del g.initializer[:]
    g.initializer.extend(inits)
    produced = {o for n in kept for o in n.output}  # value_info of dropped/restored initializers is stale
    infos = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(infos)


def fp16_outlook_cores(model: "onnx.ModelProto") -> "tuple[onnx.ModelProto, list[str]]":
    """A copy of ``model`` whose FLOAT outlook nodes run in FP16: ``Cast(FLOAT16)`` on ``v`` and
    ``attn``, ``Cast(FLOAT)`` on the output; returns the names of the nodes changed.

    For the INT8 (Q/DQ) graph: the plugin sits between float GEMM outputs and a QuantizeLinear;
    in a strongly typed network the casts make it run (and move its tensors) in FP16, and TensorRT
    can fuse each Cast into the neighbouring GEMM epilogue or quantize. Nodes whose inputs are
    not FLOAT (already FP16) are left alone.
    """
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    types = _elem_types(out)
    changed, nodes = [], []
    for node in out.graph.node:
        if not _is_outlook(node) or any(types.get(x) != TensorProto.FLOAT for x in node.input):
            nodes.append(node)
            continue
        name = node.name or f"outlook_{len(changed)}"
        half_in = [f"{x}__fp16" for x in node.input]
        nodes += [helper.make_node("Cast", [x], [h], name=f"{name}__in{i}_to_fp16", to=TensorProto.FLOAT16)
                  for i, (x, h) in enumerate(zip(node.input, half_in))]
        y = node.output[0]
        node.input[:] = half_in
        node.output[:] = [f"{y}__fp16"]
        nodes += [node, helper.make_node("Cast", [f"{y}__fp16"], [y], name=f"{name}__out_to_fp32",
                                         to=TensorProto.FLOAT)]
        changed.append(name)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    outlook_body_in_fp32(out)
    return out, changed


def _elem_types(model: "onnx.ModelProto") -> dict[str, int]:
    """Element type of every typed tensor of the main graph (inputs, initializers, inferred values)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types
