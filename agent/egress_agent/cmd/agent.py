"""`egress-agent`: the node daemon (API server, store, controller).

    egress-agent --node NAME --role worker|master --node-ip 192.0.2.11/24 --socket PATH
                 --store sqlite:PATH [--interface IF] [--config FILE] [--listen HOST:PORT] [--datapath off]

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
    p.add_argument("--store", help="where desired state lives: sqlite:PATH")
    p.add_argument("--datapath", help="kernel datapath: off (the only choice for now)")
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


def run(conf: cfg.AgentConfig, log: logging.Logger) -> int:
    # Heavy imports only after the flags are known good, so `--help` and bad flags are instant.
    from egress_agent.controller.nodes import Standalone, standalone_nodes
    from egress_agent.controller.reconcile import Controller
    from egress_agent.server.serve import ApiServer
    from egress_agent.server.servicer import EgressServicer
    from egress_agent.store import base

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    try:
        store = cfg.open_store(conf.store)
    except base.StoreError as err:
        log.error("cannot open store: %s", err)
        return 1
    node = conf.node
    # Registering our NODE record is how the rest of the cluster (and status) learns we exist.
    store.commit([base.Put(base.NODE, node.name, {**node.model_dump(mode="json"), "state": "Up"})])
    nodes = standalone_nodes(node)
    leadership = Standalone()
    servicer = EgressServicer(store, node.name, nodes, leadership, version=_version())
    try:
        server = ApiServer(servicer, conf.targets)
        server.start()
    except (OSError, RuntimeError) as err:
        log.error("cannot serve the API: %s", err)
        store.close()
        return 1
    controller = Controller(store, nodes, leadership)
    controller.start()
    log.info("egress-agent %s up: node %s (%s, %s), store %s", _version(), node.name, node.role, node.node_ip, store.url)

    stopping.wait()
    log.info("shutting down")
    server.stop()
    controller.stop()
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
