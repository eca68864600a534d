"""`egress-lab`: a multi-node cluster, pods and external hosts in network namespaces."""

from __future__ import annotations

import argparse
import os
import sys

from egress_api.errors import ApiError

from . import agents, build, labstate, pods, status, topology as T


def label_edits(pairs: list[str]) -> dict[str, str]:
    """kubectl label's arguments: K=V sets K; K- (or K=-) removes K, given as K -> "-"."""
    out = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep and k.endswith("-") and len(k) > 1:
            k, sep, v = k[:-1], "=", "-"
        if not sep or not k:
            raise SystemExit(f"egress-lab: label {pair!r} must be KEY=VALUE, or KEY- to remove KEY")
        out[k] = v
    return out


def _exec(ns: str, cmd: list[str]) -> None:
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise SystemExit("egress-lab: give a command after --")
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="egress-lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="build the lab (idempotent)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--masters", type=int, default=1)
    p.add_argument("--no-agents", dest="agents", action="store_false",
                   help="bare topology: no etcd and no agents (tests that program datapaths directly)")
    p.add_argument("--etcd-members", type=int, default=1, choices=[1, 3],
                   help="etcd members on the etcd host (3: one can hang or die while the cluster keeps its quorum)")
    sub.add_parser("down", help="remove every namespace, process and file the lab made")
    sub.add_parser("status", help="nodes, roles, links, pods, floating IPs")

    pod = sub.add_parser("pod").add_subparsers(dest="pod_cmd", required=True)
    p = pod.add_parser("add")
    p.add_argument("name")
    p.add_argument("--node", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--cni", dest="main_plugin", choices=["ptp", "bridge"], default="ptp",
                   help="main CNI plugin before egress-cni (default ptp)")
    p.add_argument("--direct", action="store_true",
                   help="the lab's own veth wiring instead of the CNI chain (labs without agents use it always)")
    p = pod.add_parser("del")
    p.add_argument("name")
    p = pod.add_parser("check", help="run the pod's CNI chain CHECK")
    p.add_argument("name")
    p = pod.add_parser("label", help="merge labels into a pod (K=V; K- removes K), like kubectl label pod")
    p.add_argument("name")
    p.add_argument("labels", nargs="+", metavar="K=V")

    ns = sub.add_parser("namespace").add_subparsers(dest="ns_cmd", required=True)
    p = ns.add_parser("label")
    p.add_argument("namespace")
    p.add_argument("labels", nargs="+", metavar="K=V")

    p = sub.add_parser("exec", help="run a command in a pod: exec POD -- CMD ...")
    p.add_argument("pod")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("ext", help="run a command on the external host: ext -- CMD ...")
    p.add_argument("command", nargs=argparse.REMAINDER)

    node = sub.add_parser("node").add_subparsers(dest="node_cmd", required=True)
    for verb in ("stop", "start"):
        node.add_parser(verb).add_argument("node")
    node.add_parser("metrics", help="print the node agent's Prometheus metrics (docs/metrics.md)").add_argument("node")
    p = node.add_parser("label", help="merge labels into a node (K=V; K- removes K), like kubectl label node: "
                        "writes its agent's --config node_labels and sends SIGHUP (what gateways' node_selector "
                        "matches)")
    p.add_argument("node")
    p.add_argument("labels", nargs="+", metavar="K=V")

    agent = sub.add_parser("agent").add_subparsers(dest="agent_cmd", required=True)
    p = agent.add_parser("restart", help="restart a node's agent with the same settings (SIGTERM; --kill: kill -9), "
                         "the node and its kernel state untouched")
    p.add_argument("node")
    p.add_argument("--kill", action="store_true", help="kill -9 instead of SIGTERM (a crash)")

    p = sub.add_parser("whoami", help="the source IP the external host saw for a request from POD")
    p.add_argument("pod")
    p.add_argument("--dst", default=T.EXT_HOST_IP)
    p.add_argument("--port", action="store_true", help="print IP:PORT")

    p = sub.add_parser("deny", help="network-policy stand-in: drop POD -> CIDR on the pod's node")
    p.add_argument("pod")
    p.add_argument("cidr")
    p.add_argument("--remove", action="store_true")
    return ap


def run(args: argparse.Namespace) -> int:
    if args.cmd == "up":
        st = build.up(args.workers, args.masters, agents=args.agents, etcd_members=args.etcd_members)
        print(status.render(st))
        print(f"\nstate: {labstate.state_path()}")
        if st.agents:
            first = st.nodes()[0].name
            print(f"etcd: {','.join(T.etcd_urls(st.etcd_members))} (in {T.etcd_ns()})")
            print(f"agents: one per node; API endpoint of {first}: {agents.endpoint(first)}")
            print("use it with Terraform / egressctl:")
            print(f"  export EGRESS_ENDPOINT={agents.endpoint(first)}")
    elif args.cmd == "down":
        removed = build.down()
        print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
    elif args.cmd == "status":
        print(status.render(labstate.require()))
    elif args.cmd == "pod" and args.pod_cmd == "add":
        p = pods.add(args.name, args.node, args.namespace, label_edits(args.label),
                     wiring="direct" if args.direct else None, main_plugin=args.main_plugin)
        print(f"pod {p.name} ({p.namespace}) on {p.node}: {p.ip}" + (f" via {p.interface}" if p.interface else ""))
    elif args.cmd == "pod" and args.pod_cmd == "check":
        pods.check(args.name)
        print(f"pod {args.name}: CHECK passed")
    elif args.cmd == "pod" and args.pod_cmd == "label":
        labels = pods.label_pod(args.name, label_edits(args.labels))
        print(f"pod {args.name}: " + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    elif args.cmd == "pod" and args.pod_cmd == "del":
        p = pods.delete(args.name)
        print(f"pod {p.name} deleted")
    elif args.cmd == "namespace":
        labels = pods.label_namespace(args.namespace, label_edits(args.labels))
        print(f"namespace {args.namespace}: " + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    elif args.cmd == "exec":
        labstate.require().pod(args.pod)
        _exec(T.pod_ns(args.pod), args.command)
    elif args.cmd == "ext":
        labstate.require()
        _exec(T.ext_ns(), args.command)
    elif args.cmd == "agent":
        took = build.agent_restart(args.node, kill=args.kill)
        print(f"agent on {args.node} restarted ({'kill -9' if args.kill else 'SIGTERM'}); healthy after {took:.2f}s")
    elif args.cmd == "node" and args.node_cmd == "label":
        labels = build.node_label(args.node, label_edits(args.labels))
        print(f"node {args.node}: " + (",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    elif args.cmd == "node" and args.node_cmd == "metrics":
        print(agents.metrics(labstate.require().node(args.node)), end="")
    elif args.cmd == "node":
        (build.node_stop if args.node_cmd == "stop" else build.node_start)(args.node)
        print(f"node {args.node} {'stopped' if args.node_cmd == 'stop' else 'started'}")
    elif args.cmd == "whoami":
        ip, port = pods.whoami(args.pod, args.dst)
        print(f"{ip}:{port}" if args.port else ip)
    elif args.cmd == "deny":
        pods.deny(args.pod, args.cidr, remove=args.remove)
        print(f"{'allowed' if args.remove else 'denied'} {args.pod} -> {args.cidr}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("egress-lab: needs root (network namespaces, nftables, eBPF)")
    try:
        sys.exit(run(args))
    except (RuntimeError, KeyError, ValueError, ApiError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise SystemExit(f"egress-lab: {msg}")


if __name__ == "__main__":
    main()
