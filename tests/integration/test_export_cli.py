"""The export command lines end to end: quantize (with its gate) and benchmark."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tiny_bundles import tiny_bundle, tiny_checkpoint

from models.bundle import sha256_file


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cli") / "bundle")


def test_benchmark_table_json_and_chart(bundle, tmp_path):
    """The table, the JSON and the chart report the frames the benchmark was given: each model's
    accuracy is recounted here from the same folder with the station's runtime and scorer."""
    import cv2

    from export.data import render
    from models.part import load_part
    from models.runtime import Runtime
    from models.scoring import score

    folder = render(load_part("default"), tmp_path / "frames", 9, 5, "photo=1", 1.0, 1, False)
    r = _run(
        "export.benchmark",
        "--model",
        str(bundle),
        "--images",
        str(folder),
        "--iters",
        "10",
        "--quiet",
        "--json",
        str(tmp_path / "b.json"),
        "--png",
        str(tmp_path / "b.png"),
    )
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "/" in line.split("|")[1]]
    assert [row.split("|")[1].strip() for row in rows] == [
        "openvino/int8",
        "onnxruntime/int8",
        "onnxruntime/fp32",
        "openvino/fp32",
    ]
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["frames"] == 9 and len(res["rows"]) == 4
    for row, line in zip(res["rows"], rows, strict=True):
        backend, precision = row["model"].split("/")
        known = score(Runtime(bundle, backend=backend, precision=precision), folder, progress=False).metrics()
        assert row["accuracy"] == pytest.approx(known["accuracy"]), row["model"]
        assert row["escape_rate"] == pytest.approx(known["escape_rate"]), row["model"]
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[1] == f"{row['latency_ms_p50']:.1f}" and cells[5] == f"{row['accuracy']:.2%}"  # table == JSON
        files = json.loads((bundle / "bundle.json").read_text())["models"][row["model"]]["files"]
        assert row["size_mb"] == pytest.approx(sum((bundle / f).stat().st_size for f in files) / 1e6)
    chart = cv2.imread(str(tmp_path / "b.png"))
    assert chart is not None and chart.shape[:2] == (360, 1440)  # the four panels, 16 x 4 in at 90 dpi
    assert len(np.unique(chart.reshape(-1, 3), axis=0)) > 10  # drawn, not blank
    from models.cpu import isa_text

    assert f"({isa_text()}, " in r.stdout.splitlines()[0]  # the header names the CPU's instruction sets
    pick = res["station_choice"]["model"]
    assert f"\nthe station would run {pick}: " in r.stdout and pick in [row["model"] for row in res["rows"]]
    r = _run("export.benchmark", "--model", str(tmp_path), "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "bundle.json" in r.stderr


def test_benchmark_caps_openvino_at_an_older_instruction_set(bundle, tmp_path):
    """--max-isa AVX2: OpenVINO runs as on an AVX2-only PC, and the output says so (and that ONNX
    Runtime could not be capped), so a figure is never quoted for the wrong CPU."""
    r = _run("export.benchmark", "--model", str(bundle), "--n", "6", "--iters", "10", "--quiet", "--max-isa", "avx2")
    assert r.returncode == 0, r.stderr
    assert ", OpenVINO capped at AVX2, " in r.stdout.splitlines()[0]
    assert "OpenVINO ran capped at AVX2 (ONEDNN_MAX_CPU_ISA); ONNX Runtime used every" in r.stdout
    assert "capped at AVX2" in r.stdout.split("the station would run", 1)[1]  # its self-check ran capped too
    r = _run("export.benchmark", "--model", str(bundle), "--max-isa", "avx3")
    assert r.returncode == 2 and "invalid choice: 'AVX3'" in r.stderr


@pytest.mark.slow
def test_quantize_writes_a_checked_bundle_and_the_gate_can_fail(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt" / "model.safetensors", seed=1)
    out = tmp_path / "bundle"
    args = [
        "--checkpoint",
        str(ckpt),
        "--calib-n",
        "30",
        "--eval-n",
        "30",
        "--quiet",
        "--max-drop",
        "100",
        "--max-escape-rise",
        "100",
        "--max-overkill-rise",
        "100",
    ]
    r = _run("export.quantize", *args, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    for needle in ("[1/8]", "[8/8]", "| torch/fp32 |", "| openvino/int8 |", "escape", "overkill", "parity vs torch"):
        assert needle in r.stdout, r.stdout
    info = json.loads((out / "bundle.json").read_text())
    assert info["gate"]["passed"] and len(info["evaluation"]["rows"]) == 5
    assert info["export"]["calib_n"] == 30 and info["evaluation"]["frames"] == 30
    before = sha256_file(out / "bundle.json")

    # a gate that cannot be met (INT8 must *gain* 100 points): exit 1, the bundle is left as it was
    r = _run(
        "export.quantize",
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--calib-n",
        "30",
        "--eval-n",
        "30",
        "--quiet",
        "--max-drop",
        "-100",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL onnxruntime/int8 loses" in r.stdout and "was not changed" in r.stderr
    assert sha256_file(out / "bundle.json") == before

    # --no-gate writes it anyway and records the failure
    r = _run(
        "export.quantize",
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--calib-n",
        "30",
        "--eval-n",
        "30",
        "--quiet",
        "--max-drop",
        "-100",
        "--no-gate",
        "--models",
        "onnxruntime/int8",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((out / "bundle.json").read_text())
    assert not info["gate"]["passed"] and sorted(info["models"]) == ["onnxruntime/fp32", "onnxruntime/int8"]
    assert not (out / "openvino_int8.xml").exists()  # files of the older, larger bundle are gone
