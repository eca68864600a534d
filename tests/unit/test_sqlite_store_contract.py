"""The shared store contract (helpers/store_contract.py) against the embedded SQLite store.

tests/etcd/test_etcd_store_contract.py runs the same tests against real etcd.
"""

import pytest

from egress_agent.store.sqlite import SqliteStore
from helpers.store_contract import StoreContract


class TestSqliteStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        s = SqliteStore(str(tmp_path / "state.db"))
        yield s
        s.close()
