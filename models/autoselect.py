"""Which of a bundle's models this machine runs: measured once, on the bundle's own frames.

The fastest model is a property of the CPU, not of the bundle: OpenVINO INT8 wins where the CPU
has VNNI and can lose to both FP32 models on an AVX2-only one, and an INT8 model can disagree with
its FP32 model on a CPU whose integer kernels differ. So on the first load of a bundle on a
machine, the station

  1. runs every model the bundle holds on its self-check frames (bundle.json "selfcheck"): a few
     warm-up calls, then each frame at batch 1, the median call time is the model's latency;
  2. checks every INT8 model against an FP32 model (the same backend's if there is one): it must
     give the same label on every frame the FP32 model calls clearly (further than 0.1 from the
     thresholds, models.decision.clear_of_thresholds) and move the scores little on average;
  3. runs the fastest model that agrees (an FP32 model agrees with itself).

A backend that cannot be imported or cannot compile its model is skipped with its reason. The
choice is cached per user (`cache_dir()`), keyed by the sha256 of bundle.json, the machine
(`models.cpu.fingerprint`), the onnxruntime/OpenVINO versions and the thread count, and measured
again when any of them changes. A forced backend or precision, or a bundle without self-check
frames, uses the fixed order `models.bundle.PREFERENCE` instead, and the reason says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from models import cpu
from models.bundle import BUNDLE_FILE, BundleError, available, read_frames, sha256_file, verify_files
from models.decision import clear_of_thresholds, decide
from models.files import atomic_write
from models.preprocess import InputSpec, normalize

log = logging.getLogger(__name__)

CACHE_ENV = "PININSPECT_CACHE_DIR"
RULE_VERSION = 1  # bump when the measurement or the agreement rule changes: old cache entries are redone
WARMUP = 3
MARGIN = 0.1  # a verdict this far from every threshold is "clear"
MAX_MEAN_SCORE_CHANGE = 0.05  # mean |INT8 - FP32| over all frames and classes

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]
# (runtime, float32 NCHW frames) -> (median ms per frame at batch 1, the outputs for all frames)
Measure = Callable[[Any, np.ndarray], tuple[float, Outputs]]
# (FP32 outputs, INT8 outputs, thresholds) -> "" when they agree, else why not (one line)
Compare = Callable[[Outputs, Outputs, dict[str, float]], str]
# key ("openvino/int8") -> a loaded runtime; raises when the backend cannot run it here
Load = Callable[[str], Any]

_warned: set[str] = set()  # cache folders already reported as not writable, once per process


@dataclass(frozen=True)
class Trial:
    """One model's result in the self-check."""

    key: str
    ms: float | None = None  # median latency at batch 1; None when it could not run
    problem: str = ""  # why it was skipped (could not load) or dropped (disagrees); "" = usable


@dataclass
class Choice:
    """The model to run and why. `runtime` is the winner already loaded during the self-check
    (None when it was not loaded here, e.g. a cache hit)."""

    key: str
    reason: str
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False
    runtime: Any = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------
# Measuring and comparing (the defaults; tests inject their own)


def time_outputs(runtime: Any, x: np.ndarray) -> tuple[float, Outputs]:
    """Median time of one batch-1 call over all frames (after WARMUP calls), and the outputs."""
    for _ in range(WARMUP):  # first calls allocate buffers and pick kernels
        runtime.infer_batch(x[:1])
    times, outs = [], []
    for i in range(len(x)):
        t = time.perf_counter()
        outs.append(runtime.infer_batch(x[i : i + 1]))
        times.append(time.perf_counter() - t)
    scores, pins, heat = (np.concatenate([o[j] for o in outs]) for j in range(3))
    return float(np.median(times)) * 1e3, (scores, pins, heat)


