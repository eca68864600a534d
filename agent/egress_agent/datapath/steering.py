"""Source-node steering: the eBPF tc classifier (bpf/steer.c) and its maps.

Loaded once per agent with bcc and attached with pyroute2 to the host side of
every local pod veth (tc ingress = traffic from the pod). Everything after
that is map updates: pods, policies and CIDRs change without reloading the
program, so no packet is lost or misrouted during a change.

Maps (bpftool map list | grep egress_): egress_pods, egress_dsts,
egress_internal, egress_policies, egress_counters; program egress_steer.
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .state import NodeDatapathState

ACTION_LOCAL, ACTION_STEER, ACTION_DROP = 0, 1, 2
NOT_STEERED = 0  # the policy id of a trie entry that hides a shorter prefix (an exclusion); real ids start at 1
TC_PRIO = 0xE5  # our filter's priority on each veth's clsact ingress: how `Steering` finds its own filter
TC_HANDLE = 1
CLSACT_INGRESS = "ffff:fff2"  # clsact ingress (fff3 is egress)
PROG_NAME = "egress_steer"

MAX_PODS = 65536
MAX_DSTS = 1 << 20
MAX_POLICIES = 4096


def _be32(ip: str) -> int:
    """An IPv4 address as the u32 whose memory bytes are in network order (as in the packet)."""
    return int.from_bytes(ipaddress.ip_address(ip).packed, "little")


@dataclass(frozen=True)
class PolicyCounters:
    packets: int
    bytes: int
    dropped: int


class Steering:
    def __init__(self, ipr, max_pods: int = MAX_PODS, max_dsts: int = MAX_DSTS) -> None:
        from bcc import BPF  # imported here: loading needs root and kernel headers, importing the package must not

        src = Path(__file__).with_name("bpf") / "steer.c"
        cflags = [f"-DMAX_PODS={max_pods}", f"-DMAX_DSTS={max_dsts}", f"-DMAX_POLICIES={MAX_POLICIES}"]
        self._ipr = ipr
        self._bpf = BPF(src_file=str(src).encode(), cflags=cflags)
        self._fn = self._bpf.load_func(PROG_NAME.encode(), BPF.SCHED_CLS)
        self._pods = self._bpf[b"egress_pods"]
        self._dsts = self._bpf[b"egress_dsts"]
        self._incluster = self._bpf[b"egress_internal"]
        self._policies = self._bpf[b"egress_policies"]
        self._counters = self._bpf[b"egress_counters"]
        # What we wrote, so each apply writes only the difference.
        self._policy_ids: dict[str, int] = {}
        self._groups: dict[frozenset[str], int] = {}
        self._applied_policies: dict[int, tuple[int, int]] = {}
        self._applied_dsts: dict[tuple[int, str], int] = {}
        self._applied_pods: dict[str, int] = {}
        self._applied_incluster: set[str] = set()
        self._attached: dict[str, int] = {}  # veth -> ifindex

    # --- desired state -------------------------------------------------------

    def _ids_for(self, names: list[str]) -> dict[str, int]:
        ids = {n: i for n, i in self._policy_ids.items() if n in names}
        used = set(ids.values())
        free = (i for i in range(1, MAX_POLICIES) if i not in used)
        for n in names:
            if n not in ids:
                ids[n] = next(free)
        return ids

    def apply(self, state: NodeDatapathState, marks: dict[str, int]) -> None:
        """Converge the maps to `state`, then attach to new pod veths. `marks`: gateway node IP -> fwmark."""
        me = state.node_address
        ids = self._ids_for([p.name for p in state.policies])
        new_ids = {i for n, i in ids.items() if self._policy_ids.get(n) != i}

        policies: dict[int, tuple[int, int]] = {}
        for p in state.policies:
            if p.gateway_node_ip is None:
                policies[ids[p.name]] = (ACTION_DROP, 0)
            elif p.gateway_node_ip == me:
                policies[ids[p.name]] = (ACTION_LOCAL, 0)
            else:
                policies[ids[p.name]] = (ACTION_STEER, marks[p.gateway_node_ip])

        pod_groups = state.selection_groups(state.local_pods)
        groups = {g: i for g, i in self._groups.items() if g in pod_groups.values()}
        used = set(groups.values())
        free = (i for i in range(1, 1 << 31) if i not in used)
        for g in sorted(set(pod_groups.values()), key=sorted):
            if g not in groups:
                groups[g] = next(free)

        dsts: dict[tuple[int, str], int] = {}
        for g, gid in groups.items():
            # Precedence (priority, longest prefix, name; exclusions as holes) resolved here, once per group:
            # each entry is the answer for its prefix, NOT_STEERED where a hole must hide a shorter prefix.
            for net, name in state.group_entries(g).items():
                dsts[(gid, net.with_prefixlen)] = ids[name] if name else NOT_STEERED
        pods = {ip: groups[g] for ip, g in pod_groups.items()}
        incluster = set(state.in_cluster_cidrs())

        # Order matters for no leak and no loss: actions and destinations
        # exist before a pod points at a group; stale entries go last.
        for pid in sorted(new_ids):
            self._reset_counters(pid)
        self._write(self._policies, policies, self._applied_policies, self._policy_key, self._policy_leaf)
        self._write_set(self._incluster, incluster, self._applied_incluster, self._v4_key)
        self._write(self._dsts, dsts, self._applied_dsts, self._dst_key, self._u32_leaf(self._dsts), delete=False)
        self._write(self._pods, pods, self._applied_pods, self._pod_key, self._u32_leaf(self._pods))
        self._write(self._dsts, dsts, self._applied_dsts, self._dst_key, self._u32_leaf(self._dsts))
        self._policy_ids, self._groups = ids, groups
        self._sync_attachments(set(state.local_pods.values()))

    # --- map writes ----------------------------------------------------------

    def _write(self, table, desired: dict, applied: dict, mkkey, mkleaf, delete: bool = True) -> None:
        for k, v in desired.items():
            if applied.get(k) != v:
                table[mkkey(table, k)] = mkleaf(table, v)
                applied[k] = v
        if delete:
            for k in [k for k in applied if k not in desired]:
                if table is not self._policies:  # array slots cannot be deleted; nothing points at them any more
                    try:
                        del table[mkkey(table, k)]
                    except KeyError:
                        pass
                del applied[k]

    def _write_set(self, table, desired: set, applied: set, mkkey) -> None:
        for k in desired - applied:
            table[mkkey(table, k)] = table.Leaf(1)
        for k in applied - desired:
            del table[mkkey(table, k)]
        applied.clear()
        applied.update(desired)

    @staticmethod
    def _policy_key(table, pid: int):
        return ctypes.c_int(pid)

    @staticmethod
    def _policy_leaf(table, v: tuple[int, int]):
        leaf = table.Leaf()
        leaf.action, leaf.mark = v
        return leaf

    @staticmethod
    def _u32_leaf(table):
        return lambda t, v: t.Leaf(v)

    @staticmethod
    def _pod_key(table, ip: str):
        return table.Key(_be32(ip))

    @staticmethod
    def _dst_key(table, k: tuple[int, str]):
        gid, cidr = k
        net = ipaddress.ip_network(cidr)
        key = table.Key()
        key.prefixlen = 32 + net.prefixlen
        key.group = gid
        key.daddr = _be32(str(net.network_address))
        return key

    @staticmethod
    def _v4_key(table, cidr: str):
        net = ipaddress.ip_network(cidr)
        key = table.Key()
        key.prefixlen = net.prefixlen
        key.daddr = _be32(str(net.network_address))
        return key

    def _reset_counters(self, pid: int) -> None:
        self._counters[ctypes.c_int(pid)] = self._counters.Leaf()  # a zeroed value for every CPU

    # --- tc attachment -------------------------------------------------------

    def attached(self) -> dict[str, int]:
        """veth -> ifindex of every pod interface our filter was attached to."""
        return dict(self._attached)

    def reattach_missing(self, veths: Optional[Iterable[str]] = None) -> list[str]:
        """Attach again wherever our filter was removed behind our back (another tc user, a `tc qdisc del`).

        Without it such a pod's traffic would leave unsteered, with its node's IP: a leak the maps cannot
        see. `veths`: only these (found missing by a check on another netlink socket; checked again here).
        Returns the veths re-attached.
        """
        redone = []
        wanted = self._attached if veths is None else {v: self._attached[v] for v in veths if v in self._attached}
        for veth, idx in sorted(wanted.items()):
            if not filter_attached(self._ipr, idx):
                found = self._ipr.link_lookup(ifname=veth)
                if found and found[0] == idx:  # a veth that went away is the next apply's business
                    self.attach(veth, idx)
                    redone.append(veth)
        return redone

    def _sync_attachments(self, veths: set[str]) -> None:
        for veth in sorted(veths - set(self._attached)):
            found = self._ipr.link_lookup(ifname=veth)
            if not found:
                raise RuntimeError(f"pod veth {veth!r} does not exist on this node")
            self.attach(veth, found[0])
        for veth in sorted(set(self._attached) - veths):
            self.detach(veth)

    def attach(self, veth: str, idx: int) -> None:
        try:
            self._ipr.tc("add", "clsact", idx)
        except Exception as err:  # EEXIST: the qdisc is shared with other tc users; keep it
            if getattr(err, "code", None) != 17:
                raise
        # replace: an agent restart swaps its new program in atomically over the old one.
        self._ipr.tc(
            "replace-filter", "bpf", idx, TC_HANDLE, fd=self._fn.fd, name=PROG_NAME,
            parent=CLSACT_INGRESS, prio=TC_PRIO, classid=1, direct_action=True,
        )
        self._attached[veth] = idx

    def detach(self, veth: str) -> None:
        idx = self._attached.pop(veth, None)
        found = self._ipr.link_lookup(ifname=veth)
        if idx is None or not found or found[0] != idx:
            return  # the veth went away with its pod: so did the filter
        try:
            self._ipr.tc("del-filter", "bpf", idx, TC_HANDLE, parent=CLSACT_INGRESS, prio=TC_PRIO)
        except Exception as err:
            if getattr(err, "code", None) not in (2, 19, 22):  # gone already
                raise

    def cleanup(self) -> None:
        for veth in list(self._attached):
            self.detach(veth)
        self._bpf.cleanup()

    def close(self) -> None:
        """Let go of the program without detaching: the filters keep the last maps (fail static)."""
        self._bpf.cleanup()

    # --- observability -------------------------------------------------------

    def map_sizes(self) -> dict[str, int]:
        """Entries written to each classifier map (what bench/datapath.py reports)."""
        return {"egress_pods": len(self._applied_pods), "egress_dsts": len(self._applied_dsts),
                "egress_internal": len(self._applied_incluster), "groups": len(self._groups)}

    def counters(self) -> dict[str, PolicyCounters]:
        out = {}
        for name, pid in self._policy_ids.items():
            per_cpu = self._counters[ctypes.c_int(pid)]
            out[name] = PolicyCounters(
                packets=sum(c.packets for c in per_cpu),
                bytes=sum(c.bytes for c in per_cpu),
                dropped=sum(c.dropped for c in per_cpu),
            )
        return out


def filter_attached(ipr, idx: int) -> bool:
    """Is our steering filter (prio TC_PRIO on clsact ingress, program egress_steer) on interface `idx`?"""
    try:
        filters = ipr.get_filters(index=idx, parent=int(CLSACT_INGRESS.replace(":", ""), 16))
    except Exception:
        return False
    return any(
        (f["info"] >> 16) == TC_PRIO and PROG_NAME in str(f.get_nested("TCA_OPTIONS", "TCA_BPF_NAME") or "")
        for f in filters
    )
