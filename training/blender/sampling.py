"""Every random choice of the Blender renderer, as plain JSON data, without bpy.

The plan (label and pin per frame) comes from the seed; each frame's params from
(seed, frame index), so any frame can be re-rendered from its line in meta.jsonl and a resumed
run renders exactly what an uninterrupted one would have. numpy only: this module also imports
in the main venv, where the unit tests of the sampling run.

Units: the pitch is 1 (one Blender unit). World axes: x to the right, y away from the camera,
z up; the housing top is z = 0 and the part is centred on the origin. Colours are linear RGB
as Cycles takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.part import CLASSES, OUTWARD_WITHIN_DEG, PartSpec, dataset_identity

GENERATOR = "blender"
GENERATOR_VERSION = "1"
DEFAULT_SAMPLES = 3
LIGHT_HOUSINGS = 0.3  # share of white/ivory/beige housings; PART.md: "mostly dark"
# Share of the defects moved to a border pin (back row, outer columns), a bent one leaning outward
BORDER_DEFECTS = 0.0
# Keys of a frame's params that describe its defect; the OK twin drops them.
DEFECT_KEYS = ("bend_deg", "bend_dir_deg", "nuke_height")


class BlenderRenderError(RuntimeError):
    """A render request that cannot be carried out; the message says why in one line."""


@dataclass(frozen=True)
class BlenderConfig:
    n: int = 300
    seed: int = 0
    classes: tuple[str, ...] = CLASSES  # classes to draw, balanced
    defect_columns: tuple[int, ...] | None = None  # 1-based; None = every column
    widen: float = 1.0  # camera ranges stretched about their centre (1.0 = exactly PART.md)
    samples: int = DEFAULT_SAMPLES  # Cycles path-tracing samples per pixel (denoised)
    threads: int = 0  # render threads, 0 = every core; does not change the pixels
    light_housings: float = LIGHT_HOUSINGS  # share of frames with a white/ivory/beige housing
    border_defects: float = BORDER_DEFECTS  # share of defects moved to a border pin, bends leaning outward


def settings(spec: PartSpec, cfg: BlenderConfig) -> dict[str, Any]:
    """What decides a folder's pixels and labels; dataset.json records it and a rerun compares it."""
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        **dataset_identity(spec, cfg.n, cfg.seed, cfg.classes, cfg.defect_columns),
        "widen": cfg.widen,
        "samples": cfg.samples,
        # recorded only when changed, so folders rendered before the option keep their settings
        **({"light_housings": cfg.light_housings} if cfg.light_housings != LIGHT_HOUSINGS else {}),
        **({"border_defects": cfg.border_defects} if cfg.border_defects != BORDER_DEFECTS else {}),
    }


def check_config(spec: PartSpec, cfg: BlenderConfig) -> None:
    """Refuse a config that cannot be rendered, naming the command-line flag."""
    if cfg.n < 1:
        raise BlenderRenderError(f"--n must be at least 1, got {cfg.n}")
    if not 1 <= cfg.samples <= 4096:
        raise BlenderRenderError(f"--samples must be between 1 and 4096, got {cfg.samples}")
    if not 1.0 <= cfg.widen <= 3.0:
        raise BlenderRenderError(f"--widen must be between 1 (exactly PART.md) and 3, got {cfg.widen}")
    if not 0.0 <= cfg.light_housings <= 1.0:
        raise BlenderRenderError(f"--light-housings must be a share between 0 and 1, got {cfg.light_housings}")
    if not 0.0 <= cfg.border_defects <= 1.0:
        raise BlenderRenderError(f"--border-defects must be a share between 0 and 1, got {cfg.border_defects}")
    if cfg.threads < 0:
        raise BlenderRenderError(f"--threads must be 0 (every core) or more, got {cfg.threads}")
    if not cfg.classes:
        raise BlenderRenderError("--classes: name at least one class")
    unknown = [c for c in cfg.classes if c not in spec.classes]
    if unknown:
        raise BlenderRenderError(f"--classes: unknown class {unknown[0]!r} (known: {', '.join(spec.classes)})")
    if len(set(cfg.classes)) != len(cfg.classes):
        raise BlenderRenderError(f"--classes: a class is named twice in {','.join(cfg.classes)}")
    if cfg.defect_columns is not None:
        bad = [c for c in cfg.defect_columns if not 1 <= c <= spec.cols]
        if bad or not cfg.defect_columns:
            raise BlenderRenderError(
                f"--defect-columns: {bad or 'none given'} not on a part with {spec.cols} columns (1..{spec.cols})"
            )


