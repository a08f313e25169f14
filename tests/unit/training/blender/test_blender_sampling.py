"""The Blender renderer's plan, params and folder bookkeeping: numpy only, no bpy needed."""

import json
import math

import cv2
import numpy as np
import pytest

from models.part import load_part
from training.blender.dataset import is_rendered, render_folder, resumable_frames, write_png
from training.blender.sampling import (
    DEFECT_KEYS,
    BlenderConfig,
    BlenderRenderError,
    frame_params,
    pin_axes,
    plan,
    sample_params,
    settings,
    without_defect,
)

SPEC = load_part("default")


def test_plan_is_balanced_seeded_and_keeps_defects_in_their_columns():
    cfg = BlenderConfig(n=31, seed=3, defect_columns=(1, 2, 3, 5, 6, 8, 9))
    items = plan(SPEC, cfg)
    labels = [label for label, _ in items]
    assert sorted(labels.count(c) for c in SPEC.classes) == [10, 10, 11]
    assert all((label == "OK") == (pin == 0) for label, pin in items)
    held_out = set(SPEC.pins_in_columns([4, 7]))
    assert not {pin for _, pin in items} & held_out
    assert plan(SPEC, cfg) == items
    assert plan(SPEC, BlenderConfig(n=31, seed=4)) != items
    assert {label for label, _ in plan(SPEC, BlenderConfig(n=6, classes=("OK", "NUKENG")))} == {"OK", "NUKENG"}


def test_params_come_from_seed_and_index_alone_and_are_plain_json():
    cfg = BlenderConfig(n=10, seed=5)
    a = frame_params(SPEC, cfg, 4, "BENDNG", 12)
    assert a == frame_params(SPEC, cfg, 4, "BENDNG", 12)
    assert a != frame_params(SPEC, cfg, 5, "BENDNG", 12)
    assert json.loads(json.dumps(a)) == a
    assert a["samples"] == cfg.samples and len(a["pins"]["lean"]) == SPEC.n_pins


@pytest.mark.parametrize("seed", range(40))
def test_every_draw_stays_inside_part_md(seed):
    cam, d = SPEC.camera, SPEC.defects
    label = SPEC.classes[seed % 3]
    p = sample_params(SPEC, np.random.default_rng(seed), label, 0 if label == "OK" else seed % 27 + 1)
    lo, hi = cam.pitch_px[0] * (1 - cam.scale_jitter), cam.pitch_px[1] * (1 + cam.scale_jitter)
    assert lo <= p["pitch_px"] <= hi
    assert cam.tilt_deg[0] <= p["tilt_deg"] <= cam.tilt_deg[1]
    assert abs(p["roll_deg"]) <= cam.rotation_deg and all(abs(s) <= cam.center_jitter_px for s in p["shift_px"])
    assert cam.noise_sigma[0] <= p["noise_sigma"] <= cam.noise_sigma[1]
    assert cam.jpeg_quality[0] <= p["jpeg_quality"] <= cam.jpeg_quality[1]
    assert all(abs(c) <= cam.color_cast for c in p["color_cast"])
    assert 1 <= len(p["lights"]) <= 3 and p["background"]["kind"] in ("pcb", "plate")
    assert SPEC.housing_depth[0] <= p["housing_depth"] <= SPEC.housing_depth[1]
    if p["label"] == "BENDNG":
        assert d.bend_deg[0] <= p["bend_deg"] <= d.bend_deg[1]
    if p["label"] == "NUKENG":
        assert d.nuke_height[0] <= p["nuke_height"] <= d.nuke_height[1]
    # OK pins: the tip within the part's tolerance of its true position
    _, axis, height = pin_axes(SPEC, without_defect(p))
    assert (np.linalg.norm(axis[:, :2], axis=1) * height <= d.ok_tolerance_pitch + 1e-9).all()


