"""Real etcd processes for tests: one member or a 3-member cluster on loopback.

Each member is Debian's `etcd` binary started as a plain process with its data
directory under the test's tmp dir and free 127.0.0.1 ports. Members can be
stopped (SIGTERM), killed (SIGKILL) and restarted with their data, so tests can
take a member or the whole cluster away and bring it back. `EtcdCluster.close`
kills everything; the fixtures call it at teardown whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import requests

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    log_path: Path
    proc: Optional[subprocess.Popen] = None
    started_once: bool = False
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused member cannot handle SIGTERM
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: a hung member (its sockets accept connections but nothing answers)."""
        assert self.proc is not None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    # Raft timing: Debian's defaults (100 ms heartbeat, 1 s election timeout) unless a test asks otherwise.
    heartbeat_ms: int = 100
    election_ms: int = 1000
    # Client TLS: {"ca": ..., "cert": ..., "key": ...} (server cert for 127.0.0.1, client certs required).
    tls: Optional[dict] = None
    _logs: list = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def store_url(self) -> str:
        """The agent's `--store` value for this cluster."""
        return "etcd:" + ",".join(self.endpoints)

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start_member(self, member: EtcdMember) -> None:
        assert not member.running, f"{member.name} is already running"
        member.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            ETCD,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.url,
            "--advertise-client-urls", member.url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", self._initial_cluster(),
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"egress-test-{os.getpid()}-{id(self)}",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--log-level", "warn",
            "--logger", "zap",
        ]
        if self.tls:
            args += ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"],
                     "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        log = open(member.log_path, "ab")
        self._logs.append(log)
        member.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        member.started_once = True

    def start(self) -> "EtcdCluster":
        """Starts every member and waits for health; on failure kills them all before raising, since
        `cluster = make_cluster(...).start()` leaves the caller nothing to close."""
        try:
            for m in self.members:
                self.start_member(m)
            self.wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def restart_member(self, member: EtcdMember) -> None:
        self.start_member(member)
        try:
            self.wait_member_healthy(member)
        except BaseException:
            member.kill()
            raise

    def wait_member_healthy(self, member: EtcdMember, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if member.proc is not None and member.proc.poll() is not None:
                raise RuntimeError(f"etcd {member.name} exited with {member.proc.returncode}: {self.log_tail(member)}")
            try:
                kw = {"verify": self.tls["ca"], "cert": (self.tls["cert"], self.tls["key"])} if self.tls else {}
                r = requests.get(member.url + "/health", timeout=1, **kw)
                if r.status_code == 200 and r.json().get("health") == "true":
                    return
                last = r.text
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.05)
        raise TimeoutError(f"etcd {member.name} not healthy after {timeout}s ({last}): {self.log_tail(member)}")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        for m in self.members:
            if m.running:
                self.wait_member_healthy(m, timeout)

    def raft_leader(self) -> EtcdMember:
        """The member that is etcd's raft leader now."""
        for m in self.members:
            if not m.running:
                continue
            kw = {"verify": self.tls["ca"], "cert": (self.tls["cert"], self.tls["key"])} if self.tls else {}
            st = requests.post(m.url + "/v3/maintenance/status", json={}, timeout=2, **kw).json()
            if st["leader"] == st["header"]["member_id"]:
                return m
        raise RuntimeError("no raft leader among the running members")

    def follower(self) -> EtcdMember:
        """A running member that is not the raft leader (killing it stalls nothing)."""
        leader = self.raft_leader()
        return next(m for m in self.members if m.running and m is not leader)

    def log_tail(self, member: EtcdMember, lines: int = 20) -> str:
        try:
            return "\n".join(member.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_all(self) -> None:
        for m in self.members:
            m.stop()

    def start_all(self) -> None:
        try:
            for m in self.members:
                if not m.running:
                    self.start_member(m)
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for m in self.members:
            m.kill()
        for log in self._logs:
            log.close()
        self._logs.clear()


def make_tls(base: Path) -> dict:
    """A throwaway CA and one certificate for 127.0.0.1 (used by etcd and its clients), made with openssl.

    Both are strict RFC 5280 certificates (key usages, key identifiers): Python 3.13's default TLS context
    (and urllib3's, so requests') verifies with VERIFY_X509_STRICT and rejects a CA without keyUsage — the
    client then aborts the handshake, which etcd logs as "tls: bad record MAC".
    """
    base.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key = (str(base / n) for n in ("ca.pem", "ca.key", "cert.pem", "cert.key"))
    cnf = base / "openssl.cnf"  # our own config, so the system's openssl.cnf defaults play no part
    cnf.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = egress-test\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-config", str(cnf), "-extensions", "ca", "-newkey", "rsa:2048", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=egress-test-ca")
    run("req", "-new", "-config", str(cnf), "-newkey", "rsa:2048", "-nodes", "-keyout", key,
        "-out", str(base / "cert.csr"), "-subj", "/CN=egress-test")
    run("x509", "-req", "-in", str(base / "cert.csr"), "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "1", "-extfile", str(cnf), "-extensions", "leaf")
    return {"ca": ca, "cert": cert, "key": key}


class EtcdStalls:
    """While entered, every member of `cluster` is frozen (SIGSTOP) for `stall` seconds every `period`
    seconds, all at once: etcd as slow as a cluster whose disks stall on fsync. Short of the election
    timeout, raft keeps its leader; clients see requests that take up to `stall` longer."""

    def __init__(self, cluster: "EtcdCluster", stall: float, period: float):
        assert 0 < stall < period
        self.cluster, self.stall, self.period = cluster, stall, period
        self.stalls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-stalls", daemon=True)

    def __enter__(self) -> "EtcdStalls":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period - self.stall):
            for m in self.cluster.members:
                m.pause()
            self.stalls += 1
            try:
                self._stop.wait(self.stall)
            finally:
                for m in self.cluster.members:
                    m.resume()


def make_cluster(base: Path, size: int = 1, tls: Optional[dict] = None, **timing) -> EtcdCluster:
    """An unstarted cluster of `size` members under `base` (call `.start()`)."""
    members = []
    for i in range(size):
        name = f"etcd{i}"
        members.append(
            EtcdMember(
                name=name,
                data_dir=base / name / "data",
                client_port=free_port(),
                peer_port=free_port(),
                log_path=base / f"{name}.log",
                scheme="https" if tls else "http",
            )
        )
    (base).mkdir(parents=True, exist_ok=True)
    return EtcdCluster(members=members, tls=tls, **timing)
