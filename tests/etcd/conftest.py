"""Real etcd for the tests in this folder: one member shared by a module, or a fresh 3-member cluster."""

import itertools

import pytest

from helpers.etcd import EtcdCluster, make_cluster

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory) -> EtcdCluster:
    """A single-member etcd shared by the module's tests (each test uses its own key prefix)."""
    cluster = make_cluster(tmp_path_factory.mktemp("etcd1"), size=1)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def prefix() -> str:
    return f"/t{next(_prefixes)}"
