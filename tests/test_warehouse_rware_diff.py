"""Differential test: desim's Floor against rware 2.0.0, step by step.

For each scenario both sides are put into the same state and fed the same
random joint actions (biased toward FORWARD so that robots collide); after
every step the next states (robot positions, directions, carried shelves,
``has_delivered``, shelf positions, request queue, step counters), the
rewards and the done flag are compared. Any mismatch is counted (and rware is
re-synchronised from the Floor); the test asserts zero mismatches.

Episodes start either from rware's own reset (the Floor's reset is compared
with it) or from a random, crowded state (robots packed into a small window,
often at the delivery row; about half of them carrying shelves, many of which
are requested) loaded into the Floor and copied into rware with
``rware_bridge.to_rware``.

Request-queue replacement: rware draws a delivered request's replacement
with its ``np_random``; the Floor draws it from its own ``Generator``. Before
every step the test copies rware's ``np_random`` bit-generator *state* into
the Floor's generator (``rware_bridge.sync_rng``), rware -> Floor; nothing
is copied afterwards: the Floor makes the same ``choice`` over the same
candidates (shelves not requested, in id order), so the request queues must
come out identical and are compared like the rest of the state, including
ticks with several deliveries (the queue is updated between goals).
The same synchronisation makes the Floor's reset reproduce rware's reset.

Observations are stubbed out in rware (``strip_obs``) to keep the test fast;
they do not affect state or rewards. ``Floor.local_view`` is compared with
rware's image observations separately.
"""
from __future__ import annotations

import numpy as np
import pytest
from rware.warehouse import ObservationType
from rware_bridge import diff_states, from_rware, make_env, strip_obs, sync_rng, to_rware

from desim.models.warehouse import Floor, Layout

FWD_BIASED = (0.1, 0.5, 0.12, 0.12, 0.16)  # NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD
DENSE = """
xx.xx.xx
........
x..xx..x
........
g.gg..g.
"""

# name, layout, params for rware, n_agents, queue, reward, steps, extra kwargs
SCENARIOS = [
    ("tiny-2ag-global", Layout.from_size("tiny"), (3, 1, 8), 2, 2, "global", 2000, {}),
    ("small-4ag-individual", Layout.from_size("small"), (3, 2, 8), 4, 4, "individual", 2000, {}),
    ("medium-6ag-twostage", Layout.from_size("medium"), (5, 2, 8), 6, 6, "two_stage", 2000, {}),
    ("large-8ag-individual", Layout.from_size("large"), (5, 3, 8), 8, 8, "individual", 1000, {}),
    ("tiny-20ag-crowded", Layout.from_size("tiny"), (3, 1, 8), 20, 20, "individual", 2000, {}),
    ("dense-16ag-twostage", Layout.from_ascii(DENSE), None, 16, 7, "two_stage", 1500, {"max_inactivity_steps": 40}),
    ("dense-12ag-global-fullqueue", Layout.from_ascii(DENSE), None, 12, 9, "global", 1500, {"max_steps": 70}),
]
TOTAL_STEPS = sum(s[6] for s in SCENARIOS)


