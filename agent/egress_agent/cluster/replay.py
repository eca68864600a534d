"""Replay windows for the liveness probes: each authentic (sender, session, seq) is accepted once.

`SeqWindow` is the classic anti-replay window (as IPsec's): the highest sequence number seen
plus a bitmap of the `size` below it, so UDP reordering within the window is accepted and a
duplicate or anything older than the window is not.

`SenderWindows` keeps one window per (sender, session). A session is forgotten once nothing
was accepted from it for longer than `forget_after`, which the detector sets to twice its
clock window: every message of that session then carries a time too old to pass the clock
check, so forgetting its window cannot let a replay through.
"""

from __future__ import annotations


class SeqWindow:
    def __init__(self, size: int = 64):
        self.size = size
        self.highest = 0
        self._seen = 0  # bit i: highest - i was accepted

    def would_accept(self, seq: int) -> bool:
        if seq > self.highest:
            return True
        back = self.highest - seq
        return back < self.size and not (self._seen >> back) & 1 and seq > 0

    def accept(self, seq: int) -> bool:
        """True (and remembered) the first time `seq` is seen within the window; False otherwise."""
        if not self.would_accept(seq):
            return False
        if seq > self.highest:
            shift = seq - self.highest
            self._seen = ((self._seen << shift) | 1) & ((1 << self.size) - 1)
            self.highest = seq
        else:
            self._seen |= 1 << (self.highest - seq)
        return True


class SenderWindows:
    """Per-sender, per-session windows, for the probes this agent receives."""

    MAX_SESSIONS = 4  # per sender: a restarted agent's old session lingers until forgotten

    def __init__(self, forget_after: float, size: int = 64):
        self.forget_after = forget_after
        self.size = size
        self._windows: dict[str, dict[bytes, tuple[SeqWindow, float]]] = {}

    def accept(self, sender: str, session: bytes, seq: int, now: float) -> bool:
        sessions = self._windows.setdefault(sender, {})
        for old in [s for s, (_, seen) in sessions.items() if now - seen > self.forget_after]:
            del sessions[old]
        window, _ = sessions.get(session) or (SeqWindow(self.size), now)
        if not window.accept(seq):
            return False
        sessions[session] = (window, now)
        while len(sessions) > self.MAX_SESSIONS:  # only a key holder can make sessions: keep memory bounded
            del sessions[min(sessions, key=lambda s: sessions[s][1])]
        return True

    def forget(self, sender: str) -> None:
        self._windows.pop(sender, None)
