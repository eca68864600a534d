"""store.typed: records parsed once per version, per store; deleted records are forgotten."""

from __future__ import annotations

import pytest

from egress_agent.store import typed
from egress_agent.store.base import GATEWAY, Delete, Put
from egress_agent.store.sqlite import SqliteStore


@pytest.fixture
def stores(tmp_path):
    a, b = SqliteStore(str(tmp_path / "a.db")), SqliteStore(str(tmp_path / "b.db"))
    yield a, b
    a.close()
    b.close()


def test_a_model_is_reused_until_its_record_is_written_again(stores):
    store, _ = stores
    store.commit([Put(GATEWAY, "default", {"name": "default", "floating_ips": ["192.0.2.100"]})])
    cache = typed.parsed(store)
    first = cache.all(store.snapshot([GATEWAY]), GATEWAY)["default"]
    assert cache.all(store.snapshot([GATEWAY]), GATEWAY)["default"] is first
    store.commit([Put(GATEWAY, "default", {"name": "default", "floating_ips": ["192.0.2.101"]})])
    again = cache.all(store.snapshot([GATEWAY]), GATEWAY)["default"]
    assert again is not first and again.floating_ips == ["192.0.2.101"]


def test_two_stores_at_the_same_revision_do_not_share_models(stores):
    a, b = stores
    a.commit([Put(GATEWAY, "default", {"name": "default", "floating_ips": ["192.0.2.100"]})])
    b.commit([Put(GATEWAY, "default", {"name": "default", "floating_ips": ["192.0.2.200"]})])
    assert typed.parsed(a) is not typed.parsed(b)
    assert typed.parsed(a).model(a.get(GATEWAY, "default")).floating_ips == ["192.0.2.100"]
    assert typed.parsed(b).model(b.get(GATEWAY, "default")).floating_ips == ["192.0.2.200"]


def test_deleted_records_are_dropped_from_the_cache(stores):
    store, _ = stores
    names = [f"gw-{i}" for i in range(200)]
    store.commit([Put(GATEWAY, n, {"name": n, "floating_ips": ["192.0.2.100"]}) for n in names])
    cache = typed.parsed(store)
    cache.all(store.snapshot([GATEWAY]), GATEWAY)
    store.commit([Delete(GATEWAY, n) for n in names[1:]])
    assert list(cache.all(store.snapshot([GATEWAY]), GATEWAY)) == ["gw-0"]
    assert cache._count[GATEWAY] == 1
