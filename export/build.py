"""Checkpoint -> model bundle: FP32 ONNX, INT8 ONNX, OpenVINO FP32 and INT8 IR, bundle.json.

Everything is built in a staging folder, checked there through the station's runtime (parity
with torch, accuracy on a held-out set, the INT8 gate), and only then copied into the output
folder, bundle.json last: a failed export never leaves a half-written or unchecked bundle behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from export import data as frames_io
from export.evaluate import Evaluation, accuracy_problems_by_model, evaluate, format_table, parity_problems
from export.int8 import ORT_DEFAULT_OPS, float_nodes, quantize_onnx, quantize_openvino, save_openvino, to_openvino
from export.onnx_export import export_onnx
from models.bundle import (
    BUNDLE_FILE,
    FRAMES_FILE,
    MODEL_FILES,
    PREFERENCE,
    describe,
    file_entry,
    sha256_file,
    write_frames,
)
from models.options import option
from models.part import part_from_dict
from models.synth.dataset import BOTH_STYLES

ALL_MODELS = list(PREFERENCE)


def _models(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in ALL_MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(ALL_MODELS)}")
    return items


@dataclass
class ExportConfig:
    """What `python -m export.quantize` does; each field with a flag is one of its options."""

    checkpoint: str = option("models/default/model.safetensors", "trained checkpoint", "--checkpoint")
    out: str = option("models/default", "bundle folder to write", "--out")
    models: list[str] = option(
        list(ALL_MODELS),
        "comma-separated subset of " + ",".join(ALL_MODELS) + " (onnxruntime/fp32 is always built)",
        "--models",
        parse=_models,
    )
    calib: str | None = option(None, "folder of frames to calibrate on (default: render --calib-n)", "--calib")
    calib_n: int = option(300, "rendered calibration frames", "--calib-n")
    calib_seed: int = option(7001, "seed of the rendered calibration frames", "--calib-seed")  # training: 1, 9001
    eval: str | None = option(None, "labelled folder for the accuracy gate (default: render --eval-n)", "--eval")
    eval_n: int = option(600, "rendered evaluation frames (0 = no accuracy check, needs --no-gate)", "--eval-n")
    eval_seed: int = option(8001, "seed of the rendered evaluation frames", "--eval-seed")
    styles: str = BOTH_STYLES  # rendered sets mix both styles evenly, like training's validation
    widen: float = 1.3
    gate: bool = option(
        True,
        "report the INT8 accuracy but write the bundle even if it fails (parity still must pass)",
        "--no-gate",
    )
    max_drop: float = option(0.5, "accuracy points an INT8 model may lose against its FP32 model", "--max-drop")
    max_escape_rise: float = option(0.0, "escape-rate points an INT8 model may add", "--max-escape-rise")
    max_overkill_rise: float = option(
        0.0, "overkill-rate points an INT8 model may add (good parts rejected)", "--max-overkill-rise"
    )
    drop_failing: bool = option(
        False,
        "leave out an INT8 model that fails the gate and write the bundle with the models that pass "
        "(the FP32 ones always do), saying which and why, instead of writing nothing",
        "--drop-failing",
    )
    parity_tol: float = 1e-3
    ort_ops: list[str] = field(default_factory=lambda: list(ORT_DEFAULT_OPS))
    ort_calibration: str = option(
        "minmax", "ONNX Runtime calibration method", "--ort-calibration", choices=("minmax", "percentile", "entropy")
    )
    quantize_stem: bool = option(
        True,
        "keep the conv stem in float in both INT8 models: slower (the stem is ~40% of the float time), for a "
        "model whose INT8 stem fails the accuracy gate",
        "--float-stem",
    )  # export/int8.py says why the stem is INT8 by default
    reduce_range: bool = option(
        False, "7-bit ORT weights, for target CPUs without VNNI (avoids u8*s8 saturation)", "--reduce-range"
    )
    threads: int = option(0, "threads for torch and inference (0: all cores)", "--threads")
    workers: int = option(2, "rendering processes", "--workers")
    selfcheck_n: int = 24  # frames the station times and cross-checks its models on (0: none)
    name: str | None = option(None, "bundle name shown at the station (default: the training run's)", "--name")


class ExportError(RuntimeError):
    """An export that cannot go on (bad input, or a failed check); one line."""


class GateFailed(ExportError):
    pass


def _step(i: int, n: int, text: str) -> float:
    print(f"[{i}/{n}] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float, extra: str = "") -> None:
    print(f"      done in {time.perf_counter() - t0:.1f}s{(' - ' + extra) if extra else ''}", flush=True)


class _Steps:
    """The numbered step lines ("[3/8] FP32 ONNX ...") and their timings."""

    def __init__(self, total: int):
        self.total, self.i, self.t = total, 0, 0.0

    def start(self, text: str) -> None:
        self.i += 1
        self.t = _step(self.i, self.total, text)

    def done(self, extra: str = "") -> None:
        _done(self.t, extra)


def _models_to_build(cfg: ExportConfig) -> list[str]:
    """The bundle's models, in preference order; ExportError for a request that cannot work."""
    unknown = [m for m in cfg.models if m not in ALL_MODELS]
    if unknown:
        raise ExportError(f"--models: unknown {', '.join(unknown)} (known: {', '.join(ALL_MODELS)})")
    if cfg.calib is None and cfg.eval is None and cfg.calib_seed == cfg.eval_seed:
        raise ExportError("--calib-seed and --eval-seed must differ: the gate needs frames calibration never saw")
    if cfg.gate and cfg.eval_n <= 0 and cfg.eval is None:
        raise ExportError("the INT8 gate needs an evaluation set: give --eval-n > 0 or --eval DIR, or --no-gate")
    return [k for k in ALL_MODELS if k in set(cfg.models) | {"onnxruntime/fp32"}]


