"""Batched observations against their references.

- ``RwareObs`` against rware 2.0.0 itself: batched floors are put into random
  states (random crowded states, and states reached by stepping under random
  actions), each floor's state is copied into an rware ``Warehouse``
  (``rware_bridge.to_rware``) and rware's own flattened observation of every
  robot (``_make_obs``, sensor range 1, no messages) must equal the batched
  one, float for float.
- ``FeatureObs`` against ``features.Encoder`` over a ``Dispatcher``: along
  trajectories of greedy and random robots, each floor's state is loaded into
  a numpy Floor whose Dispatcher keeps its tasks from step to step (as in the
  tick tempo: robots observed in index order), and every robot's encoded
  vector must equal the batched one. Episodes end and restart (the tasks are
  dropped on both sides).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rware_bridge import make_env, to_rware
from test_batched_floor import DEVICES, FWD_BIASED, LAYOUTS
from test_warehouse_rware_diff import random_state

from desim.models.warehouse import Floor
from desim.models.warehouse.batched import BatchedFloor
from desim.models.warehouse.batched_obs import RWARE_OBS_DIM, FeatureObs, RwareObs
from desim.models.warehouse.dispatch import Dispatcher
from desim.models.warehouse.features import Encoder
from desim.models.warehouse.observe import FloorStatic, FloorView, RobotObs
from desim.policies.heuristics import EpsilonGreedyBrain

PARAMS = {"tiny": (3, 1, 8), "small": (3, 2, 8), "medium": (5, 2, 8), "large": (5, 3, 8)}


def _params(layout):
    return PARAMS.get(layout.name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["tiny-12ag", "small-4ag", "large-8ag", "dense-16ag", "ring-10ag"])
def test_rware_obs_equals_rware(name, device):
    layout, n, Q, reward, kw = LAYOUTS[name]
    E = 6
    bf = BatchedFloor(layout, n, Q, E, reward, seed=5, device=device)
    obs = RwareObs(bf)
    env = make_env(layout, n, Q, reward, params=_params(layout))
    floor = Floor(layout, n, Q, reward)
    rng = np.random.default_rng(len(name))
    bf.reset()
    compared = 0
    for rnd in range(12):
        if rnd % 3 == 0:  # crowded random states; otherwise states reached by stepping
            for e in range(E):
                floor.reset()
                bf.load_state(e, random_state(floor, rng))
        else:
            for _ in range(int(rng.integers(1, 15))):
                _r, done = bf.step(torch.as_tensor(rng.choice(5, size=(E, n), p=FWD_BIASED), device=device))
                bf.reset(done)
        got = obs().cpu().numpy()
        assert got.shape == (E, n, RWARE_OBS_DIM)
        for e in range(E):
            floor.reset()
            floor.load_state(bf.state_dict(e))
            to_rware(floor, env)
            want = np.stack([env._make_obs(a) for a in env.agents])
            np.testing.assert_array_equal(got[e], want, err_msg=f"{name} round {rnd} floor {e}")
            compared += n
    assert compared >= 12 * E * 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,greedy", [("tiny-2ag", True), ("small-4ag", True), ("large-8ag", False),
                                         ("dense-16ag", True), ("ring-10ag", False), ("tiny-12ag", True)])
def test_feature_obs_equals_encoder(name, greedy, device):
    layout, n, Q, reward, kw = LAYOUTS[name]
    E, steps = 4, 120
    bf = BatchedFloor(layout, n, Q, E, reward, seed=9, device=device, max_steps=50)
    feats = FeatureObs(bf, radius=1)
    rng = np.random.default_rng(len(name) + greedy)
    floors = [Floor(layout, n, Q, reward) for _ in range(E)]
    brains = [EpsilonGreedyBrain(np.random.default_rng(e), epsilon=0.1) for e in range(E)]
    bf.reset()
    for f in floors:
        f.reset()
    static = FloorStatic.of(floors[0])
    enc = Encoder(static, 1)
    disp = [Dispatcher(f, n) for f in floors]
    tasks_seen = 0
    for t in range(steps):
        got = feats().cpu().numpy()
        acts = np.zeros((E, n), dtype=np.int64)
        for e, f in enumerate(floors):
            f.load_state(bf.state_dict(e))
            view = FloorView.of(f, float(t), static)
            robs = [RobotObs(i, view, disp[e].dispatch(i)) for i in range(n)]
            want = enc.encode_batch(robs)
            np.testing.assert_array_equal(got[e], want, err_msg=f"{name} step {t} floor {e}")
            np.testing.assert_array_equal(feats.tasks[e].cpu().numpy(), disp[e].tasks)
            tasks_seen += int((disp[e].tasks >= 0).sum())
            acts[e] = brains[e].act(robs) if greedy else rng.choice(5, size=n, p=FWD_BIASED)
        _r, done = bf.step(torch.as_tensor(acts, device=device))
        if done.any():
            bf.reset(done)
            feats.reset_tasks(done)
            for e in np.flatnonzero(done.cpu().numpy()):
                disp[e] = Dispatcher(floors[e], n)
    assert tasks_seen > 0


def test_feature_obs_guidance_is_exercised():
    """The guidance columns take all three values somewhere along a greedy run (not a constant)."""
    layout, n, Q, reward, kw = LAYOUTS["small-4ag"]
    bf = BatchedFloor(layout, n, Q, 64, reward, seed=1)
    feats = FeatureObs(bf)
    bf.reset()
    seen = set()
    for _ in range(30):
        o = feats()
        seen |= set(o[:, :, 10:13].unique().tolist())
        bf.step(torch.randint(0, 5, (64, n)))
    assert seen == {-1.0, 0.0, 1.0}
