"""Where each robot's time goes (issue 13): seconds per state, in both tempos.

Per robot the states sum to the run's simulated time; the tick tempo has no
waiting states; crowding shows up as blocked time and network latency as
waiting time; the summary names the bottleneck and the store gets one row per
robot. (That the accounting leaves behaviour alone is tests/test_trace_contract.py.)
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from desim.app.recording import record_run
from desim.app.runner import build, run
from desim.app.scenario import load
from desim.models.warehouse.robot_time import (BLOCKED, FORWARD, LEFT, NOOP, RIGHT, STATES, TOGGLE_LOAD, WAIT_CMD, WAIT_OBS,
                                               WAITING, RobotClock)
from desim.scenario import parse
from desim.store import Store
from desim.store.schema import table_schema

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
ACTIONS = ("moving", "turning", "loading", "blocked", "idle")


def edited(name: str, edits: dict, until: float):
    """A shipped scenario with dotted-path edits (``"links.wireless.delay": {...}``), shortened to ``until``."""
    d = tomllib.loads((SCENARIOS / name).read_text())
    d["until"] = until
    for path, value in edits.items():
        *head, last = path.split(".")
        node = d
        for k in head:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return parse(tomli_w.dumps(d))


def tiny(robots: int, tempo: str = "tick", until: float = 600.0, extra: str = "", brain: str = "greedy"):
    return parse(f"""
name = "t"
until = {until}
[warehouse]
size = "tiny"
robots = {robots}
tempo = "{tempo}"
brain = "{brain}"
{extra}
""")


def check_sums(result) -> dict[str, np.ndarray]:
    """Per robot, the states sum to the simulated time; the summary's totals and shares agree."""
    m, s, now = result.model, result.summary, result.sim.now
    per = m.robot_time()
    assert set(per) == set(STATES)
    assert all(v.shape == (m.n,) and (v >= 0).all() for v in per.values())
    total = sum(per.values())
    np.testing.assert_allclose(total, np.full(m.n, now), rtol=1e-6)
    for k in STATES:
        assert s["robot_time"][k] == pytest.approx(float(per[k].sum()), rel=1e-9, abs=1e-9)
    assert sum(s["robot_time"].values()) == pytest.approx(m.n * now, rel=1e-6)
    assert sum(s["robot_time_share"].values()) == pytest.approx(1.0, abs=1e-9)
    return per


def waiting_share(s: dict) -> float:
    return s["robot_time_share"]["waiting_obs"] + s["robot_time_share"]["waiting_command"]


# -- the clock itself --------------------------------------------------------------

