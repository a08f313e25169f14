import pytest

from edge_app import sources

_POOLS: dict = {}
_original_open = sources.SimSource.open


def _cached_open(self):
    """Render each simulator pool once per test session (renders cost ~12-30 ms each)."""
    key = (self.spec.name, self.defect_rate, self.pool_size, self.seed)
    if self.pool_size > 0 and key in _POOLS:
        self.pool = list(_POOLS[key])
        return
    _original_open(self)
    if self.pool_size > 0:
        _POOLS[key] = list(self.pool)


@pytest.fixture(autouse=True)
def cached_sim_pools(monkeypatch):
    monkeypatch.setattr(sources.SimSource, "open", _cached_open)
