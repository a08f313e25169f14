import numpy as np
from station_fakes import FakeVerdict, heatmap_at

from edge_app.sources import SimSource
from models import overlay
from models.part import load_part, part_from_dict
from models.preprocess import InputSpec

SPEC = InputSpec()


def test_locate_maps_the_hottest_token_back_to_the_frame():
    for xy in [(100.0, 100.0), (320.0, 240.0), (600.0, 400.0)]:
        hm = heatmap_at(SPEC, xy)
        x, y = overlay.locate(hm, SPEC)
        # one token is 32x32 frame pixels with the default crop: within half a token and a bit
        assert abs(x - xy[0]) <= 20 and abs(y - xy[1]) <= 20, (xy, (x, y))


def test_locate_uses_the_crop_box():
    spec = InputSpec(crop=(100, 50, 420, 242), width=320, height=192)  # 1 input px = 1 frame px
    hm = np.zeros(spec.grid, np.float32)
    hm[2, 3] = 1.0
    x, y = overlay.locate(hm, spec)
    assert (x, y) == (100 + 3.5 * 16, 50 + 2.5 * 16)


def test_draw_circles_the_sim_truth_and_leaves_the_frame_alone():
    src = SimSource(defect_rate=1.0, fps=0, pool=2, seed=5)
    src.open()
    img, truth = src.pool[0]
    v = FakeVerdict(truth.label, truth.pin, {}, heatmap_at(SPEC, truth.xy))
    radius = overlay.pin_radius(load_part("default"))
    out = overlay.draw(img, v, SPEC, radius, show_heatmap=True)
    assert out.shape == img.shape and not np.array_equal(out, img)
    x, y = (int(round(c)) for c in overlay.locate(v.heatmap, SPEC))
    ring = out[y, min(639, x + radius)]
    assert tuple(int(c) for c in ring) == overlay.COLOURS_BGR[truth.label]
    ok = overlay.draw(img, FakeVerdict("OK", 0, {}), SPEC, radius)
    assert np.array_equal(ok, img)
    assert np.array_equal(overlay.draw(img, v, None, radius), img)


def test_the_circle_is_one_pitch_of_the_part_in_the_frame():
    default = load_part("default")
    assert overlay.pin_radius(default) == round(sum(default.camera.pitch_px) / 2)
    raw = default.to_dict()
    raw["camera"]["pitch_px"] = [20.0, 24.0]  # a smaller part, or a camera further away
    assert overlay.pin_radius(part_from_dict(raw)) == 22
