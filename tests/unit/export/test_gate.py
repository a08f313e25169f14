"""The INT8 gate and the parity rule, on made-up evaluation rows."""

from export.evaluate import Evaluation, Row, accuracy_problems, parity_problems


def _m(acc, escape):
    return {"n": 600, "accuracy": acc, "ng_ok_accuracy": acc, "escape_rate": escape, "overkill_rate": 0.0}


def _ev(int8_acc, int8_escape, parity=1e-6):
    rows = [
        Row("torch/fp32", _m(0.950, 0.010)),
        Row("onnxruntime/fp32", _m(0.950, 0.010), "torch/fp32"),
        Row("onnxruntime/int8", _m(int8_acc, int8_escape), "onnxruntime/fp32"),
        Row("openvino/fp32", _m(0.950, 0.010), "torch/fp32"),
        Row("openvino/int8", _m(0.950, 0.010), "openvino/fp32"),
    ]
    return Evaluation(rows, {"onnxruntime/fp32": parity, "openvino/fp32": 2e-6})


def test_passes_within_limits():
    assert accuracy_problems(_ev(0.946, 0.010), max_drop=0.5, max_escape_rise=0.0) == []
    assert accuracy_problems(_ev(0.960, 0.005), max_drop=0.5, max_escape_rise=0.0) == []  # better is fine


def test_accuracy_drop_fails():
    (p,) = accuracy_problems(_ev(0.940, 0.010), max_drop=0.5, max_escape_rise=0.0)
    assert "onnxruntime/int8 loses 1.00 accuracy points against onnxruntime/fp32" in p


def test_escape_rise_fails_even_when_accuracy_holds():
    (p,) = accuracy_problems(_ev(0.950, 0.012), max_drop=0.5, max_escape_rise=0.0)
    assert "escape rate" in p and "onnxruntime/int8" in p
    assert accuracy_problems(_ev(0.950, 0.012), max_drop=0.5, max_escape_rise=0.5) == []


def test_parity():
    assert parity_problems(_ev(0.95, 0.01), 1e-3) == []
    (p,) = parity_problems(_ev(0.95, 0.01, parity=5e-3), 1e-3)
    assert "onnxruntime/fp32" in p


def test_an_int8_model_that_rejects_more_good_parts_fails_the_gate():
    """Issue 11: an INT8 model that ships adds no overkill. One more good part rejected in 200
    (+0.5 points) with accuracy and escapes within their limits is refused by default
    (export.quantize --max-overkill-rise 0), and passes when the limit allows it."""
    ev = _ev(0.948, 0.010)
    ev.rows[2].metrics["overkill_rate"] = 0.005
    (p,) = accuracy_problems(ev, max_drop=0.5, max_escape_rise=0.0, max_overkill_rise=0.0)
    assert p.startswith("onnxruntime/int8 overkill rate 0.50% vs 0.00%") and "limit +0" in p
    assert accuracy_problems(ev, max_drop=0.5, max_escape_rise=0.0, max_overkill_rise=0.5) == []
    ev.rows[2].metrics["overkill_rate"] = 0.0  # the same or fewer: fine
    assert accuracy_problems(ev, max_drop=0.5, max_escape_rise=0.0, max_overkill_rise=0.0) == []


def test_the_overkill_limit_is_a_flag_and_an_adapted_model_is_exported_with_the_bases():
    from export.build import ExportConfig
    from models.bundle import export_flags

    assert ExportConfig().max_overkill_rise == 0.0
    flags = export_flags({"export": {"max_overkill_rise": 0.5, "max_escape_rise": 0.0}})
    assert flags[flags.index("--max-overkill-rise") + 1] == "0.5"
