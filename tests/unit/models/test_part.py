import json

import pytest

from models.part import CLASSES, PartSpecError, load_part, part_from_dict


def test_default_part_is_part_md():
    spec = load_part("default")
    assert (spec.rows, spec.cols, spec.n_pins) == (3, 9, 27)
    assert spec.pin_diameter == 0.5 and spec.pin_height == 2.0 and spec.hole_ratio == 1.35
    assert spec.camera.frame_width == 640 and spec.camera.frame_height == 480
    assert spec.camera.pitch_px == (42.0, 55.0) and spec.camera.tilt_deg == (15.0, 25.0)
    assert spec.defects.bend_deg == (8.0, 25.0) and spec.defects.nuke_height == (0.0, 0.65)
    assert spec.classes == CLASSES == ("BENDNG", "NUKENG", "OK")


def test_pin_numbering_row_major_from_top_left():
    spec = load_part("default")
    assert spec.pin_number(0, 0) == 1 and spec.pin_number(2, 8) == 27 and spec.pin_number(1, 3) == 13
    assert spec.pin_row_col(13) == (1, 3)
    assert spec.pins_in_columns([4, 7]) == [4, 7, 13, 16, 22, 25]


def _raw():
    return json.loads(load_part("default").to_json())


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.update(rows="three"), "part.rows"),
        (lambda r: r["camera"].update(tilt_deg=[25, 15]), "camera.tilt_deg"),
        (lambda r: r["camera"].update(pitch_px=[42]), "camera.pitch_px"),
        (lambda r: r["defects"].update(nuke_height=[0, 1.5]), "defects.nuke_height"),
        (lambda r: r.update(colour="red"), "part.colour"),
        (lambda r: r["camera"].update(pitch_px=[90, 120]), "camera.pitch_px"),
        (lambda r: r.update(name=""), "name"),
    ],
)
def test_bad_field_is_named(mutate, field):
    raw = _raw()
    mutate(raw)
    with pytest.raises(PartSpecError, match=field.replace(".", r"\.")):
        part_from_dict(raw, source="x.json")


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PartSpecError, match="bad.json.*not valid JSON"):
        load_part(bad)
    with pytest.raises(PartSpecError, match="no such part"):
        load_part("nonexistent-part")


def test_round_trip_and_fingerprint(tmp_path):
    spec = load_part("default")
    path = tmp_path / "mine.json"
    path.write_text(spec.to_json())
    again = load_part(path)
    assert again == spec and again.fingerprint() == spec.fingerprint()
    raw = _raw()
    raw["cols"] = 8
    assert part_from_dict(raw).fingerprint() != spec.fingerprint()


def test_border_pins_and_which_way_a_bend_leans_out_over_the_housing_edge():
    """The back row and the outer columns are the border (PART.md's numbering: pin 1 top-left as
    the camera sees it, the back row on top); a bend leans out when it points within 45 degrees
    of straight out over the nearest edge (0 = right, 90 = away from the camera, 180 = left)."""
    spec = load_part("default")
    assert spec.border_pins() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 18, 19, 27]
    assert spec.outward_directions(1) == [90.0, 180.0] and spec.outward_directions(9) == [90.0, 0.0]
    assert spec.outward_directions(5) == [90.0] and spec.outward_directions(19) == [180.0]
    assert spec.outward_directions(14) == [] and spec.outward_directions(23) == []  # inner, front row
    assert spec.leans_outward(19, 200.0) and not spec.leans_outward(19, 300.0)
    assert spec.leans_outward(27, 350.0) and spec.leans_outward(27, 30.0)  # across 0/360
    assert not spec.leans_outward(27, 90.0)  # the front row has no back edge
    assert spec.leans_outward(1, 134.0) and not spec.leans_outward(14, 90.0)
