"""A whoami server inside a lab pod, and a service IP in front of it (kube-proxy's DNAT, on one node)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

from egress_lab import netns, topology as T


def _run(ns: str, cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True, text=True,
                          check=True).stdout


@contextlib.contextmanager
def pod_server(pod: str, ip: str):
    """A whoami server inside `pod`, on its IP `ip`; stopped afterwards."""
    ns = T.pod_ns(pod)
    proc = subprocess.Popen(
        netns.argv_in(ns, [sys.executable, "-m", "egress_lab.whoami_server", "--bind", ip, "--port", str(T.WHOAMI_PORT)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while f"{ip}:{T.WHOAMI_PORT}" not in _run(ns, "ss -Htln"):
            assert time.monotonic() < deadline, f"whoami server in {pod} did not start"
            time.sleep(0.05)
        yield ip
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def service(node_ns: str, vip: str, backend: str):
    """DNAT `vip` to `backend` in the node's prerouting, as kube-proxy does (after the pod veth's tc ingress)."""
    _run(node_ns, f"nft 'add table ip pxsvc'; nft 'add chain ip pxsvc pre {{ type nat hook prerouting priority dstnat; }}'; "
                  f"nft 'add rule ip pxsvc pre ip daddr {vip} tcp dport {T.WHOAMI_PORT} dnat to {backend}'")
    try:
        yield vip
    finally:
        _run(node_ns, "nft delete table ip pxsvc")
