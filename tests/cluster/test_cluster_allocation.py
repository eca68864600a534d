"""Allocated source IPs across two agents on one real etcd: 50 policies created at once, 25 through each agent,
never share an IP; a gateway too small for them refuses exactly the ones it has no IP for (issue #12)."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor

import pytest

from egress_api import errors, models
from egress_api.client import EgressClient

pytestmark = pytest.mark.etcd

POLICIES = 50


def _gateway(size: int) -> models.Gateway:
    return models.Gateway(name="pool", floating_ips=[f"198.51.100.{i}" for i in range(1, size + 1)])


def _policy(i: int) -> models.Policy:
    return models.Policy.model_validate({"name": f"p{i:02d}", "gateway": "pool", "egress": [{}],
                                         "destination_cidrs": ["203.0.113.0/24"]})


def _create_all(agents) -> tuple[dict[str, str], dict[str, BaseException]]:
    """Create POLICIES policies in parallel, even ones through the first agent, odd ones through the second
    (a client per thread); (name -> allocated IP, name -> error)."""

    def create(i: int):
        with EgressClient(agents[i % 2].endpoint, timeout=30) as client:
            try:
                return _policy(i).name, client.create_policy(_policy(i)).obj.egress_source_ip
            except errors.ApiError as err:
                return _policy(i).name, err

    with ThreadPoolExecutor(max_workers=POLICIES) as pool:
        results = list(pool.map(create, range(POLICIES)))
    return ({n: r for n, r in results if isinstance(r, str)}, {n: r for n, r in results if not isinstance(r, str)})


@pytest.fixture
def two_agents(empty_group):
    a = empty_group.add("worker1", "worker", "192.0.2.11/24")
    b = empty_group.add("worker2", "worker", "192.0.2.12/24")
    return a, b


def test_fifty_parallel_creates_get_fifty_distinct_ips(two_agents):
    a, _ = two_agents
    gw = a.client.create_gateway(_gateway(60)).obj
    allocated, failed = _create_all(two_agents)
    assert failed == {}
    assert len(allocated) == POLICIES and len(set(allocated.values())) == POLICIES
    assert set(allocated.values()) <= set(gw.floating_ips)
    # As stored (read back through the other agent): the same, each with its gateway.
    stored = {v.obj.name: (v.obj.egress_source_ip, v.obj.gateway) for v in two_agents[1].client.list_policies()}
    assert stored == {n: (ip, "pool") for n, ip in allocated.items()}


def test_a_gateway_too_small_refuses_exactly_the_excess(two_agents):
    a, b = two_agents
    a.client.create_gateway(_gateway(40))
    allocated, failed = _create_all(two_agents)
    assert len(allocated) == 40 and len(set(allocated.values())) == 40
    assert sorted(allocated.values(), key=ipaddress.ip_address) == _gateway(40).floating_ips  # every IP, once
    assert len(failed) == 10
    for name, err in failed.items():
        assert isinstance(err, errors.FailedPrecondition), (name, err)
        assert "gateway 'pool' has no free floating IP: 0 of its 40 floating IPs are free" in err.message
    assert len(b.client.list_policies()) == 40  # the refused ones wrote nothing
