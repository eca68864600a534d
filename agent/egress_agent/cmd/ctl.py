"""`egressctl`: the operator CLI.

    egressctl [--endpoint unix:///PATH] get gateways|policies|nodes [-o json]
    egressctl [--endpoint ...] describe gateway|policy NAME
    egressctl [--endpoint ...] delete gateway|policy NAME
    egressctl [--endpoint ...] apply -f FILE|-
    egressctl [--endpoint ...] edit gateway|policy NAME
    egressctl [--endpoint ...] status
    egressctl certs init --dir DIR --nodes NAME=IP,... --clients admin,viewer,...
    egressctl audit --file PATH [--method M] [--role R] [--object KIND/NAME] [--outcome CODE]

`--endpoint` takes one agent or a comma-separated list (calls fail over to the
next agent, see egress_api.calls) and falls back to $EGRESS_ENDPOINTS, then
$EGRESS_ENDPOINT. TCP endpoints with mutual TLS take `--ca`, `--cert`, `--key`
(or $EGRESS_CA_FILE, $EGRESS_CERT_FILE, $EGRESS_KEY_FILE): file paths or PEM
contents. Any failure prints one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from egress_api import errors, manifest, models, transport
from egress_api.client import EgressClient, Event
from egress_agent.cmd import ctl_apply, ctl_audit
from egress_agent.cmd.tables import format_table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="egressctl", description="Inspect and manage egress gateways and policies.")
    p.add_argument("--endpoint", help="agent API: unix:///PATH or host:port, or a comma-separated list of them "
                   "tried in order (default: $EGRESS_ENDPOINTS, then $EGRESS_ENDPOINT)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    p.add_argument("--ca", help="CA that signed the agents' certificates, for TCP endpoints (default $EGRESS_CA_FILE)")
    p.add_argument("--cert", help="this client's certificate: its role (default $EGRESS_CERT_FILE)")
    p.add_argument("--key", help="its private key (default $EGRESS_KEY_FILE)")
    sub = p.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="list gateways, policies or nodes")
    get.add_argument("what", choices=["gateways", "policies", "nodes"])
    get.add_argument("-o", "--output", choices=["table", "json"], default="table")
    desc = sub.add_parser("describe", help="spec, status and events of one object")
    desc.add_argument("kind", choices=["gateway", "policy"])
    desc.add_argument("name")
    delete = sub.add_parser("delete", help="delete a gateway or policy")
    delete.add_argument("kind", choices=["gateway", "policy"])
    delete.add_argument("name")
    apply = sub.add_parser("apply", help="create or update gateways and policies from a YAML or JSON file")
    apply.add_argument("-f", "--filename", required=True, help="file of documents (kind, metadata.name, spec); - for stdin")
    edit = sub.add_parser("edit", help="edit a gateway or policy in $EDITOR and apply it")
    edit.add_argument("kind", choices=["gateway", "policy"])
    edit.add_argument("name")
    sub.add_parser("status", help="nodes, roles, Up/Down, who holds which floating IP, leader")
    certs = sub.add_parser("certs", help="certificates for mutual TLS").add_subparsers(dest="certs_command",
                                                                                     required=True)
    init = certs.add_parser("init", help="make a CA and node and client certificates (see docs/security.md)")
    init.add_argument("--dir", required=True, help="where to write them (created 0700; an existing CA there is reused)")
    init.add_argument("--nodes", default="", help="agents: NAME[=IP[+IP...]],... (the IPs they listen on)")
    init.add_argument("--clients", default="", help="clients: ROLE or NAME:ROLE,... (roles: admin, viewer, inventory, peer)")
    init.add_argument("--days", type=int, default=365, help="validity of the node and client certificates (default 365)")
    ctl_audit.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "certs":
        from egress_agent.cmd import certs

        return certs.command(args)
    if args.command == "audit":
        return ctl_audit.command(args)
    endpoint = args.endpoint or os.environ.get("EGRESS_ENDPOINTS", "") or os.environ.get("EGRESS_ENDPOINT", "")
    if not endpoint:
        print("egressctl: no agent endpoint: pass --endpoint unix:///PATH or set EGRESS_ENDPOINTS", file=sys.stderr)
        return 1
    try:
        tls = transport.ClientTLS.load(args.ca or os.environ.get("EGRESS_CA_FILE", ""),
                                       args.cert or os.environ.get("EGRESS_CERT_FILE", ""),
                                       args.key or os.environ.get("EGRESS_KEY_FILE", ""), what="--ca/--cert/--key")
    except transport.TLSConfigError as err:
        print(f"egressctl: {err}", file=sys.stderr)
        return 1
    try:
        with EgressClient(endpoint, timeout=args.timeout, tls=tls) as client:
            out = COMMANDS[args.command](client, args)
    except errors.ApiError as err:
        print(f"egressctl: {_one_line(err)}", file=sys.stderr)
        return 1
    except models.InvalidObject as err:
        print(f"egressctl: {err}; nothing was changed", file=sys.stderr)
        return 1
    except manifest.ManifestError as err:
        text = str(err) if "nothing was changed" in str(err) else f"{err}; nothing was changed"
        print(f"egressctl: {text}", file=sys.stderr)
        return 1
    except ctl_apply.EditError as err:
        print(f"egressctl: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def _one_line(err: errors.ApiError) -> str:
    text = err.message
    if err.violations and not any(v.message in text for v in err.violations):
        text += ": " + "; ".join(f"{v.dotted()}: {v.message}" for v in err.violations)
    return " ".join(text.split())


# --- get ---------------------------------------------------------------------------------


def _get(client: EgressClient, args) -> str:
    if args.what == "gateways":
        items = client.list_gateways()
        rows = [
            {"name": v.obj.name, "floating_ips": v.obj.floating_ips, "resource_version": v.resource_version}
            for v in items
        ]
        table = [[r["name"], ",".join(r["floating_ips"]), str(r["resource_version"])] for r in rows]
        header = ["NAME", "FLOATING IPS", "VERSION"]
    elif args.what == "policies":
        items = client.list_policies()
        rows = [{**v.obj.model_dump(mode="json"), "resource_version": v.resource_version} for v in items]
        table = [
            [r["name"], r["egress_source_ip"], r["gateway"] or "-", ",".join(r["destination_cidrs"]),
             str(r["priority"]), str(len(r["egress"])), str(r["resource_version"])]
            for r in rows
        ]
        header = ["NAME", "SOURCE IP", "GATEWAY", "DESTINATIONS", "PRIORITY", "RULES", "VERSION"]
    else:
        nodes = client.list_nodes()
        rows = [n.__dict__ for n in nodes]
        table = [_node_row(n) for n in nodes]
        header = ["NAME", *NODE_COLUMNS[1:]]
    if args.output == "json":
        return json.dumps(rows, indent=2, sort_keys=True)
    if not rows:
        return f"No {args.what} found."
    return format_table(header, table)


# --- describe ------------------------------------------------------------------------------


def _describe(client: EgressClient, args) -> str:
    return _describe_gateway(client, args.name) if args.kind == "gateway" else _describe_policy(client, args.name)


def _describe_gateway(client: EgressClient, name: str) -> str:
    gw = client.get_gateway(name)
    st = client.gateway_status(name)
    lines = [
        f"Name:              {gw.obj.name}",
        f"Resource Version:  {gw.resource_version}",
        "Spec:",
        "  Floating IPs:",
        *[f"    {ip}" for ip in gw.obj.floating_ips],
        f"  Node Selector:     {_selector(gw.obj.node_selector)}",
        f"  Max IPs Per Node:  {gw.obj.max_ips_per_node or '<no cap>'}",
        "Status:",
        "  Nodes:",
        *([f"    {n}: {s}" for n, s in sorted(st.nodes.items())] or ["    <none>"]),
        "  Floating IPs:",
    ]
    for ip in gw.obj.floating_ips:
        holder = st.floating_ips.get(ip, "")
        lines.append(f"    {ip}: {holder}" if holder else f"    {ip}: <unassigned> ({st.unassigned_reasons.get(ip, '')})")
    lines += _conditions(st.conditions)
    lines += _events(client.list_events("gateway", name))
    return "\n".join(lines)


NODE_COLUMNS = ["NODE", "ROLE", "STATE", "NODE IP", "FLOATING IPS", "LABELS", "SERVICE CIDRS"]


def _node_row(n) -> list[str]:
    """A node's row in `status` and `get nodes` (NODE_COLUMNS)."""
    return [n.name, n.role, n.state, n.node_ip, ",".join(n.floating_ips) or "-", _labels(n.labels),
            ",".join(n.service_cidrs) or "-"]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _selector(sel) -> str:
    return "<all>" if sel is None else sel.text()  # kubectl's spelling of LabelSelector requirements


