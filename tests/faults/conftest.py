"""Fixtures of the fault-injection suite: real frames, labelled folders, and paths nothing can be
written to (even by root, for whom chmod changes nothing)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fault_helpers


@pytest.fixture(scope="session")
def frames():
    """Four 640x480 renders of the default part (two OK, a BENDNG, a NUKENG), with their truth."""
    from edge_app.sources import SimSource

    src = SimSource(defect_rate=0.5, fps=0, pool=4, seed=3)
    src.open()
    return [(np.ascontiguousarray(img), truth) for img, truth in src.pool]


@pytest.fixture
def labelled(tmp_path, frames):
    """A labelled folder (images/ + labels.csv) of the four frames."""

    def make(name="data"):
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        lines = ["file,label,pin"]
        for i, (img, truth) in enumerate(frames):
            cv2.imwrite(str(root / "images" / f"{i:03d}.png"), img)
            lines.append(f"{i:03d}.png,{truth.label},{truth.pin}")
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
        return root

    return make


@pytest.fixture
def readonly_dir(tmp_path):
    """An existing folder no one may write into: a read-only tmpfs when root, else chmod 555."""
    d = tmp_path / "readonly"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if not shutil.which("mount"):
        pytest.skip("running as root (chmod cannot stop root) and no mount command for a read-only tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"running as root (chmod cannot stop root) and cannot mount a read-only tmpfs: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


@pytest.fixture(params=["read-only", "under-a-file"])
def unwritable(request, tmp_path):
    """A folder path outputs cannot go to: an existing read-only one, or one below a plain file."""
    if request.param == "read-only":
        return request.getfixturevalue("readonly_dir")
    f = tmp_path / "a-file"
    f.write_text("not a folder\n")
    return f / "sub"
