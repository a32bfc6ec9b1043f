"""The services' scenario sections, the nodes they put on the topology, their checks.

Sections (registered by the warehouse's plugin, the model that uses them):

- ``[inventory]``: the inventory database: replicas, replication lag (a
  ``DelayCfg``, as a link's delay), heartbeat, read-your-writes, where the
  lookup tool reads, initial stock, locks (granularity, hold time, timeout);
- ``[tools]``: each tool service's latency and optional token-bucket rate
  limit (``[tools.inventory_lookup]``, ``[tools.price_check]``,
  ``[tools.restock]``), the restock's supplier lead time;
- ``[[tool_faults]]``: the fault injector's schedule, like the network's
  ``[[faults]]``: ``at``, ``duration``, ``tool``, ``kind``, ``rate``.

This module is imported when plugins load, so it stays cheap (no Mesa, no SimPy).
"""
from __future__ import annotations

from typing import Literal

import networkx as nx
from pydantic import Field, model_validator

from desim.network.config import MAX_DELAY, DelayCfg
from desim.registry import SectionSpec, sections
from desim.scenario import MAX_UNTIL, ScenarioError, Section

# -- names on the topology -------------------------------------------------------
PRIMARY = "inventory"
ORDERS = "orders"
PROCUREMENT = "procurement"
TOOLS = ("inventory_lookup", "price_check", "restock")
TOOL_NODES = {"inventory_lookup": "tool-lookup", "price_check": "tool-price", "restock": "tool-restock"}
FAULT_KINDS = ("error_500", "error_503", "throttle", "timeout", "slow", "malformed", "byzantine")
MALFORMED = ("wrong_type", "missing_field", "nan", "huge", "injection")


def replica_name(i: int) -> str:
    """Replica ``i`` (1-based) of the inventory primary."""
    return f"{PRIMARY}-r{i}"


class LockCfg(Section):
    """Write locks on the primary: per SKU or one for the whole table (coarse: contention at any load)."""

    granularity: Literal["sku", "table"] = "sku"
    hold: DelayCfg = Field(DelayCfg(dist="constant", mean=0.01), description="seconds a write holds its lock")
    timeout: float = Field(2.0, gt=0, le=MAX_DELAY, description="seconds a writer waits for a lock before it gives up")


class InventoryCfg(Section):
    """The inventory database: a primary and replicas fed by an asynchronous, lagging replication stream."""

    replicas: int = Field(2, ge=0, le=16)
    lag: DelayCfg = Field(DelayCfg(dist="lognormal", mean=0.5, jitter=0.3),
                          description="replication lag: seconds from a commit to its entry leaving for a replica")
    heartbeat: float = Field(1.0, ge=0.01, le=MAX_DELAY, description="seconds between the primary's heartbeats to replicas")
    read_your_writes: bool = Field(False, description="a reader's read waits for (is sent to the primary for) its own writes")
    read_from: Literal["replica", "primary"] = Field("replica", description="where the lookup tool reads")
    read_timeout: float = Field(0.5, gt=0, le=MAX_DELAY, description="seconds the lookup tool waits for the database")
    initial_stock: int = Field(5, ge=0, le=1_000_000_000, description="units of every SKU (one SKU per shelf) at the start")
    lock: LockCfg = LockCfg()


class TokenBucketCfg(Section):
    rate: float = Field(gt=0, le=1e6, description="tokens added per second")
    burst: int = Field(1, ge=1, le=1_000_000, description="bucket size")


class ToolCfg(Section):
    latency: DelayCfg = Field(DelayCfg(dist="lognormal", mean=0.05, jitter=0.02), description="seconds a call takes to serve")
    rate_limit: TokenBucketCfg | None = Field(None, description="a token bucket: a call finding it empty is answered 429")


class ToolsCfg(Section):
    inventory_lookup: ToolCfg = ToolCfg()
    price_check: ToolCfg = ToolCfg()
    restock: ToolCfg = ToolCfg()
    lead_time: DelayCfg = Field(DelayCfg(dist="constant", mean=30.0),
                                description="restock: seconds from a purchase order to its stock arriving")

    def of(self, tool: str) -> ToolCfg:
        return getattr(self, tool)


