"""The agent API through EgressClient against a real egress-agent process."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest

from egress_api import errors, models
from egress_api.client import EgressClient
from egress_agent.store.sqlite import SqliteStore

from helpers.agent import ctl_command, wait_for
from seed_objects import GW, policy


def test_gateway_crud(agent_process):
    c = agent_process.client
    created = c.create_gateway(GW)
    assert created.obj == GW and created.resource_version > 0
    assert c.get_gateway("default") == created
    assert c.list_gateways() == [created]

    bigger = models.Gateway(name="default", floating_ips=[*GW.floating_ips, "192.0.2.103"])
    updated = c.update_gateway(bigger, resource_version=created.resource_version)
    assert updated.obj == bigger and updated.resource_version > created.resource_version

    with pytest.raises(errors.AlreadyExists, match="already exists"):
        c.create_gateway(GW)
    c.delete_gateway("default", resource_version=updated.resource_version)
    assert c.list_gateways() == []
    with pytest.raises(errors.NotFound, match="gateway 'default' not found"):
        c.get_gateway("default")
    with pytest.raises(errors.NotFound):
        c.delete_gateway("default")
    with pytest.raises(errors.NotFound):
        c.update_gateway(GW)


def test_policy_crud_keeps_selectors_exactly(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    p = policy()
    created = c.create_policy(p)
    assert created.obj == p
    got = c.get_policy("egress")
    assert got.obj.egress[1].pod_selector is None  # an omitted selector stays omitted (match all)
    assert got.obj.egress[0].pod_selector.match_labels == {"role": "frontend"}

    changed = policy(cidrs=("198.51.100.0/24", "203.0.113.0/24"))
    updated = c.update_policy(changed, resource_version=got.resource_version)
    assert updated.obj.destination_cidrs == ["198.51.100.0/24", "203.0.113.0/24"]
    assert [v.obj.name for v in c.list_policies()] == ["egress"]
    c.delete_policy("egress")
    assert c.list_policies() == []
    c.delete_gateway("default")  # no longer in use


def test_stale_resource_version_is_a_conflict(agent_process):
    c = agent_process.client
    v1 = c.create_gateway(GW)
    v2 = c.update_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100"]), v1.resource_version)
    with pytest.raises(errors.Conflict) as info:
        c.update_gateway(GW, resource_version=v1.resource_version)
    assert f"you have resource_version {v1.resource_version}" in info.value.message
    assert "Re-read it" in info.value.message
    with pytest.raises(errors.Conflict):
        c.delete_gateway("default", resource_version=v1.resource_version)
    assert c.get_gateway("default") == v2  # nothing was overwritten
    # 0 means unconditional.
    assert c.update_gateway(GW, resource_version=0).obj == GW


def test_bad_input_is_invalid_argument_with_paths_and_writes_nothing(agent_process):
    """A client other than Terraform (raw protobuf) gets the models' errors with attribute paths."""
    from egress_api.v1 import egress_pb2 as pb

    c = agent_process.client
    c.create_gateway(GW)
    before = (c.list_gateways(), c.list_policies())
    bad = pb.Policy(
        name="egress",
        egress=[pb.EgressRule(pod_selector=pb.LabelSelector(match_labels={"role": "-bad"}))],
        destination_cidrs=["198.51.100.1/24", "2001:db8::/32"],
        egress_source_ip="192.0.2.999",
    )
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("CreatePolicy", bad)
    paths = {v.path for v in info.value.violations}
    # Every bad value, each at its own path: the map key, both CIDRs (by position in the request).
    assert paths == {("egress", 0, "pod_selector", "match_labels", "role"), ("destination_cidrs", 0),
                     ("destination_cidrs", 1), ("egress_source_ip",)}
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("CreateGateway", pb.Gateway(name="Bad_Name", floating_ips=[]))
    assert {v.path for v in info.value.violations} == {("name",), ("floating_ips",)}
    with pytest.raises(errors.InvalidArgument) as info:
        c.call("CreatePolicy", pb.Policy(name="empty", destination_cidrs=["198.51.100.0/24"], egress_source_ip="192.0.2.100"))
    assert [v.path for v in info.value.violations] == [("egress",)]
    assert (c.list_gateways(), c.list_policies()) == before


