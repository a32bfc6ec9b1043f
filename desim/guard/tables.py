"""The ``guard`` run table: one row per guard decision (rows from :class:`desim.guard.GuardLog`).

Kept apart from the guard so that loading the ``[guard]`` section does not import the store.
Columns: ``t`` (simulated s), ``call`` (the call's number in the run), ``agent``, ``role``, ``tool``,
``state`` (the agent's state for the allow rules), ``decision`` (one of ``desim.guard.DECISIONS``),
``reason``, ``attempt`` (1 for the first attempt), ``delay`` (a retry's backoff, s) and
``breaker`` (the tool's breaker state after the decision) and ``latency`` (on the row that ends a call:
``pass``, ``fallback`` or ``direct``, the call's simulated seconds, sandbox switch and backoffs included).
"""
from __future__ import annotations

import pyarrow as pa

from desim.store import declare_table

GUARD = declare_table(
    "guard", {"t": pa.float64(), "call": pa.int64(), "agent": pa.string(), "role": pa.string(), "tool": pa.string(),
              "state": pa.string(), "decision": pa.string(), "reason": pa.string(), "attempt": pa.int64(),
              "delay": pa.float64(), "breaker": pa.string(), "latency": pa.float64()},
    required=("t", "tool", "decision"))
