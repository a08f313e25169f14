"""Render one frame of a part from a parameter dict.

`sample_params` makes every random choice for one image and returns it as plain JSON data;
`render` is a pure function of (part spec, params): the same params give the same bytes, so
any image in a data set can be re-rendered from its line in `meta.jsonl`.

The part is built in 3-D (pitch units: x right, y away from the camera, z up) and projected
through a pinhole camera tilted from the vertical, so a bent pin's tip moves the way a real
one does and a pin bent towards the camera looks shorter (PART.md's floor of confusion).

Styles: "photo" (shaded metal, textured board, uneven light, blur, noise, JPEG) and "flat"
(flat colours with outlines, like a drawing). Both share geometry and ground truth. A photo frame
may also be lit by one hard key light (`hard_light`, see `_light_params`): every pin casts a sharp
shadow across the housing top, computed from its 3-D axis, and the pins read as mirrors. And its
pins may be shaded low (`pin_shade`, see `_shade_params`): dark from the housing top up, lit only
near the top, as a path tracer draws a metal pin that reflects the dark housing around it.

numpy + OpenCV only: the station's simulated camera uses this module, and the station never
imports torch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import cv2
import numpy as np

from models.part import PartSpec

STYLES: tuple[str, ...] = ("photo", "flat")
_CIRCLE_N = 14
_AA = cv2.LINE_AA


# ---------------------------------------------------------------------------------------------
# Sampling: every random choice for one image


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _widen(r: tuple[float, float], widen: float, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    """Stretch a range about its centre by `widen` (1.0 = PART.md's range)."""
    c, h = (r[0] + r[1]) / 2, (r[1] - r[0]) / 2 * widen
    return (max(lo, c - h), min(hi, c + h))


def _colour(rng: np.random.Generator, base: tuple[int, int, int], spread: int) -> list[int]:
    return [int(np.clip(b + rng.integers(-spread, spread + 1), 0, 255)) for b in base]


def _housing_colour(rng: np.random.Generator, widen: float) -> list[int]:
    k = rng.random()
    if k < 0.62:  # black / dark grey
        g = int(rng.integers(12, 70))
        return _colour(rng, (g, g, g), 6)
    if k < 0.88:  # white, ivory, beige (BGR)
        return _colour(rng, [(235, 238, 238), (200, 232, 240), (150, 195, 215)][int(rng.integers(0, 3))], 18)
    if widen > 1.0:  # wider than PART.md: any plastic colour, so colour is never the cue
        return [int(v) for v in rng.integers(20, 230, 3)]
    g = int(rng.integers(60, 110))
    return _colour(rng, (g, g, g), 6)


def _pin_colour(rng: np.random.Generator) -> list[int]:
    if rng.random() < 0.6:  # gold (BGR)
        return _colour(rng, (50, 165, 215), 22)
    g = int(rng.integers(150, 215))  # tin
    return _colour(rng, (g, g, g + 5), 8)


def sample_params(
    spec: PartSpec,
    rng: np.random.Generator,
    label: str,
    pin: int,
    style: str,
    widen: float = 1.3,
    extra_defects: list[tuple[int, str]] | None = None,
    away_bends: float = 0.0,
    vary: float = 0.0,
    hard_light: float = 0.0,
    pin_shade: float = 0.0,
    shade_rows: float = 0.0,
    tip_tone: float = 0.0,
) -> dict[str, Any]:
    """All random choices for one image, as JSON-able data. `widen` stretches the camera ranges
    of the part spec (not the defect ranges, which define the labels). `extra_defects` (pin,
    label) adds more defective pins: a training aid (more defect examples per image), outside
    PART.md's one-defect classes; the image keeps `label` and `pin` as its primary defect.
    `away_bends` (a training aid) draws this share of bends from the ones a single oblique view
    shows least, see `_defect_params`. `vary` (0..1) randomizes what PART.md leaves open or only
    approximates, see `_look_params`; at 0 no extra random number is drawn. `hard_light` (0..1) is
    the share of photo frames lit by one hard key light, see `_light_params`; drawn last, and at 0
    not at all, so data sets rendered before it stay byte for byte. `pin_shade` (0..1), likewise
    drawn after it, is the share of photo frames whose pins are shaded low, see `_shade_params`;
    `shade_rows` (0..1), drawn after it, the share of those whose rows each get their own
    darkness, see `_row_levels`; `tip_tone` (0..1), drawn last, the share of photo frames whose
    pin ends keep their colour, see `_tip_params`."""
    if label not in spec.classes:
        raise ValueError(f"unknown label {label!r}")
    if (label == "OK") != (pin == 0):
        raise ValueError(f"label {label} with pin {pin}: OK has pin 0, a defect names its pin")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(STYLES)})")
    cam = spec.camera
    w = max(1.0, widen)
    width_units = spec.cols - 1 + 2 * spec.housing_margin
    pitch = _u(rng, *_widen(cam.pitch_px, w, lo=4)) * (1 + _u(rng, -cam.scale_jitter, cam.scale_jitter))
    pitch = min(pitch, cam.frame_width * 0.97 / width_units)  # the whole housing stays in frame
    p: dict[str, Any] = {
        "label": label,
        "pin": pin,
        "style": style,
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "tilt_deg": _u(rng, *_widen(cam.tilt_deg, w, lo=0, hi=60)),
        "azimuth_deg": _u(rng, -5, 5) * w,
        "roll_deg": _u(rng, -cam.rotation_deg, cam.rotation_deg) * w,
        "distance": _u(rng, *cam.distance_pitch),
        "pitch_px": pitch,
        "cx": cam.frame_width / 2 + _u(rng, -cam.center_jitter_px, cam.center_jitter_px) * w,
        "cy": cam.frame_height / 2 + _u(rng, -cam.center_jitter_px, cam.center_jitter_px) * w,
        "housing_depth": _u(rng, *spec.housing_depth),
        "housing_colour": _housing_colour(rng, w),
        "pin_colour": _pin_colour(rng),
        "light_side": _u(rng, -1, 1),  # where the highlight sits across the pin
        "background": str(rng.choice(["pcb", "plate", "plain"], p=[0.45, 0.4, 0.15])),
        "background_colour": [int(v) for v in rng.integers(0, 256, 3)],
        "illumination": _u(rng, 0, cam.illumination * w),
        "illumination_angle": _u(rng, 0, 360),
        "vignette": _u(rng, 0, 0.3 * w),
        "color_cast": [_u(rng, -cam.color_cast, cam.color_cast) * w for _ in range(3)],
        "gamma": _u(rng, 0.8, 1.25),
        "blur_sigma": _u(rng, *_widen(cam.blur_sigma, w, lo=0)),
        "noise_sigma": _u(rng, *_widen(cam.noise_sigma, w, lo=0)),
        "jpeg_quality": int(round(_u(rng, *_widen(cam.jpeg_quality, w, lo=30, hi=100)))) if rng.random() < 0.8 else 0,
        "glare": _u(rng, 0, 1) if rng.random() < 0.25 else 0.0,
        "distractors": int(rng.integers(0, 6)),
        # OK pins are straight within the spec's tolerance: a tiny random lean per pin
        "pin_jitter": [[_u(rng, 0, 360), _u(rng, 0, 1)] for _ in range(spec.n_pins)],
        "outline": _u(rng, 0.6, 2.2),
    }
    p.update(_defect_params(spec, rng, label, away_bends))
    if vary > 0:
        p["look"] = _look_params(rng, vary)
    if extra_defects:
        p["extra_defects"] = [
            {"pin": int(k), "label": lbl, **_defect_params(spec, rng, lbl, away_bends)} for k, lbl in extra_defects
        ]
    if hard_light > 0 and rng.random() < hard_light and style == "photo":
        p["light"] = _light_params(rng)
    if pin_shade > 0 and rng.random() < pin_shade and style == "photo":
        p["shade"] = _shade_params(rng)
    if shade_rows > 0 and "shade" in p and rng.random() < shade_rows:
        p["shade"]["row_levels"] = _row_levels(rng, spec.rows)
    if tip_tone > 0 and rng.random() < tip_tone and style == "photo":
        p["tip"] = _tip_params(rng)
    return p