def test_widen_stretches_the_camera_but_never_the_defects():
    wide = [sample_params(SPEC, np.random.default_rng(s), "BENDNG", 5, widen=2.0) for s in range(300)]
    tilts = [p["tilt_deg"] for p in wide]
    assert min(tilts) < SPEC.camera.tilt_deg[0] and max(tilts) > SPEC.camera.tilt_deg[1]
    assert SPEC.defects.bend_deg[0] <= min(p["bend_deg"] for p in wide)
    assert max(p["bend_deg"] for p in wide) <= SPEC.defects.bend_deg[1]


def test_pin_axes_follow_part_md_numbering_and_apply_the_defect():
    p = sample_params(SPEC, np.random.default_rng(1), "BENDNG", 14)
    p.update(bend_deg=20.0, bend_dir_deg=90.0)  # away from the camera
    base, axis, height = pin_axes(SPEC, p)
    assert base[0][0] == base[:, 0].min() and base[0][1] == base[:, 1].max()  # pin 1: left, back row
    assert base[26][0] == base[:, 0].max() and base[26][1] == base[:, 1].min()  # pin 27: right, front row
    assert math.degrees(math.acos(axis[13][2])) == pytest.approx(20.0)
    assert axis[13][1] > 0.3 and abs(axis[13][0]) < 1e-9
    nuked = dict(without_defect(p), label="NUKENG", pin=3, nuke_height=0.0)
    assert pin_axes(SPEC, nuked)[2][2] == 0.0 and (pin_axes(SPEC, nuked)[2][np.arange(27) != 2] == 2.0).all()


def test_the_ok_twin_drops_only_the_defect():
    p = sample_params(SPEC, np.random.default_rng(2), "NUKENG", 7)
    twin = without_defect(p)
    assert twin["label"] == "OK" and twin["pin"] == 0 and not set(DEFECT_KEYS) & set(twin)
    assert {k: v for k, v in p.items() if k not in (*DEFECT_KEYS, "label", "pin")} == {
        k: v for k, v in twin.items() if k not in ("label", "pin")
    }


def test_light_housings_share_changes_the_housing_alone():
    """A training set drawn with more light housings: the share is honoured, a frame that was light
    at the default share is the same frame, and folders rendered at the default keep their settings."""
    kinds = {}
    for share in (0.0, 0.3, 1.0):
        cfg = BlenderConfig(n=300, seed=9, light_housings=share)
        frames = [frame_params(SPEC, cfg, i, label, pin) for i, (label, pin) in enumerate(plan(SPEC, cfg))]
        kinds[share] = [f["housing"]["kind"] for f in frames]
        if share == 1.0:
            default = BlenderConfig(n=300, seed=9)
            twins = [frame_params(SPEC, default, i, label, pin) for i, (label, pin) in enumerate(plan(SPEC, default))]
            same = [f == t for f, t in zip(frames, twins, strict=True) if t["housing"]["kind"] != "dark"]
            assert len(same) > 50 and all(same)
    light = {share: sum(k != "dark" for k in ks) / len(ks) for share, ks in kinds.items()}
    assert light[0.0] == 0.0 and light[1.0] == 1.0 and 0.22 < light[0.3] < 0.38
    assert {k for k in kinds[1.0]} == {"white", "ivory", "beige"}
    assert "light_housings" not in settings(SPEC, BlenderConfig(n=3))
    assert settings(SPEC, BlenderConfig(n=3, light_housings=1.0))["light_housings"] == 1.0