def _describe_policy(client: EgressClient, name: str) -> str:
    d = client.describe_policy(name)
    p = d.policy.obj
    lines = [
        f"Name:              {p.name}",
        f"Resource Version:  {d.policy.resource_version}",
        "Spec:",
        "  Egress:",
    ]
    for i, rule in enumerate(p.egress):
        lines += [
            f"    Rule {i}:",
            f"      Namespace Selector:  {_selector(rule.namespace_selector)}",
            f"      Pod Selector:        {_selector(rule.pod_selector)}",
        ]
    lines += [
        "  Destination CIDRs:",
        *[f"    {c}" for c in p.destination_cidrs],
        "  Excluded CIDRs:" + ("" if p.excluded_cidrs else "  <none>"),
        *[f"    {c}" for c in p.excluded_cidrs],
        f"  Priority:          {p.priority}",
        f"  Egress Source IP:  {p.egress_source_ip}",
        # A policy naming a gateway gets (or was checked against) a floating IP of it.
        f"  Gateway:           {p.gateway or '<none>'}",
        "Status:",
        f"  Holder:  {d.holder or '<none>'}",
        # What never leaves with the policy's IP although a destination CIDR covers it.
        "  Effective Exclusions:" + ("" if d.exclusions else "  <none>"),
        *[f"    {cidr}  ({why})" for cidr, why in d.exclusions],
        # Selected pods' destinations that a policy with precedence takes.
        "  Shadowed:" + (f"  {d.shadowed_pods} pod(s)" if d.shadowed_pods else "  <none>"),
        *[f"    {pod} -> {dst}: taken by policy {other}" for pod, dst, other in d.shadowed],
        "  Counters:",
        *[f"    {k}: {v}" for k, v in d.counters.items()],
    ]
    lines += _conditions(d.conditions)
    lines += _events(d.events)
    return "\n".join(lines)