def agreement(ref: Outputs, out: Outputs, thresholds: dict[str, float]) -> str:
    """'' when `out` gives the same label as `ref` on every frame `ref` calls clearly and its
    scores stay close on average; otherwise what differs."""
    ref_labels, _ = decide(ref[0], ref[1], thresholds)
    labels, _ = decide(out[0], out[1], thresholds)
    clear = clear_of_thresholds(ref[0], thresholds, MARGIN)
    changed = int(((ref_labels != labels) & clear).sum())
    if changed:
        return f"changed {changed} clear verdict{'s' if changed != 1 else ''} of {len(labels)}"
    mean_change = float(np.abs(np.asarray(out[0]) - np.asarray(ref[0])).mean())
    if mean_change > MAX_MEAN_SCORE_CHANGE:
        return f"moved the scores by {mean_change:.3f} on average (at most {MAX_MEAN_SCORE_CHANGE} allowed)"
    return ""


# ---------------------------------------------------------------------------------------------
# The cache


def cache_dir() -> Path:
    """Per-user cache folder: $PININSPECT_CACHE_DIR, else $XDG_CACHE_HOME/pininspect, else
    %LOCALAPPDATA%\\pininspect on Windows, else ~/.cache/pininspect. Never the bundle or the cwd."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "pininspect"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "pininspect"
    return Path.home() / ".cache" / "pininspect"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(bundle_dir: Path, threads: int) -> dict[str, Any]:
    """What the choice depends on; any change means measuring again."""
    return {
        "rule": RULE_VERSION,
        "bundle_sha256": sha256_file(Path(bundle_dir) / BUNDLE_FILE),
        "machine": cpu.fingerprint(),
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "threads": threads,
    }


def cache_file(key: dict[str, Any], folder: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return (folder or cache_dir()) / "runtime-choice" / f"{digest}.json"


def _read_cache(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none yet, or unreadable: measure again (and overwrite it)
    if not isinstance(rec, dict) or rec.get("key") != key or not isinstance(rec.get("choice"), str):
        return None
    try:
        rec["trials"] = [Trial(**t) for t in rec.get("trials", [])]
    except TypeError:
        return None  # written by another version of this module: measure again
    return rec


def _write_cache(path: Path, key: dict[str, Any], choice: Choice) -> str:
    """Store the choice; '' on success, else why not (reported once per folder, then ignored:
    a locked-down PC still runs, it only measures again next time)."""
    rec = {
        "key": key,
        "choice": choice.key,
        "reason": choice.reason,
        "trials": [asdict(t) for t in choice.trials],
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write(path, json.dumps(rec, indent=2) + "\n")
    except OSError as e:
        problem = f"cannot write the model-choice cache {path.parent} ({e.strerror or e}); measuring again next load"
        if str(path.parent) not in _warned:
            _warned.add(str(path.parent))
            log.warning("%s", problem)
        return problem
    return ""


# ---------------------------------------------------------------------------------------------
# Choosing


def select(
    bundle_dir: Path | str,
    info: dict[str, Any],
    load: Load,
    thresholds: dict[str, float],
    threads: int,
    measure: Measure | None = None,
    compare: Compare | None = None,
    cache: Path | None = None,
) -> Choice:
    """The model this machine should run (see the module docstring). `load` builds a runtime for
    a key; `measure` and `compare` default to `time_outputs` and `agreement`; `cache` overrides
    `cache_dir()`. Raises BundleError when the bundle is damaged or no model can run here."""
    bundle_dir = Path(bundle_dir)
    keys = available(info)
    # every model file, not only the one that will run: a damaged bundle is refused, whatever the
    # cache says (only the machine's own limits, a missing backend, are worked around)
    for k in keys:
        verify_files(bundle_dir, info, k)
    if len(keys) == 1:
        return _first_that_loads(keys, load, bundle_dir, "the only model in the bundle")
    spec = InputSpec.from_dict(info["input"])
    frames = read_frames(bundle_dir, info, spec)
    if frames is None:
        return _first_that_loads(
            keys,
            load,
            bundle_dir,
            "fixed preference (this bundle has no self-check frames; re-export it to let the station measure)",
        )
    key = cache_key(bundle_dir, threads)
    path = cache_file(key, cache)
    rec = _read_cache(path, key)
    if rec is not None and rec["choice"] in keys:
        try:
            runtime = load(rec["choice"])
        except Exception as e:  # the backend went away since: measure again
            log.info("cached choice %s no longer loads (%s); measuring again", rec["choice"], e)
        else:
            when = str(rec.get("measured", ""))[:10]
            reason = f"{rec.get('reason', rec['choice'])} [measured {when}, cached]"
            return Choice(rec["choice"], reason, rec["trials"], True, runtime)

    x = normalize(list(frames), spec)
    choice = _measure_all(keys, x, load, thresholds, measure or time_outputs, compare or agreement, bundle_dir)
    problem = _write_cache(path, key, choice)
    if problem:
        choice.reason += f" [not cached: {problem}]"
    return choice


def _measure_all(
    keys: list[str],
    x: np.ndarray,
    load: Load,
    thresholds: dict[str, float],
    measure: Measure,
    compare: Compare,
    bundle_dir: Path,
) -> Choice:
    # FP32 first: each INT8 model is checked against FP32 outputs as soon as it has run, so at
    # most two runtimes (the best so far and the one measured) are alive at once
    order = sorted(keys, key=lambda k: not k.endswith("/fp32"))
    trials: dict[str, Trial] = {}
    ref: dict[str, Outputs] = {}
    best: tuple[str, float, Any] | None = None
    for k in order:
        try:
            rt = load(k)
        except Exception as e:  # BundleError with the backend's one-line reason, or a broken install
            trials[k] = Trial(k, problem=f"skipped: {_one_line(e)}")
            continue
        try:
            ms, out = measure(rt, x)
        except Exception as e:  # compiled, but fails at run time on this CPU
            trials[k] = Trial(k, problem=f"skipped: failed to run ({_one_line(e)})")
            continue
        problem = ""
        backend, precision = k.split("/")
        if precision != "fp32":
            against = f"{backend}/fp32" if f"{backend}/fp32" in ref else next(iter(ref), None)
            if against is None:
                problem = "dropped: no FP32 model ran to check it against"
            else:
                why = compare(ref[against], out, thresholds)
                problem = f"dropped: {why} (against {against})" if why else ""
        else:
            ref[k] = out
        trials[k] = Trial(k, ms, problem)
        if not problem and (best is None or ms < best[1]):
            best = (k, ms, rt)
        del rt
    listed = [trials[k] for k in keys]
    if best is None:
        raise _none_runs(bundle_dir, listed)
    return Choice(best[0], _reason(best[0], listed), listed, False, best[2])


def _reason(key: str, trials: list[Trial]) -> str:
    timed = [t for t in trials if t.ms is not None]
    text = f"{key}: fastest agreeing of {len(timed)} on this CPU ({cpu.isa_text()}) - " + ", ".join(
        f"{t.key} {t.ms:.1f} ms" for t in sorted(timed, key=lambda t: t.ms or 0.0)
    )
    notes = [f"{t.key} {t.problem}" for t in trials if t.problem]
    return text + ("; " + "; ".join(notes) if notes else "")


def _first_that_loads(keys: list[str], load: Load, bundle_dir: Path, why: str) -> Choice:
    skipped = []
    for k in keys:
        try:
            runtime = load(k)
        except Exception as e:  # the backend is not installed or cannot compile the model here
            skipped.append(Trial(k, problem=f"skipped: {_one_line(e)}"))
            continue
        notes = "".join(f"; {t.key} {t.problem}" for t in skipped)
        return Choice(k, f"{k}: {why}{notes}", skipped, False, runtime)
    raise _none_runs(bundle_dir, skipped)


def _none_runs(bundle_dir: Path, trials: list[Trial]) -> BundleError:
    return BundleError(
        bundle_dir / BUNDLE_FILE,
        "no model in the bundle can run on this machine: " + "; ".join(f"{t.key} {t.problem}" for t in trials),
    )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
