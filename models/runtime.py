"""The station's inference runtime: a model bundle in, verdicts out. No torch, no timm.

    rt = Runtime("models/default")                  # the fastest model that agrees with FP32 on this CPU
    rt.choice_reason                                # ...and why (models/autoselect.py)
    rt = Runtime(path, backend="onnxruntime", precision="fp32")
    verdict = rt.infer([frame])[0]                  # frame: 640x480 BGR uint8, as OpenCV reads it
    verdict.label, verdict.pin, verdict.scores, verdict.heatmap

Preprocessing (`models.preprocess`) and the verdict rule (`models.decision`) are the ones training
used; the crop, size, mean/std and thresholds come from the bundle, never from constants here.
The bundle is checked before anything runs (format version, part, sha256 of the model file, the
model's embedded description), and every refusal is a BundleError with a one-line message.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import autoselect
from models.bundle import (
    BUNDLE_FILE,
    INPUT_NAME,
    META_KEY,
    OUTPUT_NAMES,
    OV_RT_KEY,
    Backend,
    BundleError,
    Precision,
    available,
    bundle_thresholds,
    check_embedded,
    check_thresholds,
    choose,
    read_bundle,
    verify_files,
)
from models.decision import decide
from models.part import CLASSES, PartSpec
from models.preprocess import InputSpec, preprocess

__all__ = ["Backend", "BundleError", "Precision", "Runtime", "Verdict", "default_threads"]


@dataclass(frozen=True, eq=False)
class Verdict:
    """One frame's result. `pin` is the suspected pin (1..27), 0 for OK."""

    label: str
    pin: int
    scores: dict[str, float]
    heatmap: np.ndarray  # (rows, cols) float32, per-token defect probability on the model input grid

    @property
    def ng(self) -> bool:
        return self.label != "OK"


