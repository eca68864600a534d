"""`egress_gateway_status`: where a gateway's floating IPs are held (the seed's status block)."""

from __future__ import annotations

from typing import Optional

from tf.iface import Config, DataSource, ReadDataContext, State
from tf.schema import Attribute, Schema
from tf.types import Map, String

from egress_api import errors
from egress_provider.data_sources import conditions
from egress_provider.framework.diagnostics import add_api_error


class EgressGatewayStatus(DataSource):
    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "gateway_status"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="The observed state of an `egress_gateway`: which nodes take part and which node holds "
            "each floating IP (the `status` of an AnthosNetworkGateway).",
            attributes=[
                Attribute(
                    "name",
                    String(),
                    optional=True,
                    description="Name of the gateway. Default `default`.",
                ),
                Attribute("id", String(), computed=True, description="The gateway's name."),
                Attribute(
                    "nodes",
                    Map(String()),
                    computed=True,
                    description="Node name to `Up`, `Restarting` (its agent is restarting within its window: it keeps its IPs) or `Down`, for every node that can hold a floating IP.",
                ),
                Attribute(
                    "floating_ips",
                    Map(String()),
                    computed=True,
                    description="Floating IP to the name of the node holding it; `\"\"` when no node can take it.",
                ),
                Attribute(
                    "unassigned_reasons",
                    Map(String()),
                    computed=True,
                    description="For each floating IP no node holds, why (e.g. no Up node in its subnet).",
                ),
                *conditions.attributes("the gateway"),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> Optional[State]:
        name = config.get("name") or "default"
        try:
            st = self.provider.client().gateway_status(name)
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"No egress_gateway named {name!r}",
                "The agent has no such gateway. If it is created in this configuration, make the data source "
                "depend on it (reference egress_gateway.<name>.name), so it is read after the gateway exists.",
                path=["name"],
            )
            return None
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"read the status of gateway {name!r}", kind="gateway",
                          name=name, endpoint=self.provider.client().target)
            return None
        return {
            "name": config.get("name"),
            "id": name,
            "nodes": dict(st.nodes),
            "floating_ips": dict(st.floating_ips),
            "unassigned_reasons": dict(st.unassigned_reasons),
            **conditions.values(st.conditions),
        }
