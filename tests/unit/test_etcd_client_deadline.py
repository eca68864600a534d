"""A request's deadline bounds it over every etcd member it tries (store/etcd_client.py `call`).

Three listeners on loopback play hung members: they accept connections (the kernel's backlog does)
and never answer. Without a deadline each member gets a full try, which the lease keepalives rely on
(a hung member must not cost the request the next member's try); with one, the request gives up by
it, however many members are left (a cut-off agent's lease check must not grow with the cluster).
"""

from __future__ import annotations

import socket
import time

import pytest

from egress_agent.store.base import Unavailable
from egress_agent.store.etcd_client import EtcdClient

TRY = 0.3


@pytest.fixture
def hung_members():
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]  # listening, never accepting
    client = EtcdClient([f"http://127.0.0.1:{s.getsockname()[1]}" for s in servers], timeout=TRY)
    yield client
    client.close()
    for s in servers:
        s.close()


def test_without_a_deadline_every_member_gets_a_full_try(hung_members):
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as err:
        hung_members.call("lease/keepalive", {"ID": "1"})
    assert time.monotonic() - t0 >= 3 * TRY * 0.9
    assert str(err.value).count("timed out") == 3


def test_a_deadline_bounds_the_request_over_all_members(hung_members):
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as err:
        hung_members.call("lease/keepalive", {"ID": "1"}, deadline=t0 + TRY)
    took = time.monotonic() - t0
    assert took < 2 * TRY, f"the request took {took:.2f}s past its {TRY}s deadline"  # not 3 tries
    assert "not tried, the request's deadline passed" in str(err.value)
