"""The services' semantics, each on a small network of its own (models/services).

Stale replica reads carry an older version and time; read-your-writes off and on; a lock
times out under contention, not without it; a wait-for cycle is refused as a deadlock; a
partition freezes a replica, which catches up after the heal; the token bucket's 429 rate;
each tool fault kind does what it says, inside its window and not outside it; every
malformed payload class is refused by the guard with its reason; a Byzantine value passes
the schema and is wrong.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import simpy

from desim.guard.sanitize import Rejected, sanitize
from desim.models.services.config import InventoryCfg, ToolFaultCfg, ToolsCfg, replica_name
from desim.models.services.faults import FaultInjector, TokenBucket
from desim.models.services.inventory import InventoryPrimary, InventoryReplica, LockManager
from desim.models.services.rpc import RpcAgent
from desim.models.services.tools import SCHEMAS, CallLog, ToolClient, ToolService
from desim.network.config import DelayCfg
from desim.network.faults import Fault, schedule
from desim.network.link import LinkSpec
from desim.network.distributions import DelayDist
from desim.network.transport import Network
from desim.sim import Simulation

SKUS = 8


def world(inv: InventoryCfg, seed: int = 0, faults: list[Fault] = (), tools: ToolsCfg | None = None,
          tool_faults: list[ToolFaultCfg] = ()):
    """core switch; the primary, its replicas, the tool services and a client on it (1 ms links)."""
    sim = Simulation(seed)
    g = nx.Graph()
    g.add_node("core", role="switch")
    names = ["inventory", *(replica_name(i) for i in range(1, inv.replicas + 1)), "client",
             "tool-lookup", "tool-price", "tool-restock"]
    for n in names:
        g.add_node(n, role="service")
        g.add_edge("core", n)
    net = Network(sim, g, LinkSpec(DelayDist("constant", 0.001)))
    schedule(net, list(faults))
    primary = InventoryPrimary(sim, inv, SKUS)
    replicas = [InventoryReplica(sim, inv, SKUS, replica_name(i)) for i in range(1, inv.replicas + 1)]
    client = RpcAgent(sim, "client")
    log = CallLog()
    tools = {t: ToolService(sim, t, tools or ToolsCfg(), inv, list(tool_faults), log, primary, SKUS)
             for t in ("inventory_lookup", "price_check", "restock")}
    return sim, primary, replicas, client, tools, log


def lagged(mean: float = 5.0, **kw) -> InventoryCfg:
    return InventoryCfg(replicas=1, lag=DelayCfg(dist="constant", mean=mean), heartbeat=1.0, initial_stock=10, **kw)


def run_client(sim, gen, until: float):
    out = []

    def proc():
        out.append((yield from gen()))

    sim.env.process(proc())
    sim.run(until)
    assert out, "the client's process did not finish"
    return out[0]


def test_a_replica_read_inside_the_lag_is_stale_and_says_so():
    sim, primary, _r, client, _t, _l = world(lagged(5.0))

    def go():
        w = yield from client.rpc("inventory", "inv_write", {"items": [[3, -4]]}, 5.0)
        yield sim.env.timeout(1.0)
        early = yield from client.rpc(replica_name(1), "inv_read", {"sku": 3}, 1.0)
        on_primary = yield from client.rpc("inventory", "inv_read", {"sku": 3}, 1.0)
        yield sim.env.timeout(10.0)
        late = yield from client.rpc(replica_name(1), "inv_read", {"sku": 3}, 1.0)
        return w.payload, early.payload, on_primary.payload, {**late.payload, "t": sim.now}

    w, early, prim, late = run_client(sim, go, 30.0)
    assert w["ok"] and w["lsn"] == 1
    assert early["value"] == 10 and early["version"] == 0 < prim["version"] == 1 and prim["value"] == 6
    assert early["as_of"] < prim["as_of"] - 0.9  # it reflects a time before the write (the primary: now)
    assert late["value"] == 6 and late["version"] == 1 and late["lsn"] == 1
    # current as of the last heartbeat it got: sent at most a heartbeat before the lag
    assert late["t"] - 5.0 - 1.0 - 0.01 <= late["as_of"] <= late["t"] - 5.0


@pytest.mark.parametrize("ryw", [False, True])
def test_read_your_writes_off_and_on(ryw):
    sim, _p, replicas, client, _t, _l = world(lagged(5.0, read_your_writes=ryw))

    def go():
        w = yield from client.rpc("inventory", "inv_write", {"items": [[2, 5]]}, 5.0)
        r = yield from client.rpc(replica_name(1), "inv_read", {"sku": 2, "min_lsn": w.payload["lsn"]}, 1.0)
        return r.payload

    r = run_client(sim, go, 10.0)
    if ryw:  # the replica is behind the reader's write: the primary answers
        assert r["value"] == 15 and r["node"] == "inventory" and replicas[0].forwarded == 1
    else:  # off by default: the reader may not see its own write
        assert r["value"] == 10 and r["node"] == replica_name(1) and replicas[0].forwarded == 0


@pytest.mark.parametrize("granularity,same_sku,expect_timeout", [
    ("sku", True, True), ("sku", False, False), ("table", False, True)])
def test_a_lock_times_out_under_contention(granularity, same_sku, expect_timeout):
    inv = InventoryCfg(replicas=0, initial_stock=10,
                       lock={"granularity": granularity, "hold": DelayCfg(dist="constant", mean=3.0), "timeout": 1.0})
    sim, primary, _r, _c, _t, _l = world(inv)
    results = []

    def txn(sku):
        results.append((yield from primary.transact([(sku, -1)])))

    sim.env.process(txn(1))
    sim.env.process(txn(1 if same_sku else 2))
    sim.run(10.0)
    reasons = sorted(r["reason"] for r in results)
    assert reasons == (["", "lock_timeout"] if expect_timeout else ["", ""])
    assert primary.locks.timeouts == int(expect_timeout)
    assert primary.locks.waits == int(granularity == "table" or same_sku)


def test_a_wait_for_cycle_is_refused_as_a_deadlock_not_left_to_time_out():
    """a holds 1 and waits for 2; b holds 2 and asks for 1: b's wait would close the cycle."""
    env = simpy.Environment()
    locks = LockManager(env)
    got = {}

    def txn(name, first, second, txn_id):
        got[name, 1] = yield from locks.acquire(txn_id, first, 100.0)
        yield env.timeout(1.0)
        got[name, 2] = yield from locks.acquire(txn_id, second, 100.0)
        yield env.timeout(1.0)
        locks.release_all(txn_id)

    env.process(txn("a", 1, 2, 0))
    env.process(txn("b", 2, 1, 1))
    env.run(50.0)
    assert locks.deadlocks == 1 and locks.timeouts == 0
    assert got["a", 1] is None and got["b", 1] is None
    assert sorted([got["a", 2], got["b", 2]], key=str) == sorted([None, "deadlock"], key=str)


