"""The shared store contract, against a real single-member etcd."""

import pytest

from egress_agent.store.etcd import EtcdStore
from helpers.store_contract import StoreContract

pytestmark = pytest.mark.etcd


class TestEtcdStoreContract(StoreContract):
    @pytest.fixture
    def store(self, etcd, prefix):
        s = EtcdStore(etcd.endpoints, prefix=prefix)
        yield s
        s.close()