def _defect_params(spec: PartSpec, rng: np.random.Generator, label: str, away_bends: float = 0.0) -> dict[str, float]:
    """The defect's own parameters. With `away_bends` > 0, that share of bends is drawn from the
    lower third of the bend range and within 30 degrees of straight away from the camera: such a
    pin only shows a slightly longer bar, the bend the model most often missed. At 0 no extra
    random number is drawn, so data sets rendered before this option stay byte for byte."""
    d = spec.defects
    if label == "BENDNG":  # direction: 0 = right, 90 = away from the camera, 270 = towards it
        if away_bends > 0 and rng.random() < away_bends:
            lo, hi = d.bend_deg
            return {"bend_deg": _u(rng, lo, lo + (hi - lo) / 3), "bend_dir_deg": 90 + _u(rng, -30, 30)}
        return {"bend_deg": _u(rng, *d.bend_deg), "bend_dir_deg": _u(rng, 0, 360)}
    if label == "NUKENG":
        return {"nuke_height": _u(rng, *d.nuke_height)}
    return {}


def _look_params(rng: np.random.Generator, vary: float) -> dict[str, Any]:
    """How this part and camera differ from the idealized drawing, within what PART.md allows or
    leaves open: pins a little thicker or thinner as drawn (the ground truth is the pin axis,
    unchanged), holes of another size with a lit or dark rim and a lighter or darker inside,
    housings with other margins and a sheen, tips flatter or rounder, highlights narrower or
    wider, pins casting shadows on the housing, and the empty hole of a pin pushed (nearly) flush
    left dark, as a pin end deep in its hole is. `vary` scales every spread (1 = full)."""

    def around(centre: float, spread: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        return float(np.clip(centre + _u(rng, -spread, spread) * vary, lo, hi))

    return {
        "pin_width": around(1.05, 0.3, 0.7, 1.45),  # drawn radius / the spec's
        "hole_size": around(1.0, 0.25, 0.75, 1.3),  # drawn hole / the spec's (kept inside the pitch)
        "hole_inside": around(0.25, 0.2, 0.03, 0.6),  # hole interior, as a share of the housing colour
        "hole_rim": around(0.0, 0.8, -0.6, 0.9),  # rim ring: <0 darker, >0 lit (a chamfer catching light)
        "margin": around(1.0, 0.35, 0.6, 1.45),  # drawn housing margin / the spec's
        "sheen": _u(rng, 0, 0.35 * vary),  # a soft reflection across the housing top
        "sheen_at": _u(rng, -1, 1),
        "cap": around(1.0, 0.35, 0.55, 1.4),  # tip ellipse size
        "cap_light": around(1.2, 0.35, 0.75, 1.7),  # tip brightness
        "body_dark": around(0.55, 0.2, 0.3, 0.8),  # the unlit side of a pin
        "highlight": around(0.33, 0.2, 0.12, 0.6),  # width of the bright line, share of the core
        "highlight_light": around(1.6, 0.4, 1.1, 2.1),
        "shadow": _u(rng, 0, 0.55 * vary),  # strength of the pins' shadows on the housing
        "shadow_dir": _u(rng, 0, 360),
        "shadow_len": _u(rng, 0.2, 1.4),  # in pitches
        "flush_dark": bool(rng.random() < 0.6 * vary),  # a pin at <15% height: its end stays dark
    }


def _light_params(rng: np.random.Generator) -> dict[str, Any]:
    """One hard key light, as a path tracer or a spotlit fixture shows it: the light's direction
    (azimuth in the housing plane, 0 = to the right, 90 = away from the camera; elevation above
    the housing top), so each pin's shadow falls across the housing as long as the light is low,
    bent with the pin when the pin is bent; pins that read as mirrors (tinted by what is around
    them, with dark reflection bands, plating less saturated); and a background out of focus."""
    return {
        "azimuth": _u(rng, 0, 360),
        "elevation": _u(rng, 35, 70),
        "shadow": _u(rng, 0.45, 0.85),  # how much light the shadow takes away
        "shadow_blur": _u(rng, 0.4, 1.5),  # px: the shadow's edge
        "mirror": _u(rng, 0, 0.55),  # pin body tinted this far towards the housing it reflects
        "bands": int(rng.integers(0, 3)),  # dark reflection bands along each pin
        "desaturate": _u(rng, 0, 0.6),
        "background_blur": _u(rng, 0, 3.0),  # px sigma: depth of field
    }


def _shade_params(rng: np.random.Generator) -> dict[str, Any]:
    """Pins dark low down and lit near the top. A shiny cylinder's side mirrors what is level with
    it, the dark housing and the holes, while its end faces the lights: in the Blender renderer's
    good frames the lower half of a pin's axis is a third as bright as its top (median over
    frames), in the plain drawing as bright. Heights are in the part's units above the housing
    top, so a pushed-back pin's stub is dark to its end, as it is in its hole."""
    return {
        "up_to": _u(rng, 0.4, 0.8),  # share of a straight pin's height that is dark
        "level": _u(rng, 0.1, 0.55),  # brightness there, as a share of the lit body
        "soft": _u(rng, 0.05, 0.3),  # share of the height the change from dark to lit takes
    }


def _row_levels(rng: np.random.Generator, rows: int) -> list[float]:
    """One darkness a row, each on its own. A pin's side mirrors what is level with it: the rows
    behind see the pins before them, the front row the open space in front of the part (in the
    Blender renderer's good frames the front row measures 0.50 low over top, the rows behind it
    0.30). Drawn wider than the one-level range, up to nearly unshaded, so that no row's shade is
    a cue for a defect."""
    return [_u(rng, 0.1, 0.9) for _ in range(rows)]


def _tip_params(rng: np.random.Generator) -> dict[str, float]:
    """Pin ends in the pin's own colour, a little brighter than its body, with a faint hot spot:
    a flat metal end mirrors the light only when the light sits where the camera's mirror image
    is. The plain drawing clips 63% of good pin ends to white, the Blender renderer 4% (median
    end brightness 253 against 189, `python -m training.shading`)."""
    return {
        "light": _u(rng, 0.6, 1.05),  # the end face, as a share of the pin colour
        "spot": _u(rng, 0.9, 1.2),  # the hot spot on it
    }


def without_defect(params: dict[str, Any]) -> dict[str, Any]:
    """The OK twin of a defective image: same scene, same noise, every pin straight."""
    twin = {k: v for k, v in params.items() if k not in ("bend_deg", "bend_dir_deg", "nuke_height", "extra_defects")}
    twin["label"], twin["pin"] = "OK", 0
    return twin


# ---------------------------------------------------------------------------------------------
# Geometry


class Camera:
    """Pinhole camera at `distance` pitches from the part centre, tilted from the vertical."""

    def __init__(self, p: dict[str, Any]):
        th, az, ro = (math.radians(p[k]) for k in ("tilt_deg", "azimuth_deg", "roll_deg"))
        D = p["distance"]
        self.C = D * np.array([math.sin(az) * math.sin(th), -math.cos(az) * math.sin(th), math.cos(th)])
        f = -self.C / D
        r0 = np.array([math.cos(az), math.sin(az), 0.0])
        d0 = np.cross(f, r0)
        self.r = math.cos(ro) * r0 + math.sin(ro) * d0
        self.d = -math.sin(ro) * r0 + math.cos(ro) * d0
        self.f = f
        self.focal = p["pitch_px"] * D
        self.cx, self.cy = p["cx"], p["cy"]

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points in pitches -> (..., 2) pixel coordinates."""
        q = pts - self.C
        z = q @ self.f
        return np.stack([self.cx + self.focal * (q @ self.r) / z, self.cy + self.focal * (q @ self.d) / z], -1)


_COS = np.cos(np.linspace(0, 2 * np.pi, _CIRCLE_N, endpoint=False))
_SIN = np.sin(np.linspace(0, 2 * np.pi, _CIRCLE_N, endpoint=False))


def _circles(centers: np.ndarray, radius: float, axes: np.ndarray) -> np.ndarray:
    """(n, 3) centres and unit axes -> (n, _CIRCLE_N, 3) points of the 3-D circles around them.
    Axes here are near vertical (pins lean at most ~30 degrees), so (w_z, 0, -w_x) is never zero."""
    wx, wy, wz = axes[:, 0], axes[:, 1], axes[:, 2]
    e1 = np.stack([wz, np.zeros_like(wx), -wx], -1)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.stack([wy * e1[:, 2] - wz * e1[:, 1], wz * e1[:, 0] - wx * e1[:, 2], wx * e1[:, 1] - wy * e1[:, 0]], -1)
    return centers[:, None, :] + radius * (_COS[None, :, None] * e1[:, None, :] + _SIN[None, :, None] * e2[:, None, :])


def pin_geometry(spec: PartSpec, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """3-D base and tip of every pin (n_pins, 3), defects applied."""
    rows, cols = spec.rows, spec.cols
    r, c = np.divmod(np.arange(spec.n_pins), cols)
    base = np.stack([c - (cols - 1) / 2, (rows - 1) / 2 - r, np.zeros(spec.n_pins)], -1).astype(np.float64)
    tol = spec.defects.ok_tolerance_pitch / spec.pin_height
    axes = []
    for az, mag in p["pin_jitter"]:
        s = mag * tol
        axes.append([s * math.cos(math.radians(az)), s * math.sin(math.radians(az)), 1.0])
    axis = np.array(axes)
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    length = np.full(spec.n_pins, spec.pin_height)
    for d in defects(p):
        i = d["pin"] - 1
        if d["label"] == "BENDNG":
            a, phi = math.radians(d["bend_deg"]), math.radians(d["bend_dir_deg"])
            axis[i] = [math.sin(a) * math.cos(phi), math.sin(a) * math.sin(phi), math.cos(a)]
        elif d["label"] == "NUKENG":
            length[i] = spec.pin_height * d["nuke_height"]
    return base, base + axis * length[:, None]


def defects(p: dict[str, Any]) -> list[dict[str, Any]]:
    """Every defective pin of an image: the labelled one first, then any extra ones."""
    if p["label"] == "OK":
        return []
    return [p] + list(p.get("extra_defects", []))


def ground_truth(spec: PartSpec, p: dict[str, Any]) -> dict[str, Any]:
    """Pixel positions of every pin's base and tip, plus the pitch in pixels."""
    cam = Camera(p)
    base, tip = pin_geometry(spec, p)
    b, t = cam.project(base), cam.project(tip)
    return {
        "pins": [[round(float(v), 2) for v in (*b[k], *t[k])] for k in range(spec.n_pins)],
        "pitch_px": round(float(p["pitch_px"]), 3),
        "defects": [[d["pin"], d["label"]] for d in defects(p)],
    }


# ---------------------------------------------------------------------------------------------
# Drawing


def _poly(img: np.ndarray, pts: np.ndarray, colour: Any, outline: Any = None, width: int = 1) -> None:
    ip = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [ip], colour, _AA, shift=4)
    if outline is not None:
        cv2.polylines(img, [ip], True, outline, width, _AA, shift=4)


