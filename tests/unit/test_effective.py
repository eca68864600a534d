"""controller.effective: which source IP a pod leaves with, and a policy change's impact (pure)."""

from __future__ import annotations

from egress_agent.controller.effective import effective_ip, impact, selections, world_of
from egress_api import models

from test_node_desired import SEED_NS, SEED_PODS, SEED_POLICY, snapshot

HELD = {"192.0.2.100": "worker2"}


def world(policies=(SEED_POLICY,), assignments=HELD):
    return world_of(snapshot(SEED_PODS, SEED_NS, policies, assignments))


def test_selected_pod_leaves_with_the_floating_ip_from_its_holder():
    w = world()
    e = effective_ip(w, w.pods["alice/fe1"], "198.51.100.10")
    assert (e.source_ip, e.policy, e.holder, e.dropped, e.node) == ("192.0.2.100", "egress", "worker2", False, "worker1")


def test_unselected_pod_or_other_destination_leaves_with_its_node_ip():
    w = world()
    assert effective_ip(w, w.pods["bob/bob1"], "198.51.100.10").source_ip == "192.0.2.11"
    e = effective_ip(w, w.pods["alice/fe1"], "203.0.113.10")
    assert (e.source_ip, e.policy, e.holder) == ("192.0.2.11", "", "worker1")


def test_pod_cidr_destinations_keep_the_pod_ip():
    w = world()
    assert effective_ip(w, w.pods["alice/fe1"], "10.244.2.2").source_ip == "10.244.1.2"


def test_unheld_source_ip_is_dropped_not_leaked():
    w = world(assignments={})
    e = effective_ip(w, w.pods["alice/fe1"], "198.51.100.10")
    assert (e.source_ip, e.policy, e.dropped) == ("", "egress", True)


def test_longest_prefix_then_name_wins():
    narrow = {**SEED_POLICY, "name": "zz-narrow", "destination_cidrs": ["198.51.100.0/28"], "egress_source_ip": "192.0.2.101"}
    w = world(policies=(SEED_POLICY, narrow), assignments={**HELD, "192.0.2.101": "worker1"})
    assert effective_ip(w, w.pods["alice/fe1"], "198.51.100.10").policy == "zz-narrow"
    assert effective_ip(w, w.pods["alice/fe1"], "198.51.100.100").policy == "egress"


def test_impact_of_a_new_policy_lists_the_pods_whose_source_changes():
    w = world(policies=())
    i = impact(w, models.Policy.model_validate(SEED_POLICY))
    assert i.selected_pods == 3 and i.sample == ["alice/fe1", "alice/fe2", "paul/paul1"]
    assert i.changed_pods == 3
    c = next(c for c in i.changes if c.pod == "alice/fe1")
    assert (c.destination, c.before, c.after) == ("198.51.100.0/24", "192.0.2.11", "192.0.2.100")


def test_impact_of_an_unchanged_policy_is_empty():
    i = impact(world(), models.Policy.model_validate(SEED_POLICY))
    assert i.selected_pods == 3 and i.changes == [] and i.changed_pods == 0


def test_gateway_impact_lists_the_pods_of_policies_whose_ip_it_adds():
    from egress_agent.controller.effective import gateway_impact

    w = world(assignments={})  # the policy's 192.0.2.100 is in no gateway yet: its traffic is dropped
    gateways = {"default": models.Gateway(name="default", floating_ips=["192.0.2.101"])}
    i = gateway_impact(w, gateways, models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101"]))
    assert i.selected_pods == 3 and i.changed_pods == 3
    c = next(c for c in i.changes if c.pod == "alice/fe1")
    assert (c.destination, c.before, c.after) == ("198.51.100.0/24", "", "192.0.2.100")


def test_gateway_impact_is_empty_when_no_policy_uses_what_it_adds():
    from egress_agent.controller.effective import gateway_impact

    w = world()
    gateways = {"default": models.Gateway(name="default", floating_ips=["192.0.2.100"])}
    assert gateway_impact(w, gateways, models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.102"])).changed_pods == 0
    # Already listed by another gateway: nothing is added.
    gateways["other"] = models.Gateway(name="other", floating_ips=["192.0.2.103"])
    w = world(policies=({**SEED_POLICY, "egress_source_ip": "192.0.2.103"},))
    assert gateway_impact(w, gateways, models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.103"])).changed_pods == 0


def test_selections_of_every_policy_equal_each_policys_impact():
    other = {**SEED_POLICY, "name": "bob-only", "egress": [{"namespace_selector": {"match_labels": {"user": "bob"}}}],
             "egress_source_ip": "192.0.2.101"}
    w = world(policies=(SEED_POLICY, other))
    got = selections(w)
    for name, policy in w.policies.items():
        i = impact(w, policy)
        assert got[name] == (i.selected_pods, i.sample), name
    assert got["bob-only"][0] >= 1
