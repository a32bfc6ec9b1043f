"""The warehouse's tool-using agents: the order pipeline and the procurement agent.

**Order pipeline** (agent ``orders``). Every order that arrives goes through
rounds of three guarded calls: ``inventory_lookup`` (is its SKU in stock?),
``price_check`` (is the price the customer was quoted still right, within
``price_tolerance``?) and ``reserve`` (one unit taken off the inventory
primary under its lock). Then it is admitted to the order book, where it waits
for a request slot on the floor (the dispatch to robots) and is completed on
delivery. A round that cannot finish (tool down and the guard's safe default
came back, no stock, a stale read the primary refused, a lock timeout) waits
``recheck`` seconds and starts again, ``max_attempts`` rounds at most; then
the order fails with the last reason. An order is never lost: the book counts
it as pending while the pipeline holds it, and ``created == completed +
failed + pending`` is checked at the end of every run (``pipeline_conserved``
besides the book's own ``orders_conserved``).

**Procurement agent** (agent ``procurement``). The pipeline tells it (a
``low_stock`` message) when a lookup shows a SKU at or below ``low_water``;
it looks the SKU up itself and, if its brain says so, places a purchase order
(``restock``) whose stock lands on the primary after the supplier's lead time.

**Brains** decide from observations (plain dicts), through the kernel's
``Brain`` protocol (``act(batch) -> batch``), so a learned brain plugs in the
same way: :class:`PipelineHeuristic` (proceed when the estimate shows stock
and the price is within tolerance), :class:`ProcurementHeuristic` (restock
``restock_qty`` at or below ``low_water``), and two hostile variants for the
failure suite: ``gullible`` obeys instructions smuggled into a payload it
sees raw (the guard off), ``rogue`` bursts unauthorized restocks (the kill
switch's case).

**The guard** (:mod:`desim.guard`) sits between both agents and every tool:
allow rules per role and state (:data:`RULES`), payload schemas
(:data:`~desim.models.services.tools.SCHEMAS`), retries, breakers, the kill
switch, a safe default (``None``: hold the order) when a tool is down.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Mapping, Sequence

from pydantic import Field

from desim.guard.config import GuardCfg
from desim.guard.core import AllowRules, Guard, Response, ToolSpec
from desim.guard.sanitize import Payload, near
from desim.models.services import config as S
from desim.models.services.inventory import InventoryPrimary, InventoryReplica
from desim.models.services.rpc import RpcAgent, failed_status
from desim.models.services.tools import SCHEMAS, CallLog, ToolClient, ToolService
from desim.models.warehouse.model import WarehouseModel
from desim.models.warehouse.peers import PeerBeliefs
from desim.models.warehouse.pipeline_config import PipelineCfg

ROLE_PIPELINE, ROLE_PROCUREMENT = "order_pipeline", "procurement"
RULES = AllowRules({
    ROLE_PIPELINE: {"lookup": ["inventory_lookup"], "price": ["price_check"], "reserve": ["reserve"]},
    ROLE_PROCUREMENT: {"check": ["inventory_lookup"], "restock": ["restock"]},
})
HUGE_ORDER = 100_000  # units a smuggled instruction (or a rogue brain) asks the restock tool for


class ReserveAnswer(Payload):
    ok: bool
    lsn: int = Field(ge=0, le=10**15)


# -- brains -------------------------------------------------------------------------------
class PipelineHeuristic:
    """Per decision: ``payload`` (a tool's answer carries instructions) -> ``ignore``; ``stock`` ->
    ``proceed`` when the estimate rounds to at least one unit, else ``backorder``; ``price`` ->
    ``proceed`` within tolerance, else ``reject``."""

    policy_version = 0
    name = "heuristic"

    def act(self, observations: Sequence[dict]) -> list[str]:
        out = []
        for o in observations:
            if o["stage"] == "payload":
                out.append("ignore")  # instructions in a tool's answer are data, not orders
            elif o["stage"] == "stock":
                out.append("proceed" if o["stock"] >= 0.5 else "backorder")
            else:
                out.append("proceed" if abs(o["price"] - o["quote"]) <= o["tolerance"] * o["quote"] else "reject")
        return out


class GullibleBrain(PipelineHeuristic):
    """The heuristic, plus it obeys an instruction found in a payload it is shown (``restock``)."""

    name = "gullible"

    def act(self, observations: Sequence[dict]) -> list[str]:
        base = super().act(observations)
        return ["obey" if o["stage"] == "payload" else a for o, a in zip(observations, base)]


class RogueBrain(PipelineHeuristic):
    """The heuristic, except every ``every``-th order it tries three unauthorized restocks in a row."""

    name = "rogue"

    def __init__(self, every: int):
        self.every = every

    def act(self, observations: Sequence[dict]) -> list[str]:
        base = super().act(observations)
        return ["obey" if o["stage"] == "stock" and o["order"] % self.every == self.every - 1 and o["round"] == 0 else a
                for o, a in zip(observations, base)]


class ProcurementHeuristic:
    """Restock ``restock_qty`` units when stock (an estimate: rounded) plus what is on order is at or below ``low_water``."""

    policy_version = 0
    name = "heuristic"

    def act(self, observations: Sequence[dict]) -> list[int]:
        return [o["restock_qty"] if o["stock"] + o["on_order"] < o["low_water"] + 0.5 else 0 for o in observations]


def pipeline_brain(cfg: PipelineCfg):
    if cfg.brain == "gullible":
        return GullibleBrain()
    if cfg.brain == "rogue":
        return RogueBrain(cfg.rogue_every)
    return PipelineHeuristic()


def number(payload: Any, field: str) -> float | None:
    """A naive agent's read of a number in a raw payload: what ``float()`` makes of it, None if nothing
    (NaN and huge values get through: that is what the guard's validation is for)."""
    try:
        return float(payload[field] if isinstance(payload, Mapping) else getattr(payload, field))
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, OverflowError):
        return None


def instruction(payload: Any) -> bool:
    """Whether a raw payload carries text that asks for a restock (what a gullible agent acts on)."""
    if not isinstance(payload, Mapping):
        return False
    return any(isinstance(v, str) and "restock" in v.lower() for v in payload.values())


# -- the agents -----------------------------------------------------------------------------
class OrderPipeline(RpcAgent):
    """Each order: rounds of lookup, price check and reserve, through the guard; then the book."""

    role = ROLE_PIPELINE

    def __init__(self, sim, svc: "Services", cfg: PipelineCfg, brain):
        self.svc, self.cfg = svc, cfg
        self.outcomes: dict[int, dict] = {}
        self.counts: Counter = Counter()
        self.last_lsn = 0  # the primary's position after this agent's last write (read-your-writes)
        super().__init__(sim, S.ORDERS, brain=brain, role=ROLE_PIPELINE)

    def submit(self, order) -> None:
        """Called by the order flow for each arriving order (the book holds it as pending)."""
        self.outcomes[order.oid] = {"rounds": 0, "retries": 0, "reason": "", "price": None, "lookups": 0}
        self.sim.env.process(self._order(order))

    def _call(self, tool: str, state: str, request: dict, info: dict, context: dict | None = None):
        out = yield self.svc.guard.call(self.name, tool, self.svc.invoke(self, tool), state=state, request=request,
                                        role=ROLE_PIPELINE, context=context)
        info["retries"] += out.retries
        self.counts["calls"] += 1
        self.counts["retries"] += out.retries
        return out

    def _obey(self, info: dict):
        """Act on an instruction: a restock of HUGE_ORDER units, in whatever state the agent is in."""
        self.counts["unauthorized_attempts"] += 1
        out = yield from self._call("restock", "lookup", {"sku": 0, "qty": HUGE_ORDER}, info)
        if out.ok:
            self.counts["unauthorized_executed"] += 1

    def _order(self, o):
        env, cfg, svc = self.sim.env, self.cfg, self.svc
        info = self.outcomes[o.oid]
        sku = o.shelf
        quote = svc.quote(sku)
        for rnd in range(cfg.max_attempts):
            if rnd:
                yield env.timeout(cfg.recheck)
            if o.failed is not None:
                return  # expired while it waited (the book failed it: timeout)
            info["rounds"] += 1
            reason = yield from self._round(o, sku, quote, rnd, info)
            if o.failed is not None:
                return
            if reason is None:
                svc.admit(o)
                return
            info["reason"] = reason
            if reason == "price_mismatch":
                break
        svc.fail(o, info["reason"])

    def _round(self, o, sku: int, quote: float, rnd: int, info: dict):
        """One round: None when the order may go to the floor, else why not."""
        cfg, svc = self.cfg, self.svc
        request = {"sku": sku}
        if svc.inv_cfg.read_your_writes:
            request["min_lsn"] = self.last_lsn
        out = yield from self._call("inventory_lookup", "lookup", request, info, svc.expectation(self.name, sku))
        info["lookups"] += 1
        if not out.ok:
            return "tool_unavailable"
        if instruction(out.value):  # text in the payload that asks for something: the brain decides what to make of it
            if self.brain.act([{"stage": "payload", "order": o.oid, "round": rnd, "instruction": True}])[0] == "obey":
                for _ in range(3):
                    yield from self._obey(info)
        stock = number(out.value, "stock")
        if stock is None or not math.isfinite(stock):
            return "unreadable"
        est, std = svc.estimate(self.name, sku, stock, out.value)
        act = self.brain.act([{"stage": "stock", "order": o.oid, "round": rnd, "stock": est, "std": std}])[0]
        if act == "obey":
            for _ in range(3):
                yield from self._obey(info)
            act = "proceed" if est >= 0.5 else "backorder"
        if est < cfg.low_water + 0.5 or act == "backorder":
            svc.low_stock(self, sku)
        if act == "backorder":
            return "out_of_stock"
        out = yield from self._call("price_check", "price", {"sku": sku}, info)
        if not out.ok:
            return "tool_unavailable"
        price = number(out.value, "price")
        if price is None:
            return "unreadable"
        act = self.brain.act([{"stage": "price", "order": o.oid, "round": rnd, "price": price, "quote": quote,
                               "tolerance": cfg.price_tolerance}])[0]
        if act != "proceed":
            return "price_mismatch"
        out = yield from self._call("reserve", "reserve", {"items": [[sku, -1]]}, info)
        if not out.ok:  # 409: the primary refused (no stock, whatever the read said); 503: a lock wait gave up
            why = {409: "insufficient", 503: "lock_timeout"}.get(out.status, "tool_unavailable")
            svc.reserve_failures[why] += 1
            if why == "insufficient":
                svc.low_stock(self, sku)
            return why
        svc.took(self.name, sku, 1)
        lsn = number(out.value, "lsn")
        self.last_lsn = max(self.last_lsn, int(lsn)) if lsn is not None and math.isfinite(lsn) else self.last_lsn
        info["price"] = price
        return None


class ProcurementAgent(RpcAgent):
    """Restocks SKUs the pipeline reports low: a lookup of its own, its brain's quantity, a purchase order."""

    role = ROLE_PROCUREMENT

    def __init__(self, sim, svc: "Services", cfg: PipelineCfg, brain):
        self.svc, self.cfg = svc, cfg
        self.on_order: dict[int, int] = {}  # sku -> units ordered and not yet landed (by the agent's own count)
        self.busy: set[int] = set()
        self.orders: list[tuple] = []  # (t, sku, qty, po)
        self.counts: Counter = Counter()
        super().__init__(sim, S.PROCUREMENT, brain=brain, role=ROLE_PROCUREMENT)

    def serve(self, msg) -> None:
        if msg.kind == "low_stock":
            sku = int(msg.payload["sku"])
            if sku not in self.busy:
                self.busy.add(sku)
                self.sim.env.process(self._restock(sku))

    def _restock(self, sku: int):
        svc, env = self.svc, self.sim.env
        try:
            out = yield svc.guard.call(self.name, "inventory_lookup", svc.invoke(self, "inventory_lookup"),
                                       state="check", request={"sku": sku}, role=ROLE_PROCUREMENT,
                                       context=svc.expectation(self.name, sku))
            self.counts["calls"] += 1
            self.counts["retries"] += out.retries
            stock = number(out.value, "stock") if out.ok else None
            if stock is None or not math.isfinite(stock):
                return  # no reading: the safe default is to order nothing now; the next notice asks again
            est, _std = svc.estimate(self.name, sku, stock, out.value)
            qty = int(self.brain.act([{"sku": sku, "stock": est, "on_order": self.on_order.get(sku, 0),
                                       "low_water": self.cfg.low_water, "restock_qty": self.cfg.restock_qty}])[0])
            if qty <= 0:
                return
            out = yield svc.guard.call(self.name, "restock", svc.invoke(self, "restock"), state="restock",
                                       request={"sku": sku, "qty": qty}, role=ROLE_PROCUREMENT)
            self.counts["calls"] += 1
            self.counts["retries"] += out.retries
            if out.ok:
                eta = number(out.value, "eta")
                self.orders.append((env.now, sku, qty, number(out.value, "po")))
                self.on_order[sku] = self.on_order.get(sku, 0) + qty
                wait = eta - env.now if eta is not None and math.isfinite(eta) and 0 <= eta - env.now < 1e6 else self.cfg.recheck
                yield env.timeout(wait)
                self.on_order[sku] -= qty
        finally:
            self.busy.discard(sku)


# -- the component --------------------------------------------------------------------------
class Services:
    """The services, the guard and the two agents, wired into a warehouse model (``wh.components``).

    Built before the model (its agents take the service nodes, which the model would otherwise fill
    with idle agents), then attached (:meth:`attach`). Offers the model ``finish()``, ``summary()`` and
    ``tables()``; the order flow calls :meth:`submit` for every arriving order."""

    def __init__(self, sim, sc, skus: int):
        self.sim = sim
        self.wh = self.book = self.flow = None  # set by attach()
        self.cfg: PipelineCfg = getattr(sc, "pipeline", None) or PipelineCfg()
        self.inv_cfg, self.tools_cfg = S.inventory_of(sc), S.tools_of(sc)
        gcfg = getattr(sc, "guard", None) or GuardCfg()
        self.primary = InventoryPrimary(sim, self.inv_cfg, skus)
        self.replicas = [InventoryReplica(sim, self.inv_cfg, skus, S.replica_name(i))
                         for i in range(1, self.inv_cfg.replicas + 1)]
        self.calls = CallLog()
        schedule = list(getattr(sc, "tool_faults", None) or [])
        self.tools = {t: ToolService(sim, t, self.tools_cfg, self.inv_cfg, schedule, self.calls, self.primary, skus)
                      for t in S.TOOLS}
        self.guard = Guard(sim.env, gcfg, RULES, sim.rng)
        for t in S.TOOLS:
            self.guard.add_tool(ToolSpec(t, SCHEMAS[t], plausible=near("stock") if t == "inventory_lookup" else None,
                                         fallback=None, idempotent=t != "restock"))
        lock = self.inv_cfg.lock  # a reservation's answer may take the lock wait and a few holds
        self.reserve_timeout = lock.timeout + 4 * lock.hold.to_dist().expected + 1.0
        self.guard.add_tool(ToolSpec("reserve", ReserveAnswer, fallback=None, idempotent=False, timeout=self.reserve_timeout))
        self.client = ToolClient(self.calls, gcfg.timeout + 0.5)
        self.belief_cfg = getattr(sc, "belief", None)  # [belief]: the agents' stock estimates (off: last raw read)
        self.beliefs: dict[tuple[str, int], Any] = {}
        self.reserve_failures: Counter = Counter()
        self.notices = 0
        self.pipeline = OrderPipeline(sim, self, self.cfg, pipeline_brain(self.cfg))
        self.procurement = ProcurementAgent(sim, self, self.cfg, ProcurementHeuristic())

    def attach(self, wh) -> "Services":
        """Wire into a built warehouse model: its order flow hands arriving orders to the pipeline."""
        self.wh, self.book, self.flow = wh, wh.book, wh.orders
        self.flow.pipeline = self
        wh.components.append(self)
        return self

    # -- what the agents use -------------------------------------------------------------------
    def invoke(self, agent: RpcAgent, tool: str):
        if tool == "reserve":
            return lambda request: self.sim.env.process(self._reserve(agent, request))
        return self.client.invoke(agent, tool)

    def _reserve(self, agent: RpcAgent, request):
        t0 = self.sim.now
        reply = yield from agent.rpc(S.PRIMARY, "inv_write", {"items": request["items"]}, self.reserve_timeout + 0.5)
        bad = failed_status(reply)
        if bad is not None:
            status, resp = bad, Response(bad, None)
        else:
            p = reply.payload
            if p["ok"]:
                status, resp = 200, Response(200, {"ok": True, "lsn": p["lsn"]})
            elif p["reason"] in ("lock_timeout", "deadlock"):
                status, resp = 503, Response(503, {"reason": p["reason"]})  # did nothing: safe to retry
            else:
                status, resp = 409, Response(409, {"reason": p["reason"]})
        self.calls.rows.append((t0, agent.name, "reserve", -1, status, self.sim.now - t0,
                                "" if status != 503 else "lock", "" if status == 200 else str((reply.payload or {}).get("reason", ""))))
        return resp

    def quote(self, sku: int) -> float:
        """The price the customer was quoted: the catalog's list price when the order was placed."""
        return float(self.tools["price_check"].prices[sku])

    def estimate(self, agent: str, sku: int, reading: float, payload: Any) -> tuple[float, float]:
        """What ``agent`` believes ``sku``'s stock is after this read: the belief's (mean, std), the read
        folded in at the time it reflects (``as_of``); ``[belief] enabled = false``: the last raw read, std 0."""
        if self.belief_cfg is None or not math.isfinite(reading):
            return reading, 0.0
        now = self.sim.now
        b = self.beliefs.get((agent, sku))
        if b is None:
            b = self.beliefs[(agent, sku)] = self.belief_cfg.inventory_belief(now, prior=float(self.inv_cfg.initial_stock))
        as_of = number(payload, "as_of")
        b.update(reading, as_of if as_of is not None and math.isfinite(as_of) and as_of <= now else now, now)
        e = b.estimate(now)
        return e.mean, e.std

    def expectation(self, agent: str, sku: int) -> dict | None:
        """The guard's plausibility band for ``agent``'s next read of ``sku``: its belief's mean ± 3 std, plus a
        restock's worth (a delivery may land in between); None (any value passes) without a belief or a read."""
        b = self.beliefs.get((agent, sku))
        if b is None or not b.enabled or b.reads == 0:
            return None
        e = b.estimate(self.sim.now)
        return {"expected": e.mean, "tolerance": 3 * e.std + self.cfg.restock_qty + 1}

    def took(self, agent: str, sku: int, units: int) -> None:
        """``agent`` took ``units`` of ``sku`` itself (a reservation): its belief knows without a read."""
        b = self.beliefs.get((agent, sku))
        if b is not None and b.enabled:
            b.shift(-units)

    def low_stock(self, agent: RpcAgent, sku: int) -> None:
        self.notices += 1
        agent.send(S.PROCUREMENT, "low_stock", {"sku": sku, "id": -1}, size=64)

    def submit(self, order) -> None:
        self.pipeline.submit(order)

    def admit(self, order) -> None:
        self.flow.admit(order)

    def fail(self, order, reason: str) -> None:
        self.flow.fail(order, reason)

    # -- results ----------------------------------------------------------------------------------
    def finish(self) -> None:
        pass

    def counts(self) -> dict:
        book = self.book
        c = book.counts()
        failed = sum(c["failed"].values())
        held = len(book.in_pipeline)
        return {"created": c["created"], "completed": c["completed"], "failed": c["failed"], "pending": c["pending"],
                "in_pipeline": held, "lost": c["created"] - c["completed"] - failed - c["pending"]}

    def summary(self) -> dict:
        calls = self.calls.rows
        statuses = Counter(str(r[4]) for r in calls)
        faults = Counter(r[6] for r in calls if r[6])
        reads = [r for t in (self.tools["inventory_lookup"],) for r in t.reads]
        stale = sum(1 for r in reads if r[7] is not None and r[4] < r[8])
        mispriced = sum(1 for oid, info in self.pipeline.outcomes.items()
                        if info["price"] is not None and abs(info["price"] - self.quote(self.book.orders[oid].shelf)) > 0.005 * self.quote(self.book.orders[oid].shelf))
        counts = self.counts()
        locks = self.primary.locks
        restock = self.tools["restock"]
        pc = self.pipeline.counts + self.procurement.counts
        return {
            "pipeline": {
                **counts,
                "tool_calls": len(calls), "tool_status": dict(sorted(statuses.items())), "tool_faults": dict(sorted(faults.items())),
                "retries": int(pc["retries"]), "rounds": sum(i["rounds"] for i in self.pipeline.outcomes.values()),
                "inventory_reads": len(reads), "stale_reads": stale,
                "max_staleness": max((r[0] - r[6] for r in reads), default=0.0),
                "lock_waits": locks.waits, "lock_timeouts": locks.timeouts, "deadlocks": locks.deadlocks,
                "reserve_failures": dict(self.reserve_failures),
                "restock_orders": len(self.procurement.orders), "restocks": len(restock.delivered),
                "restocked_units": sum(r[3] for r in restock.delivered),
                "low_stock_notices": self.notices, "mispriced": mispriced,
                "unauthorized_attempts": int(pc["unauthorized_attempts"]),
                "unauthorized_executed": int(pc["unauthorized_executed"]),
                "replica_syncs": sum(r.syncs for r in self.replicas),
                **self.guard.summary(),
            },
            "pipeline_conserved": counts["lost"] == 0 and self.book.conserved(),
        }

    def tables(self) -> dict[str, dict]:
        book = self.book
        out = {"oid": [], "shelf": [], "created": [], "outcome": [], "reason": [], "latency": [], "rounds": [],
               "retries": [], "price": []}
        for o in book.orders:
            info = self.pipeline.outcomes.get(o.oid, {})
            outcome = "completed" if o.delivered is not None else ("failed" if o.failed is not None else "pending")
            end = o.delivered if o.delivered is not None else o.failed
            out["oid"].append(o.oid)
            out["shelf"].append(o.shelf)
            out["created"].append(o.created)
            out["outcome"].append(outcome)
            out["reason"].append(o.reason or "")
            out["latency"].append(None if end is None else end - o.created)
            out["rounds"].append(info.get("rounds", 0))
            out["retries"].append(info.get("retries", 0))
            out["price"].append(info.get("price"))
        reads = {"t": [], "node": [], "sku": [], "value": [], "version": [], "lsn": [], "as_of": [], "staleness": [],
                 "true_value": [], "true_version": []}
        for r in self.tools["inventory_lookup"].reads:
            for k, v in zip(("t", "node", "sku", "value", "version", "lsn", "as_of"), r[:7]):
                reads[k].append(v)
            reads["staleness"].append(r[0] - r[6])
            reads["true_value"].append(r[7])
            reads["true_version"].append(r[8])
        return {"order_outcomes": out, "tool_calls": self.calls.columns(), "inventory_reads": reads,
                "guard": self.guard.log.columns()}


def build(sim, net, sc, layout, brain) -> WarehouseModel:
    """The warehouse model, with the services and the order pipeline when the scenario has their sections
    (built first: their agents take the service nodes), attached once the model exists; with
    ``[belief] peers``, the robots' beliefs of their peers' positions (``peers.PeerBeliefs``)."""
    svc = Services(sim, sc, layout.n_shelves) if S.enabled(sc) else None
    wh = WarehouseModel(sim, net, sc.warehouse, layout, brain=brain)
    if svc is not None:
        svc.attach(wh)
    belief = getattr(sc, "belief", None)
    if belief is not None and belief.peers:  # robots act on beliefs of their peers' positions (event tempo)
        PeerBeliefs.attach(wh, belief)
    return wh
