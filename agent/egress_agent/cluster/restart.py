"""The restart marker: "this node's agent is restarting; it will be back within N seconds".

An agent stopping for a restart (SIGTERM: `systemctl restart`, an upgrade, a
config change) leaves its kernel as it is: floating IPs, SNAT, steering and
routes keep forwarding without it. Without a word to the cluster, its peers
would see the probes stop, judge it Down and move its IPs: a planned restart
would be an unplanned failover. So before it stops, the agent writes
`restarting/<name>`, held by an etcd lease of its own whose TTL is the
restart window. While that key exists the leader reports the node
Restarting and keeps its assignments (controller/assignment.py, rule 5).

The window bounds the promise without anyone having to act: if the agent is
not back in time, etcd expires the lease, the key goes, the node is Down and
its IPs fail over as after a crash. An agent that comes back registers again
(it is Up) and then deletes the key (`clear`).

What the marker cannot tell apart: a node that powers off right after its
agent stopped. The agent therefore leaves at once (no marker) when systemd
says the machine is shutting down (`system_stopping`), and on SIGINT.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time

from egress_agent.store.base import StoreError
from egress_agent.store.etcd import EtcdStore
from egress_agent.store.etcd_client import EtcdError, b64

log = logging.getLogger(__name__)

RESTARTING = "restarting"  # store kind of the markers


def announce(store: EtcdStore, node: str, window: int, version: str) -> bool:
    """Write this node's marker under a lease of `window` seconds. False (logged) when etcd did not take it."""
    client = store.client
    try:
        grant = client.call("lease/grant", {"TTL": str(window)}, timeout=1.0)
        lease = int(grant["ID"])
        store.put_leased(RESTARTING, node, {"window": window, "since": time.time(), "version": version}, lease)
    except (StoreError, EtcdError) as err:
        log.warning("could not tell the cluster that node %s is restarting (%s)", node, err)
        return False
    log.info("node %s: restarting; the cluster keeps its floating IPs for up to %ds", node, window)
    return True


def clear(store: EtcdStore, node: str) -> None:
    """Back (registered again): delete the marker, if any. A failure is harmless: the lease ends it."""
    try:
        store.client.call("kv/deleterange", {"key": b64(store.key(RESTARTING, node))}, timeout=1.0)
    except (StoreError, EtcdError) as err:
        log.info("restart marker of %s not deleted (%s); it expires with its window", node, err)


def system_stopping() -> bool:
    """Whether systemd is shutting the machine down (then a stopping agent will not be back soon)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        state = subprocess.run([systemctl, "is-system-running"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return state.strip() == "stopping"
