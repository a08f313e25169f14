"""The model bundle: what `python -m export.quantize` writes and the station loads.

A bundle is a folder:

  bundle.json            the description below, plus every model file's sha256 and size
  model_fp32.onnx        ONNX Runtime, FP32
  model_int8.onnx        ONNX Runtime, INT8 (static QDQ, MatMul/Gemm weights per channel)
  openvino_fp32.xml/.bin OpenVINO IR, FP32
  openvino_int8.xml/.bin OpenVINO IR, INT8 (NNCF, transformer preset)
  selfcheck_frames.npz   a few model inputs (JPEG-coded crops) the station times and cross-checks
                         its models on, to choose one per machine (models/autoselect.py)

Every model file also carries the description itself (ONNX `metadata_props["pininspect"]`,
OpenVINO `rt_info["pininspect"]["model_info"]`), so a model file copied out of its folder still
says what it is. Both are JSON and are read back with `json.loads`, never `eval`.

The description: format version, name and version, classes, input spec (crop, size, mean/std),
per-class thresholds, the part spec and its fingerprint, where the weights came from (training
config hash, data hashes, code version). Torch-free: the station imports this module, and export
imports it too, so the writer and the reader cannot disagree about the format.
"""

from __future__ import annotations

import hashlib
import io
import json
from enum import Enum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.decision import DEFAULT_THRESHOLDS
from models.part import CLASSES, PartSpec, PartSpecError, load_part, part_from_dict
from models.preprocess import InputSpec

FORMAT = "pininspect-bundle/1"
BUNDLE_FILE = "bundle.json"
META_KEY = "pininspect"  # ONNX metadata_props key; OpenVINO rt_info path [META_KEY, OV_RT_KEY]
OV_RT_KEY = "model_info"
INPUT_NAME = "input"
OUTPUT_NAMES = ("scores", "pins", "heatmap")


class BundleError(Exception):
    """A bundle (or one of its files) the runtime will not use. `str()` is one line that starts
    with the offending file, so the station and the CLI can show it as is."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class Backend(str, Enum):
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"


class Precision(str, Enum):
    INT8 = "int8"
    FP32 = "fp32"


def model_key(backend: Backend | str, precision: Precision | str) -> str:
    """'openvino/int8': the key of a model in bundle.json's "models"."""
    return f"{Backend(backend).value}/{Precision(precision).value}"


# The file each model is written to; the first file is the one a backend opens.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    model_key(Backend.ONNXRUNTIME, Precision.FP32): ("model_fp32.onnx",),
    model_key(Backend.ONNXRUNTIME, Precision.INT8): ("model_int8.onnx",),
    model_key(Backend.OPENVINO, Precision.FP32): ("openvino_fp32.xml", "openvino_fp32.bin"),
    model_key(Backend.OPENVINO, Precision.INT8): ("openvino_int8.xml", "openvino_int8.bin"),
}

# The self-check frames: crop_resize output (BGR uint8 at the model's input size), JPEG-coded so
# two dozen fit in well under a megabyte. Listed in bundle.json under "selfcheck" with their sha256.
FRAMES_FILE = "selfcheck_frames.npz"
FRAMES_JPEG_QUALITY = 95

# What the station runs when it cannot measure (forced backend or precision narrowed by hand, or
# a bundle without self-check frames): fastest first on the CPUs it was written for. OpenVINO FP32 is
# last because it is only there to compare against (and for the parity check).
PREFERENCE: tuple[str, ...] = ("openvino/int8", "onnxruntime/int8", "onnxruntime/fp32", "openvino/fp32")

# Fields of the description the runtime needs; an older or hand-made bundle without them is refused.
REQUIRED = ("format", "name", "version", "classes", "input", "thresholds", "part", "part_fingerprint")
# Fields the model file's embedded copy must agree with bundle.json on.
MUST_AGREE = ("format", "classes", "input", "part_fingerprint", "config_hash")


def describe(spec: dict[str, Any], name: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bundle description, built from a checkpoint's model spec (models/checkpoint.py)."""
    config_hash = spec.get("config_hash", "")
    code_version = spec.get("code_version", "")
    return {
        "format": FORMAT,
        "name": name,
        "version": f"{code_version}+{config_hash[:8]}" if config_hash else code_version,
        "model_name": spec.get("model_name"),
        "classes": list(spec.get("classes", CLASSES)),
        "input_name": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES),
        "input": spec["input"],
        "thresholds": dict(spec.get("thresholds", {})),
        "part": spec["part"],
        "part_name": spec["part"].get("name"),
        "part_fingerprint": spec["part_fingerprint"],
        "config_hash": config_hash,
        "data": spec.get("data", {}),
        "code_version": code_version,
        "val_metrics": {k: v for k, v in spec.get("val_metrics", {}).items() if not isinstance(v, (dict, list))},
        "source": source or {},
    }


