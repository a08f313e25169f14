"""A bundle's models on an older CPU, emulated: do its INT8 kernels still give FP32's verdicts?

    python -m export.isacheck --model models/default                 # an AVX2-only AMD EPYC
    python -m export.isacheck --model models/default --cpu Haswell --frames 8

INT8 kernels differ by instruction set: ONNX Runtime's u8 x s8 products saturate on CPUs without
VNNI, and OpenVINO picks other oneDNN kernels on AVX2. A factory PC is often older than the
machine that exported its bundle, and `export.benchmark --max-isa` can cap OpenVINO only. This
command runs the bundle's own self-check frames through every model twice: natively, and under
`qemu-x86_64 -cpu CPU` (QEMU's user-mode emulator, Debian package qemu-user), where both runtimes
see the older CPU's instruction sets and dispatch to its kernels. It prints, per model, how far
the emulated scores are from the native ones and whether the station's own self-check rule
(models.autoselect.agreement: INT8 against FP32) still passes on the emulated CPU.

Emulation is slow (half a minute to minutes a frame per model on 2 cores): a few frames are the
point, and no timing it gives means anything. Exit status: 0 when every INT8 model agrees with
FP32 on the emulated CPU as well, 1 when the station there would drop one, 2 on bad input.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models.autoselect import agreement
from models.bundle import BUNDLE_FILE, BundleError, bundle_thresholds, read_bundle, read_frames
from models.cpu import isa_text
from models.decision import decide
from models.preprocess import InputSpec, normalize
from models.runtime import Runtime

DEFAULT_CPU = "EPYC-Rome"  # AVX2 and FMA, no AVX-512, no VNNI: the hardware issue's AMD EPYC
ByModel = dict[str, tuple[np.ndarray, np.ndarray]]  # model key -> (scores, pins)


def pick_frames(total: int, n: int) -> np.ndarray:
    """`n` of the `total` self-check frames, spread over them (they hold every class in turn)."""
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int))


def run_models(bundle: Path, x: np.ndarray, say=print) -> ByModel:
    """Every model of the bundle on the frames, one thread, batch 1; (scores, pins) per model."""
    out: ByModel = {}
    for key in Runtime.models_in(bundle, expected_part=None):
        backend, precision = key.split("/")
        t = time.monotonic()
        rt = Runtime(bundle, backend=backend, precision=precision, expected_part=None, threads=1)
        got = [rt.infer_batch(x[i : i + 1]) for i in range(len(x))]
        out[key] = (np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got]))
        say(f"  {key}: {len(x)} frames in {time.monotonic() - t:.0f} s")
    return out


def _frames(bundle: Path, n: int) -> tuple[np.ndarray, dict[str, float]]:
    """`n` of the bundle's self-check frames as the model's input, and the bundle's thresholds."""
    info = read_bundle(bundle, None)
    spec = InputSpec.from_dict(info["input"])
    frames = read_frames(bundle, info, spec)
    if frames is None:
        raise BundleError(bundle / BUNDLE_FILE, "has no self-check frames (exported before they existed)")
    return normalize(list(frames[pick_frames(len(frames), n)]), spec), bundle_thresholds(info, bundle / BUNDLE_FILE)


def worker(bundle: Path, n: int, out: Path) -> int:
    """Runs inside the emulator: every model's outputs to `out` (npz), progress on stderr."""
    x, _ = _frames(bundle, n)
    outputs = run_models(bundle, x, say=lambda s: print(s, file=sys.stderr, flush=True))
    arrays = {f"{k}|{i}": v[i] for k, v in outputs.items() for i in range(2)}
    np.savez(out, isa=np.array(isa_text()), **arrays)
    return 0


def _read(path: Path) -> tuple[str, ByModel]:
    with np.load(path, allow_pickle=False) as z:
        keys = sorted({name.split("|")[0] for name in z.files if "|" in name})
        return str(z["isa"]), {k: (z[f"{k}|0"], z[f"{k}|1"]) for k in keys}


