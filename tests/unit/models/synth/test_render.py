import numpy as np
import pytest

from models.part import load_part
from models.synth.render import ground_truth, render, sample_params, without_defect

SPEC = load_part("default")


def _params(label, pin, style, seed):
    return sample_params(SPEC, np.random.default_rng(seed), label, pin, style)


def test_same_params_same_pixels():
    p = _params("BENDNG", 5, "photo", 3)
    a, b = render(SPEC, p), render(SPEC, p)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
@pytest.mark.parametrize("style", ["photo", "flat"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_defect_differs_from_ok_twin_only_around_the_labelled_pin(label, style, seed):
    pin = [4, 13, 27][seed - 1]
    p = _params(label, pin, style, seed)
    twin = without_defect(p)
    img, ok = render(SPEC, p), render(SPEC, twin)
    diff = np.abs(img.astype(int) - ok.astype(int)).max(-1)
    changed = np.argwhere(diff > 3)
    assert len(changed) > 20, "the defect must be visible"
    truth = ground_truth(SPEC, p)
    bx, by, tx, ty = truth["pins"][pin - 1]
    _, _, ox, oy = ground_truth(SPEC, twin)["pins"][pin - 1]  # where the straight pin's tip was
    pts = np.array([[bx, by], [tx, ty], [ox, oy]])
    dist = np.min(np.linalg.norm(changed[:, None, ::-1] - pts[None], axis=-1), axis=1)
    reach = 0.8 * truth["pitch_px"] + 16  # pin radius + blur, and JPEG's 8x8 blocks
    assert dist.max() < reach, f"pixels changed {dist.max():.0f} px from pin {pin} (allowed {reach:.0f})"


def test_ground_truth_moves_only_the_defective_pin():
    p = _params("BENDNG", 14, "photo", 7)
    a = np.array(ground_truth(SPEC, p)["pins"])
    b = np.array(ground_truth(SPEC, without_defect(p))["pins"])
    moved = np.nonzero(np.abs(a - b).max(1) > 0.5)[0]
    assert list(moved) == [13]
    assert np.allclose(a[13, :2], b[13, :2])  # the base stays in its hole


def test_pin_numbering_matches_the_image():
    """Pin 1 is top-left as the camera sees it; pin 27 bottom-right."""
    pins = np.array(ground_truth(SPEC, _params("OK", 0, "photo", 4))["pins"])
    assert pins[0, 0] < pins[8, 0] and pins[0, 1] < pins[18, 1]
    assert pins[26, 0] > pins[18, 0] and pins[26, 1] > pins[8, 1]
    assert (pins[:, 3] < pins[:, 1]).all(), "tips stand above their bases in the frame"


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        sample_params(SPEC, rng, "OK", 3, "photo")
    with pytest.raises(ValueError):
        sample_params(SPEC, rng, "BENDNG", 0, "photo")
    with pytest.raises(ValueError):
        sample_params(SPEC, rng, "OK", 0, "oil-painting")


def test_away_bends_are_small_and_lean_away_from_the_camera():
    lo, hi = SPEC.defects.bend_deg
    for seed in range(20):
        p = sample_params(SPEC, np.random.default_rng(seed), "BENDNG", 14, "flat", away_bends=1.0)
        assert lo <= p["bend_deg"] <= lo + (hi - lo) / 3
        assert 60 <= p["bend_dir_deg"] <= 120
        # seen from the front and above, the tip only climbs: the bar grows longer, barely sideways
        _, _, tx, ty = ground_truth(SPEC, p)["pins"][13]
        _, _, ox, oy = ground_truth(SPEC, without_defect(p))["pins"][13]
        assert oy - ty > 1.5 * abs(tx - ox) - 2


def test_away_bends_zero_draws_as_before():
    """The option costs no random number when off: data sets rendered before it stay identical."""
    a = sample_params(SPEC, np.random.default_rng(5), "BENDNG", 3, "photo", extra_defects=[(9, "BENDNG")])
    b = sample_params(
        SPEC, np.random.default_rng(5), "BENDNG", 3, "photo", extra_defects=[(9, "BENDNG")], away_bends=0.0
    )
    c = sample_params(
        SPEC, np.random.default_rng(5), "BENDNG", 3, "photo", extra_defects=[(9, "BENDNG")], away_bends=0.5
    )
    assert a == b
    assert a["tilt_deg"] == c["tilt_deg"]  # the scene is drawn first; only the defects differ


def test_vary_zero_draws_as_before_and_vary_records_the_look():
    a = sample_params(SPEC, np.random.default_rng(5), "NUKENG", 3, "photo")
    assert a == sample_params(SPEC, np.random.default_rng(5), "NUKENG", 3, "photo", vary=0.0) and "look" not in a
    b = sample_params(SPEC, np.random.default_rng(5), "NUKENG", 3, "photo", vary=1.0)
    assert {k: v for k, v in b.items() if k != "look"} == a  # the look is drawn last: the scene is the same
    assert 0.7 <= b["look"]["pin_width"] <= 1.45 and not np.array_equal(render(SPEC, a), render(SPEC, b))


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_varied_look_keeps_the_labels_true(label, seed):
    """With pins drawn thicker, shadows cast and holes restyled, a defect still changes pixels only
    around its pin (and its shadow, which falls up to shadow_len pitches from the base)."""
    pin = [1, 10, 19, 27][seed - 4]
    p = sample_params(SPEC, np.random.default_rng(seed), label, pin, "photo", vary=1.0)
    reach = (0.8 + p["look"]["shadow_len"] * (p["look"]["shadow"] > 0)) * 1.45 * p["pitch_px"] + 16
    _assert_changes_only_near(p, pin, reach)


def _assert_changes_only_near(p, pin, reach):
    """The defect is visible, and no pixel changes (against the OK twin) farther than `reach` px
    from the pin's base, its tip, or where its straight tip was."""
    twin = without_defect(p)
    diff = np.abs(render(SPEC, p).astype(int) - render(SPEC, twin).astype(int)).max(-1)
    changed = np.argwhere(diff > 3)
    assert len(changed) > 20, "the defect must be visible"
    truth = ground_truth(SPEC, p)
    bx, by, tx, ty = truth["pins"][pin - 1]
    _, _, ox, oy = ground_truth(SPEC, twin)["pins"][pin - 1]
    pts = np.array([[bx, by], [tx, ty], [ox, oy]])
    dist = np.min(np.linalg.norm(changed[:, None, ::-1] - pts[None], axis=-1), axis=1)
    assert dist.max() < reach, f"pixels changed {dist.max():.0f} px from pin {pin} (allowed {reach:.0f})"


def test_hard_light_zero_draws_as_before_and_only_photo_frames_are_lit():
    a = sample_params(SPEC, np.random.default_rng(8), "BENDNG", 3, "photo", vary=1.0, extra_defects=[(9, "NUKENG")])
    assert a == sample_params(
        SPEC, np.random.default_rng(8), "BENDNG", 3, "photo", vary=1.0, extra_defects=[(9, "NUKENG")], hard_light=0.0
    )
    b = sample_params(
        SPEC, np.random.default_rng(8), "BENDNG", 3, "photo", vary=1.0, extra_defects=[(9, "NUKENG")], hard_light=1.0
    )
    assert {k: v for k, v in b.items() if k != "light"} == a  # the light is drawn last: the same scene and defects
    assert 35 <= b["light"]["elevation"] <= 70 and not np.array_equal(render(SPEC, a), render(SPEC, b))
    assert "light" not in sample_params(SPEC, np.random.default_rng(8), "OK", 0, "flat", hard_light=1.0)


def _lit_from(azimuth):
    p = sample_params(SPEC, np.random.default_rng(3), "OK", 0, "photo", hard_light=1.0)
    p.update(housing_colour=[200, 200, 200], tilt_deg=20.0, azimuth_deg=0.0, roll_deg=0.0, illumination=0.0)
    p.update(vignette=0.0, glare=0.0, noise_sigma=0.0, blur_sigma=0.0, jpeg_quality=0, gamma=1.0, color_cast=[0.0] * 3)
    p["light"].update(azimuth=azimuth, elevation=45.0, shadow=0.8, shadow_blur=0.5, background_blur=0.0)
    return p


@pytest.mark.parametrize("row", [0, 1, 2])
def test_a_pin_casts_its_shadow_away_from_the_light(row):
    """Lit from the right, the housing just left of a row's first pin lies in that pin's shadow;
    lit from the left, in the light. The same the other way round right of the row's last pin."""
    from models.synth.render import Camera, pin_geometry

    from_right, from_left = _lit_from(0.0), _lit_from(180.0)
    base, _ = pin_geometry(SPEC, from_right)
    cam = Camera(from_right)
    first, last = row * SPEC.cols, row * SPEC.cols + SPEC.cols - 1
    left, right = cam.project(base[first] + [-0.5, 0.0, 0.0]), cam.project(base[last] + [0.5, 0.0, 0.0])
    img_r, img_l = render(SPEC, from_right), render(SPEC, from_left)

    def grey(img, pt):
        x, y = (int(round(v)) for v in pt)
        return float(img[y - 1 : y + 2, x - 1 : x + 2].mean())

    assert grey(img_r, left) < 0.5 * grey(img_l, left)
    assert grey(img_l, right) < 0.5 * grey(img_r, right)


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
@pytest.mark.parametrize("seed", [4, 5, 6])
def test_hard_light_keeps_the_labels_true(label, seed):
    """Under a hard light a defect changes pixels only around its pin and along its shadow, which
    reaches pin height / tan(elevation) across the housing."""
    import math

    pin = [1, 14, 27][seed - 4]
    p = sample_params(SPEC, np.random.default_rng(seed), label, pin, "photo", vary=1.0, hard_light=1.0)
    shadow = SPEC.pin_height / math.tan(math.radians(p["light"]["elevation"]))
    _assert_changes_only_near(p, pin, (0.8 + shadow) * 1.45 * p["pitch_px"] + 16)


def test_pin_shade_zero_draws_as_before_and_shades_only_photo_frames():
    a = sample_params(SPEC, np.random.default_rng(9), "NUKENG", 20, "photo", vary=1.0, hard_light=0.5)
    assert a == sample_params(
        SPEC, np.random.default_rng(9), "NUKENG", 20, "photo", vary=1.0, hard_light=0.5, pin_shade=0.0
    )
    b = sample_params(SPEC, np.random.default_rng(9), "NUKENG", 20, "photo", vary=1.0, hard_light=0.5, pin_shade=1.0)
    assert {k: v for k, v in b.items() if k != "shade"} == a  # drawn last: the same scene, light and defect
    assert 0.1 <= b["shade"]["level"] <= 0.55 and not np.array_equal(render(SPEC, a), render(SPEC, b))
    assert "shade" not in sample_params(SPEC, np.random.default_rng(9), "OK", 0, "flat", pin_shade=1.0)


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
@pytest.mark.parametrize("seed", [4, 5, 6])
def test_shaded_pins_keep_the_labels_true(label, seed):
    pin = [2, 15, 26][seed - 4]
    p = sample_params(SPEC, np.random.default_rng(seed), label, pin, "photo", vary=1.0, pin_shade=1.0)
    _assert_changes_only_near(p, pin, 0.8 * 1.45 * p["pitch_px"] + 16)


def test_shade_rows_zero_draws_as_before_and_only_on_shaded_frames():
    kw = dict(vary=1.0, pin_shade=1.0)
    a = sample_params(SPEC, np.random.default_rng(11), "BENDNG", 5, "photo", **kw)
    assert a == sample_params(SPEC, np.random.default_rng(11), "BENDNG", 5, "photo", shade_rows=0.0, **kw)
    b = sample_params(SPEC, np.random.default_rng(11), "BENDNG", 5, "photo", shade_rows=1.0, **kw)
    levels = b["shade"].pop("row_levels")  # drawn last: the same scene, defect and shade otherwise
    assert b == a and len(levels) == SPEC.rows and all(0.1 <= v <= 0.9 for v in levels)
    unshaded = sample_params(SPEC, np.random.default_rng(11), "OK", 0, "flat", pin_shade=1.0, shade_rows=1.0)
    assert "shade" not in unshaded


def test_each_row_is_drawn_at_its_own_darkness():
    """The front row left nearly unshaded, the rows behind dark: measured along the pins, only the
    front row's lower halves come out bright."""
    from training import shading

    p = sample_params(SPEC, np.random.default_rng(2), "OK", 0, "photo", vary=1.0, pin_shade=1.0)
    p["shade"] = {"up_to": 0.6, "level": 0.3, "soft": 0.1, "row_levels": [0.2, 0.2, 0.95]}
    ratios = shading.pin_ratios(render(SPEC, p), ground_truth(SPEC, p)["pins"])
    back, front = np.median(ratios[: SPEC.cols]), np.median(ratios[-SPEC.cols :])
    assert front > back + 0.3, f"front row {front:.2f} vs back row {back:.2f}"


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
def test_rows_shaded_apart_keep_the_labels_true(label):
    p = sample_params(SPEC, np.random.default_rng(7), label, 23, "photo", vary=1.0, pin_shade=1.0, shade_rows=1.0)
    assert "row_levels" in p["shade"]
    _assert_changes_only_near(p, 23, 0.8 * 1.45 * p["pitch_px"] + 16)


def test_tip_tone_zero_draws_as_before_and_tones_only_photo_frames():
    kw = dict(vary=1.0, pin_shade=1.0, shade_rows=1.0)
    a = sample_params(SPEC, np.random.default_rng(12), "NUKENG", 8, "photo", **kw)
    assert a == sample_params(SPEC, np.random.default_rng(12), "NUKENG", 8, "photo", tip_tone=0.0, **kw)
    b = sample_params(SPEC, np.random.default_rng(12), "NUKENG", 8, "photo", tip_tone=1.0, **kw)
    tip = b.pop("tip")  # drawn last: the same scene, defect and shade otherwise
    assert b == a and 0.6 <= tip["light"] <= 1.05 and 0.9 <= tip["spot"] <= 1.2
    assert "tip" not in sample_params(SPEC, np.random.default_rng(12), "OK", 0, "flat", tip_tone=1.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_toned_pin_ends_keep_their_colour_where_plain_ones_clip_to_white(seed):
    from training import shading

    plain = sample_params(SPEC, np.random.default_rng(seed), "OK", 0, "photo", vary=1.0)
    plain["pin_colour"] = [50, 165, 215]  # gold (BGR): the plain end's hot spot clips it to white
    toned = {**plain, "tip": {"light": 0.7, "spot": 0.9}}
    pins = ground_truth(SPEC, plain)["pins"]
    white = np.median(shading.end_values(render(SPEC, plain), pins))
    kept = np.median(shading.end_values(render(SPEC, toned), pins))
    assert white >= 240 and kept < white - 25, f"plain ends {white:.0f}, toned {kept:.0f}"


@pytest.mark.parametrize("label", ["BENDNG", "NUKENG"])
def test_toned_pin_ends_keep_the_labels_true(label):
    p = sample_params(SPEC, np.random.default_rng(5), label, 12, "photo", vary=1.0, tip_tone=1.0)
    assert "tip" in p
    _assert_changes_only_near(p, 12, 0.8 * 1.45 * p["pitch_px"] + 16)
