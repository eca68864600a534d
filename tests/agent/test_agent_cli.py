"""egress-agent's command line: flags, YAML config, bad input (exit 2), sockets and shutdown."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from helpers.agent import AgentProcess, agent_command, start_agent


def run_agent(*args, timeout=15):
    return subprocess.run([*agent_command(), *args], capture_output=True, text=True, timeout=timeout)


def base_args(tmp_path):
    return ["--node", "worker1", "--node-ip", "192.0.2.11/24", "--socket", str(tmp_path / "a.sock"),
            "--store", f"sqlite:{tmp_path / 's.db'}"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--node-ip": "192.0.2.11"}, "--node-ip: '192.0.2.11' must be an IPv4 address with prefix length"),
        ({"--node-ip": "2001:db8::1/64"}, "IPv4 only"),
        ({"--node": "Worker_1"}, "--node: 'Worker_1' is not a valid node name"),
        ({"--store": "postgres:x"}, "--store postgres:x: unsupported store; use sqlite:PATH"),
        ({"--datapath": "ebpf"}, "--datapath ebpf: must be one of off"),
        ({"--listen": "localhost"}, "--listen localhost"),
        ({"--node": None}, "--node is required"),
        ({"--restart-window": "-1"}, "--restart-window -1: must be a whole number of seconds from 0 to 3600"),
        ({"--restart-window": "1.5"}, "--restart-window 1.5: must be a whole number of seconds from 0 to 3600"),
    ],
)
def test_bad_flags_exit_2_with_a_message(tmp_path, change, message):
    args = base_args(tmp_path)
    for flag, value in change.items():
        i = args.index(flag) if flag in args else None
        if value is None:
            del args[i : i + 2]
        elif i is None:
            args += [flag, value]
        else:
            args[i + 1] = value
    r = run_agent(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "s.db").exists()


def test_bad_role_is_an_argparse_error(tmp_path):
    r = run_agent(*base_args(tmp_path), "--role", "boss")
    assert r.returncode == 2 and "invalid choice: 'boss'" in r.stderr


def test_yaml_config_and_flag_override(tmp_path):
    conf = tmp_path / "agent.yaml"
    conf.write_text(
        "node: master1\nrole: master\nnode_ip: 192.0.2.2/24\ninterface: eth0\n"
        f"socket: {tmp_path / 'a.sock'}\nstore: sqlite:{tmp_path / 's.db'}\n"
    )
    agent = AgentProcess(tmp_path, node="ignored")
    agent.socket = tmp_path / "a.sock"
    agent_args = [*agent_command(), "--config", str(conf), "--node-ip", "192.0.2.3/24"]
    proc = subprocess.Popen(agent_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent.proc = proc
    try:
        agent.wait_healthy()
        node = agent.client.get_node("master1")
        assert (node.role, node.node_ip) == ("master", "192.0.2.3/24")  # the flag won over the file
    finally:
        agent.close()


def test_bad_yaml_config(tmp_path):
    conf = tmp_path / "agent.yaml"
    conf.write_text("node: w1\nnode_ip: 192.0.2.11/24\nsockett: /x\n")
    r = run_agent("--config", str(conf))
    assert r.returncode == 2 and "unknown setting(s) sockett" in r.stderr
    r = run_agent("--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml: No such file or directory" in r.stderr


def test_sigterm_shuts_down_cleanly_and_removes_the_socket(tmp_path):
    agent = start_agent(tmp_path)
    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o600
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait_exit(10) == 0
    assert not agent.socket.exists()
    assert "stopped" in agent.log()
    agent.proc = None
    agent.close()


def test_sigusr1_logs_every_threads_stack_and_the_agent_goes_on(tmp_path):
    with start_agent(tmp_path) as agent:
        agent.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while "in relay" not in agent.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Thread 0x" in agent.log() and "in relay" in agent.log()  # the signal thread's frame
        assert agent.client.health().status == "SERVING"
        agent.proc.send_signal(signal.SIGINT)
        assert agent.wait_exit(10) == 0 and "stopped" in agent.log()
        agent.proc = None


def test_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path):
    agent = start_agent(tmp_path)
    try:
        agent.kill()  # unclean: the socket file stays behind
        assert agent.socket.exists()
        agent.start()  # replaces the stale file
        assert agent.client.health().status == "SERVING"
        second = AgentProcess(tmp_path / "second", node="worker2", node_ip="192.0.2.12/24")
        second.socket = agent.socket
        r = subprocess.run(second.args, capture_output=True, text=True, timeout=15)
        assert r.returncode == 1 and "another process is already listening" in r.stderr
        assert agent.client.health().status == "SERVING"  # the running agent is untouched
    finally:
        agent.close()


def test_socket_path_that_is_not_a_socket_is_refused(tmp_path):
    (tmp_path / "a.sock").write_text("precious")
    r = run_agent(*base_args(tmp_path))
    assert r.returncode == 1 and "is not a socket" in r.stderr
    assert (tmp_path / "a.sock").read_text() == "precious"


def test_log_format_json_writes_one_object_per_line(tmp_path):
    import json

    with start_agent(tmp_path, extra_args=["--log-format", "json"]) as agent:
        agent.client.health()
        lines = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
        assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        up = next(line for line in lines if "up: node worker1" in line["message"])
        assert up["level"] == "info" and up["logger"] == "egress-agent" and up["time"].endswith("Z")
