"""A process running one node's cluster machinery (no API server), for kill -9 tests.

    python cluster_member.py NAME PROBE_ADDR ENDPOINT[,ENDPOINT...] [PREFIX]

Prints one JSON line per fact: {"registered": lease}, {"leader": true|false},
{"held": ip, "yes": bool}. Runs until killed.
"""

import json
import sys
import threading

from egress_agent.cluster.runtime import Cluster, ClusterOptions
from egress_agent.store.etcd import EtcdStore


def say(**kv):
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


def main():
    name, probe, endpoints = sys.argv[1:4]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "/egress"
    store = EtcdStore(endpoints.split(","), prefix)
    node = {"name": name, "role": "worker", "node_ip": "192.0.2.11/24", "api_address": probe}
    cluster = Cluster(store, node, ClusterOptions(probe_address=probe))
    cluster.election.on_change = lambda leading: (say(leader=leading), cluster.nodes.changed())
    cluster.start()
    cluster.fencing.subscribe(lambda ip, held, why: say(held=ip, yes=held))
    say(registered=cluster.membership.lease_id)
    threading.Event().wait()


if __name__ == "__main__":
    main()
