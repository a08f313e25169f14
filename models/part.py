"""The part spec: a typed, file-backed description of a connector and the camera that sees it.

A part is data, not code: `models/parts/default.json` is `shared/PART.md` written down, and a
user's own connector is a new JSON file passed as `--part path/to/part.json`. Every consumer
(the generator, training, export, the station) reads the same spec, and exported bundles carry
it, so a model trained for one part refuses to run on another.

Torch-free on purpose: the station imports this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTS_DIR = Path(__file__).resolve().parent / "parts"
CLASSES: tuple[str, ...] = ("BENDNG", "NUKENG", "OK")
# A bend "leans out" when it points within this many degrees of straight out towards the edge
OUTWARD_WITHIN_DEG = 45.0


class PartSpecError(ValueError):
    """A part spec that cannot be used; the message names the file and the field."""


Range = tuple[float, float]


@dataclass(frozen=True)
class CameraSpec:
    """How the camera sees the part. Ranges are (low, high), sampled uniformly."""

    frame_width: int = 640
    frame_height: int = 480
    tilt_deg: Range = (15.0, 25.0)  # camera axis from the vertical, looking from the front
    pitch_px: Range = (42.0, 55.0)  # one pitch in the frame
    center_jitter_px: float = 30.0
    rotation_deg: float = 4.0
    scale_jitter: float = 0.10
    distance_pitch: Range = (30.0, 60.0)  # camera distance, sets how much perspective there is
    illumination: float = 0.25  # +- fraction across the frame
    color_cast: float = 0.10  # +- fraction per channel
    blur_sigma: Range = (0.0, 1.4)
    noise_sigma: Range = (0.0, 7.0)
    jpeg_quality: Range = (70.0, 100.0)


@dataclass(frozen=True)
class DefectSpec:
    bend_deg: Range = (8.0, 25.0)  # BENDNG: tilt from the vertical, any direction
    nuke_height: Range = (0.0, 0.65)  # NUKENG: fraction of normal height left standing
    ok_tolerance_pitch: float = 0.02  # OK pins sit within this of their true position


@dataclass(frozen=True)
class PartSpec:
    """Geometry in pitch units (the pin-to-pin distance is 1)."""

    name: str = "default"
    description: str = ""
    rows: int = 3
    cols: int = 9
    pin_diameter: float = 0.5
    pin_height: float = 2.0
    hole_ratio: float = 1.35  # hole diameter / pin diameter
    housing_margin: float = 1.0  # housing edge beyond the outer pin centres
    housing_depth: Range = (1.2, 2.5)  # front face height
    classes: tuple[str, ...] = CLASSES
    camera: CameraSpec = field(default_factory=CameraSpec)
    defects: DefectSpec = field(default_factory=DefectSpec)

    @property
    def n_pins(self) -> int:
        return self.rows * self.cols

    def pin_number(self, row: int, col: int) -> int:
        """PART.md numbering: row-major from the top-left as the camera sees it, 1-based."""
        return self.cols * row + col + 1

    def pin_row_col(self, pin: int) -> tuple[int, int]:
        if not 1 <= pin <= self.n_pins:
            raise ValueError(f"pin {pin} is not on a {self.rows}x{self.cols} part")
        return divmod(pin - 1, self.cols)

    def pins_in_columns(self, columns: list[int]) -> list[int]:
        """Pins whose column (1-based, from the left) is in `columns`."""
        return [p for p in range(1, self.n_pins + 1) if self.pin_row_col(p)[1] + 1 in columns]

    def border_pins(self) -> list[int]:
        """The pins on the back row or an outer column: the pins next to the housing's edge."""
        return [p for p in range(1, self.n_pins + 1) if self.outward_directions(p)]

    def outward_directions(self, pin: int) -> list[float]:
        """Bend directions (degrees in the housing's plane: 0 = to the right, 90 = away from the
        camera, 180 = to the left, as both renderers record `bend_dir_deg`) that lean `pin` straight
        out towards the housing's nearest edge (a back-row pin bent so rises past the back edge, onto
        the background): none for an inner or front-row pin, two at a corner."""
        row, col = self.pin_row_col(pin)
        return [d for d, on in ((90.0, row == 0), (180.0, col == 0), (0.0, col == self.cols - 1)) if on]

    def leans_outward(self, pin: int, bend_dir_deg: float, within_deg: float = OUTWARD_WITHIN_DEG) -> bool:
        """Whether a pin bent towards `bend_dir_deg` leans out towards the housing's edge (within
        `within_deg` of one of its outward directions)."""
        return any(abs((bend_dir_deg - d + 180.0) % 360.0 - 180.0) <= within_deg for d in self.outward_directions(pin))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def fingerprint(self) -> str:
        """Short hash of the geometry and classes; bundles carry it to refuse another part."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading and validation


def _check_range(where: str, value: Any, lo: float | None = None, hi: float | None = None) -> Range:
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise PartSpecError(f"{where}: expected [low, high], got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b)):  # NaN compares false with every bound below
        raise PartSpecError(f"{where}: expected finite numbers, got {value!r}")
    if a > b:
        raise PartSpecError(f"{where}: low {a} is above high {b}")
    if lo is not None and a < lo:
        raise PartSpecError(f"{where}: {a} is below the smallest allowed value {lo}")
    if hi is not None and b > hi:
        raise PartSpecError(f"{where}: {b} is above the largest allowed value {hi}")
    return (a, b)


def _check_number(where: str, value: Any, lo: float, hi: float, integer: bool = False) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise PartSpecError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise PartSpecError(f"{where}: expected a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise PartSpecError(f"{where}: {value} is outside [{lo}, {hi}]")
    return int(value) if integer else float(value)


# Allowed bounds per field. Values outside them are impossible for this camera. Kind: int, num
# (one number) or range (a [low, high] pair inside the bounds).
_BOUNDS = """
section  field               kind   low   high
part     rows                int    1     12
part     cols                int    1     40
part     pin_diameter        num    0.05  0.9
part     pin_height          num    0.2   6.0
part     hole_ratio          num    1.0   1.9
part     housing_margin      num    0.3   4.0
part     housing_depth       range  0.1   6.0
camera   frame_width         int    64    4096
camera   frame_height        int    64    4096
camera   tilt_deg            range  0.0   60.0
camera   pitch_px            range  4.0   400.0
camera   center_jitter_px    num    0.0   500.0
camera   rotation_deg        num    0.0   45.0
camera   scale_jitter        num    0.0   0.5
camera   distance_pitch      range  5.0   1000.0
camera   illumination        num    0.0   0.9
camera   color_cast          num    0.0   0.5
camera   blur_sigma          range  0.0   10.0
camera   noise_sigma         range  0.0   50.0
camera   jpeg_quality        range  10.0  100.0
defects  bend_deg            range  0.5   80.0
defects  nuke_height         range  0.0   0.95
defects  ok_tolerance_pitch  num    0.0   0.2
"""


def _bounds(section: str) -> dict[str, tuple[str, float, float]]:
    """The (kind, low, high) of every field of one section of the table above."""
    rows = [line.split() for line in _BOUNDS.strip().splitlines()[1:]]
    num = {"int": int}
    return {
        name: (kind, num.get(kind, float)(lo), num.get(kind, float)(hi))
        for sec, name, kind, lo, hi in rows
        if sec == section
    }


_PART_FIELDS = _bounds("part")
_CAMERA_FIELDS = _bounds("camera")
_DEFECT_FIELDS = _bounds("defects")


def _parse_fields(where: str, raw: dict[str, Any], fields: dict[str, tuple[str, float, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise PartSpecError(f"{where}.{key}: unknown field (known: {', '.join(sorted(fields))})")
        kind, lo, hi = fields[key]
        if kind == "range":
            out[key] = _check_range(f"{where}.{key}", value, lo, hi)
        else:
            out[key] = _check_number(f"{where}.{key}", value, lo, hi, integer=kind == "int")
    return out


def part_from_dict(raw: Any, source: str = "<dict>") -> PartSpec:
    """Build and validate a PartSpec; errors read `<source>: <field>: <what is wrong>`."""
    try:
        if not isinstance(raw, dict):
            raise PartSpecError("top level: expected a JSON object")
        raw = dict(raw)
        camera_raw = raw.pop("camera", {})
        defects_raw = raw.pop("defects", {})
        name = raw.pop("name", None)
        if not isinstance(name, str) or not name.strip():
            raise PartSpecError("name: expected a non-empty string")
        description = raw.pop("description", "")
        if not isinstance(description, str):
            raise PartSpecError("description: expected a string")
        classes = raw.pop("classes", list(CLASSES))
        if tuple(classes) != CLASSES:
            raise PartSpecError(f"classes: this version supports exactly {list(CLASSES)}, got {classes!r}")
        if not isinstance(camera_raw, dict):
            raise PartSpecError("camera: expected an object")
        if not isinstance(defects_raw, dict):
            raise PartSpecError("defects: expected an object")
        part_kw = _parse_fields("part", raw, _PART_FIELDS)
        camera = CameraSpec(**_parse_fields("camera", camera_raw, _CAMERA_FIELDS))
        defects = DefectSpec(**_parse_fields("defects", defects_raw, _DEFECT_FIELDS))
        spec = PartSpec(name=name, description=description, camera=camera, defects=defects, **part_kw)
        _check_consistency(spec)
        return spec
    except PartSpecError as e:
        raise PartSpecError(f"{source}: {e}") from None


def _check_consistency(spec: PartSpec) -> None:
    if spec.pin_diameter * spec.hole_ratio >= 1.0:
        raise PartSpecError("part.hole_ratio: holes of this size would overlap their neighbours")
    cam = spec.camera
    width_px = (spec.cols - 1 + 2 * spec.housing_margin) * cam.pitch_px[1] * (1 + cam.scale_jitter)
    if width_px > cam.frame_width * 1.05:
        raise PartSpecError(
            f"camera.pitch_px: the housing would be {width_px:.0f} px wide, more than the {cam.frame_width} px frame"
        )
    if spec.defects.bend_deg[0] <= 0:
        raise PartSpecError("defects.bend_deg: a bend must be above 0 degrees")


def load_part(name_or_path: str | Path) -> PartSpec:
    """Load a part by name (a file in models/parts/) or by path to a JSON file."""
    path = Path(name_or_path)
    if path.suffix != ".json" and not path.exists():
        path = PARTS_DIR / f"{name_or_path}.json"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in PARTS_DIR.glob("*.json")))
            raise PartSpecError(f"{name_or_path}: no such part (known parts: {known}; or give a path to a .json file)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PartSpecError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise PartSpecError(f"{path}: not a UTF-8 text file (binary?); a part spec is JSON") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise PartSpecError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return part_from_dict(raw, source=str(path))


def dataset_identity(
    spec: PartSpec, n: int, seed: int, classes: Sequence[str], defect_columns: Sequence[int] | None
) -> dict[str, Any]:
    """What a labelled data set's dataset.json says it holds, whichever renderer made it."""
    return {
        "part": spec.name,
        "part_fingerprint": spec.fingerprint(),
        "n": n,
        "seed": seed,
        "classes": list(classes),
        "defect_columns": list(defect_columns) if defect_columns else None,
    }