def random_state(floor: Floor, rng: np.random.Generator) -> dict:
    """A valid, crowded state: robots in a small window, ~half loaded."""
    L = floor.layout
    H, W = L.shape
    n = floor.n_agents
    k = max(2 * n, 6)
    h = max(1, min(H, int(np.sqrt(k)) + int(rng.integers(0, 3))))
    w = min(W, max(1, -(-k // h)))
    while h * w < n:
        h, w = min(H, h + 1), min(W, w + 1)
    y0 = H - h if rng.random() < 0.4 else int(rng.integers(0, H - h + 1))
    x0 = int(rng.integers(0, W - w + 1))
    window = (np.arange(y0, y0 + h)[:, None] * W + np.arange(x0, x0 + w)[None, :]).ravel()
    cells = rng.choice(window, size=n, replace=False)
    shelf_cell = np.array([y * W + x for x, y in L.shelf_cells])
    S = shelf_cell.size
    shelf_at = {int(c): s for s, c in enumerate(shelf_cell)}
    robot_cells = set(cells.tolist())
    carry = np.full(n, -1)
    for i in rng.permutation(n):
        if rng.random() >= 0.5:
            continue
        c = int(cells[i])
        if c in shelf_at:
            s = shelf_at[c]  # pick up the shelf it stands under
        else:  # bring a standing shelf (not under another robot) here
            free = [s for s in range(S) if int(shelf_cell[s]) not in robot_cells]
            if not free:
                continue
            s = int(rng.choice(free))
            del shelf_at[int(shelf_cell[s])]
            shelf_cell[s] = c
            shelf_at[c] = s
        carry[i] = s
    Q = floor.request_queue_size
    carried = carry[carry >= 0]
    k = min(Q, carried.size, int(rng.integers(0, Q + 1)))
    pri = rng.choice(carried, size=k, replace=False) if k else np.array([], dtype=int)
    rest = rng.permutation(np.setdiff1d(np.arange(S), pri))[: Q - k]
    sy, sx = np.divmod(shelf_cell, W)
    ay, ax = np.divmod(cells, W)
    return {
        "agent_x": ax,
        "agent_y": ay,
        "agent_dir": rng.integers(0, 4, n),
        "carrying": carry,
        "has_delivered": rng.random(n) < 0.3,
        "shelf_x": sx,
        "shelf_y": sy,
        "request_queue": rng.permutation(np.concatenate([pri, rest]).astype(int)),
    }


def run_diff(layout, params, n, Q, reward, steps, seed, ep_len=100, crowd_frac=0.7, **kw):
    env = strip_obs(make_env(layout, n, Q, reward, params=params, **kw))
    floor = Floor(layout, n, Q, reward, rng=np.random.Generator(np.random.PCG64(0)), **kw)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    stats = dict(steps=0, mismatches=0, resets=0, deliveries=0, blocked=0, details=[])

    def mismatch(what):
        stats["mismatches"] += 1
        if len(stats["details"]) < 5:
            stats["details"].append(what)

    for t in range(steps):
        if t % ep_len == 0:
            if rng.random() < crowd_frac:
                floor.reset()
                floor.load_state(random_state(floor, rng))
            else:
                sync_rng(env, floor)
                env.reset()
                floor.reset()
                stats["resets"] += 1
                d = diff_states(from_rware(env), floor.state_dict())
                if d:
                    mismatch(f"reset at step {t}: {d}")
            to_rware(floor, env)
        a = rng.choice(5, size=n, p=FWD_BIASED)
        sync_rng(env, floor)
        _, r_env, done_env, _, _ = env.step([int(x) for x in a])
        r_floor, info = floor.step(a)
        stats["steps"] += 1
        stats["deliveries"] += info["delivered"]
        stats["blocked"] += info["blocked"]
        d = diff_states(from_rware(env), floor.state_dict())
        if not np.array_equal(np.asarray(r_env, dtype=np.float32), r_floor):
            d.append(f"rewards {r_env} vs {r_floor.tolist()}")
        if bool(done_env) != info["done"]:
            d.append("done")
        if d:
            mismatch(f"step {t}: {d}")
            to_rware(floor, env)
    stats["ties"] = floor._tie_events
    return stats


@pytest.mark.parametrize("name,layout,params,n,Q,reward,steps,kw", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_floor_matches_rware(name, layout, params, n, Q, reward, steps, kw):
    st = run_diff(layout, params, n, Q, reward, steps, seed=sum(map(ord, name)), **kw)
    print(f"{name}: {st['steps']} steps, {st['mismatches']} mismatches, {st['deliveries']} deliveries, "
          f"{st['blocked']} blocked, {st['ties']} tie components, {st['resets']} rware resets")
    assert st["steps"] == steps
    assert st["mismatches"] == 0, st["details"]
    assert st["blocked"] > 0
    assert st["resets"] > 0
    assert st["deliveries"] > 0
    if n >= 4:
        assert st["ties"] > 0  # the networkx tie-break emulation was exercised


def test_total_steps_compared():
    assert TOTAL_STEPS >= 10_000
    assert len({id(s[1]) for s in SCENARIOS}) >= 3


@pytest.mark.parametrize("directional", [False, True])
def test_local_view_matches_rware_image_obs(directional):
    layout = Layout.from_size("tiny")
    n, r = 8, 2
    env = make_env(layout, n, n, "individual", params=(3, 1, 8), observation_type=ObservationType.IMAGE)
    env.sensor_range = r
    env.image_observation_directional = directional
    floor = Floor(layout, n, n, rng=np.random.Generator(np.random.PCG64(0)))
    rng = np.random.default_rng(3)
    for _ in range(20):
        floor.reset()
        floor.load_state(random_state(floor, rng))
        to_rware(floor, env)
        for i, agent in enumerate(env.agents):  # agent 1 first: rware builds its layers there
            np.testing.assert_array_equal(env._make_img_obs(agent), floor.local_view(i, r, directional))
