"""Parity, accuracy and the INT8 gate: every export is checked through the station's own runtime.

Parity: on the same frames, torch, ONNX Runtime FP32 and OpenVINO FP32 must give the same three
outputs (max abs difference <= 1e-3). Accuracy: each model in the bundle scores a held-out
labelled set; an INT8 model may lose at most `max_drop` accuracy points against the FP32 model of
the same backend, and its escape rate (a defective part called OK) may not rise by more than
`max_escape_rise` points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.data import FrameSet
from models.checkpoint import TorchModel
from models.runtime import Runtime
from models.scoring import Model, Outputs, Scored, run

TORCH = "torch/fp32"
ROW_ORDER = (TORCH, "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8")


def score_frames(model: Model, frames: FrameSet, batch: int = 16, keep_outputs: bool = True) -> Scored:
    """The one scorer (models.scoring) on a preloaded frame set, labelled where the set is."""
    scored = run(model, frames.scoring_batches(batch), keep_outputs=keep_outputs)
    if frames.labels is not None and frames.pins is not None:
        scored.truth, scored.truth_pins = frames.labels, frames.pins
    return scored


def max_diff(a: Outputs, b: Outputs) -> float:
    """Largest absolute difference over scores, pins and heatmap."""
    return float(max(np.abs(x - y).max() for x, y in zip(a, b, strict=True)))


@dataclass
class Row:
    model: str  # "torch/fp32", "openvino/int8", ...
    metrics: dict[str, Any] | None  # None on an unlabelled set
    reference: str | None = None  # what agreement/max_score_diff compare against
    agreement: float | None = None  # share of frames with the same verdict as the reference
    max_score_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Evaluation:
    rows: list[Row]
    parity: dict[str, float] = field(default_factory=dict)  # model -> max abs diff vs torch
    outputs: dict[str, Outputs] = field(default_factory=dict, repr=False)


def evaluate(
    bundle: Path,
    keys: list[str],
    frames: FrameSet,
    thresholds: dict[str, float],
    torch_model: Any = None,
    expected_part: Any = None,
    threads: int | None = None,
) -> Evaluation:
    """Score `frames` with torch (if given) and every model `keys` of the bundle."""
    scored: dict[str, Scored] = {}
    if torch_model is not None:
        spec = {"input": frames.ispec.to_dict(), "thresholds": thresholds}
        scored[TORCH] = score_frames(TorchModel(torch_model, spec), frames)
    for key in sorted(keys, key=lambda k: ROW_ORDER.index(k) if k in ROW_ORDER else len(ROW_ORDER)):
        backend, precision = key.split("/")
        rt = Runtime(bundle, backend=backend, precision=precision, expected_part=expected_part, threads=threads)
        rt.set_thresholds(thresholds)
        scored[key] = score_frames(rt, frames)
    outputs = {k: sc.outputs for k, sc in scored.items() if sc.outputs is not None}
    rows = []
    for key, sc in scored.items():
        ref = _reference(key, outputs)
        row = Row(key, sc.metrics(), ref)
        if ref is not None:
            row.agreement = float((sc.labels == scored[ref].labels).mean())
            row.max_score_diff = float(np.abs(sc.scores - scored[ref].scores).max())
        rows.append(row)
    parity = (
        {k: max_diff(o, outputs[TORCH]) for k, o in outputs.items() if k != TORCH and k.endswith("/fp32")}
        if TORCH in outputs
        else {}
    )
    return Evaluation(rows, parity, outputs)


def _reference(key: str, outputs: dict[str, Outputs]) -> str | None:
    """INT8 compares with the FP32 model of its backend; FP32 models compare with torch."""
    if key.endswith("/int8"):
        fp32 = key.replace("/int8", "/fp32")
        return fp32 if fp32 in outputs else (TORCH if TORCH in outputs else None)
    return TORCH if key != TORCH and TORCH in outputs else None


def parity_problems(ev: Evaluation, tol: float) -> list[str]:
    """FP32 models that do not compute what torch computes: an export bug, never a tuning matter."""
    return [f"{k} differs from torch by {d:.2e} (> {tol:g})" for k, d in ev.parity.items() if d > tol]


def accuracy_problems(
    ev: Evaluation, max_drop: float, max_escape_rise: float, max_overkill_rise: float | None = None
) -> list[str]:
    """INT8 models that lose too much against their FP32 model (drops and rises in percentage
    points); overkill is checked when `max_overkill_rise` is given."""
    by_model = accuracy_problems_by_model(ev, max_drop, max_escape_rise, max_overkill_rise)
    return [p for problems in by_model.values() for p in problems]


def accuracy_problems_by_model(
    ev: Evaluation, max_drop: float, max_escape_rise: float, max_overkill_rise: float | None = None
) -> dict[str, list[str]]:
    """`accuracy_problems`, per INT8 model that has any (in the evaluation's order)."""
    problems: dict[str, list[str]] = {}
    by_key = {r.model: r for r in ev.rows}
    for r in ev.rows:
        if not r.model.endswith("/int8") or r.metrics is None or r.reference is None:
            continue
        ref = by_key[r.reference].metrics
        assert ref is not None
        found = []
        drop = 100 * (ref["accuracy"] - r.metrics["accuracy"])
        if drop > max_drop:
            found.append(f"{r.model} loses {drop:.2f} accuracy points against {r.reference} (limit {max_drop:g})")
        rise = 100 * (r.metrics["escape_rate"] - ref["escape_rate"])
        if rise > max_escape_rise:
            found.append(
                f"{r.model} escape rate {100 * r.metrics['escape_rate']:.2f}% vs {100 * ref['escape_rate']:.2f}% "
                f"for {r.reference} (+{rise:.2f} points, limit +{max_escape_rise:g})"
            )
        rise = 100 * (r.metrics["overkill_rate"] - ref["overkill_rate"])
        if max_overkill_rise is not None and rise > max_overkill_rise + 1e-9:
            found.append(
                f"{r.model} overkill rate {100 * r.metrics['overkill_rate']:.2f}% vs {100 * ref['overkill_rate']:.2f}% "
                f"for {r.reference} (+{rise:.2f} points, limit +{max_overkill_rise:g})"
            )
        if found:
            problems[r.model] = found
    return problems


def format_table(ev: Evaluation, title: str) -> str:
    """A markdown table: one row per model."""
    head = ["model", "accuracy", "NG/OK acc", "escape", "overkill", "agrees", "max |dscore|", "vs"]
    lines = [title, "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in ev.rows:
        m = r.metrics
        cells = [r.model]
        if m is not None:
            cells += [
                f"{100 * m['accuracy']:.2f}%",
                f"{100 * m['ng_ok_accuracy']:.2f}%",
                f"{100 * m['escape_rate']:.2f}%",
                f"{100 * m['overkill_rate']:.2f}%",
            ]
        else:
            cells += ["-"] * 4
        cells += [
            f"{100 * r.agreement:.1f}%" if r.agreement is not None else "-",
            f"{r.max_score_diff:.1e}" if r.max_score_diff is not None else "-",
            r.reference or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    n = ev.rows[0].metrics["n"] if ev.rows and ev.rows[0].metrics else None
    if n:
        lines.append(
            f"(n = {n} frames; escape = defective called OK, overkill = good called NG; agrees = same verdict as 'vs')"
        )
    return "\n".join(lines)
