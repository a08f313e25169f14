"""The verdict rule, shared by training, evaluation, export and the station (torch-free)."""

from __future__ import annotations

import numpy as np

from models.part import CLASSES

DEFAULT_THRESHOLDS = {"BENDNG": 0.5, "NUKENG": 0.5}


def decide(
    scores: np.ndarray, pins: np.ndarray, thresholds: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (index into CLASSES) and pin numbers (0 = OK) from model scores (N, 3) and pin
    probabilities (N, P+1).

    A frame is NG when a defect class reaches its threshold, or when the defect classes together
    reach the lowest threshold (a frame torn between BENDNG and NUKENG is still NG: escapes cost
    more than the class between them). The likelier defect names the class.
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    scores = np.atleast_2d(scores)
    pins = np.atleast_2d(pins)
    ok = CLASSES.index("OK")
    defect_idx = [i for i, c in enumerate(CLASSES) if c != "OK"]
    d = scores[:, defect_idx]
    limits = np.array([th[CLASSES[i]] for i in defect_idx])
    ng = (d >= limits).any(1) | (d.sum(1) >= limits.min())
    label = np.where(ng, np.array(defect_idx)[d.argmax(1)], ok)
    pin = np.where(ng, pins[:, 1:].argmax(1) + 1, 0)
    return label, pin


def clear_of_thresholds(
    scores: np.ndarray, thresholds: dict[str, float] | None = None, margin: float = 0.1
) -> np.ndarray:
    """(N,) bool: frames whose verdict under `decide` sits more than `margin` from the nearest
    threshold, so a small change of the scores cannot flip it. For an NG frame the two likeliest
    defect classes must also be `margin` apart (they name the class).

    Comparing two models of one network (INT8 against FP32) only on these frames tells a model
    that computes something else from one that rounds a borderline frame the other way.
    """
    scores = np.atleast_2d(scores)
    d = scores[:, [i for i, c in enumerate(CLASSES) if c != "OK"]]
    dist = threshold_distance(scores, thresholds)
    clear = np.abs(dist) > margin
    if d.shape[1] > 1:
        top = np.sort(d, axis=1)
        clear &= (dist < 0) | (top[:, -1] - top[:, -2] > margin)
    return clear


def threshold_distance(scores: np.ndarray, thresholds: dict[str, float] | None = None) -> np.ndarray:
    """(N,) signed distance of each frame's scores (N, 3) to `decide`'s NG boundary: NG exactly
    when >= 0; a small absolute value is a borderline frame (the station keeps those for review)."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    scores = np.atleast_2d(scores)
    defect_idx = [i for i, c in enumerate(CLASSES) if c != "OK"]
    d = scores[:, defect_idx]
    limits = np.array([th[CLASSES[i]] for i in defect_idx])
    return np.concatenate([d - limits, (d.sum(1) - limits.min())[:, None]], axis=1).max(1)