def export_flags(info: Any) -> list[str]:
    """The export.quantize flags that remake a bundle's choices, from its bundle.json's "export"
    record (float stem, reduced range, calibration, models, gate limits); [] when it has none. A
    new checkpoint for the same station (a retrain, an adaptation) is exported with them."""
    exp = info.get("export") if isinstance(info, dict) else None
    if not isinstance(exp, dict):
        return []
    flags: list[str] = []
    if exp.get("models"):
        flags += ["--models", ",".join(map(str, exp["models"]))]
    if exp.get("quantize_stem") is False:
        flags.append("--float-stem")
    if exp.get("reduce_range") is True:
        flags.append("--reduce-range")
    for key, flag in (("ort_calibration", "--ort-calibration"), ("max_drop", "--max-drop"),
                      ("max_escape_rise", "--max-escape-rise"),
                      ("max_overkill_rise", "--max-overkill-rise")):  # fmt: skip
        if exp.get(key) is not None:
            flags += [flag, str(exp[key])]
    return flags


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


# ---------------------------------------------------------------------------------------------
# Reading and checking


def read_bundle(bundle_dir: Path | str, expected_part: str | Path | PartSpec | None = "default") -> dict[str, Any]:
    """Read and check bundle.json: format version, required fields, the part it was made for.

    `expected_part` is the part the caller inspects (a name in models/parts/, a part JSON path or
    a PartSpec); None skips the part check. Raises BundleError naming the file.
    """
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / BUNDLE_FILE
    if not bundle_dir.is_dir():
        raise BundleError(bundle_dir, "no such bundle folder")
    if not path.exists():
        raise BundleError(path, "missing (a model bundle is a folder written by python -m export.quantize)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(path, "not a text file (corrupt?)") from None
    except json.JSONDecodeError as e:
        raise BundleError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); truncated?") from None
    except OSError as e:
        raise BundleError(path, f"cannot read ({e.strerror})") from None
    check_description(info, path)
    if expected_part is not None:
        check_part(info, expected_part, path)
    if not isinstance(info.get("models"), dict) or not info["models"]:
        raise BundleError(path, "lists no model files")
    return info


def check_description(info: Any, path: Path) -> None:
    """Format version and the fields the runtime needs, with types it can use."""
    if not isinstance(info, dict) or "format" not in info:
        raise BundleError(path, "not a pininspect bundle description (no 'format' field)")
    if info["format"] != FORMAT:
        raise BundleError(
            path,
            f"bundle format {info['format']!r} is not one this runtime reads ({FORMAT}); "
            "re-export the model or update the station software",
        )
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise BundleError(path, f"missing field(s) {', '.join(missing)}")
    if not isinstance(info["classes"], list) or tuple(info["classes"]) != CLASSES:
        raise BundleError(path, f"classes {info['classes']} differ from this version's {list(CLASSES)}")
    try:
        InputSpec.from_dict(info["input"])
    except (TypeError, ValueError) as e:
        raise BundleError(path, f"input spec is not usable ({e})") from None
    check_thresholds(info["thresholds"], path)
    try:
        part = part_from_dict(info["part"], source="part")
    except PartSpecError as e:
        raise BundleError(path, str(e)) from None
    if part.fingerprint() != info["part_fingerprint"]:
        raise BundleError(path, "the part spec does not match its fingerprint (edited by hand?)")


def check_thresholds(th: Any, path: Path | str) -> dict[str, float]:
    defects = [c for c in CLASSES if c != "OK"]
    if not isinstance(th, dict) or set(th) - set(defects):
        raise BundleError(path, f"thresholds must map {', '.join(defects)} to a number in (0, 1], got {th!r}")
    for k, v in th.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise BundleError(path, f"threshold {k} must be a number in (0, 1], got {v!r}")
    return {k: float(v) for k, v in th.items()}


def bundle_thresholds(info: dict[str, Any], path: Path | str) -> dict[str, float]:
    """The thresholds a bundle runs with: its own, over the defaults for any class it leaves out."""
    return {**DEFAULT_THRESHOLDS, **check_thresholds(info["thresholds"], path)}


def resolve_part(expected: str | Path | PartSpec) -> PartSpec:
    return expected if isinstance(expected, PartSpec) else load_part(expected)


def check_part(info: dict[str, Any], expected: str | Path | PartSpec, path: Path) -> None:
    """Refuse a bundle made for another part: same name and same geometry (fingerprint)."""
    want = resolve_part(expected)
    have_name = info.get("part_name") or info["part"].get("name")
    if have_name != want.name or info["part_fingerprint"] != want.fingerprint():
        raise BundleError(
            path,
            f"this model is for part {have_name!r} (fingerprint {info['part_fingerprint']}), "
            f"the station inspects part {want.name!r} (fingerprint {want.fingerprint()}); "
            "load the bundle made for this part",
        )


def available(info: dict[str, Any]) -> list[str]:
    """Model keys present in the bundle, in the station's order of preference."""
    return [k for k in PREFERENCE if k in info.get("models", {})]


