"""Who is calling on the unix socket: the kernel's answer (SO_PEERCRED), mapped to a role.

Only needed when --socket-roles gives a role to someone other than root and the
agent's own user (at mode 0600 nobody else can connect, so the socket is served
directly). gRPC does not expose a unix-socket caller's credentials, so then the
agent's public socket is not gRPC's: a small relay accepts there, asks the kernel for the
caller's uid/gid/pid, maps them to a role (`SocketRoles`), and relays the bytes
to gRPC's own socket, which lives in a directory only the agent's user can
enter. Each relayed connection reaches gRPC from an abstract socket address of
its own (`egress-peer/<token>/<n>`), which is what gRPC reports as the call's
peer; the interceptor looks the caller up by it (`LocalPeers.identity`).
Nobody else can reach gRPC's socket, so nobody else can choose that address.

One asyncio thread relays every connection with flow control (a slow reader
stalls only its own connection). The relay costs one extra local hop per
message; bench/api.py measures it.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import secrets
import shutil
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import Optional

from egress_api import roles
from egress_api import transport

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024


class SocketRolesError(ValueError):
    pass


@dataclass(frozen=True)
class LocalCaller:
    uid: int
    gid: int
    pid: int
    role: str  # "" when the map gives this caller no role

    @property
    def principal(self) -> str:
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            user = str(self.uid)
        return f"unix:uid={self.uid}({user}),pid={self.pid}"


class SocketRoles:
    """`--socket-roles`: who gets which role on the unix socket.

    Comma-separated `WHO=ROLE` entries; WHO is a user (name or uid) or `@group` (name or gid).
    A user entry wins over a group entry; the caller's primary group is the one the kernel
    reports. The default gives root and the agent's own user `admin`, and nobody else anything.
    """

    def __init__(self, spec: str = ""):
        self.spec = spec
        self.users: dict[int, str] = {0: "admin", os.geteuid(): "admin"}
        self.groups: dict[int, str] = {}
        for entry in (e.strip() for e in spec.split(",")):
            if not entry:
                continue
            who, sep, role = entry.partition("=")
            who, role = who.strip(), role.strip()
            if not sep or not who or role not in roles.ROLES:
                raise SocketRolesError(f"--socket-roles {entry!r}: write WHO=ROLE, WHO a user or @group, ROLE one "
                                       f"of {', '.join(roles.ROLES)}")
            if who.startswith("@"):
                self.groups[_gid(who[1:])] = role
            else:
                self.users[_uid(who)] = role

    @classmethod
    def only(cls, role: str) -> "SocketRoles":
        """Root and the agent's own user get `role`, nobody else anything (--inventory-socket)."""
        roles_ = cls()
        roles_.spec = f"root={role}"
        roles_.users = {uid: role for uid in roles_.users}
        return roles_

    def role(self, uid: int, gid: int) -> str:
        return self.users.get(uid) or self.groups.get(gid, "")

    @property
    def others_allowed(self) -> bool:
        """Whether anyone but the agent's own user has a role (then the socket must be connectable by them;
        root needs no mode bits: it may connect to any socket)."""
        return bool(self.groups) or any(uid not in (0, os.geteuid()) for uid in self.users)


def _uid(name: str) -> int:
    return _numeric_id(name, lambda n: pwd.getpwnam(n).pw_uid, "user")


def _gid(name: str) -> int:
    return _numeric_id(name, lambda n: grp.getgrnam(n).gr_gid, "group")


def _numeric_id(name: str, lookup, what: str) -> int:
    """A uid/gid given as a number, or looked up by name."""
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)
    except KeyError:
        raise SocketRolesError(f"--socket-roles: no such {what} {name!r}") from None


class LocalPeers:
    """The relay on the public unix socket, and the identities of the callers it relays."""

    PEER_PREFIX = "unix-abstract:egress-peer/"

    def __init__(self, public_path: str, socket_roles: SocketRoles):
        self.public_path = public_path
        self.socket_roles = socket_roles
        # gRPC's socket: in a directory of the agent's user alone (0700), next to nothing else.
        self._private_dir = tempfile.mkdtemp(prefix="egress-agent-")
        self.grpc_target = f"unix://{os.path.join(self._private_dir, 'grpc.sock')}"
        self._token = secrets.token_hex(8)
        self._callers: dict[str, LocalCaller] = {}
        self._count = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread: Optional[threading.Thread] = None

    def identity(self, peer: str) -> Optional[LocalCaller]:
        """The caller behind a gRPC peer string, if it came through this relay."""
        if not peer.startswith(self.PEER_PREFIX):
            return None
        return self._callers.get(peer)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Listen on the public path (after gRPC serves its private socket)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._listen())
            except BaseException as err:  # noqa: BLE001 - reported to start()
                failure.append(err)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="unix-relay", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    async def _listen(self) -> None:
        path = self.public_path
        transport.remove_stale_socket(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = os.umask(0o177)  # never group/world-accessible between bind() and chmod()
        try:
            self._server = await asyncio.start_unix_server(self._relay, path=path, limit=_CHUNK)
        finally:
            os.umask(old)
        # Others reach the socket only when the role map names them; the map, not the mode, decides.
        os.chmod(path, 0o666 if self.socket_roles.others_allowed else 0o600)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            async def close() -> None:
                if self._server is not None:
                    self._server.close()
                for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                    task.cancel()
                loop.stop()

            asyncio.run_coroutine_threadsafe(close(), loop)
            if self._thread is not None:
                self._thread.join(timeout=5)
        transport.remove_socket(transport.parse_target(self.public_path))
        shutil.rmtree(self._private_dir, ignore_errors=True)

    # --- one connection ------------------------------------------------------------------------

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
        caller = LocalCaller(uid, gid, pid, self.socket_roles.role(uid, gid))
        self._count += 1
        name = f"egress-peer/{self._token}/{self._count}"
        peer = "unix-abstract:" + name
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.setblocking(False)
            upstream.bind("\0" + name)
            await asyncio.get_running_loop().sock_connect(upstream, self.grpc_target[len("unix://"):])
            up_reader, up_writer = await asyncio.open_unix_connection(sock=upstream, limit=_CHUNK)
        except OSError as err:
            upstream.close()
            log.warning("unix socket: cannot relay %s to the API server: %s", caller.principal, err)
            writer.close()
            return
        self._callers[peer] = caller
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._callers.pop(peer, None)
            for w in (writer, up_writer):
                w.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()  # flow control: stop reading while the other side is not reading
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