def _age(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _since(rfc3339: str) -> str:
    """A condition's last transition as an age ("" when not known)."""
    if not rfc3339:
        return "<unknown>"
    from datetime import datetime, timezone

    return _age(datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _conditions(conditions: list) -> list[str]:
    """kubectl describe's Conditions block: type, status, reason, since when, message."""
    if not conditions:
        return ["Conditions:  <none>"]
    rows = [[c.type, c.status, c.reason, _since(c.last_transition_time), c.message] for c in conditions]
    table = format_table(["Type", "Status", "Reason", "Since", "Message"], rows)
    return ["Conditions:", *["  " + line for line in table.splitlines()]]


def _events(events: list[Event]) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    rows = [[e.type, e.reason, _age(e.timestamp), str(e.count), e.message] for e in events]
    table = format_table(["Type", "Reason", "Age", "Count", "Message"], rows)
    return ["Events:", *["  " + line for line in table.splitlines()]]


# --- delete, status -------------------------------------------------------------------------------


def _delete(client: EgressClient, args) -> str:
    (client.delete_gateway if args.kind == "gateway" else client.delete_policy)(args.name)
    return f"{args.kind} {args.name!r} deleted"


def _leader(h) -> str:
    if h.leader:
        return h.leader
    # An embedded (sqlite) store means a single-node agent: it leads itself.
    return f"{h.node} (standalone)" if h.store.startswith("sqlite:") else "<none elected>"


def _status(client: EgressClient, args) -> str:
    h = client.health()
    nodes = client.list_nodes()
    lines = [
        f"Agent:   {h.node} ({h.status}, version {h.version})",
        f"Store:   {h.store} ({'ok' if h.store_ok else 'DOWN: ' + h.detail})",
        f"Leader:  {_leader(h)}",
        "",
        format_table(
            NODE_COLUMNS,
            [_node_row(n) for n in nodes],
        ),
        "",
    ]
    rows, gateways = [], []
    for gw in client.list_gateways():
        st = client.gateway_status(gw.obj.name)
        for ip in gw.obj.floating_ips:
            holder = st.floating_ips.get(ip, "")
            rows.append([ip, gw.obj.name, holder or f"<unassigned: {st.unassigned_reasons.get(ip, '')}>"])
        by_type = {c.type: c for c in st.conditions}
        ready = by_type.get("Ready")
        gateways.append([gw.obj.name, *(by_type[t].status if t in by_type else "-" for t in GATEWAY_CONDITIONS),
                         _since(ready.last_transition_time) if ready else "-",
                         ready.message if ready and ready.status != "True" else ""])
    if not rows:
        lines.append("No gateways found.")
        return "\n".join(lines)
    lines += [format_table(["GATEWAY", *(t.upper() for t in GATEWAY_CONDITIONS), "SINCE", "MESSAGE"], gateways), "",
              format_table(["FLOATING IP", "GATEWAY", "HOLDER"], rows)]
    return "\n".join(lines)


GATEWAY_CONDITIONS = ("Ready", "IPAssigned", "Programmed")


COMMANDS = {"get": _get, "describe": _describe, "delete": _delete, "status": _status,
            "apply": ctl_apply.apply_file, "edit": ctl_apply.edit}


if __name__ == "__main__":
    sys.exit(main())
