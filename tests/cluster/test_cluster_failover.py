"""Three real agents (worker1, worker2, master1) on a real 3-member etcd: assignment, failover, outages."""

from __future__ import annotations

import subprocess
import time

import pytest

from egress_api import errors, models
from helpers.agent import AgentProcess, ctl_command, wait_for
from helpers.agent_group import agreed_status, leader_of
from helpers.etcd import make_cluster

pytestmark = pytest.mark.etcd

IPS = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.103"]
GW = models.Gateway(name="default", floating_ips=IPS)


def test_assignment_failover_and_no_stealing_back(group):
    agents = group.running()
    group["worker1"].client.create_gateway(GW)
    st = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment")
    # The seed's rules: workers only while one can take an IP, balanced, deterministic.
    assert sorted(st.floating_ips.values()) == ["worker1", "worker1", "worker2", "worker2"]
    assert st.nodes == {"master1": "Up", "worker1": "Up", "worker2": "Up"}
    leader = wait_for(lambda: leader_of(agents), what="one leader everyone agrees on")
    out = subprocess.run(
        [*ctl_command(), "--endpoint", group["master1"].endpoint, "status"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert f"Leader:  {leader}" in out.stdout and "worker2" in out.stdout

    # kill -9 a worker holding IPs (not the leader, whose failover the next test covers).
    victim = "worker2" if leader != "worker2" else "worker1"
    survivor = "worker1" if victim == "worker2" else "worker2"
    victim_ips = sorted(ip for ip, n in st.floating_ips.items() if n == victim)
    group[victim].kill()
    others = [a for a in agents if a.node != victim]
    t0 = time.monotonic()
    st = agreed_status(others, lambda s: victim not in s.floating_ips.values(), "the IPs to move", timeout=10)
    took = time.monotonic() - t0
    assert took < 1.5, f"failover took {took:.2f}s"
    assert all(st.floating_ips[ip] == survivor for ip in victim_ips)  # a worker is preferred to the master
    assert st.nodes[victim] == "Down"
    assert all(a.client.get_node(victim).state == "Down" for a in others)
    moved = [e for e in others[0].client.list_events("gateway", "default") if e.reason == "FloatingIPMoved"]
    assert {ip for ip in victim_ips if any(f"{ip} moved from {victim} to {survivor}" in e.message for e in moved)} == set(
        victim_ips
    )

    # It comes back: Up again, but it takes nothing back (no flapping).
    before = dict(st.floating_ips)
    group[victim].start(timeout=30)
    agreed_status(group.running(), lambda s: s.nodes[victim] == "Up", "the node to be Up again")
    time.sleep(1.0)
    assert agreed_status(group.running(), lambda s: True, "a stable status").floating_ips == before

    # Two writers racing on one object through different agents: one wins, the other gets a conflict.
    version = group["worker1"].client.get_gateway("default").resource_version
    grown = models.Gateway(name="default", floating_ips=IPS + ["192.0.2.104"])
    group["worker1"].client.update_gateway(grown, resource_version=version)
    with pytest.raises(errors.Conflict):
        group["master1"].client.update_gateway(models.Gateway(name="default", floating_ips=IPS[:2]), resource_version=version)
    agreed_status(group.running(), lambda s: s.floating_ips.get("192.0.2.104") == victim, "the new IP on the idle node")


def test_leader_killed_another_leads_and_assignments_continue(group):
    agents = group.running()
    group["worker1"].client.create_gateway(GW)
    agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment")
    old = wait_for(lambda: leader_of(agents), what="a leader")
    group[old].kill()
    t0 = time.monotonic()
    rest = [a for a in agents if a.node != old]
    new = wait_for(lambda: (lambda n: n if n and n != old else "")(leader_of(rest)), timeout=8, what="a new leader")
    assert new in {"worker1", "worker2", "master1"} - {old}
    st = agreed_status(rest, lambda s: old not in s.floating_ips.values() and all(s.floating_ips.get(ip) for ip in IPS),
                       "the dead leader's IPs to move")
    # The probes depose the dead leader (its lease is revoked) instead of waiting ~2 s for the lease to expire.
    took = time.monotonic() - t0
    assert took < 1.5, f"leader failover took {took:.2f}s"
    assert st.nodes[old] == "Down"
    # The new leader keeps assigning: a new gateway gets its IP.
    rest[0].client.create_gateway(models.Gateway(name="second", floating_ips=["192.0.2.110"]))
    wait_for(lambda: rest[1].client.gateway_status("second").floating_ips.get("192.0.2.110"), what="the new IP assigned")


def _retry_unavailable(fn, timeout=15.0):
    """A write during etcd's own leader election may be refused for a moment; a client retries."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_etcd_member_loss_then_full_outage_fails_static_and_recovers(group, etcd3):
    agents = group.running()
    group["worker1"].client.create_gateway(GW)
    before = agreed_status(agents, lambda s: all(s.floating_ips.get(ip) for ip in IPS), "the first assignment").floating_ips

    etcd3.raft_leader().kill()  # one of three members gone (the hardest one)
    _retry_unavailable(lambda: group["master1"].client.create_gateway(models.Gateway(name="second", floating_ips=["192.0.2.110"])))
    agreed_status(agents, lambda s: s.floating_ips == before, "status with one etcd member down")
    wait_for(lambda: all(a.client.health().status == "SERVING" for a in agents), timeout=10, what="all agents healthy")

    etcd3.stop_all()
    health = wait_for(lambda: [h for h in (a.client.health() for a in agents) if h.status == "DEGRADED"] or None,
                      timeout=10, what="Health to report the outage")
    assert "etcd unavailable" in health[0].detail and not health[0].store_ok
    with pytest.raises(errors.Unavailable):
        agents[0].client.get_gateway("default")
    time.sleep(3.0)  # longer than the lease TTL: nobody may give up or take IPs
    assert all(a.proc.poll() is None for a in agents)

    etcd3.start_all()
    wait_for(lambda: all(a.client.health().status == "SERVING" for a in agents), timeout=20, what="recovery")
    st = agreed_status(agents, lambda s: s.nodes == {"master1": "Up", "worker1": "Up", "worker2": "Up"}, "all Up again")
    assert {ip: st.floating_ips[ip] for ip in IPS} == before  # no IP moved because of the outage
    _retry_unavailable(lambda: agents[1].client.create_policy(
        models.Policy(name="p", egress=[models.EgressRule()], destination_cidrs=["198.51.100.0/24"],
                      egress_source_ip="192.0.2.100")))


def test_agent_waits_for_etcd_at_start_and_says_why(tmp_path):
    etcd = make_cluster(tmp_path / "etcd", size=1)
    from helpers.etcd import free_port

    agent = AgentProcess(tmp_path / "a", node="worker1", extra_args=[
        "--store", etcd.store_url, "--listen", f"127.0.0.1:{free_port()}", "--datapath", "off"])
    try:
        log = open(agent.log_path, "ab")
        agent.proc = subprocess.Popen(agent.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: "cannot register node worker1 in etcd" in agent.log(), timeout=10, what="the retry log line")
        assert "connection refused" in agent.log() and agent.proc.poll() is None
        etcd.start()
        agent.wait_healthy(timeout=20)
        wait_for(lambda: agent.client.health().leader == "worker1", what="the lone agent to lead")
        wait_for(lambda: agent.client.list_nodes()[0].state == "Up", what="the node Up")
    finally:
        agent.close()
        etcd.close()


def test_bad_etcd_flags_are_rejected_with_the_flag_named(tmp_path):
    from helpers.agent import agent_command

    def run(*extra):
        return subprocess.run([*agent_command(), "--node", "w1", "--node-ip", "192.0.2.11/24", "--socket",
                               str(tmp_path / "s"), *extra], capture_output=True, text=True, timeout=30)

    r = run("--store", "etcd:http://127.0.0.1:2379")
    assert r.returncode == 2 and "needs --listen" in r.stderr
    r = run("--store", "etcd:127.0.0.1", "--listen", "127.0.0.1:7000")
    assert r.returncode == 2 and "--store etcd:127.0.0.1" in r.stderr and "HOST:PORT" in r.stderr
    r = run("--store", "etcd:http://127.0.0.1:2379", "--listen", "127.0.0.1:7000", "--lease-ttl", "0")
    assert r.returncode == 2 and "--lease-ttl" in r.stderr