def test_clock_event_sequence_by_hand():
    tasks = np.array([-1, -1, -1])
    c = RobotClock(3, event=True, tasks=tasks)  # every robot starts waiting for an observation
    c.answered(0, 0.3)  # the controller answers robot 0: its command is in flight
    c.switch(0, WAIT_CMD, 0.5)  # robot 0 has it (already waiting_command: nothing moves)
    c.switch(0, FORWARD, 0.5)  # decided at once
    c.resolved(0, FORWARD, True, 1.5)  # the floor kept it in place: the whole second was blocked
    c.switch(0, WAIT_OBS, 1.5)
    c.answered(0, 1.6)
    c.settle(0, WAIT_OBS, 2.5)  # its answer was lost: after the timeout the whole wait counts as waiting_obs
    c.answered(0, 2.7)
    c.switch(0, WAIT_CMD, 2.75)
    c.switch(0, TOGGLE_LOAD, 2.75)  # still loading when the run ends: counted as loading
    c.settle(1, WAIT_OBS, 2.0)  # robot 1 is never answered
    c.switch(1, WAIT_OBS, 2.0)
    c.answered(1, 2.9)
    c.answered(1, 3.0)  # a second answer changes nothing
    c.switch(2, NOOP, 0.0)  # robot 2 waits: idle without work, blocked (held up) with a task
    c.resolved(2, NOOP, False, 1.0)
    c.switch(2, FORWARD, 1.0)
    c.resolved(2, FORWARD, False, 2.0)
    c.switch(2, NOOP, 2.0)
    tasks[2] = 7
    c.resolved(2, NOOP, False, 3.0)
    c.switch(2, LEFT, 3.0)
    c.resolved(2, LEFT, False, 3.5)
    c.switch(2, NOOP, 3.5)  # and is still waiting, with its task, when the run ends
    got = c.seconds(4.0)
    assert got["waiting_obs"].tolist() == pytest.approx([0.3 + 1.0 + 0.2, 2.9, 0.0])
    assert got["waiting_command"].tolist() == pytest.approx([0.2 + 0.05, 1.1, 0.0])
    assert got["blocked"].tolist() == pytest.approx([1.0, 0.0, 1.5])
    assert got["loading"].tolist() == pytest.approx([1.25, 0.0, 0.0])
    assert got["moving"].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert got["turning"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    assert got["idle"].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert sum(got.values()).tolist() == pytest.approx([4.0, 4.0, 4.0])
    assert c.seconds(4.0)["loading"][0] == pytest.approx(1.25)  # reading does not close the open segment


def test_clock_tick_sequence_by_hand():
    tasks = np.array([-1, -1, 3])
    c = RobotClock(3, event=False, tasks=tasks)
    acts = np.array([FORWARD, LEFT, NOOP])
    for k in range(1, 3001):  # past one batch of ticks (1024 for 3 robots) and into the next
        c.pending = acts
        blocked = np.array([True, False, False]) if k % 4 == 0 else None
        if k == 1001:
            tasks[2] = -1  # robot 2's task is gone: from now on its NOOPs are idle
        c.tick(acts, blocked, 0.5 * k)
    c.pending = np.array([TOGGLE_LOAD, RIGHT, FORWARD])  # the tick in progress at the end: nominal states
    got = c.seconds(1500.2)
    assert got["moving"].tolist() == pytest.approx([0.5 * 2250, 0.0, 0.2])
    assert got["blocked"].tolist() == pytest.approx([0.5 * 750, 0.0, 0.5 * 1000])
    assert got["turning"].tolist() == pytest.approx([0.0, 1500.2, 0.0])
    assert got["idle"].tolist() == pytest.approx([0.0, 0.0, 1000.0])
    assert got["loading"].tolist() == pytest.approx([0.2, 0.0, 0.0])
    assert got["waiting_obs"].sum() == 0 and got["waiting_command"].sum() == 0


# -- the invariant, both tempos, on the shipped floors ----------------------------

@pytest.mark.parametrize("name,until", [("warehouse-tiny.toml", 300.0), ("warehouse-small.toml", 300.0),
                                        ("warehouse-tiny-event.toml", 300.0), ("warehouse-small-event.toml", 1300.0)])
def test_states_sum_to_the_run_for_every_robot(name, until):
    sc = load(SCENARIOS / name)
    r = run(sc, 2, until, file=str(SCENARIOS / name))
    per = check_sums(r)
    s = r.summary
    if sc.warehouse.tempo == "tick":  # network-free, and every tick is one action's state
        assert per["waiting_obs"].sum() == 0 and per["waiting_command"].sum() == 0
        ticks = per["moving"] / sc.warehouse.tick_seconds
        assert np.allclose(ticks, np.round(ticks))
        refused = r.model.clock.raw(r.sim.now)[:, BLOCKED]  # blocked by the floor, not held by the brain
        assert refused.sum() == pytest.approx(s["blocked_moves"] * sc.warehouse.tick_seconds)
    else:  # the wireless link costs every robot some waiting
        assert (per["waiting_obs"] > 0).all() and (per["waiting_command"] > 0).all()
    assert s["bottleneck"] in WAITING
    assert s["bottleneck"] == max(WAITING, key=lambda k: s["robot_time"][k])


def test_a_partitioned_zone_waits_for_observations():
    """warehouse-small-event cuts zone-1 (robots 1 and 3) off for t = 1200..1260: they spend that
    minute in waiting_obs (asking again every obs_timeout), while zone-0's robots keep working."""
    world = build(load(SCENARIOS / "warehouse-small-event.toml"), 1)
    world.sim.run(1200.0)
    before = world.model.robot_time()
    world.sim.run(1262.0)
    after = world.model.robot_time()
    spent = {k: after[k] - before[k] for k in STATES}
    np.testing.assert_allclose(sum(spent.values()), 62.0, rtol=1e-6)
    assert spent["waiting_obs"][[1, 3]].min() > 50.0
    assert spent["waiting_obs"][[0, 2]].max() < 15.0
    assert (spent["moving"][[0, 2]] > 30.0).all()


def test_tick_with_half_second_ticks():
    r = run(tiny(4, "tick", until=200.0, extra="tick_seconds = 0.5"), seed=3)
    per = check_sums(r)
    for k in STATES:  # whole ticks (the last one still under way at t = 200)
        assert np.allclose(per[k] / 0.5, np.round(per[k] / 0.5)), k
    refused = r.model.clock.raw(r.sim.now)[:, BLOCKED]
    assert refused.sum() == pytest.approx(r.summary["blocked_moves"] * 0.5)


def test_random_brain_is_blocked_by_the_floor():
    """The random brain drives into walls and robots: its refused moves are blocked time, one tick each."""
    r = run(tiny(8, "tick", brain="random", until=300), seed=5)
    per = check_sums(r)
    assert r.summary["blocked_moves"] > 100
    refused = r.model.clock.raw(r.sim.now)[:, BLOCKED]
    assert refused.sum() == pytest.approx(r.summary["blocked_moves"])
    assert per["blocked"].sum() >= refused.sum()


def test_zero_delay_event_tempo_spends_time_as_the_tick_tempo():
    """With zero network delay and unit durations the event tempo takes the tick tempo's trajectory;
    its robots spend their time exactly alike, and never wait."""
    tick = run(tiny(4, "tick", until=400), seed=7)
    event = run(tiny(4, "event", until=400), seed=7)
    t, e = check_sums(tick), check_sums(event)
    for k in ACTIONS:
        np.testing.assert_allclose(e[k], t[k], atol=1e-9, err_msg=k)
    assert e["waiting_obs"].sum() == 0 and e["waiting_command"].sum() == 0


# -- what the figures show -------------------------------------------------------

@pytest.mark.parametrize("tempo", ["tick", "event"])
def test_a_crowded_floor_is_blocked_much_more(tempo):
    """20 robots on the tiny floor spend a third of their time held up by each other; 2 robots hardly any.
    (The greedy brain never drives into an occupied cell: it waits, a NOOP with work, which counts as blocked.)"""
    sparse = run(tiny(2, tempo, until=600), seed=1)
    crowded = run(tiny(20, tempo, until=600), seed=1)
    check_sums(sparse), check_sums(crowded)
    b2, b20 = sparse.summary["robot_time_share"]["blocked"], crowded.summary["robot_time_share"]["blocked"]
    assert b20 > 0.2
    assert b20 > 5 * b2
    assert crowded.summary["bottleneck"] == "blocked"
    # with fewer orders than robots, the spare robots are idle instead
    spare = run(tiny(20, tempo, until=600, extra="request_queue = 8"), seed=1)
    check_sums(spare)
    assert spare.summary["bottleneck"] == "idle"
    assert spare.summary["robot_time_share"]["idle"] > 0.4


def test_wireless_latency_shows_as_waiting():
    no_delay = {"dist": "constant", "mean": 0.0}
    quick = edited("warehouse-tiny-event.toml", {"links.wireless.delay": no_delay, "links.default.delay": no_delay,
                                                 "links.wireless.loss": None}, until=600.0)
    slow = edited("warehouse-tiny-event.toml", {"links.wireless.delay": {"dist": "constant", "mean": 0.25},
                                                "links.default.delay": no_delay, "links.wireless.loss": None},
                  until=600.0)
    q, s = run(quick, seed=1), run(slow, seed=1)
    check_sums(q), check_sums(s)
    assert waiting_share(q.summary) < 1e-3  # only the messages' transmission time (512 bytes at 54 Mbit/s)
    assert waiting_share(s.summary) > 0.2
    # one robot's round trip: 0.25 s up (waiting_obs), 0.25 s down (waiting_command), per decision
    t = s.summary["robot_time"]
    assert t["waiting_command"] == pytest.approx(t["waiting_obs"], rel=0.05)
    assert s.summary["bottleneck"] in ("waiting_obs", "waiting_command")
    # the default wireless link (lossy, 20 ms) sits in between, and its lost messages cost waiting_obs most
    mid = run(load(SCENARIOS / "warehouse-tiny-event.toml"), 1, 600.0)
    assert 0.0 < waiting_share(mid.summary) < waiting_share(s.summary)
    assert mid.summary["robot_time"]["waiting_obs"] > mid.summary["robot_time"]["waiting_command"]


# -- the store ---------------------------------------------------------------------

def test_robot_time_table_one_row_per_robot(tmp_path):
    schema = table_schema("robot_time")
    assert schema is not None and list(schema.columns) == ["robot", "zone", *STATES]
    path = SCENARIOS / "warehouse-small-event.toml"
    summary = record_run(load(path), path, tmp_path / "s.duckdb", seed=1, until=300.0)
    rows = Store(tmp_path / "s.duckdb").table("robot_time", as_dicts=True)
    assert [r["robot"] for r in sorted(rows, key=lambda r: r["robot"])] == list(range(summary["robots"]))
    assert {r["robot"]: r["zone"] for r in rows} == {i: i % 2 for i in range(summary["robots"])}
    for r in rows:
        assert sum(r[k] for k in STATES) == pytest.approx(300.0, rel=1e-6)
    for k in STATES:
        assert sum(r[k] for r in rows) == pytest.approx(summary["robot_time"][k], rel=1e-9, abs=1e-9)
    assert summary["bottleneck"] in WAITING
