"""The tool guard: a kernel component between every agent and every tool, in SimPy time.

API (stable; ``docs/guard.md`` has the whole story)::

    from desim.guard import AllowRules, Guard, Payload, Response, ToolSpec, near
    from pydantic import Field

    class Stock(Payload):                       # a tool's output schema: strict, frozen, finite
        sku: str = Field(max_length=32)
        qty: int = Field(ge=0, le=100_000)
        version: int = Field(ge=0, le=10**12)

    guard = Guard(sim.env, sc.guard,            # the [guard] section (GuardCfg)
                  rules=AllowRules({"order_pipeline": {"lookup": ["inventory_lookup"], "pricing": ["price_check"]},
                                    "procurement": {"*": ["inventory_lookup", "restock"]}}),
                  streams=sim.rng)              # each agent's backoff jitter: stream "guard:<agent>"
    guard.add_tool(ToolSpec("inventory_lookup", schema=Stock, plausible=near("qty"),
                            fallback={"qty": 0}, timeout=0.5))
    guard.add_tool(ToolSpec("restock", idempotent=False, fallback=None))

    # in an agent's SimPy process:
    box = guard.sandbox("order-7", role="order_pipeline")
    out = yield box.call("inventory_lookup", invoke, state="lookup", request={"sku": "A1"},
                         context={"expected": belief.mean, "tolerance": 3 * belief.std})
    if out.ok: use(out.value)                   # a frozen Stock, never the tool's own object
    else:      act_safely(out.value, out.reason)  # out.fallback: the safe default, out.reason: why

    # at the end: the model's tables() gives {"guard": guard.log.columns(), ...}; summary: guard.summary()

``invoke(request)`` starts the real call: return a :class:`Response` (instant tool) or a SimPy
event (a process, or an event your reply handler succeeds) whose value is a ``Response(status,
payload, retry_after=None)``; a tool that answers over the network sends its request message and
returns the event its reply triggers. The guard waits at most the tool's ``timeout`` (else
``[guard] timeout``); a late answer is ignored, a failed event or a raised exception is a failure of
that call only. The returned process never fails: its value is an :class:`Outcome` (``ok``,
``value``, ``fallback``, ``reason``, ``decision``, ``attempts``, ``retries``, ``status``,
``started``, ``latency``).

Modules: :mod:`.core` (Guard, Sandbox, AllowRules, Response, ToolSpec, Outcome, GuardLog),
:mod:`.sanitize` (the four gates; Payload, Limits, near/within/all_of), :mod:`.backoff`,
:mod:`.breaker`, :mod:`.config` (the ``[guard]`` section), :mod:`.tables` (the ``guard`` store table,
declared whenever :mod:`.core` is imported).
"""
from importlib import import_module

from desim.guard.backoff import Backoff, delay as backoff_delay
from desim.guard.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from desim.guard.config import GuardCfg, register
from desim.guard.sanitize import (REJECT_CLASSES, Limits, Payload, Rejected, all_of, near, plain_copy, sanitize,
                                  smuggling, within)

# The call machinery (desim.guard.core) is imported on first use (PEP 562): it declares the store's
# ``guard`` table, and loading the [guard] section (at every scenario parse) needs none of it.
# (``sanitize`` above is the function; the module of the same name is ``desim.guard.sanitize``.)
_CORE = ("COLUMNS", "DECISIONS", "AllowRules", "Guard", "GuardLog", "Outcome", "Response", "Sandbox", "ToolSpec")

__all__ = ["AllowRules", "Backoff", "Breaker", "CLOSED", "COLUMNS", "DECISIONS", "Guard", "GuardCfg", "GuardLog",
           "HALF_OPEN", "Limits", "OPEN", "Outcome", "Payload", "REJECT_CLASSES", "Rejected", "Response", "Sandbox",
           "ToolSpec", "all_of", "backoff_delay", "near", "plain_copy", "register", "sanitize", "smuggling", "within"]


def __getattr__(name: str):
    if name in _CORE:
        return getattr(import_module("desim.guard.core"), name)
    raise AttributeError(f"module 'desim.guard' has no attribute {name!r}")
