"""VOLO-aware Q/DQ placement: which nodes of the FP32 graph get quantized inputs.

Nodes are named by the PyTorch module they come from (the dynamo exporter records the
module path in each node's ``pkg.torch.onnx.name_scopes``), e.g. ``network.2.0.mlp.fc1``
or ``network.2.0.attn.matmul_1`` for an attention batched matmul. Include/exclude
patterns (``fnmatch`` style) apply to these layer names and to the raw node names.

Default: the inputs of Conv/MatMul/Gemm are quantized; LayerNorm, Softmax and the
outlook-attention core (a ``volo.OutlookAttention`` node whose function body the
quantizer never enters) stay float, and so do the classifier heads.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from volo_deploy.quant.profiles import QuantProfile

#: Layers kept in float by default (patterns on layer names).
DEFAULT_EXCLUDE: tuple[str, ...] = ("head", "aux_head")
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class Placement:
    """User overrides of the default placement."""

    include: tuple[str, ...] = ()  # force-quantize matching layers (beats the defaults, not ``exclude``)
    exclude: tuple[str, ...] = ()  # keep matching layers in float
    keep_heads_float: bool = True


@dataclass(frozen=True)
class Layer:
    """One quantizable node of the FP32 graph."""

    node: str  # ONNX node name
    name: str  # module path (layer name)
    op_type: str
    has_weight: bool


def _scopes(node) -> list[str]:
    import ast

    for md in node.metadata_props:
        if md.key == _SCOPES_KEY:
            try:
                return [s for s in ast.literal_eval(md.value) if s]
            except (ValueError, SyntaxError):
                return []
    return []


def layer_name(node, has_weight: bool) -> str:
    """Module path of ``node`` (or its node name when the exporter recorded none)."""
    scopes = _scopes(node)
    if len(scopes) >= 2:
        return scopes[-2] if has_weight else f"{scopes[-2]}.{scopes[-1]}"
    return node.name


def quantizable_layers(proto, op_types: tuple[str, ...]) -> list[Layer]:
    """Every main-graph node of ``op_types`` (function bodies are never entered), in graph order."""
    inits = {t.name for t in proto.graph.initializer}
    consts = {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    layers = []
    for node in proto.graph.node:
        if node.op_type not in op_types or node.domain not in ("", "ai.onnx"):
            continue
        has_w = len(node.input) > 1 and (node.input[1] in inits or node.input[1] in consts)
        layers.append(Layer(node.name, layer_name(node, has_w), node.op_type, has_w))
    return layers


def _match(layer: Layer, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(layer.name, p) or fnmatch.fnmatchcase(layer.node, p) for p in patterns)


def select_layers(
    layers: list[Layer], profile: QuantProfile, placement: Placement, keep_float: tuple[str, ...] = ()
) -> tuple[list[Layer], list[Layer]]:
    """(quantized, kept float) after the defaults, the user's overrides and ``keep_float``
    (layer names the accuracy-budget loop returned to float)."""
    quant, floating = [], []
    for layer in layers:
        default_on = layer.has_weight or profile.quantize_activation_matmuls
        if placement.keep_heads_float and _match(layer, DEFAULT_EXCLUDE):
            default_on = False
        on = (default_on or _match(layer, placement.include)) and not _match(layer, placement.exclude)
        if layer.name in keep_float:
            on = False
        (quant if on else floating).append(layer)
    return quant, floating