def default_threads() -> int:
    """All the cores this process may use: inference runs one frame at a time (latency)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Runtime:
    """A loaded bundle, ready to infer. Thread-safe: one inference at a time."""

    def __init__(
        self,
        bundle_dir: Path | str,
        backend: Backend | str | None = None,
        precision: Precision | str | None = None,
        expected_part: str | Path | PartSpec | None = "default",
        threads: int | None = None,
    ):
        self.bundle_dir = Path(bundle_dir)
        self.info: dict[str, Any] = read_bundle(self.bundle_dir, expected_part)
        self.input_spec = InputSpec.from_dict(self.info["input"])
        self._thresholds = bundle_thresholds(self.info, self.bundle_dir / BUNDLE_FILE)
        self.threads = threads or default_threads()
        self._lock = threading.Lock()
        self._ov_compiled: Any = None
        if backend is None and precision is None:
            self.choice = autoselect.select(self.bundle_dir, self.info, self._load_other, self.thresholds, self.threads)
            self.backend, self.precision = self.choice.key.split("/")
            # the winner was loaded for the self-check: take over its session instead of loading it again
            chosen, self.choice.runtime = self.choice.runtime, None
            self.model_file, self._run, self._ov_compiled = chosen.model_file, chosen._run, chosen._ov_compiled
            return
        key = choose(self.info, backend, precision, self.bundle_dir / BUNDLE_FILE)
        forced = ", ".join(f"{n}={v}" for n, v in (("backend", backend), ("precision", precision)) if v is not None)
        narrowed = "" if backend is not None and precision is not None else ", first in the fixed preference"
        self.choice = autoselect.Choice(key, f"{key}: forced ({forced}){narrowed}; not measured")
        self.backend, self.precision = key.split("/")
        files = verify_files(self.bundle_dir, self.info, key)
        self.model_file = files[0]
        if self.backend == Backend.OPENVINO.value:
            self._run = self._load_openvino(files[0])
        else:
            self._run = self._load_onnxruntime(files[0])

    def _load_other(self, key: str) -> Runtime:
        """Another model of the same bundle, with this runtime's threads (for the self-check)."""
        b, p = key.split("/")
        return Runtime(self.bundle_dir, backend=b, precision=p, expected_part=None, threads=self.threads)

    # -- what it is --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def version(self) -> str:
        return str(self.info["version"])

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.precision}"

    @property
    def choice_reason(self) -> str:
        """Which model runs and why: measured on this CPU, cached, forced, or the fixed preference."""
        return self.choice.reason

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self._thresholds)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Change per-class thresholds (e.g. {"BENDNG": 0.4}) for this session; the bundle is not changed."""
        self._thresholds = {**self._thresholds, **check_thresholds(thresholds, "thresholds")}

    def describe(self) -> str:
        """One line for a status bar or a log."""
        return f"{self.name} {self.version} ({self.key}, {self.threads} threads, part {self.info['part_name']})"

    @staticmethod
    def models_in(bundle_dir: Path | str, expected_part: str | Path | PartSpec | None = "default") -> list[str]:
        """'backend/precision' keys the bundle holds, preferred first."""
        return available(read_bundle(Path(bundle_dir), expected_part))

    # -- inference ---------------------------------------------------------------------------

    def infer_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs for a preprocessed float32 NCHW batch: scores (N, 3), pins (N, P+1), heatmap (N, gh, gw)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, self.input_spec.height, self.input_spec.width):
            raise ValueError(
                f"expected input (N, 3, {self.input_spec.height}, {self.input_spec.width}), got {tuple(x.shape)}"
            )
        with self._lock:
            return self._run(x)

    def infer(self, frames: list[np.ndarray] | np.ndarray) -> list[Verdict]:
        """Verdicts for camera frames (BGR uint8, the size in the input spec). Raises
        models.preprocess.FrameError for a frame of the wrong size or type."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        if len(frames) == 0:
            return []
        scores, pins, heat = self.infer_batch(preprocess(list(frames), self.input_spec))
        return self.verdicts(scores, pins, heat)

    def verdicts(self, scores: np.ndarray, pins: np.ndarray, heat: np.ndarray) -> list[Verdict]:
        labels, pin_no = decide(scores, pins, self._thresholds)
        return [
            Verdict(
                label=CLASSES[int(labels[i])],
                pin=int(pin_no[i]),
                scores={c: float(scores[i, j]) for j, c in enumerate(CLASSES)},
                heatmap=np.asarray(heat[i], np.float32),
            )
            for i in range(len(labels))
        ]

    # -- backends ----------------------------------------------------------------------------

    def _load_onnxruntime(self, path: Path) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError(path, "onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: the station's console is not a debug log
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for a model it cannot load
            raise BundleError(path, f"onnxruntime cannot load it ({_first_line(e)})") from None
        check_embedded(sess.get_modelmeta().custom_metadata_map.get(META_KEY), self.info, path)
        self._check_io(path, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])

        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s, p, h = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
            return s, p, h

        return run

    def _load_openvino(self, path: Path) -> Any:
        try:
            import openvino as ov
        except ImportError:
            raise BundleError(path, "OpenVINO is not installed (pip install openvino)") from None
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses from C++
            raise BundleError(path, f"OpenVINO cannot read it ({_first_line(e)})") from None
        text = (
            model.get_rt_info([META_KEY, OV_RT_KEY]).astype(str) if model.has_rt_info([META_KEY, OV_RT_KEY]) else None
        )
        check_embedded(text, self.info, path)
        self._check_io(
            path, [n for i in model.inputs for n in i.get_names()], [n for o in model.outputs for n in o.get_names()]
        )
        # The CPU plugin runs bf16 by default where the CPU has it, which moves scores by ~1e-2.
        # f32 keeps FP32 models exact; an INT8 model keeps its int8 ops and runs the rest in f32.
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
        }
        try:
            compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            raise BundleError(path, f"OpenVINO cannot compile it for the CPU ({_first_line(e)})") from None
        outputs = []
        for name in OUTPUT_NAMES:
            outputs.append(next(o for o in compiled.outputs if name in o.get_names()))
        request = compiled.create_infer_request()
        self._ov_compiled = compiled  # kept for inspection (tests, benchmark)

        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            res = request.infer({INPUT_NAME: x})
            # copies: the request reuses its output buffers on the next call
            s, p, h = (np.array(res[o], np.float32) for o in outputs)
            return s, p, h

        return run

    @staticmethod
    def _check_io(path: Path, inputs: list[str], outputs: list[str]) -> None:
        if INPUT_NAME not in inputs or any(o not in outputs for o in OUTPUT_NAMES):
            raise BundleError(
                path, f"inputs {inputs} / outputs {outputs} are not {INPUT_NAME!r} -> {', '.join(OUTPUT_NAMES)}"
            )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