def _scale(c: Any, k: float) -> tuple[int, ...]:
    return tuple(min(255, max(0, int(v * k))) for v in c)


def _background(p: dict[str, Any], rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind, flat = p["background"], p["style"] == "flat"
    if kind == "pcb":
        base = _colour(rng, (50, 110, 30), 30)
    elif kind == "plate":
        g = int(rng.integers(90, 190))
        base = _colour(rng, (g, g, g), 8)
    else:
        base = p["background_colour"]
    if flat:
        img = np.empty((h, w, 3), np.uint8)
        img[:] = base
    else:  # low-frequency mottling (and brushed streaks on a plate), made small and scaled up
        small = np.asarray(base, np.float32) + rng.normal(0, 12, (h // 40 + 2, w // 40 + 2, 1)).astype(np.float32)
        img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        if kind == "plate":
            streak = rng.normal(0, 6, (h // 2, 8, 1)).astype(np.float32).repeat(3, 2)
            img = cv2.add(img, cv2.resize(streak, (w, h), interpolation=cv2.INTER_LINEAR), dtype=cv2.CV_8U)
    if kind == "pcb":
        trace = _scale(base, 1.35)
        for _ in range(int(rng.integers(6, 18))):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            pts = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                if rng.random() < 0.5:
                    x += int(rng.integers(-200, 200))
                else:
                    y += int(rng.integers(-150, 150))
                pts.append((x, y))
            cv2.polylines(img, [np.array(pts, np.int32)], False, trace, int(rng.integers(2, 7)), _AA)
        pad = (60, 140, 190) if rng.random() < 0.5 else (180, 180, 185)
        for _ in range(int(rng.integers(5, 25))):
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(3, 8)), pad, -1, _AA)
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 4))):
                txt = "".join(rng.choice(list("RCUJ0123456789"), int(rng.integers(2, 5))))
                org = (int(rng.integers(0, w - 60)), int(rng.integers(15, h)))
                cv2.putText(
                    img, txt, org, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.4, 0.9)), (225, 225, 225), 1, _AA
                )
    elif kind == "plate":
        for _ in range(int(rng.integers(0, 6))):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            r = int(rng.integers(6, 16))
            cv2.circle(img, c, r, _scale(base, 0.35), -1, _AA)
            cv2.circle(img, c, r, _scale(base, 1.3), 1, _AA)
    return img