def test_an_isolated_replica_freezes_then_catches_up_after_the_heal():
    inv = lagged(0.2)
    sim, primary, replicas, client, _t, _l = world(inv, faults=[Fault(5.0, "isolate", 20.0, nodes=(replica_name(1),))])
    rep = replicas[0]
    seen = []

    def writer():
        for _ in range(10):
            yield sim.env.timeout(2.0)
            yield from primary.transact([(0, -1)])

    def watch():
        while True:
            yield sim.env.timeout(1.0)
            seen.append((sim.now, rep.lsn, rep.as_of))

    sim.env.process(writer())
    sim.env.process(watch())
    sim.run(40.0)
    during = [s for s in seen if 8.0 <= s[0] <= 24.0]
    assert len({s[1] for s in during}) == 1, "an isolated replica applies nothing"
    assert max(s[2] for s in during) <= 5.1, "its as_of stays at the partition"
    assert rep.lsn == primary.lsn == 10 and int(rep.stock[0]) == int(primary.stock[0]) == 0
    assert rep.syncs >= 1  # it asked for what the partition dropped


def test_token_bucket_answers_429_at_the_rate_it_says():
    b = TokenBucket(rate=2.0, burst=5)
    ok = sum(b.take(i * 0.1) for i in range(1000))  # 10 calls/s for 100 s
    assert ok == 5 + 199 or ok == 5 + 200  # the burst, then 2 a second
    share_429 = 1 - ok / 1000
    assert abs(share_429 - 0.8) < 0.01


