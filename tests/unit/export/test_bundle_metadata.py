"""The bundle describes itself, identically, in bundle.json, the ONNX metadata and the OpenVINO rt_info."""

import json
from collections import Counter

import onnx
import pytest
from tiny_bundles import checkpoint_of, tiny_bundle

from models.bundle import FORMAT, META_KEY, MODEL_FILES, OV_RT_KEY, describe, read_bundle, sha256_file
from models.part import load_part


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("meta") / "bundle")


def _embedded(path):
    if path.suffix == ".onnx":
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props[META_KEY])
    import openvino as ov

    return json.loads(ov.Core().read_model(str(path)).get_rt_info([META_KEY, OV_RT_KEY]).astype(str))


def test_round_trip(bundle):
    from models.checkpoint import read_spec

    spec = read_spec(checkpoint_of(bundle))
    info = read_bundle(bundle)
    part = load_part("default")
    assert info["format"] == FORMAT
    assert info["classes"] == ["BENDNG", "NUKENG", "OK"]
    assert info["input"] == spec["input"] and info["input"]["crop"] == [0, 48, 640, 432]
    assert info["input"]["mean"] == [0.5, 0.5, 0.5] and info["input"]["width"] == 320
    assert info["thresholds"] == spec["thresholds"]
    assert info["part"] == json.loads(part.to_json()) and info["part_fingerprint"] == part.fingerprint()
    assert info["config_hash"] == spec["config_hash"] and info["data"] == spec["data"]
    assert info["code_version"] == spec["code_version"]
    assert info["source"]["sha256"] == sha256_file(checkpoint_of(bundle))
    expected = json.loads(json.dumps(describe(spec, "tiny-0", info["source"])))
    for key, files in MODEL_FILES.items():
        emb = _embedded(bundle / files[0])
        assert emb.pop("model") == key
        assert emb == expected, key  # every model file carries the whole description
        for name in files:
            entry = info["models"][key]["files"][name]
            assert entry["sha256"] == sha256_file(bundle / name)
            assert entry["bytes"] == (bundle / name).stat().st_size
    assert info["gate"]["passed"] is None and info["export"]["calib_n"] == 16  # no evaluation set: not measured


def test_onnx_graph_interface(bundle):
    m = onnx.load(str(bundle / "model_fp32.onnx"))
    (inp,) = m.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 192, 320]
    assert [o.name for o in m.graph.output] == ["scores", "pins", "heatmap"]
    assert all(o.type.tensor_type.shape.dim[0].dim_param for o in m.graph.output)  # dynamic batch out too
    assert "If" not in {n.op_type for n in m.graph.node}  # the exporter's squeeze-If is folded


def _onnx_quantized(path):
    """(nodes whose weight input is int8-dequantized, source ops of quantized activations)."""
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer} | {n.output[0] for n in m.graph.node if n.op_type == "Constant"}
    int8_weights = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    quantized = [n for n in m.graph.node if any(i in int8_weights for i in n.input)]
    producers = {o: n for n in m.graph.node for o in n.output}
    q_from = Counter(
        producers[n.input[0]].op_type if n.input[0] in producers else "input"
        for n in m.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits
    )
    return quantized, q_from


def _n_convs(bundle):
    return sum(n.op_type == "Conv" for n in onnx.load(str(bundle / "model_fp32.onnx")).graph.node)


def test_int8_onnx_quantizes_the_stem_and_weight_matmuls_only(bundle):
    quantized, q_from = _onnx_quantized(bundle / "model_int8.onnx")
    # qkv, proj, fc1, fc2 in each of 4 blocks, and every conv of the stem
    assert Counter(n.op_type for n in quantized) == {"MatMul": 16, "Conv": _n_convs(bundle)}
    names = [n.name for n in quantized]
    assert not any("attn/MatMul" in n for n in names)  # attention's activation x activation stays float
    assert not any("_head/" in n for n in names)  # the output heads stay float
    # activations are quantized only where a quantized node reads or writes them
    allowed = {"LayerNormalization", "MatMul", "Mul", "Add", "Transpose", "Reshape", "Conv", "Relu", "input"}
    assert set(q_from) <= allowed, q_from


def _ov_weight_quantizers(path):
    # NNCF names a weight quantizer "<node>/fq_weights_<i>"; if a new NNCF renames it, update the pattern
    import re

    xml = path.read_text()
    return set(re.findall(r'name="([^"]+)/fq_weights_\d+"', xml)), xml


def test_openvino_int8_quantizes_the_stem_and_keeps_heads_float(bundle):
    import re

    weights, xml = _ov_weight_quantizers(bundle / "openvino_int8.xml")
    blocks = {w for w in weights if "patch_embed" not in w}
    assert len(blocks) == 16, sorted(weights)  # qkv, proj, fc1, fc2 in each of the 4 blocks
    assert all(re.fullmatch(r"/blocks/blocks\.\d/(attn/qkv|attn/proj|mlp/fc1|mlp/fc2)/MatMul", w) for w in blocks)
    assert len(weights - blocks) == _n_convs(bundle)  # every conv of the stem
    assert not re.search(r"_head/[^\"]*/fq_", xml)


def test_float_stem_keeps_the_stem_float_in_both_int8_models(tmp_path_factory):
    b = tiny_bundle(
        tmp_path_factory.mktemp("float-stem") / "bundle",
        models=["onnxruntime/int8", "openvino/int8"],
        quantize_stem=False,
    )
    quantized, _ = _onnx_quantized(b / "model_int8.onnx")
    assert Counter(n.op_type for n in quantized) == {"MatMul": 16}
    weights, xml = _ov_weight_quantizers(b / "openvino_int8.xml")
    assert len(weights) == 16 and not any("patch_embed" in w for w in weights), sorted(weights)
