"""Desired-state writes of one agent, committed in groups.

The writes waiting on one agent go to etcd together, in one guarded
transaction, each planned against the snapshot plus the ones before it
(`Writes`). What one write commits, and the rules it must pass (the other
objects, the guard, idempotent retries), is `server.write_plan`; this module
queues the requests, commits them, answers each caller, and refuses those
whose caller stopped waiting.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time

from egress_agent.server.write_plan import (
    Obj, Planned, Request, StaleVersion, guarded, kind_of, plan, read_desired, stale_message, staged,
)
from egress_agent.store import base
from egress_agent.store.base import META, Check, Delete, Put, Record

log = logging.getLogger(__name__)

# Retries only arise between agents (writes through one agent are committed in groups, one group at a
# time). A group that lost the guard to another agent's commit re-plans and tries again after a short
# jittered pause, for up to _RETRY_FOR_S. The pause is capped: with an exponential one, the agent that
# lost twice waited longest while the others kept winning, and its writers starved (p99 8 s at 50
# clients on 3 agents, bench/results/faults-throughput-*).
_RETRY_FOR_S = 8.0
_BACKOFF_S = 0.005
_BACKOFF_CAP_S = 0.03

# Turns between agents. The guard alone is first come, first served: the agent whose read, plan and commit
# are quickest keeps winning while a busier one re-plans again and again (ops per agent 410 / 585 / 636 at
# 50 clients on 3 agents). A group that lost the guard _STARVING times in a row claims the next turn: a
# META record naming its agent. The others see the claim in the snapshot they read anyway and hold their
# groups until its holder commits (that commit deletes the claim) or, for a holder that died or stalled,
# until they have seen the same claim for _TURN_S by their own clock (no clock is compared across nodes).
TURN = "writer-turn"
_STARVING = 2
_TURN_S = 0.5
_YIELD_S = 0.005


class Expired(Exception):
    """The caller stopped waiting for this write before the agent got to it (-> DEADLINE_EXCEEDED, nothing written)."""


# How far a caller's clock may be behind ours before its write deadline is taken as passed.
CLOCK_SKEW_S = 2.0


def _check_expiry(expires_at: float, what: str) -> None:
    """Refuse a write whose caller gave up (expires_at: Unix time, 0 = no limit): it may have retried elsewhere."""
    late = time.time() - expires_at if expires_at else 0.0
    if late > CLOCK_SKEW_S:
        log.warning("refused to %s %.1fs after its caller stopped waiting", what, late)
        raise Expired(f"the agent got to this write {late:.1f}s after the caller stopped waiting; not applied")


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(_BACKOFF_S * 2**attempt, _BACKOFF_CAP_S)))


class Writes:
    """The desired-state writes of one agent, committed in groups.

    Each request waits in one queue; whichever caller finds no commit under way takes everything queued
    and commits it as one guarded transaction (group commit): the requests are planned one after the
    other against the snapshot plus the earlier ones, so each is validated against exactly the world it
    lands in. At 50 concurrent clients one snapshot read and one etcd commit (one fsync per member)
    serve many writes instead of one, and one agent's writers no longer queue behind a lock each.

    A request that touches a record an earlier one in the group already touches waits for the next
    group (a transaction may not name a key twice, and its expected version is not known yet), as does
    one that would take the transaction past the store's operation limit.
    """

    def __init__(self, store: base.Store, node: str = ""):
        self.store = store
        self.node = node  # names this agent's turn claims (module comment at TURN)
        self._cv = threading.Condition()
        self._queue: list[_Waiting] = []
        self._committing = False
        self._claim_seen: tuple[int, float] = (0, 0.0)  # (version of another agent's claim, when first seen)
        self.commits = 0  # transactions committed (tests, bench)
        self.yields = 0  # attempts held back for another agent's turn (tests, bench)

    # `expires_at` is checked when a group takes the request: a paused agent's queued writes are refused.

    def create(self, obj: Obj, request_id: str = "", expires_at: float = 0.0) -> Record:
        return self.submit(Request(kind_of(obj), obj.name, obj, True, 0, request_id, expires_at))

    def update(self, obj: Obj, resource_version: int, request_id: str = "", expires_at: float = 0.0) -> Record:
        return self.submit(Request(kind_of(obj), obj.name, obj, False, resource_version, request_id, expires_at))

    def delete(self, kind: str, name: str, resource_version: int, expires_at: float = 0.0) -> None:
        self.submit(Request(kind, name, None, False, resource_version, "", expires_at))

    def submit(self, req: Request) -> Record | None:
        me = _Waiting(req)
        with self._cv:
            self._queue.append(me)
            while not me.done:
                if self._committing:
                    self._cv.wait()
                    continue
                self._committing, group, self._queue = True, self._queue, []
                self._cv.release()
                try:
                    left = self._commit_group(group)
                except BaseException as err:  # the store failed under everyone in the group
                    left = []
                    for w in group:
                        if not w.done:
                            w.finish(error=err)
                finally:
                    self._cv.acquire()
                    self._queue[:0] = left
                    self._committing = False
                    self._cv.notify_all()
        if me.error is not None:
            raise me.error
        return me.result

    def _commit_group(self, group: list["_Waiting"]) -> list["_Waiting"]:
        """Commit what fits of `group` (finishing each), return the requests left for the next group."""
        todo = _unexpired(group)
        limit = (self.store.max_commit_ops or 10_000) - 3  # the guard's Check and Put, the turn's Delete
        give_up = time.monotonic() + _RETRY_FOR_S
        lost = 0
        for attempt in itertools.count():
            if attempt:
                todo = _unexpired(todo)  # a caller may have stopped waiting while the group retried
            if not todo:
                return []
            if time.monotonic() > give_up:
                break
            d = read_desired(self.store)
            claim = d.snapshot.of(META).get(TURN)
            if self._others_turn(claim):
                self.yields += 1
                time.sleep(_YIELD_S)
                continue
            view, ops, touched = d, [], set()
            taken: list[tuple[_Waiting, Planned]] = []
            failed: list[tuple[_Waiting, BaseException]] = []
            left: list[_Waiting] = []
            for w in todo:
                if (w.req.kind, w.req.name) in touched:
                    left.append(w)  # its object changes in this group: plan it against the committed result
                    continue
                try:
                    p = plan(view, w.req)
                except Exception as err:  # the caller's error, valid in the world the group commits
                    failed.append((w, err))
                    continue
                keys = {(op.kind, op.name) for op in p.ops} | {(w.req.kind, w.req.name)}
                if taken and (keys & touched or len(ops) + len(p.ops) > limit):
                    left.append(w)
                    continue
                touched |= keys
                ops += p.ops
                taken.append((w, p))
                if p.ops:
                    view = staged(view, w.req, p)
            rev = 0
            mine = claim is not None and claim.value.get("node") == self.node
            if mine and not ops:  # nothing to commit after all (replays, refusals): hand the turn back
                self.store.commit([Delete(META, TURN)])
            if ops:
                try:
                    rev = self.store.commit(guarded(d, *ops, *([Delete(META, TURN)] if mine else [])))
                except base.Conflict as err:
                    if err.kind == META:
                        lost += 1  # another agent's write landed first: re-plan the group and retry
                        if lost >= _STARVING and not mine:
                            self._claim_turn(claim)
                        _backoff(attempt)
                        continue
                    # A record moved without the guard: the caller that expected its version is stale.
                    owner = next((w for w, p in taken if any((o.kind, o.name) == (err.kind, err.name) for o in p.ops)),
                                 taken[0][0])
                    owner.finish(error=StaleVersion(stale_message(owner.req.kind, owner.req.name,
                                                                   owner.req.resource_version, err.actual)))
                    todo = [w for w in todo if w is not owner]
                    continue
                self.commits += 1
            for w, err in failed:
                w.finish(error=err)
            for w, p in taken:
                w.finish(result=self._answer(w.req, p, rev))
            return left
        for w in todo:
            w.finish(error=base.Unavailable(f"{w.req.kind} {w.req.name!r}: other agents kept writing concurrently; "
                                            "try again"))
        return []

    def _others_turn(self, claim: Record | None) -> bool:
        """Whether another agent's turn claim holds this agent's group back now (module comment at TURN)."""
        if claim is None or claim.value.get("node") == self.node:
            return False
        now = time.monotonic()
        if self._claim_seen[0] != claim.version:
            self._claim_seen = (claim.version, now)
        return now - self._claim_seen[1] < _TURN_S

    def _claim_turn(self, claim: Record | None) -> None:
        """Claim the next turn unless another agent's claim still holds (then ours would only steal it)."""
        if self._others_turn(claim):
            return
        try:
            self.store.commit([Check(META, TURN, claim.version if claim else 0),
                               Put(META, TURN, {"node": self.node})])
        except base.Conflict:
            return  # another agent claimed it first: it goes next
        log.debug("writes on this agent lost the guard %d times in a row: claimed the next turn", _STARVING)

    @staticmethod
    def _answer(req: Request, p: Planned, rev: int) -> Record | None:
        if p.replayed is not None:
            log.info("%s %s %r: request %s was already applied (resource_version %d); answering with its result",
                     req.verb, req.kind, req.name, req.request_id, p.replayed.version)
            return p.replayed
        if req.obj is None:
            log.info("deleted %s %r (revision %d)", req.kind, req.name, rev)
            return None
        log.info("%s %s %r (resource_version %d%s)", "created" if req.create else "updated", req.kind, req.name, rev,
                 f", request {req.request_id}" if req.request_id else "")
        return Record(req.kind, req.name, p.value, rev)


def _unexpired(waiting: list["_Waiting"]) -> list["_Waiting"]:
    out = []
    for w in waiting:
        try:
            _check_expiry(w.req.expires_at, f"{w.req.verb} {w.req.kind} {w.req.name!r}")
            out.append(w)
        except Expired as err:
            w.finish(error=err)
    return out


class _Waiting:
    """A request in the queue, and its outcome once a group commit finished it."""

    def __init__(self, req: Request):
        self.req = req
        self.done = False
        self.result: Record | None = None
        self.error: BaseException | None = None

    def finish(self, result: Record | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
