"""The warehouse model split by job: Floor's state is read only through its public
read-only views, the model takes its brain from outside, and the pieces fit."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from desim.app.runner import prepare
from desim.models.warehouse import Floor, Layout
from desim.models.warehouse.model import WarehouseModel
from desim.models.warehouse.tempo import InstantBatch
from desim.network.config import attach
from desim.scenario import parse
from desim.sim import Simulation

WAREHOUSE = Path(__file__).resolve().parent.parent / "models" / "warehouse"
FLOOR_NAMES = {"floor", "f", "fl"}  # how the code names a Floor


def _is_floor(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in FLOOR_NAMES
    if isinstance(node, ast.Attribute):  # self.floor, wh.floor, model.floor ...
        return node.attr == "floor"
    return False


def test_no_module_but_floor_reads_floors_private_attributes():
    offenders = []
    for path in sorted(WAREHOUSE.glob("*.py")):
        if path.name == "floor.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and _is_floor(node.value)):
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("warehouse.floor"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    offenders.append(f"{path.name}:{node.lineno}: imports {private}")
    assert not offenders, "private Floor state read outside floor.py:\n" + "\n".join(offenders)


def test_models_never_import_policies():
    for path in sorted(WAREHOUSE.parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.startswith(("desim.policies", "policies")) for n in names), f"{path}:{node.lineno}"
    code = "import sys, desim.models.warehouse.model; print(any(m.startswith('desim.policies') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


LIVE = ("cells", "headings", "cargo", "shelf_cells", "requests", "requested", "occupancy",
        "blocked_per_cell", "collisions_per_cell")
STATIC = ("neighbours", "highway", "goal_cells", "shelf_homes")


def test_floor_views_are_read_only_live_and_free():
    fl = Floor(Layout.from_size("tiny"), 6, 6, rng=np.random.default_rng(0))
    fl.reset()
    for name in LIVE + STATIC:
        v = getattr(fl, name)
        assert not v.flags.writeable, name
        assert getattr(fl, name) is v, f"{name}: made once, not per read"
        with pytest.raises(ValueError):
            v[0] = v[0]
    cells, headings, cargo = fl.cells, fl.headings, fl.cargo
    rng = np.random.default_rng(1)
    for _ in range(50):  # the views follow the floor as it steps (state is written in place)
        fl.step(rng.integers(5, size=6))
        st = fl.state_dict()
        assert np.array_equal(cells, st["agent_y"] * fl.width + st["agent_x"])
        assert np.array_equal(headings, st["agent_dir"]) and np.array_equal(cargo, st["carrying"])
        assert np.array_equal(fl.requests, st["request_queue"])
        assert np.array_equal(np.flatnonzero(fl.requested), np.sort(st["request_queue"]))
        assert (fl.occupancy[cells] == np.arange(6)).all()
    for grid in (fl.blocked_moves, fl.collisions):  # the (height, width) counters are read-only too
        assert grid.shape == (fl.height, fl.width) and not grid.flags.writeable
    assert fl.blocked_per_cell.sum() == fl.blocked_moves.sum()
    assert fl.collisions_per_cell.sum() == fl.collisions.sum()
    # a new state (reset / load_state) gets new views of its new arrays
    st = fl.state_dict()
    fl.reset()
    fl.load_state(st)
    assert np.array_equal(fl.cells, st["agent_y"] * fl.width + st["agent_x"])
    assert not fl.cells.flags.writeable


def _model(brain, tempo="tick"):
    sc = parse(f'name = "t"\nuntil = 20\n[warehouse]\nsize = "tiny"\nrobots = 2\ntempo = "{tempo}"\nbrain = "greedy"\n')
    plan = prepare(sc)
    sim = Simulation(0)
    net = attach(sim, plan.scenario, plan.graph.copy())
    return sim, WarehouseModel(sim, net, plan.scenario.warehouse, plan.prepared, brain)


@pytest.mark.parametrize("tempo", ["tick", "event"])
def test_no_brain_and_no_external_hook_is_a_clear_error(tempo):
    sim, model = _model(None, tempo)
    assert model.brain is None  # the model never builds a brain from the scenario's name
    with pytest.raises(RuntimeError, match="no brain and no external hook"):
        sim.run(5.0)


class Always:
    """A brain: always the same action."""

    policy_version = 0

    def __init__(self, action):
        self.action, self.calls = action, 0

    def act(self, observations):
        self.calls += 1
        return [self.action] * len(observations)


def test_an_injected_brain_decides_in_one_batch_per_instant():
    brain = Always(2)  # turn left, forever
    sim, model = _model(brain)
    sim.run(10.0)
    assert model.brain is brain and brain.calls == 10 and model.decisions == 20
    assert model.summary()["deliveries"] == 0 and model.resolutions == 9


def test_external_hook_takes_the_decisions():
    sim, model = _model(None)
    seen = []

    def hook(batch):
        seen.append([i for i, _obs, _ev in batch])
        for _i, _obs, ev in batch:
            ev.succeed(0)

    model.external = hook
    sim.run(4.0)
    assert seen == [[0, 1]] * 4


def test_instant_batch_hands_over_one_sorted_batch_at_the_end_of_the_instant():
    sim = Simulation(0)
    got = []
    batch = InstantBatch(sim, lambda b: got.append([(i, p) for i, p, _ev in b]) or [ev.succeed(p) for _i, p, ev in b])

    def proc(i, delay):
        yield sim.env.timeout(delay)
        v = yield batch.add(i, f"p{i}")
        assert v == f"p{i}"

    for i, delay in ((2, 1.0), (0, 1.0), (1, 2.0)):
        sim.env.process(proc(i, delay))
    sim.run(3.0)
    assert got == [[(0, "p0"), (2, "p2")], [(1, "p1")]]
