"""Input files that are wrong: labels.csv rows, binary files, part specs with NaN, a bundle.json
with nonsense types. Every one is refused with one line naming the file (and line) and what is
wrong, never a traceback and never silently accepted."""

import json
import shutil

import pytest
from fault_helpers import REPO, assert_one_line_error

from models.labels import LabelsError, read_labels
from models.part import PartSpecError, load_part, part_from_dict


def labels_file(tmp_path, *rows):
    p = tmp_path / "labels.csv"
    p.write_text("file,label,pin\n" + "".join(r + "\n" for r in rows))
    return p


@pytest.mark.parametrize(
    "rows, where, what",
    [
        (["a.png,BENDNG,3", "b.png,OK,0", "a.png,NUKENG,4"], 4, "listed again (first at line 2)"),
        (["a.png,BENDNG,99"], 2, "1..27"),
        (["a.png,NUKENG,-3"], 2, "1..27"),
        (["a.png,OK,5"], 2, "pin 0"),
        (["a.png,BENDNG,0"], 2, "needs its pin"),
        (["a.png,NUKENG,"], 2, "needs its pin"),
        (["a.png,BENT,3"], 2, "unknown label"),
        (["a.png,BENDNG,x"], 2, "must be a number"),
        ([",OK,0"], 2, "no file name"),
    ],
)
def test_read_labels_refuses_bad_rows_with_file_and_line(tmp_path, rows, where, what):
    p = labels_file(tmp_path, *rows)
    with pytest.raises(LabelsError) as e:
        read_labels(p, n_pins=27)
    assert str(e.value).startswith(f"{p}:{where}: ") and what in str(e.value), str(e.value)


def test_read_labels_without_the_part_still_refuses_negative_pins(tmp_path):
    with pytest.raises(LabelsError, match="-3"):
        read_labels(labels_file(tmp_path, "a.png,BENDNG,-3"))


def test_read_labels_refuses_a_binary_file(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01binary")
    with pytest.raises(LabelsError, match="not a UTF-8 text file"):
        read_labels(p)


def test_predict_refuses_a_binary_labels_csv(labelled, capsys):
    from edge_app.predict import main

    data = labelled()
    (data / "labels.csv").write_bytes(b"\xff\xd8\xff\xe0 a JPEG where the labels should be \x00\x81")
    assert main(["--images", str(data), "--out", str(data / "p.csv"), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, data / "labels.csv")
    assert not (data / "p.csv").exists()


def test_predict_refuses_labels_naming_a_pin_the_part_does_not_have(labelled, capsys):
    from edge_app.predict import main

    data = labelled()
    text = (data / "labels.csv").read_text().splitlines()
    text[-1] = text[-1].split(",")[0] + ",BENDNG,99"
    (data / "labels.csv").write_text("\n".join(text) + "\n")
    assert main(["--images", str(data), "--out", str(data / "p.csv"), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{data / 'labels.csv'}:5:", "1..27")


def test_evaluate_refuses_a_binary_labels_csv(labelled, capsys):
    from training.evaluate import main

    data = labelled()
    (data / "labels.csv").write_bytes(b"\x00\xff\xfe\x81 not text")
    assert main(["--images", str(data), "--out", str(data / "p.csv"), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, data / "labels.csv")


def test_a_binary_part_file_is_refused(tmp_path):
    p = tmp_path / "part.json"
    p.write_bytes(b"\xff\xfe\x00\x00{\x00\x81")
    with pytest.raises(PartSpecError, match="not a UTF-8 text file") as e:
        load_part(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("camera", "tilt_deg", [float("nan"), 20.0]),
        ("camera", "pitch_px", [42.0, float("nan")]),
        ("defects", "bend_deg", [float("-inf"), 20.0]),
        ("part", "housing_depth", [1.2, float("inf")]),
        ("camera", "illumination", float("nan")),
        ("part", "pin_height", float("inf")),
    ],
)
def test_part_spec_refuses_non_finite_numbers(tmp_path, section, key, value):
    raw = json.loads(load_part("default").to_json())
    (raw if section == "part" else raw[section])[key] = value
    p = tmp_path / "part.json"
    p.write_text(json.dumps(raw))  # json writes NaN / Infinity, and reads them back
    with pytest.raises(PartSpecError) as e:
        load_part(p)
    assert str(p) in str(e.value) and key in str(e.value)
    with pytest.raises(PartSpecError):
        part_from_dict(raw)


@pytest.mark.parametrize("classes", [5, None, "BENDNG,NUKENG,OK", {"BENDNG": 1}])
def test_predict_refuses_a_bundle_whose_classes_are_not_a_list(tmp_path, labelled, capsys, classes):
    from edge_app.predict import main

    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "models" / "default", bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["classes"] = classes
    (bundle / "bundle.json").write_text(json.dumps(info))
    data = labelled()
    assert main(["--model", str(bundle), "--images", str(data), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, bundle / "bundle.json", "classes")


def test_predict_refuses_threads_below_one(labelled, capsys):
    from edge_app.predict import main

    data = labelled()
    with pytest.raises(SystemExit) as e:
        main(["--images", str(data), "--out", str(data / "p.csv"), "--threads", "-1"])
    assert e.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--threads -1")
