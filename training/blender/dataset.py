"""Render a labelled folder with Blender, frame by frame, so an interrupted run resumes.

The folder is the one PART.md and `training.data` read: `images/*.png`, `labels.csv`
(file,label,pin), `meta.jsonl` (one record per frame: label, params, pin ground truth) and
`dataset.json` (the settings, written last: its presence means the folder is complete).

While rendering, `dataset.partial.json` holds the settings and `meta.jsonl` grows by one flushed
line per frame, written after the frame's image has been renamed into place. A rerun of the same
command keeps every frame whose image and meta line are both there and renders only the rest;
a folder rendered with other settings is refused unless `overwrite` is given.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.files import atomic_write
from models.part import PartSpec
from training.blender.sampling import BlenderConfig, BlenderRenderError, frame_params, plan, settings

PARTIAL = "dataset.partial.json"
_OUTPUTS = ("labels.csv", "meta.jsonl", "dataset.json", PARTIAL)


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def write_png(path: Path, bgr: np.ndarray) -> None:
    """An 8-bit BGR frame as an RGB PNG (zlib level 1: quick, and the sensor noise would defeat
    a stronger level anyway). Pure numpy + zlib: the Blender venv has no OpenCV."""
    h, w, _ = bgr.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(bgr[..., ::-1]).reshape(h, w * 3)], 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
    path.write_bytes(data + chunk(b"IEND", b""))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _describe(held: Any) -> str:
    if not isinstance(held, dict):
        return "an unreadable settings file"
    keys = ("generator", "part", "n", "seed", "classes", "widen", "samples")
    return ", ".join(f"{k} {held[k]}" for k in keys if k in held)


def is_rendered(spec: PartSpec, cfg: BlenderConfig, out: Path) -> bool:
    """True when `out` already holds this very data set, complete (per its dataset.json)."""
    held = _read_json(Path(out) / "dataset.json")
    want = settings(spec, cfg)
    return isinstance(held, dict) and all(held.get(k) == v for k, v in want.items())


def _prepare(spec: PartSpec, cfg: BlenderConfig, out: Path, overwrite: bool) -> None:
    """Make `out` ready to render into: refuse or clear what another data set left there."""
    images = out / "images"
    want = settings(spec, cfg)
    partial = _read_json(out / PARTIAL)
    resumable = isinstance(partial, dict) and partial == want and not (out / "dataset.json").exists()
    if not resumable:
        held = [name for name in _OUTPUTS if (out / name).exists()]
        if images.is_dir() and any(images.glob("*.png")):
            held.append("images/")
        if held and not overwrite:
            kind = _describe(_read_json(out / "dataset.json") or partial)
            raise BlenderRenderError(
                f"{out} already holds another data set ({', '.join(held)}: {kind}); "
                "choose another --out or pass --overwrite"
            )
        for name in _OUTPUTS:
            (out / name).unlink(missing_ok=True)
        if images.is_dir():
            for old in images.glob("*.png"):
                old.unlink()
    images.mkdir(parents=True, exist_ok=True)
    for torn in images.glob("*.png.tmp"):  # a frame cut off mid-write
        torn.unlink()
    atomic_write(out / PARTIAL, json.dumps(want, indent=2) + "\n")


def _kept_records(out: Path, wanted: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The frames an earlier run finished: a whole meta line whose params are this run's and
    whose image is on disk. A line torn by a kill, or an image without its line, is redone."""
    kept: dict[int, dict[str, Any]] = {}
    try:
        lines = (out / "meta.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return kept
    for line in lines:
        try:
            rec = json.loads(line)
            index = int(Path(rec["file"]).stem)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if not 0 <= index < len(wanted) or rec.get("file") != frame_name(index):
            continue
        if rec.get("params") == wanted[index] and (out / "images" / rec["file"]).is_file():
            kept[index] = rec
    return kept


def _write_meta(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))


