"""`egress_effective_ip`: which source IP pod NAMESPACE/NAME leaves with to DESTINATION (a dry run of egress)."""

from __future__ import annotations

from typing import Optional

from tf.iface import Config, DataSource, ReadDataContext, State
from tf.schema import Attribute, Schema
from tf.types import Bool, String

from egress_api import errors
from egress_provider.framework.diagnostics import add_api_error


class EgressEffectiveIP(DataSource):
    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "effective_ip"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="Which source IP a pod's traffic to a destination leaves the cluster with, as the agents "
            "would send it now: the floating IP of the policy that applies (among those selecting the pod and covering "
            "the destination, outside their `excluded_cidrs`: lowest `priority`, then longest matching destination "
            "CIDR, then policy name), the pod's own IP for a cluster-internal destination (pod CIDRs, service CIDRs, "
            "node subnets), or the pod's node IP when no policy applies. A policy whose source IP no node "
            "holds drops the traffic (`dropped = true`), never leaks it with the node IP.",
            attributes=[
                Attribute("namespace", String(), required=True, description="The pod's namespace."),
                Attribute("pod", String(), required=True, description="The pod's name."),
                Attribute("destination", String(), required=True, description="An IPv4 destination address, e.g. `198.51.100.10`."),
                Attribute("id", String(), computed=True, description="`namespace/pod->destination`."),
                Attribute(
                    "source_ip", String(), computed=True,
                    description="The source address the destination sees; `\"\"` when the traffic is dropped.",
                ),
                Attribute("policy", String(), computed=True, description="The `egress_nat_policy` that applies; `\"\"` when none."),
                Attribute(
                    "holder", String(), computed=True,
                    description="The node the traffic leaves from: the node holding the policy's source IP, or the "
                    "pod's own node when no policy applies.",
                ),
                Attribute(
                    "dropped", Bool(), computed=True,
                    description="A policy applies but no node holds its source IP, so the traffic is dropped.",
                ),
                Attribute("node", String(), computed=True, description="The node the pod runs on."),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> Optional[State]:
        ns, pod, dst = config["namespace"], config["pod"], config["destination"]
        try:
            e = self.provider.client().effective_ip(ns, pod, dst)
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"No pod {ns}/{pod}",
                "The agent's pod inventory has no such pod (`egressctl` or the CNI plugin registers pods).",
                path=["pod"],
            )
            return None
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"ask which source IP {ns}/{pod} leaves with to {dst}",
                          kind="egress_effective_ip", name=f"{ns}/{pod}", endpoint=self.provider.endpoint)
            return None
        return {
            "namespace": ns,
            "pod": pod,
            "destination": dst,
            "id": f"{ns}/{pod}->{dst}",
            "source_ip": e.source_ip,
            "policy": e.policy,
            "holder": e.holder,
            "dropped": e.dropped,
            "node": e.node,
        }