def choose(info: dict[str, Any], backend: Backend | str | None, precision: Precision | str | None, path: Path) -> str:
    """The model key to run: the preferred one, narrowed by an explicit backend and/or precision."""
    try:
        b = Backend(backend).value if backend is not None else None
        p = Precision(precision).value if precision is not None else None
    except ValueError:
        raise BundleError(
            path,
            f"unknown backend/precision {backend!r}/{precision!r} "
            f"(backends: {', '.join(x.value for x in Backend)}; precisions: {', '.join(x.value for x in Precision)})",
        ) from None
    have = available(info)
    for key in have:
        kb, kp = key.split("/")
        if (b is None or kb == b) and (p is None or kp == p):
            return key
    want = "/".join([b or "*", p or "*"])
    raise BundleError(path, f"holds no {want} model (it has: {', '.join(have) or 'none'})")


def verify_files(bundle_dir: Path, info: dict[str, Any], key: str) -> list[Path]:
    """The model's files, after checking each exists and matches the sha256 in bundle.json."""
    return verify_entry(bundle_dir, info["models"].get(key), f"model {key}")


def verify_entry(bundle_dir: Path, entry: Any, what: str) -> list[Path]:
    """The files of one bundle.json entry ({"files": {name: {sha256, bytes}}}), each checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict) or not entry["files"]:
        raise BundleError(bundle_dir / BUNDLE_FILE, f"{what} lists no files")
    paths = []
    for name, meta in entry["files"].items():
        p = bundle_dir / name
        if Path(name).name != name:  # a bundle never points outside its folder
            raise BundleError(bundle_dir / BUNDLE_FILE, f"file name {name!r} is not inside the bundle")
        if not p.is_file():
            raise BundleError(p, f"missing (bundle.json lists it for {what}); copy the whole bundle folder")
        size = p.stat().st_size
        if "bytes" in meta and size != meta["bytes"]:
            raise BundleError(
                p, f"is {size} bytes, bundle.json says {meta['bytes']}: truncated or corrupt, copy the bundle again"
            )
        if sha256_file(p) != meta.get("sha256"):
            raise BundleError(p, "sha256 does not match bundle.json: corrupt or replaced, copy the bundle again")
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------
# Self-check frames


def write_frames(path: Path, small: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Write crop_resize'd frames (N, h, w, 3) and their class indices (-1: unknown) to `path`;
    returns the bundle.json "selfcheck" entry. The JPEGs travel as one byte array plus offsets,
    so reading them back never needs pickle."""
    coded = []
    for img in small:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, FRAMES_JPEG_QUALITY])
        if not ok:
            raise ValueError(f"{path}: cannot JPEG-encode a self-check frame")
        coded.append(buf.reshape(-1))
    offsets = np.cumsum([0] + [len(c) for c in coded]).astype(np.int64)
    lab = np.full(len(small), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    with open(path, "wb") as f:
        np.savez(f, jpeg=np.concatenate(coded), offsets=offsets, labels=lab)
    counts = {CLASSES[i]: int((lab == i).sum()) for i in range(len(CLASSES)) if (lab == i).any()}
    return {"files": {path.name: file_entry(path)}, "frames": len(small), "labels": counts}


def read_frames(bundle_dir: Path | str, info: dict[str, Any], spec: InputSpec) -> np.ndarray | None:
    """The bundle's self-check frames as BGR uint8 (N, h, w, 3), checked against bundle.json's
    sha256; None for a bundle written before they existed. Raises BundleError naming the file."""
    bundle_dir = Path(bundle_dir)
    entry = info.get("selfcheck")
    if entry is None:
        return None
    path = verify_entry(bundle_dir, entry, "the self-check frames")[0]
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            data, offsets = z["jpeg"], z["offsets"]
    except (OSError, ValueError, KeyError) as e:
        raise BundleError(path, f"not a self-check frames file ({e})") from None
    frames: list[np.ndarray] = []
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        img = cv2.imdecode(data[int(a) : int(b)], cv2.IMREAD_COLOR)
        if img is None or img.shape != (spec.height, spec.width, 3):
            raise BundleError(path, f"frame {len(frames)} is not a {spec.width}x{spec.height} image")
        frames.append(img)
    if not frames:
        raise BundleError(path, "holds no frames")
    return np.stack(frames)


def check_embedded(text: str | None, info: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model file's own description must agree with bundle.json on what matters."""
    if not text:
        raise BundleError(path, f"carries no {META_KEY} description (not exported by export.quantize)")
    try:
        emb = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(path, f"embedded description is not valid JSON ({e.msg})") from None
    if not isinstance(emb, dict):
        raise BundleError(path, "embedded description is not a JSON object")
    diff = [k for k in MUST_AGREE if emb.get(k) != info.get(k)]
    if diff:
        raise BundleError(path, f"its embedded description disagrees with bundle.json on {', '.join(diff)}")
    return emb
