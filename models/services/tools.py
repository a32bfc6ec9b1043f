"""The tool services (inventory lookup, price check, restock) and the client side of a tool call.

A tool service is an agent on its own node (``tool-lookup``, ``tool-price``,
``tool-restock``). A call (``tool_call`` message) passes, in order: the token
buckets (the tool's ``rate_limit`` and any active ``throttle``: empty -> 429 at
once), the fault injector (:mod:`.faults`: 500/503, no answer, slow,
malformed, Byzantine), the tool's own work, then its latency. The work:

- ``inventory_lookup``: reads the SKU from the inventory database (a replica,
  round robin, or the primary: ``[inventory] read_from``), passing the
  caller's ``min_lsn`` for read-your-writes; the database not answering
  within ``read_timeout`` is a 503 (``upstream``);
- ``price_check``: the SKU's list price (drawn once per run from ``tool:prices``);
- ``restock``: a purchase order: answered at once (``po``, ``eta``), the stock
  lands on the primary after the supplier's lead time (retried until the
  primary takes it: a supplier's delivery is never lost).

Each answer's payload schema is a :class:`desim.guard.sanitize.Payload`
(:data:`SCHEMAS`), what the guard validates before an agent sees it.
:class:`ToolClient` makes one attempt for the guard (``invoke``) and records it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from desim.guard.core import Response
from desim.guard.sanitize import Payload
from desim.models.services.config import PRIMARY, TOOL_NODES, InventoryCfg, ToolsCfg, replica_name
from desim.models.services.faults import FaultInjector, TokenBucket, byzantine, malform
from desim.models.services.rpc import RpcAgent, failed_status
from desim.network.distributions import DelaySampler

MSG = 160  # bytes of a call or an answer


class StockAnswer(Payload):
    sku: int = Field(ge=0, le=10**9)
    stock: int = Field(ge=0, le=10**9)
    version: int = Field(ge=0, le=10**15)
    as_of: float = Field(ge=0, le=1e12)
    node: str = Field(max_length=64)


class PriceAnswer(Payload):
    sku: int = Field(ge=0, le=10**9)
    price: float = Field(gt=0, le=1e6)
    currency: Literal["EUR"]


class RestockAnswer(Payload):
    sku: int = Field(ge=0, le=10**9)
    qty: int = Field(ge=1, le=10**6)
    po: int = Field(ge=0, le=10**12)
    eta: float = Field(ge=0, le=1e12)


SCHEMAS = {"inventory_lookup": StockAnswer, "price_check": PriceAnswer, "restock": RestockAnswer}
VALUE_FIELD = {"inventory_lookup": "stock", "price_check": "price", "restock": "qty"}


class CallLog:
    """Every attempt at a tool, client side, with the fault the injector put on it (ground truth)."""

    COLUMNS = ("t", "agent", "tool", "request", "status", "latency", "fault", "detail")

    def __init__(self):
        self.rows: list[tuple] = []
        self.faults: dict[tuple[str, int], tuple[str, str]] = {}  # (caller, request id) -> (fault, detail)

    def columns(self) -> dict[str, list]:
        return {c: [r[i] for r in self.rows] for i, c in enumerate(self.COLUMNS)}


class ToolService(RpcAgent):
    """One tool behind its fault injector."""

    def __init__(self, sim, tool: str, tools: ToolsCfg, inventory: InventoryCfg, schedule: list, log: CallLog,
                 primary=None, skus: int = 1):
        cfg = tools.of(tool)
        self.tool, self.tools_cfg, self.inv_cfg, self.log, self.primary = tool, tools, inventory, log, primary
        bucket = TokenBucket(cfg.rate_limit.rate, cfg.rate_limit.burst) if cfg.rate_limit is not None else None
        self.injector = FaultInjector(tool, schedule, sim.rng.stream(f"tool:{tool}:faults"), bucket)
        self._latency = DelaySampler(cfg.latency.to_dist(), sim.rng.stream(f"tool:{tool}:latency"))
        self._rng = sim.rng.stream(f"tool:{tool}:payloads")
        self._rr = 0
        self.served = 0
        self.reads: list[tuple] = []  # inventory reads: (t, node, sku, value, version, lsn, as_of, true_value, true_version)
        if tool == "price_check":
            self.prices = (sim.rng.stream("tool:prices").uniform(5.0, 100.0, skus) * 100).round() / 100
        if tool == "restock":
            self._lead = DelaySampler(tools.lead_time.to_dist(), sim.rng.stream("tool:restock:lead"))
            self._po = 0
            self.delivered: list[tuple] = []  # (t, po, sku, qty)
        super().__init__(sim, TOOL_NODES[tool])

    def serve(self, msg) -> None:
        if msg.kind == "tool_call":
            self.sim.env.process(self._handle(msg))

    def _note(self, msg, fault: str, detail: str = "") -> None:
        self.log.faults[(msg.src, msg.payload["id"])] = (fault, detail)

    def _handle(self, msg):
        env = self.sim.env
        self.served += 1
        args = msg.payload.get("args") or {}
        t = env.now
        if not self.injector.admitted(t):
            self._note(msg, "rate_limit")
            self.answer(msg, {"status": 429, "body": None, "retry_after": 1.0}, size=MSG)
            return
        hit = self.injector.draw(t)
        if hit is not None:
            self._note(msg, hit.kind)
        if hit is not None and hit.kind == "timeout":
            return  # no answer, ever
        delay = self._latency.next() + (hit.fault.extra_delay if hit is not None and hit.kind == "slow" else 0.0)
        if hit is not None and hit.kind in ("error_500", "error_503"):
            yield env.timeout(delay)
            self.answer(msg, {"status": 500 if hit.kind == "error_500" else 503, "body": None}, size=MSG)
            return
        try:
            status, body = yield from self._work(args, hit)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:  # a bad request is the caller's 400
            status, body = 400, {"error": type(e).__name__}
        if status == 200 and hit is not None and hit.kind == "malformed":
            body, how = malform(body, VALUE_FIELD[self.tool], hit.fault.payload, self._rng)
            self._note(msg, "malformed", how)
        yield env.timeout(delay)
        self.answer(msg, {"status": status, "body": body}, size=MSG)

    # -- the tools' work -----------------------------------------------------------------
    def _work(self, args: dict, hit):
        bz = hit.fault.factor if hit is not None and hit.kind == "byzantine" else None
        if self.tool == "inventory_lookup":
            return (yield from self._lookup(args, bz))
        sku = int(args["sku"])
        if self.tool == "price_check":
            price = float(self.prices[sku])
            if bz is not None:
                price = round(byzantine(price, bz, self._rng, integer=False), 2)
            return 200, {"sku": sku, "price": price, "currency": "EUR"}
        qty = int(args["qty"])
        po, self._po = self._po, self._po + 1
        lead = self._lead.next()
        ships = qty if bz is None else int(byzantine(qty, bz, self._rng, integer=True))
        self.sim.env.process(self._deliver(po, sku, ships, lead))
        return 200, {"sku": sku, "qty": qty, "po": po, "eta": self.sim.now + lead}

    def _db_node(self) -> str:
        n = self.inv_cfg.replicas
        if self.inv_cfg.read_from == "primary" or n == 0:
            return PRIMARY
        self._rr += 1
        return replica_name((self._rr - 1) % n + 1)

    def _lookup(self, args: dict, bz):
        sku = int(args["sku"])
        node = self._db_node()
        reply = yield from self.rpc(node, "inv_read", {"sku": sku, "min_lsn": int(args.get("min_lsn", 0))},
                                    self.inv_cfg.read_timeout, size=96)
        if reply.timed_out or reply.corrupted:
            return 503, None
        r = reply.payload
        p = self.primary
        self.reads.append((self.sim.now, r["node"], sku, r["value"], r["version"], r["lsn"], r["as_of"],
                           int(p.stock[sku]) if p is not None else None, int(p.sku_version[sku]) if p is not None else None))
        value = r["value"] if bz is None else int(byzantine(r["value"], bz, self._rng, integer=True))
        return 200, {"sku": sku, "stock": value, "version": r["version"], "as_of": r["as_of"], "node": r["node"]}

    def _deliver(self, po: int, sku: int, qty: int, lead: float):
        """The supplier's delivery: after the lead time, onto the primary (retried until it lands)."""
        env = self.sim.env
        yield env.timeout(lead)
        while True:
            reply = yield from self.rpc(PRIMARY, "inv_write", {"items": [[sku, qty]]}, self.inv_cfg.lock.timeout + 5.0)
            if not reply.timed_out and not reply.corrupted and reply.payload.get("ok"):
                self.delivered.append((env.now, po, sku, qty))
                return
            yield env.timeout(5.0)


