"""Other work on this machine: busy processes that saturate its cores, for tests and benches of the detector."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Iterator


@contextlib.contextmanager
def busy_processes(n: int = 2) -> Iterator[None]:
    """`n` Python processes spinning at the caller's priority (two saturate this 2-core machine); killed on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
