"""The seed's objects (with documentation addresses), shared by the agent tests."""

from __future__ import annotations

from egress_api import models

GW = models.Gateway(name="default", floating_ips=["192.0.2.100", "192.0.2.101", "192.0.2.102"])


def policy(name="egress", source="192.0.2.100", cidrs=("198.51.100.0/24",), egress=None) -> models.Policy:
    """The seed's EgressNATPolicy: role=frontend pods in alice's namespaces, and all of paul's."""
    return models.Policy.model_validate(
        {
            "name": name,
            "egress": egress
            if egress is not None
            else [
                {"namespace_selector": {"match_labels": {"user": "alice"}}, "pod_selector": {"match_labels": {"role": "frontend"}}},
                {"namespace_selector": {"match_labels": {"user": "paul"}}},
            ],
            "destination_cidrs": list(cidrs),
            "egress_source_ip": source,
        }
    )