def test_border_defects_move_defects_to_border_pins_bent_out_and_leave_older_folders_alone():
    """A training set for where the model misses most: the share of defects moved to a border pin
    is honoured, every bent border pin leans out over the housing's edge, the frames keep their
    scene (only the bend's direction is drawn anew), and at 0 the plan is the one rendered before."""
    default = BlenderConfig(n=600, seed=9)
    cfg = BlenderConfig(n=600, seed=9, border_defects=0.8)
    items, before = plan(SPEC, cfg), plan(SPEC, default)
    assert [label for label, _ in items] == [label for label, _ in before]  # the classes stay put
    border = set(SPEC.border_pins())
    defects = [pin for _, pin in items if pin]
    share = sum(pin in border for pin in defects) / len(defects)
    natural = sum(pin in border for _, pin in before if pin) / len(defects)  # ~13 of 27 pins
    assert 0.35 < natural < 0.6 and 0.85 < share < 0.96  # 0.8 moved + 0.2 of the rest
    frames = [frame_params(SPEC, cfg, i, label, pin) for i, (label, pin) in enumerate(items)]
    bent = [f for f in frames if f["label"] == "BENDNG" and f["pin"] in border]
    assert len(bent) > 100 and all(SPEC.leans_outward(f["pin"], f["bend_dir_deg"]) for f in bent)
    twins = [frame_params(SPEC, default, i, label, pin) for i, (label, pin) in enumerate(items)]
    for f, t in zip(frames, twins, strict=True):
        drop = ("bend_dir_deg",) if f["label"] == "BENDNG" and f["pin"] in border else ()
        assert {k: v for k, v in f.items() if k not in drop} == {k: v for k, v in t.items() if k not in drop}
    assert "border_defects" not in settings(SPEC, default)
    assert settings(SPEC, cfg)["border_defects"] == 0.8
    # pinned to what the renderer drew before the option (bc1c78d): a folder rendered then re-renders
    # the same frames. Frame 0 bends border pin 5 towards the camera, which the option would turn out.
    old = plan(SPEC, BlenderConfig(n=12, seed=9))
    assert old == [("BENDNG", 5), ("OK", 0), ("NUKENG", 14), ("OK", 0), ("NUKENG", 17), ("BENDNG", 11),
                   ("OK", 0), ("NUKENG", 3), ("BENDNG", 12), ("BENDNG", 27), ("NUKENG", 23), ("OK", 0)]  # fmt: skip
    first = frame_params(SPEC, BlenderConfig(n=12, seed=9), 0, *old[0])
    assert first["render_seed"] == 245584350 and first["bend_dir_deg"] == pytest.approx(291.57270405328075)
    moved = frame_params(SPEC, BlenderConfig(n=12, seed=9, border_defects=0.5), 0, *old[0])
    assert SPEC.leans_outward(5, moved["bend_dir_deg"]) and moved["render_seed"] == 245584350


@pytest.mark.parametrize(
    "cfg, flag",
    [
        (BlenderConfig(n=0), "--n"),
        (BlenderConfig(samples=0), "--samples"),
        (BlenderConfig(widen=0.5), "--widen"),
        (BlenderConfig(classes=("BENDNG", "BAD")), "--classes"),
        (BlenderConfig(defect_columns=(0, 4)), "--defect-columns"),
        (BlenderConfig(light_housings=1.5), "--light-housings"),
        (BlenderConfig(border_defects=-0.1), "--border-defects"),
    ],
)
def test_bad_configs_are_refused_naming_the_flag(cfg, flag):
    with pytest.raises(BlenderRenderError, match=flag):
        plan(SPEC, cfg)


def test_png_writer_round_trips_through_opencv(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    write_png(tmp_path / "f.png", img)
    assert np.array_equal(cv2.imread(str(tmp_path / "f.png")), img)


def test_folder_state_is_read_from_its_settings_files(tmp_path):
    cfg = BlenderConfig(n=3, seed=1)
    assert not is_rendered(SPEC, cfg, tmp_path) and resumable_frames(SPEC, cfg, tmp_path) == 0
    (tmp_path / "dataset.json").write_text(json.dumps({**settings(SPEC, cfg), "counts": {}}))
    assert is_rendered(SPEC, cfg, tmp_path)
    assert not is_rendered(SPEC, BlenderConfig(n=3, seed=2), tmp_path)
    assert render_folder(SPEC, cfg, tmp_path) == tmp_path  # already there: returns without Blender
    # a training.synth folder is not this renderer's, whatever its seed
    (tmp_path / "dataset.json").write_text(json.dumps({"generator_version": "1", "n": 3, "seed": 1}))
    assert not is_rendered(SPEC, cfg, tmp_path)