def test_policy_before_its_gateway_is_accepted_and_dropped_until_then(agent_process):
    """Terraform may create the policy first: accepted (seed: UnknownEgressIP), no holder, so traffic is dropped."""
    c = agent_process.client
    c.create_policy(policy())
    events = wait_for(lambda: c.list_events("policy", "egress"), what="UnknownEgressIP event")
    assert events[0].reason == "UnknownEgressIP" and "not a floating IP of any gateway" in events[0].message
    assert c.describe_policy("egress").holder == ""
    c.create_gateway(GW)
    wait_for(lambda: c.describe_policy("egress").holder == "worker1", what="holder once the gateway exists")


def test_duplicate_source_ip_is_rejected(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    c.create_policy(policy("first"))
    with pytest.raises(errors.InvalidArgument) as info:
        c.create_policy(policy("second"))
    assert info.value.violations[0].path == ("egress_source_ip",)
    assert "'first'" in info.value.message
    assert [p.obj.name for p in c.list_policies()] == ["first"]


def _held(c) -> list[str]:
    return c.get_node("worker1").floating_ips


def test_gateway_deleted_under_a_policy_keeps_its_ip_until_replaced_or_unused(agent_process):
    """Deleting (or shrinking) a gateway a policy uses never lets the policy's IP go: it is retained, same node."""
    c = agent_process.client
    c.create_gateway(GW)
    c.create_policy(policy(source="192.0.2.101"))
    wait_for(lambda: _held(c) == GW.floating_ips, what="assignment")
    c.delete_gateway("default")
    assert c.list_gateways() == []
    wait_for(lambda: _held(c) == ["192.0.2.101"], what="unused IPs released, the used one kept")
    (e,) = wait_for(lambda: [e for e in c.list_events("policy", "egress") if e.reason == "FloatingIPRetained"],
                    what="FloatingIPRetained event")
    assert "'default'" in e.message
    assert c.describe_policy("egress").holder == "worker1"
    # A replacement listing the IP adopts it (as `terraform apply -replace` does): no move.
    c.create_gateway(models.Gateway(name="replacement", floating_ips=["192.0.2.101"]))
    assert c.gateway_status("replacement").floating_ips == {"192.0.2.101": "worker1"}
    assert c.describe_policy("egress").holder == "worker1"
    # Shrinking retains it too; deleting the policy then releases it.
    c.update_gateway(models.Gateway(name="replacement", floating_ips=["192.0.2.102"]))
    wait_for(lambda: _held(c) == ["192.0.2.101", "192.0.2.102"], what="retained after shrink")
    c.delete_policy("egress")
    wait_for(lambda: _held(c) == ["192.0.2.102"], what="released once unused")


def test_floating_ip_in_two_gateways_is_accepted_with_a_warning(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    other = models.Gateway(name="other", floating_ips=["192.0.2.102"])
    res = c.validate_gateway(other)
    assert res.errors == [] and "already belongs to gateway 'default'" in res.warnings[0].message
    c.create_gateway(other)
    (e,) = wait_for(lambda: c.list_events("gateway", "other"), what="FloatingIPShared event")
    assert e.reason == "FloatingIPShared"
    wait_for(lambda: _held(c) == GW.floating_ips, what="assigned once")


def test_validate_reports_without_writing(agent_process):
    c = agent_process.client
    assert c.validate_gateway(GW).errors == []
    assert c.list_gateways() == []
    c.create_gateway(GW)
    res = c.validate_policy(policy(source="192.0.2.200"))
    assert res.errors == [] and [v.path for v in res.warnings] == [("egress_source_ip",)]
    # Outside the node's subnet: valid, but nobody can hold it -> a warning, not an error.
    res = c.validate_gateway(models.Gateway(name="far", floating_ips=["203.0.113.10"]))
    assert res.errors == []
    assert "no node's subnet contains 203.0.113.10" in res.warnings[0].message
    assert c.list_policies() == [] and len(c.list_gateways()) == 1


def test_restart_keeps_all_objects(agent_process):
    c = agent_process.client
    gw = c.create_gateway(GW)
    p = c.create_policy(policy())
    c.upsert_namespace(models.Namespace(name="alice", labels={"user": "alice"}))
    agent_process.restart()
    c = agent_process.client
    assert c.list_gateways() == [gw]
    assert c.list_policies() == [p]
    assert c.list_namespaces() == [models.Namespace(name="alice", labels={"user": "alice"})]
    # Versions keep increasing after the restart.
    assert c.update_policy(policy(cidrs=("203.0.113.0/24",)), p.resource_version).resource_version > p.resource_version


def test_store_holds_exactly_what_the_api_acknowledged(agent_process):
    c = agent_process.client
    c.create_gateway(GW)
    agent_process.stop()
    store = SqliteStore(str(agent_process.store_path))
    try:
        assert store.get("gateway", "default").value == {"name": "default", "floating_ips": GW.floating_ips}
        assert store.get("node", "worker1").value["node_ip"] == "192.0.2.11/24"
    finally:
        store.close()


def test_inventory(agent_process):
    c = agent_process.client
    pod = models.Pod(name="web", namespace="alice", node="worker1", ip="10.244.1.5", labels={"role": "frontend"})
    assert c.upsert_pod(pod) == pod
    assert c.list_pods() == [pod]
    moved = pod.model_copy(update={"ip": "10.244.1.6"})
    c.upsert_pod(moved)
    assert c.list_pods() == [moved]
    c.delete_pod("alice/web")
    assert c.list_pods() == []
    with pytest.raises(errors.NotFound):
        c.delete_pod("alice/web")
    with pytest.raises(errors.InvalidArgument, match="namespace/name"):
        c.delete_pod("web")
    from egress_api.v1 import egress_pb2 as pb

    with pytest.raises(errors.InvalidArgument) as info:
        c.call("UpsertPod", pb.Pod(name="web", namespace="alice", node="worker1", ip="10.244.1.500"))
    assert [v.path for v in info.value.violations] == [("ip",)]


def test_health_and_socket_mode(agent_process):
    h = agent_process.client.health()
    assert (h.status, h.node, h.store_ok) == ("SERVING", "worker1", True)
    assert h.store == f"sqlite:{agent_process.store_path}"
    assert h.version
    assert stat.S_IMODE(os.stat(agent_process.socket).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(agent_process.socket).st_mode)


def test_unreachable_agent_is_a_clear_unavailable(tmp_path):
    target = f"unix://{tmp_path}/nobody.sock"
    with EgressClient(target, timeout=2) as c, pytest.raises(errors.Unavailable) as info:
        c.list_gateways()
    assert f"cannot reach egress-agent at {target}: is it running?" in info.value.message
    assert "EGRESS_ENDPOINT" in info.value.message
    with pytest.raises(errors.InvalidArgument, match="must be absolute"):
        EgressClient("unix:relative.sock")


def test_tcp_listener(tmp_path_factory):
    from helpers.agent import start_agent

    port = _free_port()
    with start_agent(tmp_path_factory.mktemp("tcp"), extra_args=["--listen", f"127.0.0.1:{port}"]):
        with EgressClient(f"127.0.0.1:{port}") as c:
            assert c.health().node == "worker1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_writers_cannot_both_pass_validation(agent_process):
    """Eight clients race to claim one source IP: exactly one wins."""
    from concurrent.futures import ThreadPoolExecutor

    agent_process.client.create_gateway(GW)

    def claim(i):
        with EgressClient(agent_process.endpoint) as c:
            outcomes = []
            for make in (lambda: c.create_policy(policy(f"p{i}", source="192.0.2.101")),):
                try:
                    make()
                    outcomes.append("won")
                except errors.InvalidArgument:
                    outcomes.append("rejected")
            return outcomes

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))
    assert sorted(r[0] for r in results) == ["rejected"] * 7 + ["won"]
    c = agent_process.client
    assert len(c.list_policies()) == 1


