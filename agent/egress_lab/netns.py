"""Small helpers over network namespaces: create, remove, run a command inside, veth pairs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from pyroute2 import IPRoute, netns

from egress_agent.datapath.netlink import iproute


def exists(name: str) -> bool:
    return os.path.exists(os.path.join("/run/netns", name))


def create(name: str) -> bool:
    """Create the namespace with loopback up; returns False if it already existed."""
    if exists(name):
        return False
    # `ip netns add`, not pyroute2's netns.create(): that forks, which can hang in a process
    # holding gRPC channels (see egress_agent.datapath.netlink).
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    with ipr(name) as ip:
        ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
    return True


def with_prefix(prefix: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


def pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone: it holds nothing any more)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_all(name: str, sig: int = signal.SIGTERM, wait: float = 2.0) -> None:
    """End every process running inside the namespace: the lab started all of them."""
    victims = pids(name)
    for pid in victims:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if alive(p)]
        time.sleep(0.02)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove(name: str) -> None:
    if not exists(name):
        return
    kill_all(name)
    netns.remove(name)


@contextmanager
def ipr(name: str | None) -> Iterator[IPRoute]:
    ip = iproute(name)
    try:
        yield ip
    finally:
        ip.close()


def argv_in(name: str | None, argv: Sequence[str]) -> list[str]:
    return (["ip", "netns", "exec", name] if name else []) + list(argv)


def run(name: str | None, argv: Sequence[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(argv_in(name, argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {name or 'this namespace'} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res


def sysctls(name: str | None, settings: dict[str, str | int]) -> None:
    """Set sysctls inside the namespace (/proc/sys/net is per namespace)."""
    run(name, ["sysctl", "-qw", *[f"{k}={v}" for k, v in settings.items()]])


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace; no-op if end A exists."""
    with ipr(ns_a) as ip:
        if ip.link_lookup(ifname=name_a):
            return
        ip.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": ns_b})


def link_index(ip: IPRoute, ifname: str) -> int:
    found = ip.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"no interface {ifname!r}")
    return found[0]


def add_addr(ip: IPRoute, ifname: str, cidr: str) -> None:
    addr, plen = cidr.split("/")
    idx = link_index(ip, ifname)
    have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ip.get_addr(index=idx)}
    if (addr, int(plen)) not in have:
        ip.addr("add", index=idx, address=addr, prefixlen=int(plen))


def up(ip: IPRoute, ifname: str) -> None:
    ip.link("set", index=link_index(ip, ifname), state="up")


def route_replace(ip: IPRoute, dst: str, **kw) -> None:
    ip.route("replace", dst=dst, **kw)
