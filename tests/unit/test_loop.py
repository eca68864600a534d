"""The shared background loop: triggers coalesce, resync and tick run on their own, a failing pass is
retried when it asks and never ends the thread."""

from __future__ import annotations

import threading
import time

from egress_agent.loop import Loop
from helpers.agent import wait_for


class Passes:
    def __init__(self, block: threading.Event | None = None, results=()):
        self.count = 0
        self.block = block
        self.results = list(results)

    def __call__(self):
        self.count += 1
        if self.block is not None:
            self.block.wait(5)
        if self.results:
            r = self.results.pop(0)
            if isinstance(r, Exception):
                raise r
            return r
        return None


def test_triggers_during_a_pass_coalesce_into_one_more_pass():
    gate = threading.Event()
    passes = Passes(block=gate)
    loop = Loop("t", passes, resync=60)
    loop.start()
    try:
        wait_for(lambda: passes.count == 1, timeout=2, interval=0.005, what="the first pass")
        for _ in range(50):
            loop.trigger()
        gate.set()
        wait_for(lambda: passes.count == 2, timeout=2, interval=0.005, what="one more pass")
        time.sleep(0.1)
        assert passes.count == 2
    finally:
        loop.stop()


def test_without_triggers_a_pass_runs_every_resync_and_a_tick_in_between():
    passes, ticks = Passes(), []
    loop = Loop("t", passes, resync=0.3, tick=lambda: ticks.append(time.monotonic()), tick_interval=0.05)
    loop.start(now=False)
    try:
        time.sleep(1.0)
    finally:
        loop.stop()
    assert 2 <= passes.count <= 3  # at about 0.3, 0.6 and 0.9 s
    assert len(ticks) >= 2 * passes.count  # every 0.05 s between them


def test_a_pass_that_asks_runs_again_after_its_delay_and_an_exception_does_not_end_the_loop():
    passes = Passes(results=[0.05, RuntimeError("boom"), None])
    loop = Loop("t", passes, resync=60)
    loop.start()
    try:
        wait_for(lambda: passes.count == 2, timeout=2, interval=0.005, what="the retry")
        loop.trigger()  # after the exception the thread still serves triggers
        wait_for(lambda: passes.count == 3, timeout=2, interval=0.005, what="a pass after the failure")
    finally:
        loop.stop()


def test_min_interval_spaces_passes_and_stop_ends_the_thread_promptly():
    passes = Passes()
    loop = Loop("t", passes, resync=60, min_interval=0.2)
    loop.start()
    wait_for(lambda: passes.count == 1, timeout=2, interval=0.005, what="the first pass")
    loop.trigger()
    time.sleep(0.1)
    assert passes.count == 1  # still within min_interval
    wait_for(lambda: passes.count == 2, timeout=2, interval=0.005, what="the second pass")
    began = time.monotonic()
    loop.stop()
    assert time.monotonic() - began < 0.5
