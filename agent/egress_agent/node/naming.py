"""How the agent finds a pod's interface: its host-side veth name is derived from the pod key.

The CNI plugin (in the lab: `egress-lab pod add`) names the host side of a
pod's veth `host_veth_name(namespace, name)`, as Calico derives `cali<hash>`
from the workload. The Pod record then needs no interface field, and the
agent on the pod's node finds the veth by name with no extra lookup.
"""

from __future__ import annotations

import hashlib

VETH_PREFIX = "egv"
IFNAMSIZ = 15  # usable characters of a Linux interface name


def pod_key(namespace: str, name: str) -> str:
    """The store name of a pod record: 'namespace/name'."""
    return f"{namespace}/{name}"


def host_veth_name(namespace: str, name: str) -> str:
    """'egv' + 12 hex digits of sha1('namespace/name'): stable, unique in practice, fits IFNAMSIZ."""
    digest = hashlib.sha1(pod_key(namespace, name).encode()).hexdigest()
    return (VETH_PREFIX + digest)[:IFNAMSIZ]
