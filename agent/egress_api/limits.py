"""Input limits of the egress API: every bound on what a client may send or make the agent hold.

One module, so the models, the agent's writes and list RPCs, the gRPC
transport and the documentation (docs/limits.md) agree. Each limit is far above
what a valid Terraform configuration of reasonable size reaches (the benches
store 5,000 CIDRs in one policy and 1,000 policies) and far below what made
the agent slow: a 600,000-CIDR policy once made every later write take 11 s,
because each write validates against every stored object.

A request over a per-object limit is INVALID_ARGUMENT (a violation with the
attribute path, from `egress_api.models`); a write that would push the cluster
over a total, a list longer than MAX_LIST_ITEMS, or a message over its size is
RESOURCE_EXHAUSTED. Every message names the limit.
"""

from __future__ import annotations

# --- gRPC messages ---------------------------------------------------------------------------------------
#: Largest request an agent accepts (and a client sends). A policy at MAX_DESTINATION_CIDRS takes ~200 KiB.
MAX_REQUEST_BYTES = 1024 * 1024
#: Largest response an agent sends (and a client accepts): a list at the cluster totals below fits in it.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: HTTP/2 streams (concurrent RPCs) one client connection may have open; more wait in the client for a slot.
MAX_STREAMS_PER_CONNECTION = 64
#: RPCs an agent handles at once over all connections; more are refused with RESOURCE_EXHAUSTED.
MAX_CONCURRENT_RPCS = 512

# --- one object (INVALID_ARGUMENT, checked by egress_api.models) --------------------------------------------
MAX_FLOATING_IPS = 1024  # per gateway (a /22)
MAX_DESTINATION_CIDRS = 10_000  # per policy
MAX_EGRESS_RULES = 64  # per policy
MAX_EXCLUDED_CIDRS = 1_000  # excluded_cidrs per policy
MAX_PRIORITY = 65_535  # a policy's priority is 0..MAX_PRIORITY (lower wins)
MAX_SELECTOR_LABELS = 64  # match_labels entries per selector
MAX_OBJECT_LABELS = 256  # labels per pod or namespace (from Kubernetes)

# --- the cluster (RESOURCE_EXHAUSTED, checked by the agent's writes) ----------------------------------------
MAX_GATEWAYS = 1_000
MAX_POLICIES = 10_000
MAX_TOTAL_FLOATING_IPS = 10_000  # over all gateways
MAX_TOTAL_DESTINATION_CIDRS = 200_000  # over all policies

# --- reads (RESOURCE_EXHAUSTED) -----------------------------------------------------------------------------
#: Objects in one list response (ListPods, ListNamespaces, ListNodes, ListEvents, ...). Gateways and policies
#: never reach it (the totals above are lower).
MAX_LIST_ITEMS = 100_000


class LimitExceeded(Exception):
    """A write or read would go over a limit of this module (-> RESOURCE_EXHAUSTED; nothing is written)."""

    def __init__(self, limit: str, value: int, message: str):
        self.limit = limit
        self.value = value
        super().__init__(f"{message} (limit {limit} = {value:,}; see docs/limits.md)")


def check_list(what: str, count: int) -> None:
    """Refuse a list response of more than MAX_LIST_ITEMS objects."""
    if count > MAX_LIST_ITEMS:
        raise LimitExceeded(
            "MAX_LIST_ITEMS", MAX_LIST_ITEMS, f"{count:,} {what} are more than one list response may carry"
        )
