"""The `Egress impact` plan warning: which pods' source IP a planned change moves (a reviewer reads it in the plan).

The agent computes the impact (GetPolicyImpact, GetGatewayImpact) from its
pod inventory and the datapath's rules, writing nothing; this module only
words it, the same for both resources.
"""

from __future__ import annotations

from tf.utils import Diagnostics

ASK_MORE = "Ask for any pod and destination with the egress_effective_ip data source."


def add_impact_warning(diags: Diagnostics, impact, *, what: str, path: list) -> None:
    """A warning listing `impact`'s source changes (a PolicyImpact message); nothing when no pod changes.

    `what` says whose change it is and which pods it concerns, e.g. "Policy 'egress' selects".
    """
    if not impact.changed_pods:
        return
    lines = [f"  {c.pod} to {c.destination}: {c.before or 'dropped'} -> {c.after or 'dropped'}" for c in impact.changes]
    if impact.changed_pods > len({c.pod for c in impact.changes}):
        lines.append(f"  ... and more: {impact.changed_pods} pods in all")
    sample = ", ".join(impact.sample)
    diags.add_warning(
        f"Egress impact: {impact.changed_pods} pod(s) change source IP",
        f"{what} {impact.selected_pods} pod(s) ({sample}). Applying this changes the source IP their traffic "
        f"leaves with (now -> once applied):\n" + "\n".join(lines) + f"\n\n{ASK_MORE}",
        path=path,
    )