def _distractors(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> None:
    """Other things on a board: chips, capacitors, screws. Kept out of the part by drawing first."""
    h, w = img.shape[:2]
    for _ in range(p["distractors"]):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        col = [int(v) for v in rng.integers(0, 256, 3)]
        if rng.random() < 0.5:
            sz = rng.integers(10, 60, 2)
            box = cv2.boxPoints(((c[0], c[1]), (int(sz[0]), int(sz[1])), float(rng.uniform(0, 90))))
            _poly(img, box, col, _scale(col, 0.5))
        else:
            cv2.circle(img, c, int(rng.integers(5, 25)), col, -1, _AA)


_PLAIN_LOOK: dict[str, Any] = {
    "pin_width": 1.0,
    "hole_size": 1.0,
    "hole_inside": 0.25,
    "hole_rim": 0.0,
    "margin": 1.0,
    "sheen": 0.0,
    "sheen_at": 0.0,
    "cap": 1.0,
    "cap_light": 1.25,
    "body_dark": 0.55,
    "highlight": None,  # None: a third of the core, as first drawn
    "highlight_light": 1.6,
    "shadow": 0.0,
    "shadow_dir": 0.0,
    "shadow_len": 0.0,
    "flush_dark": False,
}


def _blend(img: np.ndarray, layer: np.ndarray, alpha: float) -> None:
    cv2.addWeighted(layer, alpha, img, 1 - alpha, 0, dst=img)


def _draw_part(img: np.ndarray, spec: PartSpec, p: dict[str, Any], cam: Camera) -> None:
    look = {**_PLAIN_LOOK, **p.get("look", {})}
    light = p.get("light")
    if light:
        p = _lit(p, light)
    _draw_housing(img, spec, p, cam, look)
    base, tip = pin_geometry(spec, p)
    _draw_holes(img, spec, p, cam, look, base)
    pins = _Pins(base, tip, np.linalg.norm(tip - base, axis=1), spec.pin_diameter / 2 * look["pin_width"])
    if light:
        _draw_cast_shadows(img, spec, cam, look, pins, light)
    elif p["style"] != "flat" and look["shadow"] > 0:
        _draw_pin_shadows(img, spec, p, cam, look, pins)
    _draw_pins(img, spec, p, cam, look, pins)


def _lit(p: dict[str, Any], light: dict[str, Any]) -> dict[str, Any]:
    """The frame's params as the key light shows them: each pin's highlight on the side facing
    the light, and the plating less saturated (a mirror shows its surroundings, not its colour)."""
    pc = np.asarray(p["pin_colour"], float)
    pc = pc + (pc.mean() - pc) * light["desaturate"]
    side = math.cos(math.radians(light["azimuth"]))
    return {**p, "pin_colour": [int(v) for v in np.clip(pc, 0, 255)], "light_side": side}


def _draw_cast_shadows(
    img: np.ndarray, spec: PartSpec, cam: Camera, look: dict[str, Any], pins: _Pins, light: dict[str, Any]
) -> None:
    """Each pin's hard shadow on the housing top: its cylinder projected along the light onto the
    top's plane (a bent pin's shadow bends with it), kept to the top, taking `shadow` of the light."""
    az, el = math.radians(light["azimuth"]), math.radians(light["elevation"])
    to_light = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    axes = (pins.tip - pins.base) / np.maximum(pins.lengths, 1e-9)[:, None]
    bottom = _circles(pins.base, pins.radius, axes)
    top = _circles(pins.tip, pins.radius, axes)
    top = top - (top[..., 2:3] / to_light[2]) * to_light  # along the light down to z = 0
    bottom = bottom - (bottom[..., 2:3] / to_light[2]) * to_light
    for k in range(spec.n_pins):
        if pins.lengths[k] < 1e-3:
            continue
        pts = cam.project(np.concatenate([bottom[k], top[k]]))
        hull = cv2.convexHull(pts.astype(np.float32))[:, 0, :]
        cv2.fillPoly(mask, [np.round(hull * 16).astype(np.int32)], 255, _AA, shift=4)
    W, H = _housing_half_size(spec, look)
    housing = np.zeros_like(mask)
    top_face = cam.project(np.array([[-W, -H, 0], [W, -H, 0], [W, H, 0], [-W, H, 0]], float))
    cv2.fillPoly(housing, [np.round(top_face * 16).astype(np.int32)], 255, _AA, shift=4)
    shade = cv2.GaussianBlur(cv2.min(mask, housing), (0, 0), light["shadow_blur"]).astype(np.float32)
    gain = 1.0 - light["shadow"] * shade / 255.0
    img[:] = np.clip(img * gain[..., None], 0, 255).astype(np.uint8)


class _Pins(NamedTuple):
    """Where the pins stand (part units), how long each is, and their drawn radius."""

    base: np.ndarray
    tip: np.ndarray
    lengths: np.ndarray
    radius: float


def _outline(p: dict[str, Any]) -> tuple[int, Any]:
    """Line width and colour of the flat style's outlines (none in the photo style)."""
    flat = p["style"] == "flat"
    return (max(1, int(round(p["outline"]))) if flat else 1), ((20, 20, 20) if flat else None)


def _housing_half_size(spec: PartSpec, look: dict[str, Any]) -> tuple[float, float]:
    """Half the housing top's width and depth (pitches), margin as drawn."""
    m = spec.housing_margin * look["margin"]
    return (spec.cols - 1) / 2 + m, (spec.rows - 1) / 2 + m


def _draw_housing(img: np.ndarray, spec: PartSpec, p: dict[str, Any], cam: Camera, look: dict[str, Any]) -> None:
    """The housing's front face and top, its sheen and lit edge, and the pin-1 triangle."""
    flat = p["style"] == "flat"
    ow, outline = _outline(p)
    hc = p["housing_colour"]
    dark_housing = sum(hc) / 3 < 110
    m = spec.housing_margin * look["margin"]
    W, H = _housing_half_size(spec, look)
    depth = p["housing_depth"]
    top = np.array([[-W, -H, 0], [W, -H, 0], [W, H, 0], [-W, H, 0]], float)
    front = np.array([[-W, -H, 0], [W, -H, 0], [W, -H, -depth], [-W, -H, -depth]], float)
    shadow = cam.project(front + [0.15, -0.25, 0])  # soft contact shadow below the front face
    if not flat:
        _poly(img, shadow, _scale(img[int(np.clip(shadow[2, 1], 0, img.shape[0] - 1)), img.shape[1] // 2], 0.55))
    _poly(img, cam.project(front), _scale(hc, 0.62 if not flat else 0.8), outline, ow)
    _poly(img, cam.project(top), tuple(hc), outline, ow)
    if not flat and look["sheen"] > 0:  # a soft band of reflected light across the housing top
        y0 = look["sheen_at"] * H
        band = np.array([[-W, y0 - 0.45 * H, 0], [W, y0 - 0.2 * H, 0], [W, y0 + 0.45 * H, 0], [-W, y0 + 0.2 * H, 0]])
        layer = img.copy()
        _poly(layer, cam.project(band), _scale(hc, 1.0 + 3.0 * look["sheen"]) if dark_housing else (250, 250, 250))
        _blend(img, cv2.GaussianBlur(layer, (0, 0), 6), min(0.8, look["sheen"] * 1.5))
    if not flat:  # a lit edge along the top front
        e = cam.project(top[:2])
        lit = _scale(hc, 1.5) if dark_housing else _scale(hc, 1.08)
        cv2.line(img, tuple(np.round(e[0]).astype(int)), tuple(np.round(e[1]).astype(int)), lit, 1, _AA)
    # pin-1 triangle on the housing top, near pin 1 (top-left as seen)
    tri = np.array([[-W + 0.2 * m, H - 0.2 * m, 0], [-W + 0.55 * m, H - 0.2 * m, 0], [-W + 0.2 * m, H - 0.55 * m, 0]])
    mark = (200, 200, 200) if dark_housing else _scale(hc, 0.55)
    _poly(img, cam.project(tri), mark)


def _draw_holes(
    img: np.ndarray, spec: PartSpec, p: dict[str, Any], cam: Camera, look: dict[str, Any], base: np.ndarray
) -> None:
    """Every pin's hole in the housing top, dark inside, with a lit or dark rim where the look has one."""
    flat = p["style"] == "flat"
    _, outline = _outline(p)
    hc = p["housing_colour"]
    hole_r = min(spec.pin_diameter / 2 * spec.hole_ratio * look["hole_size"], 0.47)
    vert = np.tile([0.0, 0, 1], (spec.n_pins, 1))
    hole_col = (8, 8, 8) if flat else _scale(hc, look["hole_inside"])
    holes = cam.project(_circles(base, hole_r, vert))
    rim = None
    if not flat and look["hole_rim"] > 0.05:
        rim = tuple(int(c + (245 - c) * look["hole_rim"]) for c in hc)
    elif not flat and look["hole_rim"] < -0.05:
        rim = _scale(hc, 1 + look["hole_rim"])
    for k in range(spec.n_pins):
        _poly(img, holes[k], hole_col, outline, 1)
        if rim is not None:
            cv2.polylines(img, [np.round(holes[k] * 16).astype(np.int32)], True, rim, 1, _AA, shift=4)


def _draw_pin_shadows(
    img: np.ndarray, spec: PartSpec, p: dict[str, Any], cam: Camera, look: dict[str, Any], pins: _Pins
) -> None:
    """Each pin's shadow on the housing top, away from the light, as long as the pin stands."""
    base, lengths, radius = pins.base, pins.lengths, pins.radius
    a = math.radians(look["shadow_dir"])
    sdir = np.array([math.cos(a), math.sin(a), 0.0]) * look["shadow_len"]
    layer = img.copy()
    ends = cam.project(base + sdir[None] * (lengths / spec.pin_height)[:, None])
    starts = cam.project(base)
    width = max(1, int(round(radius * p["pitch_px"] * 1.6)))
    for k in range(spec.n_pins):
        if lengths[k] > 1e-3:
            cv2.line(layer, _ipt(starts[k]), _ipt(ends[k]), _scale(p["housing_colour"], 0.2), width, _AA)
    _blend(img, cv2.GaussianBlur(layer, (0, 0), 1.5), look["shadow"])


def _draw_pins(
    img: np.ndarray, spec: PartSpec, p: dict[str, Any], cam: Camera, look: dict[str, Any], pins: _Pins
) -> None:
    """The pins, back row first so that nearer pins paint over farther ones: a flat bar and end
    in the flat style; a shaded cylinder with a bright line and a lit end in the photo style."""
    base, tip, lengths, radius = pins
    flat = p["style"] == "flat"
    ow, outline = _outline(p)
    axes = (tip - base) / np.maximum(lengths, 1e-9)[:, None]
    bcs = cam.project(_circles(base, radius, axes))
    tcs = cam.project(_circles(tip, radius, axes))
    caps = cam.project(_circles(tip, radius * look["cap"], axes)) if look["cap"] != 1.0 else tcs
    b2s, t2s = cam.project(base), cam.project(tip)
    pc = p["pin_colour"]
    light, shade = p.get("light"), p.get("shade")
    if light:  # a mirror: the body shows the housing around it
        hc = np.asarray(p["housing_colour"], float)
        pc = [int(v) for v in np.asarray(pc, float) * (1 - light["mirror"]) + hc * light["mirror"]]
    body, dark = tuple(pc), _scale(pc, look["body_dark"])
    tip = p.get("tip")
    cap_light, spot_light = (tip["light"], tip["spot"]) if tip else (look["cap_light"], 1.9)
    bright, cap, spot = _scale(pc, look["highlight_light"]), _scale(pc, cap_light), _scale(pc, spot_light)
    ls = p["light_side"]
    for k in range(spec.n_pins):
        if lengths[k] < 1e-3:
            continue
        tc = tcs[k]
        hull = cv2.convexHull(np.concatenate([bcs[k], tc]).astype(np.float32))[:, 0, :]
        rad_px = float(tc[:, 0].max() - tc[:, 0].min()) / 2
        if flat:
            _poly(img, hull, body, outline, ow)
            _poly(img, tc, cap, outline, 1)
            continue
        if look["flush_dark"] and lengths[k] < 0.15 * spec.pin_height:  # its end deep in the hole's shadow
            _poly(img, caps[k], _scale(pc, 0.3 * look["hole_inside"] / 0.25))
            continue
        _poly(img, hull, dark)
        b2, t2 = b2s[k], t2s[k]
        along = t2 - b2
        nrm = np.array([-along[1], along[0]]) / (math.hypot(along[0], along[1]) + 1e-6)
        core = max(1, int(round(rad_px * 1.1)))
        off = nrm * (ls * rad_px * 0.35)
        hl = max(1, core // 3) if look["highlight"] is None else max(1, int(round(core * look["highlight"])))
        cv2.line(img, _ipt(b2 + off * 0.5), _ipt(t2 + off * 0.5), body, core, _AA)
        for j in range(light["bands"] if light else 0):  # dark reflections, on the side away from the light
            band = nrm * (-math.copysign(1.0, ls) * rad_px * (0.25 + 0.35 * j))
            cv2.line(img, _ipt(b2 + band), _ipt(t2 + band), dark, max(1, core // 4), _AA)
        cv2.line(img, _ipt(b2 + off), _ipt(t2 + off), bright, hl, _AA)
        if shade:
            level = shade["row_levels"][k // spec.cols] if "row_levels" in shade else shade["level"]
            _shade_low(img, base[k], axes[k], lengths[k], spec.pin_height, cam, shade, level, body, core + 1)
        _poly(img, caps[k], cap)
        centre = caps[k].mean(0) + nrm * (ls * rad_px * 0.2)
        cv2.circle(img, _ipt(centre), max(1, int(rad_px * 0.45 * look["cap"])), spot, -1, _AA)


def _shade_low(
    img: np.ndarray,
    base: np.ndarray,
    axis: np.ndarray,
    length: float,
    height: float,
    cam: Camera,
    shade: dict[str, Any],
    level: float,
    body: tuple[int, ...],
    width: int,
) -> None:
    """Paint one pin's body dark (`level` of the lit body) from the housing top up to `up_to` of a
    straight pin's height, then back to the lit body over `soft` of it, in four steps; never past
    the pin's own end."""
    dark_to, soft = shade["up_to"] * height, shade["soft"] * height
    steps = [(0.0, dark_to, level)] + [
        (dark_to + soft * i / 4, dark_to + soft * (i + 1) / 4, level + (1 - level) * (i + 0.5) / 4) for i in range(4)
    ]
    for lo, hi, tone in steps:
        lo, hi = min(lo, length), min(hi, length)
        if hi - lo > 1e-3:
            a, b = cam.project(np.stack([base + axis * lo, base + axis * hi]))
            cv2.line(img, _ipt(a), _ipt(b), _scale(body, tone), width, _AA)


def _ipt(x: np.ndarray) -> tuple[int, int]:
    return int(round(float(x[0]))), int(round(float(x[1])))


_NOISE_BANK: dict[tuple[int, int], np.ndarray] = {}


def _noise_bank(h: int, w: int) -> np.ndarray:
    """Unit Gaussian noise, twice the frame in each direction, made once per process from a fixed
    seed. Each frame reads a window at a seeded offset: per-frame noise at a fraction of the cost
    of drawing ~1M normals, and still a pure function of the frame's params."""
    if (h, w) not in _NOISE_BANK:
        _NOISE_BANK[(h, w)] = np.random.default_rng(12345).standard_normal((2 * h, 2 * w, 3), dtype=np.float32)
    return _NOISE_BANK[(h, w)]


def _camera_effects(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    a = math.radians(p["illumination_angle"])
    yy, xx = np.mgrid[0:8, 0:10].astype(np.float32)
    xx, yy = xx / 9 - 0.5, yy / 7 - 0.5
    gain = 1 + 2 * p["illumination"] * (math.cos(a) * xx + math.sin(a) * yy) - p["vignette"] * (xx**2 + yy**2) * 2
    if p["glare"] > 0:  # a soft hot spot from a ring light
        gx, gy = rng.uniform(-0.4, 0.4, 2)
        gain += 0.5 * p["glare"] * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / 0.02)
    gain3 = np.stack([gain * (1 + c) for c in p["color_cast"]], -1).astype(np.float32)
    gain3 = cv2.resize(gain3, (w, h), interpolation=cv2.INTER_LINEAR)
    if p["blur_sigma"] > 0.05:  # defocus; blurring before the (smooth) light gain is cheaper and near identical
        img = cv2.GaussianBlur(img, (0, 0), p["blur_sigma"])
    f = img.astype(np.float32)
    f *= gain3
    if p["noise_sigma"] > 0.05:
        oy, ox = int(rng.integers(0, h)), int(rng.integers(0, w))
        f = cv2.scaleAdd(_noise_bank(h, w)[oy : oy + h, ox : ox + w], p["noise_sigma"], f)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if abs(p["gamma"] - 1) > 1e-3:
        lut = np.clip(((np.arange(256) / 255.0) ** p["gamma"]) * 255 + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    if p["jpeg_quality"]:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, p["jpeg_quality"]])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def render(spec: PartSpec, p: dict[str, Any]) -> np.ndarray:
    """The BGR uint8 frame for `p` (from `sample_params`)."""
    h, w = spec.camera.frame_height, spec.camera.frame_width
    seed = int(p["noise_seed"])
    rng = np.random.default_rng(seed)
    img = _background(p, rng, h, w)
    _distractors(img, p, rng)
    if p.get("light") and p["light"]["background_blur"] > 0.3:  # depth of field: the part is in focus
        img = cv2.GaussianBlur(img, (0, 0), p["light"]["background_blur"])
    cam = Camera(p)
    _draw_part(img, spec, p, cam)
    if p["style"] == "flat":
        # a drawing has none of the camera's light, but may still be scanned or compressed
        p = {
            **p,
            "illumination": 0.0,
            "vignette": 0.0,
            "glare": 0.0,
            "gamma": 1.0,
            "color_cast": [0.0] * 3,
            "blur_sigma": min(p["blur_sigma"], 0.6),
            "noise_sigma": min(p["noise_sigma"], 2.0),
        }
    return _camera_effects(img, p, rng)