def plan(spec: PartSpec, cfg: BlenderConfig) -> list[tuple[str, int]]:
    """(label, pin) for every frame: the classes as even as n allows, in random order; a
    defect sits on a pin drawn uniformly from the allowed columns, OK frames have pin 0. With
    `border_defects`, that share of the defects is moved to a border pin of those columns
    (drawn from a stream of its own: at 0 the plan is the one rendered before the option)."""
    check_config(spec, cfg)
    columns = cfg.defect_columns or tuple(range(1, spec.cols + 1))
    pins = spec.pins_in_columns(list(columns))
    border = [p for p in spec.border_pins() if p in pins]
    moved = np.random.default_rng([cfg.seed, 0xB0DE5]) if cfg.border_defects and border else None
    rng = np.random.default_rng([cfg.seed, 0xB1E4DE])
    k = len(cfg.classes)
    # n // k of each class, the remainder spread over randomly chosen classes
    labels = [c for c in cfg.classes for _ in range(cfg.n // k)]
    labels += [cfg.classes[int(i)] for i in rng.permutation(k)[: cfg.n % k]]
    order = rng.permutation(cfg.n)
    out = []
    for i in order:
        label = labels[int(i)]
        pin = 0 if label == "OK" else int(pins[int(rng.integers(len(pins)))])
        if pin and moved is not None and moved.random() < cfg.border_defects:
            pin = border[int(moved.integers(len(border)))]
        out.append((label, pin))
    return out


def frame_params(spec: PartSpec, cfg: BlenderConfig, index: int, label: str, pin: int) -> dict[str, Any]:
    """The params of frame `index` of a folder: a function of (seed, index) alone."""
    rng = np.random.default_rng([cfg.seed, index])
    return sample_params(
        spec, rng, label, pin, cfg.widen, cfg.samples, cfg.light_housings, lean_outward=cfg.border_defects > 0
    )


# ---------------------------------------------------------------------------------------------
# One frame


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _stretch(r: tuple[float, float], widen: float, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    """A range stretched about its centre by `widen`, clipped to what is physically possible."""
    c, h = (r[0] + r[1]) / 2, (r[1] - r[0]) / 2 * widen
    return (max(lo, c - h), min(hi, c + h))


def _jitter(rng: np.random.Generator, rgb: tuple[float, ...], rel: float) -> list[float]:
    return [round(min(1.0, max(0.0, v * (1 + _u(rng, -rel, rel)))), 5) for v in rgb]


# Linear-RGB plastics: PART.md's housings are mostly black or dark grey, some white/ivory/beige.
_LIGHT_PLASTICS = {"white": (0.78, 0.78, 0.75), "ivory": (0.80, 0.72, 0.52), "beige": (0.62, 0.47, 0.30)}
_METALS = {"gold": (1.0, 0.71, 0.29), "tin": (0.80, 0.80, 0.82)}


def _housing(rng: np.random.Generator, light_share: float) -> dict[str, Any]:
    # the same draws as before the share was an option: a folder rendered at 0.3 keeps its frames,
    # and a frame light at 0.3 is the same frame at any higher share
    if rng.random() < 1.0 - light_share:
        v = _u(rng, 0.006, 0.05)
        kind, colour = "dark", _jitter(rng, (v, v, v), 0.12)
    else:
        kind = str(rng.choice(list(_LIGHT_PLASTICS)))
        colour = _jitter(rng, _LIGHT_PLASTICS[kind], 0.10)
    return {"kind": kind, "colour": colour, "roughness": _u(rng, 0.25, 0.6), "bevel": _u(rng, 0.02, 0.08)}


def _pins(rng: np.random.Generator, n_pins: int, tol_deg: float) -> dict[str, Any]:
    metal = "gold" if rng.random() < 0.55 else "tin"
    return {
        "metal": metal,
        "colour": _jitter(rng, _METALS[metal], 0.08),
        "roughness": _u(rng, 0.12, 0.38),
        "tip": "round" if rng.random() < 0.6 else "chamfer",
        "tip_size": _u(rng, 0.3, 0.8),  # rounding radius / chamfer width, as a fraction of the pin radius
        # OK pins are straight within the part's tolerance: [lean deg, lean direction deg] per pin
        "lean": [[round(_u(rng, 0, tol_deg), 4), round(_u(rng, 0, 360), 2)] for _ in range(n_pins)],
    }


def _background(rng: np.random.Generator) -> dict[str, Any]:
    kind = "pcb" if rng.random() < 0.55 else "plate"
    if kind == "pcb":
        g = _u(rng, 0.06, 0.2)
        colour = _jitter(rng, (0.12 * g, g, 0.25 * g), 0.3)
    else:
        v = _u(rng, 0.08, 0.45)
        colour = _jitter(rng, (v, v, v * 1.03), 0.05)
    return {
        "kind": kind,
        "colour": colour,
        "roughness": _u(rng, 0.25, 0.6),
        "scale": _u(rng, 0.6, 1.6),
        "angle_deg": _u(rng, 0, 180),
        "offset": [_u(rng, -100, 100) for _ in range(3)],
        "trace_scale": _u(rng, 0.12, 0.35),  # PCB: wave texture scale, traces 1-3 pitches apart
        "pad_size": _u(rng, 0.02, 0.06),  # PCB: pad radius / cell size
    }


def _lights(rng: np.random.Generator, widen: float) -> list[dict[str, Any]]:
    """1-3 lights from above: a key light and up to two weaker fills. Elevations stay at 45
    degrees or more, so a 2-pitch pin casts a shadow of at most 2 pitches, as on a lit station."""
    out = []
    for k in range(int(rng.integers(1, 4))):
        out.append(
            {
                "type": "area" if rng.random() < 0.65 else "point",
                "azimuth_deg": _u(rng, -180, 180),  # 0 = on the camera's side
                "elevation_deg": _u(rng, 45, 85),
                "distance": _u(rng, 15, 40),
                "size": _u(rng, 2, 14),  # area lights: side in pitches (soft shadows)
                # irradiance at the part, relative; the key light dominates
                "irradiance": _u(rng, 2.0, 4.0) if k == 0 else _u(rng, 0.3, 1.5),
                "colour": _jitter(rng, (1.0, 0.97, 0.92), 0.06 * widen),
            }
        )
    return out


def sample_params(
    spec: PartSpec,
    rng: np.random.Generator,
    label: str,
    pin: int,
    widen: float = 1.0,
    samples: int = DEFAULT_SAMPLES,
    light_housings: float = LIGHT_HOUSINGS,
    lean_outward: bool = False,
) -> dict[str, Any]:
    """Every random choice for one frame, JSON-able. `widen` stretches the camera's ranges of
    PART.md about their centres; the defect ranges define the labels and are never widened.
    `light_housings` is the share of white/ivory/beige housings (PART.md: mostly dark).
    `lean_outward`: a bent border pin leans within OUTWARD_WITHIN_DEG of straight out towards the
    housing's edge (its angle still PART.md's); every other draw is the same as without it."""
    if label not in spec.classes:
        raise ValueError(f"unknown label {label!r} (known: {', '.join(spec.classes)})")
    if (label == "OK") != (pin == 0):
        raise ValueError(f"label {label} with pin {pin}: OK has pin 0, a defect names its pin")
    if pin and not 1 <= pin <= spec.n_pins:
        raise ValueError(f"pin {pin} is not on a part with {spec.n_pins} pins")
    cam, d = spec.camera, spec.defects
    w = max(1.0, widen)
    # The whole housing stays in the frame, whatever the pitch and scale drawn.
    width_pitches = spec.cols - 1 + 2 * spec.housing_margin
    pitch = _u(rng, *_stretch(cam.pitch_px, w, lo=4)) * (1 + _u(rng, -cam.scale_jitter, cam.scale_jitter) * w)
    pitch = min(pitch, 0.95 * cam.frame_width / width_pitches)
    tol_deg = math.degrees(math.atan(d.ok_tolerance_pitch / spec.pin_height))
    p: dict[str, Any] = {
        "label": label,
        "pin": pin,
        "samples": int(samples),
        "render_seed": int(rng.integers(0, 2**31 - 1)),  # Cycles' seed: the OK twin gets the same noise
        "noise_seed": int(rng.integers(0, 2**31 - 1)),  # sensor noise
        "tilt_deg": _u(rng, *_stretch(cam.tilt_deg, w, lo=0, hi=60)),
        "azimuth_deg": _u(rng, -3, 3) * w,  # the camera stands in front, give or take a little
        "roll_deg": _u(rng, -cam.rotation_deg, cam.rotation_deg) * w,
        "distance": _u(rng, *cam.distance_pitch),
        "pitch_px": pitch,
        "shift_px": [_u(rng, -cam.center_jitter_px, cam.center_jitter_px) * w for _ in range(2)],
        "defocus_px": _u(rng, 0.0, 4.0 * w),  # blur-disc diameter at a straight pin's tip (sigma <= ~1)
        "housing_depth": _u(rng, *spec.housing_depth),
        "housing": _housing(rng, light_housings),
        "pins": _pins(rng, spec.n_pins, tol_deg),
        "background": _background(rng),
        "lights": _lights(rng, w),
        "world": {"colour": _jitter(rng, (0.8, 0.85, 1.0), 0.15), "strength": _u(rng, 0.2, 0.8)},
        "exposure": _u(rng, -0.4, 0.3),
        # photometric post-processing, PART.md's camera
        "gradient": [_u(rng, 0, cam.illumination * 0.5 * w), _u(rng, 0, 360)],  # extra uneven light
        "color_cast": [_u(rng, -cam.color_cast, cam.color_cast) * w for _ in range(3)],  # B, G, R
        "noise_sigma": _u(rng, *_stretch(cam.noise_sigma, w, lo=0)),
        "jpeg_quality": int(round(_u(rng, *_stretch(cam.jpeg_quality, w, lo=30, hi=100)))),
    }
    if label == "BENDNG":  # direction: 0 = to the right, 90 = away from the camera, 270 = towards it
        p["bend_deg"] = _u(rng, *d.bend_deg)
        p["bend_dir_deg"] = _u(rng, 0, 360)
        if lean_outward and pin in spec.border_pins():  # drawn last: the frame's other draws stay
            out = spec.outward_directions(pin)
            spread = OUTWARD_WITHIN_DEG
            p["bend_dir_deg"] = (out[int(rng.integers(len(out)))] + _u(rng, -spread, spread)) % 360
    elif label == "NUKENG":
        p["nuke_height"] = _u(rng, *d.nuke_height)
    return p


def without_defect(params: dict[str, Any]) -> dict[str, Any]:
    """The OK twin of a frame: the same scene, light and noise, every pin straight."""
    twin = {k: v for k, v in params.items() if k not in DEFECT_KEYS}
    twin["label"], twin["pin"] = "OK", 0
    return twin


def pin_axes(spec: PartSpec, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pin: base (x, y, 0) on the housing top, unit axis, and height above the top, with the
    frame's defect applied. Pin k = 9*r + c + 1 (PART.md), row 0 at the back (largest y)."""
    r, c = np.divmod(np.arange(spec.n_pins), spec.cols)
    base = np.stack([c - (spec.cols - 1) / 2, (spec.rows - 1) / 2 - r, np.zeros(spec.n_pins)], -1).astype(float)
    lean = np.radians(np.array(params["pins"]["lean"], float))
    tilt, direction = lean[:, 0], lean[:, 1]
    height = np.full(spec.n_pins, spec.pin_height)
    k = params["pin"] - 1
    if params["label"] == "BENDNG":
        tilt[k], direction[k] = math.radians(params["bend_deg"]), math.radians(params["bend_dir_deg"])
    elif params["label"] == "NUKENG":
        height[k] = spec.pin_height * params["nuke_height"]
    axis = np.stack([np.sin(tilt) * np.cos(direction), np.sin(tilt) * np.sin(direction), np.cos(tilt)], -1)
    return base, axis, height