def test_many_parallel_writes_through_one_agent_all_succeed(agent_process):
    """Terraform applies with parallelism 10; 100 independent creates through one agent must all land."""
    from concurrent.futures import ThreadPoolExecutor

    ips = [f"192.0.2.{100 + i}" for i in range(100)]
    agent_process.client.create_gateway(models.Gateway(name="default", floating_ips=ips))

    def create(i):
        with EgressClient(agent_process.endpoint) as c:
            return c.create_policy(policy(f"p{i}", source=ips[i])).resource_version

    with ThreadPoolExecutor(10) as pool:
        versions = list(pool.map(create, range(100)))
    stored = {p.obj.name: p.resource_version for p in agent_process.client.list_policies()}
    assert stored == {f"p{i}": versions[i] for i in range(100)}  # each answered with the revision it landed at
    # Group commit: writes that waited together went to the store together (fewer revisions than writes).
    assert len(set(versions)) < 100


def test_a_group_commit_validates_each_write_against_the_ones_before_it(agent_process):
    """Writes committed together are planned in order: of 8 policies racing for one source IP through one
    agent exactly one wins, and the group's other writes still land."""
    from concurrent.futures import ThreadPoolExecutor

    ips = [f"192.0.2.{100 + i}" for i in range(20)]
    agent_process.client.create_gateway(models.Gateway(name="default", floating_ips=ips))

    def create(i):
        source = ips[0] if i % 2 else ips[i + 1]  # odd: all the same IP
        with EgressClient(agent_process.endpoint) as c:
            try:
                c.create_policy(policy(f"p{i}", source=source))
                return "created"
            except errors.InvalidArgument:
                return "rejected"

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, range(16)))
    assert [results[i] for i in range(0, 16, 2)] == ["created"] * 8
    assert sorted(results[i] for i in range(1, 16, 2)) == ["created"] + ["rejected"] * 7
    owners = [p.obj.name for p in agent_process.client.list_policies() if p.obj.egress_source_ip == ips[0]]
    assert len(owners) == 1


