"""One plugin invocation, as a container runtime makes it: CNI_* environment variables and the netconf on stdin.

Everything the plugin needs is read and checked here, so `main` only decides
what to do. Errors are `CniError`s with the spec's codes.

Named tuples, not dataclasses, and no `typing`: the runtime starts the plugin for every pod, and those two
imports (with `inspect`, which dataclasses pulls in) were a third of its start-up (bench/pod_start.py).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections import namedtuple
from collections.abc import Mapping

from .spec import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENV,
    SUPPORTED_VERSIONS,
    CniError,
)

DEFAULT_SOCKET = "/run/egress/inventory.sock"
DEFAULT_TIMEOUT = 15.0  # seconds an ADD waits for the agent (labels + programming); kubelet's own is minutes
FAILURE_POLICIES = ("closed", "open")


class Request(namedtuple("Request", "command cni_version container_id netns ifname args conf agent_socket "
                                    "failure_policy timeout labels")):
    """One invocation, checked (`parse`).

    command, cni_version, container_id, netns, ifname: CNI_COMMAND, the netconf's cniVersion, CNI_*;
    args: CNI_ARGS (e.g. K8S_POD_NAMESPACE); conf: the plugin's netconf as given (prevResult included);
    agent_socket, failure_policy, timeout: from the netconf (defaults applied);
    labels: args.cni.labels (CNI conventions), when a runtime passes them.
    """

    __slots__ = ()

    @property
    def prev_result(self) -> dict | None:
        return self.conf.get("prevResult")

    @property
    def pod(self) -> tuple[str, str, str] | None:
        """(namespace, name, uid) from CNI_ARGS, or None when the runtime gave no Kubernetes pod."""
        ns, name = self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")
        if not ns or not name:
            return None
        return ns, name, self.args.get("K8S_POD_UID", "")


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: 'K=V;K=V' (the runtime's; IgnoreUnknown and unknown keys are allowed by convention)."""
    out = {}
    for part in raw.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENV, f"CNI_ARGS: {part!r} is not KEY=VALUE (CNI_ARGS={raw!r})")
        out[key] = value
    return out


def read_conf(stdin: str) -> dict:
    try:
        conf = json.loads(stdin)
    except ValueError as err:
        raise CniError(DECODE_FAILURE, f"the network configuration on stdin is not JSON: {err}") from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "the network configuration on stdin must be a JSON object")
    return conf


def conf_version(conf: Mapping) -> str:
    version = conf.get("cniVersion", "")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not supported by egress-cni; use one of {', '.join(SUPPORTED_VERSIONS)}",
        )
    return version


def parse(env: Mapping[str, str], stdin: str) -> Request:
    command = env.get("CNI_COMMAND", "")
    conf = read_conf(stdin)
    version = conf_version(conf)
    needed = ("CNI_CONTAINERID", "CNI_IFNAME") + (("CNI_NETNS",) if command in ("ADD", "CHECK") else ())
    missing = [k for k in needed if not env.get(k)]
    if missing:
        raise CniError(INVALID_ENV, f"{command}: the runtime did not set {', '.join(missing)}")
    policy = conf.get("failurePolicy", "closed")
    if policy not in FAILURE_POLICIES:
        raise CniError(INVALID_CONFIG, f"failurePolicy {policy!r}: must be 'closed' (the default) or 'open'")
    socket = conf.get("agentSocket", DEFAULT_SOCKET)
    if not isinstance(socket, str) or not socket.startswith("/"):
        raise CniError(INVALID_CONFIG, f"agentSocket {socket!r}: give the agent's unix socket as an absolute path")
    timeout = conf.get("timeoutSeconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise CniError(INVALID_CONFIG, f"timeoutSeconds {timeout!r}: must be a number of seconds in (0, 600]")
    return Request(
        command=command,
        cni_version=version,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        conf=conf,
        agent_socket=socket,
        failure_policy=policy,
        timeout=float(timeout),
        labels=_convention_labels(conf),
    )


def _convention_labels(conf: Mapping) -> dict[str, str]:
    """`args.cni.labels` ([{"key", "value"}], CNI CONVENTIONS.md): pod labels from runtimes without Kubernetes."""
    labels = ((conf.get("args") or {}).get("cni") or {}).get("labels") or []
    try:
        return {str(item["key"]): str(item["value"]) for item in labels}
    except (TypeError, KeyError):
        raise CniError(INVALID_CONFIG, 'args.cni.labels must be a list of {"key": K, "value": V}') from None


class Attachment(namedtuple("Attachment", "ip host_interface")):
    """What the main plugin made for the pod: its IPv4 and the host-side interface."""

    __slots__ = ()


def attachment(req: Request, sys_class_net: str = "/sys/class/net", proc_route: str = "/proc/net/route") -> Attachment:
    """The pod's IPv4 and host interface from prevResult (whatever the main plugin named it)."""
    prev = req.prev_result
    if not isinstance(prev, dict):
        raise CniError(
            INVALID_CONFIG,
            "no prevResult: egress must be chained after the main plugin (e.g. ptp, bridge or calico) "
            "in a conflist, as the last plugin",
        )
    interfaces = prev.get("interfaces") or []
    ip = _pod_ipv4(prev, interfaces, req.ifname)
    host = _host_interface(interfaces, sys_class_net) or _route_interface(ip, proc_route)
    if not host:
        raise CniError(
            INVALID_CONFIG,
            f"prevResult names no host-side interface for the pod ({ip}), and no host route to it exists: "
            "egress needs a main plugin that gives each pod its own host interface (ptp, bridge, calico)",
        )
    return Attachment(ip=ip, host_interface=host)


def _pod_ipv4(prev: Mapping, interfaces: list, ifname: str) -> str:
    candidates = []
    for entry in prev.get("ips") or []:
        try:
            iface = ipaddress.ip_interface(entry["address"])
        except (KeyError, TypeError, ValueError):
            raise CniError(INVALID_CONFIG, f"prevResult.ips: {entry!r} has no valid address") from None
        if iface.version != 4:
            continue
        idx = entry.get("interface")
        named = interfaces[idx].get("name") if isinstance(idx, int) and 0 <= idx < len(interfaces) else None
        candidates.append((named != ifname, str(iface.ip)))  # the container's own interface first
    if not candidates:
        raise CniError(INVALID_CONFIG, "prevResult has no IPv4 address for the pod: egress NAT is IPv4 only")
    return sorted(candidates)[0][1]


def _host_interface(interfaces: list, sys_class_net: str) -> str:
    """The main plugin's host-side interface: not in the sandbox, and not a bridge (bridge lists cni0 too)."""
    found = [
        i.get("name", "")
        for i in interfaces
        if isinstance(i, dict) and not i.get("sandbox") and i.get("name")
        and not os.path.exists(os.path.join(sys_class_net, i["name"], "bridge"))
    ]
    return found[-1] if found else ""


def _route_interface(ip: str, proc_route: str) -> str:
    """The interface of a host route to exactly the pod's IP (ptp and Calico install one)."""
    try:
        with open(proc_route) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return ""
    want = ipaddress.IPv4Address(ip).packed[::-1].hex().upper()  # /proc/net/route is little-endian hex
    for line in lines:
        cols = line.split()
        if len(cols) > 7 and cols[1] == want and cols[7] == "FFFFFFFF":
            return cols[0]
    return ""
