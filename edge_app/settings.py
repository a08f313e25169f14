"""The station's typed config: `StationConfig`, defaults in code, overridden by a JSON file and the CLI.

Loading never crashes on a bad file: every field that cannot be used is reported in one line
(`field: what is wrong`) and keeps its default, so a line worker sees the message in the window
and the station still starts. Saving writes the whole resolved config atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.decision import DEFAULT_THRESHOLDS
from models.files import atomic_write

BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "int8", "fp32")
DEFECT_CLASSES: tuple[str, ...] = tuple(DEFAULT_THRESHOLDS)
MODEL_HISTORY = 5  # previous model bundles kept for a rollback
TRIGGERS: tuple[str, ...] = ("free", "key", "plc", "stdin")
PLCS: tuple[str, ...] = ("", "modbus", "opcua")


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "pininspect" / "station.json"


def default_archive_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "pininspect" / "archive"


def default_model_dir() -> Path:
    """The shipped model: models/default next to the installed `models` package."""
    import models

    return Path(models.__file__).resolve().parent / "default"


class SettingsError(ValueError):
    """A config that cannot be used as a whole (unreadable file, invalid JSON)."""


@dataclass
class StationConfig:
    """Everything the station needs to run; `docs` of each field are in FIELD_HELP."""

    source: str = "auto"  # auto | sim | camera:0 | camera:URL | video:PATH | folder:PATH
    model: str = ""  # bundle folder; "" = the shipped models/default
    backend: str = "auto"
    precision: str = "auto"
    part: str = "default"  # the part the station inspects; the bundle must be trained for it
    thresholds: dict[str, float] = field(default_factory=dict)  # per defect class; missing = the model's own
    archive_dir: str = ""  # "" = ~/.local/share/pininspect/archive
    archive_enabled: bool = True
    archive_ok_every: int = 100  # besides every NG frame, keep every n-th OK frame for review; 0 = none
    archive_ok_per_hour: int = 60  # at most this many of those OK frames an hour; 0 = no cap
    archive_margin: float = 0.05  # keep every frame whose score is this close to a threshold; 0 = none
    model_history: list[str] = field(default_factory=list)  # bundles run before `model`, newest first
    loop: bool = False  # replay a video / folder from the start when it ends
    fps: float = 0.0  # cap on frames read from a file source; 0 = as fast as inference allows
    sim_defect_rate: float = 0.2
    sim_fps: float = 15.0  # simulated camera frame rate; 0 = as fast as inference allows
    sim_pool: int = 64  # distinct frames rendered up front and cycled; 0 = render every frame live
    sim_seed: int = 0
    retry_max_s: float = 10.0  # longest wait between reconnect attempts of a failed camera
    trigger: str = "free"  # free-running, or one inspection per trigger (key, plc, stdin)
    plc: str = ""  # "" (none), modbus or opcua: the server the PLC talks to
    plc_host: str = "0.0.0.0"
    plc_port: int = 0  # 0 = the protocol's default (Modbus 5020, OPC UA 4840)
    plc_unit: int = 1  # Modbus unit (device) id

    def model_dir(self) -> Path:
        return Path(self.model).expanduser() if self.model else default_model_dir()

    def archive_path(self) -> Path:
        return Path(self.archive_dir).expanduser() if self.archive_dir else default_archive_dir()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_HELP: dict[str, str] = {
    "source": "auto (camera 0 if one is plugged in, else the simulator), sim, camera:N, camera:URL, "
    "video:PATH or folder:PATH",
    "model": "model bundle folder (empty: the shipped default model)",
    "backend": "inference engine: " + ", ".join(BACKENDS),
    "precision": "model precision: " + ", ".join(PRECISIONS),
    "part": "part name or part JSON the station inspects",
    "thresholds": "per defect class, score at which a frame is NG (0..1); a class left out uses the model's own",
    "archive_dir": "where NG frames are saved (empty: ~/.local/share/pininspect/archive)",
    "archive_enabled": "save NG frames (and the sampled OK and borderline ones) for review",
    "archive_ok_every": "also keep every n-th OK frame for review (0: none)",
    "archive_ok_per_hour": "at most this many sampled OK frames an hour (0: no cap)",
    "archive_margin": "also keep every frame whose score is within this of a threshold (0: none)",
    "model_history": "model bundles run before this one, newest first (Roll back returns to the first)",
    "loop": "replay a video or folder when it ends",
    "fps": "frame rate cap for video / folder sources (0: no cap)",
    "sim_defect_rate": "fraction of simulated parts with a defect (0..1)",
    "sim_fps": "simulated camera frame rate (0: as fast as inference allows)",
    "sim_pool": "simulated frames rendered up front and cycled (0: render every frame live)",
    "sim_seed": "seed of the simulated line",
    "retry_max_s": "longest wait between reconnect attempts of a failed camera (s)",
    "trigger": "free (inspect every frame), key (the window's Trigger button / space bar), plc (the PLC's "
    "Trigger), stdin (headless: each line on stdin)",
    "plc": "PLC server: empty (none), modbus (Modbus TCP) or opcua (OPC UA)",
    "plc_host": "address the PLC server listens on (0.0.0.0: every network card)",
    "plc_port": "TCP port of the PLC server (0: 5020 for Modbus, 4840 for OPC UA)",
    "plc_unit": "Modbus unit id the station answers as (1..247)",
}


def _number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside [{lo}, {hi}]")
    return int(value) if integer else float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return value


def _thresholds(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected an object like {json.dumps(DEFAULT_THRESHOLDS)}")
    unknown = set(value) - set(DEFECT_CLASSES)
    if unknown:
        raise ValueError(f"{name}: unknown class {sorted(unknown)[0]!r} (known: {', '.join(DEFECT_CLASSES)})")
    out = {}
    for k, v in value.items():
        out[k] = _number(f"{name}.{k}", v, 0.0, 1.0)
    return out


def _folders(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: expected a list of folder names, got {value!r}")
    return list(value)[:MODEL_HISTORY]


def _source(name: str, value: Any) -> str:
    from edge_app.sources import SourceError, parse_source

    text = _string(name, value)
    try:
        parse_source(text)
    except SourceError as e:
        raise ValueError(f"{name}: {e}") from None
    return text


def _host(name: str, value: Any) -> str:
    from edge_app.plc import check_host

    return check_host(name, value)


_CHECKS: dict[str, Any] = {
    "source": _source,
    "model": _string,
    "backend": lambda n, v: _choice(n, v, BACKENDS),
    "precision": lambda n, v: _choice(n, v, PRECISIONS),
    "part": _string,
    "thresholds": _thresholds,
    "archive_dir": _string,
    "archive_enabled": _bool,
    "archive_ok_every": lambda n, v: _number(n, v, 0, 1_000_000, integer=True),
    "archive_ok_per_hour": lambda n, v: _number(n, v, 0, 1_000_000, integer=True),
    "archive_margin": lambda n, v: _number(n, v, 0.0, 0.5),
    "model_history": _folders,
    "loop": _bool,
    "fps": lambda n, v: _number(n, v, 0.0, 1000.0),
    "sim_defect_rate": lambda n, v: _number(n, v, 0.0, 1.0),
    "sim_fps": lambda n, v: _number(n, v, 0.0, 1000.0),
    "sim_pool": lambda n, v: _number(n, v, 0, 10000, integer=True),
    "sim_seed": lambda n, v: _number(n, v, 0, 2**31 - 1, integer=True),
    "retry_max_s": lambda n, v: _number(n, v, 0.1, 3600.0),
    "trigger": lambda n, v: _choice(n, v, TRIGGERS),
    "plc": lambda n, v: _choice(n, v, PLCS) if v in PLCS else _choice(n, v, ('"" (none)', *PLCS[1:])),
    "plc_host": _host,
    "plc_port": lambda n, v: _number(n, v, 0, 65535, integer=True),
    "plc_unit": lambda n, v: _number(n, v, 1, 247, integer=True),
}
assert set(_CHECKS) == {f.name for f in dataclasses.fields(StationConfig)}


def check_value(name: str, value: Any) -> Any:
    """The validated value for one field, or ValueError('field: what is wrong')."""
    if name not in _CHECKS:
        raise ValueError(f"{name}: unknown setting (known: {', '.join(_CHECKS)})")
    return _CHECKS[name](name, value)


def apply(base: StationConfig, raw: dict[str, Any]) -> tuple[StationConfig, list[str]]:
    """`base` with the valid fields of `raw` applied, and one message per field left unchanged."""
    values = base.to_dict()
    problems = []
    for name, value in raw.items():
        try:
            values[name] = check_value(name, value)
        except ValueError as e:
            problems.append(f"{e}; keeping {json.dumps(values.get(name))}" if name in values else str(e))
    return StationConfig(**values), problems


def validate(cfg: StationConfig) -> list[str]:
    """Every problem with a config built in code (e.g. by the settings dialog); [] when usable."""
    return apply(StationConfig(), cfg.to_dict())[1]


def load_config(path: Path | None) -> tuple[StationConfig, list[str]]:
    """The config in `path` over the defaults, and the problems found. A missing file is the
    defaults; an unreadable or non-JSON file is the defaults plus one message saying why."""
    if path is None or not Path(path).exists():
        return StationConfig(), []
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        return StationConfig(), [f"{path}: cannot read ({e.strerror}); using the defaults"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return StationConfig(), [f"{path}: not valid JSON ({e}); using the defaults"]
    if not isinstance(raw, dict):
        return StationConfig(), [f"{path}: expected a JSON object; using the defaults"]
    cfg, problems = apply(StationConfig(), raw)
    return cfg, [f"{path}: {p}" for p in problems]


def save_config(cfg: StationConfig, path: Path) -> None:
    """Write the whole config atomically (a crash mid-write leaves the old file); raises
    SettingsError with the reason when the file cannot be written."""
    path = Path(path)
    try:
        atomic_write(path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise SettingsError(f"{path}: cannot save the settings ({e.strerror or e})") from None
