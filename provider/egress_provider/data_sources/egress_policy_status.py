"""`egress_policy_status`: whether a policy works now: its source IP's holder and its conditions."""

from __future__ import annotations

from typing import Optional

from tf.iface import Config, DataSource, ReadDataContext, State
from tf.schema import Attribute, Schema
from tf.types import String

from egress_api import errors
from egress_provider.data_sources import conditions
from egress_provider.framework.diagnostics import add_api_error


class EgressPolicyStatus(DataSource):
    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "policy_status"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="The observed state of an `egress_nat_policy`: the node its `egress_source_ip` leaves "
            "from and its conditions, e.g. for a `check` block that fails while a policy is not `Ready`.",
            attributes=[
                Attribute("name", String(), required=True, description="Name of the policy."),
                Attribute("id", String(), computed=True, description="The policy's name."),
                Attribute("egress_source_ip", String(), computed=True, description="The policy's source IP."),
                Attribute("holder", String(), computed=True,
                          description="The node holding `egress_source_ip`; `\"\"` when none (traffic is dropped)."),
                *conditions.attributes("the policy"),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> Optional[State]:
        name = config["name"]
        try:
            d = self.provider.client().describe_policy(name)
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"No egress_nat_policy named {name!r}",
                "The agent has no such policy. If it is created in this configuration, make the data source "
                "depend on it (reference egress_nat_policy.<name>.name), so it is read after the policy exists.",
                path=["name"],
            )
            return None
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"read the status of policy {name!r}", kind="policy",
                          name=name, endpoint=self.provider.client().target)
            return None
        return {"name": name, "id": name, "egress_source_ip": d.policy.obj.egress_source_ip, "holder": d.holder,
                **conditions.values(d.conditions)}