def test_closed_client_raises_an_api_error(agent_process):
    c = EgressClient(agent_process.endpoint)
    c.close()
    with pytest.raises(errors.ApiError, match="closed channel"):
        c.health()


def test_conditions_say_what_is_missing_and_since_when(agent_process):
    """Ready / IPAssigned / Programmed on policies and gateways; the leader keeps their transition times."""
    c = agent_process.client
    c.create_policy(policy())
    d = c.describe_policy("egress")
    kinds = {x.type: (x.status, x.reason) for x in d.conditions}
    assert kinds == {"Ready": ("False", "NotAFloatingIP"), "IPAssigned": ("False", "NotAFloatingIP"),
                     "Programmed": ("Unknown", "NoDatapath")}  # --datapath off: nothing to program
    # The leader has kept the transition times (until then a read says "now").
    store = SqliteStore(str(agent_process.store_path))
    wait_for(lambda: store.get("condition", "policy:egress") is not None, what="the condition record")
    before = {x.type: x.last_transition_time for x in c.describe_policy("egress").conditions}
    time.sleep(1.1)  # the times have a resolution of one second
    c.create_gateway(GW)
    d = wait_for(lambda: (d := c.describe_policy("egress")).holder and d, what="the holder")
    now = {x.type: x for x in d.conditions}
    assert (now["Ready"].status, now["Ready"].reason) == ("True", "AssignedNoDatapath")
    assert now["IPAssigned"].message == "192.0.2.100 is held by worker1"
    # Ready and IPAssigned changed, Programmed did not: its time stays.
    assert now["Programmed"].last_transition_time == before["Programmed"]
    assert now["Ready"].last_transition_time > before["Ready"]
    st = c.gateway_status("default")
    assert {x.type: x.status for x in st.conditions} == {"Ready": "True", "IPAssigned": "True", "Programmed": "Unknown"}
    out = subprocess.run([*ctl_command(), "--endpoint", agent_process.endpoint, "describe", "policy", "egress"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Conditions:" in out.stdout and "AssignedNoDatapath" in out.stdout
    out = subprocess.run([*ctl_command(), "--endpoint", agent_process.endpoint, "status"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert ["GATEWAY", "READY", "IPASSIGNED", "PROGRAMMED", "SINCE", "MESSAGE"] in rows
    assert any(r[:4] == ["default", "True", "True", "Unknown"] for r in rows)
