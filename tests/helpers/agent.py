"""Start a real `egress-agent` process on a temp unix socket with a temp sqlite store.

    from helpers.agent import AgentProcess, start_agent

    with start_agent(tmp_path) as agent:      # waits for Health
        agent.client.create_gateway(...)
        agent.restart()                       # same socket, same store
    # the process is killed and its socket removed

`agent_process` in tests/conftest.py is the pytest fixture form.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from egress_api import errors
from egress_api.client import EgressClient

BIN = Path(sys.executable).parent


def agent_command() -> list[str]:
    """The installed console script (what users run); `python -m` if it is missing."""
    exe = BIN / "egress-agent"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "egress_agent.cmd.agent"]


def ctl_command() -> list[str]:
    exe = BIN / "egressctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "egress_agent.cmd.ctl"]


def short_dir(base: Path) -> Path:
    """A directory for unix sockets: `base` unless its path is too long for sun_path (107 bytes)."""
    if len(str(base / "agent.sock")) < 100:
        return base
    return Path(tempfile.mkdtemp(prefix="egr-"))


class AgentProcess:
    def __init__(
        self,
        workdir: Path,
        node: str = "worker1",
        role: str = "worker",
        node_ip: str = "192.0.2.11/24",
        extra_args: Sequence[str] = (),
        env: Optional[dict[str, str]] = None,
        netns: Optional[str] = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._sockdir = short_dir(self.workdir)
        self.socket = self._sockdir / "agent.sock"
        self.pod_socket = self._sockdir / "pods.sock"  # the CNI plugin's (--inventory-socket), if in extra_args
        self.store_path = self.workdir / "state.db"
        self.log_path = self.workdir / "agent.log"
        self.node, self.role, self.node_ip = node, role, node_ip
        self.extra_args = list(extra_args)
        self.env = env
        self.netns = netns  # run inside this network namespace (`ip netns exec` execs: same pid)
        self.proc: Optional[subprocess.Popen] = None
        self._client: Optional[EgressClient] = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def args(self) -> list[str]:
        return [
            *(["ip", "netns", "exec", self.netns] if self.netns else []),
            *agent_command(),
            "--node", self.node,
            "--role", self.role,
            "--node-ip", self.node_ip,
            "--socket", str(self.socket),
            "--store", f"sqlite:{self.store_path}",
            *self.extra_args,
        ]

    @property
    def client(self) -> EgressClient:
        if self._client is None:
            self._client = EgressClient(self.endpoint, timeout=10)
        return self._client

    def start(self, timeout: float = 15.0) -> "AgentProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}
        )
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"egress-agent exited with {self.proc.returncode}:\n{self.log()}")
            # A fresh channel per probe: a failed channel backs off for ~1 s before reconnecting.
            if self.socket.exists():
                with EgressClient(self.endpoint, timeout=1) as probe:
                    try:
                        if probe.health().status == "SERVING":
                            return
                    except errors.Unavailable:
                        pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"egress-agent not healthy after {timeout}s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (a restart: in a cluster the node keeps its IPs for --restart-window), then SIGKILL if it
        does not exit; returns the exit status."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused agent cannot handle SIGTERM
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def leave(self, timeout: float = 10.0) -> int:
        """SIGINT: the agent stops for good; the node releases its floating IPs and the others take them."""
        return self.stop(timeout, signal.SIGINT)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """The exit status of an agent told to stop; if it does not exit in time, fail with every
        thread's stack (SIGUSR1 makes the agent write them to its log) instead of a bare timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            raise AssertionError(f"egress-agent still running {timeout}s after it was told to stop; its log "
                                 f"ends with every thread's stack:\n{self.log()[-20000:]}") from None

    def kill(self) -> None:
        """SIGKILL: an unclean stop (the socket file stays behind)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the process is frozen as by a long GC pause or VM steal (sockets stay open)."""
        assert self.proc is not None, f"{self.node} is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP (what `systemctl reload` sends): the agent re-reads its --config file."""
        assert self.proc is not None, f"{self.node} is not running"
        self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> "AgentProcess":
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        self.stop()
        if self._sockdir != self.workdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)

    def __enter__(self) -> "AgentProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_agent(workdir: Path, **kwargs) -> AgentProcess:
    """A started, healthy agent; use as a context manager (or call .close()) to kill it."""
    agent = AgentProcess(workdir, **kwargs)
    try:
        return agent.start()
    except BaseException:
        agent.close()
        raise


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
