"""`egress_nat_policy`: the seed's EgressNATPolicy: which pods, to which destinations, leave with which source IP."""

from __future__ import annotations

import functools
from typing import Any, Optional

from tf.iface import State
from tf.schema import Attribute, Block, Schema
from tf.types import List, Number, String, Unknown

from egress_api import allocation, errors, models
from egress_provider.framework.blocks import SetNestedBlock
from egress_api import limits
from egress_api.precedence import DEFAULT_PRIORITY
from egress_provider.framework.types import (CanonicalString, CanonicalStringList, CanonicalStringListEmptyIsNull,
                                             NumberWithDefault)
from egress_provider.framework.types import equal
from egress_provider.framework.unknowns import is_unknown
from egress_provider.resources.impact import add_impact_warning
from egress_provider.resources.lifecycle import AgentObjectResource, resource_version_attribute
from egress_provider.resources.selectors import selector_block as _selector_block
from egress_provider.resources.selectors import selector_to_state as _selector_to_state
from egress_provider.resources.timeouts import timeouts_block


def _required(block):
    # At least one rule is required, but the models say so (with their message), not Terraform's min_items.
    block.doc_required = True
    return block


class EgressNatPolicy(AgentObjectResource):
    terraform_type = "egress_nat_policy"
    kind = "policy"
    kind_plural = "policies"

    @classmethod
    def get_name(cls) -> str:
        return "nat_policy"

    @classmethod
    @functools.cache  # asked per RPC (validate, upgrade, each plan's diagnostics locator); built once
    def get_schema(cls) -> Schema:
        return Schema(
            version=3,  # 1: destination_cidrs became a list; 2: excluded_cidrs and priority; 3: gateway (see upgrade)
            description=(
                "Traffic selection for the egress NAT gateway (the EgressNATPolicy of Anthos clusters on bare "
                "metal). Traffic from a selected pod to one of `destination_cidrs` is steered to the node holding "
                "`egress_source_ip` and leaves the cluster with that source address. A pod is selected when it "
                "matches **any** `egress` rule; within a rule, `namespace_selector` and `pod_selector` must "
                "**both** match, and an omitted selector matches everything (Kubernetes LabelSelector semantics). "
                "If `egress_source_ip` is not currently held by any node, the policy is kept and an "
                "`UnknownEgressIP` event is recorded (`egressctl describe policy NAME`) until a node takes it. "
                "Where policies overlap (they select the same pod and cover the same destination) the lowest "
                "`priority` wins, then the longest destination prefix, then the name. With `gateway` and no "
                "`egress_source_ip`, the agent allocates a free floating IP of that gateway when the policy is "
                "created (the plan shows `(known after apply)`); it stays the policy's until the policy is deleted "
                "or names another gateway. Cluster-internal "
                "destinations (every node's pod CIDR and subnet, the agents' `--service-cidr`) are never steered."
            ),
            attributes=[
                Attribute("id", String(), computed=True, description="The policy's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Name of the policy: 1-63 lower-case letters, digits or `-`. "
                    "Changing it replaces the policy.",
                ),
                Attribute(
                    "destination_cidrs",
                    CanonicalStringList(models.parse_ipv4_cidr),
                    required=True,
                    description="IPv4 CIDR blocks (at least one, no host bits set, e.g. `198.51.100.0/24`); "
                    "traffic to any of them is selected. Updated in place. A list used as a set: each CIDR at "
                    "most once, order and spelling never change anything on the agent (it stores them sorted). "
                    "State keeps your order; reordering the list plans an in-place update that only rewrites "
                    "state, and config written in another order than an imported object's plans one such update.",
                ),
                Attribute(
                    "excluded_cidrs",
                    CanonicalStringListEmptyIsNull(models.parse_ipv4_cidr),
                    optional=True,
                    description="IPv4 CIDR blocks carved out of `destination_cidrs` (each must lie inside one of "
                    "them, e.g. `10.0.0.0/8` out of `0.0.0.0/0`): traffic to them is not steered by this policy "
                    "(the longest prefix wins, so a destination CIDR inside an exclusion is steered again). Another "
                    "policy covering the hole may take it. At most "
                    f"{limits.MAX_EXCLUDED_CIDRS:,}. A list used as a set, like `destination_cidrs`. Updated in place.",
                ),
                Attribute(
                    "priority",
                    NumberWithDefault(DEFAULT_PRIORITY),
                    optional=True,
                    description=f"Precedence where policies overlap: the lower number wins (0-{limits.MAX_PRIORITY:,}; "
                    f"default {DEFAULT_PRIORITY}). Overlapping policies of equal priority resolve by the longest "
                    "destination prefix, then by name, and the plan warns about them. Updated in place.",
                ),
                Attribute(
                    "gateway",
                    String(),
                    optional=True,
                    description="Name of the `egress_gateway` to allocate the source IP from, e.g. "
                    "`egress_gateway.edge.name` (which also makes Terraform create the gateway first). Without "
                    "`egress_source_ip`, the agent picks the lowest floating IP of the gateway that no other policy "
                    "uses, atomically (two policies never get the same IP, whichever agents write them), and keeps "
                    "it for the policy's life; it is freed when the policy is deleted. A plan fails when the gateway "
                    "is neither in the configuration nor on the agent, or when it has fewer free floating IPs than "
                    "the configuration's policies need; the apply fails with the same words if it runs out meanwhile. "
                    "A create or update naming a gateway that does not exist yet waits for it (up to the `timeouts`), "
                    "for a gateway created in the same apply under a literal name. "
                    "With `egress_source_ip` too, that IP must be one of the gateway's. Changing it allocates anew. "
                    "Updated in place.",
                ),
                Attribute(
                    "egress_source_ip",
                    CanonicalString(models.parse_ipv4),
                    optional=True,
                    computed=True,
                    description="Source IPv4 address selected traffic leaves with. It must be one of the "
                    "`floating_ips` of an `egress_gateway`, and each policy needs its own. Set it, or set `gateway` "
                    "and leave it out to have one allocated (then it is computed: the allocated IP). Updated in place.",
                ),
                resource_version_attribute(),
                Attribute(
                    "selected_pods",
                    Number(),
                    computed=True,
                    description="How many pods the policy selects, from the agent's pod inventory (refreshed on "
                    "every read). A plan that creates or changes the policy shows which pods' source IP changes in "
                    "an `Egress impact` warning.",
                ),
                Attribute(
                    "selected_pods_sample",
                    List(String()),
                    computed=True,
                    description="The first (by `namespace/name`) of the selected pods, at most 10.",
                ),
            ],
            block_types=[
                _required(SetNestedBlock(
                    "egress",
                    Block(
                        description="A traffic selection rule; at least one is required. A pod matching any rule "
                        "is selected.",
                        block_types=[
                            _selector_block("namespace_selector", "namespaces", '{ user = "alice" }'),
                            _selector_block("pod_selector", "pods", '{ role = "frontend" }'),
                        ],
                    ),
                )),
                timeouts_block(),
            ],
        )

    def upgrade(self, ctx, version: int, old: State) -> State:
        # Version 0 had destination_cidrs as a set; a set and a list are the same JSON array in state.
        # Version 2 added excluded_cidrs and priority: absent in older state, which null means (none, the default),
        # so an unchanged configuration plans empty after the upgrade.
        if version < 2:
            old = {**old, "excluded_cidrs": old.get("excluded_cidrs"), "priority": old.get("priority")}
        # Version 3 added gateway: older policies named none (their source IP was always given).
        if version < 3:
            old = {**old, "gateway": old.get("gateway")}
        return old

    # The selection follows the pods: known once applied (the plan's impact warning shows it before).
    observed_fields = ("selected_pods", "selected_pods_sample")
    computed_on_change = ("resource_version", *observed_fields)

    def observed(self, model: models.Policy) -> dict[str, Any]:
        impact = self.provider.client().policy_impact(model)
        return {"selected_pods": impact.selected_pods, "selected_pods_sample": list(impact.sample)}

    def read(self, ctx, current: State) -> Optional[State]:
        """A refresh: from the estate's one listing of every policy with its selection when it has this one."""
        name = current.get("name") or current.get("id")
        try:
            hit = self.provider.estate.listed_policy(self.provider.client(), name)
        except errors.ApiError:
            hit = None  # the read below reports it, in its words
        if hit is None:
            return super().read(ctx, current)
        versioned, selection = hit
        return {**self.to_state(versioned), "timeouts": current.get("timeouts"),
                "selected_pods": selection.selected_pods, "selected_pods_sample": list(selection.sample)}

    def plan_notes(self, diags, model: models.Policy) -> None:
        """An `Egress impact` warning: which pods' source IP to the policy's destinations this change moves."""
        add_impact_warning(diags, self.provider.client().policy_impact(model),
                           what=f"Policy {model.name!r} selects", path=["egress_source_ip"])

    # --- allocated source IPs ---
    def plan(self, ctx, current: Optional[State], planned: State) -> Optional[State]:
        if ctx.config.get("egress_source_ip") is None:
            planned["egress_source_ip"] = self._planned_source_ip(current, planned)
        return super().plan(ctx, current, planned)

    def _planned_source_ip(self, current: Optional[State], planned: State):
        """The source IP of a policy whose configuration names only its gateway: `(known after apply)` when the
        agent allocates one (a create, another gateway, or its gateway no longer lists the IP it has), else the
        IP it has -- so an unchanged configuration never plans a diff."""
        prior = current.get("egress_source_ip") if current else None
        if prior is None or not equal(String(), current.get("gateway"), planned.get("gateway")):
            return Unknown
        gateway = self._known_gateway(planned.get("gateway"))
        if gateway is not None and prior not in gateway.floating_ips:
            return Unknown
        return prior

    def _known_gateway(self, name) -> Optional[models.Gateway]:
        """The gateway `name` as planned in this run, else as the agent has it; None when neither knows it."""
        if not isinstance(name, str):
            return None
        planned, _ = self.provider.plan_view.snapshot()
        if name in planned["gateway"]:
            return planned["gateway"][name]
        if self.provider.endpoint is None:
            return None
        try:
            return self.provider.estate.snapshot(self.provider.client())[0].get(name)
        except errors.ApiError:
            return None

    def checked_values(self, ctx, planned: State) -> State:
        if ctx.config.get("egress_source_ip") is None and is_unknown(planned.get("egress_source_ip")):
            return {**planned, "egress_source_ip": None}  # to be allocated: the request carries none
        return planned

    def _parse(self, diags, planned: State):
        # At apply every configured value is known: an unknown source IP is one the agent allocates.
        if is_unknown(planned.get("egress_source_ip")):
            planned = {**planned, "egress_source_ip": None}
        return super()._parse(diags, planned)

    def waits_for(self, err) -> bool:
        # The policy names a gateway Terraform has not created yet (a literal name, no reference to order them):
        # it may be created alongside, so wait for it within the create/update timeout.
        return any(v.path == ("gateway",) and allocation.GATEWAY_MISSING in v.message for v in err.violations)

    def same_object(self, stored: models.Policy, model: models.Policy) -> bool:
        return allocation.unchanged(stored, model)

    # --- conversion ---
    @staticmethod
    def model_data(values: dict) -> dict[str, Any]:
        return {
            "name": values.get("name"),
            "egress": values.get("egress"),
            "destination_cidrs": values.get("destination_cidrs"),
            "egress_source_ip": values.get("egress_source_ip"),
            "gateway": values.get("gateway"),
            "excluded_cidrs": values.get("excluded_cidrs") or [],
            **({} if values.get("priority") is None else {"priority": values.get("priority")}),
        }

    @staticmethod
    def to_state(versioned) -> State:
        p: models.Policy = versioned.obj
        return {
            "id": p.name,
            "name": p.name,
            "egress": [
                {
                    "namespace_selector": _selector_to_state(rule.namespace_selector),
                    "pod_selector": _selector_to_state(rule.pod_selector),
                }
                for rule in p.egress
            ],
            "destination_cidrs": list(p.destination_cidrs),
            "egress_source_ip": p.egress_source_ip,
            "gateway": p.gateway,
            "excluded_cidrs": list(p.excluded_cidrs) or None,
            # The default as null, like an omitted attribute: an import of an object written without it plans empty.
            "priority": None if p.priority == DEFAULT_PRIORITY else p.priority,
            "resource_version": versioned.resource_version,
        }