class ToolClient:
    """The caller's side: ``invoke(tool, agent)`` makes the guard's ``invoke`` for one agent and tool.

    Each attempt is one ``tool_call`` message to the tool's node, answered as a guard ``Response``
    (a 504 when nothing came back within ``timeout``; a link-corrupted answer is a 502), and one
    row of the :class:`CallLog`."""

    def __init__(self, log: CallLog, timeout: float):
        self.log, self.timeout = log, timeout

    def invoke(self, agent: RpcAgent, tool: str):
        env = agent.sim.env

        def attempt(request):
            return env.process(self._attempt(agent, tool, request))

        return attempt

    def _attempt(self, agent: RpcAgent, tool: str, request):
        t0 = agent.sim.env.now
        rid = agent._next_id
        reply = yield from agent.rpc(TOOL_NODES[tool], "tool_call", {"tool": tool, "args": request}, self.timeout, size=MSG)
        fault, detail = self.log.faults.pop((agent.name, rid), ("", ""))
        bad = failed_status(reply)
        if bad is not None:
            status, resp = bad, Response(bad, None)
        else:
            p = reply.payload
            status = int(p["status"])
            resp = Response(status, p.get("body"), p.get("retry_after"))
        self.log.rows.append((t0, agent.name, tool, rid, status, agent.sim.env.now - t0, fault, detail))
        return resp
