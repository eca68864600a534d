"""`egress_gateway`: the seed's AnthosNetworkGateway, a named set of floating IPs for egress."""

from __future__ import annotations

import functools
from typing import Any

from tf.iface import State
from tf.schema import Attribute, Schema
from tf.types import Number, String

from egress_api import models
from egress_provider.framework.types import CanonicalStringList
from egress_provider.resources.impact import add_impact_warning
from egress_provider.resources.lifecycle import AgentObjectResource, resource_version_attribute
from egress_provider.resources.selectors import selector_block, selector_to_state
from egress_provider.resources.timeouts import timeouts_block


class EgressGateway(AgentObjectResource):
    terraform_type = "egress_gateway"
    kind = "gateway"
    kind_plural = "gateways"

    @classmethod
    def get_name(cls) -> str:
        return "gateway"

    @classmethod
    @functools.cache  # asked per RPC (validate, upgrade, each plan's diagnostics locator); built once
    def get_schema(cls) -> Schema:
        return Schema(
            version=1,  # 1: floating_ips became a list (see upgrade)
            description=(
                "A named set of floating IPs for egress (the AnthosNetworkGateway of Anthos clusters on bare metal). "
                "The agent assigns each floating IP to one Up node whose uplink subnet contains it, workers before "
                "masters, nodes holding fewest floating IPs first, and moves it when that node goes down. "
                "`node_selector` and `max_ips_per_node` narrow which nodes may hold this gateway's IPs. "
                "Where each IP is held is shown by the `egress_gateway_status` data source."
            ),
            attributes=[
                Attribute("id", String(), computed=True, description="The gateway's name."),
                Attribute(
                    "name",
                    String(),
                    optional=True,
                    computed=True,
                    default="default",
                    requires_replace=True,
                    description="Name of the gateway: 1-63 lower-case letters, digits or `-`. Default `default`. "
                    "Changing it replaces the gateway.",
                ),
                Attribute(
                    "floating_ips",
                    CanonicalStringList(models.parse_ipv4),
                    required=True,
                    description="IPv4 addresses (at least one) the agent assigns to nodes as egress source "
                    "addresses. Each must be in the subnet of some node's uplink and belong to no other gateway. "
                    "Two or more per L2 domain survive a node failure. Updated in place. A plan that adds an IP "
                    "a policy already uses (its traffic dropped until then) shows which pods start leaving with it "
                    "in an `Egress impact` warning. A list used as a set: each IP at most once, order and spelling "
                    "never change anything on the agent (it stores them sorted); reordering plans an in-place "
                    "update that only rewrites state.",
                ),
                Attribute(
                    "max_ips_per_node",
                    Number(),
                    optional=True,
                    description="At most this many of this gateway's floating IPs on one node (a whole number, "
                    "at least 1); other gateways' IPs do not count. Unset: no cap. An IP no selected node can "
                    "take under the cap stays unassigned, with a reason naming the cap. Updated in place.",
                ),
                resource_version_attribute(),
            ],
            block_types=[
                # Nodes carry labels from egress-agent --node-label; the same block as a policy's selectors.
                selector_block("node_selector", "nodes", '{ "egress.example.com/gateway" = "true" }'),
                timeouts_block(),
            ],
        )

    def upgrade(self, ctx, version: int, old: State) -> State:
        # Version 0 had floating_ips as a set; a set and a list are the same JSON array in state.
        return old

    # A policy whose source IP no gateway lists is dropped (fail-closed); a gateway change that lists it
    # makes its pods leave with it. The plan shows which pods that moves.
    def plan_notes(self, diags, model: models.Gateway) -> None:
        add_impact_warning(diags, self.provider.client().gateway_impact(model),
                           what=f"The policies whose source IP gateway {model.name!r} adds select",
                           path=["floating_ips"])

    # --- conversion ---
    @staticmethod
    def model_data(values: dict) -> dict[str, Any]:
        return {"name": values.get("name"), "floating_ips": values.get("floating_ips"),
                "node_selector": values.get("node_selector"), "max_ips_per_node": values.get("max_ips_per_node")}

    @staticmethod
    def to_state(versioned) -> State:
        gw: models.Gateway = versioned.obj
        return {
            "id": gw.name,
            "name": gw.name,
            "floating_ips": list(gw.floating_ips),
            "node_selector": selector_to_state(gw.node_selector),
            "max_ips_per_node": gw.max_ips_per_node,
            "resource_version": versioned.resource_version,
        }