def table(native: ByModel, emulated: ByModel, thresholds: dict[str, float]) -> tuple[str, list[str]]:
    """Markdown rows per model, and the INT8 models the self-check would drop on the emulated CPU."""
    lines = [
        "| model | max score change, emulated vs native | labels changed | self-check on the emulated CPU |",
        "|---|---|---|---|",
    ]
    dropped = []
    for key, (s_emu, p_emu) in emulated.items():
        s_nat, p_nat = native[key]
        changed = int((decide(s_emu, p_emu, thresholds)[0] != decide(s_nat, p_nat, thresholds)[0]).sum())
        backend, precision = key.split("/")
        verdict = "reference (FP32)"
        if precision != "fp32":
            ref = emulated.get(f"{backend}/fp32") or next((v for k, v in emulated.items() if k.endswith("/fp32")), None)
            if ref is None:
                why = "no FP32 model ran to check it against"
            else:
                why = agreement((ref[0], ref[1], np.zeros(0)), (s_emu, p_emu, np.zeros(0)), thresholds)
            verdict = f"dropped: {why}" if why else "agrees with FP32"
            if why:
                dropped.append(key)
        diff = float(np.abs(s_emu - s_nat).max())
        lines.append(f"| {key} | {diff:.3g} | {changed} of {len(s_emu)} | {verdict} |")
    return "\n".join(lines), dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.isacheck",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=Path("models/default"), help="bundle folder (default: models/default)")
    p.add_argument("--cpu", default=DEFAULT_CPU, help=f"QEMU CPU model to emulate (default {DEFAULT_CPU}; "
                   "see qemu-x86_64 -cpu help)")  # fmt: skip
    p.add_argument("--frames", type=int, default=4, help="self-check frames to run (default 4, at most the bundle's)")
    p.add_argument("--qemu", default="qemu-x86_64", help="the emulator (default qemu-x86_64 on the PATH)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the run inside the emulator
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    try:
        if args.worker:
            return worker(args.model, args.frames, args.worker)
        return _check(args)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _check(args: argparse.Namespace) -> int:
    qemu = shutil.which(args.qemu)
    if qemu is None:
        print(f"error: {args.qemu} not found: install QEMU's user-mode emulator (Debian: qemu-user)", file=sys.stderr)
        return 2
    x, thresholds = _frames(args.model, args.frames)
    print(f"native CPU ({isa_text()}): {len(x)} self-check frames through every model")
    native = run_models(args.model, x)
    with tempfile.TemporaryDirectory(prefix="pininspect-isacheck-") as tmp:
        out = Path(tmp) / "emulated.npz"
        cmd = [qemu, "-cpu", args.cpu, sys.executable, "-m", "export.isacheck", "--model", str(args.model)]
        cmd += ["--frames", str(args.frames), "--worker", str(out)]
        print(f"emulated {args.cpu} (slow: half a minute to minutes a frame per model):", flush=True)
        with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:  # the emulated run's progress, as it comes
                if "TCG doesn't support" not in line:  # QEMU lists each CPU feature it cannot emulate
                    print(line.rstrip(), flush=True)
        if proc.returncode != 0 or not out.exists():
            print(f"error: the emulated run failed (exit {proc.returncode}); see its lines above", file=sys.stderr)
            return 2
        isa, emulated = _read(out)
    text, dropped = table(native, emulated, thresholds)
    print(f"\nemulated CPU {args.cpu} ({isa}) against this one ({isa_text()}), {len(x)} frames:\n")
    print(text)
    if isa == isa_text():
        print(
            f"\nnote: the emulated CPU reports the same instruction sets as this one ({isa}): nothing older was checked"
        )
    if dropped:
        print(f"\nthe station on a {args.cpu} would drop {', '.join(dropped)} and run another model")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
