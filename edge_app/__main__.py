"""`python -m edge_app`: the operator station (a window), or `--headless` for a JSON stream.

Settings come from the defaults in code (edge_app.settings.StationConfig), then the settings file,
then these options; --save-config writes the result back to the settings file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_app.settings import (
    SettingsError,
    StationConfig,
    apply,
    conflicts,
    default_config_path,
    load_config,
    save_config,
)
from models.cli import command_parser
from models.options import add_flags, given

EPILOG = """\
sources (--source):
  auto           camera 0 when one is plugged in, else the simulator (the default)
  sim            simulated camera: live renders of the part with --sim-defect-rate defects; each
                 frame carries its truth, so the summary reports accuracy
  camera:N       OpenCV camera index N, e.g. camera:0
  camera:URL     network camera, e.g. camera:rtsp://10.0.0.5/stream
  video:PATH     a video file (ends, or --loop)
  folder:PATH    images in a folder, in name order (ends, or --loop); a labelled folder
                 (images/ + labels.csv) gives the truth of each image

the simulator renders --sim-pool distinct frames up front (default 64, about 1 s) and cycles them,
so rendering (~12 ms a frame) never limits the pipeline; --sim-pool 0 renders every frame live
(endless variety, at most ~80 frames/s). In the window it runs at --sim-fps (default 15) like a
camera, keeping only the newest frame; with --headless it is unpaced (every frame inspected, as fast
as inference goes) unless --sim-fps is given.

