"""The ``[pipeline]`` section: the warehouse's order pipeline and procurement agent (cheap to import).

With it, every arriving order goes through the order pipeline (inventory
lookup, price check, a stock reservation on the inventory primary) before it
may take a request slot on the floor, and a procurement agent restocks SKUs
that run low. The services it calls are configured by ``[inventory]``,
``[tools]`` and ``[[tool_faults]]`` (:mod:`desim.models.services.config`), the
guard between them by ``[guard]``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from desim.scenario import MAX_UNTIL, Section


class PipelineCfg(Section):
    brain: Literal["heuristic", "gullible", "rogue"] = Field(
        "heuristic", description="heuristic; gullible: obeys instructions found in tool payloads; "
                                 "rogue: tries an unauthorized restock now and then")
    max_attempts: int = Field(6, ge=1, le=1000, description="rounds (lookup, price, reserve) an order gets before it fails")
    recheck: float = Field(10.0, gt=0, le=MAX_UNTIL, description="seconds an order waits before its next round")
    price_tolerance: float = Field(0.05, ge=0, le=10, description="relative: a price further than this from the quote fails the order")
    low_water: int = Field(2, ge=0, le=1_000_000_000, description="procurement restocks a SKU at or below this")
    restock_qty: int = Field(10, ge=1, le=1_000_000, description="units per purchase order")
    rogue_every: int = Field(5, ge=1, le=1_000_000, description="rogue brain: a burst of unauthorized calls every N orders")
