import json
import subprocess
import sys

from models.part import load_part


def _run(*args):
    return subprocess.run([sys.executable, "-m", "training.synth", *args], capture_output=True, text=True)


def test_cli_writes_a_data_set_and_a_sheet(tmp_path):
    r = _run("--out", str(tmp_path / "s"), "--n", "9", "--seed", "1", "--quiet", "--sheet", str(tmp_path / "sheet.png"))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 9
    assert (tmp_path / "sheet.png").stat().st_size > 1000


def test_bad_part_file_is_one_line_exit_2(tmp_path):
    raw = json.loads(load_part("default").to_json())
    raw["defects"]["bend_deg"] = [30, 10]
    bad = tmp_path / "mypart.json"
    bad.write_text(json.dumps(raw))
    r = _run("--part", str(bad), "--out", str(tmp_path / "o"), "--n", "3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "mypart.json" in lines[0] and "defects.bend_deg" in lines[0]
    r = _run("--part", "no-such-part", "--out", str(tmp_path / "o"), "--n", "3")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = _run("--out", str(tmp_path / "o"), "--n", "3", "--defect-columns", "4,12")
    assert r.returncode == 2 and "defect-columns" in r.stderr
