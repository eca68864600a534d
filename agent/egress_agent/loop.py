"""One background thread that runs a pass when triggered, and at least every `resync` seconds.

The controller, the datapath reconciler and the condition writer each follow records and redo their
work when any changes. They share this loop (the trigger of Cilium's resource + trigger pattern):

- any number of `trigger()` calls between two passes coalesce into one pass;
- with nothing triggered, a pass still runs every `resync` seconds (what a watch cannot tell: the
  node view, the kernel, leadership that came without a change);
- `tick`, when given, runs every `tick_interval` seconds between passes instead of a pass (the
  reconciler publishes its counters that way);
- after a pass, the loop waits `min_interval` before the next one, so a burst of changes is one pass;
- a pass returns how many seconds later it wants to run again (a race, a failing apply), or None.

The pass owns its error handling (it knows which failures are expected); the loop only logs what
escaped, so one bad pass never ends the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)

#: One pass; returns the seconds after which to run again regardless of triggers, or None.
Pass = Callable[[], Optional[float]]


class Loop:
    def __init__(self, name: str, run_pass: Pass, resync: float, min_interval: float = 0.0,
                 tick: Optional[Callable[[], None]] = None, tick_interval: float = 1.0):
        self.name = name
        self.run_pass = run_pass
        self.resync = resync
        self.min_interval = min_interval
        self.tick = tick
        self.tick_interval = tick_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, now: bool = True) -> None:
        """Start the thread; `now`: run a first pass at once (else at the first trigger or resync)."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if now:
            self._wake.set()

    def trigger(self) -> None:
        """Ask for a pass soon."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        last_pass = time.monotonic()
        wait = min(self.resync, self.tick_interval) if self.tick is not None else self.resync
        while not self._stop.is_set():
            woke = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not woke and self.tick is not None and time.monotonic() - last_pass < self.resync:
                self._guarded(self.tick)
                continue
            last_pass = time.monotonic()
            again = self._guarded(self.run_pass)
            if again is not None:
                self._stop.wait(again)
                self._wake.set()
            elif self.min_interval:
                self._stop.wait(self.min_interval)  # changes in between coalesce into the next pass

    def _guarded(self, fn: Callable[[], Optional[float]]) -> Optional[float]:
        try:
            return fn()
        except Exception:
            log.exception("%s: pass failed", self.name)
            return None
