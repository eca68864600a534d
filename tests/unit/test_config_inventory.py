"""config_inventory: the validate walk's record, replayed by the plan walk's process."""

from __future__ import annotations

import json

from egress_provider.config_inventory import Inventory


def test_entries_replayed_give_the_same_inventory():
    recorded, entries = Inventory(), []
    entries.append(recorded.add("gateway", {"name": None, "floating_ips": ["192.0.2.101", "192.0.2.100"]}))
    entries.append(recorded.add("policy", {"name": "egress", "egress_source_ip": "192.0.2.100"}))
    entries.append(recorded.add("policy", {"name": object(), "egress_source_ip": "192.0.2.101"}))  # unknown name
    entries.append(recorded.add("policy", {"name": "bad", "egress_source_ip": "not an ip"}))  # validation's job
    entries.append(recorded.add("policy", {"name": "alloc", "egress_source_ip": None, "gateway": "edge"}))
    replayed = Inventory()
    for line in [json.dumps(e) for e in entries if e]:
        replayed.replay(json.loads(line))
    assert replayed == recorded
    assert replayed.gateways == {"default": ["192.0.2.100", "192.0.2.101"]}
    assert replayed.policies == {"egress": ("192.0.2.100", None), "alloc": (None, "edge")}
    assert replayed.objects()[1]["alloc"].gateway == "edge"
    assert replayed.gateways_complete and not replayed.policies_complete


def test_objects_are_built_once_and_follow_new_entries():
    inv = Inventory()
    inv.add("gateway", {"name": "a", "floating_ips": ["192.0.2.100"]})
    gateways, _ = inv.objects()
    assert inv.objects()[0] is gateways and gateways["a"].floating_ips == ["192.0.2.100"]
    inv.add("gateway", {"name": "b", "floating_ips": ["192.0.2.101"]})
    assert set(inv.objects()[0]) == {"a", "b"}
