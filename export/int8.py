"""INT8 models and OpenVINO IR from the FP32 ONNX model.

What is quantized, in both INT8 models: the convolutional stem and the transformer's linear
layers (qkv, proj, fc1, fc2), weights per output channel, activations per tensor. What stays float:
  * LayerNorm, Softmax, GELU and the attention's activation-by-activation MatMuls in ONNX Runtime
    (quantizing every op type, its default, is what ruins a ViT). OpenVINO's NNCF transformer
    mode picks its own safe set there.
  * The output heads (dense_head, pin_head): ~0.1% of the compute, and their logits are the verdict.
The stem is a large share of the float time at batch 1 (two 3x3 convs per stage at up to
160x96), so an INT8 model with a float stem cannot be much faster than FP32; an INT8 stem is the
riskier part of the quantization. The accuracy gate (export/evaluate.py) is what guards it, and
`quantize_stem=False` (`--float-stem`) is the fallback when it fails; `python -m export.benchmark`
gives the figures.

ONNX Runtime: static QDQ (`quantize_static`). OpenVINO: NNCF post-training quantization with the
transformer model type (SmoothQuant, bias correction).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export.onnx_export import set_description
from models.bundle import INPUT_NAME, META_KEY, OV_RT_KEY

ORT_DEFAULT_OPS = ("MatMul", "Gemm")
# PinViT's output heads (models/pinvit.py: dense_head, pin_head) stay float in both INT8 models:
# they are ~0.1% of the compute, and their logits are the verdict.
FLOAT_MODULES = ("dense_head", "pin_head")


def float_nodes(onnx_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes of the output heads (the exporter names nodes /module/Op)."""
    m = onnx.load(str(onnx_path), load_external_data=False)
    return [
        n.name
        for n in m.graph.node
        if n.op_type in ("MatMul", "Gemm") and any(f"/{mod}/" in n.name for mod in FLOAT_MODULES)
    ]


def weight_nodes(onnx_path: Path, op_types: tuple[str, ...]) -> list[str]:
    """Nodes of `op_types` whose second input is a constant weight, minus the output heads.

    ONNX Runtime's QDQ quantizer ignores its MatMulConstBOnly option and would also quantize the
    attention's activation x activation MatMuls (and with them Softmax's input and output), so the
    nodes are named explicitly.
    """
    m = onnx.load(str(onnx_path), load_external_data=False)
    consts = {i.name for i in m.graph.initializer} | {n.output[0] for n in m.graph.node if n.op_type == "Constant"}
    keep_float = set(float_nodes(onnx_path))
    return [
        n.name
        for n in m.graph.node
        if n.op_type in op_types and len(n.input) > 1 and n.input[1] in consts and n.name not in keep_float
    ]


def quantize_onnx(
    fp32: Path,
    out: Path,
    batches: Callable[[], Iterator[np.ndarray]],
    description: dict[str, Any],
    op_types: tuple[str, ...] = ORT_DEFAULT_OPS,
    method: str = "minmax",
    reduce_range: bool = False,
) -> Path:
    """Static QDQ INT8 with ONNX Runtime. `batches()` yields float32 NCHW calibration inputs.

    Activations and weights are both unsigned (u8 x u8). ONNX Runtime runs u8 x s8 on x86 with
    an instruction (VPMADDUBSW) whose pairwise sums saturate on CPUs without VNNI, and signed
    activations are shifted to that same path there; an AVX2-only CPU then loses ~10 points of
    accuracy (see ORT's quantization docs, "when and why do I need to try U8U8"). u8 x u8 takes
    another kernel on every x86 CPU and agrees with FP32 on both kinds here.
    reduce_range: 7-bit weights, the other documented way round the saturation; off by default.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = batches()

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

        def rewind(self) -> None:
            self._it = batches()

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"ORT calibration method: expected one of {', '.join(methods)}, got {method!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_preprocess_hint():
        quantize_static(
            str(fp32),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            calibrate_method=methods[method],
            nodes_to_quantize=weight_nodes(fp32, op_types),
            extra_options={
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # one scale per output feature
                "CalibMaxIntermediateOutputs": 16,  # bounded memory with hundreds of calibration frames
            },
        )
    m = onnx.load(str(out))
    set_description(m, description)
    onnx.save(m, str(out))
    return out


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    """ORT logs a hint to run its model pre-processing (symbolic shapes + graph optimisation)
    before quantizing. Not done on purpose: it renames and fuses nodes, and the quantized nodes
    are chosen by name (weight_nodes); the hint would only confuse the person reading the log."""
    f = _DropHint()
    logging.getLogger().addFilter(f)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(f)


def to_openvino(onnx_path: Path) -> Any:
    """The FP32 ONNX model as an in-memory OpenVINO model."""
    import openvino as ov

    return ov.convert_model(str(onnx_path))


def save_openvino(model: Any, xml: Path, description: dict[str, Any]) -> Path:
    """Save IR (xml + bin) with the description in rt_info; weights stay FP32 (no FP16 compression)."""
    import openvino as ov

    model.set_rt_info(json.dumps(description, sort_keys=True), [META_KEY, OV_RT_KEY])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def quantize_openvino(
    model: Any,
    samples: Callable[[int], np.ndarray],
    n: int,
    keep_float: list[str],
    quantize_stem: bool = True,
    progress: bool = True,
) -> Any:
    """NNCF post-training INT8 of an OpenVINO model; `samples(i)` is calibration frame i as (1, 3, H, W).
    `keep_float`: node names left in float (OpenVINO keeps the ONNX node names); convolutions (the
    stem) are quantized too unless `quantize_stem` is False."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # nncf imports torch's; no CUDA here
    import nncf

    if not progress:
        nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset(range(n), samples)
    return nncf.quantize(
        model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,  # symmetric weights, asymmetric activations
        subset_size=n,
        ignored_scope=nncf.IgnoredScope(
            names=keep_float, types=[] if quantize_stem else ["Convolution"], validate=False
        ),
    )
