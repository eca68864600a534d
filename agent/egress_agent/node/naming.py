"""Pod keys, and the host veth name of pods wired without a CNI chain.

A pod created through a CNI chain carries its host-side interface in its
record (`Pod.interface`, from the main plugin's result). Pods wired directly
(the lab's `--direct` wiring, older tests) have no interface in their record:
their host veth is named `host_veth_name(namespace, name)`, as Calico derives
`cali<hash>` from the workload, so the agent still finds it by name.
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
