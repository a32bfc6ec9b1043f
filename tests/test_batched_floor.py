"""Differential test: the batched torch floor against the numpy Floor, step by step.

N floors with different streams are stepped by :class:`BatchedFloor` and, one
by one, by numpy :class:`Floor` s with the same tie rule (``tie_break="index"``).
After every step every floor's robot cells, headings, loads, ``has_delivered``,
shelf cells, request queue, step and inactivity counters, rewards and done
flag are compared. Episodes start from the batched floor's own reset (copied
into the numpy floor) or from a random crowded state (robots packed in a
window, half of them loaded, many requests carried: conflicts and deliveries
every few steps) loaded into both.

Actions: random (biased to FORWARD so robots collide), or greedy brains (the
heuristic of ``policies/heuristics.py`` over a Dispatcher per numpy floor,
with a little epsilon so jams break), which drive robots into each other at
the goals and in the aisles.

The request refill: the numpy floor follows the batched floor's draw (its
``request_source`` hands it the shelf the batched floor drew at that goal),
and the test checks the draw was a valid one (a shelf not requested, not the
delivered one) and that both delivered at the same goals.

``test_batched_floor_matches_numpy`` is the lean default run (about 20k env
steps); ``test_batched_floor_matches_numpy_full`` (slow, about a minute) runs 126k env
steps over the standard layouts and two custom ones. The same runs are
parametrized on CUDA, skipped with a reason when no GPU is present.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_warehouse_rware_diff import DENSE, random_state

from desim.models.warehouse import Floor, Layout
from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.dispatch import Dispatcher
from desim.models.warehouse.observe import FloorStatic, FloorView, RobotObs
from desim.policies.heuristics import EpsilonGreedyBrain

FWD_BIASED = (0.1, 0.5, 0.12, 0.12, 0.16)  # NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD
# one-lane aisles and four goals side by side: queues into one free cell, rotations around the blocks
RING = """
........
.xx..xx.
.xx..xx.
........
.x.gg.x.
..g..g..
"""
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (the cpu twin runs)")),
]

# name, layout, robots, queue, reward, extra floor kwargs
LAYOUTS = {
    "tiny-2ag": (Layout.from_size("tiny"), 2, 2, "individual", {"max_steps": 500}),
    "tiny-12ag": (Layout.from_size("tiny"), 12, 6, "global", {"max_steps": 200}),
    "small-4ag": (Layout.from_size("small"), 4, 4, "individual", {"max_steps": 500}),
    "medium-6ag": (Layout.from_size("medium"), 6, 6, "two_stage", {"max_steps": 300}),
    "large-8ag": (Layout.from_size("large"), 8, 8, "individual", {"max_steps": 500}),
    "dense-16ag": (Layout.from_ascii(DENSE, "dense"), 16, 7, "two_stage", {"max_inactivity_steps": 40, "max_steps": 400}),
    "ring-10ag": (Layout.from_ascii(RING, "ring"), 10, 5, "global", {"max_steps": 150}),
}


class _Side:
    """One numpy floor and, in greedy mode, its dispatcher and brain."""

    def __init__(self, layout, n, Q, reward, kw, greedy: bool, seed: int):
        self.floor = Floor(layout, n, Q, reward, rng=np.random.default_rng(seed), tie_break="index", **kw)
        self.greedy = greedy
        self.brain = EpsilonGreedyBrain(np.random.default_rng(seed + 1), epsilon=0.1) if greedy else None
        self.pending: list[int] = []
        self.bad_draws = 0
        self.floor.request_source = self._refill

    def _refill(self, shelf: int, robot: int) -> int:
        new = self.pending.pop(0) if self.pending else -1
        if new < 0 or new == shelf or self.floor.requested[new]:
            self.bad_draws += 1
        return new

    def start(self, state: dict) -> None:
        self.floor.reset()
        self.floor.load_state(state)
        if self.greedy:
            self.static = FloorStatic.of(self.floor)
            self.dispatch = Dispatcher(self.floor, self.floor.n_agents)

    def actions(self, rng: np.random.Generator) -> np.ndarray:
        n = self.floor.n_agents
        if not self.greedy:
            return rng.choice(5, size=n, p=FWD_BIASED)
        view = FloorView.of(self.floor, 0.0, self.static)
        obs = [RobotObs(i, view, self.dispatch.dispatch(i)) for i in range(n)]
        return np.asarray(self.brain.act(obs), dtype=np.int64)


def run_diff(name: str, n_floors: int, steps: int, greedy: bool, device: str, seed: int, crowd: float = 0.5) -> dict:
    layout, n, Q, reward, kw = LAYOUTS[name]
    bf = BatchedFloor(layout, n, Q, n_floors, reward, seed=seed, device=device, **kw)
    sides = [_Side(layout, n, Q, reward, kw, greedy, seed * 1000 + e) for e in range(n_floors)]
    rng = np.random.default_rng(seed)
    st = dict(steps=0, mismatches=0, deliveries=0, blocked=0, episodes=0, details=[])

    def start(floors: list[int]) -> None:
        for e in floors:
            if rng.random() < crowd:  # a crowded state into both
                sides[e].floor.reset()
                state = random_state(sides[e].floor, rng)
                bf.load_state(e, state)
            state = bf.state_dict(e)
            sides[e].start(state)
            st["episodes"] += 1

    bf.reset()
    start(list(range(n_floors)))
    for t in range(steps):
        acts = np.stack([s.actions(rng) for s in sides])
        rewards, done = bf.step(torch.as_tensor(acts, device=device))
        cell, dirs, carry = bf.cell.cpu().numpy(), bf.dir.cpu().numpy(), bf.carry.cpu().numpy()
        hd, sc, q = bf.has_delivered.cpu().numpy(), bf.shelf_cell.cpu().numpy(), bf.queue.cpu().numpy()
        counters = np.stack([bf.steps.cpu().numpy(), bf.inactive.cpu().numpy(), bf.delivered.cpu().numpy()], 1)
        refills, rewards, done = bf.refills.cpu().numpy(), rewards.cpu().numpy(), done.cpu().numpy()
        blocked = bf.blocked.cpu().numpy()
        for e, s in enumerate(sides):
            f = s.floor
            s.pending = [int(x) for x in refills[e] if x >= 0]
            r, info = f.step(acts[e])
            diff = [k for k, a, b in (
                ("cells", f.cells, cell[e]), ("dirs", f.headings, dirs[e]), ("carry", f.cargo, carry[e]),
                ("has_delivered", f._has_delivered, hd[e]), ("shelves", f.shelf_cells, sc[e]),
                ("queue", f.requests, q[e]), ("rewards", r, rewards[e]), ("blocked", f.refused, blocked[e]),
                ("counters", np.array([f.steps, f._inactive, info["delivered"]]), counters[e]),
            ) if not np.array_equal(a, b)]
            if info["done"] != bool(done[e]):
                diff.append("done")
            if s.pending or s.bad_draws:
                diff.append(f"refills left {s.pending}, bad draws {s.bad_draws}")
            if diff:
                st["mismatches"] += 1
                if len(st["details"]) < 5:
                    st["details"].append(f"{name} floor {e} step {t}: {diff}")
                sides[e].start(bf.state_dict(e))  # resynchronise
                s.bad_draws = 0
            st["deliveries"] += info["delivered"]
            st["blocked"] += info["blocked"]
        st["steps"] += n_floors
        if done.any():
            bf.reset(torch.as_tensor(done, device=device))
            start(np.flatnonzero(done).tolist())
    st["ties"] = sum(s.floor._tie_events for s in sides)
    return st


def _check(st: dict, steps: int) -> None:
    assert st["steps"] == steps
    assert st["mismatches"] == 0, st["details"]
    assert st["deliveries"] > 0
    assert st["blocked"] > 0


# lean default: ~20k env steps over every layout, both action sources
LEAN = [(name, greedy) for name in LAYOUTS for greedy in (False, True)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,greedy", LEAN, ids=[f"{n}-{'greedy' if g else 'random'}" for n, g in LEAN])
def test_batched_floor_matches_numpy(name, greedy, device):
    floors, steps = (8, 60) if greedy else (16, 120)
    st = run_diff(name, floors, steps, greedy, device, seed=sum(map(ord, name)) + greedy, crowd=0.7)
    _check(st, floors * steps)


FULL_STEPS = {"tiny-2ag": 700, "tiny-12ag": 300, "small-4ag": 700, "medium-6ag": 400, "large-8ag": 600,
              "dense-16ag": 400, "ring-10ag": 400}


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_batched_floor_matches_numpy_full(device):
    """Over 100k env steps: every layout, random and greedy, episodes to their limits and crowded starts."""
    total, ties = 0, 0
    for name, steps in FULL_STEPS.items():
        for greedy in (False, True):
            floors = 12 if greedy else 24
            st = run_diff(name, floors, steps, greedy, device, seed=7 + len(name) + greedy, crowd=0.3)
            _check(st, floors * steps)
            print(f"{name} {'greedy' if greedy else 'random'}: {st['steps']} env steps, {st['deliveries']} deliveries, "
                  f"{st['blocked']} blocked, {st['ties']} ties, {st['episodes']} episodes")
            total += st["steps"]
            ties += st["ties"]
    assert total >= 100_000
    assert ties > 0  # equal queues met: the index rule was exercised


def test_ties_follow_the_index_rule():
    """Two queues of equal length into one free cell: the one headed by the lower robot index moves."""
    layout = Layout.from_size("tiny")
    bf = BatchedFloor(layout, 4, 1, 2, reward_type="global", seed=0)
    bf.reset()
    row = layout.height - 1  # the delivery row: all highway
    # robots 0 and 1 face the free cell x=4 from either side; robots 2 and 3 queue behind them
    for e, (xs, dirs) in enumerate((([3, 5, 2, 6], [3, 2, 3, 2]), ([5, 3, 6, 2], [2, 3, 2, 3]))):
        d = bf.state_dict(e)
        d.update(agent_x=np.array(xs), agent_y=np.full(4, row), agent_dir=np.array(dirs), carrying=np.full(4, -1))
        bf.load_state(e, d)
    bf.step(torch.ones(2, 4, dtype=torch.long))
    x = (bf.cell % layout.width).numpy()
    # on both floors robot 0 and the robot behind it (2) moved; the other queue stayed
    np.testing.assert_array_equal(x[0], [4, 5, 3, 6])
    np.testing.assert_array_equal(x[1], [4, 3, 5, 2])


@pytest.mark.parametrize("device", DEVICES)
def test_streams_do_not_depend_on_batch_size_or_device(device):
    """Floor k replays the same episodes under the same actions whatever the batch size (and device)."""
    layout, n, Q, reward, kw = LAYOUTS["small-4ag"]
    rng = np.random.default_rng(0)
    acts = rng.choice(5, size=(400, 16, n), p=FWD_BIASED)
    runs = {}
    for E in (3, 16):
        bf = BatchedFloor(layout, n, Q, E, reward, seed=11, device=device, max_steps=100)
        bf.reset()
        cells, queues = [], []
        for t in range(400):
            _r, done = bf.step(torch.as_tensor(acts[t, :E], device=device))
            bf.reset(done)
            cells.append(bf.cell[:3].cpu().numpy().copy())
            queues.append(bf.queue[:3].cpu().numpy().copy())
        runs[E] = (np.stack(cells), np.stack(queues), bf.episode[:3].cpu().numpy())
    assert np.array_equal(runs[3][0], runs[16][0])
    assert np.array_equal(runs[3][1], runs[16][1])
    assert (runs[3][2] == 5).all()  # four resets after the first
    # and different floors (and seeds) draw different streams
    assert not np.array_equal(runs[16][0][:, 0], runs[16][0][:, 1])
    other = BatchedFloor(layout, n, Q, 3, reward, seed=12, device=device)
    other.reset()
    bf = BatchedFloor(layout, n, Q, 3, reward, seed=11, device=device)
    bf.reset()
    assert not torch.equal(other.cell, bf.cell)


def test_reset_draws_valid_uniform_states():
    """Resets: robots on distinct cells, queues of distinct shelves, every cell and heading drawn."""
    layout, n, Q, reward, kw = LAYOUTS["tiny-12ag"]
    bf = BatchedFloor(layout, n, Q, 4096, reward, seed=3)
    bf.reset()
    cells = bf.cell.numpy()
    assert all(np.unique(c).size == n for c in cells)
    assert all(np.unique(q).size == Q for q in bf.queue.numpy())
    hits = np.bincount(cells.ravel(), minlength=layout.n_cells)
    # uniform over cells: each cell is hit about 4096 * 12 / cells times
    expected = 4096 * n / layout.n_cells
    assert hits.min() > 0.8 * expected and hits.max() < 1.2 * expected
    assert set(np.unique(bf.dir.numpy())) == {0, 1, 2, 3}
    assert np.array_equal(bf.in_queue.numpy().sum(1), np.full(4096, Q))
    sg = bf.shelf_grid.numpy()[:, : layout.n_cells]
    assert (sg[:, bf.shelf_home.numpy()] == np.arange(1, layout.n_shelves + 1)).all()


def test_bad_arguments_say_what_is_wrong():
    layout = Layout.from_size("tiny")
    with pytest.raises(ValueError, match="request_queue_size"):
        BatchedFloor(layout, 2, 0, 4)
    with pytest.raises(ValueError, match="reward_type"):
        BatchedFloor(layout, 2, 2, 4, reward_type="nope")
    with pytest.raises(ValueError, match="n_floors"):
        BatchedFloor(layout, 2, 2, 0)
    bf = BatchedFloor(layout, 2, 2, 4)
    with pytest.raises(RuntimeError, match="reset"):
        bf.step(torch.zeros(4, 2, dtype=torch.long))
    bf.reset()
    with pytest.raises(ValueError, match="shape"):
        bf.step(torch.zeros(4, 3, dtype=torch.long))


def test_accelerator_path_takes_the_same_steps():
    """The sync-free path (what CUDA runs: every floor drawn at a reset and the finished ones kept, no
    early exits) steps exactly as the CPU path: forced on CPU, compared floor by floor."""
    layout, n, Q, reward, kw = LAYOUTS["dense-16ag"]
    a, b = (BatchedFloor(layout, n, Q, 12, reward, seed=4, **kw) for _ in range(2))
    b._may_sync = False
    a.reset()
    b.reset()
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(300):
        acts = torch.as_tensor(rng.choice(5, size=(12, n), p=FWD_BIASED))
        ra, da = a.step(acts)
        rb, db = b.step(acts)
        assert torch.equal(ra, rb) and torch.equal(da, db)
        a.reset(da)
        b.reset(db)
        ended += int(da.sum())
        for name in ("cell", "dir", "carry", "has_delivered", "shelf_cell", "queue", "in_queue", "steps",
                     "inactive", "episode", "delivered", "refills"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(a.agent_grid[:, : layout.n_cells], b.agent_grid[:, : layout.n_cells])
        assert torch.equal(a.shelf_grid[:, : layout.n_cells], b.shelf_grid[:, : layout.n_cells])
    assert ended > 12
