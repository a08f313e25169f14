"""Where the defect is in the frame, and the picture the operator sees. numpy + OpenCV, no Qt.

The runtime gives the pin number and a per-token defect heatmap over the model's input crop;
`locate` maps the hottest token back to frame pixels through the model's own InputSpec (the same
crop the model was trained with), and `draw` circles it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from models.part import PartSpec

COLOURS_BGR = {"OK": (60, 180, 60), "BENDNG": (40, 40, 230), "NUKENG": (0, 150, 255)}


def pin_radius(part: PartSpec) -> int:
    """The circle drawn around a defective pin: one pitch of the part in the frame (the middle of
    its camera's pitch range), so it takes in the pin and stops at its neighbours."""
    lo, hi = part.camera.pitch_px
    return int(round((lo + hi) / 2))


def locate(heatmap: np.ndarray, spec: Any) -> tuple[float, float]:
    """Frame pixel (x, y) of the defect: the hottest heatmap token, refined by the heat-weighted
    centre of its 3x3 neighbourhood, mapped through the crop box of `spec` (an InputSpec)."""
    hm = np.asarray(heatmap, np.float64)
    gh, gw = hm.shape
    r, c = np.unravel_index(int(np.argmax(hm)), hm.shape)
    r0, r1, c0, c1 = max(0, r - 1), min(gh, r + 2), max(0, c - 1), min(gw, c + 2)
    w = np.clip(hm[r0:r1, c0:c1], 0, None)
    rr, cc = np.mgrid[r0:r1, c0:c1]
    if w.sum() > 0:
        r_f, c_f = float((rr * w).sum() / w.sum()), float((cc * w).sum() / w.sum())
    else:
        r_f, c_f = float(r), float(c)
    x_in = (c_f + 0.5) * spec.width / gw
    y_in = (r_f + 0.5) * spec.height / gh
    x, y = spec.input_to_frame(np.array([x_in, y_in]))
    return float(x), float(y)


def heat_layer(image: np.ndarray, heatmap: np.ndarray, spec: Any, strength: float = 0.65) -> np.ndarray:
    """`image` with the heatmap blended over the crop box, transparent where the heat is low."""
    x0, y0, x1, y1 = spec.crop
    out = image.copy()
    small = np.clip(np.asarray(heatmap, np.float32), 0, 1)
    hm = np.clip(cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC), 0, 1)
    colour = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    a = (strength * hm)[..., None]
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (roi * (1 - a) + colour * a).astype(np.uint8)
    return out


def draw(image: np.ndarray, verdict: Any, spec: Any | None, radius: int, show_heatmap: bool = False) -> np.ndarray:
    """A copy of `image` with the heatmap (optional) and, for an NG verdict, the defective pin
    circled (`radius`: see pin_radius) and numbered. Without a spec (no model loaded) the frame is
    returned as is."""
    out = image.copy()
    if spec is None:
        return out
    hm = getattr(verdict, "heatmap", None)
    if show_heatmap and hm is not None:
        out = heat_layer(out, hm, spec)
    if verdict.label != "OK" and hm is not None:
        circle(out, locate(hm, spec), verdict.label, int(verdict.pin), radius)
    return out


def circle(out: np.ndarray, xy: tuple[float, float], label: str, pin: int, radius: int) -> None:
    """Circle and number a pin in place (the live view, and the archive's review dialog)."""
    x, y = xy
    colour = COLOURS_BGR.get(label, (255, 255, 255))
    centre = (int(round(x)), int(round(y)))
    cv2.circle(out, centre, radius + 2, (0, 0, 0), 5, cv2.LINE_AA)  # dark rim: visible on any background
    cv2.circle(out, centre, radius, colour, 3, cv2.LINE_AA)
    text = f"pin {pin}"
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 2)
    tx = int(np.clip(centre[0] - tw / 2, 2, out.shape[1] - tw - 2))
    ty = centre[1] - radius - 10
    if ty - th < 2:  # no room above the circle: write below it
        ty = centre[1] + radius + th + 10
    cv2.rectangle(out, (tx - 4, ty - th - 6), (tx + tw + 4, ty + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
