"""The inventory service: a primary that takes writes under locks, replicas fed by a lagging stream.

**Reads.** Every read answers ``value`` with ``version`` (the log position of
the last write to that SKU the node has applied), ``lsn`` (the node's applied
log position) and ``as_of`` (the primary's time the node's state reflects:
the commit time of its last applied entry, or of the last heartbeat it was
caught up with). The primary answers with its own state, ``as_of = now``. A
replica's answer can be stale: an older ``version`` and an ``as_of`` behind
the clock. With read-your-writes on, a read carries the reader's last write
(``min_lsn``); a replica behind it forwards the read to the primary.

**Writes** are transactions of deltas ``[[sku, delta], ...]`` on the primary:
the locks (per SKU, or one for the table) are taken in the order given, each
waiting at most ``lock.timeout`` seconds (``lock_timeout``); a wait that would
close a cycle in the wait-for graph is refused at once (``deadlock``); under
the locks the write takes ``lock.hold`` seconds, then commits, unless a value
would go negative (``insufficient``). Each commit is one log entry.

**Replication** is asynchronous: each commit leaves for each replica after a
lag drawn from ``lag`` (per replica stream, FIFO: an entry never overtakes the
one before it), then crosses the network like any message. A replica applies
entries in log order; heartbeats carry the primary's position and time, so an
idle replica knows it is current, and one that misses entries (a partition
dropped them) asks for them again (``sync``) after two heartbeats that show
the gap. A partition that cuts a replica off freezes its ``as_of``; one that
cuts the primary off leaves writers without answers (their timeouts fire).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from desim.models.services.config import InventoryCfg, PRIMARY, replica_name
from desim.models.services.rpc import RpcAgent
from desim.network.distributions import DelaySampler

MSG = 96  # bytes of a read, a write, an answer
ENTRY = 24  # bytes per replicated entry


@dataclass
class Lock:
    holder: int | None = None
    queue: list = field(default_factory=list)  # (txn, event), first come first served


class LockManager:
    """Exclusive locks with FIFO queues, timeouts and wait-for-cycle (deadlock) detection.

    ``acquire`` is a generator returning None (granted) or the reason it was not."""

    def __init__(self, env):
        self.env = env
        self.locks: dict[Any, Lock] = {}
        self.held: dict[int, list] = {}  # txn -> keys it holds
        self.waiting_for: dict[int, Any] = {}  # txn -> key it waits for
        self.waits = self.timeouts = self.deadlocks = 0
        self.wait_time = 0.0

    def _cycle(self, txn: int, key) -> bool:
        """Would ``txn`` waiting for ``key`` close a cycle (holder chain back to ``txn``)?"""
        seen = set()
        holder = self.locks[key].holder
        while holder is not None and holder not in seen:
            if holder == txn:
                return True
            seen.add(holder)
            k = self.waiting_for.get(holder)
            holder = self.locks[k].holder if k is not None else None
        return False

    def acquire(self, txn: int, key, timeout: float):
        lock = self.locks.setdefault(key, Lock())
        if lock.holder is None or lock.holder == txn:
            lock.holder = txn
            self.held.setdefault(txn, []).append(key)
            return None
        if self._cycle(txn, key):
            self.deadlocks += 1
            return "deadlock"
        self.waits += 1
        t0 = self.env.now
        ev = self.env.event()
        lock.queue.append((txn, ev))
        self.waiting_for[txn] = key
        self.env.timeout(timeout).callbacks.append(lambda _e: ev.triggered or ev.succeed(False))
        granted = yield ev
        self.waiting_for.pop(txn, None)
        self.wait_time += self.env.now - t0
        if not granted:
            lock.queue = [(t, e) for t, e in lock.queue if e is not ev]
            self.timeouts += 1
            return "lock_timeout"
        self.held.setdefault(txn, []).append(key)
        return None

    def release_all(self, txn: int) -> None:
        for key in self.held.pop(txn, []):
            lock = self.locks[key]
            lock.holder = None
            while lock.queue:
                nxt, ev = lock.queue.pop(0)
                if not ev.triggered:
                    lock.holder = nxt
                    ev.succeed(True)
                    break


class InventoryPrimary(RpcAgent):
    """The primary: reads, write transactions under locks, the log, replication to each replica."""

    def __init__(self, sim, cfg: InventoryCfg, skus: int, name: str = PRIMARY):
        self.cfg = cfg
        self.stock = np.full(skus, cfg.initial_stock, dtype=np.int64)
        self.sku_version = np.zeros(skus, dtype=np.int64)
        self.log: list[tuple[int, float, int, int]] = []  # (lsn, t, sku, value): one per changed SKU
        self.lsn = 0
        self.commit_time = 0.0
        self.locks = LockManager(sim.env)
        self._hold = DelaySampler(cfg.lock.hold.to_dist(), sim.rng.stream("inventory:hold"))
        self.replicas = [replica_name(i) for i in range(1, cfg.replicas + 1)]
        self._lag = {r: DelaySampler(cfg.lag.to_dist(), sim.rng.stream(f"inventory:lag:{r}")) for r in self.replicas}
        self._next_out = {r: 0.0 for r in self.replicas}  # FIFO: when the stream to r is free again
        self._txn = 0
        self.commits = self.rejected = 0
        self.writes: list[tuple] = []  # (t, txn, ok, reason, items, lsn)
        super().__init__(sim, name)
        sim.env.process(self._heartbeats())

    # -- reads ----------------------------------------------------------------------
    def read(self, sku: int) -> dict:
        return {"sku": sku, "value": int(self.stock[sku]), "version": int(self.sku_version[sku]), "lsn": self.lsn,
                "as_of": self.sim.now, "node": self.name}

    def serve(self, msg) -> None:
        p = msg.payload
        if msg.kind == "inv_read":
            self.answer(msg, self.read(int(p["sku"])), size=MSG)
        elif msg.kind == "inv_write":
            self.sim.env.process(self._write(msg))
        elif msg.kind == "inv_sync":
            self._resend(msg.src, int(p["from"]))

    # -- writes ---------------------------------------------------------------------
    def _key(self, sku: int):
        return "table" if self.cfg.lock.granularity == "table" else sku

    def transact(self, items: list[tuple[int, int]], timeout: float | None = None):
        """A generator: apply ``items`` (sku, delta) atomically under their locks; returns a result dict."""
        env = self.sim.env
        txn = self._txn
        self._txn += 1
        timeout = self.cfg.lock.timeout if timeout is None else timeout
        reason = None
        for key in dict.fromkeys(self._key(s) for s, _d in items):  # each lock once, in the order given
            reason = yield from self.locks.acquire(txn, key, timeout)
            if reason is not None:
                break
        if reason is None:
            yield env.timeout(self._hold.next())
            new = {}
            for s, d in items:
                new[s] = new.get(s, int(self.stock[s])) + int(d)
            if any(v < 0 for v in new.values()):
                reason = "insufficient"
            else:
                self._commit(new)
        self.locks.release_all(txn)
        ok = reason is None
        self.commits += ok
        self.rejected += not ok
        self.writes.append((env.now, txn, ok, reason or "", items, self.lsn))
        return {"ok": ok, "reason": reason or "", "lsn": self.lsn,
                "values": {str(s): int(self.stock[s]) for s, _d in items}}

    def _write(self, msg):
        items = [(int(s), int(d)) for s, d in msg.payload["items"]]
        result = yield from self.transact(items)
        self.answer(msg, result, size=MSG)

    def _commit(self, new: dict[int, int]) -> None:
        now = self.sim.now
        self.lsn += 1
        self.commit_time = now
        entries = []
        for s, v in new.items():
            self.stock[s] = v
            self.sku_version[s] = self.lsn
            entry = (self.lsn, now, s, v)
            self.log.append(entry)
            entries.append(entry)
        for r in self.replicas:
            self._stream(r, {"entries": entries, "lsn": self.lsn, "t": now})

    # -- replication ----------------------------------------------------------------
    def _stream(self, replica: str, payload: dict) -> None:
        """Send on the FIFO replication stream to ``replica`` after its lag."""
        env = self.sim.env
        at = max(env.now + self._lag[replica].next(), self._next_out[replica])
        self._next_out[replica] = at
        size = MSG + ENTRY * len(payload["entries"])
        env.timeout(at - env.now).callbacks.append(lambda _e: self.send(replica, "inv_repl", payload, size=size))

    def _resend(self, replica: str, after: int) -> None:
        entries = [e for e in self.log if e[0] > after]
        if replica in self._lag:
            self._stream(replica, {"entries": entries, "lsn": self.lsn, "t": self.sim.now})

    def _heartbeats(self):
        env = self.sim.env
        while True:
            yield env.timeout(self.cfg.heartbeat)
            for r in self.replicas:
                self._stream(r, {"entries": [], "lsn": self.lsn, "t": env.now})


class InventoryReplica(RpcAgent):
    """A replica: applies the primary's entries in log order and answers reads from what it has."""

    def __init__(self, sim, cfg: InventoryCfg, skus: int, name: str, primary: str = PRIMARY):
        self.cfg, self.primary = cfg, primary
        self.stock = np.full(skus, cfg.initial_stock, dtype=np.int64)
        self.sku_version = np.zeros(skus, dtype=np.int64)
        self.lsn = 0
        self.as_of = 0.0
        self._buffer: dict[int, list] = {}  # lsn -> entries that arrived ahead of a gap
        self._gap_beats = 0
        self.syncs = self.forwarded = 0
        super().__init__(sim, name)

    def read(self, sku: int) -> dict:
        return {"sku": sku, "value": int(self.stock[sku]), "version": int(self.sku_version[sku]), "lsn": self.lsn,
                "as_of": self.as_of, "node": self.name}

    def serve(self, msg) -> None:
        p = msg.payload
        if msg.kind == "inv_read":
            if self.cfg.read_your_writes and int(p.get("min_lsn", 0)) > self.lsn:
                self.forwarded += 1  # behind the reader's own write: the primary answers it
                self.send(self.primary, "inv_read", p, size=MSG)
                return
            self.answer(msg, self.read(int(p["sku"])), size=MSG)
        elif msg.kind == "inv_repl":
            self._replicate(p)

    def _replicate(self, p: dict) -> None:
        for entry in p["entries"]:
            lsn = entry[0]
            if lsn > self.lsn:
                self._buffer.setdefault(lsn, []).append(entry)
        while self.lsn + 1 in self._buffer:
            entries = self._buffer.pop(self.lsn + 1)
            seen = set()
            for lsn, t, sku, value in entries:
                if sku in seen:
                    continue  # the same entry twice (a resend, a duplicate)
                seen.add(sku)
                self.stock[sku] = value
                self.sku_version[sku] = lsn
                self.as_of = t
            self.lsn += 1
        if self.lsn >= p["lsn"]:
            self.as_of = max(self.as_of, p["t"])  # caught up with the primary as of the message's time
            self._gap_beats = 0
        elif not p["entries"]:  # a heartbeat shows entries we do not have
            self._gap_beats += 1
            if self._gap_beats >= 2:
                self._gap_beats = 0
                self.syncs += 1
                self.send(self.primary, "inv_sync", {"from": self.lsn, "id": -1, "reply_to": self.name}, size=MSG)
