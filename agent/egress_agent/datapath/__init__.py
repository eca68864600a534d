"""Kernel programming on one node: eBPF steering, nftables SNAT, floating IPs."""

from .state import NodeDatapathState, PolicyPath

__all__ = ["NodeDatapathState", "PolicyPath"]
