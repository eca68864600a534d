"""`egress-agent`: the node daemon (API server, store, controller).

    egress-agent --node NAME --role worker|master --node-ip 192.0.2.11/24 --socket PATH
                 --store sqlite:PATH [--interface IF] [--config FILE] [--listen HOST:PORT] [--datapath off]
    egress-agent ... --listen HOST:PORT --store etcd:http://HOST:PORT[,http://HOST2:PORT2] [--etcd-prefix /egress] [--lease-ttl S]
                 [--probe-interval S] [--probe-misses N]

Exit status 2 on bad configuration (with a message naming the flag), 1 when
the agent cannot start (e.g. its socket is taken), 0 after a clean shutdown
on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from egress_agent import config as cfg
from egress_agent.cluster.detector import DEFAULT_INTERVAL, DEFAULT_MISSES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="egress-agent",
        description="egress node agent: serves the egress.v1 API, stores desired state, assigns floating IPs.",
    )
    p.add_argument("--node", help="this node's name (e.g. worker1)")
    p.add_argument("--role", choices=["worker", "master"], help="node role (default worker)")
    p.add_argument("--node-ip", dest="node_ip", help="uplink IPv4 address with prefix, e.g. 192.0.2.11/24")
    p.add_argument("--interface", help="uplink interface (e.g. eth0)")
    p.add_argument("--pod-cidr", dest="pod_cidr", help="this node's pod CIDR, e.g. 10.244.1.0/24")
    p.add_argument("--socket", help="unix socket path for the API (created with mode 0600)")
    p.add_argument("--listen", help="also serve the API on HOST:PORT (plaintext; keep it on 127.0.0.1)")
    p.add_argument("--store", help="where desired state lives: sqlite:PATH, or etcd:http://HOST:PORT[,...] for a cluster")
    p.add_argument("--etcd-prefix", dest="etcd_prefix", help="etcd key prefix (default /egress)")
    p.add_argument("--lease-ttl", dest="lease_ttl", help="etcd membership lease TTL in seconds (default 2)")
    p.add_argument("--probe-interval", dest="probe_interval", metavar="S",
                   help=f"seconds between UDP liveness probes to each peer (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--probe-misses", dest="probe_misses", metavar="N",
                   help=f"unanswered probes before a peer is Down (default {DEFAULT_MISSES}); "
                   "failover detection takes about interval x misses")
    p.add_argument("--etcd-ca", dest="etcd_ca", help="CA file to verify etcd's certificate (https endpoints)")
    p.add_argument("--etcd-cert", dest="etcd_cert", help="client certificate for etcd")
    p.add_argument("--etcd-key", dest="etcd_key", help="client key for etcd")
    p.add_argument("--datapath", help="off (default) or kernel: program this node's eBPF steering, SNAT and floating IPs")
    p.add_argument("--cleanup", action="store_true",
                   help="remove everything the kernel datapath installed in this network namespace, then exit "
                   "(needs --interface; --node-ip defaults to the interface's address)")
    p.add_argument("--config", help="YAML file with the same settings (keys: node, role, node_ip, ...)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("egress")
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cleanup:
        return _cleanup(parser, args)
    flags = {k: getattr(args, k) for k in cfg.KEYS if k != "node_ip"} | {"node_ip": args.node_ip}
    try:
        conf = cfg.build(flags, args.config)
    except cfg.ConfigError as err:
        parser.print_usage(sys.stderr)
        print(f"egress-agent: error: {err}", file=sys.stderr)
        return 2

    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("egress-agent")
    return run(conf, log)


def _cleanup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = cfg.load_file(args.config) if args.config else {}
    uplink = args.interface or settings.get("interface")
    if not uplink:
        parser.print_usage(sys.stderr)
        print("egress-agent: error: --cleanup needs --interface (the uplink, e.g. eth0)", file=sys.stderr)
        return 2
    from egress_agent.node.service import cleanup

    try:
        done = cleanup(uplink, args.node_ip or settings.get("node_ip") or "")
    except (ValueError, RuntimeError) as err:
        print(f"egress-agent: error: {err}", file=sys.stderr)
        return 1
    detached = ", ".join(done["detached"]) or "none"
    print(f"removed the egress datapath: nftables table inet egress, policy routes, floating IPs on {uplink}, "
          f"steering filters (detached from: {detached})")
    return 0


def run(conf: cfg.AgentConfig, log: logging.Logger) -> int:
    # Heavy imports only after the flags are known good, so `--help` and bad flags are instant.
    from egress_agent.controller.nodes import Standalone, standalone_nodes
    from egress_agent.controller.reconcile import Controller
    from egress_agent.server.serve import ApiServer
    from egress_agent.server.servicer import EgressServicer
    from egress_agent.store import base

    stopping = threading.Event()
    cluster = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stopping.set(), cluster and cluster.membership.abort()))

    try:
        store = cfg.open_store(conf.store, conf.etcd_prefix, conf.etcd_tls)
    except base.StoreError as err:
        log.error("cannot open store: %s", err)
        return 1
    node = conf.node
    if conf.store.startswith("etcd:"):
        # A cluster: etcd leases say who is alive, an etcd election who leads (egress_agent.cluster).
        from egress_agent.cluster.runtime import Cluster, ClusterOptions

        cluster = Cluster(store, node.model_dump(mode="json"), ClusterOptions(
            lease_ttl=conf.lease_ttl, probe_interval=conf.probe_interval, probe_misses=conf.probe_misses))
        log.info("cluster: lease TTL %ss; probes every %gs, a peer is Down after %d misses (%.0f ms)",
                 conf.lease_ttl, conf.probe_interval, conf.probe_misses, 1000 * conf.probe_interval * conf.probe_misses)
        try:
            cluster.start()  # retries with backoff until etcd answers, saying why
        except base.Unavailable as err:
            log.error("stopped before joining the cluster: %s", err)
            cluster.stop()
            store.close()
            return 1
        nodes, leadership = cluster.nodes.published, cluster
    else:
        # Registering our NODE record is how the rest of the cluster (and status) learns we exist.
        store.commit([base.Put(base.NODE, node.name, {**node.model_dump(mode="json"), "state": "Up"})])
        nodes = standalone_nodes(node)
        leadership = Standalone()
    # The kernel datapath (egress_agent.node) is programmed before the API answers, so a healthy agent
    # is a programmed node; UpsertPod waits for the pod's node to program the pod (no leak at pod start).
    from egress_agent.node import status as dp_status

    node_datapath = None
    try:
        if conf.datapath == "kernel":
            from egress_agent.node.service import NodeDatapath

            node_datapath = NodeDatapath(store, node, node.interface)
            node_datapath.start(cluster.fencing if cluster is not None else None)
        else:
            dp_status.forget(store, node.name)  # nobody waits for a node without a datapath
        pod_waiter = dp_status.ProgrammedWaiter(store)
        pod_waiter.start()
    except (ValueError, RuntimeError, OSError, base.StoreError) as err:
        log.error("cannot start the datapath: %s", err)
        store.close()
        return 1
    counters = dp_status.ClusterCounters(store, node.name, node_datapath.counters if node_datapath else None)
    servicer = EgressServicer(
        store, node.name, nodes, leadership, version=_version(), counters=counters, pod_programmed=pod_waiter.wait
    )
    try:
        server = ApiServer(servicer, conf.targets)
        server.start()
    except (OSError, RuntimeError) as err:
        log.error("cannot serve the API: %s", err)
        store.close()
        return 1
    if cluster is not None:
        # The leader assigns from its own, fresher node view and writes behind its election guard.
        controller = Controller(store, cluster.nodes.decided, leadership, guard=cluster.guard)
        cluster.nodes.on_change = controller.trigger
    else:
        controller = Controller(store, nodes, leadership)
    controller.start()
    log.info("egress-agent %s up: node %s (%s, %s), store %s", _version(), node.name, node.role, node.node_ip, store.url)

    stopping.wait()
    log.info("shutting down")
    server.stop()
    controller.stop()
    pod_waiter.stop()
    if node_datapath is not None:
        node_datapath.stop()  # releases floating IPs (before the lease goes); steering stays: fail static
    if cluster is not None:
        cluster.stop()  # resigns and revokes the lease: the others see us Down at once
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