on the line (--trigger / --plc): one inspection per trigger, of the first frame captured after it;
  --plc modbus[:HOST[:PORT]]   Modbus TCP server the PLC polls (default 0.0.0.0:5020, unit --plc-unit)
  --plc opcua[:HOST[:PORT]]    OPC UA server (default opc.tcp://0.0.0.0:4840), variables under PinInspect
  --trigger key                the window's Trigger button or the space bar
  --trigger stdin              headless: one inspection per line read from stdin
  The register map and the handshake are in README "The station on the line"; commission a line
  without its PLC with `python -m edge_app.plc_sim --plc modbus:HOST:PORT --cycles 100`.

examples:
  python -m edge_app                                   # the station window
  python -m edge_app --source sim --sim-defect-rate 0.3
  python -m edge_app --headless --source sim --frames 600 --no-archive      # pipeline benchmark
  python -m edge_app --headless --source video:line.avi --model models/default
  python -m edge_app --headless --source sim --plc modbus:127.0.0.1:15020 --quiet # PLC-triggered
"""


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m edge_app",
        EPILOG,
        description="pininspect operator station: inspects connector pins for BENDNG / NUKENG defects.",
    )
    p.add_argument("--config", type=Path, help=f"settings file (default {default_config_path()})")
    add_flags(p, StationConfig, only_given=True)  # one flag per setting that has one
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="CLASS=SCORE",
        help="NG threshold of a defect class, e.g. --threshold BENDNG=0.4 (repeatable)",
    )
    a = p.add_mutually_exclusive_group()
    a.add_argument(
        "--archive",
        help="folder for the frames kept for review: every NG, a sample of OK and the borderline ones "
        "(default ~/.local/share/pininspect/archive)",
    )
    a.add_argument("--no-archive", action="store_true", help="keep no frames")
    p.add_argument("--plc", metavar="PROTO[:HOST[:PORT]]", help="PLC server: modbus[:HOST[:PORT]] or opcua[:...]")
    p.add_argument("--headless", action="store_true", help="no window: one JSON line per verdict, then a summary")
    p.add_argument("--frames", type=int, help="headless: stop after this many verdicts")
    p.add_argument("--quiet", action="store_true", help="headless: print only the summary")
    p.add_argument("--save-config", action="store_true", help="write the resolved settings to the settings file")
    m = p.add_mutually_exclusive_group()
    m.add_argument(
        "--switch-model",
        metavar="DIR",
        help="check that the bundle in DIR loads, make it the model in the settings file (the current one is "
        "kept for --rollback-model) and exit; the window's Switch model does the same while it runs",
    )
    m.add_argument(
        "--rollback-model", action="store_true", help="make the previous model (model_history) the model again"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def overrides(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The settings given on the command line, as StationConfig fields."""
    raw: dict[str, Any] = {}
    problems: list[str] = []
    raw.update(given(args, StationConfig))
    if args.archive is not None:
        raw["archive_dir"], raw["archive_enabled"] = args.archive, True
    if args.no_archive:
        raw["archive_enabled"] = False
    thresholds: dict[str, Any] = {}
    for item in args.threshold:
        cls, sep, value = item.partition("=")
        try:
            thresholds[cls.strip()] = float(value)
        except ValueError:
            problems.append(f"--threshold {item!r}: expected CLASS=SCORE, e.g. BENDNG=0.4")
    if thresholds:
        raw["thresholds"] = thresholds
    if args.plc is not None:
        from edge_app.plc import parse_plc

        try:
            raw.update(parse_plc(args.plc))
        except ValueError as e:
            problems.append(f"--plc {args.plc!r}: {e}")
    return raw, problems


def resolve(args: argparse.Namespace) -> tuple[StationConfig, list[str], list[str]]:
    """(config, warnings from the settings file, errors in the command line)."""
    path = args.config or default_config_path()
    cfg, warnings = load_config(path)
    if args.config is not None and not args.config.exists():
        warnings.append(f"{args.config}: no such file yet; using the defaults (settings are saved there)")
    raw, errors = overrides(args)
    if "thresholds" in raw:
        raw["thresholds"] = {**cfg.thresholds, **raw["thresholds"]}
    if args.headless and args.sim_fps is None:
        raw["sim_fps"] = 0.0  # headless: every simulated frame inspected, as fast as inference goes
    cfg, cli_problems = apply(cfg, raw)
    errors += [p.split("; keeping ")[0] for p in cli_problems]
    if cfg.plc and cfg.trigger == "free":
        cfg.trigger = "plc"  # a PLC server means the PLC triggers
    errors += conflicts(cfg, headless=args.headless)
    return cfg, warnings, errors


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.headless else logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cfg, warnings, errors = resolve(args)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.frames is not None and args.frames < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    if not args.headless and (args.frames is not None or args.quiet):
        print("error: --frames and --quiet apply to --headless runs only", file=sys.stderr)
        return 2
    config_path = args.config or default_config_path()
    if args.switch_model is not None or args.rollback_model:
        others = sorted(overrides(args)[0]) + [f for f in ("save_config", "headless") if getattr(args, f)]
        if others:  # the bundle is checked against, and saved into, the settings file as it is
            flag = "--switch-model" if args.switch_model is not None else "--rollback-model"
            print(
                f"error: {flag} changes only the model in the settings file; give other settings "
                f"({', '.join(others)}) in a run of their own (with --save-config to keep them)",
                file=sys.stderr,
            )
            return 2
        return switch_model(args.switch_model, load_config(config_path)[0], config_path)
    if args.save_config:
        saved = cfg
        if args.headless and args.sim_fps is None:  # the unpaced headless simulator is not a setting
            saved = replace(saved, sim_fps=load_config(config_path)[0].sim_fps)
        for f in ("model", "archive_dir"):  # a relative folder would mean another one when started elsewhere
            value = getattr(saved, f)
            if value and not Path(value).expanduser().is_absolute() and Path(value).exists():
                saved = replace(saved, **{f: str(Path(value).resolve())})
        try:
            kept = save_config(saved, config_path)
        except SettingsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        _say_kept(config_path, kept)
    if args.headless:
        from edge_app.headless import run

        status, _ = run(cfg, frames=args.frames, quiet=args.quiet)
        return status
    if not _display_available():
        print(
            "error: no display for the station window (DISPLAY / WAYLAND_DISPLAY unset); "
            "use --headless, or QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 2
    from edge_app.ui.app import run_window

    return run_window(cfg, config_path, warnings, file_config=load_config(config_path)[0])


def switch_model(folder: str | None, file_cfg: StationConfig, config_path: Path) -> int:
    """--switch-model / --rollback-model (folder None): load the bundle as the station would, and
    only if it loads write it, with the model history, to the settings file."""
    from edge_app.station import Station

    if folder is not None and Path(folder).exists():  # saved as a full path: the station starts anywhere
        folder = str(Path(folder).resolve())
    station = Station(replace(file_cfg, archive_enabled=False))
    done, msg = station.rollback_model() if folder is None else station.switch_model(folder)
    if not done:
        print(f"error: {msg}", file=sys.stderr)
        return 1
    try:
        kept = save_config(
            replace(file_cfg, model=station.cfg.model, model_history=station.cfg.model_history), config_path
        )
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _say_kept(config_path, kept)
    print(f"{msg}; saved to {config_path}")
    return 0


def _say_kept(config_path: Path, kept: Path | None) -> None:
    """The note that a settings file which did not load was kept beside before being saved over."""
    if kept is not None:
        print(f"note: {config_path} did not load cleanly; the old file is kept as {kept}", file=sys.stderr)


def _display_available() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if __name__ == "__main__":
    sys.exit(main())
