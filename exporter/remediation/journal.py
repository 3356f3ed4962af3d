"""The running executor's journal in Redis: its lease, each retry's claim, each outcome as it
happens, so a plan whose executor dies leaves an exact record of what ran.

Per retry action the order is claim -> send -> record:

- claim: `retried:<task>` SET NX as `sending`, naming the new task id chosen before the send,
  held `DOUBT_HOLD_SECONDS`; the lease is checked and renewed in the same transaction.
- send: the new task goes out under that id.
- record: one transaction turns the claim `sent` (held `RETENTION`), pushes the outcome onto
  `plan:<id>:outcomes` and renews the lease.

A crash before the claim leaves the action not run. A crash between claim and record leaves a
`sending` claim: in doubt, since the send may or may not have happened. `recovery.py` settles
it once the new task id is seen (it was sent: the claim stays for good), and otherwise it
expires after the hold, so it never blocks the failure for long. A send that raised releases
its claim at once: it never left. Revoke and purge take no claim; their outcome is recorded
the same way.

The lease (`plan:<id>:lease`, the executor's token) is renewed by each step and by a heartbeat
thread. Once it is gone the executor stops before its next action (`LeaseLost`), and the plan
is shown as interrupted: a paused executor never races the one who reads it as dead.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from exporter.decode.plans import read_claim
from exporter.remediation.plan import DOUBT_HOLD_SECONDS, Plan, RetryClaim
from exporter.remediation.store import RETENTION, PlanStore, as_text

log = logging.getLogger(__name__)

# The lease outlives a missed heartbeat or two: one slow action (a revoke waiting for replies,
# a send to a broker that times out) renews it from the heartbeat thread, not from the loop.
LEASE_SECONDS = 10.0
HEARTBEAT_SECONDS = 2.0


class LeaseLost(Exception):
    """The plan's lease expired or was never ours: stop before the next action."""


class Journal:
    def __init__(self, store: PlanStore, plan: Plan, now: float) -> None:
        self.store, self.plan_id = store, plan.id
        self.client = store.client
        self.token = uuid.uuid4().hex
        self.ttl = store.ttl(plan, now)
        self._lost = threading.Event()

    # -- the plan's life ---------------------------------------------------------------------
    def start(self, plan: Plan) -> None:
        """Store the plan as executing, take the lease, list it among the executing plans."""
        s = self.store
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(s._plan_key(plan.id), plan.to_json(), ex=self.ttl)
            pipe.delete(s.outcomes_key(plan.id))
            pipe.set(s.lease_key(plan.id), self.token, px=int(LEASE_SECONDS * 1000))
            pipe.sadd(s.executing_key, plan.id)
            pipe.execute()

    def finish(self, plan: Plan, now: float) -> bool:
        """Store the finished plan, unless the lease was lost (then it is interrupted)."""
        s, lease = self.store, self.store.lease_key(self.plan_id)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(lease)
                if as_text(pipe.get(lease) or b"") != self.token:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.set(s._plan_key(plan.id), plan.to_json(), ex=s.ttl(plan, now))
                pipe.delete(lease)
                pipe.srem(s.executing_key, plan.id)
                pipe.execute()
            except redis.WatchError:  # only a lease that vanished changes it
                return False
        return True

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(self.plan_id)

    # -- retry claims ------------------------------------------------------------------------
    def claim(self, task_id: str, index: int, new_task_id: str) -> bool:
        """True when this plan may send the retry; False when another plan holds the failure."""
        claim = RetryClaim(self.plan_id, index, new_task_id, "sending")
        key = self.store.claim_key(task_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, claim.to_json(), nx=True, ex=DOUBT_HOLD_SECONDS)
            self._renew(pipe)
            claimed, lease, _ = pipe.execute()
        if as_text(lease or b"") != self.token:
            if claimed:
                self.client.delete(key)  # nothing was sent: leave no claim behind
            self._lost.set()
            raise LeaseLost(self.plan_id)
        return bool(claimed)

    def take_over(self, task_id: str, index: int, new_task_id: str, in_doubt: str) -> bool:
        """Replace an in-doubt claim on `in_doubt` (the approved plan names it), if its plan
        is no longer running; any other claim stands."""
        key = self.store.claim_key(task_id)
        claim = RetryClaim(self.plan_id, index, new_task_id, "sending")
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                old = read_claim(raw) if raw is not None else None
                if old is not None and (
                    old.sent or old.new_task_id != in_doubt or self.store.lease_alive(old.plan_id)
                ):
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.set(key, claim.to_json(), ex=DOUBT_HOLD_SECONDS)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def release(self, task_id: str) -> None:
        """The send raised: the retry never left, so the failure stays retryable."""
        self.client.delete(self.store.claim_key(task_id))

    # -- outcomes ----------------------------------------------------------------------------
    def record(self, outcome: dict[str, Any], sent: str | None = None) -> None:
        """Push one action's outcome (and mark `sent`'s claim sent) before the next action."""
        key = self.store.outcomes_key(self.plan_id)
        with self.client.pipeline(transaction=True) as pipe:
            if sent is not None:
                claim = RetryClaim(
                    self.plan_id, outcome["index"], outcome.get("new_task_id"), "sent"
                )
                pipe.set(self.store.claim_key(sent), claim.to_json(), ex=int(RETENTION))
            pipe.rpush(key, json.dumps(outcome, default=str))
            pipe.expire(key, self.ttl)
            self._renew(pipe)
            lease = pipe.execute()[-2]
        if as_text(lease or b"") != self.token:
            self._lost.set()
            raise LeaseLost(self.plan_id)

    # -- the lease ---------------------------------------------------------------------------
    def _renew(self, pipe: Any) -> None:
        lease = self.store.lease_key(self.plan_id)
        pipe.get(lease)
        # Extends only a lease that exists: once expired, the plan is interrupted for good.
        pipe.pexpire(lease, int(LEASE_SECONDS * 1000))

    @contextmanager
    def heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> Iterator[None]:
        """Renew the lease in the background while the body runs (an action may be slow)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    with self.client.pipeline(transaction=True) as pipe:
                        self._renew(pipe)
                        lease, _ = pipe.execute()
                except redis.RedisError as exc:
                    log.warning("plan %s: cannot renew its lease: %s", self.plan_id, exc)
                    continue
                if as_text(lease or b"") != self.token:
                    self._lost.set()
                    return

        thread = threading.Thread(target=beat, name=f"plan-{self.plan_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(interval + 1)