class ToolFaultCfg(Section):
    """One entry of the tool fault schedule: during ``[at, at + duration)`` a fraction ``rate`` of the
    calls to ``tool`` (or to every tool) suffer ``kind``.

    - ``error_500`` / ``error_503``: answered with that status;
    - ``throttle``: a token bucket of ``limit`` calls per second (burst 1) in front of the tool: 429s;
    - ``timeout``: no answer at all;
    - ``slow``: the answer comes ``extra_delay`` seconds late (and right);
    - ``malformed``: the payload breaks its schema (``payload``: wrong_type, missing_field, nan, huge,
      injection: a string that tries to smuggle in instructions; ``any``: one of them at random);
    - ``byzantine``: well-formed and plausible, but wrong by up to ``factor`` (relative).
    """

    at: float = Field(ge=0, le=MAX_UNTIL)
    duration: float | None = Field(None, gt=0, le=MAX_UNTIL, description="seconds; none: to the end of the run")
    tool: Literal["inventory_lookup", "price_check", "restock", "all"] = "all"
    kind: Literal["error_500", "error_503", "throttle", "timeout", "slow", "malformed", "byzantine"]
    rate: float = Field(1.0, ge=0, le=1, description="fraction of the calls hit")
    extra_delay: float = Field(2.0, ge=0, le=MAX_DELAY, description="slow: seconds added")
    limit: float = Field(1.0, gt=0, le=1e6, description="throttle: calls per second allowed")
    payload: Literal["any", "wrong_type", "missing_field", "nan", "huge", "injection"] = "any"
    factor: float = Field(0.5, ge=0.01, le=100, description="byzantine: relative error, at most")

    def active(self, t: float) -> bool:
        return self.at <= t and (self.duration is None or t < self.at + self.duration)

    def hits(self, tool: str) -> bool:
        return self.tool == "all" or self.tool == tool


def enabled(sc) -> bool:
    """Whether a scenario has the services (any of their sections, or the warehouse's pipeline)."""
    return any(getattr(sc, name, None) not in (None, []) for name in ("inventory", "tools", "tool_faults", "pipeline"))


def inventory_of(sc) -> InventoryCfg:
    return getattr(sc, "inventory", None) or InventoryCfg()


def tools_of(sc) -> ToolsCfg:
    return getattr(sc, "tools", None) or ToolsCfg()


def service_nodes(sc) -> list[str]:
    """Every node the services need: the primary, its replicas, the tool services, the agents' homes."""
    inv = inventory_of(sc)
    return [PRIMARY, *(replica_name(i) for i in range(1, inv.replicas + 1)), *TOOL_NODES.values(), ORDERS, PROCUREMENT]


def add_nodes(g: nx.Graph, sc, hub: str = "core") -> nx.Graph:
    """Put the services' nodes (those not already there) on ``g``, each linked to ``hub``."""
    for node in service_nodes(sc):
        if node not in g:
            g.add_node(node, role="service")
            g.add_edge(hub, node)
    return g


def check(sc, g: nx.Graph, file: str = "<scenario>") -> None:
    """Checks that need more than one section: every service node is a service on the graph."""
    for node in service_nodes(sc):
        if g.nodes[node].get("role") != "service":
            raise ScenarioError(file, "topology.services", f"node {node!r} is needed by the services but is a {g.nodes[node].get('role')}")


def rate(sc, orders_per_second: float) -> float:
    """Events per simulated second the services make (an over-estimate): heartbeats to each replica,
    and per order a handful of tool calls, each a few messages over a few hops, retried."""
    inv = inventory_of(sc)
    heartbeats = 8 * inv.replicas / inv.heartbeat
    return heartbeats + 400 * orders_per_second + 1.0


def register() -> None:
    owner = "desim.models.services"
    sections.register("inventory", SectionSpec(InventoryCfg, owner=owner, description="the inventory database: primary, replicas, locks", requires="warehouse"))
    sections.register("tools", SectionSpec(ToolsCfg, owner=owner, description="tool services: latency, rate limits, restock lead time", requires="warehouse"))
    sections.register("tool_faults", SectionSpec(ToolFaultCfg, many=True, owner=owner, description="the tool fault schedule", requires="warehouse"))
