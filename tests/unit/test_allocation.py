"""Allocated source IPs: the model's rules, the pick (egress_api.allocation) and the write path on a real
sqlite store, with a hypothesis test interleaving creates, updates and deletes."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egress_agent.server.write_plan import read_desired
from egress_agent.server.writes import Writes
from egress_agent.store import base
from egress_agent.store.base import GATEWAY, POLICY
from egress_agent.store.sqlite import SqliteStore
from egress_api import allocation, models

IPS = ["192.0.2.10", "192.0.2.9", "192.0.2.11"]  # not in order: the pick is by address


def policy(name="p", **fields) -> models.Policy:
    data = {"name": name, "egress": [{}], "destination_cidrs": ["198.51.100.0/24"], **fields}
    return models.parse("policy", data)


def gateway(name="edge", ips=IPS) -> models.Gateway:
    return models.parse("gateway", {"name": name, "floating_ips": list(ips)})


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "s.db"))
    yield s
    s.close()


# --- the model -------------------------------------------------------------------------


def test_either_gateway_or_ip_or_both():
    assert policy(gateway="edge").allocated and policy(gateway="edge").egress_source_ip is None
    assert not policy(egress_source_ip="192.0.2.9").allocated
    both = policy(gateway="edge", egress_source_ip="192.0.2.9")
    assert (both.gateway, both.egress_source_ip, both.allocated) == ("edge", "192.0.2.9", False)
    with pytest.raises(models.InvalidObject) as info:
        policy()
    (v,) = info.value.violations
    assert v.path == ("egress_source_ip",)
    assert v.message == ("set egress_source_ip, or gateway to have the agent allocate a free floating IP of that "
                         "gateway (e.g. gateway = egress_gateway.NAME.name)")


def test_a_bad_gateway_name_is_reported_alone():
    with pytest.raises(models.InvalidObject) as info:
        policy(gateway="Edge_1")
    assert [v.path for v in info.value.violations] == [("gateway",)]


def test_a_pending_gateway_or_ip_waits():
    data = {"name": "p", "egress": [{}], "destination_cidrs": ["198.51.100.0/24"], "gateway": models.Pending("ed")}
    assert models.parse("policy", data).egress_source_ip is None
    models.parse("policy", {**data, "gateway": None, "egress_source_ip": models.Pending("192.")})


def test_both_given_the_ip_must_be_the_gateways():
    outside = policy(gateway="edge", egress_source_ip="203.0.113.1")
    (err,) = models.check_references(outside, [gateway()], [])
    assert err.path == ("egress_source_ip",)
    assert err.message.startswith("203.0.113.1 is not a floating IP of gateway 'edge' (192.0.2.9, 192.0.2.10, ")
    assert models.check_references(policy(gateway="edge", egress_source_ip="192.0.2.9"), [gateway()], []) == []
    # The gateway does not exist yet: a warning (Terraform may create it after the policy), not an error.
    assert models.check_references(outside, [], []) == []
    warnings = models.reference_warnings(outside, [], [])
    assert [w.path for w in warnings] == [("egress_source_ip",), ("gateway",)]
    assert "gateway 'edge' does not exist (yet)" in warnings[1].message


def test_allocating_policies_are_no_duplicates_of_each_other():
    assert models.duplicate_source_ip(policy("a", gateway="edge"), [policy("b", gateway="edge")]) == []
    assert models.reference_warnings(policy("a", gateway="edge"), [gateway()], []) == []


# --- the pick ------------------------------------------------------------------------------


def test_the_lowest_free_address_is_picked():
    gws = {"edge": gateway()}
    assert allocation.source_ip(policy(gateway="edge"), gws, {}) == "192.0.2.9"
    used = {"a": policy("a", egress_source_ip="192.0.2.9")}
    assert allocation.source_ip(policy(gateway="edge"), gws, used) == "192.0.2.10"
    # Retained for another policy (its gateway let it go): skipped like a used one.
    assert allocation.source_ip(policy(gateway="edge"), gws, used, {"192.0.2.10": "old"}) == "192.0.2.11"


def test_the_stored_ip_is_kept_while_the_gateway_lists_it():
    gws = {"edge": gateway()}
    stored = {"p": policy(gateway="edge", egress_source_ip="192.0.2.11")}
    assert allocation.source_ip(policy(gateway="edge"), gws, stored) == "192.0.2.11"
    # Its gateway dropped it: allocated anew.
    assert allocation.source_ip(policy(gateway="edge"), {"edge": gateway(ips=["192.0.2.20"])}, stored) == "192.0.2.20"
    # An explicit IP is kept as given (the cross-object rules check it).
    assert allocation.source_ip(policy(egress_source_ip="203.0.113.5"), gws, {}) == "203.0.113.5"


def test_a_missing_gateway_and_a_full_one_are_clear_errors():
    with pytest.raises(allocation.NoSourceIP) as info:
        allocation.source_ip(policy(gateway="nope"), {"edge": gateway()}, {})
    assert not info.value.exhausted and info.value.violation.path == ("gateway",)
    assert "gateway 'nope' does not exist" in str(info.value) and "egress_gateway.NAME.name" in str(info.value)
    users = {f"u{i}": policy(f"u{i}", egress_source_ip=ip) for i, ip in enumerate(IPS)}
    with pytest.raises(allocation.NoSourceIP) as info:
        allocation.source_ip(policy(gateway="edge"), {"edge": gateway()}, users)
    assert info.value.exhausted
    assert info.value.violation.message == (
        "gateway 'edge' has no free floating IP: 0 of its 3 floating IPs are free (used by policies 'u0', 'u1', "
        "'u2'). Add floating IPs to the gateway, delete a policy using one, or name another gateway")


def test_an_exhaustion_error_names_the_first_users_only():
    ips = [f"192.0.2.{i}" for i in range(1, 9)]
    users = {f"u{i}": policy(f"u{i}", egress_source_ip=ip) for i, ip in enumerate(ips)}
    message = allocation.exhausted_message(gateway(ips=ips), users)
    assert "0 of its 8 floating IPs are free (used by policies 'u0', 'u1', 'u2', 'u3', 'u4' and 3 more)" in message


# --- the write path on a real store -----------------------------------------------------------


def test_writes_allocate_keep_and_free(store):
    w = Writes(store)
    w.create(gateway())
    first = w.create(policy("a", gateway="edge"))
    assert first.value["egress_source_ip"] == "192.0.2.9" and first.value["gateway"] == "edge"
    assert w.create(policy("b", gateway="edge")).value["egress_source_ip"] == "192.0.2.10"
    # An update that changes something else keeps the IP.
    updated = w.update(policy("a", gateway="edge", priority=5), resource_version=first.version)
    assert updated.value["egress_source_ip"] == "192.0.2.9"
    # An explicit IP colliding with an allocated one is refused.
    with pytest.raises(models.InvalidObject, match="already the egress_source_ip of policy 'a'"):
        w.create(policy("c", egress_source_ip="192.0.2.9"))
    # Delete frees it: the next allocation takes it again.
    w.delete(POLICY, "a", resource_version=0)
    assert w.create(policy("c", gateway="edge")).value["egress_source_ip"] == "192.0.2.9"


def test_an_explicit_policy_is_stored_without_a_gateway_field(store):
    w = Writes(store)
    w.create(gateway())
    assert "gateway" not in w.create(policy("a", egress_source_ip="192.0.2.9")).value  # older agents read it


def test_a_replayed_allocating_create_answers_with_the_stored_ip(store):
    w = Writes(store)
    w.create(gateway())
    first = w.create(policy("a", gateway="edge"), request_id="r1")
    again = w.create(policy("a", gateway="edge"), request_id="r1")
    assert again == first
    with pytest.raises(base.AlreadyExists):
        w.create(policy("a", gateway="edge"), request_id="r2")


def test_running_out_writes_nothing(store):
    w = Writes(store)
    w.create(gateway(ips=["192.0.2.9"]))
    w.create(policy("a", gateway="edge"))
    with pytest.raises(allocation.NoSourceIP, match="0 of its 1 floating IP is free"):
        w.create(policy("b", gateway="edge"))
    assert store.get(POLICY, "b") is None


def test_a_gateway_deleted_under_an_allocated_ip_retains_it(store):
    w = Writes(store)
    w.create(gateway())
    w.create(policy("a", gateway="edge"))
    w.delete(GATEWAY, "edge", resource_version=0)
    assert read_desired(store).retained == {"192.0.2.9": "edge"}
    # Re-created with the IP: adopted, and the policy keeps it on its next update.
    w.create(gateway())
    assert read_desired(store).retained == {}
    assert w.update(policy("a", gateway="edge"), resource_version=0).value["egress_source_ip"] == "192.0.2.9"


# --- interleavings ------------------------------------------------------------------------------

POOL = [f"192.0.2.{i}" for i in range(1, 7)]
_names = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), _names, st.sampled_from(["g1", "g2", "gone"])),
        st.tuples(st.just("explicit"), _names, st.sampled_from(POOL)),
        st.tuples(st.just("move"), _names, st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("delete"), _names, st.just("")),
        st.tuples(st.just("shrink"), st.sampled_from(["g1", "g2"]), st.integers(1, 3)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_no_two_policies_ever_share_an_ip(ops):
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "s.db"))
        try:
            w = Writes(store)
            w.create(gateway("g1", POOL[:3]))
            w.create(gateway("g2", POOL[3:]))
            for op, name, arg in ops:
                try:
                    if op == "create":
                        w.create(policy(name, gateway=arg))
                    elif op == "explicit":
                        w.create(policy(name, egress_source_ip=arg))
                    elif op == "move":
                        w.update(policy(name, gateway=arg), resource_version=0)
                    elif op == "delete":
                        w.delete(POLICY, name, resource_version=0)
                    else:  # a gateway drops all but its first `arg` IPs: its policies' IPs are retained
                        ips = (POOL[:3] if name == "g1" else POOL[3:])[:arg]
                        w.update(gateway(name, ips), resource_version=0)
                except (allocation.NoSourceIP, models.InvalidObject, base.AlreadyExists, base.NotFound):
                    pass  # refused: nothing written
                _check_invariants(store)
        finally:
            store.close()


def _check_invariants(store) -> None:
    d = read_desired(store)
    ips = [p.egress_source_ip for p in d.policies.values()]
    assert len(ips) == len(set(ips)), f"two policies share an IP: {ips}"
    assert all(ipaddress.ip_address(ip) for ip in ips)  # stored policies always have a concrete IP
    for p in d.policies.values():
        if p.gateway is not None:
            # The IP is its gateway's, or retained for it after the gateway let it go (never another gateway's).
            gw = d.gateways.get(p.gateway)
            assert (gw is not None and p.egress_source_ip in gw.floating_ips) or p.egress_source_ip in d.retained


def test_two_writers_allocating_at_once_never_pick_the_same_ip(tmp_path):
    """Two Writes on two connections to one store (as two agents): each write's pick is guarded by the commit."""
    import threading

    stores = [SqliteStore(str(tmp_path / "s.db")) for _ in range(2)]
    try:
        Writes(stores[0]).create(gateway(ips=[f"192.0.2.{i}" for i in range(1, 31)]))
        results: dict[str, str] = {}
        failures: list[BaseException] = []

        def run(k: int):
            w = Writes(stores[k])
            for i in range(15):
                try:
                    results[f"p{k}-{i}"] = w.create(policy(f"p{k}-{i}", gateway="edge")).value["egress_source_ip"]
                except BaseException as err:  # noqa: BLE001 - reported below
                    failures.append(err)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures
        assert len(results) == 30 and len(set(results.values())) == 30
    finally:
        for s in stores:
            s.close()
