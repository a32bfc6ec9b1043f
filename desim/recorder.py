"""The event trace and counters of one simulation.

The trace is a list of plain tuples ``(time, kind, *fields)``; its sha256
(``trace_hash``) proves determinism: the same scenario and seed give the same
hash, byte for byte.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any


class Recorder:
    """Collects trace records and named counters.

    ``keep_trace=False`` still hashes every record (so determinism can be
    proven on long runs) but does not keep the records in memory.
    """

    def __init__(self, keep_trace: bool = True):
        self.keep_trace = keep_trace
        self.trace: list[tuple] = []
        self.counters: Counter[str] = Counter()
        self._hasher = hashlib.sha256()
        self._pending: list[tuple] = []
        self.events = 0

    def record(self, t: float, kind: str, *fields: Any) -> None:
        self.events += 1
        self._pending.append((t, kind, *fields))
        if len(self._pending) >= 4096:
            self._flush()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def _flush(self) -> None:
        if not self._pending:
            return
        # repr of floats is exact and stable across runs on one platform
        self._hasher.update("\n".join(map(repr, self._pending)).encode())
        self._hasher.update(b"\n")
        if self.keep_trace:
            self.trace.extend(self._pending)
        self._pending = []

    @property
    def trace_hash(self) -> str:
        self._flush()
        return self._hasher.copy().hexdigest()

    def records(self) -> list[tuple]:
        self._flush()
        return self.trace
