"""PyTorch -> ONNX (FP32), with a dynamic batch and the bundle description embedded.

The model's post-processing is part of its `forward`, so the ONNX graph returns what the station
uses: scores, pins, heatmap. The legacy (TorchScript) exporter is used: it needs no extra package
and handles this model exactly (the parity check proves it on every export).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import onnx
from onnx import helper, shape_inference

from models.bundle import INPUT_NAME, META_KEY, OUTPUT_NAMES

OPSET = 17  # LayerNormalization is a single op from 17 on; ORT >= 1.14 and OpenVINO read it


def export_onnx(model: Any, path: Path, input_hw: tuple[int, int], description: dict[str, Any]) -> Path:
    """Write `model` (a torch module) as FP32 ONNX: input "input" (N, 3, H, W), outputs scores, pins, heatmap."""
    import torch

    model.eval()
    x = torch.zeros(2, 3, *input_hw)  # batch 2, so no size-1 dimension gets baked in as a constant
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation notice about the legacy exporter
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    m = onnx.load(str(path))
    fold_static_squeeze(m)
    set_description(m, description)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def set_description(m: onnx.ModelProto, description: dict[str, Any]) -> None:
    """Embed the bundle description as JSON in metadata_props (replacing an older one)."""
    keep = [p for p in m.metadata_props if p.key != META_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    helper.set_model_props(m, {**{p.key: p.value for p in keep}, META_KEY: json.dumps(description, sort_keys=True)})
    m.producer_name = "pininspect export"


def get_description(m: onnx.ModelProto) -> dict[str, Any] | None:
    for p in m.metadata_props:
        if p.key == META_KEY:
            return json.loads(p.value)
    return None


def fold_static_squeeze(m: onnx.ModelProto) -> int:
    """Replace `If(size == 1, Squeeze, Identity)` by a plain Squeeze where shape inference proves
    the size is 1. The exporter writes that If for `t.squeeze(1)` once the batch is dynamic; it
    splits the graph into subgraphs that quantizers and OpenVINO handle less well. Returns how many
    were folded; graphs without the pattern are left as they are."""
    inferred = _infer_shapes(m)
    dims: dict[str, list[Any]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.type.tensor_type.HasField("shape"):
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    inits = {i.name: i for i in m.graph.initializer}
    folded = 0
    for node in list(m.graph.node):
        if node.op_type != "If":
            continue
        branches = {a.name: a.g for a in node.attribute}
        then_g, else_g = branches.get("then_branch"), branches.get("else_branch")
        if then_g is None or else_g is None or len(node.output) != 1:
            continue
        squeeze = [n for n in then_g.node if n.op_type == "Squeeze"]
        if len(squeeze) != 1 or [n.op_type for n in else_g.node] != ["Identity"]:
            continue
        src = squeeze[0].input[0]
        if else_g.node[0].input[0] != src or len(squeeze[0].input) < 2:
            continue
        axes_name = squeeze[0].input[1]
        axes_node = next((n for n in then_g.node if n.op_type == "Constant" and n.output[0] == axes_name), None)
        if axes_node is None:
            axes_node = consts.get(axes_name)
        if axes_node is None and axes_name not in inits:
            continue
        axes_t = inits[axes_name] if axes_name in inits else axes_node.attribute[0].t  # type: ignore[union-attr]
        axes = [int(a) for a in onnx.numpy_helper.to_array(axes_t).reshape(-1)]
        shape = dims.get(src)
        if not shape or any(shape[a] != 1 for a in axes):
            continue  # not provably 1: keep the If
        axes_out = f"{node.output[0]}__squeeze_axes"
        const = helper.make_node(
            "Constant", [], [axes_out], value=helper.make_tensor(axes_out, onnx.TensorProto.INT64, [len(axes)], axes)
        )
        sq = helper.make_node("Squeeze", [src, axes_out], list(node.output), name=f"{node.name}_folded")
        pos = list(m.graph.node).index(node)
        m.graph.node.remove(node)
        m.graph.node.insert(pos, sq)
        m.graph.node.insert(pos, const)
        folded += 1
    if folded:
        _prune(m)
    return folded


def _infer_shapes(m: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's symbolic shape inference: unlike onnx's own it follows shapes computed in
    the graph (Shape -> Concat -> Expand), which is where the size-1 dimension comes from."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(m, auto_merge=True)
    except Exception:  # an op it does not know: fall back to onnx's inference (folds less, never wrong)
        return shape_inference.infer_shapes(m)


def _prune(m: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads (the If's now unused size test)."""
    outputs = {o.name for o in m.graph.output}
    while True:
        used = {i for n in m.graph.node for i in n.input} | outputs
        for n in m.graph.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    used |= {i for sub in a.g.node for i in sub.input}
        dead = [n for n in m.graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            m.graph.node.remove(n)
