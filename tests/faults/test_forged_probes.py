"""Authenticated liveness: forged, replayed and unauthenticated probe traffic against real agents.

Real egress-agent processes on a real etcd exchange their UDP probes on loopback; the attacker
sniffs them with a raw socket and sends datagrams from any source port (tests/helpers/udp_raw.py,
root only). Faults are real: kill -9 and SIGSTOP. Failover keeps the bound the unauthenticated
detector had (tests/cluster/test_cluster_failover.py: under 1.5 s on this shared machine).
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from egress_agent.cluster import probe_wire as wire
from egress_api import models
from helpers.agent import wait_for
from helpers.agent_group import AgentGroup, agreed_status, leader_of, leader_terms, moves
from helpers.etcd import free_port, make_cluster
from helpers.metrics import scrape
from helpers.udp_raw import Flood, Sniffer

pytestmark = [pytest.mark.etcd, pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")]

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
FAILOVER_BOUND = 1.5
NODES = (("worker1", "worker", "192.0.2.11/24"), ("worker2", "worker", "192.0.2.12/24"),
         ("master1", "master", "192.0.2.21/24"))


def key_file(path, key: bytes) -> str:
    path.write_bytes(key)
    path.chmod(0o600)
    return str(path)


class Keyed:
    """Three agents sharing one --cluster-key-file, each with its metrics endpoint."""

    def __init__(self, base, etcd, key: bytes):
        self.key = key
        self.group = AgentGroup(base, etcd)
        self.metrics: dict[str, str] = {}
        kf = key_file(base / "probe.key", key)
        for name, role, ip in NODES:
            self.metrics[name] = f"127.0.0.1:{free_port()}"
            self.group.add(name, role, ip, extra=["--cluster-key-file", kf, "--metrics-listen", self.metrics[name]])

    def port(self, name: str) -> int:
        """The agent's probe port (its --listen port: UDP and TCP are separate spaces)."""
        args = self.group[name].args
        return int(args[args.index("--listen") + 1].rsplit(":", 1)[1])

    def rejected(self, name: str, **labels) -> float:
        return scrape(self.metrics[name]).value("egress_probe_rejected_total", **labels)


@pytest.fixture
def keyed(tmp_path):
    etcd = make_cluster(tmp_path / "etcd", size=1).start()
    k = None
    try:
        k = Keyed(tmp_path, etcd, os.urandom(32))
        yield k
    finally:
        if k:
            k.group.close()
        etcd.close()


def assigned(k: Keyed) -> tuple[dict, str, str]:
    """(holders, leader, a worker holding IPs that does not lead) once everyone agrees."""
    agents = k.group.running()
    for _ in range(3):
        agents[0].client.create_gateway(models.Gateway(name="default", floating_ips=IPS))
        st = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS) and set(s.nodes.values()) == {"Up"},
                           "the first assignment", timeout=15)
        leader = wait_for(lambda: leader_of(agents), what="one leader")
        victim = next((n for n in ("worker1", "worker2") if n != leader and n in st.floating_ips.values()), None)
        if victim:
            return st.floating_ips, leader, victim
        # A worker was briefly Down (a starved machine) and the leader holds everything: assign afresh.
        agents[0].client.delete_gateway("default")
    raise AssertionError(f"no worker other than the leader holds an IP: {st}")


def answers(captured: list[bytes]) -> list[bytes]:
    return [p for p in captured if len(p) > 4 and p[4] == wire.ANSWER]


