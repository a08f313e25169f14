"""Named data sets: one registry of the sets models are chosen and scored on, for every renderer.

A set is rendered once into `data/` (by the procedural generator in this process, or by the
Blender renderer in its own interpreter, `.venv-blender`) and reused while its settings hold.
Selection sets choose recipes; test sets are scored once a recipe is chosen, never tuned on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from models.part import PartSpec
from models.synth.dataset import SynthConfig, SynthError, generate_once, parse_styles

REPO = Path(__file__).resolve().parent.parent
RENDERERS = ("procedural", "blender")
ALL_STYLES = "photo=0.5,flat=0.5"


@dataclass(frozen=True)
class NamedSet:
    name: str
    renderer: str  # "procedural" or "blender"
    n: int
    seed: int
    what: str
    role: str = "test"  # "test" (scored, never tuned on), "selection" (chooses recipes) or "train"
    widen: float = 1.0
    styles: str = ALL_STYLES  # procedural only


SETS: dict[str, NamedSet] = {
    s.name: s
    for s in (
        NamedSet(
            "procedural-test",
            "procedural",
            1500,
            737373,
            "procedural renderer, photo/flat 50/50, exactly PART.md's ranges, fresh seed",
        ),
        NamedSet("blender-test", "blender", 1500, 727272, "Blender renderer (path traced), exactly PART.md's ranges"),
        NamedSet(
            "procedural-select",
            "procedural",
            1500,
            545454,
            "procedural renderer, photo/flat 50/50, PART.md's ranges (training.compare's seed)",
            role="selection",
        ),
        NamedSet(
            "blender-select",
            "blender",
            300,
            747474,
            "Blender renderer, PART.md's ranges: chooses recipes that must hold on a renderer never trained on",
            role="selection",
        ),
        NamedSet("blender-train", "blender", 2000, 757575, "Blender renderer, for training on it", role="train"),
    )
}


class DatasetError(RuntimeError):
    """A named set that cannot be made; one line."""


def blender_python() -> Path:
    """The interpreter with bpy (Blender needs its own venv: CPython 3.11 and numpy < 2)."""
    return Path(os.environ.get("PININSPECT_BLENDER_PYTHON", REPO / ".venv-blender" / "bin" / "python"))


def materialize(
    s: NamedSet,
    part: PartSpec,
    data: Path = REPO / "data",
    n: int | None = None,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """The set's folder, rendered now unless it is already on disk with the same settings.
    `n` takes a prefix-sized variant (fewer frames, same seed) for quick looks."""
    n = n or s.n
    folder = Path(data) / f"{s.name}-{part.name}-{part.fingerprint()}-{s.seed}-{n}"
    if s.renderer == "procedural":
        cfg = SynthConfig(n=n, seed=s.seed, styles=parse_styles(s.styles), widen=s.widen, workers=workers)
        try:
            return generate_once(part, cfg, folder, progress=progress)
        except SynthError as e:
            raise DatasetError(f"{s.name}: {e}") from None
    py = blender_python()
    if not py.exists():
        raise DatasetError(f"{s.name}: the Blender renderer is not installed ({py} missing; run: make blender-venv)")
    part_arg = part.name
    cmd = [str(py), "-m", "training.blender", "--out", str(folder), "--n", str(n), "--seed", str(s.seed)]
    cmd += ["--widen", str(s.widen), "--part", part_arg] + ([] if progress else ["--quiet"])
    done = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr if progress else subprocess.DEVNULL)
    if done.returncode != 0:
        raise DatasetError(f"{s.name}: the Blender renderer failed (exit {done.returncode}): {' '.join(cmd)}")
    return folder


def get(name: str) -> NamedSet:
    if name not in SETS:
        raise DatasetError(f"unknown data set {name!r} (known: {', '.join(SETS)})")
    return SETS[name]