def test_the_injector_draws_only_inside_windows_and_at_its_rate():
    f = ToolFaultCfg(at=10.0, duration=5.0, tool="price_check", kind="error_500", rate=0.3)
    inj = FaultInjector("price_check", [f], np.random.default_rng(0))
    assert all(inj.draw(t) is None for t in (0.0, 9.99, 15.0, 100.0))
    hits = sum(inj.draw(12.0) is not None for _ in range(4000))
    assert abs(hits / 4000 - 0.3) < 0.03
    assert FaultInjector("inventory_lookup", [f], np.random.default_rng(0)).draw(12.0) is None  # another tool


def call_tool(sim, client, log, tool, args, timeout):
    c = ToolClient(log, timeout)
    ev = c.invoke(client, tool)(args)
    return ev


def calls(tool_faults, tool, n=5, gap=1.0, args=None, until=None, tools=None, timeout=10.0):
    """``n`` calls to ``tool`` from t=1, ``gap`` apart; their (t, Response, latency)."""
    sim, primary, _r, client, svc, log = world(InventoryCfg(replicas=1, initial_stock=7), tools=tools,
                                                tool_faults=tool_faults)
    out = []

    def go():
        for i in range(n):
            yield sim.env.timeout(gap)
            t0 = sim.now
            resp = yield call_tool(sim, client, log, tool, args or {"sku": 3, "qty": 4}, timeout)
            out.append((t0, resp, sim.now - t0))

    sim.env.process(go())
    sim.run(until or n * gap + 60.0)
    return out, svc, log, primary


@pytest.mark.parametrize("kind,status", [("error_500", 500), ("error_503", 503), ("timeout", 504)])
def test_error_and_timeout_faults_answer_what_they_say(kind, status):
    fault = ToolFaultCfg(at=3.0, duration=2.5, tool="price_check", kind=kind)
    out, _svc, log, _p = calls([fault], "price_check", n=8, gap=1.0, timeout=0.4)
    inside = [3.0 <= t < 5.5 for t, _r, _lat in out]
    assert [r.status for _t, r, _lat in out] == [status if i else 200 for i in inside]
    assert sum(inside) >= 2 and inside[-1] is False and inside[0] is False, "calls before, in and after the window"
    assert [r[6] for r in log.rows if r[4] == status] == [kind] * sum(inside)  # the call log names the fault
    if kind == "timeout":
        assert all(lat >= 0.4 - 1e-9 for t, r, lat in out if r.status == 504)


def test_slow_answers_are_late_and_right():
    fault = ToolFaultCfg(at=0.0, tool="price_check", kind="slow", extra_delay=4.0)
    out, svc, _log, _p = calls([fault], "price_check", n=3)
    price = float(svc["price_check"].prices[3])
    for _t, r, lat in out:
        assert r.status == 200 and r.payload["price"] == price and lat >= 4.0


def test_the_rate_limit_answers_429():
    tools = ToolsCfg(price_check={"rate_limit": {"rate": 0.5, "burst": 1}})
    out, _svc, log, _p = calls([], "price_check", n=20, gap=0.5, tools=tools)
    statuses = [r.status for _t, r, _l in out]
    assert statuses.count(200) in (5, 6)  # the burst, then 1 token every 2 s over 10 s
    assert statuses.count(429) == 20 - statuses.count(200)
    assert {r[6] for r in log.rows if r[4] == 429} == {"rate_limit"}