def test_replayed_answers_of_a_paused_holder_do_not_keep_it_up(keyed):
    holders, leader, victim = assigned(keyed)
    others = [n for n, _, _ in NODES if n != victim]
    vport = keyed.port(victim)
    with Sniffer({vport}) as sniff:
        time.sleep(0.5)
    # The victim's genuine answers to each other agent, as an on-path attacker records them.
    recorded = [(vport, keyed.port(n), p) for n in others for p in answers(sniff.taken(vport, keyed.port(n)))]
    assert len(recorded) > 20, "too few answers captured"
    before = {n: keyed.rejected(n, kind="answer") for n in others}

    keyed.group[victim].pause()  # SIGSTOP: silent, its socket still bound
    try:
        t0 = time.monotonic()
        with Flood(recorded) as flood:
            st = agreed_status([keyed.group[n] for n in others], lambda s: victim not in s.floating_ips.values(),
                               "the paused holder's IPs to move", timeout=10)
            took = time.monotonic() - t0
            time.sleep(0.3)
        assert took < FAILOVER_BOUND, f"failover took {took:.2f}s under replayed answers"
        assert st.nodes[victim] == "Down" and flood.sent > 100
        for n in others:  # every replay was seen, judged and counted
            got = {r: keyed.rejected(n, kind="answer", reason=r) for r in (wire.REPLAYED, wire.STALE)}
            assert sum(got.values()) - before[n] > 50, (n, got)
    finally:
        keyed.group[victim].resume()


