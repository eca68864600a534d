"""Shared fixtures. `tests/` is put on sys.path so test files can `import helpers`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.agent import AgentProcess, start_agent  # noqa: E402
from helpers.agent_group import AgentGroup  # noqa: E402
from helpers.etcd import EtcdCluster, make_cluster  # noqa: E402


@pytest.fixture
def agent_process(tmp_path_factory) -> AgentProcess:
    """A real egress-agent (worker1, 192.0.2.11/24) on a temp socket and sqlite store; killed at teardown."""
    with start_agent(tmp_path_factory.mktemp("agent")) as agent:
        yield agent


@pytest.fixture
def etcd3(tmp_path) -> EtcdCluster:
    """A fresh 3-member etcd cluster on loopback that a test may stop members of; killed at teardown."""
    cluster = make_cluster(tmp_path / "etcd3", size=3)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def group(tmp_path, etcd3) -> AgentGroup:
    """worker1 (192.0.2.11), worker2 (192.0.2.12) and master1 (192.0.2.21), all Up, on `etcd3` (datapath off)."""
    g = AgentGroup(tmp_path, etcd3)
    try:
        g.add("worker1", "worker", "192.0.2.11/24")
        g.add("worker2", "worker", "192.0.2.12/24")
        g.add("master1", "master", "192.0.2.21/24")
        yield g
    finally:
        g.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a lab (`lab` fixture, an AgentLab) carries the tail of every agent's log,
    so a failure on a CI machine says what the agents saw: the lab and its logs are gone afterwards."""
    report = yield
    if report.when == "call" and report.failed:
        lab = getattr(item, "funcargs", {}).get("lab")
        tails = getattr(lab, "log_tails", None)
        if callable(tails):
            try:
                report.sections.append(("agent logs (last lines per node)", tails()))
            except Exception as e:  # the lab itself may be what broke
                report.sections.append(("agent logs", f"unavailable: {e}"))
    return report


def _descendants(pid: int) -> list[int]:
    """Live descendants of `pid`, from the ppid fields in /proc (Linux only, which the suite is)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may contain spaces
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pytest_sessionfinish(session):
    """Last line of defence: every fixture has been torn down by now, so a process the tests started that
    is still alive has leaked (a test that failed before its cleanup). Kill it and say which it was."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        if reporter is not None:
            reporter.write("\n")  # the progress line may still be open
            reporter.write_line(f"tests left process {pid} running, killed it: {cmd[:200]}", red=True)
