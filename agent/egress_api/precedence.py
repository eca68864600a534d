"""Which policy a (pod, destination) pair belongs to: the one precedence rule, and its resolved forms.

The rule (issue #12), for a destination address and the policies selecting a pod:
  1. a policy covers the address when the longest of its own prefixes containing it
     (destination CIDRs and excluded CIDRs together) is a destination CIDR: an
     exclusion carves a hole, a destination inside that hole fills it again;
  2. among the covering policies the lowest `priority` wins, then the longest
     covering destination prefix, then the policy name;
  3. no covering policy: the traffic is not steered (it leaves with its node's IP).
Cluster-internal destinations (pod CIDRs, node subnets, service CIDRs) are taken out
before this rule runs, by the datapath itself.

`winner` is the rule written out per address (the reference); `resolve` turns a
selection group's policies into LPM entries (prefix -> winner, or None for "not
steered") that answer exactly like `winner` under longest-prefix match, so the
classifier's per-packet cost stays one trie lookup; `ranges` flattens those entries
into disjoint address ranges for the gateway's nftables interval maps.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Collection, Iterable, Optional

Net = ipaddress.IPv4Network

DEFAULT_PRIORITY = 1000


@dataclass(frozen=True)
class Rule:
    """What precedence needs of one policy."""

    name: str
    destinations: frozenset[str]
    excluded: frozenset[str] = field(default_factory=frozenset)
    priority: int = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "destinations", frozenset(self.destinations))
        object.__setattr__(self, "excluded", frozenset(self.excluded))

    @classmethod
    def of(cls, policy) -> "Rule":
        """From anything with name, destination_cidrs, excluded_cidrs, priority (a models.Policy, a PolicyPath)."""
        return cls(policy.name, frozenset(policy.destination_cidrs),
                   frozenset(getattr(policy, "excluded_cidrs", ()) or ()),
                   getattr(policy, "priority", DEFAULT_PRIORITY))


def covering_length(rule: Rule, address: ipaddress.IPv4Address) -> Optional[int]:
    """The prefix length by which `rule` covers `address`, or None (not covered, or excluded)."""
    best: Optional[tuple[int, bool]] = None
    for cidr, is_dst in [(c, True) for c in rule.destinations] + [(c, False) for c in rule.excluded]:
        net = ipaddress.ip_network(cidr)
        if address in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, is_dst)
    return best[0] if best and best[1] else None


def _key(rule: Rule, length: int) -> tuple:
    return (rule.priority, -length, rule.name)


def winner(rules: Iterable[Rule], address) -> Optional[str]:
    """The reference: which of `rules` `address` belongs to (None: not steered)."""
    address = ipaddress.ip_address(address)
    best = None
    for rule in rules:
        length = covering_length(rule, address)
        if length is not None and (best is None or _key(rule, length) < best):
            best = _key(rule, length)
    return best[2] if best else None


def resolve(rules: Iterable[Rule]) -> dict[Net, Optional[str]]:
    """LPM entries (prefix -> winning policy name, None = not steered) equivalent to `winner`.

    The answer for an address depends only on which of the rules' prefixes contain it,
    and prefixes nest, so it is fixed by the longest one: each prefix gets the answer
    computed from its chain of enclosing prefixes. An entry that repeats its nearest
    enclosing entry's answer is left out (the trie falls back to that one anyway), and
    so is a top-level "not steered".
    """
    # Prefixes as (network as int, length): ipaddress objects cost more than the resolution itself at 10,000s.
    owners: dict[tuple[int, int], list[tuple[Rule, bool]]] = {}
    for rule in rules:
        for cidrs, is_dst in ((rule.destinations, True), (rule.excluded, False)):
            for c in cidrs:
                net = ipaddress.ip_network(c)
                owners.setdefault((int(net.network_address), net.prefixlen), []).append((rule, is_dst))
    out: dict[Net, Optional[str]] = {}
    stack: list[tuple[int, int, Optional[str]]] = []  # enclosing prefixes with their answers, outermost first
    for addr, length in sorted(owners):
        while stack and (length < stack[-1][1] or (addr ^ stack[-1][0]) >> (32 - stack[-1][1])):
            stack.pop()
        answer = _answer([owners[(a, n)] for a, n, _ in stack] + [owners[(addr, length)]],
                         [n for _, n, _ in stack] + [length])
        enclosing = stack[-1][2] if stack else None
        if answer != enclosing:
            out[ipaddress.IPv4Network((addr, length))] = answer
        stack.append((addr, length, answer))
    return out


@functools.lru_cache(maxsize=4096)
def resolve_group(rules: frozenset[Rule]) -> dict[Net, Optional[str]]:
    """`resolve`, remembered per set of rules: a node re-applies its state on every store change, and a
    pod start changes no group's policies (at 1,000 policies a group takes ~0.5 s to resolve). Treat the
    result as read-only."""
    return resolve(rules)


@functools.lru_cache(maxsize=4096)
def group_ranges(rules: frozenset[Rule]) -> list[tuple[int, int, str]]:
    """`ranges` of `resolve_group`, remembered the same way (the gateway's SNAT maps). Read-only."""
    return ranges(resolve_group(rules))


def _answer(chain: list[list[tuple[Rule, bool]]], lengths: list[int]) -> Optional[str]:
    seen: set[str] = set()
    best = None
    for owners, length in zip(reversed(chain), reversed(lengths)):  # longest prefix first
        for rule, is_dst in owners:
            if rule.name in seen:
                continue
            seen.add(rule.name)
            if is_dst and (best is None or _key(rule, length) < best):
                best = _key(rule, length)
    return best[2] if best else None


def lookup(entries: dict[Net, Optional[str]], address) -> Optional[str]:
    """Longest-prefix match over `entries`, as the kernel's trie does it (for tests and `describe`)."""
    address = ipaddress.ip_address(address)
    found = [n for n in entries if address in n]
    return entries[max(found, key=lambda n: n.prefixlen)] if found else None


def ranges(entries: dict[Net, Optional[str]]) -> list[tuple[int, int, str]]:
    """`entries` flattened: disjoint, sorted (first, last, policy) address ranges; not-steered space omitted."""
    points: list[tuple[int, int, Optional[str]]] = []  # (first, last, answer), nested intervals
    for net, answer in entries.items():
        points.append((int(net.network_address), int(net.broadcast_address), answer))
    points.sort(key=lambda p: (p[0], -(p[1] - p[0])))
    out: list[tuple[int, int, str]] = []
    stack: list[tuple[int, int, Optional[str]]] = []
    cursor = 0

    def emit(upto: int) -> None:
        # Addresses [cursor, upto] belong to the innermost open interval.
        nonlocal cursor
        if stack and cursor <= upto and stack[-1][2] is not None:
            first, name = cursor, stack[-1][2]
            if out and out[-1][2] == name and out[-1][1] + 1 == first:
                out[-1] = (out[-1][0], upto, name)
            else:
                out.append((first, upto, name))
        cursor = max(cursor, upto + 1)

    for first, last, answer in points:
        while stack and stack[-1][1] < first:
            emit(stack[-1][1])
            stack.pop()
        if stack:
            emit(first - 1)
        cursor = max(cursor, first)
        stack.append((first, last, answer))
    while stack:
        emit(stack[-1][1])
        stack.pop()
    return out


def shadowed(rules: Iterable[Rule], rule: Rule) -> list[tuple[str, str]]:
    """(destination CIDR of `rule`, other policy): where `rule` covers an address but another of `rules` wins it.

    Holes `rule` carves itself are not shadowing; addresses it covers and loses are (to a lower
    priority number, or at equal priority to a longer prefix or an earlier name).
    """
    others = [r for r in rules if r.name != rule.name]
    own = ranges(resolve([rule]))
    won = [r for r in ranges(resolve([rule, *others])) if r[2] != rule.name]
    found = set()
    i = j = 0
    while i < len(own) and j < len(won):
        first, last = max(own[i][0], won[j][0]), min(own[i][1], won[j][1])
        if first <= last:
            address = ipaddress.IPv4Address(first)
            dst = max((ipaddress.ip_network(c) for c in rule.destinations if address in ipaddress.ip_network(c)),
                      key=lambda n: n.prefixlen)
            found.add((dst.with_prefixlen, won[j][2]))
        if own[i][1] < won[j][1]:
            i += 1
        else:
            j += 1
    return sorted(found)


@functools.lru_cache(maxsize=1 << 16)
def interval(cidr: str) -> tuple[int, int]:
    """A CIDR's first and last address as integers (a plan compares each policy's CIDRs with every other's)."""
    n = ipaddress.ip_network(cidr)
    return int(n.network_address), int(n.broadcast_address)


def _first_overlap(a: Collection[str], b: Collection[str]) -> Optional[tuple[str, str]]:
    """One (CIDR of a, CIDR of b) pair that overlaps, found by a sweep over both sorted lists (not all pairs)."""
    if len(a) * len(b) <= 64:  # few pairs (the usual policy): testing each is cheaper than sorting
        b_sorted = sorted(b, key=interval)
        for ca in sorted(a, key=interval):
            first, last = interval(ca)
            for cb in b_sorted:
                other_first, other_last = interval(cb)
                if first <= other_last and other_first <= last:
                    return ca, cb
        return None
    events = sorted([(*interval(c), 0, c) for c in a] + [(*interval(c), 1, c) for c in b])
    open_until = [(-1, ""), (-1, "")]  # per side: the furthest end seen so far, and its CIDR
    for first, last, side, cidr in events:
        other_end, other_cidr = open_until[1 - side]
        if other_end >= first:
            return (cidr, other_cidr) if side == 0 else (other_cidr, cidr)
        if last > open_until[side][0]:
            open_until[side] = (last, cidr)
    return None


class OverlapIndex:
    """Rules by their destination CIDRs, per priority: which rules of `rule`'s priority have a destination that
    overlaps one of its own, without testing every pair (a plan asks this for each changed policy, so testing
    every other policy made a plan of N policies quadratic).

    Two CIDRs never overlap partly: they are disjoint or one contains the other. So the CIDRs overlapping a
    CIDR c are its supernets (at most one per prefix length, looked up by network) and the CIDRs starting
    inside c (a range of the sorted starts). Not thread-safe: callers lock.
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        self._by_net: dict[tuple[int, int, int], set[str]] = {}  # (priority, network, prefix length) -> names
        self._starts: dict[int, list[tuple[int, int, str]]] = {}  # priority -> sorted (first, last, name)
        for r in rules:
            self.put(r)

    def put(self, rule: Rule) -> None:
        self.drop(rule.name)
        self._rules[rule.name] = rule
        starts = self._starts.setdefault(rule.priority, [])
        for cidr in rule.destinations:
            first, last = interval(cidr)
            self._by_net.setdefault((rule.priority, first, _prefix_length(first, last)), set()).add(rule.name)
            bisect.insort(starts, (first, last, rule.name))

    def drop(self, name: str) -> None:
        rule = self._rules.pop(name, None)
        if rule is None:
            return
        starts = self._starts[rule.priority]
        for cidr in rule.destinations:
            first, last = interval(cidr)
            key = (rule.priority, first, _prefix_length(first, last))
            self._by_net[key].discard(name)
            if not self._by_net[key]:
                del self._by_net[key]
            del starts[bisect.bisect_left(starts, (first, last, name))]

    def overlapping(self, rule: Rule) -> set[str]:
        """Names of the indexed rules (other than `rule` itself) of `rule`'s priority with a destination
        overlapping one of `rule`'s."""
        found: set[str] = set()
        starts = self._starts.get(rule.priority, [])
        for cidr in rule.destinations:
            first, last = interval(cidr)
            for length in range(_prefix_length(first, last) + 1):  # the CIDR itself and its supernets
                network = first & ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
                found |= self._by_net.get((rule.priority, network, length), set())
            at = bisect.bisect_left(starts, (first,))
            while at < len(starts) and starts[at][0] <= last:  # the CIDRs inside it
                found.add(starts[at][2])
                at += 1
        found.discard(rule.name)
        return found


def _prefix_length(first: int, last: int) -> int:
    return 32 - (last - first + 1).bit_length() + 1


def equal_priority_overlaps(rule: Rule, others: Iterable[Rule], limit: Optional[int] = None) -> list[tuple[str, str, str]]:
    """(other policy, CIDR of `rule`, CIDR of other): an overlap with a policy of the same priority, one per policy,
    in the order of `others`; at most `limit` of them (a plan warning names a few: no need to test every pair)."""
    out: list[tuple[str, str, str]] = []
    for other in others:
        if limit is not None and len(out) >= limit:
            break
        if other.name == rule.name or other.priority != rule.priority:
            continue
        found = _first_overlap(rule.destinations, other.destinations)
        if found:
            out.append((other.name, *found))
    return out