def test_forged_answers_for_a_killed_holder_do_not_keep_it_up(keyed):
    holders, leader, victim = assigned(keyed)
    others = [n for n, _, _ in NODES if n != victim]
    vport = keyed.port(victim)
    with Sniffer({vport}) as sniff:
        time.sleep(0.3)
    # Forgeries as good as an attacker without the key can make: echoing the others' real probes
    # (their sessions and seqs, sniffed), naming the real key id, plus today's plain-text answer.
    forged = []
    for n in others:
        probes = [wire.decode(p, {wire.key_id(keyed.key): keyed.key}.get)
                  for p in sniff.taken(keyed.port(n), vport) if p[4] == wire.PROBE]
        assert probes, f"no probes from {n} captured"
        last = probes[-1]
        for ahead in range(1, 40):  # answers to the probes it will send next
            msg = wire.Message(wire.ANSWER, wire.key_id(keyed.key), os.urandom(8), last.seq + ahead,
                               time.time_ns() // 1_000_000, victim, n, last.session, 0)
            good = wire.encode(msg, keyed.key)
            forged.append((vport, keyed.port(n), good[:-32] + os.urandom(32)))  # right key id, no key: bad MAC
            forged.append((vport, keyed.port(n), wire.encode(msg, os.urandom(32))))  # bad MAC too
        other_key = os.urandom(32)
        forged.append((vport, keyed.port(n), wire.encode(
            wire.Message(wire.ANSWER, wire.key_id(other_key), os.urandom(8), last.seq + 1, time.time_ns() // 1_000_000,
                         victim, n, last.session, 0), other_key)))
        forged.append((vport, keyed.port(n), f"PONG {last.seq} {victim} 0".encode()))  # what used to be accepted

    keyed.group[victim].kill()  # kill -9
    t0 = time.monotonic()
    with Flood(forged, every=0.005):
        st = agreed_status([keyed.group[n] for n in others], lambda s: victim not in s.floating_ips.values(),
                           "the killed holder's IPs to move", timeout=10)
        took = time.monotonic() - t0
        time.sleep(0.3)
    assert took < FAILOVER_BOUND, f"failover took {took:.2f}s under forged answers"
    assert st.nodes[victim] == "Down"
    for n in others:
        assert keyed.rejected(n, kind="answer", reason=wire.BAD_MAC) > 50
        assert keyed.rejected(n, kind="answer", reason=wire.WRONG_KEY) > 5
        assert keyed.rejected(n, kind="unknown", reason=wire.MALFORMED) > 5


def test_forged_and_replayed_traffic_cannot_make_a_healthy_node_down(keyed):
    holders, leader, victim = assigned(keyed)
    agents = keyed.group.running()
    ports = {n: keyed.port(n) for n, _, _ in NODES}
    with Sniffer(set(ports.values())) as sniff:
        time.sleep(0.5)
    datagrams = []
    for a in ports:
        for b in ports:
            if a != b:
                # Replays of a's real probes to b and of b's real answers to a, from a's and b's own ports ...
                datagrams += [(ports[a], ports[b], p) for p in sniff.taken(ports[a], ports[b])[:40]]
                # ... and forged probes and answers: another key, today's text protocol.
                key = os.urandom(32)
                for kind in (wire.PROBE, wire.ANSWER):
                    datagrams.append((ports[a], ports[b], wire.encode(wire.Message(
                        kind, wire.key_id(key), os.urandom(8), 1, time.time_ns() // 1_000_000, a, b), key)))
                datagrams += [(ports[a], ports[b], f"PING 1 {a}".encode()),
                              (ports[a], ports[b], f"PONG 1 {a} 99999".encode())]
    moves0, terms0 = moves(keyed.group[leader]), leader_terms(agents)
    with Flood(datagrams, every=0.01) as flood:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # nobody is Down at any moment
            st = keyed.group[leader].client.gateway_status("default")
            assert set(st.nodes.values()) == {"Up"}, st.nodes
            time.sleep(0.05)
    assert flood.sent > 1000
    assert moves(keyed.group[leader]) == moves0 and leader_terms(agents) == terms0 and leader_of(agents) == leader
    assert agreed_status(agents, lambda s: True, "a stable status").floating_ips == holders
    for n in ports:
        m = scrape(keyed.metrics[n])
        assert {s.labels["peer"]: s.value for s in m.samples("egress_peer_up")} == {p: 1 for p in ports if p != n}
        assert m.value("egress_probe_rejected_total", kind="probe", reason=wire.REPLAYED) > 0
        assert m.value("egress_probe_rejected_total", kind="answer", reason=wire.REPLAYED) > 0
        assert m.value("egress_probe_rejected_total", kind="probe", reason=wire.WRONG_KEY) > 0


def test_an_unauthenticated_sender_gets_no_answer(keyed):
    target = keyed.port("worker2")
    with Sniffer({target}) as sniff:
        time.sleep(0.3)
    real_probe = next(p for p in sniff.taken(keyed.port("worker1"), target) if p[4] == wire.PROBE)
    other_key = os.urandom(32)
    tries = [
        b"PING 1 worker1",  # the old protocol: answered with the node's name and etcd state
        wire.encode(wire.Message(wire.PROBE, wire.key_id(other_key), os.urandom(8), 1, time.time_ns() // 1_000_000,
                                 "worker1", "worker2"), other_key),
        real_probe,  # a genuine probe, replayed from elsewhere
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        for data in tries:
            s.sendto(data, ("127.0.0.1", target))
            with pytest.raises(socket.timeout):
                print("answered:", s.recvfrom(2048))
        # Control: a probe made with the key from this socket is answered, so silence above was a refusal.
        mine = wire.Message(wire.PROBE, wire.key_id(keyed.key), os.urandom(8), 1, time.time_ns() // 1_000_000,
                            "tester", "worker2")
        s.sendto(wire.encode(mine, keyed.key), ("127.0.0.1", target))
        reply = wire.decode(s.recvfrom(2048)[0], {wire.key_id(keyed.key): keyed.key}.get)
        assert (reply.kind, reply.sender, reply.receiver, reply.seq, reply.echo_session) == (
            wire.ANSWER, "worker2", "tester", 1, mine.session)


def test_agents_with_different_keys_see_each_other_down_and_say_why(tmp_path):
    etcd = make_cluster(tmp_path / "etcd", size=1).start()
    group = AgentGroup(tmp_path, etcd)
    metrics = {}
    try:
        for (name, role, ip), key in zip(NODES[:2], (os.urandom(32), os.urandom(32))):
            metrics[name] = f"127.0.0.1:{free_port()}"
            group.add(name, role, ip, extra=["--cluster-key-file", key_file(tmp_path / f"{name}.key", key),
                                             "--metrics-listen", metrics[name]])
        a, b = "worker1", "worker2"
        for me, peer in ((a, b), (b, a)):
            wait_for(lambda: scrape(metrics[me]).value("egress_peer_up", peer=peer) == 0 and
                     "the agents have different cluster keys" in group[me].log(), timeout=10,
                     what=f"{me} to see {peer} Down and say why")
            assert scrape(metrics[me]).value("egress_probe_rejected_total", kind="probe", reason=wire.WRONG_KEY) > 0
        leader = wait_for(lambda: leader_of(group.running()), what="one leader")
        other = b if leader == a else a
        wait_for(lambda: group[leader].client.get_node(other).state == "Down", what=f"{other} published Down")
    finally:
        group.close()
        etcd.close()