def resumable_frames(spec: PartSpec, cfg: BlenderConfig, out: Path) -> int:
    """How many frames of this data set an interrupted run already left in `out`."""
    out = Path(out)
    if not isinstance(_read_json(out / PARTIAL), dict) or _read_json(out / PARTIAL) != settings(spec, cfg):
        return 0
    items = plan(spec, cfg)
    return len(_kept_records(out, [frame_params(spec, cfg, i, lbl, pin) for i, (lbl, pin) in enumerate(items)]))


@contextlib.contextmanager
def _stop_between_frames() -> Iterator[Callable[[], bool]]:
    """Ctrl-C while Cycles renders would be swallowed by Blender's render callback (the frame
    still gets written, the run goes on). Instead, note it and stop once the frame in hand is
    saved: the yielded function says whether to stop."""
    asked: list[int] = []

    def note(signum: int, frame: Any) -> None:
        asked.append(signum)
        tqdm.write("stopping after this frame (the frames written so far are kept)", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        yield lambda: False
        return
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)


def render_folder(
    spec: PartSpec, cfg: BlenderConfig, out: Path, overwrite: bool = False, progress: bool = True
) -> Path:
    """Render `cfg.n` frames into `out` (resuming an interrupted run of the same settings) and
    return `out`. Returns at once when `out` already holds this data set."""
    out = Path(out)
    items = plan(spec, cfg)  # checks the config
    if is_rendered(spec, cfg, out):
        return out
    try:
        from training.blender import scene  # bpy lives in the Blender venv only
    except ImportError as e:
        raise BlenderRenderError(
            f"cannot import Blender ({e}); run this with .venv-blender/bin/python (make blender-venv)"
        ) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        _prepare(spec, cfg, out, overwrite)
    except OSError as e:
        raise BlenderRenderError(f"{out}: cannot write the output folder ({e.strerror or e})") from None
    wanted = [frame_params(spec, cfg, i, label, pin) for i, (label, pin) in enumerate(items)]
    records = _kept_records(out, wanted)
    bar = tqdm(total=cfg.n, initial=len(records), desc="rendering", unit="frame", disable=not progress)
    try:
        _write_meta(out / "meta.jsonl", (records[i] for i in sorted(records)))
        with open(out / "meta.jsonl", "a") as meta, _stop_between_frames() as stop:
            for i, params in enumerate(wanted):
                if i in records:
                    continue
                if stop():
                    raise KeyboardInterrupt
                frame, truth = scene.render_frame(spec, params, threads=cfg.threads)
                path = out / "images" / frame_name(i)
                tmp = path.with_name(path.name + ".tmp")
                write_png(tmp, frame)
                os.replace(tmp, path)
                label, pin = items[i]
                rec = {"file": path.name, "label": label, "pin": pin, "style": "blender", "params": params, **truth}
                meta.write(json.dumps(rec) + "\n")
                meta.flush()
                os.fsync(meta.fileno())
                records[i] = rec
                bar.update(1)
        _finish(spec, cfg, out, items, records, scene.renderer_info())
    except OSError as e:
        raise BlenderRenderError(f"{out}: writing failed ({e.strerror or e}); the frames written are kept") from None
    finally:
        bar.close()
    return out


def _finish(
    spec: PartSpec,
    cfg: BlenderConfig,
    out: Path,
    items: list[tuple[str, int]],
    records: dict[int, dict[str, Any]],
    renderer: dict[str, Any],
) -> None:
    """labels.csv and meta.jsonl in frame order, then dataset.json: the folder is complete."""
    _write_meta(out / "meta.jsonl", (records[i] for i in range(cfg.n)))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["file", "label", "pin"])
    writer.writerows([frame_name(i), label, pin] for i, (label, pin) in enumerate(items))
    atomic_write(out / "labels.csv", buf.getvalue(), newline="")
    summary = {
        **settings(spec, cfg),
        "counts": {c: sum(1 for label, _ in items if label == c) for c in cfg.classes},
        "renderer": renderer,
    }
    atomic_write(out / "dataset.json", json.dumps(summary, indent=2) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)


def read_meta(path: Path) -> list[dict[str, Any]]:
    """The per-frame records of a rendered folder (its meta.jsonl)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
