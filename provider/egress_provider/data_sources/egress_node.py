"""`egress_node`: one node's role, state and the floating IPs it holds (the seed's anthosnetworkgatewaynode)."""

from __future__ import annotations

from typing import Optional

from tf.iface import Config, DataSource, ReadDataContext, State
from tf.schema import Attribute, Schema
from tf.types import List, Map, String

from egress_api import errors
from egress_provider.framework.diagnostics import add_api_error


class EgressNode(DataSource):
    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "node"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="One node as the egress agents see it, and the floating IPs it holds.",
            attributes=[
                Attribute("name", String(), required=True, description="Node name (egress-agent `--node`)."),
                Attribute("id", String(), computed=True, description="The node's name."),
                Attribute("role", String(), computed=True, description="`worker` or `master`."),
                Attribute("state", String(), computed=True,
                          description="`Up`, `Restarting` (its agent is restarting within its window) or `Down`."),
                Attribute(
                    "node_ip", String(), computed=True, description="Uplink IPv4 address with prefix, e.g. `192.0.2.11/24`."
                ),
                Attribute(
                    "labels",
                    Map(String()),
                    computed=True,
                    description="The node's labels (egress-agent `--node-label`, or `node_labels` in its `--config` "
                    "file, applied live on SIGHUP), which gateways' `node_selector` matches.",
                ),
                Attribute(
                    "service_cidrs",
                    List(String()),
                    computed=True,
                    description="The cluster service CIDRs this node's agent was given (egress-agent "
                    "`--service-cidr`): never steered by any policy, on any node.",
                ),
                Attribute(
                    "floating_ips",
                    List(String()),
                    computed=True,
                    description="Floating IPs this node holds, in address order.",
                ),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> Optional[State]:
        name = config["name"]
        try:
            node = self.provider.client().get_node(name)
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"No egress node named {name!r}",
                "No agent has registered a node by that name (egress-agent --node NAME).",
                path=["name"],
            )
            return None
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"read node {name!r}", kind="node", name=name,
                          endpoint=self.provider.client().target)
            return None
        return {
            "name": name,
            "id": name,
            "role": node.role,
            "state": node.state,
            "node_ip": node.node_ip,
            "floating_ips": list(node.floating_ips),
            "labels": dict(node.labels),
            "service_cidrs": list(node.service_cidrs),
        }
