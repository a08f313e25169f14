"""The locked installs and the offline station package (installer/)."""

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "installer" / "offline"


def _pins(lock: Path) -> dict[str, str]:
    """name -> version for the lines of a uv lock whose markers hold for this interpreter."""
    from packaging.markers import Marker

    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;]+)\s*(?:;(.*))?$", line)
        if m and (not m[3] or Marker(m[3]).evaluate()):
            pins[m[1].lower().replace("_", "-")] = m[2]
    return pins


def test_this_venv_holds_the_locked_versions_of_what_pyproject_names():
    dev = _pins(REPO / "requirements" / "dev.lock")
    station = _pins(REPO / "requirements" / "station.lock")
    for name in ("numpy", "onnxruntime", "openvino", "opencv-python-headless", "pyqt6", "torch", "timm", "nncf"):
        assert name in dev, f"{name} missing from requirements/dev.lock: run make lock"
        assert metadata.version(name) == dev[name], f"{name} {metadata.version(name)} installed, {dev[name]} locked"
    assert "torch" not in station and "timm" not in station
    assert {k: v for k, v in station.items() if k in dev} == {k: dev[k] for k in station if k in dev}


def _package(tmp_path: Path, python_version: str) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "wheels").mkdir(parents=True)
    for f in ("install.sh", "uninstall.sh"):
        shutil.copy(OFFLINE / f, pkg / f)
    (pkg / "PYTHON_VERSION").write_text(python_version + "\n")
    (pkg / "station.lock").write_text("")
    return pkg


def _sh(*args, **kw):
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def test_install_refuses_another_python_and_a_foreign_folder_in_one_line(tmp_path):
    pkg = _package(tmp_path, "2.7")
    done = _sh(pkg / "install.sh", tmp_path / "st")
    assert done.returncode == 1 and "wheels for Python 2.7" in done.stderr and not (tmp_path / "st").exists()
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pkg = _package(tmp_path / "b", here)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    done = _sh(pkg / "install.sh", tmp_path / "home", env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 1 and "is not a pininspect station install" in done.stderr
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"
    assert _sh(pkg / "install.sh").returncode == 2


def test_uninstall_removes_only_what_install_made(tmp_path):
    other = tmp_path / "data"
    other.mkdir()
    (other / "frames.db").write_text("x")
    done = _sh(OFFLINE / "uninstall.sh", other)
    assert done.returncode == 1 and "nothing removed" in done.stderr and (other / "frames.db").exists()
    home = tmp_path / "home"
    (home / ".config" / "autostart").mkdir(parents=True)
    target = tmp_path / "st"
    target.mkdir()
    (target / ".pininspect-station").touch()
    entry = home / ".config" / "autostart" / "pininspect-station.desktop"
    entry.write_text(f"[Desktop Entry]\nExec={target}/pininspect-station\n")
    done = _sh(OFFLINE / "uninstall.sh", target, env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0 and not target.exists() and not entry.exists()


@pytest.mark.slow
def test_the_offline_package_installs_with_no_index_and_runs_the_station(tmp_path):
    """Builds the package (downloads the locked wheels: needs the index), then installs it with
    pip --no-index and no pip configuration, and runs the headless station from the install."""
    out = tmp_path / "pininspect-station"
    env = {**os.environ, "PYTHON": sys.executable}
    build = subprocess.run([str(REPO / "installer" / "build_offline.sh"), str(out)], env=env, timeout=1200)
    assert build.returncode == 0 and (out.parent / "pininspect-station.tar.gz").exists()
    target = tmp_path / "station"
    home = tmp_path / "home"
    home.mkdir()
    inst = _sh(out / "install.sh", target, "--desktop", env={**env, "HOME": str(home)})
    assert inst.returncode == 0, inst.stderr
    assert (home / ".local/share/applications/pininspect-station.desktop").exists()
    run = subprocess.run(
        [str(target / "pininspect-station"), "--headless", "--source", "sim", "--frames", "40", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(home)},
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 40 and sum(summary["counts"].values()) == 40, summary
    check = subprocess.run([str(target / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert check.returncode != 0, "torch is importable in the station install"


def test_the_build_never_wipes_a_folder_that_is_not_a_package(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    done = _sh(REPO / "installer" / "build_offline.sh", tmp_path)
    assert done.returncode == 1 and "is not an earlier station package" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_install_outside_a_built_package_says_how_to_build_one(tmp_path):
    done = _sh(OFFLINE / "install.sh", tmp_path / "st")
    assert done.returncode == 1 and "make installer" in done.stderr and not (tmp_path / "st").exists()
