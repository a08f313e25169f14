"""Inspection metrics, one definition for training, evaluation, export gates and the station."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.part import CLASSES


def confusion_counts(confusion: list[list[int]]) -> dict[str, int]:
    """The counts behind escape and overkill rates, from a confusion matrix (rows: true, columns:
    predicted, in CLASSES order): escapes of defective, overkills of good."""
    cm = np.asarray(confusion, int)
    ok = CLASSES.index("OK")
    ng = [i for i in range(len(CLASSES)) if i != ok]
    return {
        "escapes": int(cm[ng, ok].sum()),
        "defective": int(cm[ng].sum()),
        "overkills": int(cm[ok, ng].sum()),
        "good": int(cm[ok].sum()),
    }


def metrics(
    labels: np.ndarray,
    pred: np.ndarray,
    true_pins: np.ndarray | None = None,
    pred_pins: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, NG-vs-OK accuracy, escape rate (a defective part called OK), overkill rate (a
    good part called NG), per-class recall, predicted share, confusion, and pin accuracy (of
    defective images, when pins are given)."""
    k = len(CLASSES)
    labels, pred = np.asarray(labels, int), np.asarray(pred, int)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (labels, pred), 1)
    ok = CLASSES.index("OK")
    ng_true, ng_pred = labels != ok, pred != ok
    n = len(labels)
    out: dict[str, Any] = {
        "n": int(n),
        "accuracy": float((labels == pred).mean()) if n else 0.0,
        "ng_ok_accuracy": float((ng_true == ng_pred).mean()) if n else 0.0,
        "escape_rate": float((ng_true & ~ng_pred).sum() / max(1, ng_true.sum())),
        "overkill_rate": float((~ng_true & ng_pred).sum() / max(1, (~ng_true).sum())),
        "recall": {c: float(cm[i, i] / max(1, cm[i].sum())) for i, c in enumerate(CLASSES)},
        "predicted_share": {c: float(cm[:, i].sum() / max(1, cm.sum())) for i, c in enumerate(CLASSES)},
        "confusion": cm.tolist(),
        # the counts behind the rates: on a few dozen frames one frame moves a rate by points
        **confusion_counts(cm.tolist()),
    }
    if true_pins is not None and pred_pins is not None and ng_true.any():
        tp, pp = np.asarray(true_pins), np.asarray(pred_pins)
        out["pin_accuracy"] = float((tp[ng_true] == pp[ng_true]).mean())
    return out


def format_metrics(m: dict[str, Any]) -> str:
    """The confusion matrix and rates as a line engineer reads them."""
    w = max(len(c) for c in CLASSES) + 2
    lines = ["confusion (rows: true, columns: predicted)", " " * w + "".join(f"{c:>{w}}" for c in CLASSES)]
    for c, row in zip(CLASSES, m["confusion"], strict=True):
        lines.append(f"{c:<{w}}" + "".join(f"{v:>{w}}" for v in row))
    lines += [
        "",
        f"accuracy (3 classes)  {m['accuracy']:.4f}   (n={m['n']})",
        f"NG vs OK accuracy     {m['ng_ok_accuracy']:.4f}",
        f"escape rate           {m['escape_rate']:.4f}   (defective parts called OK)",
        f"overkill rate         {m['overkill_rate']:.4f}   (good parts called NG)",
    ]
    if "pin_accuracy" in m:
        lines.append(f"defective pin named   {m['pin_accuracy']:.4f}   (of defective images)")
    return "\n".join(lines)
