import threading
import time

import cv2
import numpy as np
import pytest
from station_fakes import FakeRuntime

from edge_app import sources
from edge_app.events import SourceState
from edge_app.model import ModelHolder
from edge_app.pipeline import Pipeline, PipelineOptions
from edge_app.settings import StationConfig
from edge_app.sources import (
    CameraSource,
    EndOfStream,
    FolderSource,
    SimSource,
    SourceError,
    SourceSpec,
    VideoSource,
    make_source,
    parse_source,
    resolve_auto,
)


@pytest.mark.parametrize(
    "text, spec",
    [
        ("sim", SourceSpec("sim")),
        ("auto", SourceSpec("auto")),
        ("camera", SourceSpec("camera", "0")),
        ("camera:2", SourceSpec("camera", "2")),
        ("camera:rtsp://10.0.0.5/s", SourceSpec("camera", "rtsp://10.0.0.5/s")),
        ("video:/a/b.avi", SourceSpec("video", "/a/b.avi")),
        ("folder:C:/x", SourceSpec("folder", "C:/x")),
    ],
)
def test_parse_source(text, spec):
    assert parse_source(text) == spec


@pytest.mark.parametrize("text", ["webcam", "video", "folder:", "sim:3", ""])
def test_parse_source_rejects_with_a_message(text):
    with pytest.raises(SourceError, match="source"):
        parse_source(text)


def test_auto_is_the_simulator_without_a_camera(monkeypatch):
    monkeypatch.setattr("edge_app.sources.camera_present", lambda: False)
    assert resolve_auto(SourceSpec("auto")) == SourceSpec("sim")
    monkeypatch.setattr("edge_app.sources.camera_present", lambda: True)
    assert resolve_auto(SourceSpec("auto")) == SourceSpec("camera", "0")


def test_sim_pool_holds_the_defect_rate_and_truth():
    src = SimSource(defect_rate=0.5, fps=0, pool=16, seed=3)
    src.open()
    assert len(src.pool) == 16
    labels = [t.label for _, t in src.pool]
    assert labels.count("OK") == 8
    for img, t in src.pool:
        assert img.shape == (480, 640, 3) and img.dtype == np.uint8 and not img.flags.writeable
        assert (t.label == "OK") == (t.pin == 0)
        if t.pin:
            assert t.xy is not None and 0 <= t.xy[0] < 640 and 0 <= t.xy[1] < 480
    frames = [src.read() for _ in range(20)]
    assert [f.index for f in frames] == list(range(20))
    assert frames[16].image is frames[0].image  # cycles the pool
    assert not src.live


def test_sim_without_pool_renders_live():
    src = SimSource(defect_rate=1.0, fps=30, pool=0, seed=1)
    src.open()
    f = src.read()
    assert f.truth is not None and f.truth.label in ("BENDNG", "NUKENG") and f.truth.pin >= 1
    assert src.live


def test_folder_skips_corrupt_images_with_a_warning_and_reads_truth(tmp_path):
    img = np.full((480, 640, 3), 90, np.uint8)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), img)
    (tmp_path / "images" / "b.png").write_bytes(b"not a png at all")
    cv2.imwrite(str(tmp_path / "images" / "c.png"), img)
    (tmp_path / "labels.csv").write_text("file,label,pin\na.png,OK,0\nc.png,BENDNG,5\n")
    src = FolderSource(str(tmp_path))
    warnings = []
    src.on_warning = warnings.append
    src.open()
    a, c = src.read(), src.read()
    assert (a.name, c.name) == ("a.png", "c.png")
    assert c.truth.label == "BENDNG" and c.truth.pin == 5
    assert len(warnings) == 1 and "b.png" in warnings[0] and "skipped" in warnings[0]
    with pytest.raises(EndOfStream, match="3 images"):
        src.read()


