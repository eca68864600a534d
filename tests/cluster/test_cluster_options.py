"""The failure detector's timing as agent settings: --probe-interval / --probe-misses (or YAML keys)."""

from __future__ import annotations

import subprocess
import time

import pytest

from helpers.agent import agent_command, wait_for

pytestmark = pytest.mark.etcd


def test_bad_probe_settings_exit_2_naming_the_flag(tmp_path):
    def run(*extra):
        return subprocess.run([*agent_command(), "--node", "w1", "--node-ip", "192.0.2.11/24", "--socket",
                               str(tmp_path / "s"), "--store", "etcd:http://127.0.0.1:2379",
                               "--listen", "127.0.0.1:7000", *extra], capture_output=True, text=True, timeout=30)

    for flag, value in (("--probe-interval", "0"), ("--probe-interval", "fast"), ("--probe-interval", "120"),
                        ("--probe-misses", "0"), ("--probe-misses", "1.5"),
                        ("--lease-keepalive", "0"), ("--lease-keepalive", "2"), ("--lease-keepalive", "soon")):
        r = run(flag, value)
        assert r.returncode == 2, (flag, value, r.stderr)
        assert f"{flag} {value}: must be" in r.stderr, r.stderr

    conf = tmp_path / "agent.yaml"
    conf.write_text("probe_misses: -1\n")
    r = run("--config", str(conf))
    assert r.returncode == 2 and "--probe-misses -1: must be a whole number >= 1" in r.stderr, r.stderr


def test_probe_settings_reach_the_detector(tmp_path, empty_group):
    """1 s probe timeout (0.1 s x 10) with a 5 s lease: a killed node is Down after ~1 s, not the default 0.2 s."""
    group = empty_group
    conf = tmp_path / "worker1.yaml"
    conf.write_text("probe_interval: 0.1\nprobe_misses: 10\n")  # worker1 from YAML, worker2 from flags
    leader = group.add("worker1", "worker", "192.0.2.11/24", extra=["--config", str(conf), "--lease-ttl", "5"])
    wait_for(lambda: leader.client.health().leader == "worker1", what="worker1 to lead")
    victim = group.add("worker2", "worker", "192.0.2.12/24",
                       extra=["--probe-interval", "0.1", "--probe-misses", "10", "--lease-ttl", "5",
                              "--lease-keepalive", "1"])
    wait_for(lambda: leader.client.get_node("worker2").state == "Up", what="worker2 Up")
    assert "probes every 0.1s, a peer is Down after 10 misses (1000 ms)" in leader.log()
    assert "lease TTL 5s, keepalive every 0.5s" in leader.log()  # the default
    assert "lease TTL 5s, keepalive every 1s" in victim.log()
    victim.kill()
    t0 = time.monotonic()
    wait_for(lambda: leader.client.get_node("worker2").state == "Down", timeout=10, interval=0.02, what="worker2 Down")
    took = time.monotonic() - t0
    # Default probes would say Down in ~0.2 s; the 5 s lease would take >= 5 s.
    assert 0.8 < took < 3.0, f"Down after {took:.2f}s"


def test_a_cluster_key_file_must_be_private_long_enough_and_for_a_cluster(tmp_path, empty_group):
    def run(*extra, store="etcd:http://127.0.0.1:2379"):
        return subprocess.run([*agent_command(), "--node", "w1", "--node-ip", "192.0.2.11/24", "--socket",
                               str(tmp_path / "s"), "--store", store, "--listen", "127.0.0.1:7000", *extra],
                              capture_output=True, text=True, timeout=30)

    key = tmp_path / "probe.key"
    key.write_bytes(b"x" * 40)
    key.chmod(0o644)
    r = run("--cluster-key-file", str(key))
    assert r.returncode == 2 and f"--cluster-key-file {key}: mode 0644 lets other users read" in r.stderr, r.stderr
    assert f"chmod 600 {key}" in r.stderr
    key.chmod(0o600)
    key.write_bytes(b"x" * 31)
    r = run("--cluster-key-file", str(key))
    assert r.returncode == 2 and "31 bytes; the cluster key must be 32 to 4096 bytes" in r.stderr, r.stderr
    r = run("--cluster-key-file", str(tmp_path / "missing"))
    assert r.returncode == 2 and "No such file" in r.stderr, r.stderr
    key.write_bytes(b"x" * 32)
    r = run("--cluster-key-file", str(key), store=f"sqlite:{tmp_path / 'db'}")
    assert r.returncode == 2 and "--cluster-key-file needs --store etcd:" in r.stderr, r.stderr

    # A good file from YAML: the agent says which key it uses (its id, never the key).
    conf = tmp_path / "w1.yaml"
    conf.write_text(f"cluster_key_file: {key}\n")
    agent = empty_group.add("worker1", "worker", "192.0.2.11/24", extra=["--config", str(conf)])
    assert f"authenticated with the cluster key from file {key} (key id " in agent.log()
    assert "x" * 32 not in agent.log()
    # --help documents it.
    out = subprocess.run([*agent_command(), "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--cluster-key-file PATH" in out and "forge probes" in out.replace("\n", " ").replace("  ", " ")
