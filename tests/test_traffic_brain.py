"""The traffic brain (policies/traffic.py): safe joint moves, standoffs and cycles cleared, determinism."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desim.app.runner import run
from desim.models.warehouse import Action, Direction, Floor, Layout
from desim.models.warehouse.dispatch import Dispatcher
from desim.models.warehouse.observe import FloorStatic, FloorView, RobotObs
from desim.policies.spec import make_brain
from desim.policies.traffic import TrafficBrain, _Held
from desim.scenario import parse

ROOT = Path(__file__).resolve().parents[1]
N, F, L, R, T = (int(a) for a in Action)
UP, DOWN, LEFT, RIGHT = (int(d) for d in Direction)


def floor_with(text: str, robots, queue) -> Floor:
    """robots: (x, y, dir, carried shelf id or -1) each."""
    layout = Layout.from_ascii(text)
    fl = Floor(layout, len(robots), len(queue), "individual", rng=np.random.default_rng(0))
    sx = [x for x, _ in layout.shelf_cells]
    sy = [y for _, y in layout.shelf_cells]
    for x, y, _d, c in robots:
        if c >= 0:
            sx[c], sy[c] = x, y
    fl.load_state({"agent_x": [r[0] for r in robots], "agent_y": [r[1] for r in robots],
                   "agent_dir": [r[2] for r in robots], "carrying": [r[3] for r in robots],
                   "shelf_x": sx, "shelf_y": sy, "request_queue": list(queue)})
    return fl


def checked_step(brain, fl: Floor, static: FloorStatic, tasks) -> np.ndarray:
    """One tick: every robot decides from a fresh view; the joint move must be safe. Returns the actions."""
    view = FloorView.of(fl, 0.0, static)
    acts = np.array(brain.act([RobotObs(i, view, int(tasks[i])) for i in range(fl.n_agents)]), dtype=np.int64)
    cells, dirs = fl.cells.copy(), fl.headings.copy()
    ahead = static.nbr[cells, dirs]
    nxt = np.where(acts == F, ahead, cells)
    assert np.unique(nxt).size == nxt.size, "two robots sent into one cell"
    where = {int(c): i for i, c in enumerate(cells)}
    for i in np.flatnonzero(nxt != cells).tolist():
        j = where.get(int(nxt[i]))
        assert j is None or nxt[j] != cells[i], f"robots {i} and {j} sent through each other"
    collisions = int(fl.collisions_per_cell.sum())
    fl.step(acts)
    assert int(fl.collisions_per_cell.sum()) == collisions, "a move ran into a robot"
    assert not fl.refused[acts == F].any(), "a move the floor refused (a wall, a robot or a standing shelf)"
    assert np.array_equal(fl.cells, nxt)
    return acts


@st.composite
def floors(draw):
    size = draw(st.sampled_from(["tiny", "small", "medium"]))
    layout = Layout.from_size(size)
    n = draw(st.integers(2, min(40, layout.n_shelves // 2)))
    seed = draw(st.integers(0, 2**31 - 1))
    warm = draw(st.integers(0, 60))
    return layout, n, seed, warm


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(floors())
def test_never_two_robots_into_one_cell_nor_through_each_other(case):
    """Random floors and states (random walks from rware's reset), then the traffic brain for 40 ticks."""
    layout, n, seed, warm = case
    rng = np.random.default_rng(seed)
    fl = Floor(layout, n, max(1, n // 2), "individual", rng=np.random.default_rng(seed))
    fl.reset()
    for _ in range(warm):  # a random state: robots scattered, some loaded, shelves moved
        fl.step(rng.integers(0, 5, size=n))
    static = FloorStatic.of(fl)
    disp = Dispatcher(fl, n)
    brain = TrafficBrain(np.random.default_rng(seed))
    moves = 0
    for _ in range(40):
        tasks = [disp.dispatch(i) for i in range(n)]
        moves += int((checked_step(brain, fl, static, tasks) == F).sum())
    assert moves > 0, "the robots with tasks went nowhere"


def test_head_on_standoff_in_a_one_lane_aisle_is_cleared():
    # a loaded robot going down to the goal meets a loaded robot going up to put its shelf home,
    # in an aisle one highway cell wide between shelves (loaded robots cannot leave it), open at both ends
    text = "...\nx.x\nx.x\nx.x\nx.x\n...\n.g.\n"
    # shelves row-major: 0=(0,1) 1=(2,1) 2=(0,2) 3=(2,2) 4=(0,3) 5=(2,3) 6=(0,4) 7=(2,4)
    fl = floor_with(text, [(1, 2, DOWN, 7), (1, 4, UP, 0)], queue=(7,))
    static = FloorStatic.of(fl)
    brain = TrafficBrain(np.random.default_rng(0))
    delivered = home = None
    for t in range(80):
        checked_step(brain, fl, static, [-1, -1])
        if delivered is None and fl.deliveries >= 1:
            delivered = t
        if home is None and fl.cargo[1] < 0 and tuple(fl.positions[1]) == (0, 1):
            home = t
        if delivered is not None and home is not None:
            break
    assert delivered is not None, "the delivering robot never reached the goal"
    assert home is not None, "the other robot never put its shelf home"


def test_four_robot_cycle_is_cleared():
    # a 2x2 block, each robot facing the next clockwise, each robot's task beyond the next robot's cell
    text = "x....x\n......\n......\nx....x\n..g..x\n"  # shelves: 0=(0,0) 1=(5,0) 2=(0,3) 3=(5,3) 4=(5,4)
    robots = [(2, 1, RIGHT, -1), (3, 1, DOWN, -1), (3, 2, LEFT, -1), (2, 2, UP, -1)]
    tasks = [1, 3, 2, 0]
    fl = floor_with(text, robots, queue=(0, 1, 2, 3))
    static = FloorStatic.of(fl)
    brain = TrafficBrain(np.random.default_rng(0))
    first = checked_step(brain, fl, static, tasks)
    assert first.tolist() == [F, F, F, F], "the cycle should rotate at once"
    for _ in range(30):
        if (fl.cargo == np.array(tasks)).all():
            break
        checked_step(brain, fl, static, tasks)
    assert fl.cargo.tolist() == tasks, "every robot lifts its task shelf"


def _scenario(name: str, **warehouse):
    path = ROOT / "scenarios" / name
    sc = parse(path.read_text(), str(path), path.parent)
    return sc.model_copy(update={"warehouse": sc.warehouse.model_copy(update={"brain": "traffic", **warehouse})})


@pytest.mark.parametrize("name", ["warehouse-tiny.toml", "warehouse-small-event.toml"])
def test_deterministic_for_a_seed(name):
    sc = _scenario(name)
    a = run(sc, 3, 300.0).summary
    b = run(sc, 3, 300.0).summary
    assert a["trace_hash"] == b["trace_hash"]
    assert a["deliveries"] == b["deliveries"] and a["deliveries"] > 0


def test_registered_as_a_brain():
    brain = make_brain("traffic", np.random.default_rng(0))
    assert isinstance(brain, TrafficBrain) and brain.name == "traffic"
    with pytest.raises(ValueError, match="takes no argument"):
        make_brain("traffic:3", np.random.default_rng(0))


def test_no_collision_in_the_event_tempo_across_a_partition():
    """The small floor's event scenario cuts zone 1 off for a minute at t = 1200 s: robots that hear
    nothing hold their cells, the others keep driving around them, and nobody runs into anybody."""
    sc = _scenario("warehouse-small-event.toml", robots=8)
    s = run(sc, 1, 1500.0).summary
    assert s["collisions"] == 0
    assert s["deliveries"] > 0 and s["orders_conserved"]


def test_longest_deadlock_is_measured():
    """``longest_stuck_s``: how long the worst deadlock held (a stuck robot's time without progress)."""
    jam = run(_scenario("warehouse-small.toml", robots=40, brain="greedy"), 1, 400.0).summary
    assert jam["deadlocks_by_kind"]["stuck"] > 0
    assert 30.0 < jam["longest_stuck_s"] <= 400.0  # stuck_after is 30 s
    # standing in one cell with work: at least as long as a deadlock (turning in place resets
    # the deadlock clock, not this one), never longer than the run
    assert jam["longest_stuck_s"] <= jam["longest_still_s"] <= 400.0
    calm = run(_scenario("warehouse-tiny.toml", robots=1, brain="greedy"), 1, 200.0).summary
    assert calm["deadlocks"] == 0 and calm["longest_stuck_s"] == 0.0
    # a lone robot stands only to lift, put down or turn: seconds, not its idle time before a task
    assert 0.0 < calm["longest_still_s"] < 10.0, calm["longest_still_s"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(floor=st.sampled_from([("warehouse-tiny.toml", None), ("warehouse-small.toml", None)]
                             + [("warehouse-small-event.toml", r) for r in (None, 12.0, 60.0, 600.0)]),
       robots=st.integers(1, 24), brain=st.sampled_from(["greedy", "traffic", "random"]), seed=st.integers(1, 10**6))
def test_deadlock_clocks_run_only_while_a_robot_has_work(floor, robots, brain, seed):
    """The class of bug: a clock of "no progress" that starts before the robot had work counts an
    idle robot's parked time (before a task, or after its task was dropped) as a deadlock. Over
    random floors, fleets, brains and order streams (sparse ones leave robots idle for long):
    a deadlock held never longer than the robot stood in one cell with work, never longer than the
    run, and a robot never stuck without a stand of at least ``stuck_after``."""
    name, rate = floor
    until = 600.0
    upd = {"robots": robots, "brain": brain}
    sc0 = _scenario(name)
    if rate is not None and sc0.warehouse.orders is not None:
        upd["orders"] = sc0.warehouse.orders.model_copy(update={"rate_per_hour": rate, "peaks": []})
    s = run(sc0.model_copy(update={"warehouse": sc0.warehouse.model_copy(update=upd)}), seed, until).summary
    assert 0.0 <= s["longest_stuck_s"] <= s["longest_still_s"] <= until, (s["longest_stuck_s"], s["longest_still_s"])
    if s["deadlocks_by_kind"]["stuck"]:
        assert s["longest_stuck_s"] >= 30.0  # stuck_after


def test_an_idle_robot_given_a_late_task_is_not_stuck():
    """Orders sparse enough that a robot parks for minutes between them: its wait for work is not a
    deadlock (the watcher's clocks start when the task is given)."""
    sc0 = _scenario("warehouse-small-event.toml", robots=2, brain="greedy")
    orders = sc0.warehouse.orders.model_copy(update={"rate_per_hour": 12.0, "peaks": []})
    s = run(sc0.model_copy(update={"warehouse": sc0.warehouse.model_copy(update={"orders": orders})}), 2, 1800.0).summary
    assert s["deliveries"] > 0
    assert s["deadlocks_by_kind"]["stuck"] == 0 and s["longest_stuck_s"] == 0.0, s["longest_stuck_s"]
    assert s["longest_still_s"] < 30.0


def _view_of(n: int, size: str = "small", t: float = 0.0):
    fl = Floor(Layout.from_size(size), n, max(1, n // 2), "individual", rng=np.random.default_rng(0))
    fl.reset()
    return fl, FloorView.of(fl, t, FloorStatic.of(fl))


def test_lanes_and_goal_balancing_scale_with_how_crowded_the_floor_is():
    """A sparse floor drives the shortest ways to the nearest goal; a crowded one gets the full lanes."""
    sparse, crowded = TrafficBrain(np.random.default_rng(0)), TrafficBrain(np.random.default_rng(0))
    sparse._setup(_view_of(2)[1])  # 2 robots on 120 highway cells: 0.017 per cell
    crowded._setup(_view_of(16)[1])  # 0.13 per cell
    assert sparse.lane == 0.0 and sparse.balance == 0.0
    assert crowded.lane == crowded.lane_full > 0 and crowded.balance == crowded.balance_full > 0
    mid = TrafficBrain(np.random.default_rng(0))
    mid._setup(_view_of(5)[1])  # 0.042 per cell: part way
    assert 0 < mid.lane < mid.lane_full


def test_a_cell_counts_as_vacated_only_on_a_newer_view_showing_its_robot_where_it_was_sent():
    """Event tempo: robot 0 decided at t = 1 in its cell X and was sent into Y. Until it decides again
    X is held, unless a view newer than t = 1 shows it in Y (it moves only when commanded)."""
    fl, view = _view_of(2, t=1.0)
    brain = TrafficBrain(np.random.default_rng(0))
    brain.act([RobotObs(0, view, -1), RobotObs(1, view, -1)])  # set up the table
    x = int(fl.cells[0])
    y = int(fl.neighbours[x, int(fl.headings[0])])
    assert y != x
    brain._set_known(0, x)
    brain._set_sent(0, y)
    brain.known_t[0] = 1.0
    def held_on(view):
        return _Held(brain, {1}, {}, view)

    assert held_on(view).get(x) == 0 and held_on(view).get(y) == 0  # the same view it decided from
    fl.load_state({**fl.state_dict(), "agent_x": [y % fl.width, int(fl.positions[1][0])],
                   "agent_y": [y // fl.width, int(fl.positions[1][1])]})
    arrived = FloorView.of(fl, 2.0, view.static)
    assert held_on(arrived).get(x) is None, "a newer view shows it arrived: its old cell is free"
    assert held_on(arrived).get(y) == 0, "the cell it was sent into stays held"
    stale = FloorView.of(fl, 0.5, view.static)  # a view older than its decision proves nothing
    assert held_on(stale).get(x) == 0


def test_no_collision_on_a_crowded_floor_in_the_event_tempo():
    """24 robots on the small floor (past its saturation), decisions one robot at a time, views late
    and lost: the held cells, pushes and vacated cells never let two robots meet."""
    s = run(_scenario("warehouse-small-event.toml", robots=24), 2, 600.0).summary
    assert s["collisions"] == 0
    assert s["deliveries"] > 0 and s["orders_conserved"]


RUN_FLOOR = ("................\n"
             "................\n"
             "..........x.....\n"
             ".....x..........\n"
             ".g..............\n")  # shelves: 0=(10,2) 1=(5,3)


def _run_brain(robots, tasks):
    fl = floor_with(RUN_FLOOR, robots, queue=(0,))
    view = FloorView.of(fl, 1.0, FloorStatic.of(fl))
    brain = TrafficBrain(np.random.default_rng(0))
    acts = brain.act([RobotObs(i, view, tasks[i]) for i in range(len(robots))])
    return fl, view, brain, acts


def test_a_robot_alone_on_its_way_is_given_a_run_whose_cells_stay_held_until_it_passes_them():
    """Event tempo: robot 0 drives along row 0 to its shelf at (10, 2) with nobody near; beyond its
    first move it is given the next moves of its way (window 6) and every cell of them is held for
    the others until a newer view shows it past the cell."""
    fl, view, brain, acts = _run_brain([(0, 0, RIGHT, -1), (5, 3, UP, -1)], [0, -1])  # robot 1 parked under shelf 1
    assert acts[0] == F
    run = brain.follow_on(0)
    assert run == [F] * 6, run
    way = [x for x in range(1, 8)]  # (1, 0) .. (7, 0): the first move, then the run
    held = _Held(brain, {1}, {}, view)
    assert all(held.get(x) == 0 for x in way), "the run's cells are held for robot 1"
    assert brain.follow_on(1) == [], "a robot with nothing to do gets no run"
    fl.load_state({**fl.state_dict(), "agent_x": [4, 5], "agent_y": [0, 3]})  # a newer view: robot 0 at (4, 0)
    later = _Held(brain, {1}, {}, FloorView.of(fl, 2.0, view.static))
    assert [later.get(x) for x in [0] + way] == [None] * 4 + [0] * 4, "cells behind it are free, those ahead held"
    brain.act([RobotObs(0, FloorView.of(fl, 3.0, view.static), 0)])  # it decides again: its old run lapses
    assert 0 not in brain._run_cells and not any(0 in ms for ms in brain._run_at.values())


def test_a_run_stops_short_of_another_robot():
    """The same way with robot 1 two rows below it, at (5, 2): the run ends where the way comes within
    ``radius`` (2) cells of it, so robots near each other decide step by step and can give way."""
    _fl, _view, brain, acts = _run_brain([(0, 0, RIGHT, -1), (5, 2, UP, -1)], [0, -1])
    assert acts[0] == F
    assert brain.follow_on(0) == [F, F, F], "(2, 0) .. (4, 0) are more than 2 cells from (5, 2); (5, 0) is not"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(robots=st.integers(2, 24), seed=st.integers(1, 10_000))
def test_runs_in_the_event_tempo_never_cause_a_collision(robots, seed):
    """Runs over the lossy wireless and its partition, from sparse to past the knee: robots driving
    runs without observations never meet another robot, and sparse floors do get runs."""
    from desim.app.runner import build, execute
    world = build(_scenario("warehouse-small-event.toml", robots=robots), seed)
    s = execute(world, 300.0).summary
    brain = world.model.brain
    assert s["collisions"] == 0 and s["orders_conserved"]
    if robots <= 8:
        assert brain.run_moves > 0, "no robot was given a run on a sparse floor"


def test_runs_only_where_every_move_is_not_gated():
    """The tick tempo decides every robot every step (no runs); with [belief] peers each forward move
    goes through the peers' gate, so no runs either."""
    from desim.app.runner import build, execute
    tick = build(_scenario("warehouse-small.toml", robots=4), 1)
    execute(tick, 200.0)
    assert tick.model.brain.run_moves == 0 and not tick.model.tempo.runs
    event = build(_scenario("warehouse-small-event.toml", robots=4), 1)
    execute(event, 200.0)
    assert event.model.brain.run_moves > 0
    peers = build(_scenario("warehouse-peers.toml", robots=4), 1)
    assert peers.model.peers is not None and peers.model.cfg.tempo == "event"
    execute(peers, 200.0)
    assert peers.model.brain.run_moves == 0 and not peers.model.tempo.runs
