"""Traceability: true per-robot contributions by open-loop re-simulation, and the correlation with credit.

The contribution of robot i to an episode is the team return minus the team
return of the same episode re-simulated with robot i on NOOP throughout, the
others replaying their recorded actions, with the same random streams
(``models/warehouse/contribution.py``). These tests pin what makes that
number trustworthy: the re-simulation with nobody replaced reproduces the
real episode exactly (common random numbers), a scripted episode gives the
hand-computed contributions, nothing the caller passed is modified, and the
correlation is 1 for an oracle credit, near 0 for random credit, undefined
(nan) for a constant vector.
"""
from __future__ import annotations

import math

import pytest
import torch

from desim.models.warehouse import Layout
from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.contribution import (counterfactual_returns, record_episodes, replay_returns,
                                                 traceability, true_contributions)
from desim.models.warehouse.vector_env import BatchedWarehouseEnv

torch.set_num_threads(1)
NOOP, FWD, LEFT, RIGHT, TOGGLE = 0, 1, 2, 3, 4
UP, DOWN, WEST, EAST = 0, 1, 2, 3  # headings
# four shelves on top, one goal at (2, 2)
MINI = Layout.from_ascii("""
xxxx
....
..g.
""", "mini")
EPISODES, ROBOTS, STEPS = 128, 4, 100


def guided(seed: int, explore: float = 0.3):
    """A policy on the feature observation that delivers: follow the planner's guidance (toggle when it
    says so, else the first of FORWARD/LEFT/RIGHT that brings the robot closer, else NOOP), with a
    random action at rate ``explore`` so robots differ in what they contribute."""
    g = torch.Generator().manual_seed(seed)

    def act(obs: torch.Tensor) -> torch.Tensor:
        E, N, _ = obs.shape
        greedy = torch.where(obs[..., 9] > 0, TOGGLE, torch.where(obs[..., 10] > 0, FWD, torch.where(
            obs[..., 11] > 0, LEFT, torch.where(obs[..., 12] > 0, RIGHT, NOOP))))
        rnd = torch.randint(0, 5, (E, N), generator=g)
        return torch.where(torch.rand(E, N, generator=g) < explore, rnd, greedy)

    return act


@pytest.fixture(scope="module")
def played():
    return true_contributions(guided(0), episodes=EPISODES, steps=STEPS, seed=1, robots=ROBOTS, request_queue=ROBOTS)


def snapshot(floor: BatchedFloor) -> dict[str, torch.Tensor]:
    return {name: getattr(floor, name).clone() for name in BatchedFloor._STATE + ("stream_ids",)}


def test_replay_with_recorded_actions_reproduces_the_real_returns(played):
    """Common random numbers: re-simulating every episode from its initial state under the recorded joint
    actions (nobody replaced) gives exactly the team returns the env paid, episode by episode, including
    the request refills drawn along the way (the policy delivers, so there are many)."""
    ep = played.episodes
    assert float(ep.team_return.sum()) > EPISODES  # the episodes deliver: refills were drawn
    assert torch.equal(replay_returns(ep.initial, ep.actions), ep.team_return)
    # and each robot's copy in the counterfactual batch, with its own actions put back, is the real episode
    E, N = EPISODES, ROBOTS
    big = BatchedFloor(ep.initial.layout, N, ep.initial.request_queue_size, E * N, ep.initial.reward_type,
                       max_steps=STEPS, seed=ep.initial.seed)
    big.load_repeated(ep.initial, N)
    total = torch.zeros(E * N)
    for a in ep.actions:
        r, _ = big.step(a.repeat_interleave(N, 0))
        total += r.sum(1)
    assert torch.equal(total.reshape(E, N), ep.team_return[:, None].expand(E, N))


def test_contributions_are_the_real_minus_the_counterfactual_returns(played):
    assert played.contribution.shape == (EPISODES, ROBOTS)
    assert torch.equal(played.contribution, played.real[:, None] - played.counterfactual)
    # a robot matters in most episodes of a delivering policy (so the correlations below have spread)
    assert float((played.contribution != 0).float().mean()) > 0.5


def test_oracle_credit_has_traceability_one(played):
    assert traceability(played.contribution, played.contribution) == pytest.approx(1.0, abs=1e-12)
    # any increasing affine map of the truth is just as traceable; a reversed one is -1
    assert traceability(3 * played.contribution + 7, played.contribution) == pytest.approx(1.0, abs=1e-12)
    assert traceability(-played.contribution, played.contribution) == pytest.approx(-1.0, abs=1e-12)


def test_random_credit_has_traceability_near_zero(played):
    """Credit independent of the truth: for independent normal credit the pooled Pearson r over
    n = EPISODES * ROBOTS = 512 points has the null law of a correlation, sd about 1 / sqrt(n - 1) = 0.044
    whatever the (non-constant) true contributions are, so |r| < 0.15 is a 3.4-sd bound (two-sided
    p < 1e-3 per draw); the seeds are fixed, so the test is deterministic."""
    for seed in range(5):
        g = torch.Generator().manual_seed(100 + seed)
        r = traceability(torch.randn(played.contribution.shape, generator=g), played.contribution)
        assert abs(r) < 0.15, (seed, r)


