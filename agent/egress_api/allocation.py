"""Allocated source IPs: which floating IP a policy that names only its `gateway` leaves with.

Pure rules over the stored objects, used by the agent's write path
(`egress_agent.server.write_plan`), where the commit is a compare-and-swap on the
desired-state guard: two agents allocating at once cannot both commit the same
IP, the loser re-reads and picks again. The pick is deterministic (the lowest
free address), so a retry of the same write against the same store picks the
same IP.

A stored policy always has its concrete `egress_source_ip` (and the `gateway`
it came from): everything downstream (controller, datapath, precedence) reads
the IP and never allocates.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping, Optional

from egress_api.models import Gateway, Policy, Violation

_NAMED_USERS = 5  # policies named in an exhaustion error; the rest are counted
# In the violation of a write naming a gateway that does not exist: a client may wait for the gateway (the
# Terraform provider does, within the create/update timeout) and try again.
GATEWAY_MISSING = "does not exist, so no source IP can be allocated from it"


class NoSourceIP(Exception):
    """No IP can be allocated: the gateway does not exist, or all its floating IPs are in use.

    Nothing is written. `violation` is at the policy's `gateway` attribute.
    """

    def __init__(self, policy: str, violation: Violation, exhausted: bool):
        super().__init__(f"policy {policy!r}: {violation.message}")
        self.violation = violation
        self.exhausted = exhausted


def free_ips(gateway: Gateway, policies: Mapping[str, Policy], retained: Mapping[str, str] = {},
             but: str = "") -> list[str]:
    """`gateway`'s floating IPs that no policy (other than `but`) uses and none is retained for, lowest first."""
    used = {p.egress_source_ip for n, p in policies.items() if n != but}
    return sorted((ip for ip in gateway.floating_ips if ip not in used and ip not in retained),
                  key=ipaddress.ip_address)


def source_ip(policy: Policy, gateways: Mapping[str, Gateway], policies: Mapping[str, Policy],
              retained: Mapping[str, str] = {}) -> str:
    """The concrete source IP `policy` is stored with.

    Given: kept as is (the cross-object rules check it). Allocated: the IP the
    stored policy of that name already has while its gateway lists it (stable
    for the policy's life), else the lowest floating IP of the gateway that no
    other policy uses and that is not retained for one. `policies` are the
    stored ones (this policy's stored version included); `retained` the IPs
    kept for policies whose gateway let them go.
    """
    if policy.egress_source_ip is not None:
        return policy.egress_source_ip
    gw = gateways.get(policy.gateway)
    if gw is None:
        raise NoSourceIP(policy.name, Violation(("gateway",), (
            f"gateway {policy.gateway!r} {GATEWAY_MISSING}: create the "
            f"gateway first (in Terraform, `gateway = egress_gateway.NAME.name` makes Terraform create it before "
            f"the policy)")), exhausted=False)
    stored: Optional[Policy] = policies.get(policy.name)
    if stored is not None and stored.egress_source_ip in gw.floating_ips:
        return stored.egress_source_ip
    free = free_ips(gw, policies, retained, but=policy.name)
    if free:
        return free[0]
    raise NoSourceIP(policy.name, Violation(("gateway",), exhausted_message(gw, policies, but=policy.name)),
                     exhausted=True)


def exhausted_message(gw: Gateway, policies: Mapping[str, Policy], but: str = "") -> str:
    users = sorted(n for n, p in policies.items() if n != but and p.egress_source_ip in gw.floating_ips)
    named = ", ".join(repr(n) for n in users[:_NAMED_USERS])
    more = f" and {len(users) - _NAMED_USERS:,} more" if len(users) > _NAMED_USERS else ""
    count = len(gw.floating_ips)
    return (f"gateway {gw.name!r} has no free floating IP: 0 of its {count:,} floating IP{'s' * (count != 1)} "
            f"{'are' if count != 1 else 'is'} free (used by policies {named}{more}). Add floating IPs to the "
            "gateway, delete a policy using one, or name another gateway")


def unchanged(stored, requested) -> bool:
    """Whether writing `requested` over the stored object `stored` changes nothing: a policy to be allocated
    an IP from the gateway `stored` came from keeps that IP."""
    if isinstance(requested, Policy) and requested.egress_source_ip is None and isinstance(stored, Policy) \
            and stored.gateway == requested.gateway:
        requested = requested.model_copy(update={"egress_source_ip": stored.egress_source_ip})
    return stored == requested
