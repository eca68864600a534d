"""server.writes group commit, one group at a time on a real sqlite store: each request is planned against
the snapshot plus the ones before it; one that depends on a record the group already changes waits."""

from __future__ import annotations

import pytest

from egress_agent.server.write_plan import Request
from egress_agent.server.writes import Writes, _Waiting
from egress_agent.store.base import GATEWAY, POLICY
from egress_agent.store.sqlite import SqliteStore
from egress_api import models


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "s.db"))
    yield s
    s.close()


def policy(name: str, ip: str) -> models.Policy:
    return models.Policy(name=name, egress=[models.EgressRule()], destination_cidrs=["198.51.100.0/24"],
                         egress_source_ip=ip)


def create(obj) -> _Waiting:
    return _Waiting(Request(POLICY if isinstance(obj, models.Policy) else GATEWAY, obj.name, obj, create=True))


def test_one_group_validates_in_order_and_defers_what_depends_on_it(store):
    writes = Writes(store)
    writes.create(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"]))
    commits = writes.commits
    a, b, c = create(policy("a", "192.0.2.100")), create(policy("b", "192.0.2.100")), create(policy("c", "192.0.2.101"))
    delete_a = _Waiting(Request(POLICY, "a", None))

    left = writes._commit_group([a, b, delete_a, c])

    assert writes.commits == commits + 1  # a and c in one transaction
    assert a.done and c.done and a.result.version == c.result.version
    assert isinstance(b.error, models.InvalidObject)  # a took 192.0.2.100 earlier in the same group
    assert "192.0.2.100" in str(b.error)
    assert left == [delete_a] and not delete_a.done  # a is created in this group: deleted in the next one
    assert writes._commit_group(left) == [] and delete_a.done and delete_a.error is None
    assert [r.name for r in store.list(POLICY)] == ["c"]


def test_a_failing_group_member_changes_nothing_for_the_others(store):
    writes = Writes(store)
    writes.create(models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"]))
    writes.create(policy("x", "192.0.2.100"))
    bad = create(policy("bad", "192.0.2.100"))  # x's source IP
    good = create(policy("good", "192.0.2.101"))
    assert writes._commit_group([bad, good]) == []
    assert isinstance(bad.error, models.InvalidObject) and good.error is None
    assert sorted(r.name for r in store.list(POLICY)) == ["good", "x"]
