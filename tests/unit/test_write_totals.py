"""server.write_plan.check_totals: the cluster totals of egress_api.limits, on a real sqlite store."""

from __future__ import annotations

import pytest

from egress_agent.server.write_plan import check_totals, read_desired
from egress_agent.server.writes import Writes
from egress_agent.store.base import GATEWAY, Put
from egress_agent.store.sqlite import SqliteStore
from egress_api import limits, models


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "s.db"))
    yield s
    s.close()


def _gateway(i: int, n: int = 1) -> models.Gateway:
    # Gateways may share IPs here: the totals only count them.
    return models.Gateway(name=f"g{i}", floating_ips=[f"10.{i % 250}.{k // 250}.{1 + k % 250}" for k in range(n)])


def test_gateways_over_the_limit(store):
    gateways = {f"g{i}": _gateway(i) for i in range(limits.MAX_GATEWAYS)}
    store.commit([Put(GATEWAY, g.name, g.model_dump(mode="json")) for g in gateways.values()])
    with pytest.raises(limits.LimitExceeded) as info:
        Writes(store).create(_gateway(5000))
    assert str(info.value) == ("this write would make 1,001 gateways, over the cluster's limit "
                               "(limit MAX_GATEWAYS = 1,000; see docs/limits.md)")
    assert len(store.list(GATEWAY)) == limits.MAX_GATEWAYS  # nothing written
    Writes(store).update(_gateway(0, n=2), resource_version=0)  # a write that adds no gateway passes


def test_floating_ips_over_all_gateways(store):
    d = read_desired(store)
    ten = {f"g{i}": _gateway(i, n=limits.MAX_TOTAL_FLOATING_IPS // 10) for i in range(10)}
    check_totals(d, ten, {})  # exactly at the limit
    with pytest.raises(limits.LimitExceeded, match=r"10,001 floating IPs over all gateways.*MAX_TOTAL_FLOATING_IPS"):
        check_totals(d, {**ten, "g10": _gateway(10)}, {})


def test_a_write_that_shrinks_an_over_limit_cluster_passes(store):
    over = {f"g{i}": _gateway(i) for i in range(limits.MAX_GATEWAYS + 2)}
    store.commit([Put(GATEWAY, g.name, g.model_dump(mode="json")) for g in over.values()])
    d = read_desired(store)
    fewer = dict(over)
    fewer.pop("g0")
    check_totals(d, fewer, {})  # still over the limit, but lower: passes
    with pytest.raises(limits.LimitExceeded):
        check_totals(d, {**over, "new": _gateway(9999)}, {})
