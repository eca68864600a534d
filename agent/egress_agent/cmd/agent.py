"""`egress-agent`: the node daemon (API server, store, controller).

    egress-agent --node NAME --role worker|master --node-ip 192.0.2.11/24 --socket PATH
                 --store sqlite:PATH [--interface IF] [--config FILE] [--listen HOST:PORT] [--datapath off]
    egress-agent ... --listen HOST:PORT --store etcd:http://HOST:PORT[,http://HOST2:PORT2] [--etcd-prefix /egress] [--lease-ttl S] [--lease-keepalive S]
                 [--probe-interval S] [--probe-misses N] [--cluster-key-file PATH]
    egress-agent ... --kubernetes [--kubeconfig PATH] [--kube-label-wait S] [--node-labels-from-kubernetes]
    egress-agent ... --metrics-listen HOST:PORT

Exit status 2 on bad configuration (with a message naming the flag), 1 when
the agent cannot start (e.g. its socket is taken), 0 after a clean shutdown
on SIGTERM/SIGINT. SIGTERM is a restart: the kernel keeps forwarding and the
cluster keeps the node's floating IPs for --restart-window seconds; SIGINT
(or --restart-window 0, or a machine shutting down) leaves: the node
releases its floating IPs and the others take them at once. SIGHUP (`systemctl reload`) re-reads the --config file and
applies its node_labels live (merged under the --node-label flags); other changed
settings are named in a log line and wait for a restart. SIGUSR1 writes every
thread's stack to the log (stderr) and the agent goes on: what to send an agent
that seems stuck.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from typing import Callable

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
    p.add_argument("--node-label", dest="node_labels", action="append", metavar="KEY=VALUE",
                   help="a label of this node (repeatable; Kubernetes label syntax) that gateways' node_selector "
                   "matches; wins over the --config file's node_labels for its key. Relabel live by editing "
                   "node_labels in --config and sending SIGHUP (its floating IPs move away once if they no "
                   "longer match)")
    p.add_argument("--pod-cidr", dest="pod_cidr", help="this node's pod CIDR, e.g. 10.244.1.0/24")
    p.add_argument("--service-cidr", dest="service_cidr", metavar="CIDR[,CIDR...]",
                   help="the cluster's service CIDR(s), e.g. 10.96.0.0/12: never steered by any policy (every node "
                   "excludes every node's)")
    p.add_argument("--socket", help="unix socket path for the API (created with mode 0600)")
    p.add_argument("--listen", help="also serve the API on HOST:PORT (plaintext; keep it on 127.0.0.1)")
    p.add_argument("--store", help="where desired state lives: sqlite:PATH, or etcd:http://HOST:PORT[,...] for a cluster")
    p.add_argument("--etcd-prefix", dest="etcd_prefix", help="etcd key prefix (default /egress)")
    p.add_argument("--lease-ttl", dest="lease_ttl", help="etcd membership lease TTL in seconds (default 2)")
    p.add_argument("--lease-keepalive", dest="lease_keepalive", metavar="S",
                   help="seconds between keepalives of the membership lease (default 0.5; below --lease-ttl)")
    p.add_argument("--probe-interval", dest="probe_interval", metavar="S",
                   help=f"seconds between UDP liveness probes to each peer (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--probe-misses", dest="probe_misses", metavar="N",
                   help=f"unanswered probes before a peer is Down (default {DEFAULT_MISSES}); "
                   "failover detection takes about interval x misses")
    p.add_argument("--cluster-key-file", dest="cluster_key_file", metavar="PATH",
                   help="key (32+ bytes, not readable by other users) that authenticates the UDP liveness probes; "
                   "default: a random key the first agent creates in etcd (then protect etcd: whoever reads it can "
                   "forge probes). Re-read when it changes: replace it on every node within 5 minutes")
    p.add_argument("--etcd-ca", dest="etcd_ca", help="CA file to verify etcd's certificate (https endpoints)")
    p.add_argument("--etcd-cert", dest="etcd_cert", help="client certificate for etcd")
    p.add_argument("--etcd-key", dest="etcd_key", help="client key for etcd")
    p.add_argument("--datapath", help="off (default) or kernel: program this node's eBPF steering, SNAT and floating IPs")
    p.add_argument("--garp-repeats", dest="garp_repeats", metavar="N",
                   help="with --datapath kernel: gratuitous ARPs sent again after the first at a takeover (default 3)")
    p.add_argument("--garp-interval", dest="garp_interval", metavar="S",
                   help="seconds between those repeats (default 1; a Linux neighbour ignores updates for 1 s "
                   "after its entry changed)")
    p.add_argument("--restart-window", dest="restart_window", metavar="S",
                   help="on SIGTERM (a restart or upgrade) the kernel keeps forwarding and the cluster keeps this "
                   "node's floating IPs for up to S seconds until the agent is back (default 30); 0, SIGINT or a "
                   "machine shutting down: release them at once. Also how long this agent, as leader, holds the "
                   "IPs of a peer whose agent crashed while its node is alive (see docs/systemd.md)")
    p.add_argument("--kubernetes", action="store_true", default=None,
                   help="watch the Kubernetes API: every Namespace and this node's Pods (spec.nodeName=--node) give "
                   "pods their labels; pods that ran before the agent are adopted from status.podIP")
    p.add_argument("--node-labels-from-kubernetes", dest="node_labels_from_kubernetes", action="store_true",
                   default=None,
                   help="with --kubernetes: this node's Node object (metadata.name=--node, watched) gives it its "
                   "labels, live; --node-label and the --config file's node_labels win for their keys")
    p.add_argument("--kubeconfig", help="with --kubernetes: kubeconfig file (default: the in-cluster service account)")
    p.add_argument("--kube-label-wait", dest="kube_label_wait", metavar="S",
                   help="with --kubernetes: seconds a CNI ADD waits for its pod to arrive from the Kubernetes API "
                   "before it fails (default 10)")
    p.add_argument("--metrics-listen", dest="metrics_listen", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default; see docs/metrics.md)")
    p.add_argument("--tls-cert", dest="tls_cert", help="the TCP listener's TLS certificate (PEM; reloaded when the file changes)")
    p.add_argument("--tls-key", dest="tls_key", help="its private key (PEM)")
    p.add_argument("--tls-client-ca", dest="tls_client_ca",
                   help="require client certificates signed by this CA (mutual TLS); the role comes from the "
                   "certificate's spiffe://egress/role/ROLE URI (see docs/security.md)")
    p.add_argument("--insecure-listen", dest="insecure_listen", action="store_true", default=None,
                   help="allow --listen off loopback without mutual TLS (every caller is admin: trusted networks only)")
    p.add_argument("--socket-roles", dest="socket_roles", metavar="WHO=ROLE,...",
                   help="roles of local callers on --socket by uid/user or @gid/@group (root and the agent's own "
                   "user are admin; e.g. 1000=viewer,@egress-cni=inventory)")
    p.add_argument("--inventory-socket", dest="inventory_socket", metavar="PATH",
                   help="the CNI plugin's unix socket (mode 0600): this node's pods as JSON over HTTP "
                   "(put, get, delete; the inventory role's pod calls and nothing else, even for root)")
    p.add_argument("--audit-log", dest="audit_log", metavar="PATH",
                   help="append one JSON line per write (who, role, method, object, outcome) to PATH, or - for stderr")
    p.add_argument("--cleanup", action="store_true",
                   help="remove everything the kernel datapath installed in this network namespace, then exit "
                   "(needs --interface; --node-ip defaults to the interface's address)")
    p.add_argument("--config", help="YAML file with the same settings (keys: node, role, node_ip, ...)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="text (default) or json: one object per line (time, level, logger, message, fields)")
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("egress")
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    # SIGHUP's default action ends the process: a `systemctl reload` during start (the unit is active from
    # exec, Type=exec) must not kill the agent before run() installs the reload.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
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

    from egress_agent.cmd import logs

    logs.setup(args.log_level, args.log_format)
    log = logging.getLogger("egress-agent")
    return run(conf, log, lambda: _reread(flags, args.config))


def _reread(flags: dict, config_file: str | None) -> cfg.AgentConfig | None:
    """SIGHUP: the settings from the same flags and the --config file as it is now (None without a file)."""
    return cfg.build(flags, config_file) if config_file else None


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


def run(conf: cfg.AgentConfig, log: logging.Logger,
        reread: Callable[[], cfg.AgentConfig | None] = lambda: None) -> int:
    # Heavy imports only after the flags are known good, so `--help` and bad flags are instant.
    from egress_agent.agent import Agent, StartError

    _tune_gc()

    if conf.metrics_listen:
        import prometheus_client

        # No `<name>_created` series next to every counter: Prometheus would store each as a gauge of its own.
        prometheus_client.disable_created_metrics()
    stopping = threading.Event()
    leaving = threading.Event()
    agent = Agent(conf, version=_version())

    def stop() -> None:
        stopping.set()
        agent.abort_start()

    def leave() -> None:
        leaving.set()
        stop()

    _on_signals({signal.SIGTERM: stop, signal.SIGINT: leave,
                 signal.SIGHUP: _coalesced("reload", lambda: _reload(agent, reread, log))})
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        agent.start()
    except StartError as err:
        log.error("%s", err)
        return 1
    stopping.wait()
    from egress_agent.cluster.restart import system_stopping

    log.info("shutting down")
    agent.stop(restarting=not leaving.is_set() and not system_stopping())
    log.info("stopped")
    return 0


#: The cyclic collector's thresholds: (young allocations, young collections per middle one, middle per old).
GC_THRESHOLDS = (50_000, 20, 10)


def _tune_gc() -> None:
    """Collect young objects every 50,000 allocations instead of CPython's 700.

    A datapath pass at 1,000 policies builds tens of thousands of short-lived objects. With the default
    threshold the young collections ran in the middle of each pass, promoted them, and that pushed the
    old generation (a few hundred thousand objects: the store mirror, pydantic schemas, grpc) past
    CPython's 25 % growth trigger: a full collection every ~0.35 s on the busy agent, 55 ms median and
    130 ms at worst, each one stalling every thread -- the pass a CNI ADD waits on among them. That was
    most of the pod-start p99 (bench/pod_start.py: 259 full collections in a 100-pod run, none with
    these thresholds). Garbage in cycles waits at most 50,000 allocations longer: a few MB.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def _reload(agent, reread: Callable[[], cfg.AgentConfig | None], log: logging.Logger) -> None:
    """SIGHUP: apply the --config file's node labels live; name what else changed (restart to apply it)."""
    try:
        fresh = reread()
    except cfg.ConfigError as err:  # the same checks as at start: a bad label is refused, nothing changes
        log.error("SIGHUP: configuration not applied, nothing changed: %s", err)
        agent.relabel_refused(str(err))
        return
    if fresh is None:
        log.warning("SIGHUP: no --config file to re-read (node labels come from --node-label only; restart to "
                    "change them)")
        return
    labels, later = cfg.live_changes(agent.conf, fresh)
    if later:
        log.warning("SIGHUP: %s changed but cannot change live: restart the agent to apply %s",
                    ", ".join(later), "it" if len(later) == 1 else "them")
    agent.relabel(labels, "SIGHUP")