def build_bundle(cfg: ExportConfig, progress: bool = True) -> dict[str, Any]:
    """Run the whole export; returns the bundle description written (or raises ExportError)."""
    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.preprocess import InputSpec

    keys = _models_to_build(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    steps = _Steps(4 + len(keys))
    t_all = time.perf_counter()

    steps.start(f"loading {cfg.checkpoint}")
    try:
        model, spec = load_checkpoint(Path(cfg.checkpoint))
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    ispec = InputSpec.from_dict(spec["input"])
    part = part_from_dict(spec["part"], source=f"{cfg.checkpoint} (part)")
    name = cfg.name or spec.get("train_config", {}).get("name") or Path(cfg.checkpoint).parent.name
    source = {"checkpoint": Path(cfg.checkpoint).name, "sha256": sha256_file(Path(cfg.checkpoint))}
    desc = describe(spec, name, source)
    steps.done(f"{spec['model_name']}, part {part.name}, trained {spec.get('epochs_run', '?')} epochs")

    with tempfile.TemporaryDirectory(prefix="pininspect-export-") as tmp:
        tmpd = Path(tmp)
        stage = tmpd / "bundle"
        stage.mkdir()

        steps.start("calibration and evaluation frames")
        calib = _frames(cfg.calib, cfg.calib_n, cfg.calib_seed, "calibration", part, ispec, cfg, tmpd, progress)
        ev_frames = None
        if cfg.eval is not None or cfg.eval_n > 0:
            ev_frames = _frames(cfg.eval, cfg.eval_n, cfg.eval_seed, "evaluation", part, ispec, cfg, tmpd, progress)
        if len(calib) < 300:
            print(f"      note: {len(calib)} calibration frames; 300 or more are recommended for a release", flush=True)
        steps.done(f"{len(calib)} calibration, {len(ev_frames) if ev_frames else 0} evaluation frames")

        files = _export_models(model, cfg, keys, calib, stage, desc, ispec, steps, progress)
        info = {
            **desc,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": {k: {"files": {p.name: file_entry(p) for p in files[k]}} for k in keys},
            "export": {**dataclasses.asdict(cfg), "calibration_frames": len(calib)},
        }
        if cfg.selfcheck_n > 0:
            # held-out frames where there are some (the station's check should not be on frames
            # the INT8 models were calibrated on), OK and defective alike
            src = ev_frames if ev_frames is not None else calib
            pick = selfcheck_indices(src.labels, len(src), cfg.selfcheck_n)
            info["selfcheck"] = write_frames(
                stage / FRAMES_FILE, src.small[pick], None if src.labels is None else src.labels[pick]
            )
            info["selfcheck"]["source"] = src.name
        _write_json(stage / BUNDLE_FILE, info)
        _check_and_gate(cfg, stage, keys, model, part, desc, calib, ev_frames, info, steps)
        _write_json(stage / BUNDLE_FILE, info)
        _install(stage, Path(cfg.out), files, keys)
    print(f"bundle written to {cfg.out} ({', '.join(keys)}) in {time.perf_counter() - t_all:.0f}s", flush=True)
    return info


def _export_models(
    model: Any, cfg: ExportConfig, keys: list[str], calib: Any, stage: Path, desc: dict[str, Any], ispec: Any,
    steps: _Steps, progress: bool,
) -> dict[str, list[Path]]:  # fmt: skip
    """Every model of `keys` into `stage`; returns the files of each."""
    files: dict[str, list[Path]] = {}
    steps.start("FP32 ONNX (dynamic batch)")
    fp32 = stage / MODEL_FILES["onnxruntime/fp32"][0]
    export_onnx(model, fp32, (ispec.height, ispec.width), {**desc, "model": "onnxruntime/fp32"})
    files["onnxruntime/fp32"] = [fp32]
    steps.done(_size(fp32))

    if "onnxruntime/int8" in keys:
        ops = tuple(cfg.ort_ops) + (("Conv",) if cfg.quantize_stem and "Conv" not in cfg.ort_ops else ())
        steps.start(
            f"INT8 ONNX: static QDQ on {'/'.join(ops)} weights, per channel, "
            f"{cfg.ort_calibration} calibration on {len(calib)} frames"
        )
        out = stage / MODEL_FILES["onnxruntime/int8"][0]
        meta = {**desc, "model": "onnxruntime/int8"}
        quantize_onnx(fp32, out, lambda: calib.batches(8), meta, ops, cfg.ort_calibration, cfg.reduce_range)
        files["onnxruntime/int8"] = [out]
        steps.done(_size(out))

    ov_model: Any = to_openvino(fp32) if "openvino/fp32" in keys or "openvino/int8" in keys else None
    if "openvino/fp32" in keys:
        steps.start("OpenVINO IR FP32")
        xml = stage / MODEL_FILES["openvino/fp32"][0]
        save_openvino(ov_model.clone(), xml, {**desc, "model": "openvino/fp32"})
        files["openvino/fp32"] = [xml, xml.with_suffix(".bin")]
        steps.done(_size(xml.with_suffix(".bin")))
    if "openvino/int8" in keys:
        stem = "conv stem quantized, heads float" if cfg.quantize_stem else "conv stem and heads float"
        steps.start(f"OpenVINO IR INT8: NNCF, transformer model type, {stem}, {len(calib)} frames")
        q = quantize_openvino(
            ov_model, lambda k: calib.inputs(k, k + 1), len(calib), float_nodes(fp32), cfg.quantize_stem, progress
        )
        xml = stage / MODEL_FILES["openvino/int8"][0]
        save_openvino(q, xml, {**desc, "model": "openvino/int8"})
        files["openvino/int8"] = [xml, xml.with_suffix(".bin")]
        steps.done(_size(xml.with_suffix(".bin")))
    return files


def _check_and_gate(
    cfg: ExportConfig, stage: Path, keys: list[str], model: Any, part: Any, desc: dict[str, Any], calib: Any,
    ev_frames: Any, info: dict[str, Any], steps: _Steps,
) -> None:  # fmt: skip
    """Parity and accuracy of every staged model through models.runtime, then the gate; the
    results go into `info`. Raises GateFailed when the bundle must not be written."""
    steps.start("parity (torch vs ONNX Runtime / OpenVINO FP32) and accuracy, through models.runtime")
    check_set = ev_frames if ev_frames is not None else calib.subset(0, 32)  # parity only
    threads = cfg.threads or None
    ev = evaluate(stage, keys, check_set, desc["thresholds"], torch_model=model, expected_part=part, threads=threads)
    steps.done()
    rendered = f" (rendered, seed {cfg.eval_seed})" if check_set.name == "evaluation" and cfg.eval is None else ""
    print(format_table(ev, f"\n{check_set.name} set: {len(check_set)} frames{rendered}"), flush=True)
    parity = ", ".join(f"{k} {d:.1e}" for k, d in ev.parity.items())
    print(f"parity vs torch (max |diff| over scores, pins, heatmap): {parity}", flush=True)

    steps.start("gate")
    broken = parity_problems(ev, cfg.parity_tol)
    for p in broken:
        print(f"      FAIL {p}", flush=True)
    if broken:  # never written, --no-gate or not: the models do not compute what the checkpoint does
        raise GateFailed(f"parity failed: the exported models disagree with torch; {cfg.out} was not changed")
    by_model = (
        accuracy_problems_by_model(ev, cfg.max_drop, cfg.max_escape_rise, cfg.max_overkill_rise)
        if ev_frames is not None
        else {}
    )
    problems = [p for found in by_model.values() for p in found]
    info["evaluation"] = _evaluation_record(ev, cfg, len(check_set))
    info["gate"] = {
        "enabled": cfg.gate and ev_frames is not None,
        "passed": not problems if ev_frames is not None else None,  # None: accuracy not measured
        "problems": problems,
        "max_drop": cfg.max_drop,
        "max_escape_rise": cfg.max_escape_rise,
        "max_overkill_rise": cfg.max_overkill_rise,
    }
    for p in problems:
        print(f"      FAIL {p}", flush=True)
    if problems and cfg.gate and cfg.drop_failing:
        for k in by_model:  # `keys` is what gets installed: the failing models are not
            keys.remove(k)
            info["models"].pop(k, None)
            print(f"      left out {k} (--drop-failing): the station runs the models that passed", flush=True)
        info["gate"].update(passed=True, dropped=list(by_model))
        steps.done(f"passed without {', '.join(by_model)}: {', '.join(keys)}")
        return
    if problems and cfg.gate:
        raise GateFailed(
            f"INT8 gate failed ({len(problems)} problem(s), see above); {cfg.out} was not changed "
            "(rerun with --drop-failing to write it without the failing INT8 models, or --no-gate to write it anyway)"
        )
    if ev_frames is None:
        steps.done("parity passed; no evaluation set, accuracy not checked")
    else:
        steps.done("passed" if not problems else "FAILED, but --no-gate: writing the bundle anyway")


def _frames(
    folder: str | None,
    n: int,
    seed: int,
    name: str,
    part: Any,
    ispec: Any,
    cfg: ExportConfig,
    tmp: Path,
    progress: bool,
) -> frames_io.FrameSet:
    if folder is not None:
        try:
            return frames_io.load(Path(folder), ispec, name)
        except ValueError as e:
            raise ExportError(str(e)) from None
    if n <= 0:
        raise ExportError(f"--{'calib' if name == 'calibration' else 'eval'}-n must be positive")
    out = frames_io.render(part, tmp / name, n, seed, cfg.styles, cfg.widen, cfg.workers, progress)
    return frames_io.load(out, ispec, name)


def selfcheck_indices(labels: np.ndarray | None, n_frames: int, n: int) -> np.ndarray:
    """`n` frames taken in turn from each class (file order within a class), so the self-check
    sees OK and defective parts even from a set that is mostly one of them."""
    if labels is None:
        return np.arange(min(n, n_frames))
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < min(n, n_frames):
        for idx in by_class:
            if idx and len(out) < n:
                out.append(int(idx.pop(0)))
    return np.array(sorted(out))


def _evaluation_record(ev: Evaluation, cfg: ExportConfig, n: int) -> dict[str, Any]:
    return {
        "frames": n,
        "source": cfg.eval or f"rendered: n={cfg.eval_n} seed={cfg.eval_seed} styles={cfg.styles} widen={cfg.widen}",
        "rows": [{**r.to_dict(), "metrics": {k: v for k, v in (r.metrics or {}).items()}} for r in ev.rows],
        "parity_vs_torch": ev.parity,
    }


def _size(p: Path) -> str:
    return f"{p.name} {p.stat().st_size / 1e6:.1f} MB"


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def _install(stage: Path, out: Path, files: dict[str, list[Path]], keys: list[str]) -> None:
    """Copy the checked files into `out`, bundle.json last; remove model files of an older export
    that this bundle does not list (a stale file must not look like part of the bundle)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / BUNDLE_FILE).unlink(missing_ok=True)  # from here on, the folder is not a valid bundle until the end
    for k in keys:
        for p in files[k]:
            tmp = out / (p.name + ".tmp")
            shutil.copyfile(p, tmp)
            os.replace(tmp, out / p.name)
    for k, names in MODEL_FILES.items():
        if k not in keys:
            for n in names:
                (out / n).unlink(missing_ok=True)
    if (stage / FRAMES_FILE).exists():
        shutil.copyfile(stage / FRAMES_FILE, out / (FRAMES_FILE + ".tmp"))
        os.replace(out / (FRAMES_FILE + ".tmp"), out / FRAMES_FILE)
    else:
        (out / FRAMES_FILE).unlink(missing_ok=True)
    shutil.copyfile(stage / BUNDLE_FILE, out / (BUNDLE_FILE + ".tmp"))
    os.replace(out / (BUNDLE_FILE + ".tmp"), out / BUNDLE_FILE)
