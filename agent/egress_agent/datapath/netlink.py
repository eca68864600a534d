"""Netlink sockets in a named network namespace, opened without fork().

pyroute2 opens a socket in another namespace (`IPRoute(netns=...)`) by
forking a helper process. fork() in a process that runs gRPC threads can
hang for good in gRPC's fork handlers (seen here: the lab CLI and the tests
hold gRPC channels to the agents). A network namespace is a per-thread
attribute, so instead this thread enters the namespace with setns(), opens
the socket (a socket stays in the namespace it was created in), and returns.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

from pyroute2 import IPRoute
from pyroute2.netns import popns, pushns

T = TypeVar("T")


def open_in(netns: Optional[str], factory: Callable[[], T]) -> T:
    """`factory()` called inside `netns` (None: this thread's current namespace)."""
    if not netns:
        return factory()
    pushns(netns)
    try:
        return factory()
    finally:
        popns()


def iproute(netns: Optional[str] = None) -> IPRoute:
    return open_in(netns, IPRoute)