def test_throttle_window_sends_429_only_while_active():
    fault = ToolFaultCfg(at=5.0, duration=5.0, tool="price_check", kind="throttle", limit=0.2)
    out, *_ = calls([fault], "price_check", n=16, gap=1.0)
    s = {round(t): r.status for t, r, _l in out}
    assert all(s[t] == 200 for t in (1, 2, 3, 4, 11, 12, 16))
    assert sum(s[t] == 429 for t in range(5, 11)) >= 4


EXPECTED_CLASS = {"wrong_type": "wrong_type", "missing_field": "missing_field", "nan": "not_finite",
                  "huge": "out_of_range", "injection": "smuggling"}


@pytest.mark.parametrize("how", sorted(EXPECTED_CLASS))
@pytest.mark.parametrize("tool", ["inventory_lookup", "price_check", "restock"])
def test_each_malformed_payload_is_refused_by_the_guard_with_its_reason(tool, how):
    fault = ToolFaultCfg(at=0.0, tool=tool, kind="malformed", payload=how)
    out, _svc, log, _p = calls([fault], tool, n=2)
    for _t, r, _l in out:
        assert r.status == 200  # a malformed answer looks like a success
        with pytest.raises(Rejected) as e:
            sanitize(r.payload, SCHEMAS[tool])
        assert e.value.cls == EXPECTED_CLASS[how], e.value
    assert {r[7] for r in log.rows} == {how}


def test_a_clean_answer_passes_the_schema():
    for tool in ("inventory_lookup", "price_check", "restock"):
        out, *_ = calls([], tool, n=1)
        assert sanitize(out[0][1].payload, SCHEMAS[tool]) is not None


@pytest.mark.parametrize("tool,field", [("inventory_lookup", "stock"), ("price_check", "price")])
def test_byzantine_values_pass_the_schema_and_are_wrong(tool, field):
    fault = ToolFaultCfg(at=0.0, tool=tool, kind="byzantine", factor=0.5)
    out, svc, _log, primary = calls([fault], tool, n=20)
    truth = 7 if tool == "inventory_lookup" else float(svc["price_check"].prices[3])
    for _t, r, _l in out:
        v = sanitize(r.payload, SCHEMAS[tool])
        got = getattr(v, field)
        assert got != truth and 0 <= got <= truth * 1.5 + 1 and math.isfinite(got)


def test_a_byzantine_restock_ships_the_wrong_quantity_and_acknowledges_the_right_one():
    fault = ToolFaultCfg(at=0.0, tool="restock", kind="byzantine", factor=0.5)
    tools = ToolsCfg(lead_time=DelayCfg(dist="constant", mean=2.0))
    out, svc, _log, primary = calls([fault], "restock", n=3, tools=tools)
    assert [r.payload["qty"] for _t, r, _l in out] == [4, 4, 4]
    shipped = [d[3] for d in svc["restock"].delivered]
    assert len(shipped) == 3 and all(q != 4 for q in shipped)
    assert int(primary.stock[3]) == 7 + sum(shipped)


def test_restock_lands_on_the_primary_after_the_lead_time():
    tools = ToolsCfg(lead_time=DelayCfg(dist="constant", mean=30.0))
    out, svc, _log, primary = calls([], "restock", n=1, tools=tools, until=25.0)
    assert out[0][1].status == 200 and abs(out[0][1].payload["eta"] - 31.0) < 0.2
    assert int(primary.stock[3]) == 7 and not svc["restock"].delivered
    out, svc, _log, primary = calls([], "restock", n=1, tools=tools, until=40.0)
    assert int(primary.stock[3]) == 11 and len(svc["restock"].delivered) == 1