def test_folder_of_only_corrupt_images_fails_when_looping(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    src = FolderSource(str(tmp_path), loop=True)
    src.on_warning = lambda m: None
    src.open()
    with pytest.raises(SourceError, match="none of the 1 images"):
        src.read()


def test_missing_paths_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no such folder"):
        FolderSource(str(tmp_path / "nope")).open()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(str(tmp_path)).open()
    with pytest.raises(SourceError, match="no such video"):
        VideoSource(str(tmp_path / "nope.avi")).open()


def write_video(path, frames, fps=30):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        vw.write(np.ascontiguousarray(f))
    vw.release()


def test_video_ends_or_loops(tmp_path):
    frames = [np.full((480, 640, 3), 40 * i, np.uint8) for i in range(3)]
    write_video(tmp_path / "v.avi", frames)
    src = VideoSource(str(tmp_path / "v.avi"))
    src.open()
    assert [src.read().index for _ in range(3)] == [0, 1, 2]
    with pytest.raises(EndOfStream, match="ended after 3 frames"):
        src.read()
    looping = VideoSource(str(tmp_path / "v.avi"), loop=True)
    looping.open()
    got = [looping.read() for _ in range(7)]
    assert abs(int(got[3].image.mean()) - int(got[0].image.mean())) < 3


def test_make_source_uses_the_config():
    cfg = StationConfig(sim_defect_rate=0.3, sim_fps=12.0, sim_pool=8)
    src = make_source("sim", cfg)
    assert isinstance(src, SimSource) and src.fps == 12.0 and src.pool_size == 8 and src.live


# -- the camera, with OpenCV's capture faked -------------------------------------------------------


class FakeDevice:
    """A USB camera as cv2.VideoCapture sees it: plugged or not, frames of the size asked for."""

    def __init__(self):
        self.plugged, self.opens, self.released, self.frames = True, 0, 0, 0


class FakeCapture:
    """Honours what CameraSource relies on: isOpened() is False when the device is absent at open,
    read() returns (False, None) once it is unplugged (and stays so for this handle), set() takes the
    resolution, release() frees it."""

    def __init__(self, device, dev: FakeDevice):
        self.dev, self.index = dev, device
        dev.opens += 1
        self.opened = dev.plugged
        self.size = [320, 240]
        self.dead = False

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self.size[0] = int(value)
        elif prop == cv2.CAP_PROP_FRAME_HEIGHT:
            self.size[1] = int(value)
        return True

    def read(self):
        if not self.opened or self.dead or not self.dev.plugged:
            self.dead = True  # a handle whose device went away stays dead, as V4L2's does
            return False, None
        self.dev.frames += 1
        img = np.full((self.size[1], self.size[0], 3), self.dev.frames % 250, np.uint8)
        return True, img

    def release(self):
        self.dev.released += 1
        self.opened = False


@pytest.fixture
def device(monkeypatch):
    dev = FakeDevice()
    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda d: FakeCapture(d, dev))
    return dev


def test_camera_opens_at_the_asked_size_reads_and_says_when_unplugged(device):
    cam = CameraSource("0", 640, 480)
    cam.open()
    f1, f2 = cam.read(), cam.read()
    assert f1.image.shape == (480, 640, 3) and f1.index + 1 == f2.index and not np.array_equal(f1.image, f2.image)
    device.plugged = False
    with pytest.raises(SourceError, match=r"camera 0: no frame \(unplugged"):
        cam.read()
    with pytest.raises(SourceError, match="camera 0: cannot open"):
        cam.open()
    device.plugged = True
    with pytest.raises(SourceError):  # the old handle stays dead until reopened
        cam.read()
    cam.open()
    assert cam.read().image.shape == (480, 640, 3)
    cam.close()
    cam.close()
    assert device.released == device.opens  # every handle released, a failed open's too


def test_the_station_rides_out_an_unplugged_camera(device):
    """Through the pipeline: unplug mid-run, stay out for two reopen attempts, plug back: the
    verdicts resume from the real camera frames, and the states say what happened."""
    results, states, lock = [], [], threading.Lock()

    def on_result(r):
        with lock:
            results.append(r)

    def on_status(s):
        with lock:
            states.append(s.source)

    rt = FakeRuntime(default="OK")
    pipe = Pipeline(
        CameraSource("0", 640, 480),
        ModelHolder(lambda: rt),
        on_result,
        on_status,
        lambda level, msg: None,
        options=PipelineOptions(retry_initial_s=0.02, retry_max_s=0.05),
    )
    pipe.start()

    def wait(cond, t=10.0):
        end = time.monotonic() + t
        while time.monotonic() < end and not cond():
            time.sleep(0.005)
        return cond()

    try:
        assert wait(lambda: len(results) >= 3)
        device.plugged = False
        opens = device.opens
        assert wait(lambda: device.opens >= opens + 2)  # reopen tried while it is out
        before = len(results)
        device.plugged = True
        assert wait(lambda: len(results) >= before + 3)
    finally:
        pipe.stop()
    with lock:
        seen = list(states)
    assert SourceState.DISCONNECTED in seen
    assert seen.index(SourceState.DISCONNECTED) < len(seen) - 1 - seen[::-1].index(SourceState.RUNNING)
    assert all(r.frame.image.shape == (480, 640, 3) for r in results)