def _coalesced(name: str, act: Callable[[], None]) -> Callable[[], None]:
    """`act` on a thread of its own, once per burst of requests: a slow reload (etcd retrying) never delays
    a SIGTERM, and three quick SIGHUPs re-read the file at most twice."""
    wanted = threading.Event()

    def loop() -> None:
        while True:
            wanted.wait()
            wanted.clear()
            try:
                act()
            except Exception:
                logging.getLogger("egress-agent").exception("%s failed", name)

    threading.Thread(target=loop, name=name, daemon=True).start()
    return wanted.set


def _on_signals(actions: dict[int, Callable[[], None]]) -> None:
    """Calls each signal's action from a thread of its own, never from the signal handler.

    Python runs a handler in the main thread between two bytecodes, possibly while that thread
    holds the lock an action needs: `Event.set()` in a handler that lands inside the main thread's own
    `Event.wait()` blocks forever (it hung an agent on SIGTERM in CI). So the handlers do nothing;
    the C-level handler writes the signal's number to a pipe (signal.set_wakeup_fd) and a daemon
    thread reads it and acts like any other thread.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for sig in actions:
        signal.signal(sig, lambda *_: None)

    def relay() -> None:
        while True:
            for number in os.read(read_end, 64):
                if number in actions:
                    actions[number]()

    threading.Thread(target=relay, name="signals", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
