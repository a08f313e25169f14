"""Shared by the tests: tests/ is on sys.path under pytest (rootdir conftest, no __init__.py)."""

import os

import pytest

# pytest-qt aborts the whole run on a machine without a display unless Qt renders offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def private_model_choice_cache(tmp_path_factory):
    """The runtime caches its per-machine model choice in the user's cache folder; tests (and the
    command lines they start, which inherit the environment) use a throwaway one instead."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PININSPECT_CACHE_DIR", str(tmp_path_factory.mktemp("model-choice-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def private_data_folder(tmp_path_factory):
    """Renders and named sets the tests make go to a throwaway folder, not the repository's data/
    (where a developer's real data sets live)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PININSPECT_DATA", str(tmp_path_factory.mktemp("data")))
    yield
    mp.undo()
