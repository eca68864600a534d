"""The audit log: one JSON line per write (allowed or refused) and per leader change.

    {"time": "2026-11-27T02:31:07.114Z", "identity": "spiffe://egress/role/admin", "role": "admin",
     "method": "CreatePolicy", "object": "policy/frontend", "outcome": "OK", "resource_version": 42,
     "request_id": "9f...", "node": "worker1"}

`--audit-log PATH` appends to a file (created 0600; rotate it with
copytruncate, or move it away and the next line re-creates it), `--audit-log -`
writes to stderr. Reads are not logged: a plan refreshes every object, and the
log is for who changed what. `egressctl audit` prints and filters it.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from typing import Any


class AuditLog:
    def __init__(self, target: str, node: str):
        self.target = target
        self.node = node
        self._lock = threading.Lock()
        self._fd = -1

    def _open(self) -> int:
        if self.target == "-":
            return sys.stderr.fileno()
        if self._fd >= 0:
            try:  # moved away or deleted (rotation): start a new file at the path
                if os.stat(self.target).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
        os.makedirs(os.path.dirname(os.path.abspath(self.target)), exist_ok=True)
        # O_APPEND: each line is one write(2) at the end, whole, even with several writers.
        self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def record(self, **fields: Any) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        line = {"time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z", **fields,
                "node": self.node}
        data = (json.dumps(line, separators=(", ", ": ")) + "\n").encode()
        with self._lock:
            os.write(self._open(), data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