def test_traceability_undefined_for_constant_vectors():
    """No spread, no correlation: reported as nan (undefined), never as 0."""
    true = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert math.isnan(traceability(torch.full((2, 2), 5.0), true))  # global-style: everyone the same
    assert math.isnan(traceability(true, torch.zeros(2, 2)))  # nobody contributed anything
    assert math.isnan(traceability(torch.tensor([0.1] * 7), torch.arange(7.0)))  # rounding is no spread
    assert math.isnan(traceability(torch.tensor([1.0]), torch.tensor([2.0])))
    with pytest.raises(ValueError, match="same number"):
        traceability(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        traceability(torch.tensor([0.0, math.nan]), torch.tensor([0.0, 1.0]))


def mini_state(robots, shelves: dict[int, tuple[int, int]], queue) -> dict:
    """A MINI state: robots as (x, y, heading, carried shelf or -1); shelves moved from home."""
    sx, sy = [0, 1, 2, 3], [0, 0, 0, 0]
    for s, (x, y) in shelves.items():
        sx[s], sy[s] = x, y
    return {"agent_x": [r[0] for r in robots], "agent_y": [r[1] for r in robots],
            "agent_dir": [r[2] for r in robots], "carrying": [r[3] for r in robots],
            "shelf_x": sx, "shelf_y": sy, "request_queue": list(queue), "steps": 0}


def test_hand_checked_one_robot_delivers_the_other_idles():
    """Floor 0: robot 0 carries requested shelf 0 at (2, 1) facing the goal below it and drives onto it;
    robot 1 only turns. Floor 1: the same with the roles swapped. Each floor's team return is 1 (one
    delivery); without the deliverer it is 0, without the idler still 1: contributions (1, 0) and (0, 1)."""
    floor = BatchedFloor(MINI, 2, 1, 2, "individual", seed=3)
    floor.load_state(0, mini_state([(2, 1, DOWN, 0), (0, 2, UP, -1)], {0: (2, 1)}, [0]))
    floor.load_state(1, mini_state([(0, 2, UP, -1), (2, 1, DOWN, 0)], {0: (2, 1)}, [0]))
    deliver, idle = [FWD, NOOP, NOOP, NOOP], [LEFT, RIGHT, LEFT, NOOP]
    actions = torch.tensor([[[d, i], [i, d]] for d, i in zip(deliver, idle)])  # (T=4, E=2, N=2)
    real = replay_returns(floor, actions)
    assert real.tolist() == [1.0, 1.0]
    cf = counterfactual_returns(floor, actions)
    assert cf.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert (real[:, None] - cf).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_robot_that_always_noops_contributes_exactly_zero(played):
    """Replacing NOOPs by NOOPs changes nothing, so the copy is the real episode (CRN): contribution 0."""
    lazy = guided(1)

    def act(obs: torch.Tensor) -> torch.Tensor:
        a = lazy(obs)
        a[:, 2] = NOOP
        return a

    c = true_contributions(act, episodes=16, steps=50, seed=2, robots=ROBOTS, request_queue=ROBOTS)
    assert torch.equal(c.contribution[:, 2], torch.zeros(16))


def test_the_real_floors_and_the_inputs_are_not_modified(played):
    ep = played.episodes
    before, actions = snapshot(ep.initial), ep.actions.clone()
    replay_returns(ep.initial, ep.actions)
    counterfactual_returns(ep.initial, ep.actions)
    after = snapshot(ep.initial)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(ep.actions, actions)
    # the recorded initial state is the env's state after its reset, and a private copy of it
    env = BatchedWarehouseEnv(n_envs=8, robots=ROBOTS, request_queue=ROBOTS, max_steps=20, seed=4)
    rec = record_episodes(env, guided(2), 20, seed=4)
    fresh = BatchedWarehouseEnv(n_envs=8, robots=ROBOTS, request_queue=ROBOTS, max_steps=20, seed=4)
    fresh.reset(seed=4)
    for f in range(8):
        a, b = rec.initial.state_dict(f), fresh.floor.state_dict(f)
        assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    assert torch.equal(replay_returns(rec.initial, rec.actions), rec.team_return)


def test_refusals():
    with pytest.raises(ValueError, match="credit"):
        true_contributions(guided(0), episodes=2, steps=5, credit="global")
    with pytest.raises(ValueError, match="own reward"):
        record_episodes(BatchedWarehouseEnv(n_envs=2, shaping=0.5), guided(0), 5)
    floor = BatchedFloor(MINI, 2, 1, 1)
    floor.reset()
    with pytest.raises(ValueError, match="shape"):
        counterfactual_returns(floor, torch.zeros(3, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="0..4"):
        replay_returns(floor, torch.full((3, 1, 2), 5))
