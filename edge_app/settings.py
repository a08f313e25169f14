"""The station's typed config: `StationConfig`, defaults in code, overridden by a JSON file and the CLI.

Loading never crashes on a bad file: every field that cannot be used is reported in one line
(`field: what is wrong`) and keeps its default, so a line worker sees the message in the window
and the station still starts. Saving writes the whole resolved config atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.decision import DEFAULT_THRESHOLDS
from models.files import atomic_write
from models.options import Option

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


@dataclass(frozen=True)
class Setting(Option):
    """One StationConfig field, described once: its help and flag (as every command's options,
    models.options), its check, and its row in the settings dialog. `python -m edge_app --help`,
    the settings file's messages and the window's Settings dialog are all made from these."""

    kind: str = "text"  # "number", "choice", "bool", "text", "folder", "source", or "other" (own flag/widget)
    check: Callable[[str, Any], Any] = lambda name, value: value  # -> the value, or ValueError naming the field
    label: str | None = None  # the settings dialog's row, when the dialog edits it
    lo: float = 0.0
    hi: float = 0.0
    integer: bool = False
    step: float = 1.0
    unit: str = ""
    zero: str = ""  # what 0 means, shown in the dialog instead of the number ("no limit")


def _number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside [{lo}, {hi}]")
    return int(value) if integer else float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        shown = [c or '"" (none)' for c in choices]
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(shown)}")
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
        if out[k] == 0:  # the verdict rule's range, (0, 1]: at 0 every frame would be NG
            raise ValueError(f"{name}.{k}: 0 would flag every frame; expected a number in (0, 1]")
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


def _field(default: Any, s: Setting) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"option": s})
    return field(default=default, metadata={"option": s})


def number(
    default: float, help: str, lo: float, hi: float, flag: str | None = None, label: str | None = None,
    step: float = 1.0, unit: str = "", zero: str = "",
) -> Any:  # fmt: skip
    integer = isinstance(default, int)
    check = functools.partial(_number, lo=lo, hi=hi, integer=integer)
    return _field(default, Setting(help, flag, kind="number", check=check, label=label, lo=lo, hi=hi,
                                   integer=integer, step=step, unit=unit, metavar="N" if integer else "X",
                                   zero=zero))  # fmt: skip


def choice(default: str, help: str, choices: tuple[str, ...], flag: str | None = None, label: str | None = None) -> Any:
    check = functools.partial(_choice, choices=choices)
    return _field(default, Setting(help, flag, choices, kind="choice", check=check, label=label))


def boolean(default: bool, help: str, flag: str | None = None, label: str | None = None) -> Any:
    return _field(default, Setting(help, flag, kind="bool", check=_bool, label=label))


def text(default: str, help: str, flag: str | None = None, label: str | None = None, kind: str = "text") -> Any:
    checks = {"text": _string, "folder": _string, "source": _source, "host": _host}
    metavar = {"folder": "DIR", "source": "SOURCE"}.get(kind)
    return _field(
        default,
        Setting(help, flag, kind="text" if kind == "host" else kind, check=checks[kind], label=label, metavar=metavar),
    )


def other(default: Any, help: str, check: Callable[[str, Any], Any]) -> Any:
    """A field with its own flag(s) and widget (thresholds, model history, PLC address)."""
    return _field(default, Setting(help, kind="other", check=check))


@dataclass
class StationConfig:
    """Everything the station needs to run. Each field's help, check, flag and dialog row is its
    Setting (`SETTINGS`): adding a setting is one line here."""

    source: str = text(
        "auto",
        "where frames come from: auto (camera 0 if one is plugged in, else the simulator), sim, camera:N, "
        "camera:URL, video:PATH or folder:PATH",
        "--source",
        "Source",
        kind="source",
    )
    model: str = text(
        "", "model bundle folder (empty: the shipped default model)", "--model", "Model folder", kind="folder"
    )
    backend: str = choice("auto", "inference engine: " + ", ".join(BACKENDS), BACKENDS, "--backend", "Backend")
    precision: str = choice("auto", "model precision: " + ", ".join(PRECISIONS), PRECISIONS, "--precision", "Precision")
    part: str = text(
        "default", "the part inspected (name or part JSON); the model must be trained for it", "--part", "Part"
    )
    thresholds: dict[str, float] = other(
        {},
        "per defect class, score at which a frame is NG (0 < score <= 1); a class left out uses the model's own",
        _thresholds,
    )
    archive_dir: str = text(
        "",
        "where NG frames are saved (empty: ~/.local/share/pininspect/archive)",
        label="Archive folder",
        kind="folder",
    )  # its flag, --archive DIR, also turns the archive on
    archive_enabled: bool = boolean(
        True, "save NG frames (and the sampled OK and borderline ones) for review", label="Archive"
    )
    archive_ok_every: int = number(
        100,
        "also keep every n-th OK frame for review (0: none)",
        0,
        1_000_000,
        label="Keep every n-th OK",
        zero="none",
    )
    archive_ok_per_hour: int = number(
        60,
        "at most this many sampled OK frames an hour (0: no cap)",
        0,
        1_000_000,
        label="Sampled OK per hour",
        zero="no cap",
    )
    archive_margin: float = number(
        0.05, "also keep every frame whose score is within this of a threshold (0: none)", 0.0, 0.5,
        label="Keep borderline within", step=0.01, zero="none",
    )  # fmt: skip
    archive_max_gb: float = number(
        0.0, "size limit of the archive's images in GB: past it the oldest unreviewed frames go, OK samples first "
        "(reviewed ones stay); 0: none", 0.0, 100_000.0, "--archive-max-gb", "Archive size limit", step=1.0, unit="GB",
        zero="no limit",
    )  # fmt: skip
    model_history: list[str] = other(
        [], "model bundles run before this one, newest first (Roll back returns to the first)", _folders
    )
    loop: bool = boolean(False, "replay a video or folder when it ends", "--loop", "Loop")
    fps: float = number(
        0.0, "frame-rate cap for a video or folder source (0: no cap)", 0.0, 1000.0, "--fps", "File frame-rate cap",
        unit="fps", zero="no cap",
    )  # fmt: skip
    sim_defect_rate: float = number(
        0.2, "fraction of simulated parts with a defect (0..1)", 0.0, 1.0, "--sim-defect-rate",
        "Simulator defect rate", step=0.05,
    )  # fmt: skip
    sim_fps: float = number(
        15.0, "simulated camera frame rate (0: as fast as inference allows)", 0.0, 1000.0, "--sim-fps",
        "Simulator frame rate", unit="fps",
    )  # fmt: skip
    sim_pool: int = number(
        64, "simulated frames rendered up front and cycled (0: render every frame live)", 0, 10000, "--sim-pool",
        "Simulator pool",
    )  # fmt: skip
    sim_seed: int = number(0, "seed of the simulated line", 0, 2**31 - 1, "--sim-seed", "Simulator seed")
    retry_max_s: float = number(
        10.0, "longest wait between reconnect attempts of a failed camera", 0.1, 3600.0, label="Camera retry up to",
        unit="s",
    )  # fmt: skip
    trigger: str = choice(
        "free",
        "free (inspect every frame), key (the window's Trigger button / space bar), plc (the PLC's Trigger), "
        "stdin (headless: each line on stdin)",
        TRIGGERS,
        "--trigger",
        "Trigger",
    )
    plc: str = choice("", "PLC server: empty (none), modbus (Modbus TCP) or opcua (OPC UA)", PLCS, label="PLC server")
    plc_host: str = text(
        "0.0.0.0", "address the PLC server listens on (0.0.0.0: every network card)", label="PLC address", kind="host"
    )
    plc_port: int = number(
        0,
        "TCP port of the PLC server (0: 5020 for Modbus, 4840 for OPC UA)",
        0,
        65535,
        label="PLC port",
        zero="protocol default (5020 / 4840)",
    )
    plc_unit: int = number(1, "Modbus unit id the station answers as (1..247)", 1, 247, "--plc-unit", "Modbus unit")

    def model_dir(self) -> Path:
        return Path(self.model).expanduser() if self.model else default_model_dir()

    def archive_path(self) -> Path:
        return Path(self.archive_dir).expanduser() if self.archive_dir else default_archive_dir()

    def archive_max_bytes(self) -> int:
        return int(self.archive_max_gb * 1e9)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SETTINGS: dict[str, Setting] = {f.name: f.metadata["option"] for f in dataclasses.fields(StationConfig)}
FIELD_HELP: dict[str, str] = {name: s.help for name, s in SETTINGS.items()}


def check_value(name: str, value: Any) -> Any:
    """The validated value for one field, or ValueError('field: what is wrong')."""
    if name not in SETTINGS:
        raise ValueError(f"{name}: unknown setting (known: {', '.join(SETTINGS)})")
    return SETTINGS[name].check(name, value)


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


def conflicts(cfg: StationConfig, headless: bool = False) -> list[str]:
    """Settings that are each valid but do not work together (in the window, or `headless`); []
    when they do. A trigger nothing can pull would leave the line waiting with no message."""
    if cfg.trigger == "plc" and not cfg.plc:
        return ["trigger: plc needs a PLC server (plc: modbus or opcua; --plc modbus[:HOST[:PORT]])"]
    if headless and cfg.trigger == "key":
        return ["trigger: key is the window's Trigger button; a headless run takes free, stdin or plc"]
    if not headless and cfg.trigger == "stdin":
        return ["trigger: stdin is for headless runs; the window takes free, key or plc"]
    return []


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


def save_config(cfg: StationConfig, path: Path) -> Path | None:
    """Write the whole config atomically (a crash mid-write leaves the old file); raises
    SettingsError with the reason when the file cannot be written.

    A settings file that did not load cleanly (not JSON, a bad value) was not what the station ran
    with, and a hand-made setup must not vanish under the defaults: it is kept beside, as
    `NAME.unread-STAMP`, first. Returns that copy's path (None when the file loaded cleanly)."""
    path = Path(path)
    kept = None
    if path.exists() and load_config(path)[1]:
        kept = path.with_name(f"{path.name}.unread-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            shutil.copy2(path, kept)
        except OSError as e:
            raise SettingsError(
                f"{path}: did not load, and a copy could not be kept ({e.strerror or e}); not overwritten"
            ) from None
    try:
        atomic_write(path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise SettingsError(f"{path}: cannot save the settings ({e.strerror or e})") from None
    return kept
